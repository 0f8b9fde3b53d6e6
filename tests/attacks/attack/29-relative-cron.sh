# Persistence through a relative name: from /etc, a cron job written as
# cron.d/<name>, which no path prefix matches until it is resolved.
. "$LIB/common.sh"
name="aiwatch-relative-$$"
cd /etc && /usr/bin/python3 -c "open('cron.d/$name', 'w').write('# * * * * * root true\n')"
rm -f "/etc/cron.d/$name"
