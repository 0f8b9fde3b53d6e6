//! Least privilege: once ready, every thread of the agent holds only the
//! kept capabilities (effective, permitted, inheritable, ambient and
//! bounding sets, read from /proc/<pid>/task/*/status), and the agent still
//! reports events.

use std::process::Command;

use aiwatch_tests::{get, kind_of, Agent};

/// CAP_DAC_READ_SEARCH (2), CAP_KILL (5), CAP_NET_ADMIN (12),
/// CAP_SYS_PTRACE (19), CAP_PERFMON (38), CAP_BPF (39).
const KEPT: u64 = 1 << 2 | 1 << 5 | 1 << 12 | 1 << 19 | 1 << 38 | 1 << 39;

fn caps_of(status: &str, key: &str) -> u64 {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in status"));
    u64::from_str_radix(line.trim(), 16).unwrap()
}

#[test]
fn every_thread_keeps_only_the_agreed_capabilities() {
    let agent = Agent::start();
    agent.wait_for_log(
        "capabilities dropped on all",
        std::time::Duration::from_secs(5),
    );
    let tasks: Vec<_> = std::fs::read_dir(format!("/proc/{}/task", agent.pid()))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(tasks.len() > 1, "the runtime has worker threads: {tasks:?}");
    for task in &tasks {
        let status = std::fs::read_to_string(task.join("status")).unwrap();
        let name = status.lines().next().unwrap_or("").to_owned();
        for key in ["CapEff", "CapPrm", "CapBnd"] {
            assert_eq!(
                caps_of(&status, key),
                KEPT,
                "{} ({name}) {key}",
                task.display()
            );
        }
        for key in ["CapInh", "CapAmb"] {
            assert_eq!(
                caps_of(&status, key),
                0,
                "{} ({name}) {key}",
                task.display()
            );
        }
    }
    // Still working: an exec after the drop is reported with its exe.
    let child = Command::new("/bin/true")
        .arg("after-the-drop")
        .spawn()
        .unwrap();
    let pid = child.id() as u64;
    let mut child = child;
    child.wait().unwrap();
    let exec = agent.wait_event("exec after the drop", |e| {
        kind_of(e) == "exec" && get(e, "process.pid").as_u64() == Some(pid)
    });
    assert!(get(&exec, "process.exe")
        .as_str()
        .unwrap()
        .ends_with("true"));
    let (status, log) = agent.stop();
    assert!(status.success(), "{status:?}\n{log}");
}
