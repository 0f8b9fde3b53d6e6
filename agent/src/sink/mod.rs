//! Sinks: where events and alerts leave the agent, as JSON lines.
//!
//! Architecture invariant: only sinks serialize. The pipeline hands values
//! over a bounded channel; a full channel drops the value and counts it, so
//! a slow disk or a stuck pipe never stalls event processing.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::{
    alert::Alert,
    event::{Event, Kind},
    metrics::pipeline_stats::PipelineStats,
};

/// What a sink carries decides where its losses are counted: events by
/// kind, alerts as `kind="alert"`.
pub trait SinkItem {
    fn count_lost(stats: &PipelineStats, kind: Option<Kind>, lost: u64);
}

impl SinkItem for Arc<Event> {
    fn count_lost(stats: &PipelineStats, kind: Option<Kind>, lost: u64) {
        stats.sink_dropped.add(kind, lost);
    }
}

impl SinkItem for Arc<Alert> {
    fn count_lost(stats: &PipelineStats, _kind: Option<Kind>, lost: u64) {
        stats
            .alerts_dropped
            .fetch_add(lost, std::sync::atomic::Ordering::Relaxed);
    }
}

pub mod file;
pub mod stream;
pub mod syslog;
pub mod webhook;

pub use file::{LineWriter, LostLines, OpenError, Target};

/// Opens a sink target: `-` is standard output, anything else a file,
/// rotated past `max_bytes` keeping `keep` old files, readable by `group`
/// (a name or number) when given.
pub fn open_target(
    spec: &str,
    max_bytes: u64,
    keep: u32,
    group: Option<&str>,
) -> Result<LineWriter, OpenError> {
    let gid = match group {
        Some(name) => Some(
            file::resolve_group(name).ok_or_else(|| OpenError::UnknownGroup {
                path: spec.to_owned(),
                group: name.to_owned(),
            })?,
        ),
        None => None,
    };
    LineWriter::open(Target::parse(spec, max_bytes, keep).with_group(gid))
}

/// The sending half: cheap to clone, never blocks.
#[derive(Clone)]
pub struct SinkSender<T> {
    tx: mpsc::Sender<T>,
    stats: Arc<PipelineStats>,
}

impl<T: SinkItem> SinkSender<T> {
    pub fn new(tx: mpsc::Sender<T>, stats: Arc<PipelineStats>) -> Self {
        Self { tx, stats }
    }

    /// Queues `value`; when the sink is behind, drops it and counts the drop.
    pub fn send(&self, value: T, kind: Option<Kind>) {
        if self.tx.try_send(value).is_err() {
            T::count_lost(&self.stats, kind, 1);
        }
    }
}

/// Queue capacity of the events file's sink, in events.
pub const EVENT_SINK_CAPACITY: usize = 65_536;
/// Queue capacity of the alerts file's sink, in alerts.
pub const ALERT_SINK_CAPACITY: usize = 16_384;

/// Starts a sink task writing every value it receives as one JSON line. The
/// task ends, flushing, when every sender is dropped.
pub fn spawn<T: Serialize + SinkItem + Send + 'static>(
    mut writer: LineWriter,
    capacity: usize,
    stats: Arc<PipelineStats>,
) -> (SinkSender<T>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<T>(capacity);
    let task_stats = stats.clone();
    let handle = tokio::task::spawn_blocking(move || {
        // The writer warns (rate-limited); every line lost is counted here.
        let count = |result: Result<(), LostLines>| {
            if let Err(lost) = result {
                T::count_lost(&task_stats, None, lost.lines);
            }
        };
        while let Some(value) = rx.blocking_recv() {
            count(writer.write_line(&value));
            // Flush when the queue is drained: batches under load, prompt when idle.
            if rx.is_empty() {
                count(writer.flush());
            }
        }
        count(writer.flush());
    });
    (SinkSender { tx, stats }, handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_queue_drops_and_counts() {
        let stats = Arc::new(PipelineStats::new());
        let (tx, _rx) = mpsc::channel::<Arc<Event>>(1);
        let sender = SinkSender {
            tx,
            stats: stats.clone(),
        };
        let event = Arc::new(Event::default());
        sender.send(event.clone(), Some(Kind::Exec));
        sender.send(event.clone(), Some(Kind::Exec));
        sender.send(event, Some(Kind::Exit));
        assert_eq!(stats.sink_dropped.get(Some(Kind::Exec)), 1);
        assert_eq!(stats.sink_dropped.get(Some(Kind::Exit)), 1);
        // Alerts are counted apart, as kind="alert".
        let (tx, _rx) = mpsc::channel::<Arc<Alert>>(1);
        let alerts = SinkSender {
            tx,
            stats: stats.clone(),
        };
        let alert = Arc::new(crate::alert::Alert::sample(
            "r",
            crate::alert::Severity::High,
        ));
        alerts.send(alert.clone(), None);
        alerts.send(alert, None);
        assert_eq!(
            stats
                .alerts_dropped
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        assert_eq!(stats.sink_dropped.total(), 2);
    }

    #[test]
    fn an_unknown_group_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.jsonl");
        let err = open_target(path.to_str().unwrap(), 0, 0, Some("no-such-group-here"))
            .err()
            .unwrap();
        assert!(err.to_string().contains("no-such-group-here"), "{err}");
        assert!(!path.exists());
    }
}
