//! The ring-buffer reader: one task, the BPF ring buffer behind `AsyncFd`.
//!
//! It decodes each record where it lies in the ring (no copy before
//! validation), and hands the typed record to the pipeline over a bounded
//! queue. A full queue drops the record and counts it: the reader never
//! waits on the pipeline, so the kernel's buffer keeps draining.

use std::sync::{atomic::Ordering::Relaxed, Arc};

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::unix::AsyncFd,
    sync::{mpsc, watch},
};

use crate::{
    decode::{self, Record},
    enrich::kind_of,
    stats::PipelineStats,
};

/// Reads until `shutdown` turns true, then drains what is left and returns.
pub async fn run(
    ring: RingBuf<MapData>,
    queue: mpsc::Sender<Record>,
    stats: Arc<PipelineStats>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    // SAFETY: the ring buffer owns its fd and keeps it open for as long as
    // the AsyncFd that owns the ring buffer lives.
    let mut ring = unsafe { AsyncFd::register(ring) }.map_err(|err| err.into_parts().1)?;
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                drain(guard.get_inner_mut(), &queue, &stats);
                guard.clear_ready();
            }
            _ = shutdown.changed() => {
                drain(ring.get_mut(), &queue, &stats);
                return Ok(());
            }
        }
    }
}

fn drain(ring: &mut RingBuf<MapData>, queue: &mpsc::Sender<Record>, stats: &PipelineStats) {
    while let Some(item) = ring.next() {
        match decode::decode(&item) {
            Ok(record) => {
                let kind = kind_of(record.common.kind);
                stats
                    .last_event_ktime_ns
                    .store(record.common.ktime_ns, Relaxed);
                if queue.try_send(record).is_err() {
                    stats.queue_dropped.add(Some(kind), 1);
                }
            }
            Err(err) => {
                stats.decode_errors.add(err.kind().map(kind_of), 1);
                log::debug!("rejected a kernel record: {err}");
            }
        }
    }
}
