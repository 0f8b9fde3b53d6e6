//! The command line as a user meets it: bad input gets one clear sentence
//! and a non-zero exit, and the offline tools need neither root nor a kernel.

use std::{os::unix::process::CommandExt, process::Command};

use aiwatch_tests::{aiwatch_bin, TempDir, UnprivilegedBin};

fn run(args: &[&str], as_nobody: bool) -> (bool, String, String) {
    // `nobody` may not be able to enter the checkout: it runs a copy.
    let unprivileged = as_nobody.then(UnprivilegedBin::new);
    let mut command = match &unprivileged {
        Some(bin) => Command::new(bin.path()),
        None => Command::new(aiwatch_bin()),
    };
    command.args(args);
    if as_nobody {
        command.uid(65534).gid(65534);
    }
    let output = command.output().expect("run aiwatch");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{stderr}");
    lines[0]
}

#[test]
fn a_malformed_config_is_one_sentence_with_its_position() {
    let dir = TempDir::new("cli-config");
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "listen: 127.0.0.1:9464\nfamilies: {file: maybe}\n").unwrap();
    let (ok, _, stderr) = run(&["run", "--config", path.to_str().unwrap()], false);
    assert!(!ok);
    let line = one_line(&stderr);
    assert!(line.contains("bad.yaml: line 2 column 18"), "{line}");

    let (ok, _, stderr) = run(&["run", "--config", "/nonexistent/aiwatch.yaml"], false);
    assert!(!ok);
    assert!(
        one_line(&stderr).contains("/nonexistent/aiwatch.yaml"),
        "{stderr}"
    );
}

#[test]
fn a_broken_policy_stops_start_up_with_file_line_column() {
    let dir = TempDir::new("cli-policy");
    let policy = dir.path().join("site.yaml");
    std::fs::write(
        &policy,
        "rules:\n  - id: site.x\n    severity: loud\n    when: {kind: exec}\n",
    )
    .unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        format!("policies: [{}]\nlisten: 127.0.0.1:0\n", policy.display()),
    )
    .unwrap();
    let (ok, _, stderr) = run(&["run", "--config", config.to_str().unwrap()], false);
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "{}:3:15: unknown severity `loud`",
            policy.display()
        )),
        "{stderr}"
    );

    // `policy check` says the same, without root.
    let (ok, _, stderr) = run(&["policy", "check", policy.to_str().unwrap()], true);
    assert!(!ok);
    assert!(stderr.contains(":3:15:"), "{stderr}");
}

#[test]
fn offline_tools_work_without_root() {
    let (ok, stdout, stderr) = run(&["policy", "test"], true);
    assert!(ok, "{stdout}{stderr}");
    let summary = stdout.lines().last().unwrap_or("");
    let passed: u64 = summary
        .strip_suffix(" passed, 0 failed")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not `N passed, 0 failed`: {stdout}"));
    assert!(passed >= 20, "the default pack's tests ran: {stdout}");

    let dir = TempDir::new("cli-replay");
    let events = dir.path().join("events.jsonl");
    // A hand-written event: no `time`, no `ktime_ns`.
    let event = serde_json::json!({
        "kind": "exec",
        "process": {"pid": 7, "ppid": 1, "exe": "/usr/bin/xmrig", "argv": ["xmrig", "-o", "stratum+tcp://pool:3333"], "comm": "xmrig"}
    });
    std::fs::write(&events, format!("{event}\nnot json\n")).unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(&events, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (ok, stdout, stderr) = run(&["replay", events.to_str().unwrap()], true);
    assert!(ok, "{stderr}");
    let alerts: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("alert JSON"))
        .collect();
    assert!(
        alerts
            .iter()
            .any(|a| a["rule"].as_str().unwrap_or("").contains("miner")),
        "{stdout}"
    );
    assert!(
        stderr.contains("line 2"),
        "the bad line is reported: {stderr}"
    );
}
