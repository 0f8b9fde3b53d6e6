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
pub use pipeline::LossStage;
pub use runtime::{HeldOutcome, RuntimeApi, RuntimeLookupResult};
pub use workloads::{EvictionTable, ProfileState, StreamRefusal};

/// Default cap on distinct `workload` label values.
pub const DEFAULT_MAX_WORKLOAD_SERIES: usize = 200;

/// One in this many rule evaluations is timed by default.
pub const DEFAULT_RULE_EVAL_SAMPLE_EVERY: u64 = 64;

/// `kind` label for losses whose event kind is unknown (undecodable records).
pub const UNKNOWN_KIND: &str = "unknown";
/// The `kind` label of alerts lost in a sink.
pub const ALERT_KIND: &str = "alert";

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot register metric: {0}")]
    Register(#[from] prometheus::Error),
    #[error("metrics text is not UTF-8: {0}")]
    Encoding(#[from] std::string::FromUtf8Error),
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

/// The registry and every metric in it. Share it as `Arc<Metrics>`.
pub struct Metrics {
    registry: Registry,
    /// Every metric family registered, whether or not it has series yet.
    metric_names: Vec<String>,
    pipeline: pipeline::PipelineMetrics,
    alerts: alerts::AlertMetrics,
    workloads: workloads::WorkloadMetrics,
    agent: agent::AgentMetrics,
    names: names::NameCounters,
    runtime: runtime::RuntimeCounters,
    /// The name cache's totals at the last report.
    name_totals: Mutex<NameTotals>,
    llm: llm::LlmMetrics,
}

impl Metrics {
    pub fn new(config: MetricsConfig) -> Result<Metrics, MetricsError> {
        let registry = Registry::new();
        let mut reg = Registrar {
            registry: &registry,
            names: Vec::new(),
        };

        let pipeline =
            pipeline::PipelineMetrics::register(&mut reg, config.rule_eval_sample_every)?;
        let alerts = alerts::AlertMetrics::register(&mut reg)?;
        let workloads = workloads::WorkloadMetrics::register(&mut reg, config.max_workload_series)?;
        let agent = agent::AgentMetrics::register(&mut reg, config.kernel_release)?;
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
            pipeline,
            alerts,
            workloads,
            agent,
            names,
            runtime,
            name_totals: Mutex::new(NameTotals::default()),
            llm,
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

    /// A counter with one label, whose series for each of `values` exist
    /// from start-up (at 0), so that `rate()` and `absent()` see them.
    fn counter_by<'v>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: impl IntoIterator<Item = &'v str>,
    ) -> Result<IntCounterVec, MetricsError> {
        let counter = self.counter_vec(name, help, &[label])?;
        for value in values {
            counter.with_label_values(&[value]);
        }
        Ok(counter)
    }

    /// A gauge with one label, whose series for each of `values` exist from
    /// start-up (at 0).
    fn gauge_by<'v>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        values: impl IntoIterator<Item = &'v str>,
    ) -> Result<IntGaugeVec, MetricsError> {
        let gauge = self.gauge_vec(name, help, &[label])?;
        for value in values {
            gauge.with_label_values(&[value]);
        }
        Ok(gauge)
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
