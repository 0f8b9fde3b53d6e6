use super::*;
use crate::{metrics::MetricsConfig, observe::readiness::NotReady};

fn supervisor() -> (Supervisor, FatalTasks, Arc<Readiness>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new(MetricsConfig::default()).unwrap());
    let readiness = Arc::new(Readiness::default());
    readiness.set_probes_attached(true);
    readiness.heartbeat();
    let (supervisor, fatal) = Supervisor::new(metrics.clone(), readiness.clone());
    (supervisor, fatal, readiness, metrics)
}

fn failures(metrics: &Metrics, task: &str) -> u64 {
    let text = metrics.encode_text().unwrap();
    let series = format!("aiwatch_task_failures_total{{task=\"{task}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map(|v| v.parse().unwrap())
        .unwrap_or(0)
}

#[tokio::test(flavor = "current_thread")]
async fn a_panic_is_logged_counted_and_named_in_readiness() {
    let (supervisor, _fatal, readiness, metrics) = supervisor();
    let output = supervisor
        .spawn("sink:alerts", Criticality::Degrading, async {
            if true {
                panic!("boom");
            }
        })
        .await
        .unwrap();
    assert!(output.is_none());
    assert_eq!(failures(&metrics, "sink:alerts"), 1);
    let err = readiness.check().unwrap_err();
    assert_eq!(
        err,
        NotReady::TasksFailed {
            tasks: vec!["sink:alerts"]
        }
    );
    assert!(err.to_string().contains("sink:alerts"));
}

#[tokio::test(flavor = "current_thread")]
async fn an_error_is_a_failure_and_a_fatal_task_stops_the_agent() {
    let (supervisor, mut fatal, readiness, metrics) = supervisor();
    supervisor
        .spawn("reader", Criticality::Fatal, async {
            Err::<(), _>(std::io::Error::other("ring gone"))
        })
        .await
        .unwrap();
    assert_eq!(fatal.recv().await, Some("reader"));
    assert_eq!(failures(&metrics, "reader"), 1);
    assert!(readiness.check().is_err());
}

#[tokio::test(flavor = "current_thread")]
async fn ending_early_is_a_failure_ending_at_shutdown_is_not() {
    let (supervisor, _fatal, readiness, metrics) = supervisor();
    supervisor
        .spawn("telemetry", Criticality::Degrading, async {})
        .await
        .unwrap();
    assert_eq!(failures(&metrics, "telemetry"), 1);
    assert!(readiness.check().is_err());

    let (supervisor, _fatal, readiness, metrics) = self::supervisor();
    supervisor.begin_shutdown();
    supervisor
        .spawn("telemetry", Criticality::Degrading, async {})
        .await
        .unwrap();
    assert_eq!(failures(&metrics, "telemetry"), 0);
    assert!(readiness.check().is_ok());
}

#[test]
fn stalls_are_judged_from_progress() {
    let window = Duration::from_secs(5);
    let mut watch = ProgressWatch::new(window);
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    let sample = |reader_drains, events, queued| Sample {
        reader_drains,
        events,
        queued,
    };
    assert_eq!(watch.observe(at(0), sample(1, 10, 0)), Verdict::default());
    // Idle host: the reader drains, nothing queued, no events: healthy.
    for s in 1..10 {
        assert_eq!(
            watch.observe(at(s), sample(1 + s, 10, 0)),
            Verdict::default()
        );
    }
    // Records wait and the event count stands still: the pipeline stalls
    // once the window has passed, not before.
    assert!(!watch.observe(at(10), sample(20, 10, 50)).pipeline);
    assert!(!watch.observe(at(14), sample(21, 10, 80)).pipeline);
    assert!(watch.observe(at(15), sample(22, 10, 90)).pipeline);
    // Progress clears it.
    assert!(!watch.observe(at(16), sample(23, 11, 90)).pipeline);
    // The reader stops draining.
    assert!(!watch.observe(at(17), sample(23, 12, 0)).reader);
    assert!(!watch.observe(at(21), sample(23, 12, 0)).reader);
    assert!(watch.observe(at(22), sample(23, 12, 0)).reader);
}
