//! What the pipeline records: events seen and lost, kernel-filtered totals, the ring buffer's fill, event latency and rule evaluation time.

use super::*;

/// Buckets for `aiwatch_event_latency_seconds`: 100 µs to 10 s.
const EVENT_LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Buckets for `aiwatch_rule_eval_seconds`: one event through the rule set,
/// 1 µs to 10 ms.
const RULE_EVAL_BUCKETS: [f64; 13] = [
    0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001,
    0.0025, 0.005, 0.01,
];

/// Where along the pipeline an event was lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LossStage {
    /// The kernel could not reserve ring buffer space (reader too slow).
    KernelRingbuf,
    /// The kernel could not store a syscall's pending entry (map full):
    /// the syscall's event is lost.
    KernelPending,
    /// A privilege syscall's pending entry was evicted from the kernel's
    /// LRU map before its exit: the syscall's event is lost.
    KernelPendingEvicted,
    /// A tracked process's child could not be added to the kernel's
    /// tracking map: its events are filtered as an untracked process's.
    KernelTracking,
    /// A record came out of the ring buffer but could not be decoded.
    Decode,
    /// A bounded user-space queue between stages was full.
    Queue,
    /// An alert or event sink failed to write.
    Sink,
}

impl LossStage {
    pub const ALL: [LossStage; 7] = [
        LossStage::KernelRingbuf,
        LossStage::KernelPending,
        LossStage::KernelPendingEvicted,
        LossStage::KernelTracking,
        LossStage::Decode,
        LossStage::Queue,
        LossStage::Sink,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LossStage::KernelRingbuf => "kernel_ringbuf",
            LossStage::KernelPending => "kernel_pending",
            LossStage::KernelPendingEvicted => "kernel_pending_evicted",
            LossStage::KernelTracking => "kernel_tracking",
            LossStage::Decode => "decode",
            LossStage::Queue => "queue",
            LossStage::Sink => "sink",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Identifies a counter that is fed from absolute kernel totals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum TotalKey {
    Lost(LossStage, Option<Kind>),
    AlertsLost(LossStage),
    Filtered(Kind),
}

/// The pipeline's metric families, resolved to per-kind handles once so
/// that counting an event is one atomic add.
pub(super) struct PipelineMetrics {
    events_by_kind: Vec<IntCounter>,
    /// `[stage][kind index, or Kind::ALL.len() for unknown]`.
    lost_by_stage_kind: Vec<Vec<IntCounter>>,
    kernel_filtered_by_kind: Vec<IntCounter>,
    ringbuf_used_bytes: IntGauge,
    ringbuf_size_bytes: IntGauge,
    event_latency: Histogram,
    rule_eval: Histogram,
    rule_eval_sample_every: u64,
    rule_eval_ticks: AtomicU64,
    /// Last absolute totals read from kernel maps, keyed by counter.
    kernel_totals: Mutex<HashMap<TotalKey, u64>>,
}

impl PipelineMetrics {
    pub(super) fn register(
        reg: &mut Registrar<'_>,
        rule_eval_sample_every: u64,
    ) -> Result<Self, MetricsError> {
        let events = reg.counter_vec(
            "aiwatch_events_total",
            "Events decoded and delivered to the pipeline, by kind.",
            &["kind"],
        )?;
        let lost = reg.counter_vec(
            "aiwatch_events_lost_total",
            "Events lost, by pipeline stage and kind.",
            &["stage", "kind"],
        )?;
        let filtered = reg.counter_vec(
            "aiwatch_kernel_events_filtered_total",
            "Events dropped on purpose by in-kernel filters, by kind.",
            &["kind"],
        )?;
        let kind_names = || Kind::ALL.into_iter().map(Kind::as_str);
        let events_by_kind = kind_names()
            .map(|kind| events.with_label_values(&[kind]))
            .collect();
        let kernel_filtered_by_kind = kind_names()
            .map(|kind| filtered.with_label_values(&[kind]))
            .collect();
        let lost_by_stage_kind = LossStage::ALL
            .into_iter()
            .map(|stage| {
                kind_names()
                    .chain([UNKNOWN_KIND, ALERT_KIND])
                    .map(|kind| lost.with_label_values(&[stage.as_str(), kind]))
                    .collect()
            })
            .collect();

        let ringbuf_used_bytes = reg.gauge(
            "aiwatch_ringbuf_used_bytes",
            "Bytes waiting in the kernel ring buffer when last sampled.",
        )?;
        let ringbuf_size_bytes = reg.gauge(
            "aiwatch_ringbuf_size_bytes",
            "Size of the kernel ring buffer, in bytes.",
        )?;
        let event_latency = reg.histogram(
            "aiwatch_event_latency_seconds",
            "Time from the kernel timestamp of an event to its alert being written.",
            &EVENT_LATENCY_BUCKETS,
        )?;
        let rule_eval = reg.histogram(
            "aiwatch_rule_eval_seconds",
            "Time to evaluate the rule set against one event (sampled).",
            &RULE_EVAL_BUCKETS,
        )?;
        Ok(PipelineMetrics {
            events_by_kind,
            lost_by_stage_kind,
            kernel_filtered_by_kind,
            ringbuf_used_bytes,
            ringbuf_size_bytes,
            event_latency,
            rule_eval,
            rule_eval_sample_every: rule_eval_sample_every.max(1),
            rule_eval_ticks: AtomicU64::new(0),
            kernel_totals: Mutex::new(HashMap::new()),
        })
    }
}

impl Metrics {
    /// One event delivered to the pipeline.
    pub fn event(&self, kind: Kind) {
        self.pipeline.events_by_kind[kind.index()].inc();
    }

    /// `count` events lost at `stage`; `kind` is `None` when it is not known
    /// (a record too damaged to decode).
    pub fn lost(&self, stage: LossStage, kind: Option<Kind>, count: u64) {
        self.lost_counter(stage, kind).inc_by(count);
    }

    fn lost_counter(&self, stage: LossStage, kind: Option<Kind>) -> &IntCounter {
        let kind_index = kind.map_or(Kind::ALL.len(), Kind::index);
        &self.pipeline.lost_by_stage_kind[stage.index()][kind_index]
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
        self.pipeline.lost_by_stage_kind[stage.index()][Kind::ALL.len() + 1].inc_by(delta);
    }

    /// Feeds `aiwatch_kernel_events_filtered_total` from an absolute total
    /// read from a kernel map (see [`Metrics::observe_lost_total`]).
    pub fn observe_kernel_filtered_total(&self, kind: Kind, total: u64) {
        let delta = self.delta_since_last(TotalKey::Filtered(kind), total);
        self.pipeline.kernel_filtered_by_kind[kind.index()].inc_by(delta);
    }

    fn delta_since_last(&self, key: TotalKey, total: u64) -> u64 {
        let mut totals = lock(&self.pipeline.kernel_totals);
        let last = totals.insert(key, total).unwrap_or(0);
        if total >= last {
            total - last
        } else {
            total
        }
    }

    /// Bytes waiting in the ring buffer, sampled by the reader.
    pub fn set_ringbuf_used_bytes(&self, bytes: u64) {
        self.pipeline.ringbuf_used_bytes.set(saturating_i64(bytes));
    }

    /// The ring buffer's size, so that its fill can be read as a fraction.
    pub fn set_ringbuf_size_bytes(&self, bytes: u64) {
        self.pipeline.ringbuf_size_bytes.set(saturating_i64(bytes));
    }

    /// Latency from an event's kernel timestamp to its alert being written.
    pub fn observe_event_latency(&self, latency: Duration) {
        self.pipeline.event_latency.observe(latency.as_secs_f64());
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
        let tick = self
            .pipeline
            .rule_eval_ticks
            .fetch_add(1, Ordering::Relaxed);
        tick.is_multiple_of(self.pipeline.rule_eval_sample_every)
    }

    /// Time one (sampled) rule-set evaluation took.
    pub fn observe_rule_eval(&self, elapsed: Duration) {
        self.pipeline.rule_eval.observe(elapsed.as_secs_f64());
    }
}
