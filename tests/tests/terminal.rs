//! The operator's terminal, used as a person would: `aiwatch alerts
//! --follow` and `aiwatch top` in tmux panes against a running agent and a
//! real ONNX model server that spawns a shell, typed at with `send-keys`
//! and read back with `capture-pane`; and `aiwatch inventory` as a table
//! and as JSON.

use std::{
    os::unix::fs::PermissionsExt,
    process::{Command, Stdio},
    time::Duration,
};

use aiwatch_tests::{
    ai::{discovered, OnnxServer},
    aiwatch_bin, http_get, wait_until, Agent, AgentOptions, TempDir, UnprivilegedBin,
};
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

    /// Types `text` literally (no key names).
    fn type_text(&self, text: &str) {
        let status = Command::new("tmux")
            .args(["send-keys", "-l", "-t", &self.session, text])
            .status()
            .expect("send-keys");
        assert!(status.success());
    }

    /// Waits until the screen passes `check`; panics with the screen if not.
    fn wait_screen(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        wait_until(what, Duration::from_secs(30), || {
            let screen = self.screen();
            check(&screen).then_some(screen)
        })
        .unwrap_or_else(|| panic!("{what}: not on the screen:\n{}", self.screen()))
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

/// The agent, and the stream socket the harness gives it.
fn agent_with_stream(extra: &str) -> (Agent, std::path::PathBuf) {
    let agent = Agent::start_with(AgentOptions {
        config: extra.to_string(),
        ..Default::default()
    });
    let socket = agent.dir.path().join("stream.sock");
    assert!(
        socket.exists(),
        "the agent serves its stream at {}",
        socket.display()
    );
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
    // It is the listener's document: the same keys, and the same entry for
    // the workload (other tests' workloads may come and go in between).
    let (_, body) = agent.http_get("/inventory");
    let served: Value = serde_json::from_str(&body).expect("/inventory is JSON");
    let keys = |v: &Value| {
        let mut keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(&piped), keys(&served));
    let ours = |v: &Value| {
        v["workloads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == "terminal-test-server")
            .cloned()
            .expect("the workload")
    };
    let (piped_entry, served_entry) = (ours(&piped), ours(&served));
    for field in ["id", "kind", "name", "first_seen", "processes"] {
        assert_eq!(piped_entry[field], served_entry[field], "{field}");
    }

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

/// The ONNX model server spawns a shell (its `/spawn` endpoint, as a
/// remote-code-execution would): `aiwatch alerts --follow` shows the alert
/// line, and `aiwatch top` shows the server's workload row and the alert,
/// filters by workload and kind, and quits on `q` with status 0 and the
/// terminal given back.
#[test]
fn top_and_follow_show_a_model_server_spawning_a_shell() {
    let (agent, socket) = agent_with_stream("");
    let server = OnnxServer::start("top");
    let workload = discovered(&agent, &server);
    assert_eq!(workload["name"], server.name.as_str(), "{workload}");
    let bin = aiwatch_bin();

    let follow = Tmux::start(
        "top-follow",
        &format!(
            "{} alerts --follow --socket {} --workload {}",
            bin.display(),
            socket.display(),
            server.name
        ),
    );
    // Marks the end of the top process: printed by the shell once it exits.
    let top = Tmux::start(
        "top",
        &format!(
            "{} top --listen {} --socket {}; echo top-exited-with=$?; sleep 60",
            bin.display(),
            agent.listen,
            socket.display()
        ),
    );
    let row_of = |screen: &str| {
        screen
            .lines()
            .map(|l| l.trim_matches(|c: char| c == '│' || c.is_whitespace()))
            .find(|l| l.starts_with(&server.name) && l.contains("inference"))
            .map(str::to_owned)
    };
    let screen = top.wait_screen("the server's workload row", |s| {
        s.contains("WORKLOAD") && s.contains("events") && row_of(s).is_some()
    });
    assert!(screen.contains("rules "), "health line:\n{screen}");
    println!("top, before the attack:\n{screen}");

    // The attack: the server runs a shell, until the alert is on both
    // screens (either reader may connect after a first spawn).
    let addr = format!("127.0.0.1:{}", server.port);
    let rule = "ai.workload.shell-spawn";
    wait_until("the alert on both screens", Duration::from_secs(60), || {
        assert_eq!(http_get(&addr, "/spawn").0, 200);
        std::thread::sleep(Duration::from_millis(700));
        let (t, f) = (top.screen(), follow.screen());
        (t.contains(rule) && f.contains(rule)).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "top:\n{}\nfollow:\n{}\nlog:\n{}",
            top.screen(),
            follow.screen(),
            agent.log()
        )
    });
    let followed = follow.screen();
    println!("alerts --follow:\n{followed}");
    let line = followed.lines().find(|l| l.contains(rule)).unwrap();
    assert!(
        line.contains(&server.name) && line.contains("HIGH"),
        "{line}"
    );
    assert!(
        !line.trim_start().starts_with('{'),
        "text, not JSON: {line}"
    );

    // A reader started after the alert still sees it: the latest alerts
    // come first, as `tail -f` shows the last lines.
    let late = Tmux::start(
        "late-follow",
        &format!(
            "{} alerts --follow --last 1 --socket {} --workload {}",
            bin.display(),
            socket.display(),
            server.name
        ),
    );
    let screen = late.wait_screen("the alert raised before the reader started", |s| {
        s.contains(rule)
    });
    let first = screen
        .lines()
        .find(|l| l.contains(rule))
        .unwrap()
        .trim_end();
    follow.wait_screen(
        "the late reader's first alert on the first reader's screen",
        |s| s.lines().any(|l| l.trim_end() == first),
    );

    // The row counts the alert within the minute once the agent's metrics
    // have it.
    let screen = top.wait_screen("the row's alert count", |s| {
        row_of(s).is_some_and(|row| row.split_whitespace().last().is_some_and(|n| n != "0"))
    });
    println!("top, after the attack:\n{screen}");
    let alert_line = screen
        .lines()
        .find(|l| l.contains(rule) && l.contains(&server.name))
        .unwrap_or_else(|| panic!("the alert line in top's pane:\n{screen}"));
    assert!(!alert_line.contains('{'), "{alert_line}");

    // Filter by a workload name that matches nothing, then by the server's.
    top.keys("/");
    top.type_text("no-such-workload");
    top.keys("Enter");
    let screen = top.wait_screen("the empty filter", |s| {
        s.contains("workload: no-such-workload") && s.contains("none match")
    });
    assert!(row_of(&screen).is_none(), "{screen}");
    assert!(
        !screen.contains(rule),
        "the alert pane is filtered too:\n{screen}"
    );
    top.keys("/");
    top.keys("Escape");
    // An Escape and the next key read together are one Alt-key to a
    // terminal: the next key waits until the Escape has cleared the filter.
    top.wait_screen("the cleared filter", |s| {
        s.contains("workload: all") && row_of(s).is_some()
    });
    top.keys("/");
    top.type_text(&server.name);
    top.keys("Enter");
    top.wait_screen("the filter on the server", |s| {
        s.contains(&format!("workload: {}", server.name)) && row_of(s).is_some()
    });
    // The kind key: inference keeps the row, training hides it.
    top.keys("k");
    top.wait_screen("kind inference", |s| {
        s.contains("kind: inference") && row_of(s).is_some()
    });
    top.keys("k");
    let screen = top.wait_screen("kind training", |s| s.contains("kind: training"));
    assert!(row_of(&screen).is_none(), "{screen}");
    top.keys("s");
    top.wait_screen("the next sort order", |s| s.contains("sort: egress"));

    top.keys("q");
    let screen = top.wait_screen("top's exit", |s| s.contains("top-exited-with="));
    assert!(screen.contains("top-exited-with=0"), "{screen}");
    assert!(
        !screen.contains("latest alerts") && !screen.contains("WORKLOAD"),
        "the terminal is given back (the alternate screen is gone):\n{screen}"
    );

    // In a pipe: one table, with the server's row.
    let out = Command::new(&bin)
        .args(["top", "--listen", &agent.listen])
        .output()
        .expect("top in a pipe");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    println!("top in a pipe:\n{text}");
    assert!(
        text.contains("WORKLOAD") && text.contains("rules "),
        "{text}"
    );
    let row = row_of(&text).unwrap_or_else(|| panic!("no row for the server:\n{text}"));
    assert!(
        row.split_whitespace().last().is_some_and(|n| n != "0"),
        "the table counts the alerts since the agent started: {row}"
    );
    assert!(!text.contains('\u{1b}'), "no terminal codes in a pipe");
}

/// `aiwatch alerts|events --follow --remote` through the listener: refused
/// without the bearer token or with a wrong one, and with it the alert and
/// event lines arrive, argv redacted as in every sink.
#[test]
fn the_remote_stream_reads_through_the_listener_with_its_token_only() {
    let dir = TempDir::new("remote-stream");
    let token = dir.path().join("stream.token");
    std::fs::write(&token, "remote-stream-test-token\n").unwrap();
    let wrong = dir.path().join("wrong.token");
    std::fs::write(&wrong, "not-the-token\n").unwrap();
    let (agent, _socket) = agent_with_stream(&format!(
        "remote_stream:\n  token_file: {}\n",
        token.display()
    ));
    let url = format!("http://{}", agent.listen);
    let follow = |topic: &str, extra: &[&str]| {
        let mut command = Command::new(aiwatch_bin());
        command
            .args([topic, "--follow", "--remote", &url, "--format", "json"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    };

    // Refused: no token, and the wrong one.
    let no_token = follow("alerts", &[]).output().unwrap();
    assert!(!no_token.status.success());
    let said = String::from_utf8_lossy(&no_token.stderr);
    assert!(said.contains("--token-file"), "{said}");
    let wrong_token = follow("alerts", &["--token-file", wrong.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!wrong_token.status.success());
    let said = String::from_utf8_lossy(&wrong_token.stderr);
    assert!(said.contains("HTTP 401"), "{said}");
    let (_, metrics) = agent.http_get("/metrics");
    assert!(
        metrics.contains("aiwatch_stream_refused_total{reason=\"unauthorized\"} 1"),
        "the refusal is counted"
    );

    // With the token: an alert (a secret read) and an event (an exec whose
    // argv holds a password) arrive.
    let token_arg = token.to_str().unwrap();
    let mut alerts = follow("alerts", &["--token-file", token_arg])
        .spawn()
        .unwrap();
    let mut events = follow("events", &["--token-file", token_arg, "--kind", "exec"])
        .spawn()
        .unwrap();
    let alert_lines = lines_of(alerts.stdout.take().unwrap());
    let event_lines = lines_of(events.stdout.take().unwrap());
    let home = TempDir::new("remote-home");
    let secret = home.path().join(".aws/credentials");
    std::fs::create_dir_all(secret.parent().unwrap()).unwrap();
    std::fs::write(&secret, "[default]\n").unwrap();
    let secret_path = secret.to_str().unwrap().to_owned();
    let marker = format!("remote-stream-marker-{}", std::process::id());
    let seen = wait_until(
        "the alert and the event through the listener",
        Duration::from_secs(60),
        || {
            Command::new("cat")
                .arg(&secret)
                .stdout(Stdio::null())
                .status()
                .unwrap();
            Command::new("/bin/sh")
                .args(["-c", "exit 0", &marker, "--password=hunter2"])
                .status()
                .unwrap();
            std::thread::sleep(Duration::from_millis(500));
            let alerts = alert_lines.lock().unwrap().clone();
            let events = event_lines.lock().unwrap().clone();
            let alert = alerts.iter().find(|l| l.contains(&secret_path)).cloned();
            let event = events.iter().find(|l| l.contains(&marker)).cloned();
            alert.zip(event)
        },
    );
    let _ = alerts.kill();
    let _ = events.kill();
    let (alert, event) = seen.unwrap_or_else(|| panic!("nothing came through:\n{}", agent.log()));
    let alert: Value = serde_json::from_str(&alert).expect("an alert as JSON");
    assert_eq!(alert["rule"], "ai.secret.read-by-unexpected-process");
    let event: Value = serde_json::from_str(&event).expect("an event as JSON");
    let argv = event["process"]["argv"].to_string();
    assert!(argv.contains("--password=[redacted]"), "{argv}");
    let everything = event_lines.lock().unwrap().join("\n");
    assert!(
        !everything.contains("hunter2"),
        "a secret crossed the stream"
    );
    let _ = alerts.wait();
    let _ = events.wait();

    // `aiwatch top` as nobody, who cannot open the stream socket: with the
    // token, its latest alerts come through the listener.
    let unprivileged = UnprivilegedBin::new();
    let shared = TempDir::new("remote-token");
    std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let readable_token = shared.path().join("token");
    std::fs::copy(&token, &readable_token).unwrap();
    std::fs::set_permissions(&readable_token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let top = Tmux::start(
        "remote-top",
        &format!(
            "setpriv --reuid=65534 --regid=65534 --clear-groups {} top --listen {} --token-file {}; echo top-exited-with=$?; sleep 60",
            unprivileged.path().display(),
            agent.listen,
            readable_token.display()
        ),
    );
    // A new secret each time: the rule throttles repeats of one file, and
    // top may connect after the first read. The line is cut at the pane's
    // width, so the reader's pid is what identifies it.
    let homes = TempDir::new("remote-top");
    let mut readers = Vec::new();
    wait_until(
        "the alert in top, as nobody",
        Duration::from_secs(60),
        || {
            let secret = homes
                .path()
                .join(format!("try{}/.aws/credentials", readers.len()));
            std::fs::create_dir_all(secret.parent().unwrap()).unwrap();
            std::fs::write(&secret, "[default]\n").unwrap();
            let mut cat = Command::new("cat")
                .arg(&secret)
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            readers.push(format!("/usr/bin/cat (pid {})", cat.id()));
            cat.wait().unwrap();
            std::thread::sleep(Duration::from_millis(700));
            let screen = top.screen();
            readers
                .iter()
                .any(|r| screen.contains(r.as_str()))
                .then_some(())
        },
    )
    .unwrap_or_else(|| panic!("no alert in top:\n{}", top.screen()));
    top.keys("q");
    let screen = top.wait_screen("top's exit", |s| s.contains("top-exited-with="));
    assert!(screen.contains("top-exited-with=0"), "{screen}");
}

/// Collects a child's output lines on a thread.
fn lines_of(out: std::process::ChildStdout) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use std::io::BufRead;
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}
