# Persistence from Python: a cron job written with open(), no shell tool.
. "$LIB/common.sh"
name="/etc/cron.d/aiwatch-attack-$$"
/usr/bin/python3 -c "
with open('$name', 'w') as f:
    f.write('# */5 * * * * root true\n')
"
rm -f "$name"
