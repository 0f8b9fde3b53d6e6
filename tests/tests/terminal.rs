//! The operator's terminal, used as a person would: `aiwatch alerts
//! --follow` in a tmux pane against a running agent, read back with
//! `capture-pane`, and `aiwatch inventory` as a table and as JSON.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use aiwatch_tests::{aiwatch_bin, wait_until, Agent, AgentOptions, TempDir};
use serde_json::Value;

/// A detached tmux session running one command; killed when dropped.
struct Tmux {
    session: String,
}

impl Tmux {
    fn start(label: &str, command: &str) -> Tmux {
        let session = format!("aiwatch-{label}-{}", std::process::id());
        let status = Command::new("tmux")
            .args(["new-session", "-d", "-s", &session, "-x", "220", "-y", "50"])
            .arg(command)
            .status()
            .expect("tmux (provisioned by cargo xtask test)");
        assert!(status.success(), "tmux new-session");
        Tmux { session }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-J", "-t", &self.session])
            .output()
            .expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &str) {
        let status = Command::new("tmux")
            .args(["send-keys", "-t", &self.session, keys])
            .status()
            .expect("send-keys");
        assert!(status.success());
    }

    fn alive(&self) -> bool {
        Command::new("tmux")
            .args(["has-session", "-t", &self.session])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .stderr(Stdio::null())
            .status();
    }
}

fn agent_with_stream(extra: &str) -> (Agent, std::path::PathBuf) {
    let run = TempDir::new("stream");
    let socket = run.path().join("run/stream.sock");
    let agent = Agent::start_with(AgentOptions {
        config: format!("stream_socket: {}\n{extra}", socket.display()),
        ..Default::default()
    });
    std::mem::forget(run);
    (agent, socket)
}

#[test]
fn alerts_follow_in_a_terminal_shows_one_line_per_alert_and_quits_on_ctrl_c() {
    let (agent, socket) = agent_with_stream("");
    let home = TempDir::new("follow-home");
    let secret = home.path().join(".aws/credentials");
    std::fs::create_dir_all(secret.parent().unwrap()).unwrap();
    std::fs::write(&secret, "[default]\n").unwrap();

    let tmux = Tmux::start(
        "follow",
        &format!(
            "{} alerts --follow --socket {}",
            aiwatch_bin().display(),
            socket.display()
        ),
    );
    // The reader may connect after a first read: read the secret until its
    // alert shows on the screen.
    let screen = wait_until(
        "the alert line on the screen",
        Duration::from_secs(60),
        || {
            let status = Command::new("cat")
                .arg(&secret)
                .stdout(Stdio::null())
                .status()
                .expect("cat");
            assert!(status.success());
            std::thread::sleep(Duration::from_millis(500));
            let screen = tmux.screen();
            screen.contains(secret.to_str().unwrap()).then_some(screen)
        },
    )
    .unwrap_or_else(|| {
        panic!(
            "no alert line; screen:\n{}\nlog:\n{}",
            tmux.screen(),
            agent.log()
        )
    });
    let line = screen
        .lines()
        .find(|l| l.contains(secret.to_str().unwrap()))
        .unwrap();
    assert!(line.contains("HIGH"), "{line}");
    assert!(
        line.contains("ai.secret.read-by-unexpected-process"),
        "{line}"
    );
    assert!(
        !line.trim_start().starts_with('{'),
        "text, not JSON: {line}"
    );

    tmux.keys("C-c");
    assert!(
        wait_until("the follower to exit", Duration::from_secs(10), || (!tmux
            .alive())
        .then_some(()))
        .is_some(),
        "the session is still there after Ctrl-C:\n{}",
        tmux.screen()
    );
}

#[test]
fn inventory_prints_a_table_on_a_terminal_and_the_listener_json_in_a_pipe() {
    let (agent, _socket) = agent_with_stream(
        "workloads:\n  declared:\n    - name: terminal-test-server\n      kind: inference\n      match:\n        argv: \"*terminal-test-server*\"\n",
    );
    let mut server = Command::new("bash")
        .args(["-c", "exec -a terminal-test-server sleep 120"])
        .spawn()
        .expect("sleep");
    wait_until("the declared workload", Duration::from_secs(30), || {
        let (_, body) = agent.http_get("/inventory");
        body.contains("terminal-test-server").then_some(())
    })
    .unwrap_or_else(|| panic!("no workload in /inventory:\n{}", agent.log()));

    // In a pipe: the listener's JSON.
    let out = Command::new(aiwatch_bin())
        .args(["inventory", "--listen", &agent.listen])
        .output()
        .expect("inventory");
    assert!(out.status.success());
    let piped: Value = serde_json::from_slice(&out.stdout).expect("JSON in a pipe");
    let names: Vec<&str> = piped["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["name"].as_str())
        .collect();
    assert!(names.contains(&"terminal-test-server"), "{names:?}");

    // On a terminal: the table, with the workload's row.
    let tmux = Tmux::start(
        "inventory",
        &format!(
            "{} inventory --listen {}; sleep 30",
            aiwatch_bin().display(),
            agent.listen
        ),
    );
    let screen = wait_until("the table", Duration::from_secs(20), || {
        let screen = tmux.screen();
        screen.contains("terminal-test-server").then_some(screen)
    })
    .unwrap_or_else(|| panic!("no table:\n{}", tmux.screen()));
    assert!(
        screen.contains("NAME") && screen.contains("KIND"),
        "{screen}"
    );
    let row = screen
        .lines()
        .find(|l| l.contains("terminal-test-server"))
        .unwrap();
    assert!(row.contains("inference"), "{row}");
    let _ = server.kill();
    let _ = server.wait();
}
