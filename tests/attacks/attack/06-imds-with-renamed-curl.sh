# An intruder on the host queries the metadata service with a copy of curl
# under an innocent name in /tmp.
. "$LIB/common.sh"
mkdir -p "$WORK/.cache"
cp /usr/bin/curl "$WORK/.cache/update-check"
"$WORK/.cache/update-check" -s --max-time 5 "http://$IMDS/latest/api/token" > /dev/null
