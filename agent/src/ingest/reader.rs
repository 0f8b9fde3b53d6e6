//! The ring-buffer reader: one task, the BPF ring buffer behind `AsyncFd`.
//!
//! The kernel wakes the reader only once a backlog builds up
//! (`ebpf/src/emit.rs`); below that the reader drains the ring every
//! [`POLL_INTERVAL`]. One wake-up per record would cost an interrupt and two
//! context switches per event; a timer costs a few wake-ups per second, and
//! delays an event by at most the interval.
//!
//! It decodes each record where it lies in the ring (no copy before
//! validation), and hands the typed record to the pipeline over a bounded
//! queue. A full queue drops the record and counts it: the reader never
//! waits on the pipeline, so the kernel's buffer keeps draining.

use std::{
    sync::{atomic::Ordering::Relaxed, Arc},
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use tokio::{io::unix::AsyncFd, sync::watch};

use crate::{
    event::Kind,
    ingest::{decode, queue::RecordSender},
    metrics::pipeline_stats::PipelineStats,
};

/// How often the ring is drained when the kernel does not wake the reader.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Reads until `shutdown` turns true, then drains what is left and returns.
pub async fn run(
    ring: RingBuf<MapData>,
    queue: RecordSender,
    stats: Arc<PipelineStats>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    // SAFETY: the ring buffer owns its fd and keeps it open for as long as
    // the AsyncFd that owns the ring buffer lives.
    let mut ring = unsafe { AsyncFd::register(ring) }.map_err(|err| err.into_parts().1)?;
    let mut poll = tokio::time::interval(POLL_INTERVAL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                drain(guard.get_inner_mut(), &queue, &stats);
                guard.clear_ready();
            }
            _ = poll.tick() => drain(ring.get_mut(), &queue, &stats),
            _ = shutdown.changed() => {
                drain(ring.get_mut(), &queue, &stats);
                return Ok(());
            }
        }
    }
}

fn drain(ring: &mut RingBuf<MapData>, queue: &RecordSender, stats: &PipelineStats) {
    stats.reader_drains.fetch_add(1, Relaxed);
    while let Some(item) = ring.next() {
        match decode::decode(&item) {
            Ok(record) => {
                stats
                    .last_event_ktime_ns
                    .store(record.common.ktime_ns, Relaxed);
                queue.send_or_count(record, stats);
            }
            Err(err) => {
                stats.decode_errors.add(err.kind().map(Kind::from), 1);
                log::debug!("rejected a kernel record: {err}");
            }
        }
    }
}
