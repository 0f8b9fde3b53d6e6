# An LLM agent app: loads its API key from .env, reads its Hugging Face
# token, and calls the model API (the peer stands in for the provider).
. "$LIB/common.sh"
seed_credentials
cat > "$WORK/app/agent_app.py" <<PY
import json, os, urllib.request
env = dict(line.strip().split("=", 1) for line in open("$WORK/app/.env") if "=" in line)
body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
req = urllib.request.Request("http://$PEER/v1/chat/completions", data=body,
                             headers={"authorization": "Bearer " + env["OPENAI_API_KEY"]})
for _ in range(3):
    urllib.request.urlopen(req, timeout=10).read()
PY
"$PY" "$WORK/app/agent_app.py"
