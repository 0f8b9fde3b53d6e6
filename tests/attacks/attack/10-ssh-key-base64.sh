# The private key, encoded for copy and paste out of a terminal.
. "$LIB/common.sh"
seed_credentials
base64 -w0 "$HOME/.ssh/id_ed25519" > /dev/null
