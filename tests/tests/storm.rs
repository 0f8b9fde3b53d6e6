//! An exec storm: every exec and exit is delivered, or the loss is counted.

use std::{process::Command, time::Duration};

use aiwatch_tests::{get, kind_of, Agent, AgentOptions};

/// Execs in the storm; `AIWATCH_STORM_EXECS` overrides it (`cargo xtask vm`
/// runs a smaller storm: an exec under QEMU's TCG costs 20 to 50 times more).
const RUNS: u64 = 20_000;

fn runs() -> u64 {
    match std::env::var("AIWATCH_STORM_EXECS") {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("AIWATCH_STORM_EXECS={value:?} is not a number")),
        Err(_) => RUNS,
    }
}

/// Sums `aiwatch_events_lost_total{kind="<kind>"}` over every stage.
fn lost(metrics: &str, kind: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("aiwatch_events_lost_total{") && l.contains(&format!("kind=\"{kind}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[test]
fn exec_storm_is_delivered_or_counted() {
    // No rotation: the storm and the rest of the host's processes can pass
    // the default 100 MB, and the test reads only the current file.
    let agent = Agent::start_with(AgentOptions {
        config: "sink_max_bytes: 0".into(),
        ..AgentOptions::default()
    });
    let runs = runs();
    eprintln!("storm: {runs} execs");
    let script = format!("i=0; while [ $i -lt {runs} ]; do /bin/true; i=$((i+1)); done");
    let shell = Command::new("/bin/sh")
        .args(["-c", &script])
        .spawn()
        .unwrap();
    let shell_pid = shell.id() as u64;
    assert!(shell.wait_with_output().unwrap().status.success());

    // Let the pipeline drain and the telemetry publish the counters.
    let true_exe = std::fs::canonicalize("/bin/true")
        .unwrap()
        .display()
        .to_string();
    // Only the storm's own lines are parsed: the file also holds the rest of
    // the host's activity, which can be large on a busy machine.
    let marker = format!("\"ppid\":{shell_pid},");
    let counts = || {
        let text = std::fs::read_to_string(&agent.events_path).unwrap_or_default();
        let (mut execs, mut exits) = (0u64, 0u64);
        for line in text.lines().filter(|l| l.contains(&marker)) {
            let Ok(e) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            if get(&e, "process.ppid").as_u64() != Some(shell_pid)
                || get(&e, "process.exe").as_str() != Some(true_exe.as_str())
            {
                continue;
            }
            match kind_of(&e) {
                "exec" => execs += 1,
                "exit" => exits += 1,
                _ => {}
            }
        }
        (execs, exits)
    };
    // The pipeline has caught up once the sentinel's event is written; the
    // kernel's loss counters reach /metrics on the telemetry task's next
    // round, so poll those until they account for the storm (or time out,
    // and let the assertions below say what is missing).
    agent.sentinel();
    let (execs, exits) = counts();
    let settled = aiwatch_tests::wait_until("loss counters", Duration::from_secs(20), || {
        let (status, metrics) = agent.http_get("/metrics");
        assert_eq!(status, 200);
        let covered =
            execs + lost(&metrics, "exec") >= runs && exits + lost(&metrics, "exit") >= runs;
        covered.then_some(metrics)
    });
    let metrics = match settled {
        Some(metrics) => metrics,
        None => agent.http_get("/metrics").1,
    };
    let (lost_exec, lost_exit) = (lost(&metrics, "exec"), lost(&metrics, "exit"));
    eprintln!("storm: {execs} execs + {lost_exec} lost, {exits} exits + {lost_exit} lost");
    assert!(execs <= runs && exits <= runs);
    // Losses are host-wide (other processes' events may be lost too), so
    // delivered plus lost covers the storm, and nothing is missing silently.
    assert!(
        execs + lost_exec >= runs,
        "{execs} execs delivered, {lost_exec} lost"
    );
    assert!(
        exits + lost_exit >= runs,
        "{exits} exits delivered, {lost_exit} lost"
    );
    if lost_exec == 0 {
        assert_eq!(execs, runs);
    }
    if lost_exit == 0 {
        assert_eq!(exits, runs);
    }
    let (status, log) = agent.stop();
    assert!(status.success(), "{log}");
}
