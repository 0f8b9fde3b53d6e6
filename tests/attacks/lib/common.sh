# Shared set-up for attack-suite scenarios. Sourced by every scenario.
# Environment from the runner: WORK (private scratch folder, also the cwd),
# HOME (an empty home under WORK), LIB (this folder), PY (the test
# virtualenv's Python), PEER (an external address in a network namespace:
# HTTP on 80/443, a raw sink on 9000 and 3333) and IMDS (169.254.169.254,
# answered by the same peer).
set -u

# Credentials of every kind the rules know, with fake values.
seed_credentials() {
    mkdir -p "$HOME/.aws" "$HOME/.ssh" "$HOME/.kube" "$HOME/.docker" "$HOME/.cache/huggingface" "$WORK/app"
    printf '[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = fake\n' > "$HOME/.aws/credentials"
    printf -- '-----BEGIN OPENSSH PRIVATE KEY-----\nfake\n-----END OPENSSH PRIVATE KEY-----\n' > "$HOME/.ssh/id_ed25519"
    printf 'apiVersion: v1\nkind: Config\nusers: [{name: u, user: {token: fake}}]\n' > "$HOME/.kube/config"
    printf '{"auths": {"registry.example": {"auth": "ZmFrZTpmYWtl"}}}\n' > "$HOME/.docker/config.json"
    printf 'machine models.example login u password fake\n' > "$HOME/.netrc"
    printf 'hf_fakeTokenForTests\n' > "$HOME/.cache/huggingface/token"
    printf 'OPENAI_API_KEY=sk-fake\n' > "$WORK/app/.env"
}

# A file of $2 MiB of random bytes at $1.
make_blob() {
    mkdir -p "$(dirname "$1")"
    head -c "$(( $2 * 1048576 ))" /dev/urandom > "$1"
}

# Starts lib/model_server.py (an ONNX model server with the flaws of real
# ones) under $WORK/srv; sets SERVER_PID and SERVER_PORT. Waits until it
# serves, then a moment for the agent to classify it.
start_server() {
    mkdir -p "$WORK/srv"
    "$PY" "$LIB/model_server.py" "$WORK/srv" > "$WORK/srv.out" 2> "$WORK/srv.err" &
    SERVER_PID=$!
    for _ in $(seq 300); do
        grep -q READY "$WORK/srv.out" 2>/dev/null && break
        sleep 0.1
    done
    SERVER_PORT=$(awk '/READY/ {print $2}' "$WORK/srv.out")
    if [ -z "$SERVER_PORT" ]; then
        echo "the model server did not start:"; cat "$WORK/srv.err"; exit 1
    fi
    curl -s "http://127.0.0.1:$SERVER_PORT/predict" > /dev/null
    sleep 1
}

stop_server() {
    kill "$SERVER_PID" 2> /dev/null
    wait "$SERVER_PID" 2> /dev/null
    return 0
}

# POSTs $2 (a string) to the model server's path $1: the exploit's delivery.
exploit() {
    curl -s --max-time 30 --data-binary "$2" "http://127.0.0.1:$SERVER_PORT$1" > /dev/null
}
