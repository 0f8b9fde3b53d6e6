# The suite's sentinel: an attack every build detects (cat of an SSH key).
# Once its alert is in, every earlier scenario's events have been checked.
. "$LIB/common.sh"
seed_credentials
cat "$HOME/.ssh/id_ed25519" > /dev/null
