//! The queue from the record sources (the ring-buffer reader, the periodic
//! TCP summaries and GPU reports) to the pipeline: bounded in records and in
//! bytes. A record count alone does not bound memory: an exec carries up to
//! a kilobyte of argv, a TLS capture up to its capture size, so a burst of
//! large records could hold far more than the DaemonSet's memory limit. A
//! record that does not fit either bound is dropped by its source and
//! counted there, as a full queue always was.

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use tokio::sync::mpsc;

use super::decode::Record;
use crate::{event::Kind, metrics::pipeline_stats::PipelineStats};

/// Bytes held by queued values, against a limit: shared by a queue's two
/// ends (the sinks' queues use it too).
#[derive(Debug)]
pub struct ByteBudget {
    used: AtomicUsize,
    limit: usize,
}

impl ByteBudget {
    pub fn new(limit: usize) -> Self {
        ByteBudget {
            used: AtomicUsize::new(0),
            limit,
        }
    }

    /// Takes `bytes` from the budget; `false`, taking nothing, when they
    /// would pass the limit.
    pub fn try_take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    pub fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// The bytes taken now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }
}

/// The queue had no room for a record, in count or in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueFull;

/// The sources' end: cheap to clone, never blocks.
#[derive(Clone, Debug)]
pub struct RecordSender {
    tx: mpsc::Sender<Record>,
    budget: Arc<ByteBudget>,
}

/// The pipeline's end.
#[derive(Debug)]
pub struct RecordReceiver {
    rx: mpsc::Receiver<Record>,
    budget: Arc<ByteBudget>,
}

/// A queue of at most `capacity` records holding at most `max_bytes`.
pub fn record_queue(capacity: usize, max_bytes: usize) -> (RecordSender, RecordReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let budget = Arc::new(ByteBudget::new(max_bytes));
    (
        RecordSender {
            tx,
            budget: budget.clone(),
        },
        RecordReceiver { rx, budget },
    )
}

impl RecordSender {
    /// Queues `record`, or drops it when the queue is full in records or
    /// in bytes (the caller counts the drop).
    pub fn try_send(&self, record: Record) -> Result<(), QueueFull> {
        let bytes = record.queued_bytes();
        if !self.budget.try_take(bytes) {
            return Err(QueueFull);
        }
        self.tx.try_send(record).map_err(|_| {
            self.budget.give_back(bytes);
            QueueFull
        })
    }

    /// Queues `record`, or counts it in `queue_dropped` under its kind when
    /// the queue is full: what every source does with a record the
    /// pipeline has no room for. Returns whether it was queued.
    pub fn send_or_count(&self, record: Record, stats: &PipelineStats) -> bool {
        let kind = Kind::from(record.common.kind);
        let queued = self.try_send(record).is_ok();
        if !queued {
            stats.queue_dropped.add(Some(kind), 1);
        }
        queued
    }

    /// A handle that does not keep the queue open, for watching its depth.
    pub fn downgrade(&self) -> mpsc::WeakSender<Record> {
        self.tx.downgrade()
    }
}

impl RecordReceiver {
    /// Waits for records and moves up to `limit` of them into `buffer`;
    /// 0 once every sender is gone.
    pub async fn recv_many(&mut self, buffer: &mut Vec<Record>, limit: usize) -> usize {
        let start = buffer.len();
        let received = self.rx.recv_many(buffer, limit).await;
        let bytes: usize = buffer[start..].iter().map(Record::queued_bytes).sum();
        self.budget.give_back(bytes);
        received
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::decode::{
        clear_text::{ClearText, Direction, TextSource},
        Common, Fork, Payload,
    };
    use aiwatch_common::EventKind;

    fn record(payload: Payload) -> Record {
        Record {
            common: Common {
                kind: EventKind::Fork,
                flags: 0,
                ktime_ns: 1,
                pid: 1,
                tid: 1,
                uid: 0,
                gid: 0,
                cgroup_id: 0,
                comm: "x".into(),
            },
            payload,
        }
    }

    fn small() -> Record {
        record(Payload::Fork(Fork {
            child_pid: 2,
            child_start_boottime_ns: 0,
        }))
    }

    fn large(bytes: usize) -> Record {
        record(Payload::ClearText(Box::new(ClearText {
            connection: 1,
            direction: Direction::Sent,
            source: TextSource::Tls,
            peer: None,
            len: bytes as u32,
            data: vec![b'a'; bytes],
            truncated: false,
            seq: None,
        })))
    }

    #[tokio::test]
    async fn large_records_are_bounded_by_bytes_and_the_budget_comes_back() {
        let (tx, mut rx) = record_queue(1000, 64 * 1024);
        // Three 16 KiB captures fit, a fourth does not, while small records
        // still do: the bound is on bytes, not on the count.
        for _ in 0..3 {
            assert!(tx.try_send(large(16 * 1024)).is_ok());
        }
        assert!(tx.try_send(large(16 * 1024)).is_err());
        assert!(tx.try_send(small()).is_ok());
        let mut buffer = Vec::new();
        assert_eq!(rx.recv_many(&mut buffer, 100).await, 4);
        // Drained: the budget is whole again.
        for _ in 0..3 {
            assert!(tx.try_send(large(16 * 1024)).is_ok());
        }
    }

    #[tokio::test]
    async fn a_full_count_gives_the_bytes_back() {
        let (tx, mut rx) = record_queue(2, 1 << 20);
        assert!(tx.try_send(small()).is_ok());
        assert!(tx.try_send(small()).is_ok());
        assert!(tx.try_send(small()).is_err());
        let mut buffer = Vec::new();
        rx.recv_many(&mut buffer, 10).await;
        assert_eq!(rx.budget.used.load(Ordering::Acquire), 0);
    }
}
