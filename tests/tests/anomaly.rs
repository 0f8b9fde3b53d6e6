//! Anomaly detection end to end: the real ONNX inference server learns a
//! short profile, then departs from it; the profile survives an agent
//! restart.
//!
//! onnxruntime tries to send telemetry about ten seconds after it starts
//! (a DNS lookup of an events.data.microsoft.com name through the host's
//! resolver). Whether that falls inside the short learning window depends on
//! timing, so assertions about "nothing new" look only at what the test
//! itself made the server do.

use std::{path::Path, time::Duration};

use aiwatch_tests::{
    ai::{alerts_of, child_exec, discovered, sink_listener, OnnxServer},
    get, kind_of, pid_of, Agent, AgentOptions, TempDir,
};
use serde_json::Value;

/// A short learning window of event time. It opens with the workload's
/// first event (while the server starts) and ends with its first event
/// after the window.
const LEARNING_SECS: u64 = 8;

fn agent(state_dir: Option<&Path>) -> Agent {
    Agent::start_with(AgentOptions {
        config: format!(
            "anomaly: {{learning_window_secs: {LEARNING_SECS}, learning_min_events: 1}}\n"
        ),
        state_dir: state_dir.map(Path::to_path_buf),
        ..AgentOptions::default()
    })
}

fn connect_event(agent: &Agent, server: &OnnxServer, port: u16) -> Value {
    agent.wait_event(&format!("the server's connect to port {port}"), |e| {
        kind_of(e) == "connect"
            && pid_of(e) == server.pid
            && get(e, "net.dst.port").as_u64() == Some(port as u64)
    })
}

/// Starts a server under `agent` and lets its profile learn: the server's
/// start-up, predictions and a connection to `known_port`. The requests
/// are sent as soon as the server serves, without waiting for the agent
/// (which may lag behind under load), so they fall in the window; an event
/// after the window then ends learning.
fn start_and_learn(agent: &Agent, label: &str, known_port: u16) -> (OnnxServer, Value) {
    let server = OnnxServer::start(label);
    for x in ["1,2,3", "2,2,2"] {
        server.get(&format!("/predict?x={x}"));
    }
    server.get(&format!("/connect?port={known_port}"));
    let workload = discovered(agent, &server);
    assert_eq!(workload["kind"], "inference", "{workload}");
    assert_eq!(workload["name"], server.name.as_str());
    let connect = connect_event(agent, &server, known_port);
    assert_eq!(get(&connect, "workload"), &workload);
    std::thread::sleep(Duration::from_secs(LEARNING_SECS + 1));
    server.get("/health");
    agent.wait_for_log(
        &format!(
            "anomaly profile inference/{} finished learning",
            server.name
        ),
        Duration::from_secs(60),
    );
    (server, workload)
}

/// The anomaly alert `rule` about `server`'s workload.
fn anomaly_alert(
    agent: &Agent,
    server: &OnnxServer,
    rule: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    agent.wait_alert(rule, |a| {
        a["rule"] == rule && get(a, "event.workload.name") == server.name.as_str() && pred(a)
    })
}

fn summary(alert: &Value) -> &str {
    alert["summary"].as_str().unwrap_or("")
}

#[test]
fn departures_from_a_learned_profile_are_explained() {
    let agent = agent(None);
    let known_port = sink_listener();
    let (server, workload) = start_and_learn(&agent, "anomaly", known_port);

    // A shell, never run while learning.
    server.get("/spawn");
    let exec = child_exec(&agent, server.pid, "sh");
    let shell = get(&exec, "process.exe").as_str().unwrap_or("").to_owned();
    let alert = anomaly_alert(&agent, &server, "anomaly.new-executable", |a| {
        pid_of(&a["event"]) == pid_of(&exec)
    });
    assert_eq!(get(&alert, "event.workload"), &workload);
    assert_eq!(alert["severity"], "high");
    assert!(
        alert["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "anomaly")),
        "{alert}"
    );
    let text = summary(&alert);
    let expected = format!("inference workload `{}` ran {shell}", server.name);
    assert!(text.starts_with(&expected), "{text}");
    assert!(
        text.contains("never seen in") && text.contains("of learning"),
        "{text}"
    );
    assert!(text.contains("its known executables are"), "{text}");

    // A loopback port it never connected to while learning.
    let new_port = sink_listener();
    server.get(&format!("/connect?port={new_port}"));
    connect_event(&agent, &server, new_port);
    let alert = anomaly_alert(&agent, &server, "anomaly.new-peer", |a| {
        get(a, "event.net.dst.port").as_u64() == Some(new_port as u64)
    });
    assert_eq!(pid_of(&alert["event"]), server.pid);
    let text = summary(&alert);
    assert!(
        text.contains(&format!("connected to 127.0.0.1:{new_port}")),
        "the summary names what was seen: {text}"
    );
    assert!(
        text.contains("its known peers are") && text.contains(&format!("loopback:{known_port}")),
        "the summary names what was expected: {text}"
    );

    // What it learned raises nothing: the known port, and predictions.
    server.get(&format!("/connect?port={known_port}"));
    server.get("/predict?x=3,2,1");
    let again = agent.wait_event("the second connect to the known port", |e| {
        kind_of(e) == "connect"
            && pid_of(e) == server.pid
            && get(e, "net.dst.port").as_u64() == Some(known_port as u64)
            && get(e, "ktime_ns").as_u64() > get(&exec, "ktime_ns").as_u64()
    });
    agent.sentinel();
    let about_known: Vec<Value> = alerts_of(&agent, &[server.pid])
        .into_iter()
        .filter(|a| get(a, "event.net.dst.port").as_u64() == Some(known_port as u64))
        .collect();
    assert!(about_known.is_empty(), "{again}\n{about_known:#?}");
}

#[test]
fn a_learned_profile_survives_an_agent_restart() {
    let state = TempDir::new("anomaly-state");
    let known_port = sink_listener();
    let first = agent(Some(state.path()));
    let (server, workload) = start_and_learn(&first, "restart", known_port);
    let (status, log) = first.stop();
    assert!(status.success(), "the agent stopped badly:\n{log}");

    // The profile was saved, enforcing, with what it learned.
    let profiles = state.path().join("profiles");
    let file = std::fs::read_dir(&profiles)
        .expect("the profile folder")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("inference--{}--", server.name)))
        })
        .unwrap_or_else(|| panic!("no saved profile for {} in {profiles:?}", server.name));
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("read")).expect("JSON");
    assert_eq!(saved["mode"], "enforcing", "{saved}");
    let learned_peer = format!("loopback:{known_port}");
    assert!(
        saved["peers"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p == learned_peer.as_str())),
        "{saved}"
    );

    // The server runs on; a new agent finds it running and keeps enforcing.
    let second = agent(Some(state.path()));
    let before = second.events().len();
    for x in ["1,2,3", "5,5,5", "0"] {
        server.get(&format!("/predict?x={x}"));
    }
    server.get(&format!("/connect?port={known_port}"));
    let connect = connect_event(&second, &server, known_port);
    assert_eq!(
        get(&connect, "workload"),
        &workload,
        "the running server is the same workload after the restart"
    );
    second.wait_event("the predictions' connection summaries", |e| {
        kind_of(e) == "tcp_summary" && pid_of(e) == server.pid
    });
    second.sentinel();
    let driven: Vec<Value> = alerts_of(&second, &[server.pid])
        .into_iter()
        .filter(|a| {
            let event = &a["event"];
            // Everything the test made the server do: requests accepted,
            // their connections, and the known loopback peer.
            match kind_of(event) {
                "connect" => get(event, "net.dst.ip") == "127.0.0.1",
                _ => true,
            }
        })
        .collect();
    assert!(
        driven.is_empty(),
        "learned behaviour alerted after the restart ({before} events before):\n{driven:#?}"
    );
    let relearned = format!(
        "anomaly profile inference/{} finished learning",
        server.name
    );
    assert!(
        !second.log().contains(&relearned),
        "the profile learned again:\n{}",
        second.log()
    );

    // A new departure still alerts.
    let new_port = sink_listener();
    server.get(&format!("/connect?port={new_port}"));
    let alert = anomaly_alert(&second, &server, "anomaly.new-peer", |a| {
        get(a, "event.net.dst.port").as_u64() == Some(new_port as u64)
    });
    assert!(summary(&alert).contains(&learned_peer), "{alert}");
}

/// `aiwatch profile enforce`: the learned, enforcing profile of the real
/// ONNX server is locked; a shell it spawns is killed in the kernel at
/// exec, while its inference keeps working.
#[test]
fn a_locked_profile_kills_what_the_server_never_ran_and_keeps_it_serving() {
    let state = TempDir::new("lock-state");
    let agent = Agent::start_with(AgentOptions {
        config: format!(
            "anomaly: {{learning_window_secs: {LEARNING_SECS}, learning_min_events: 1}}\nenforcement: {{mode: enforce, kill_budget: 0}}\n"
        ),
        state_dir: Some(state.path().to_path_buf()),
        ..AgentOptions::default()
    });
    let known_port = sink_listener();
    let (server, _) = start_and_learn(&agent, "lock", known_port);
    // The CLI works on the saved profile: wait for the periodic save.
    let profile_cli = |args: &[&str]| {
        std::process::Command::new(aiwatch_tests::aiwatch_bin())
            .args(["profile", "--state-dir"])
            .arg(state.path())
            .args(args)
            .output()
            .expect("run aiwatch profile")
    };
    let saved = aiwatch_tests::wait_until("the saved profile", Duration::from_secs(90), || {
        let shown = profile_cli(&["show", &server.name, "-o", "json"]);
        let profile: Value = serde_json::from_slice(&shown.stdout).ok()?;
        (profile["mode"] == "enforcing").then_some(profile)
    })
    .expect("the enforcing profile is saved within 90 s");
    let learned = saved["executables"].to_string();

    let dry = profile_cli(&["enforce", &server.name, "--dry-run"]);
    let dry_text = String::from_utf8_lossy(&dry.stdout);
    assert!(dry.status.success(), "{dry:?}");
    assert!(dry_text.contains("# would write"), "{dry_text}");
    assert!(dry_text.contains("action: kill"), "{dry_text}");
    let lock_dir = state.path().join("locked-profiles");
    assert!(
        std::fs::read_dir(&lock_dir).map_or(true, |mut d| d.next().is_none()),
        "--dry-run wrote a lock"
    );

    let locked = profile_cli(&["enforce", &server.name]);
    assert!(locked.status.success(), "{locked:?}");
    println!("{}", String::from_utf8_lossy(&locked.stdout));
    // The agent watches the folder and compiles the lock's exec rule into
    // the kernel's allowlist for the server's scope.
    agent.wait_for_log(
        "kernel exec allowlists: 1 workload(s)",
        Duration::from_secs(60),
    );

    // A shell, never run while learning: killed at exec, in the kernel.
    let spawned = server.get("/spawn");
    assert_eq!(spawned["exit"], -libc::SIGKILL, "{spawned}");
    let rule = format!("profile-lock.{}.exec", server.name.to_lowercase());
    let alert = agent.wait_alert(&rule, |a| {
        a["rule"] == rule.as_str() && get(a, "event.process.ppid").as_u64() == Some(server.pid)
    });
    assert_eq!(alert["action_taken"], true, "{alert}");
    assert_eq!(alert["enforcement"]["outcome"], "killed", "{alert}");
    assert_eq!(alert["enforcement"]["hook"], "sched_process_exec");
    assert_eq!(get(&alert, "event.kernel_action"), "killed");
    assert!(
        !learned.contains(get(&alert, "event.process.exe").as_str().unwrap_or("?")),
        "the shell was learned after all: {learned}"
    );
    // The anomaly explanation rides along as its own alert.
    anomaly_alert(&agent, &server, "anomaly.new-executable", |a| {
        get(a, "event.process.ppid").as_u64() == Some(server.pid)
    });

    // Inference goes on: the server itself is within its profile.
    for x in ["1,2,3", "4,5,6"] {
        let answer = server.get(&format!("/predict?x={x}"));
        assert!(
            answer["y"].is_array() || answer["y"].is_number(),
            "{answer}"
        );
    }

    // Unlocked, the same shell runs again.
    let removed = profile_cli(&["enforce", &server.name, "--remove"]);
    assert!(removed.status.success(), "{removed:?}");
    // The agent reloads on its own; until then the shell is still killed.
    aiwatch_tests::wait_until("the unlocked shell runs", Duration::from_secs(60), || {
        (server.get("/spawn")["exit"] == 0).then_some(())
    })
    .expect("the shell runs once the lock is removed");
}
