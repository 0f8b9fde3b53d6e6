//! Enforcement in the kernel: the exec kill at `sched_process_exec`, audit
//! mode, and the safety rails (never-touch list, the agent itself, the kill
//! budget).
//!
//! The victim is a tiny static binary written by the test: its entry point
//! opens (creates) a marker file and exits, with no libc start-up, so a
//! marker on disk proves that the new image ran at least one instruction.
//! Each test writes its own binary (its own inode) and its rules name only
//! that file, so the agent it starts can kill nothing else on the host.

use std::{
    os::unix::{fs::PermissionsExt, process::ExitStatusExt},
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
};

use aiwatch_tests::{aiwatch_bin, event_timeout, get, wait_until, Agent, AgentOptions, TempDir};
use serde_json::Value;

/// Whether the hand-written victim can run here; prints the skip otherwise.
fn victim_runs_here(test: &str) -> bool {
    if cfg!(target_arch = "x86_64") {
        return true;
    }
    eprintln!("SKIPPED {test}: the marker binary is x86-64 machine code");
    false
}

/// A static x86-64 ELF whose entry point does `open(marker, O_WRONLY |
/// O_CREAT, 0644)` then `exit(0)`: nothing runs before the marker is made.
fn marker_binary(dir: &Path, marker: &Path) -> PathBuf {
    const BASE: u64 = 0x40_0000;
    const HEADERS: usize = 64 + 56;
    let mut path = marker.as_os_str().as_encoded_bytes().to_vec();
    path.push(0);
    let mut code: Vec<u8> = Vec::new();
    // lea rdi, [rip + 29]: the path, right after the 36 bytes of code.
    code.extend([0x48, 0x8d, 0x3d]);
    code.extend(29i32.to_le_bytes());
    code.extend([0xbe, 0x41, 0, 0, 0]); // mov esi, O_WRONLY | O_CREAT
    code.extend([0xba, 0xa4, 0x01, 0, 0]); // mov edx, 0644
    code.extend([0xb8, 2, 0, 0, 0]); // mov eax, SYS_open
    code.extend([0x0f, 0x05]); // syscall
    code.extend([0xbf, 0, 0, 0, 0]); // mov edi, 0
    code.extend([0xb8, 60, 0, 0, 0]); // mov eax, SYS_exit
    code.extend([0x0f, 0x05]); // syscall
    assert_eq!(code.len(), 36);
    code.extend(path);
    let total = (HEADERS + code.len()) as u64;

    let mut elf: Vec<u8> = Vec::new();
    elf.extend([0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    elf.extend([0u8; 8]);
    elf.extend(2u16.to_le_bytes()); // ET_EXEC
    elf.extend(0x3eu16.to_le_bytes()); // x86-64
    elf.extend(1u32.to_le_bytes());
    elf.extend((BASE + HEADERS as u64).to_le_bytes()); // entry
    elf.extend(64u64.to_le_bytes()); // program headers
    elf.extend(0u64.to_le_bytes()); // no section headers
    elf.extend(0u32.to_le_bytes());
    elf.extend(64u16.to_le_bytes());
    elf.extend(56u16.to_le_bytes());
    elf.extend(1u16.to_le_bytes());
    elf.extend([0u8; 6]);
    // PT_LOAD, R+X, the whole file at BASE.
    elf.extend(1u32.to_le_bytes());
    elf.extend(5u32.to_le_bytes());
    elf.extend(0u64.to_le_bytes());
    elf.extend(BASE.to_le_bytes());
    elf.extend(BASE.to_le_bytes());
    elf.extend(total.to_le_bytes());
    elf.extend(total.to_le_bytes());
    elf.extend(0x1000u64.to_le_bytes());
    assert_eq!(elf.len(), HEADERS);
    elf.extend(code);

    let binary = dir.join("victim");
    std::fs::write(&binary, elf).expect("write the marker binary");
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    binary
}

/// A policy file killing exec of `exe`, in `mode`.
fn kill_rule(id: &str, exe: &Path, mode: &str) -> String {
    format!(
        "enforcement: {mode}\nrules:\n  - id: {id}\n    description: A denied binary ran\n    severity: high\n    action: kill\n    when:\n      kind: exec\n      process.exe: {}\n",
        exe.display()
    )
}

struct Setup {
    agent: Agent,
    victim: PathBuf,
    marker: PathBuf,
    _dir: TempDir,
}

fn start(id: &str, mode: &str, extra_config: &str) -> Setup {
    let dir = TempDir::new("enforce");
    let marker = dir.path().join("marker");
    let victim = marker_binary(dir.path(), &marker);
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("policies dir");
    std::fs::write(policies.join("kill.yaml"), kill_rule(id, &victim, mode)).expect("policy");
    let agent = Agent::start_with(AgentOptions {
        config: format!(
            "anomaly: {{enabled: false}}\ndefault_policies: false\npolicies: [{}]\n{extra_config}",
            policies.display()
        ),
        ..Default::default()
    });
    Setup {
        agent,
        victim,
        marker,
        _dir: dir,
    }
}

fn run(binary: &Path) -> (u32, ExitStatus) {
    let mut child = Command::new(binary).spawn().expect("start the victim");
    let pid = child.id();
    (pid, child.wait().expect("wait for the victim"))
}

fn wait_alert_for(agent: &Agent, rule: &str, pid: u32) -> Value {
    agent.wait_alert(&format!("{rule} for pid {pid}"), |a| {
        a["rule"] == rule && get(a, "event.process.pid").as_u64() == Some(u64::from(pid))
    })
}

#[test]
fn an_enforced_exec_kill_stops_the_binary_before_its_first_instruction() {
    if !victim_runs_here("an_enforced_exec_kill_stops_the_binary_before_its_first_instruction") {
        return;
    }
    let rule = "test.enforce.exec-kill";
    let setup = start(rule, "enforce", "enforcement: {kill_budget: 0}");
    setup.agent.wait_for_log(
        "kernel enforcement: 1 executables killed at exec",
        event_timeout(),
    );
    let mut last = 0;
    for round in 0..100 {
        let (pid, status) = run(&setup.victim);
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "run {round}: the victim was not killed: {status:?}"
        );
        assert!(
            !setup.marker.exists(),
            "run {round}: the victim ran its first instruction"
        );
        last = pid;
    }
    let alert = wait_alert_for(&setup.agent, rule, last);
    assert_eq!(alert["action"], "kill");
    assert_eq!(alert["action_taken"], true);
    assert_eq!(alert["enforcement"]["outcome"], "killed");
    assert_eq!(alert["enforcement"]["hook"], "sched_process_exec");
    assert_eq!(get(&alert, "event.kernel_action"), "killed");
}

#[test]
fn audit_mode_reports_would_kill_and_kills_nothing() {
    if !victim_runs_here("audit_mode_reports_would_kill_and_kills_nothing") {
        return;
    }
    let rule = "test.enforce.audit";
    let setup = start(rule, "audit", "");
    let (pid, status) = run(&setup.victim);
    assert_eq!(
        status.code(),
        Some(0),
        "audit mode must not kill: {status:?}"
    );
    assert!(setup.marker.exists(), "the victim ran to its end");
    let alert = wait_alert_for(&setup.agent, rule, pid);
    assert_eq!(alert["action_taken"], false);
    assert_eq!(alert["enforcement"]["outcome"], "would-kill");
    assert_eq!(alert["enforcement"]["hook"], "sched_process_exec");
    assert!(alert["event"].get("kernel_action").is_none(), "{alert}");
}

#[test]
fn the_never_touch_list_and_the_agent_itself_are_spared() {
    if !victim_runs_here("the_never_touch_list_and_the_agent_itself_are_spared") {
        return;
    }
    let dir = TempDir::new("enforce-rails");
    let marker = dir.path().join("marker");
    let victim = marker_binary(dir.path(), &marker);
    // The agent runs from its own copy, which a rule also names.
    let agent_copy = dir.path().join("aiwatch");
    std::fs::copy(aiwatch_bin(), &agent_copy).expect("copy the agent");
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("policies dir");
    std::fs::write(
        policies.join("kill.yaml"),
        format!(
            "enforcement: enforce\nrules:\n  - id: test.enforce.rails\n    severity: high\n    action: kill\n    when:\n      kind: exec\n      process.exe: [{}, {}]\n",
            victim.display(),
            agent_copy.display()
        ),
    )
    .expect("policy");
    let agent = Agent::start_with(AgentOptions {
        config: format!(
            "anomaly: {{enabled: false}}\ndefault_policies: false\npolicies: [{}]\nenforcement: {{never_touch: [{}]}}\n",
            policies.display(),
            victim.display()
        ),
        binary: Some(agent_copy.clone()),
        ..Default::default()
    });
    agent.wait_for_log("1 never touched", event_timeout());
    let (pid, status) = run(&victim);
    assert_eq!(
        status.code(),
        Some(0),
        "a never-touch binary was killed: {status:?}"
    );
    assert!(marker.exists());
    let alert = wait_alert_for(&agent, "test.enforce.rails", pid);
    assert_eq!(alert["enforcement"]["outcome"], "would-kill");
    assert_eq!(alert["action_taken"], false);
    // The agent, whose executable the rule names, still runs and answers.
    let (code, _) = agent.http_get("/healthz");
    assert_eq!(code, 200);
}

#[test]
fn a_spent_kill_budget_stops_killing_and_raises_a_critical_alert() {
    if !victim_runs_here("a_spent_kill_budget_stops_killing_and_raises_a_critical_alert") {
        return;
    }
    let rule = "test.enforce.budget";
    let setup = start(
        rule,
        "enforce",
        "enforcement: {kill_budget: 3, kill_window_secs: 600}",
    );
    setup.agent.wait_for_log(
        "kernel enforcement: 1 executables killed at exec",
        event_timeout(),
    );
    for round in 0..3 {
        let (_, status) = run(&setup.victim);
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "run {round}: {status:?}"
        );
    }
    assert!(!setup.marker.exists());
    let (pid, status) = run(&setup.victim);
    assert_eq!(
        status.code(),
        Some(0),
        "past the budget nothing is killed: {status:?}"
    );
    assert!(setup.marker.exists());
    let critical = wait_alert_for(&setup.agent, "enforcement.kill-budget-spent", pid);
    assert_eq!(critical["severity"], "critical");
    let alert = wait_alert_for(&setup.agent, rule, pid);
    assert_eq!(alert["enforcement"]["outcome"], "would-kill");
    assert_eq!(get(&alert, "event.kernel_action"), "kill_rate_limited");
    // The counter of actions saw the three kills.
    let killed = wait_until("three kills counted", event_timeout(), || {
        let (_, body) = setup.agent.http_get("/metrics");
        body.lines()
            .find(|l| {
                l.starts_with("aiwatch_enforcement_actions_total")
                    && l.contains("outcome=\"killed\"")
                    && l.contains(rule)
            })
            .and_then(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .filter(|n| *n >= 3.0)
    });
    assert_eq!(killed, Some(3.0));
}

#[test]
fn the_kill_switch_turns_kills_into_reports_and_back() {
    if !victim_runs_here("the_kill_switch_turns_kills_into_reports_and_back") {
        return;
    }
    let rule = "test.enforce.switch";
    let setup = start(rule, "enforce", "");
    let agent = &setup.agent;
    agent.wait_for_log(
        "1 executables killed at exec, 0 refused in the LSM, 0 never touched, on",
        event_timeout(),
    );
    let state_dir = agent.dir.path().join("state");
    let switch = |to: &str| {
        let output = Command::new(aiwatch_bin())
            .args(["enforcement", to, "--state-dir"])
            .arg(&state_dir)
            .output()
            .expect("aiwatch enforcement");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{output:?}");
        assert!(stdout.contains("1 running agent(s) told"), "{stdout}");
    };

    switch("off");
    agent.wait_for_log("never touched, off", event_timeout());
    let (pid, status) = run(&setup.victim);
    assert_eq!(
        status.code(),
        Some(0),
        "switched off, nothing is killed: {status:?}"
    );
    assert!(setup.marker.exists());
    let alert = wait_alert_for(agent, rule, pid);
    assert_eq!(alert["enforcement"]["outcome"], "would-kill");
    std::fs::remove_file(&setup.marker).expect("remove the marker");

    switch("on");
    wait_until("enforcement back on", event_timeout(), || {
        (agent.log().matches("never touched, on").count() >= 2).then_some(())
    })
    .unwrap_or_else(|| panic!("enforcement never came back on; log:\n{}", agent.log()));
    let (pid, status) = run(&setup.victim);
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert!(!setup.marker.exists());
    let alert = wait_alert_for(agent, rule, pid);
    assert_eq!(alert["enforcement"]["outcome"], "killed");
}
