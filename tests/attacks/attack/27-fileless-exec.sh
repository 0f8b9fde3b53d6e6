# A payload executed from memory: memfd_create, then exec of the memfd.
. "$LIB/common.sh"
/usr/bin/python3 - <<'PY'
import os
fd = os.memfd_create("x", 0)
os.write(fd, open("/bin/true", "rb").read())
pid = os.fork()
if pid == 0:
    os.execv(f"/proc/self/fd/{fd}", ["x"])
os.waitpid(pid, 0)
PY
