# A backdoored model swapped in under a running server: written in place
# by an unrelated process.
. "$LIB/common.sh"
start_server
/usr/bin/python3 -c "
open('$WORK/srv/models/model.onnx', 'r+b').write(b'backdoor')
"
stop_server
