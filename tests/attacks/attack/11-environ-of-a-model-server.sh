# API keys live in the environment of model servers: read another process's
# environ through a shell redirection (no cat).
. "$LIB/common.sh"
start_server
while IFS= read -r -d '' line; do :; done < "/proc/$SERVER_PID/environ"
stop_server
