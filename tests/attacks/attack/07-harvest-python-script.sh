# A stealer written in Python (not a one-liner): walks the home folder and
# reads cloud and kube credentials.
. "$LIB/common.sh"
seed_credentials
cat > "$WORK/collect.py" <<'PY'
import os
home = os.path.expanduser("~")
for sub in (".aws/credentials", ".kube/config"):
    with open(os.path.join(home, sub), "rb") as f:
        f.read()
PY
/usr/bin/python3 "$WORK/collect.py"
