//! The open kill: a `kill` rule on exact files (`kind: open` + `file.path`,
//! with `not: {process.exe: ...}` naming the executables allowed to open
//! them) kills any other opener at the exit of the open, by the device and
//! inode of the file actually opened, before it returns to user space
//! holding the descriptor.
//!
//! The reader is `cat` with its output redirected to a file of the test:
//! killed at the open, it never reads a byte, so the output stays empty and
//! its exit shows SIGKILL. The allowed reader is a copy of `cat` (its own
//! inode) named by the rule. Each test has its own model file and its
//! rule names only that file, so its agent kills nothing else.

use std::{
    fs::File,
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
};

use aiwatch_tests::{get, Agent, AgentOptions, TempDir, EVENT_TIMEOUT};
use serde_json::Value;

const CAT: &str = "/bin/cat";
const WEIGHTS: &[u8] = b"weights that must not leave the model server";

struct Setup {
    agent: Agent,
    model: PathBuf,
    allowed_cat: PathBuf,
    dir: TempDir,
}

fn start(mode: &str) -> Setup {
    let dir = TempDir::new("open-kill");
    // A model file: the kernel reports opens of `.safetensors` files.
    let model = dir.path().join("protected.safetensors");
    std::fs::write(&model, WEIGHTS).expect("write the model");
    let allowed_cat = dir.path().join("cat-allowed");
    std::fs::copy(CAT, &allowed_cat).expect("copy cat");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("policies dir");
    std::fs::write(
        policies.join("open.yaml"),
        format!(
            "enforcement: {mode}\nrules:\n  - id: test.open-kill\n    description: A protected model was opened\n    severity: high\n    action: kill\n    when:\n      kind: open\n      file.path: {}\n      not:\n        process.exe: {}\n",
            model.display(),
            allowed_cat.display()
        ),
    )
    .expect("policy");
    let agent = Agent::start_with(AgentOptions {
        config: format!(
            "anomaly: {{enabled: false}}\ndefault_policies: false\npolicies: [{}]\nenforcement: {{kill_budget: 0}}\n",
            policies.display()
        ),
        ..Default::default()
    });
    Setup {
        agent,
        model,
        allowed_cat,
        dir,
    }
}

/// Runs `cat model > output`; returns its pid, exit status and output.
fn read_with(cat: &Path, model: &Path, output: &Path) -> (u32, ExitStatus, Vec<u8>) {
    let out = File::create(output).expect("create the output");
    let mut child = Command::new(cat)
        .arg(model)
        .stdout(out)
        .spawn()
        .expect("start cat");
    let pid = child.id();
    let status = child.wait().expect("wait for cat");
    (pid, status, std::fs::read(output).expect("read the output"))
}

fn alert_for(agent: &Agent, pid: u32) -> Value {
    agent.wait_alert(&format!("test.open-kill for pid {pid}"), |a| {
        a["rule"] == "test.open-kill"
            && get(a, "event.process.pid").as_u64() == Some(u64::from(pid))
    })
}

#[test]
fn an_enforced_open_kill_stops_the_reader_before_it_reads_a_byte() {
    let setup = start("enforce");
    setup.agent.wait_for_log(
        "kernel open kill: 1 protected file(s), 1 allowed opener(s)",
        EVENT_TIMEOUT,
    );
    let output = setup.dir.path().join("stolen");
    for round in 0..20 {
        let (_, status, stolen) = read_with(Path::new(CAT), &setup.model, &output);
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "round {round}: the reader was not killed: {status:?}"
        );
        assert!(
            stolen.is_empty(),
            "round {round}: the reader got {stolen:?}"
        );
    }
    let (pid, _, _) = read_with(Path::new(CAT), &setup.model, &output);
    // The allowed executable reads the file whole.
    let (allowed_pid, status, copy) = read_with(
        &setup.allowed_cat,
        &setup.model,
        &setup.dir.path().join("copy"),
    );
    assert!(status.success(), "the allowed reader failed: {status:?}");
    assert_eq!(copy, WEIGHTS);

    let alert = alert_for(&setup.agent, pid);
    assert_eq!(alert["action_taken"], true);
    assert_eq!(alert["enforcement"]["outcome"], "killed");
    assert_eq!(alert["enforcement"]["hook"], "sys_exit_open");
    assert_eq!(get(&alert, "event.kernel_action"), "killed");
    assert_eq!(
        get(&alert, "event.file.path"),
        setup.model.display().to_string().as_str()
    );
    // The allowed reader raised nothing: a refused read after it is the
    // sentinel (alerts are written in the kernel's order).
    let (last, _, _) = read_with(Path::new(CAT), &setup.model, &output);
    alert_for(&setup.agent, last);
    let stray: Vec<Value> = setup
        .agent
        .alerts()
        .into_iter()
        .filter(|a| get(a, "event.process.pid").as_u64() == Some(u64::from(allowed_pid)))
        .collect();
    assert!(stray.is_empty(), "alerts for the allowed reader: {stray:?}");
}

#[test]
fn audit_mode_reports_would_kill_at_the_open_and_reads() {
    let setup = start("audit");
    let output = setup.dir.path().join("read");
    let (pid, status, read) = read_with(Path::new(CAT), &setup.model, &output);
    assert!(status.success(), "audit mode must not kill: {status:?}");
    assert_eq!(read, WEIGHTS);
    let alert = alert_for(&setup.agent, pid);
    assert_eq!(alert["action_taken"], false);
    assert_eq!(alert["enforcement"]["outcome"], "would-kill");
    assert_eq!(alert["enforcement"]["hook"], "sys_exit_open");
    assert!(alert["event"].get("kernel_action").is_none(), "{alert}");
}
