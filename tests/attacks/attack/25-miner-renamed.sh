# A miner renamed to look like a kernel thread, pointed at a pool.
. "$LIB/common.sh"
cp /bin/sleep "$WORK/kthreadd"
"$WORK/kthreadd" 0.1 --url stratum+tcp://$PEER:3333 --donate-level 1 2> /dev/null
/usr/bin/python3 -c "import socket; socket.create_connection(('$PEER', 3333), 5).close()"
exit 0
