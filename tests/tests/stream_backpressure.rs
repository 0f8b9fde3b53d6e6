//! A reader of the live stream that stops reading (SIGSTOP) while the host
//! runs an exec storm: its lines are dropped and counted
//! (`aiwatch_stream_dropped_total`), it is told how many when it reads
//! again, and the events file, the other sink, misses nothing.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use aiwatch_tests::{aiwatch_bin, get, kind_of, Agent, AgentOptions};

/// Execs in the storm: more lines than a reader's queue (4,096) and its
/// socket buffer hold, three events each (fork, exec, exit).
const EXECS: u64 = 6_000;

fn metric(agent: &Agent, name: &str) -> Option<f64> {
    let (status, text) = agent.http_get("/metrics");
    assert_eq!(status, 200);
    text.lines()
        .find(|line| line.starts_with(name) && line[name.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[test]
fn a_stopped_stream_reader_loses_only_its_own_lines() {
    let agent = Agent::start_with(AgentOptions {
        config: "sink_max_bytes: 0".into(),
        ..AgentOptions::default()
    });
    let socket = agent.dir.path().join("stream.sock");
    let mut follower = Command::new(aiwatch_bin())
        .args(["events", "--follow", "--socket"])
        .arg(&socket)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the follower");
    // What the follower tells its user (drops among them), on stderr.
    let (notices_tx, notices) = mpsc::channel::<String>();
    let stderr = follower.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if notices_tx.send(line).is_err() {
                break;
            }
        }
    });
    // Every line the follower prints, read on a thread of its own.
    let (lines_tx, lines) = mpsc::channel::<String>();
    let stdout = follower.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // Connected once it has printed a line (the host's own activity).
    agent.sentinel();
    lines
        .recv_timeout(Duration::from_secs(30))
        .expect("the follower printed nothing");
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(follower.id() as i32, libc::SIGSTOP) };

    let script = format!("i=0; while [ $i -lt {EXECS} ]; do /bin/true; i=$((i+1)); done");
    let shell = Command::new("/bin/sh")
        .args(["-c", &script])
        .spawn()
        .unwrap();
    let shell_pid = shell.id() as u64;
    assert!(shell.wait_with_output().unwrap().status.success());
    agent.sentinel();

    // The events file has every exec of the storm.
    let marker = format!("\"ppid\":{shell_pid},");
    let text = std::fs::read_to_string(&agent.events_path).expect("events file");
    let execs = text
        .lines()
        .filter(|line| line.contains(&marker))
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|e| kind_of(e) == "exec" && get(e, "process.ppid").as_u64() == Some(shell_pid))
        .count() as u64;
    let dropped = aiwatch_tests::wait_until("the stream's drops", Duration::from_secs(20), || {
        metric(&agent, "aiwatch_stream_dropped_total").filter(|&n| n > 0.0)
    });
    let sink_lost = metric(
        &agent,
        "aiwatch_events_lost_total{kind=\"exec\",stage=\"sink\"}",
    );
    assert!(
        dropped.is_some(),
        "the stopped reader's drops were not counted"
    );
    assert_eq!(
        execs, EXECS,
        "the events file missed execs (sink losses: {sink_lost:?})"
    );

    // Read again: the reader is told what it missed, in one sentence.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(follower.id() as i32, libc::SIGCONT) };
    let told = aiwatch_tests::wait_until("the drop notice", Duration::from_secs(60), || {
        // Keep the event lines flowing so that the follower is not blocked.
        while lines.try_recv().is_ok() {}
        notices
            .try_recv()
            .ok()
            .filter(|line| line.contains("lines were dropped"))
    });
    let _ = follower.kill();
    let _ = follower.wait();
    let told = told.expect("the follower was never told of its drops");
    let count: u64 = told
        .split_whitespace()
        .find_map(|word| word.parse().ok())
        .expect("a number of lines");
    assert!(count > 0, "{told}");
}
