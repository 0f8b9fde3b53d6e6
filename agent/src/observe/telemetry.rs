//! Periodic copying of loss and filter counters into the metrics registry.
//!
//! The kernel keeps its counters in a per-CPU map and the pipeline in
//! atomics; both are totals, so each pass hands the registry absolute values.
//! Each pass also samples how full the kernel ring buffer is.

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;

use crate::{
    event::Kind,
    kernel::ringbuf_usage::RingUsage,
    kernel::stats::KernelStats,
    metrics::pipeline_stats::{KindCounters, PipelineStats},
    metrics::{LossStage, Metrics},
};

pub const INTERVAL: Duration = Duration::from_secs(2);

pub async fn run(
    kernel: KernelStats,
    stats: Arc<PipelineStats>,
    metrics: Arc<Metrics>,
    ring: Option<RingUsage>,
    mut shutdown: watch::Receiver<bool>,
) -> KernelStats {
    let mut tick = tokio::time::interval(INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                publish(&kernel, &stats, &metrics);
                if let Some(ring) = &ring {
                    metrics.set_ringbuf_used_bytes(ring.used_bytes());
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    publish(&kernel, &stats, &metrics);
    kernel
}

pub fn publish(kernel: &KernelStats, stats: &PipelineStats, metrics: &Metrics) {
    let totals = kernel.read();
    for lost in &totals.ringbuf_lost {
        metrics.observe_lost_total(LossStage::KernelRingbuf, lost.kind, lost.total);
    }
    for lost in &totals.pending_lost {
        metrics.observe_lost_total(LossStage::KernelPending, lost.kind, lost.total);
    }
    if totals.pending_evicted > 0 {
        metrics.observe_lost_total(
            LossStage::KernelPendingEvicted,
            None,
            totals.pending_evicted,
        );
    }
    for lost in &totals.track_lost {
        metrics.observe_lost_total(LossStage::KernelTracking, lost.kind, lost.total);
    }
    // Changes through relative names are filtered after their path is
    // resolved, in user space; they count with the kernel's.
    let mut relative: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|kind| stats.relative_filtered.get(Some(*kind)) > 0)
        .collect();
    for filtered in &totals.filtered {
        if let Some(kind) = filtered.kind {
            let user_space = stats.relative_filtered.get(Some(kind));
            relative.retain(|k| *k != kind);
            metrics.observe_kernel_filtered_total(kind, filtered.total + user_space);
        }
    }
    for kind in relative {
        metrics.observe_kernel_filtered_total(kind, stats.relative_filtered.get(Some(kind)));
    }
    publish_counters(&stats.decode_errors, LossStage::Decode, metrics);
    publish_counters(&stats.queue_dropped, LossStage::Queue, metrics);
    publish_counters(&stats.sink_dropped, LossStage::Sink, metrics);
    metrics.observe_alerts_lost_total(
        LossStage::Sink,
        stats
            .alerts_dropped
            .load(std::sync::atomic::Ordering::Relaxed),
    );
}

fn publish_counters(counters: &KindCounters, stage: LossStage, metrics: &Metrics) {
    for kind in Kind::ALL.into_iter().map(Some).chain([None]) {
        let total = counters.get(kind);
        if total > 0 {
            metrics.observe_lost_total(stage, kind, total);
        }
    }
}
