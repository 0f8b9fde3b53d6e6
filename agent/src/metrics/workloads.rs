//! Per-workload series: counts by kind, GPU processes, egress, model reads and alerts, kept a while after a workload ends; and anomaly profile states.

use super::*;

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

/// Every alert severity, for per-workload alert series created at 0.
const SEVERITIES: [Severity; 5] = [
    Severity::Info,
    Severity::Low,
    Severity::Medium,
    Severity::High,
    Severity::Critical,
];

/// The per-workload metric families with their capped label table, and the
/// bounded tables' evictions, file access, stream and profile counters.
pub(super) struct WorkloadMetrics {
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
    exits_inferred: IntCounter,
    file_access_dirs: IntGauge,
    stream_refused: IntCounterVec,
    workload_series: Mutex<WorkloadSeries>,
}

impl WorkloadMetrics {
    pub(super) fn register(
        reg: &mut Registrar<'_>,
        max_workload_series: usize,
    ) -> Result<Self, MetricsError> {
        let workloads = reg.gauge_by(
            "aiwatch_workloads",
            "Live AI workloads on this host, by kind.",
            "kind",
            WORKLOAD_KINDS,
        )?;
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
        let anomaly_profiles = reg.gauge_by(
            "aiwatch_anomaly_profiles",
            "Anomaly-detection profiles, by state.",
            "state",
            ProfileState::ALL.iter().map(|state| state.as_str()),
        )?;
        let evictions = reg.counter_by(
            "aiwatch_evictions_total",
            "Entries a bounded table dropped to make room, by table.",
            "table",
            EvictionTable::ALL.iter().map(|table| table.as_str()),
        )?;
        let stream_dropped = reg.counter(
            "aiwatch_stream_dropped_total",
            "Lines the live stream (aiwatch alerts|events --follow) dropped for readers that fell behind.",
        )?;
        let file_access_refused = reg.counter(
            "aiwatch_file_access_refused_total",
            "Directories whose plain reads could not be folded into a kernel counter (no free FILE_ACCESS slot for it): their reads stay full open events.",
        )?;
        let exits_inferred = reg.counter(
            "aiwatch_exits_inferred_total",
            "Workload processes found gone from /proc whose exit event never came (it was lost): they left their workloads as their exit would have made them.",
        )?;
        let file_access_dirs = reg.gauge(
            "aiwatch_file_access_dirs",
            "Process and directory pairs whose plain reads the kernel counts (file_access).",
        )?;
        let stream_refused = reg.counter_by(
            "aiwatch_stream_refused_total",
            "Requests for the remote stream the listener refused, by reason.",
            "reason",
            StreamRefusal::ALL.iter().map(|reason| reason.as_str()),
        )?;
        let anomaly_profile_errors = reg.counter_by(
            "aiwatch_anomaly_profile_errors_total",
            "Profile files moved aside as corrupt, or that could not be saved.",
            "error",
            ["corrupt", "save"],
        )?;
        Ok(WorkloadMetrics {
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
            exits_inferred,
            file_access_dirs,
            stream_refused,
            workload_series: Mutex::new(WorkloadSeries::new(max_workload_series)),
        })
    }
}

impl Metrics {
    /// Sets `aiwatch_workloads{kind}` from the live workload table: one
    /// entry per workload kind string (unknown kinds are summed as `other`).
    pub fn set_workload_counts<'a>(&self, counts: impl IntoIterator<Item = (&'a str, u64)>) {
        let mut by_label: HashMap<&'static str, u64> =
            WORKLOAD_KINDS.into_iter().map(|kind| (kind, 0)).collect();
        for (kind, count) in counts {
            *by_label.entry(kind_label(kind)).or_default() += count;
        }
        for (kind, count) in by_label {
            self.workloads
                .workloads
                .with_label_values(&[kind])
                .set(saturating_i64(count));
        }
    }

    /// Processes of `workload` that hold an accelerator device open.
    pub fn set_workload_gpu_processes(&self, workload: &WorkloadRef, processes: u64) {
        let (admission, total) =
            lock(&self.workloads.workload_series).set_gpu_processes(workload, processes);
        let labels = self.count_overflow(admission);
        self.workloads
            .workload_gpu_processes
            .with_label_values(&[labels.workload.as_str(), labels.kind])
            .set(saturating_i64(total));
    }

    /// A live workload: admits it and creates all its series, at 0 until
    /// something happens (so that a first alert or byte is an increase
    /// Prometheus can see), and sets its GPU process count.
    pub fn workload_live(&self, workload: &WorkloadRef, gpu_processes: u64) {
        self.set_workload_gpu_processes(workload, gpu_processes);
        let labels = self.admit_workload(workload);
        let pair = [labels.workload.as_str(), labels.kind];
        self.workloads
            .workload_egress_bytes
            .with_label_values(&pair);
        self.workloads
            .workload_model_read_bytes
            .with_label_values(&pair);
        for severity in SEVERITIES {
            self.alerts
                .workload_alerts
                .with_label_values(&[pair[0], pair[1], severity.as_str()]);
        }
    }

    /// A workload's processes all exited: none holds a GPU any more. Its
    /// series stay until [`Metrics::forget_workload`].
    pub fn workload_ended(&self, workload_id: &str) {
        let cleared = lock(&self.workloads.workload_series).clear_gpu_processes(workload_id);
        if let Some((labels, total)) = cleared {
            self.workloads
                .workload_gpu_processes
                .with_label_values(&[labels.workload.as_str(), labels.kind])
                .set(saturating_i64(total));
        }
    }

    /// Ids of the workloads that have series.
    pub fn workloads_with_series(&self) -> Vec<String> {
        lock(&self.workloads.workload_series).admitted_ids()
    }

    /// `bytes` sent by `workload` to an external address.
    pub fn workload_egress(&self, workload: &WorkloadRef, bytes: u64) {
        let labels = self.admit_workload(workload);
        self.workloads
            .workload_egress_bytes
            .with_label_values(&[labels.workload.as_str(), labels.kind])
            .inc_by(bytes);
    }

    /// `bytes` of model files opened for reading by `workload`.
    pub fn workload_model_read(&self, workload: &WorkloadRef, bytes: u64) {
        let labels = self.admit_workload(workload);
        self.workloads
            .workload_model_read_bytes
            .with_label_values(&[labels.workload.as_str(), labels.kind])
            .inc_by(bytes);
    }

    /// The workload ended: frees its label slot and drops its series when no
    /// other live workload shares them.
    pub fn forget_workload(&self, workload_id: &str) {
        let Some(gone) = lock(&self.workloads.workload_series).forget(workload_id) else {
            return;
        };
        let pair = [gone.labels.workload.as_str(), gone.labels.kind];
        if gone.kind_still_used {
            self.workloads
                .workload_gpu_processes
                .with_label_values(&pair)
                .set(saturating_i64(gone.remaining_gpu_processes));
            return;
        }
        // Removing a series that was never created is not an error worth
        // reporting: the workload may never have sent or read anything.
        self.forget_llm_series(pair[0]);
        self.forget_pod_series(pair[0], pair[1]);
        let _ = self
            .workloads
            .workload_gpu_processes
            .remove_label_values(&pair);
        let _ = self
            .workloads
            .workload_egress_bytes
            .remove_label_values(&pair);
        let _ = self
            .workloads
            .workload_model_read_bytes
            .remove_label_values(&pair);
        for severity in SEVERITIES {
            let _ = self.alerts.workload_alerts.remove_label_values(&[
                pair[0],
                pair[1],
                severity.as_str(),
            ]);
        }
    }

    pub(super) fn admit_workload(&self, workload: &WorkloadRef) -> workload_series::SeriesLabels {
        let admission = lock(&self.workloads.workload_series).admit(workload);
        self.count_overflow(admission)
    }

    fn count_overflow(&self, admission: Admission) -> workload_series::SeriesLabels {
        match admission {
            Admission::Own(labels) => labels,
            Admission::NewOverflow(labels) => {
                self.workloads.workload_series_overflow.inc();
                labels
            }
        }
    }

    /// The total evictions of `table` so far (an absolute value).
    pub fn observe_evictions_total(&self, table: super::EvictionTable, total: u64) {
        let counter = self
            .workloads
            .evictions
            .with_label_values(&[table.as_str()]);
        counter.inc_by(total.saturating_sub(counter.get()));
    }

    /// A directory's reads could not be folded.
    pub fn file_access_refused(&self) {
        self.workloads.file_access_refused.inc();
    }

    /// Workload processes found gone whose exits were lost.
    pub fn exits_inferred(&self, processes: usize) {
        self.workloads.exits_inferred.inc_by(processes as u64);
    }

    /// Process and directory pairs the kernel counts reads of.
    pub fn set_file_access_dirs(&self, count: usize) {
        self.workloads.file_access_dirs.set(count as i64);
    }

    /// A request for the remote stream was refused.
    pub fn stream_refused(&self, reason: StreamRefusal) {
        self.workloads
            .stream_refused
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// The live stream's dropped lines so far (an absolute value).
    pub fn observe_stream_dropped_total(&self, total: u64) {
        self.workloads
            .stream_dropped
            .inc_by(total.saturating_sub(self.workloads.stream_dropped.get()));
    }

    /// The total profile-file errors of one kind (`corrupt`, `save`) so far.
    pub fn observe_anomaly_profile_errors_total(&self, error: &str, total: u64) {
        let counter = self
            .workloads
            .anomaly_profile_errors
            .with_label_values(&[error]);
        counter.inc_by(total.saturating_sub(counter.get()));
    }

    /// Number of anomaly profiles in `state`.
    pub fn set_anomaly_profiles(&self, state: ProfileState, profiles: u64) {
        self.workloads
            .anomaly_profiles
            .with_label_values(&[state.as_str()])
            .set(saturating_i64(profiles));
    }
}
