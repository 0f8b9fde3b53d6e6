# A user-level systemd unit that restarts a backdoor at every login.
. "$LIB/common.sh"
unit_dir=/root/.config/systemd/user
mkdir -p "$unit_dir"
unit="$unit_dir/aiwatch-attack-$$.service"
printf '[Service]\nExecStart=/bin/true\n' | tee "$unit" > /dev/null
rm -f "$unit"
