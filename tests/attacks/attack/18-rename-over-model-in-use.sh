# The same swap done atomically: a file prepared in /tmp renamed over the
# model a server has loaded.
. "$LIB/common.sh"
start_server
head -c 4096 /dev/urandom > "$WORK/evil.onnx"
mv -f "$WORK/evil.onnx" "$WORK/srv/models/model.onnx"
stop_server
