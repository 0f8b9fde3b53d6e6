//! Counters of what the user-space pipeline saw and lost.
//!
//! Architecture invariant: every drop is counted. The kernel counts its own
//! losses (`STATS` map); these are the agent's: records the decoder
//! rejected, events the queue had no room for, and lines a sink could not
//! write. They are atomics so that the HTTP listener reads them without
//! touching the pipeline.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::event::Kind;

/// Per-kind counters, plus one slot for records of unknown kind.
pub struct KindCounters {
    by_kind: [AtomicU64; Kind::ALL.len() + 1],
}

impl KindCounters {
    const UNKNOWN: usize = Kind::ALL.len();

    pub fn new() -> Self {
        Self {
            by_kind: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    pub fn add(&self, kind: Option<Kind>, n: u64) {
        let slot = kind.map(Kind::index).unwrap_or(Self::UNKNOWN);
        self.by_kind[slot].fetch_add(n, Relaxed);
    }

    pub fn get(&self, kind: Option<Kind>) -> u64 {
        self.by_kind[kind.map(Kind::index).unwrap_or(Self::UNKNOWN)].load(Relaxed)
    }

    pub fn total(&self) -> u64 {
        self.by_kind.iter().map(|c| c.load(Relaxed)).sum()
    }
}

impl Default for KindCounters {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Default)]
pub struct PipelineStats {
    /// Events that went through the pipeline.
    pub events: KindCounters,
    /// Records the decoder rejected (short, unknown, bad size).
    pub decode_errors: KindCounters,
    /// Events dropped because the pipeline queue was full.
    pub queue_dropped: KindCounters,
    /// Events a sink dropped (full queue or write error), by kind.
    pub sink_dropped: KindCounters,
    /// Alerts a sink dropped (full queue, write error, failed POST):
    /// exported as `kind="alert"`.
    pub alerts_dropped: AtomicU64,
    /// Changes through relative names the kernel passed untested whose
    /// resolved path has no class: filtered in user space.
    pub relative_filtered: KindCounters,
    /// Boot-clock time of the last event processed (0 before the first).
    pub last_event_ktime_ns: AtomicU64,
    /// Times the ring-buffer reader drained the ring: its liveness, read by
    /// the supervisor (it drains at least every 10 ms while alive).
    pub reader_drains: AtomicU64,
}

impl PipelineStats {
    pub fn new() -> Self {
        Self::default()
    }
}
