//! Process lifecycle, end to end: exec, fork and exit of real processes.

use std::{os::unix::process::CommandExt, process::Command};

use aiwatch_tests::{get, kind_of, pid_of, Agent};

fn canonical(path: &str) -> String {
    std::fs::canonicalize(path).unwrap().display().to_string()
}

#[test]
fn exec_and_exit_of_a_shell() {
    let agent = Agent::start();
    let status = Command::new("/bin/sh")
        .args(["-c", "exit 3"])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(3));
    // The child's pid is only known from the events: find the exec whose
    // parent is this test process and whose argv is ours.
    let me = std::process::id() as u64;
    let exec = agent.wait_event("exec of sh -c 'exit 3'", |e| {
        kind_of(e) == "exec"
            && get(e, "parent.pid").as_u64() == Some(me)
            && get(e, "process.argv") == &serde_json::json!(["/bin/sh", "-c", "exit 3"])
    });
    let pid = pid_of(&exec);
    assert_eq!(get(&exec, "process.exe"), canonical("/bin/sh").as_str());
    assert_eq!(get(&exec, "process.ppid").as_u64(), Some(me));
    assert_eq!(
        get(&exec, "parent.exe"),
        canonical("/proc/self/exe").as_str()
    );
    assert_eq!(get(&exec, "process.uid").as_u64(), Some(0));
    assert!(get(&exec, "process.cgroup_id").as_u64().unwrap() > 0);
    assert!(get(&exec, "process.start_time")
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert!(exec["time"].as_str().unwrap().contains('T'));

    let exit = agent.wait_event("exit of sh", |e| kind_of(e) == "exit" && pid_of(e) == pid);
    assert_eq!(get(&exit, "exit.code").as_i64(), Some(3));
    assert!(get(&exit, "exit.signal").is_null());
    assert_eq!(get(&exit, "process.exe"), canonical("/bin/sh").as_str());
    assert!(get(&exit, "exit.lifetime_ms").as_u64().unwrap() < 10_000);
    let (status, log) = agent.stop();
    assert!(status.success(), "agent exit status {status:?}\n{log}");
}

#[test]
fn python_exec_with_arguments_and_fork_linkage() {
    let agent = Agent::start();
    // The shell forks a python child and waits for it: fork, exec, exits.
    let mut sh = Command::new("/bin/sh")
        .args([
            "-c",
            "/usr/bin/python3 -c 'import sys; sys.exit(7)' one two; exit 0",
        ])
        .spawn()
        .unwrap();
    let sh_pid = sh.id() as u64;
    assert!(sh.wait().unwrap().success());

    let py = agent.wait_event("python exec", |e| {
        kind_of(e) == "exec" && get(e, "process.ppid").as_u64() == Some(sh_pid)
    });
    assert_eq!(
        get(&py, "process.argv"),
        &serde_json::json!([
            "/usr/bin/python3",
            "-c",
            "import sys; sys.exit(7)",
            "one",
            "two"
        ])
    );
    assert_eq!(
        get(&py, "process.exe"),
        canonical("/usr/bin/python3").as_str()
    );
    assert_eq!(get(&py, "parent.pid").as_u64(), Some(sh_pid));
    assert_eq!(get(&py, "parent.exe"), canonical("/bin/sh").as_str());
    let ancestors: Vec<u64> = get(&py, "process.ancestors")
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(&ancestors[..2], &[sh_pid, std::process::id() as u64]);

    let py_pid = pid_of(&py);
    let fork = agent.wait_event("fork of the python child", |e| {
        kind_of(e) == "fork" && pid_of(e) == py_pid
    });
    assert_eq!(get(&fork, "parent.pid").as_u64(), Some(sh_pid));
    assert_eq!(get(&fork, "fork.child_pid").as_u64(), Some(py_pid));
    let exit = agent.wait_event("python exit", |e| {
        kind_of(e) == "exit" && pid_of(e) == py_pid
    });
    assert_eq!(get(&exit, "exit.code").as_i64(), Some(7));
}

#[test]
fn exit_by_signal_and_thread_exits_are_not_process_exits() {
    let agent = Agent::start();
    let child = Command::new("/bin/sh")
        .args(["-c", "kill -9 $$"])
        .spawn()
        .unwrap();
    let pid = child.id() as u64;
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    let exit = agent.wait_event("exit by SIGKILL", |e| {
        kind_of(e) == "exit" && pid_of(e) == pid
    });
    assert_eq!(get(&exit, "exit.signal").as_i64(), Some(9));
    assert!(get(&exit, "exit.code").is_null());

    // A python with four threads exits once, as one process.
    let script = "import threading\nts=[threading.Thread(target=lambda: None) for _ in range(4)]\n[t.start() for t in ts]\n[t.join() for t in ts]\n";
    let py = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .spawn()
        .unwrap();
    let py_pid = py.id() as u64;
    assert!(py.wait_with_output().unwrap().status.success());
    agent.wait_event("python exit", |e| {
        kind_of(e) == "exit" && pid_of(e) == py_pid
    });
    agent.sentinel();
    let exits = agent
        .events()
        .iter()
        .filter(|e| kind_of(e) == "exit" && pid_of(e) == py_pid)
        .count();
    assert_eq!(exits, 1, "one exit event per process, not per thread");
    let forks = agent
        .events()
        .iter()
        .filter(|e| kind_of(e) == "fork" && get(e, "parent.pid").as_u64() == Some(py_pid))
        .count();
    assert_eq!(forks, 0, "threads are not reported as forks");
}

#[test]
fn long_argv_is_truncated_and_flagged() {
    let agent = Agent::start();
    let args: Vec<String> = (0..40).map(|i| format!("argument-{i:02}")).collect();
    let child = Command::new("/bin/true").args(&args).spawn().unwrap();
    let pid = child.id() as u64;
    child.wait_with_output().unwrap();
    let exec = agent.wait_event("exec of /bin/true", |e| {
        kind_of(e) == "exec" && pid_of(e) == pid
    });
    let argv = get(&exec, "process.argv").as_array().unwrap();
    assert_eq!(argv.len(), 16);
    assert_eq!(argv[0], "/bin/true");
    assert_eq!(argv[15], "argument-14");
    assert_eq!(
        get(&exec, "process.argv_truncated"),
        &serde_json::json!(true)
    );
}

#[test]
fn the_agent_never_reports_itself() {
    let agent = Agent::start();
    // A second agent is just another process to the first: the first sees
    // it, and neither reports itself.
    let second = Agent::start();
    let (first_pid, second_pid) = (agent.pid() as u64, second.pid() as u64);
    Command::new("/bin/true").status().unwrap();
    let me = std::process::id() as u64;
    agent.wait_event("exec of /bin/true", |e| {
        kind_of(e) == "exec" && get(e, "process.ppid").as_u64() == Some(me)
    });
    second.wait_event("exec of /bin/true", |e| {
        kind_of(e) == "exec" && get(e, "process.ppid").as_u64() == Some(me)
    });
    let (status, log) = second.stop();
    assert!(status.success(), "{log}");
    let first_events = agent.events();
    assert!(
        first_events.iter().all(|e| pid_of(e) != first_pid),
        "the agent reported itself"
    );
    // The first agent saw the second one's exec (it was spawned by this test).
    assert!(first_events
        .iter()
        .any(|e| kind_of(e) == "exec" && pid_of(e) == second_pid));
    assert!(first_events
        .iter()
        .any(|e| kind_of(e) == "exit" && pid_of(e) == second_pid));
    let (status, log) = agent.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn without_root_it_fails_with_one_sentence() {
    // `nobody` may not be able to enter the checkout: it runs a copy.
    let unprivileged = aiwatch_tests::UnprivilegedBin::new();
    let output = Command::new(unprivileged.path())
        .arg("run")
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{stderr}");
    assert!(lines[0].contains("must run as root"), "{stderr}");
}

#[test]
fn a_shell_on_a_socket_is_flagged() {
    let agent = Agent::start();
    // The shape of a reverse shell: stdin and stdout are a socket.
    let script = "import os, socket\na, b = socket.socketpair()\nos.dup2(a.fileno(), 0)\nos.dup2(a.fileno(), 1)\nos.execv('/bin/sh', ['sh', '-c', 'exit 0'])\n";
    let child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .spawn()
        .unwrap();
    let pid = child.id() as u64;
    assert!(child.wait_with_output().unwrap().status.success());
    let exec = agent.wait_event("exec of sh on a socket", |e| {
        kind_of(e) == "exec" && pid_of(e) == pid && get(e, "process.comm") == "sh"
    });
    assert_eq!(get(&exec, "process.stdio_socket"), &serde_json::json!(true));
    // The python before it had ordinary stdio.
    let python = agent.wait_event("exec of python", |e| {
        kind_of(e) == "exec" && pid_of(e) == pid && get(e, "process.comm") == "python3"
    });
    assert!(get(&python, "process.stdio_socket").is_null());
}
