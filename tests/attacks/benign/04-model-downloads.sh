# Model downloads from an internal artifact server: huggingface_hub's way
# (an .incomplete blob renamed into the cache, a snapshot symlink), curl -o
# and wget -O into a model folder, from an operator's shell.
. "$LIB/common.sh"
seed_credentials
"$PY" - "$PEER" <<'PY'
import os, sys, urllib.request
peer = sys.argv[1]
token = open(os.path.expanduser("~/.cache/huggingface/token")).read().strip()
cache = os.path.expanduser("~/.cache/huggingface/hub/models--org--tiny")
os.makedirs(os.path.join(cache, "blobs"), exist_ok=True)
os.makedirs(os.path.join(cache, "snapshots", "main"), exist_ok=True)
blob = os.path.join(cache, "blobs", "4f2a")
req = urllib.request.Request(f"http://{peer}/org/tiny/model.safetensors", headers={"authorization": f"Bearer {token}"})
with urllib.request.urlopen(req, timeout=10) as r, open(blob + ".incomplete", "wb") as f:
    f.write(r.read())
os.replace(blob + ".incomplete", blob)
os.symlink("../../blobs/4f2a", os.path.join(cache, "snapshots", "main", "model.safetensors"))
PY
mkdir -p "$WORK/models"
curl -s --max-time 10 -o "$WORK/models/tiny.gguf" "http://$PEER/tiny.gguf"
wget -q -O "$WORK/models/tiny.onnx" "http://$PEER/tiny.onnx"
