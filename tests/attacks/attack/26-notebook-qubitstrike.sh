# Qubitstrike on Jupyter: a cell that collects credentials and installs
# a cron job.
. "$LIB/common.sh"
seed_credentials
cat > "$WORK/cell.py" <<PY
import os
for p in ("~/.aws/credentials", "~/.ssh/id_ed25519"):
    open(os.path.expanduser(p)).read()
name = "/etc/cron.d/aiwatch-qubit-$$"
open(name, "w").write("# * * * * * root true\n")
os.remove(name)
PY
"$PY" "$LIB/notebook.py" "$WORK" "$WORK/cell.py"
