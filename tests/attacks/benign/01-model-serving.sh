# Model serving: an ONNX server loads its model and answers requests.
. "$LIB/common.sh"
start_server
for i in 1 2 3 4 5; do
    curl -s "http://127.0.0.1:$SERVER_PORT/predict" > /dev/null
done
stop_server
