//! Attempts on the agent itself, end to end: signals, memory and descriptor
//! access, and bpf() asking for its objects by id. Each attempt is made by a
//! Python child of this test and asserted by that child's pid; the agent is
//! recognised by pid and object id, which a process named aiwatch cannot fake.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
};

use aiwatch_tests::{get, kind_of, pid_of, Agent};

const PYTHON: &str = "/usr/bin/python3";

/// Starts `python3 -c script AGENT_PID` with pipes: the script prints one
/// line when it has made its attempt, and exits when its stdin closes, so
/// that what it holds (a pidfd) stays open until the test has seen the event.
fn attempt(script: &str, agent: &Agent) -> (Child, u64, String) {
    let mut child = Command::new(PYTHON)
        .arg("-c")
        .arg(script)
        .arg(agent.pid().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start python3");
    let pid = u64::from(child.id());
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("read the attempt's line");
    assert!(!line.is_empty(), "the attempt printed nothing");
    (child, pid, line.trim().to_owned())
}

fn finish(mut child: Child) {
    drop(child.stdin.take());
    let status = child.wait().expect("wait");
    assert!(status.success(), "the attempt failed: {status:?}");
}

#[test]
fn signals_to_the_agent_are_reported_and_a_freeze_alerts() {
    let agent = Agent::start();
    // A freeze and a thaw by kill(), then signals that change nothing for
    // a running agent: SIGURG by pidfd_send_signal() and by tgkill() to
    // another of its threads, SIGWINCH by kill().
    let script = r#"
import ctypes, os, signal, sys, time
agent = int(sys.argv[1])
os.kill(agent, signal.SIGSTOP)
time.sleep(0.2)
os.kill(agent, signal.SIGCONT)
pidfd = os.pidfd_open(agent)
signal.pidfd_send_signal(pidfd, signal.SIGURG)
thread = next(int(t) for t in os.listdir(f"/proc/{agent}/task") if int(t) != agent)
L = ctypes.c_long
ctypes.CDLL(None).syscall(L(234), L(agent), L(thread), L(int(signal.SIGURG)))
os.kill(agent, signal.SIGWINCH)
print(thread, flush=True)
sys.stdin.read()
"#;
    let (child, pid, thread) = attempt(script, &agent);
    let by_signal = |name: &'static str| {
        move |e: &serde_json::Value| {
            kind_of(e) == "signal" && pid_of(e) == pid && get(e, "syscall.signal") == name
        }
    };
    // The freeze is read once the agent runs again.
    let stop = agent.wait_event("SIGSTOP to the agent", by_signal("SIGSTOP"));
    assert_eq!(
        get(&stop, "syscall.target_pid").as_u64(),
        Some(u64::from(agent.pid()))
    );
    assert_eq!(get(&stop, "syscall.target_agent"), true);
    let urg = agent.wait_event("SIGURG to the agent", by_signal("SIGURG"));
    assert_eq!(get(&urg, "syscall.target_agent"), true);
    agent.wait_event("SIGWINCH to the agent", by_signal("SIGWINCH"));
    finish(child);
    // Two SIGURG events: the pidfd one to the process, the tgkill one to
    // the thread, both recognised as the agent.
    let urgs = agent
        .events()
        .into_iter()
        .filter(by_signal("SIGURG"))
        .count();
    assert_eq!(urgs, 2, "thread {thread}");

    let alert = agent.wait_alert("aiwatch.signal", |a| {
        a["rule"] == "aiwatch.signal" && get(a, "event.process.pid").as_u64() == Some(pid)
    });
    assert_eq!(alert["severity"], "critical");
    assert_eq!(get(&alert, "event.syscall.signal"), "SIGSTOP");
    // The rule's throttle is one per sender a minute: a second sender shows
    // that signals which change nothing are quiet.
    let (child, quiet_pid, _) = attempt(
        "import os, signal, sys\nagent = int(sys.argv[1])\nos.kill(agent, signal.SIGWINCH)\n\
         os.kill(agent, signal.SIGCONT)\nprint('sent', flush=True)\nsys.stdin.read()\n",
        &agent,
    );
    agent.wait_event("a lone SIGCONT", |e| {
        kind_of(e) == "signal" && pid_of(e) == quiet_pid && get(e, "syscall.signal") == "SIGCONT"
    });
    finish(child);
    agent.sentinel();
    assert!(
        !agent
            .alerts()
            .iter()
            .any(|a| get(a, "event.process.pid").as_u64() == Some(quiet_pid)),
        "SIGWINCH or SIGCONT alone raised an alert"
    );
}

#[test]
fn memory_and_descriptor_access_to_the_agent_alert() {
    let agent = Agent::start();
    // process_vm_writev with no iovecs passes the permission check and
    // writes nothing; pidfd_getfd copies the agent's stdin (/dev/null).
    let script = r#"
import ctypes, os, sys
agent = int(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
# Every argument as a long: syscall() is variadic, and a plain int leaves
# the upper half of the register undefined.
L = ctypes.c_long
assert libc.syscall(L(311), L(agent), None, L(0), None, L(0), L(0)) == 0, ctypes.get_errno()
pidfd = os.pidfd_open(agent)
fd = libc.syscall(L(438), L(pidfd), L(0), L(0))
assert fd >= 0, ctypes.get_errno()
os.close(fd)
print("done", flush=True)
sys.stdin.read()
"#;
    let (child, pid, _) = attempt(script, &agent);
    let by_call = |name: &'static str| {
        move |e: &serde_json::Value| {
            kind_of(e) == "ptrace" && pid_of(e) == pid && get(e, "syscall.syscall") == name
        }
    };
    let write = agent.wait_event("process_vm_writev", by_call("process_vm_writev"));
    assert_eq!(get(&write, "syscall.target_agent"), true);
    let getfd = agent.wait_event("pidfd_getfd", by_call("pidfd_getfd"));
    assert_eq!(
        get(&getfd, "syscall.target_pid").as_u64(),
        Some(u64::from(agent.pid()))
    );
    assert_eq!(get(&getfd, "syscall.target_agent"), true);
    finish(child);
    let alert = agent.wait_alert("aiwatch.process-access", |a| {
        a["rule"] == "aiwatch.process-access" && get(a, "event.process.pid").as_u64() == Some(pid)
    });
    assert_eq!(alert["severity"], "critical");
}

#[test]
fn bpf_asking_for_the_agents_maps_alerts_and_other_maps_do_not() {
    let agent = Agent::start();
    // The test's own array map, then every map's fd by id, as `bpftool map`
    // does: the agent's maps are its own, the test's map is not.
    let script = r#"
import ctypes, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
L = ctypes.c_long
def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, 128)
    return libc.syscall(L(321), L(cmd), buf, L(128)), buf
BPF_MAP_CREATE, BPF_MAP_GET_NEXT_ID, BPF_MAP_GET_FD_BY_ID, BPF_OBJ_GET_INFO_BY_FD = 0, 12, 14, 15
mine, _ = bpf(BPF_MAP_CREATE, struct.pack("IIII", 2, 4, 4, 1))
assert mine >= 0, ctypes.get_errno()
info = ctypes.create_string_buffer(80)
attr = struct.pack("IIQ", mine, 80, ctypes.addressof(info))
assert bpf(BPF_OBJ_GET_INFO_BY_FD, attr)[0] == 0, ctypes.get_errno()
my_id = struct.unpack_from("I", info.raw, 4)[0]
seen, last = [], 0
while True:
    ret, buf = bpf(BPF_MAP_GET_NEXT_ID, struct.pack("II", last, 0))
    if ret != 0:
        break
    last = struct.unpack_from("II", buf.raw)[1]
    fd, _ = bpf(BPF_MAP_GET_FD_BY_ID, struct.pack("I", last))
    if fd >= 0:
        seen.append(last)
        import os; os.close(fd)
print(my_id, len(seen), flush=True)
sys.stdin.read()
"#;
    let (child, pid, line) = attempt(script, &agent);
    let my_id: u64 = line
        .split_whitespace()
        .next()
        .and_then(|id| id.parse().ok())
        .expect("the test map's id");
    let by_id = |e: &serde_json::Value| {
        kind_of(e) == "bpf"
            && pid_of(e) == pid
            && get(e, "syscall.bpf_cmd") == "BPF_MAP_GET_FD_BY_ID"
    };
    let own = agent.wait_event("a get-fd-by-id of one of the agent's maps", |e| {
        by_id(e) && get(e, "syscall.target_agent") == true
    });
    assert!(get(&own, "syscall.bpf_id").as_u64().is_some());
    let theirs = agent.wait_event("a get-fd-by-id of the test's own map", |e| {
        by_id(e) && get(e, "syscall.bpf_id").as_u64() == Some(my_id)
    });
    assert!(
        get(&theirs, "syscall.target_agent").is_null(),
        "the test's map was taken for the agent's: {theirs}"
    );
    finish(child);
    let alert = agent.wait_alert("aiwatch.bpf-objects", |a| {
        a["rule"] == "aiwatch.bpf-objects" && get(a, "event.process.pid").as_u64() == Some(pid)
    });
    assert_eq!(alert["severity"], "high");
}

#[test]
fn writes_to_the_agents_state_and_opens_of_its_memory_alert() {
    let agent = Agent::start();
    let state = agent.dir.path().join("state");
    std::fs::create_dir_all(&state).expect("state folder");
    let planted = state.join("planted.json");
    let script = format!(
        "import sys\nagent = sys.argv[1]\nopen({planted:?}, 'w').write('{{}}')\n\
         open(f'/proc/{{agent}}/mem', 'rb').close()\nprint('done', flush=True)\nsys.stdin.read()\n",
        planted = planted.display().to_string()
    );
    let (child, pid, _) = attempt(&script, &agent);
    let write = agent.wait_event("the write into the state folder", |e| {
        kind_of(e) == "open" && pid_of(e) == pid && get(e, "file.path") == planted.to_str().unwrap()
    });
    assert_eq!(get(&write, "file.class"), "aiwatch");
    let mem = format!("/proc/{}/mem", agent.pid());
    let open = agent.wait_event("the open of the agent's memory", |e| {
        kind_of(e) == "open" && pid_of(e) == pid && get(e, "file.path") == mem.as_str()
    });
    assert_eq!(get(&open, "file.class"), "aiwatch");
    finish(child);
    for rule in ["aiwatch.files-tamper", "aiwatch.memory-open"] {
        let alert = agent.wait_alert(rule, |a| {
            a["rule"] == rule && get(a, "event.process.pid").as_u64() == Some(pid)
        });
        assert_eq!(alert["severity"], "critical");
    }
}
