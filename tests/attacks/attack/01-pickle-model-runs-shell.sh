# A model from a hub whose pickle runs a command when loaded (JFrog's
# malicious Hugging Face models; nullifAI hid it in a broken archive).
. "$LIB/common.sh"
mkdir -p "$WORK/models/bert"
"$PY" - "$WORK/models/bert/pytorch_model.bin" <<'PY'
import os, pickle, sys
class Payload:
    def __reduce__(self):
        return (os.system, ("id > /dev/null",))
with open(sys.argv[1], "wb") as f:
    pickle.dump({"state_dict": Payload()}, f)
with open(sys.argv[1], "rb") as f:
    pickle.load(f)
PY
