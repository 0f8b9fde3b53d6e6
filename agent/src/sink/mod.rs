//! Sinks: where events and alerts leave the agent, as JSON lines.
//!
//! Architecture invariant: only sinks serialize. The pipeline hands values
//! over a channel bounded in values and in bytes (an event with a long argv
//! or LLM text holds far more than a short one); a full channel drops the
//! value and counts it, so a slow disk or a stuck pipe never stalls event
//! processing, and a burst of large events cannot outgrow the agent's
//! memory limit.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::{
    alert::Alert,
    event::{Event, Kind},
    ingest::queue::ByteBudget,
    metrics::pipeline_stats::PipelineStats,
};

/// What a sink carries decides where its losses are counted (events by
/// kind, alerts as `kind="alert"`) and how many bytes it holds in a queue.
pub trait SinkItem {
    fn count_lost(stats: &PipelineStats, kind: Option<Kind>, lost: u64);
    fn held_bytes(&self) -> usize;
}

impl SinkItem for Arc<Event> {
    fn count_lost(stats: &PipelineStats, kind: Option<Kind>, lost: u64) {
        stats.sink_dropped.add(kind, lost);
    }

    fn held_bytes(&self) -> usize {
        Event::held_bytes(self)
    }
}

impl SinkItem for Arc<Alert> {
    fn count_lost(stats: &PipelineStats, _kind: Option<Kind>, lost: u64) {
        stats
            .alerts_dropped
            .fetch_add(lost, std::sync::atomic::Ordering::Relaxed);
    }

    fn held_bytes(&self) -> usize {
        Alert::held_bytes(self)
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
    budget: Arc<ByteBudget>,
    stats: Arc<PipelineStats>,
}

/// The sink's half: hands the bytes of each value back as it takes it.
pub struct SinkReceiver<T> {
    rx: mpsc::Receiver<T>,
    budget: Arc<ByteBudget>,
}

/// A sink's queue of at most `capacity` values holding at most `max_bytes`.
pub fn sink_queue<T: SinkItem>(
    capacity: usize,
    max_bytes: usize,
    stats: Arc<PipelineStats>,
) -> (SinkSender<T>, SinkReceiver<T>) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let budget = Arc::new(ByteBudget::new(max_bytes));
    (
        SinkSender {
            tx,
            budget: budget.clone(),
            stats,
        },
        SinkReceiver { rx, budget },
    )
}

impl<T: SinkItem> SinkSender<T> {
    /// Queues `value`; when the sink is behind (in values or in bytes),
    /// drops it and counts the drop.
    pub fn send(&self, value: T, kind: Option<Kind>) {
        let bytes = value.held_bytes();
        if !self.budget.try_take(bytes) {
            T::count_lost(&self.stats, kind, 1);
            return;
        }
        if self.tx.try_send(value).is_err() {
            self.budget.give_back(bytes);
            T::count_lost(&self.stats, kind, 1);
        }
    }
}

impl<T: SinkItem> SinkReceiver<T> {
    /// The next value, from a blocking worker; `None` once every sender is
    /// gone.
    pub fn blocking_recv(&mut self) -> Option<T> {
        let value = self.rx.blocking_recv()?;
        self.budget.give_back(value.held_bytes());
        Some(value)
    }

    /// The next value; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<T> {
        let value = self.rx.recv().await?;
        self.budget.give_back(value.held_bytes());
        Some(value)
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

/// Queue capacity of the events file's sink, in events.
pub const EVENT_SINK_CAPACITY: usize = 65_536;
/// Bytes the events file's sink may hold queued.
pub const EVENT_SINK_MAX_BYTES: usize = 64 << 20;
/// Queue capacity of each alert sink (file, webhook, syslog), in alerts.
pub const ALERT_SINK_CAPACITY: usize = 16_384;
/// Bytes each alert sink may hold queued.
pub const ALERT_SINK_MAX_BYTES: usize = 16 << 20;

/// Starts a sink task writing every value it receives as one JSON line. The
/// task ends, flushing, when every sender is dropped.
pub fn spawn<T: Serialize + SinkItem + Send + 'static>(
    mut writer: LineWriter,
    (capacity, max_bytes): (usize, usize),
    stats: Arc<PipelineStats>,
) -> (SinkSender<T>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = sink_queue::<T>(capacity, max_bytes, stats.clone());
    let task_stats = stats;
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
    (tx, handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_queue_drops_and_counts() {
        let stats = Arc::new(PipelineStats::new());
        let (sender, _rx) = sink_queue::<Arc<Event>>(1, usize::MAX, stats.clone());
        let event = Arc::new(Event::default());
        sender.send(event.clone(), Some(Kind::Exec));
        sender.send(event.clone(), Some(Kind::Exec));
        sender.send(event, Some(Kind::Exit));
        assert_eq!(stats.sink_dropped.get(Some(Kind::Exec)), 1);
        assert_eq!(stats.sink_dropped.get(Some(Kind::Exit)), 1);
        // Alerts are counted apart, as kind="alert".
        let (alerts, _rx) = sink_queue::<Arc<Alert>>(1, usize::MAX, stats.clone());
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

    /// A flood of large events fills the byte bound long before the count
    /// bound: the queue never holds more than its bytes, every drop is
    /// counted, and the budget comes back as the sink takes them.
    #[tokio::test(flavor = "current_thread")]
    async fn a_flood_of_large_events_is_bounded_in_bytes() {
        let stats = Arc::new(PipelineStats::new());
        let max_bytes = 1 << 20;
        let (sender, mut rx) = sink_queue::<Arc<Event>>(65_536, max_bytes, stats.clone());
        let large = Arc::new(Event {
            kind: Kind::Exec,
            process: crate::event::Process {
                argv: vec!["a".repeat(1024); 64].into(),
                ..crate::event::Process::default()
            },
            ..Event::default()
        });
        let each = large.held_bytes();
        assert!(each > 64 * 1024);
        for _ in 0..1000 {
            sender.send(large.clone(), Some(Kind::Exec));
        }
        let fits = max_bytes / each;
        assert!(sender.budget.used() <= max_bytes);
        assert_eq!(
            stats.sink_dropped.get(Some(Kind::Exec)),
            (1000 - fits) as u64
        );
        for _ in 0..fits {
            rx.recv().await.expect("a queued event");
        }
        assert!(rx.is_empty());
        assert_eq!(sender.budget.used(), 0, "every byte came back");
        sender.send(large, Some(Kind::Exec));
        assert_eq!(sender.budget.used(), each);
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
