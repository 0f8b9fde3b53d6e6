//! Nothing dies unseen: a task made to panic (debug builds honour
//! `AIWATCH_TEST_PANIC_TASK`) is logged, counted and named by `/readyz`; a
//! dead ring-buffer reader stops the agent with a non-zero status so that
//! it is restarted instead of running blind.

use std::time::Duration;

use aiwatch_tests::{wait_until, Agent, AgentOptions};

fn agent_with_panic_in(task: &str) -> Agent {
    Agent::start_with(AgentOptions {
        env: vec![("AIWATCH_TEST_PANIC_TASK".into(), task.into())],
        ..Default::default()
    })
}

#[test]
fn a_dead_sink_turns_readiness_red_with_its_name_and_is_counted() {
    let agent = agent_with_panic_in("sink:alerts");
    let (status, body) = wait_until("readyz names the sink", Duration::from_secs(20), || {
        let (status, body) = agent.http_get("/readyz");
        body.contains("sink:alerts").then_some((status, body))
    })
    .unwrap_or_else(|| panic!("/readyz never named sink:alerts; log:\n{}", agent.log()));
    assert_eq!(status, 503, "{body}");
    agent.wait_for_log("task sink:alerts failed", Duration::from_secs(5));
    let (_, metrics) = agent.http_get("/metrics");
    assert!(
        metrics.contains("aiwatch_task_failures_total{task=\"sink:alerts\"} 1"),
        "{metrics}"
    );
    // The rest keeps working: the agent still answers and stops cleanly.
    assert_eq!(agent.http_get("/healthz").0, 200);
    let (status, log) = agent.stop();
    assert!(status.success(), "exit status {status:?}\n{log}");
}

#[test]
fn a_dead_reader_stops_the_agent_with_a_failure_status() {
    let agent = agent_with_panic_in("reader");
    let (status, log) = agent.wait_exit(Duration::from_secs(30));
    assert!(!status.success(), "exit status {status:?}\n{log}");
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("task reader failed"), "{log}");
    assert!(log.contains("its reader task died"), "{log}");
}

/// Under systemd (`Type=notify`, `WatchdogSec`): `READY=1` once attached,
/// `WATCHDOG=1` pings while alive, none while frozen, `STOPPING=1` at the end.
#[test]
fn systemd_hears_ready_and_watchdog_pings_that_stop_when_frozen() {
    use std::os::unix::net::UnixDatagram;
    let dir = aiwatch_tests::TempDir::new("notify");
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let agent = Agent::start_with(AgentOptions {
        env: vec![
            ("NOTIFY_SOCKET".into(), path.display().to_string()),
            ("WATCHDOG_USEC".into(), "400000".into()),
        ],
        ..Default::default()
    });
    // Collects what arrives within `window`.
    let collect = |window: Duration| {
        let deadline = std::time::Instant::now() + window;
        let mut messages = Vec::new();
        let mut buf = [0u8; 256];
        while std::time::Instant::now() < deadline {
            if let Ok(n) = socket.recv(&mut buf) {
                messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
        }
        messages
    };
    let first = collect(Duration::from_secs(2));
    assert_eq!(
        first.first().map(String::as_str),
        Some("READY=1"),
        "{first:?}"
    );
    let pings = first.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(
        pings >= 3,
        "{pings} pings in 2 s at a 200 ms period: {first:?}"
    );

    agent.signal(libc::SIGSTOP);
    collect(Duration::from_millis(300)); // a ping already in flight
    let frozen = collect(Duration::from_secs(1));
    agent.signal(libc::SIGCONT);
    assert!(
        frozen.iter().all(|m| m != "WATCHDOG=1"),
        "a frozen agent pinged: {frozen:?}"
    );
    let thawed = collect(Duration::from_secs(1));
    assert!(thawed.iter().any(|m| m == "WATCHDOG=1"), "{thawed:?}");

    let (status, log) = agent.stop();
    assert!(status.success(), "{status:?}\n{log}");
    let last = collect(Duration::from_millis(500));
    assert!(last.iter().any(|m| m == "STOPPING=1"), "{last:?}");
}
