//! Container runtime lookups (`aiwatch_runtime_lookups_total`), bad pod
//! annotations, events held for their container's identity
//! (`aiwatch_identity_held_events_total`), and the reads of processes'
//! library maps off the pipeline with the events held for them
//! (`aiwatch_maps_reads_total`, `aiwatch_maps_held_events_total`). Labels
//! are closed sets.

use std::{collections::HashMap, sync::Mutex};

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec};

use super::{lock, Metrics, MetricsError, Registrar, OVERFLOW_LABEL};
use crate::event::WorkloadRef;

/// Pods with a `aiwatch_workload_pod_info` series per workload: a workload
/// of many replicas shows its first ones (the inventory lists up to 64).
pub const MAX_POD_SERIES_PER_WORKLOAD: usize = 8;

/// The runtime API a lookup asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeApi {
    /// containerd's containers API.
    Containerd,
    /// The CRI, for pod annotations.
    Cri,
    /// The Docker-compatible API (podman, Docker).
    Docker,
}

impl RuntimeApi {
    pub const ALL: [RuntimeApi; 3] = [RuntimeApi::Containerd, RuntimeApi::Cri, RuntimeApi::Docker];

    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeApi::Containerd => "containerd",
            RuntimeApi::Cri => "cri",
            RuntimeApi::Docker => "docker",
        }
    }
}

/// How a lookup ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeLookupResult {
    Found,
    NotFound,
    /// The socket refused, the call failed or the answer was malformed.
    Error,
    Timeout,
}

impl RuntimeLookupResult {
    pub const ALL: [RuntimeLookupResult; 4] = [
        RuntimeLookupResult::Found,
        RuntimeLookupResult::NotFound,
        RuntimeLookupResult::Error,
        RuntimeLookupResult::Timeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeLookupResult::Found => "found",
            RuntimeLookupResult::NotFound => "not_found",
            RuntimeLookupResult::Error => "error",
            RuntimeLookupResult::Timeout => "timeout",
        }
    }
}

/// Why held events went on (`analyze::runtime::Release`, as a label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeldOutcome {
    Resolved,
    Expired,
    Overflow,
}

impl HeldOutcome {
    pub const ALL: [HeldOutcome; 3] = [
        HeldOutcome::Resolved,
        HeldOutcome::Expired,
        HeldOutcome::Overflow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HeldOutcome::Resolved => "resolved",
            HeldOutcome::Expired => "expired",
            HeldOutcome::Overflow => "overflow",
        }
    }
}

pub(super) struct RuntimeCounters {
    lookups: IntCounterVec,
    annotations_invalid: IntCounter,
    held: IntCounterVec,
    maps_held: IntCounterVec,
    maps_reads: IntCounterVec,
    unasked: IntCounter,
    pod_info: IntGaugeVec,
    /// The (namespace, pod) series set per workload label, to remove them
    /// with the workload's other series.
    pod_series: Mutex<HashMap<String, Vec<(String, String)>>>,
}

impl RuntimeCounters {
    pub(super) fn register(reg: &mut Registrar<'_>) -> Result<Self, MetricsError> {
        let lookups = reg.counter_vec(
            "aiwatch_runtime_lookups_total",
            "Container identity lookups asked of a container runtime API (containerd, cri, docker), by result (found, not_found, error, timeout).",
            &["runtime", "result"],
        )?;
        for api in RuntimeApi::ALL {
            for result in RuntimeLookupResult::ALL {
                lookups.with_label_values(&[api.as_str(), result.as_str()]);
            }
        }
        let annotations_invalid = reg.counter(
            "aiwatch_runtime_annotations_invalid_total",
            "Pods whose aiwatch.io/workload or aiwatch.io/kind annotation could not declare a workload.",
        )?;
        let held = reg.counter_by(
            "aiwatch_identity_held_events_total",
            "Events held until their container's identity was known, by how the hold ended (resolved, expired, overflow).",
            "outcome",
            HeldOutcome::ALL.iter().map(|outcome| outcome.as_str()),
        )?;
        let maps_held = reg.counter_by(
            "aiwatch_maps_held_events_total",
            "Events of a process held until its library maps were read (at a model open or a listen), by how the hold ended (resolved, expired, overflow).",
            "outcome",
            HeldOutcome::ALL.iter().map(|outcome| outcome.as_str()),
        )?;
        let maps_reads = reg.counter_by(
            "aiwatch_maps_reads_total",
            "Reads of /proc/<pid>/maps for library signals, off the pipeline thread, by outcome (read, gone: the process had exited, skipped: the reader was stuck or its queue full).",
            "outcome",
            ["read", "gone", "skipped"],
        )?;
        let unasked = reg.counter(
            "aiwatch_runtime_lookups_skipped_total",
            "Container lookups not asked because the lookup queue was full; the container is asked about again at its next event.",
        )?;
        let pod_info = reg.gauge_vec(
            "aiwatch_workload_pod_info",
            "The Kubernetes namespaces and pods of a workload's processes (value 1), for joins with the per-workload series.",
            &["workload", "kind", "namespace", "pod"],
        )?;
        Ok(Self {
            lookups,
            annotations_invalid,
            held,
            maps_held,
            maps_reads,
            unasked,
            pod_info,
            pod_series: Mutex::new(HashMap::new()),
        })
    }
}

impl Metrics {
    pub fn runtime_lookup(&self, api: RuntimeApi, result: RuntimeLookupResult) {
        self.runtime
            .lookups
            .with_label_values(&[api.as_str(), result.as_str()])
            .inc();
    }

    pub fn runtime_annotation_invalid(&self) {
        self.runtime.annotations_invalid.inc();
    }

    /// Events held for a process's library maps went on.
    pub fn maps_held(&self, outcome: HeldOutcome, events: u64) {
        self.runtime
            .maps_held
            .with_label_values(&[outcome.as_str()])
            .inc_by(events);
    }

    /// Reads of processes' maps: `outcome` is read, gone or skipped.
    pub fn maps_reads(&self, outcome: &'static str, reads: u64) {
        self.runtime
            .maps_reads
            .with_label_values(&[outcome])
            .inc_by(reads);
    }

    pub fn identity_held(&self, outcome: HeldOutcome, events: u64) {
        self.runtime
            .held
            .with_label_values(&[outcome.as_str()])
            .inc_by(events);
    }

    /// The pods a live workload's processes ran in, as `(namespace, pod)`:
    /// the first [`MAX_POD_SERIES_PER_WORKLOAD`] get a series. Workloads
    /// past the series cap (`workload="other"`) get none.
    pub fn workload_pods<'a>(
        &self,
        workload: &WorkloadRef,
        pods: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) {
        let labels = self.admit_workload(workload);
        if labels.workload == OVERFLOW_LABEL {
            return;
        }
        let mut series = lock(&self.runtime.pod_series);
        let known = series.entry(labels.workload.clone()).or_default();
        for (namespace, pod) in pods {
            if known.len() >= MAX_POD_SERIES_PER_WORKLOAD {
                break;
            }
            if known.iter().any(|(n, p)| n == namespace && p == pod) {
                continue;
            }
            self.runtime
                .pod_info
                .with_label_values(&[labels.workload.as_str(), labels.kind, namespace, pod])
                .set(1);
            known.push((namespace.to_string(), pod.to_string()));
        }
    }

    /// Drops the pod series of a workload label whose series go.
    pub(super) fn forget_pod_series(&self, workload: &str, kind: &str) {
        let Some(pods) = lock(&self.runtime.pod_series).remove(workload) else {
            return;
        };
        for (namespace, pod) in pods {
            let _ = self
                .runtime
                .pod_info
                .remove_label_values(&[workload, kind, &namespace, &pod]);
        }
    }

    /// The lookups skipped so far (an absolute value).
    pub fn observe_runtime_lookups_skipped_total(&self, total: u64) {
        let counter = &self.runtime.unasked;
        counter.inc_by(total.saturating_sub(counter.get()));
    }
}
