//! What the pipeline records: events seen and lost, kernel-filtered totals, the ring buffer's fill, event latency and rule evaluation time.

use super::*;

impl Metrics {
    /// One event delivered to the pipeline.
    pub fn event(&self, kind: Kind) {
        self.events_by_kind[kind.index()].inc();
    }

    /// `count` events lost at `stage`; `kind` is `None` when it is not known
    /// (a record too damaged to decode).
    pub fn lost(&self, stage: LossStage, kind: Option<Kind>, count: u64) {
        self.lost_counter(stage, kind).inc_by(count);
    }

    fn lost_counter(&self, stage: LossStage, kind: Option<Kind>) -> &IntCounter {
        let kind_index = kind.map_or(Kind::ALL.len(), Kind::index);
        &self.lost_by_stage_kind[stage.index()][kind_index]
    }

    /// Feeds `aiwatch_events_lost_total` from an absolute total read from a
    /// kernel map: the counter grows by the increase since the last read. A
    /// total lower than the last one means the map was reset (programs
    /// reloaded) and counts in full.
    pub fn observe_lost_total(&self, stage: LossStage, kind: Option<Kind>, total: u64) {
        let delta = self.delta_since_last(TotalKey::Lost(stage, kind), total);
        self.lost_counter(stage, kind).inc_by(delta);
    }

    /// Feeds `aiwatch_events_lost_total{kind="alert"}` from a running total
    /// of alerts lost at `stage`.
    pub fn observe_alerts_lost_total(&self, stage: LossStage, total: u64) {
        let delta = self.delta_since_last(TotalKey::AlertsLost(stage), total);
        self.lost_by_stage_kind[stage.index()][Kind::ALL.len() + 1].inc_by(delta);
    }

    /// Feeds `aiwatch_kernel_events_filtered_total` from an absolute total
    /// read from a kernel map (see [`Metrics::observe_lost_total`]).
    pub fn observe_kernel_filtered_total(&self, kind: Kind, total: u64) {
        let delta = self.delta_since_last(TotalKey::Filtered(kind), total);
        self.kernel_filtered_by_kind[kind.index()].inc_by(delta);
    }

    fn delta_since_last(&self, key: TotalKey, total: u64) -> u64 {
        let mut totals = lock(&self.kernel_totals);
        let last = totals.insert(key, total).unwrap_or(0);
        if total >= last {
            total - last
        } else {
            total
        }
    }

    /// Bytes waiting in the ring buffer, sampled by the reader.
    pub fn set_ringbuf_used_bytes(&self, bytes: u64) {
        self.ringbuf_used_bytes.set(saturating_i64(bytes));
    }

    /// The ring buffer's size, so that its fill can be read as a fraction.
    pub fn set_ringbuf_size_bytes(&self, bytes: u64) {
        self.ringbuf_size_bytes.set(saturating_i64(bytes));
    }

    /// Latency from an event's kernel timestamp to its alert being written.
    pub fn observe_event_latency(&self, latency: Duration) {
        self.event_latency.observe(latency.as_secs_f64());
    }

    /// Same as [`Metrics::observe_event_latency`], measured against
    /// `CLOCK_BOOTTIME` now; `ktime_ns` is `Event::ktime_ns`.
    pub fn observe_event_latency_since(&self, ktime_ns: u64) {
        if let Some(now) = boottime_ns() {
            let latency = Duration::from_nanos(now.saturating_sub(ktime_ns));
            self.observe_event_latency(latency);
        }
    }

    /// Whether to time this rule evaluation: true once every
    /// `rule_eval_sample_every` calls, so timing costs little.
    pub fn sample_rule_eval(&self) -> bool {
        let tick = self.rule_eval_ticks.fetch_add(1, Ordering::Relaxed);
        tick.is_multiple_of(self.rule_eval_sample_every)
    }

    /// Time one (sampled) rule-set evaluation took.
    pub fn observe_rule_eval(&self, elapsed: Duration) {
        self.rule_eval.observe(elapsed.as_secs_f64());
    }
}
