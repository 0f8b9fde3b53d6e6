//! Privilege and tampering events end to end, asserted by the pids of the
//! processes this test starts.

use std::process::{Command, Stdio};

use aiwatch_tests::{get, kind_of, pid_of, Agent};

const PYTHON: &str = "/usr/bin/python3";

/// Runs `python3 -c script` to completion; returns its pid and stdout.
fn run_python(script: &str) -> (u64, String) {
    let child = Command::new(PYTHON)
        .arg("-c")
        .arg(script)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start python3");
    let pid = child.id() as u64;
    let output = child.wait_with_output().expect("wait");
    assert!(output.status.success(), "python failed: {output:?}");
    (
        pid,
        String::from_utf8_lossy(&output.stdout).trim().to_owned(),
    )
}

#[test]
fn setuid_by_a_root_child() {
    let agent = Agent::start();
    let (pid, _) = run_python("import os; os.setuid(65534)");
    let event = agent.wait_event("setuid", |e| kind_of(e) == "setuid" && pid_of(e) == pid);
    assert_eq!(get(&event, "syscall.syscall"), "setuid");
    assert_eq!(get(&event, "syscall.uid").as_u64(), Some(65534));
    assert_eq!(get(&event, "syscall.result").as_i64(), Some(0));
    // The caller was still root when it asked.
    assert_eq!(get(&event, "process.uid").as_u64(), Some(0));

    let (pid, _) = run_python("import os; os.setresgid(-1, 65534, -1)");
    let event = agent.wait_event("setresgid", |e| kind_of(e) == "setgid" && pid_of(e) == pid);
    assert_eq!(get(&event, "syscall.syscall"), "setresgid");
    assert_eq!(get(&event, "syscall.egid").as_u64(), Some(65534));
    assert!(get(&event, "syscall.gid").is_null(), "-1 is no request");
}

#[test]
fn ptrace_attach_to_a_sleeping_child() {
    let agent = Agent::start();
    let script = r#"
import ctypes, os, subprocess, time
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
sleeper = subprocess.Popen(["/bin/sleep", "30"])
time.sleep(0.2)
PTRACE_ATTACH, PTRACE_DETACH = 16, 17
assert libc.ptrace(PTRACE_ATTACH, sleeper.pid, None, None) == 0, ctypes.get_errno()
os.waitpid(sleeper.pid, 0)
libc.ptrace(PTRACE_DETACH, sleeper.pid, None, None)
sleeper.kill()
sleeper.wait()
print(sleeper.pid)
"#;
    let (pid, out) = run_python(script);
    let target: u64 = out.parse().expect("sleeper pid");
    let event = agent.wait_event("ptrace attach", |e| {
        kind_of(e) == "ptrace" && pid_of(e) == pid && get(e, "syscall.request") == "PTRACE_ATTACH"
    });
    assert_eq!(get(&event, "syscall.target_pid").as_u64(), Some(target));
    assert_eq!(get(&event, "syscall.result").as_i64(), Some(0));
}

#[test]
fn capset_reports_the_requested_sets() {
    let agent = Agent::start();
    // capget then capset of the same sets: allowed, and the values are known.
    let script = r#"
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
class Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
class Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]
header = Header(0x20080522, 0)
data = (Data * 2)()
assert libc.capget(ctypes.byref(header), data) == 0
data[0].effective &= ~(1 << 7)  # drop CAP_SETUID from the effective set
assert libc.capset(ctypes.byref(header), data) == 0
print(data[0].effective | (data[1].effective << 32), data[0].permitted | (data[1].permitted << 32))
"#;
    let (pid, out) = run_python(script);
    let mut values = out.split_whitespace().map(|v| v.parse::<u64>().unwrap());
    let (effective, permitted) = (values.next().unwrap(), values.next().unwrap());
    let event = agent.wait_event("capset", |e| kind_of(e) == "capset" && pid_of(e) == pid);
    assert_eq!(
        get(&event, "syscall.cap_effective").as_u64(),
        Some(effective)
    );
    assert_eq!(
        get(&event, "syscall.cap_permitted").as_u64(),
        Some(permitted)
    );
    assert_eq!(effective & (1 << 7), 0);
    assert_eq!(get(&event, "syscall.result").as_i64(), Some(0));
}

#[test]
fn fileless_exec_from_a_memfd() {
    let agent = Agent::start();
    let script = r#"
import os
fd = os.memfd_create("aiwatch-fileless", 0)
with open("/bin/true", "rb") as f:
    os.write(fd, f.read())
os.execv(f"/proc/self/fd/{fd}", ["fileless-true"])
"#;
    let (pid, _) = run_python(script);
    let memfd = agent.wait_event("memfd_create", |e| {
        kind_of(e) == "memfd_create" && pid_of(e) == pid
    });
    assert_eq!(get(&memfd, "syscall.name"), "aiwatch-fileless");
    assert!(get(&memfd, "syscall.result").as_i64().unwrap() >= 0);
    let exec = agent.wait_event("exec of the memfd", |e| {
        kind_of(e) == "exec" && pid_of(e) == pid && get(e, "process.argv")[0] == "fileless-true"
    });
    assert_eq!(
        get(&exec, "process.exe_fileless").as_bool(),
        Some(true),
        "{exec}"
    );
    // The executable is named as /proc/<pid>/exe names it.
    assert_eq!(
        get(&exec, "process.exe"),
        "/memfd:aiwatch-fileless",
        "{exec}"
    );
}

#[test]
fn anonymous_executable_memory() {
    let agent = Agent::start();
    let script = r#"
import ctypes, mmap
region = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
# A writable page made executable too: the W+X mprotect every process reports.
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
page = libc.mmap(None, 4096, 3, 0x22, -1, 0)
assert libc.mprotect(ctypes.c_void_p(page), 4096, 7) == 0
print(page)
"#;
    let (pid, out) = run_python(script);
    let page: u64 = out.parse().unwrap();
    let mmap = agent.wait_event("RWX anonymous mmap", |e| {
        kind_of(e) == "exec_memory" && pid_of(e) == pid && get(e, "syscall.syscall") == "mmap"
    });
    assert_eq!(get(&mmap, "syscall.prot").as_u64(), Some(7));
    assert_eq!(get(&mmap, "syscall.len").as_u64(), Some(4096));
    assert!(get(&mmap, "syscall.flags").as_u64().unwrap() & 0x20 != 0);
    let mprotect = agent.wait_event("W+X mprotect", |e| {
        kind_of(e) == "exec_memory" && pid_of(e) == pid && get(e, "syscall.syscall") == "mprotect"
    });
    assert_eq!(get(&mprotect, "syscall.addr").as_u64(), Some(page));
    assert_eq!(get(&mprotect, "syscall.result").as_i64(), Some(0));
    // The read-only page mapped just before is not executable: no event.
    assert!(!agent.events().iter().any(|e| {
        kind_of(e) == "exec_memory"
            && pid_of(e) == pid
            && get(e, "syscall.syscall") == "mmap"
            && get(e, "syscall.prot").as_u64() == Some(3)
    }));
}

#[test]
fn bpf_calls_by_another_process() {
    let agent = Agent::start();
    let child = Command::new("bpftool")
        .args(["prog", "list"])
        .stdout(Stdio::null())
        .spawn()
        .expect("bpftool");
    let pid = child.id() as u64;
    assert!(child.wait_with_output().unwrap().status.success());
    let event = agent.wait_event("bpf by bpftool", |e| {
        kind_of(e) == "bpf"
            && pid_of(e) == pid
            && get(e, "syscall.bpf_cmd") == "BPF_PROG_GET_NEXT_ID"
    });
    assert_eq!(get(&event, "syscall.syscall"), "bpf");
    // The agent loaded programs of its own; none of its bpf() calls show.
    let agent_pid = agent.pid() as u64;
    assert!(!agent
        .events()
        .iter()
        .any(|e| kind_of(e) == "bpf" && pid_of(e) == agent_pid));
}
