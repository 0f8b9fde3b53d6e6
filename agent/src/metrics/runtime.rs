//! Container runtime lookups (`aiwatch_runtime_lookups_total`), bad pod
//! annotations, and events held for their container's identity
//! (`aiwatch_identity_held_events_total`). Labels are closed sets.

use prometheus::{IntCounter, IntCounterVec};

use super::{Metrics, MetricsError, Registrar};

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
    unasked: IntCounter,
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
        let held = reg.counter_vec(
            "aiwatch_identity_held_events_total",
            "Events held until their container's identity was known, by how the hold ended (resolved, expired, overflow).",
            &["outcome"],
        )?;
        for outcome in HeldOutcome::ALL {
            held.with_label_values(&[outcome.as_str()]);
        }
        let unasked = reg.counter(
            "aiwatch_runtime_lookups_skipped_total",
            "New container ids not looked up because the lookup queue was full: they keep their cgroup-derived id.",
        )?;
        Ok(Self {
            lookups,
            annotations_invalid,
            held,
            unasked,
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

    pub fn identity_held(&self, outcome: HeldOutcome, events: u64) {
        self.runtime
            .held
            .with_label_values(&[outcome.as_str()])
            .inc_by(events);
    }

    /// The lookups skipped so far (an absolute value).
    pub fn observe_runtime_lookups_skipped_total(&self, total: u64) {
        let counter = &self.runtime.unasked;
        counter.inc_by(total.saturating_sub(counter.get()));
    }
}
