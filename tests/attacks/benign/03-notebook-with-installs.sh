# A notebook: numpy work, a package listing and a package query from cells.
. "$LIB/common.sh"
cat > "$WORK/cell.py" <<'PY'
import subprocess, sys
import numpy as np
print(int(np.arange(100).sum()))
subprocess.run([sys.executable, "-m", "pip", "list", "--disable-pip-version-check"], stdout=subprocess.DEVNULL, check=True)
subprocess.run([sys.executable, "-m", "pip", "show", "numpy"], stdout=subprocess.DEVNULL, check=True)
PY
"$PY" "$LIB/notebook.py" "$WORK" "$WORK/cell.py"
