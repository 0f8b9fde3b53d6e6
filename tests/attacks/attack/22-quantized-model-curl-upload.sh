# A quantised model uploaded with curl -T.
. "$LIB/common.sh"
make_blob "$WORK/models/q4.gguf" 5
curl -s --max-time 30 -H 'Expect:' -T "$WORK/models/q4.gguf" "http://$PEER/drop/q4.gguf" > /dev/null
