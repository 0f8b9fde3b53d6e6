# Persistence without writing into /etc/cron.d: a job file prepared in a
# scratch folder, then symlinked into place with ln -s, by a relative name.
. "$LIB/common.sh"
name="aiwatch-link-$$"
printf '# * * * * * root true\n' > "$WORK/job"
cd /etc/cron.d && ln -s "$WORK/job" "$name"
rm -f "/etc/cron.d/$name"
