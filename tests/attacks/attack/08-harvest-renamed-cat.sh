# A harvester using a copy of cat renamed to look like a system daemon,
# reading the docker and netrc credentials.
. "$LIB/common.sh"
seed_credentials
cp /bin/cat "$WORK/systemd-journal"
"$WORK/systemd-journal" "$HOME/.docker/config.json" "$HOME/.netrc" > "$WORK/loot"
