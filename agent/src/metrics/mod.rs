//! The Prometheus metrics registry: every metric aiwatch exports, and typed
//! methods the pipeline calls so that no caller builds label strings.
//!
//! Cardinality is bounded by construction: labels carry event kinds, loss
//! stages, rule ids, severities, workload kinds and probe names, never pids,
//! paths or addresses. The one open-ended label, `workload`, is capped by
//! [`MetricsConfig::max_workload_series`] (see [`workload_series`]).
//! `docs/metrics.md` documents every metric; a test keeps the two in step.
//!
//! Hot-path counters (`event`, `lost`) are resolved to per-kind handles once at
//! construction, so counting an event is one atomic add.

mod agent;
mod alerts;
mod egress;
mod llm;
mod names;
mod pipeline;
pub mod pipeline_stats;
mod runtime;
mod workload_series;
mod workloads;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

use crate::alert::{Action, Alert, Severity};
use crate::event::{Kind, WorkloadRef};

pub use egress::EgressTotals;
pub use llm::{LlmUnparsed, MAX_MODEL_SERIES};
pub use workload_series::{kind_label, NO_WORKLOAD_KIND, OVERFLOW_LABEL, WORKLOAD_KINDS};
use workload_series::{Admission, WorkloadSeries};

pub use names::NameTotals;
pub use runtime::{HeldOutcome, RuntimeApi, RuntimeLookupResult};

/// Default cap on distinct `workload` label values.
pub const DEFAULT_MAX_WORKLOAD_SERIES: usize = 200;

/// One in this many rule evaluations is timed by default.
pub const DEFAULT_RULE_EVAL_SAMPLE_EVERY: u64 = 64;

/// `kind` label for losses whose event kind is unknown (undecodable records).
pub const UNKNOWN_KIND: &str = "unknown";
/// The `kind` label of alerts lost in a sink.
pub const ALERT_KIND: &str = "alert";

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

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot register metric: {0}")]
    Register(#[from] prometheus::Error),
    #[error("metrics text is not UTF-8: {0}")]
    Encoding(#[from] std::string::FromUtf8Error),
}

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

/// The bounded tables of the agent, for `aiwatch_evictions_total{table}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvictionTable {
    /// Live processes of the process table (stale first, else the newest).
    Process,
    /// Rule throttle windows (the oldest sixteenth at a time).
    ThrottleWindow,
    /// Partial matches of sequence rules.
    Sequence,
    /// Anomaly profiles in memory (the least recently seen, saved first).
    AnomalyProfile,
    /// Container identities from the runtimes (the least recently used).
    ContainerIdentity,
}

impl EvictionTable {
    pub const ALL: [EvictionTable; 5] = [
        EvictionTable::Process,
        EvictionTable::ThrottleWindow,
        EvictionTable::Sequence,
        EvictionTable::AnomalyProfile,
        EvictionTable::ContainerIdentity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EvictionTable::Process => "process",
            EvictionTable::ThrottleWindow => "throttle_window",
            EvictionTable::Sequence => "sequence",
            EvictionTable::AnomalyProfile => "anomaly_profile",
            EvictionTable::ContainerIdentity => "container_identity",
        }
    }
}

/// Why the listener refused a remote stream, for
/// `aiwatch_stream_refused_total{reason}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamRefusal {
    /// No `remote_stream` in the configuration.
    Off,
    /// No bearer token, or the wrong one.
    Unauthorized,
    /// Every remote reader slot was taken.
    Busy,
}

impl StreamRefusal {
    pub const ALL: [StreamRefusal; 3] = [
        StreamRefusal::Off,
        StreamRefusal::Unauthorized,
        StreamRefusal::Busy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StreamRefusal::Off => "off",
            StreamRefusal::Unauthorized => "unauthorized",
            StreamRefusal::Busy => "busy",
        }
    }
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

/// State of an anomaly-detection profile (one per workload).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProfileState {
    /// Still learning the baseline; raises no alerts yet.
    Learning,
    /// Baseline learnt; departures raise `anomaly.*` alerts.
    Enforcing,
    /// Flags departures and keeps learning (operator's choice).
    Drifting,
    /// Frozen by the operator: neither learns nor changes state.
    Frozen,
}

impl ProfileState {
    pub const ALL: [ProfileState; 4] = [
        ProfileState::Learning,
        ProfileState::Enforcing,
        ProfileState::Drifting,
        ProfileState::Frozen,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProfileState::Learning => "learning",
            ProfileState::Enforcing => "enforcing",
            ProfileState::Drifting => "drifting",
            ProfileState::Frozen => "frozen",
        }
    }

    pub fn parse(name: &str) -> Option<ProfileState> {
        ProfileState::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// Construction options.
#[derive(Clone, Debug)]
pub struct MetricsConfig {
    /// Cap on distinct `workload` label values; later workloads share `other`.
    pub max_workload_series: usize,
    /// Time one rule evaluation in this many (`1` times every one).
    pub rule_eval_sample_every: u64,
    /// Kernel release for `aiwatch_build_info`; read from
    /// `/proc/sys/kernel/osrelease` when `None`.
    pub kernel_release: Option<String>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            max_workload_series: DEFAULT_MAX_WORKLOAD_SERIES,
            rule_eval_sample_every: DEFAULT_RULE_EVAL_SAMPLE_EVERY,
            kernel_release: None,
        }
    }
}

/// Every alert severity, for per-workload alert series created at 0.
const SEVERITIES: [Severity; 5] = [
    Severity::Info,
    Severity::Low,
    Severity::Medium,
    Severity::High,
    Severity::Critical,
];

/// The registry and every metric in it. Share it as `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    /// Every metric family registered, whether or not it has series yet.
    metric_names: Vec<String>,
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
    alerts: IntCounterVec,
    workload_alerts: IntCounterVec,
    enforcement_actions: IntCounterVec,
    enforcement_rules: IntGaugeVec,
    enforcement_active: IntGauge,
    enforcement_mode: IntGaugeVec,
    enforcement_fallback_rules: IntGauge,
    rules_loaded: IntGauge,
    policy_reloads: IntCounterVec,
    policy_last_reload_success: Gauge,
    policy_last_reload_successful: IntGauge,
    workloads: IntGaugeVec,
    workload_gpu_processes: IntGaugeVec,
    workload_egress_bytes: IntCounterVec,
    workload_model_read_bytes: IntCounterVec,
    workload_series_overflow: IntCounter,
    anomaly_profiles: IntGaugeVec,
    evictions: IntCounterVec,
    anomaly_profile_errors: IntCounterVec,
    stream_dropped: IntCounter,
    file_access_refused: IntCounter,
    file_access_dirs: IntGauge,
    stream_refused: IntCounterVec,
    probe_attached: IntGaugeVec,
    ready: IntGauge,
    task_failures: IntCounterVec,
    names: names::NameCounters,
    runtime: runtime::RuntimeCounters,
    /// The name cache's totals at the last report.
    name_totals: Mutex<NameTotals>,
    llm: llm::LlmMetrics,
    workload_series: Mutex<WorkloadSeries>,
    /// Last absolute totals read from kernel maps, keyed by counter.
    kernel_totals: Mutex<HashMap<TotalKey, u64>>,
}

/// Identifies a counter that is fed from absolute kernel totals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum TotalKey {
    Lost(LossStage, Option<Kind>),
    AlertsLost(LossStage),
    Filtered(Kind),
}

impl Metrics {
    pub fn new(config: MetricsConfig) -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let mut reg = Registrar {
            registry: &registry,
            names: Vec::new(),
        };

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

        let alerts = reg.counter_vec(
            "aiwatch_alerts_total",
            "Alerts raised, by rule, severity, workload kind and action.",
            &["rule", "severity", "workload_kind", "action"],
        )?;
        // One series per severity from start-up, so `rate()` and `absent()`
        // see a quiet node: rule "" (no rule), no workload, plain alert.
        // Only severities: every rule x workload kind x action would be noise.
        for severity in Severity::ALL {
            alerts.with_label_values(&["", severity.as_str(), NO_WORKLOAD_KIND, "alert"]);
        }
        let workload_alerts = reg.counter_vec(
            "aiwatch_workload_alerts_total",
            "Alerts raised against an AI workload, by workload and severity.",
            &["workload", "kind", "severity"],
        )?;

        let enforcement_actions = reg.counter_vec(
            "aiwatch_enforcement_actions_total",
            "Kills and denials carried out (killed, denied) or only reported (would-kill, would-deny), by rule.",
            &["outcome", "rule"],
        )?;
        let enforcement_rules = reg.gauge_vec(
            "aiwatch_enforcement_rules",
            "Rules with a kill or deny action, by where it is carried out (kernel, user_space, not_enforced).",
            &["placement"],
        )?;
        for placement in ["kernel", "user_space", "not_enforced"] {
            enforcement_rules.with_label_values(&[placement]);
        }
        let enforcement_mode = reg.gauge_vec(
            "aiwatch_enforcement_mode",
            "1 where the kernel can enforce on this host, by hook (sched_process_exec, cgroup_connect, cgroup_sendmsg, cgroup_device, bpf_lsm); set at start-up.",
            &["hook"],
        )?;
        let enforcement_fallback_rules = reg.gauge(
            "aiwatch_enforcement_fallback_rules",
            "Rules whose deny the kernel cannot refuse and carries out as a kill instead (logged at each load).",
        )?;
        let enforcement_active = reg.gauge(
            "aiwatch_enforcement_active",
            "1 while enforcement is on (not switched off by config, SIGHUP or `aiwatch enforcement off`).",
        )?;

        let rules_loaded = reg.gauge("aiwatch_rules_loaded", "Rules in the active policy set.")?;
        let policy_reloads = reg.counter_vec(
            "aiwatch_policy_reloads_total",
            "Policy reloads, by result (success or failure).",
            &["result"],
        )?;
        for result in ["success", "failure"] {
            policy_reloads.with_label_values(&[result]);
        }
        let policy_last_reload_success = Gauge::with_opts(Opts::new(
            "aiwatch_policy_last_reload_success_timestamp_seconds",
            "Unix time of the last successful policy load or reload.",
        ))?;
        reg.collector(Box::new(policy_last_reload_success.clone()))?;
        let policy_last_reload_successful = reg.gauge(
            "aiwatch_policy_last_reload_successful",
            "1 if the last policy load or reload succeeded, 0 if it failed.",
        )?;

        let workloads = reg.gauge_vec(
            "aiwatch_workloads",
            "Live AI workloads on this host, by kind.",
            &["kind"],
        )?;
        for kind in WORKLOAD_KINDS {
            workloads.with_label_values(&[kind]);
        }
        let workload_gpu_processes = reg.gauge_vec(
            "aiwatch_workload_gpu_processes",
            "Processes of a workload holding a GPU or accelerator device open.",
            &["workload", "kind"],
        )?;
        let workload_egress_bytes = reg.counter_vec(
            "aiwatch_workload_egress_bytes_total",
            "Bytes a workload sent to external addresses.",
            &["workload", "kind"],
        )?;
        let workload_model_read_bytes = reg.counter_vec(
            "aiwatch_workload_model_read_bytes_total",
            "Bytes of model files a workload opened for reading.",
            &["workload", "kind"],
        )?;
        let workload_series_overflow = reg.counter(
            "aiwatch_workload_series_overflow_total",
            "Workloads reported as workload=\"other\" because the series cap was reached.",
        )?;
        let anomaly_profiles = reg.gauge_vec(
            "aiwatch_anomaly_profiles",
            "Anomaly-detection profiles, by state.",
            &["state"],
        )?;
        for state in ProfileState::ALL {
            anomaly_profiles.with_label_values(&[state.as_str()]);
        }
        let evictions = reg.counter_vec(
            "aiwatch_evictions_total",
            "Entries a bounded table dropped to make room, by table.",
            &["table"],
        )?;
        for table in EvictionTable::ALL {
            evictions.with_label_values(&[table.as_str()]);
        }
        let stream_dropped = reg.counter(
            "aiwatch_stream_dropped_total",
            "Lines the live stream (aiwatch alerts|events --follow) dropped for readers that fell behind.",
        )?;
        let file_access_refused = reg.counter(
            "aiwatch_file_access_refused_total",
            "Directories whose plain reads could not be folded into a kernel counter (FILE_ACCESS full): their reads stay full open events.",
        )?;
        let file_access_dirs = reg.gauge(
            "aiwatch_file_access_dirs",
            "Process and directory pairs whose plain reads the kernel counts (file_access).",
        )?;
        let stream_refused = reg.counter_vec(
            "aiwatch_stream_refused_total",
            "Requests for the remote stream the listener refused, by reason.",
            &["reason"],
        )?;
        for reason in StreamRefusal::ALL {
            stream_refused.with_label_values(&[reason.as_str()]);
        }
        let anomaly_profile_errors = reg.counter_vec(
            "aiwatch_anomaly_profile_errors_total",
            "Profile files moved aside as corrupt, or that could not be saved.",
            &["error"],
        )?;
        for error in ["corrupt", "save"] {
            anomaly_profile_errors.with_label_values(&[error]);
        }

        let build_info = reg.gauge_vec(
            "aiwatch_build_info",
            "Always 1; labels carry the aiwatch version and the kernel release.",
            &["version", "kernel"],
        )?;
        let kernel = config.kernel_release.unwrap_or_else(read_kernel_release);
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), kernel.as_str()])
            .set(1);
        let probe_attached = reg.gauge_vec(
            "aiwatch_probe_attached",
            "1 if the eBPF program attached at start-up, 0 if it failed to (set once).",
            &["probe"],
        )?;
        let ready = reg.gauge(
            "aiwatch_ready",
            "1 when probes are attached and the pipeline is flowing (as /readyz).",
        )?;

        let task_failures = reg.counter_vec(
            "aiwatch_task_failures_total",
            "Agent tasks that panicked, failed or stopped on their own, by task.",
            &["task"],
        )?;

        let names = names::NameCounters::register(&mut reg)?;
        let runtime = runtime::RuntimeCounters::register(&mut reg)?;
        let llm = llm::LlmMetrics::new(&mut reg)?;

        #[cfg(target_os = "linux")]
        reg.collector(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        let metric_names = reg.names;

        Ok(Metrics {
            registry,
            metric_names,
            events_by_kind,
            lost_by_stage_kind,
            kernel_filtered_by_kind,
            ringbuf_used_bytes,
            ringbuf_size_bytes,
            event_latency,
            rule_eval,
            rule_eval_sample_every: config.rule_eval_sample_every.max(1),
            rule_eval_ticks: AtomicU64::new(0),
            alerts,
            workload_alerts,
            enforcement_actions,
            enforcement_rules,
            enforcement_active,
            enforcement_mode,
            enforcement_fallback_rules,
            rules_loaded,
            policy_reloads,
            policy_last_reload_success,
            policy_last_reload_successful,
            workloads,
            workload_gpu_processes,
            workload_egress_bytes,
            workload_model_read_bytes,
            workload_series_overflow,
            anomaly_profiles,
            evictions,
            anomaly_profile_errors,
            stream_dropped,
            file_access_refused,
            file_access_dirs,
            stream_refused,
            probe_attached,
            ready,
            task_failures,
            names,
            runtime,
            name_totals: Mutex::new(NameTotals::default()),
            llm,
            workload_series: Mutex::new(WorkloadSeries::new(config.max_workload_series)),
            kernel_totals: Mutex::new(HashMap::new()),
        })
    }

    /// Takes the name cache's totals since start-up.
    pub fn name_cache(&self, now: NameTotals) {
        if let Ok(mut last) = self.name_totals.lock() {
            self.names.add(*last, now);
            *last = now;
        }
    }

    /// The underlying registry, e.g. to gather metric families in tests.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Names of every metric family in the registry, including labelled
    /// families that have no series yet (which `gather()` leaves out).
    pub fn metric_names(&self) -> &[String] {
        &self.metric_names
    }

    /// All metrics in the Prometheus text exposition format.
    pub fn encode_text(&self) -> Result<String, MetricsError> {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        Ok(String::from_utf8(buffer)?)
    }
}

/// Registers metrics under one error type and remembers their names.
struct Registrar<'a> {
    registry: &'a Registry,
    names: Vec<String>,
}

impl Registrar<'_> {
    fn collector(
        &mut self,
        collector: Box<dyn prometheus::core::Collector>,
    ) -> Result<(), MetricsError> {
        let names: Vec<String> = collector
            .desc()
            .iter()
            .map(|desc| desc.fq_name.clone())
            .collect();
        self.registry.register(collector)?;
        self.names.extend(names);
        Ok(())
    }

    fn counter(&mut self, name: &str, help: &str) -> Result<IntCounter, MetricsError> {
        let counter = IntCounter::with_opts(Opts::new(name, help))?;
        self.collector(Box::new(counter.clone()))?;
        Ok(counter)
    }

    fn counter_vec(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, MetricsError> {
        let counter = IntCounterVec::new(Opts::new(name, help), labels)?;
        self.collector(Box::new(counter.clone()))?;
        Ok(counter)
    }

    fn gauge(&mut self, name: &str, help: &str) -> Result<IntGauge, MetricsError> {
        let gauge = IntGauge::with_opts(Opts::new(name, help))?;
        self.collector(Box::new(gauge.clone()))?;
        Ok(gauge)
    }

    fn gauge_vec(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntGaugeVec, MetricsError> {
        let gauge = IntGaugeVec::new(Opts::new(name, help), labels)?;
        self.collector(Box::new(gauge.clone()))?;
        Ok(gauge)
    }

    fn histogram(
        &mut self,
        name: &str,
        help: &str,
        buckets: &[f64],
    ) -> Result<Histogram, MetricsError> {
        let histogram =
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))?;
        self.collector(Box::new(histogram.clone()))?;
        Ok(histogram)
    }
}

/// Locks a mutex, recovering from poisoning: the guarded maps stay
/// consistent between statements, so a panic elsewhere must not stop metrics.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn unix_now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

fn read_kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| release.trim().to_string())
        .unwrap_or_else(|_| UNKNOWN_KIND.to_string())
}

/// `CLOCK_BOOTTIME` in nanoseconds: the clock `bpf_ktime_get_boot_ns` reads.
fn boottime_ns() -> Option<u64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable timespec for the duration of the call.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) };
    if status != 0 {
        return None;
    }
    let seconds = u64::try_from(now.tv_sec).ok()?;
    let nanos = u64::try_from(now.tv_nsec).ok()?;
    Some(seconds.saturating_mul(1_000_000_000).saturating_add(nanos))
}

#[cfg(test)]
mod tests;
