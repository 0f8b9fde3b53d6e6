# A stealer dressed as a model server: its command line names a hub model,
# it loads nothing, reads the cloud credentials and is gone before any
# library scan could see it.
. "$LIB/common.sh"
seed_credentials
cat > "$WORK/serve.py" <<'PY'
import os
open(os.path.expanduser("~/.aws/credentials")).read()
PY
/usr/bin/python3 "$WORK/serve.py" --model meta-llama/Llama-3.1-8B-Instruct --port 8000
