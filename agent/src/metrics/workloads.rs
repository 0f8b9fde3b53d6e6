//! Per-workload series: counts by kind, GPU processes, egress, model reads and alerts, kept a while after a workload ends; and anomaly profile states.

use super::*;

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
                .with_label_values(&[kind])
                .set(saturating_i64(count));
        }
    }

    /// Processes of `workload` that hold an accelerator device open.
    pub fn set_workload_gpu_processes(&self, workload: &WorkloadRef, processes: u64) {
        let (admission, total) = lock(&self.workload_series).set_gpu_processes(workload, processes);
        let labels = self.count_overflow(admission);
        self.workload_gpu_processes
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
        self.workload_egress_bytes.with_label_values(&pair);
        self.workload_model_read_bytes.with_label_values(&pair);
        for severity in SEVERITIES {
            self.workload_alerts
                .with_label_values(&[pair[0], pair[1], severity.as_str()]);
        }
    }

    /// A workload's processes all exited: none holds a GPU any more. Its
    /// series stay until [`Metrics::forget_workload`].
    pub fn workload_ended(&self, workload_id: &str) {
        let cleared = lock(&self.workload_series).clear_gpu_processes(workload_id);
        if let Some((labels, total)) = cleared {
            self.workload_gpu_processes
                .with_label_values(&[labels.workload.as_str(), labels.kind])
                .set(saturating_i64(total));
        }
    }

    /// Ids of the workloads that have series.
    pub fn workloads_with_series(&self) -> Vec<String> {
        lock(&self.workload_series).admitted_ids()
    }

    /// `bytes` sent by `workload` to an external address.
    pub fn workload_egress(&self, workload: &WorkloadRef, bytes: u64) {
        let labels = self.admit_workload(workload);
        self.workload_egress_bytes
            .with_label_values(&[labels.workload.as_str(), labels.kind])
            .inc_by(bytes);
    }

    /// `bytes` of model files opened for reading by `workload`.
    pub fn workload_model_read(&self, workload: &WorkloadRef, bytes: u64) {
        let labels = self.admit_workload(workload);
        self.workload_model_read_bytes
            .with_label_values(&[labels.workload.as_str(), labels.kind])
            .inc_by(bytes);
    }

    /// The workload ended: frees its label slot and drops its series when no
    /// other live workload shares them.
    pub fn forget_workload(&self, workload_id: &str) {
        let Some(gone) = lock(&self.workload_series).forget(workload_id) else {
            return;
        };
        let pair = [gone.labels.workload.as_str(), gone.labels.kind];
        if gone.kind_still_used {
            self.workload_gpu_processes
                .with_label_values(&pair)
                .set(saturating_i64(gone.remaining_gpu_processes));
            return;
        }
        // Removing a series that was never created is not an error worth
        // reporting: the workload may never have sent or read anything.
        self.forget_llm_series(pair[0]);
        self.forget_pod_series(pair[0], pair[1]);
        let _ = self.workload_gpu_processes.remove_label_values(&pair);
        let _ = self.workload_egress_bytes.remove_label_values(&pair);
        let _ = self.workload_model_read_bytes.remove_label_values(&pair);
        for severity in SEVERITIES {
            let _ =
                self.workload_alerts
                    .remove_label_values(&[pair[0], pair[1], severity.as_str()]);
        }
    }

    pub(super) fn admit_workload(&self, workload: &WorkloadRef) -> workload_series::SeriesLabels {
        let admission = lock(&self.workload_series).admit(workload);
        self.count_overflow(admission)
    }

    fn count_overflow(&self, admission: Admission) -> workload_series::SeriesLabels {
        match admission {
            Admission::Own(labels) => labels,
            Admission::NewOverflow(labels) => {
                self.workload_series_overflow.inc();
                labels
            }
        }
    }

    /// The total evictions of `table` so far (an absolute value).
    pub fn observe_evictions_total(&self, table: super::EvictionTable, total: u64) {
        let counter = self.evictions.with_label_values(&[table.as_str()]);
        counter.inc_by(total.saturating_sub(counter.get()));
    }

    /// A directory's reads could not be folded.
    pub fn file_access_refused(&self) {
        self.file_access_refused.inc();
    }

    /// Process and directory pairs the kernel counts reads of.
    pub fn set_file_access_dirs(&self, count: usize) {
        self.file_access_dirs.set(count as i64);
    }

    /// A request for the remote stream was refused.
    pub fn stream_refused(&self, reason: StreamRefusal) {
        self.stream_refused
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// The live stream's dropped lines so far (an absolute value).
    pub fn observe_stream_dropped_total(&self, total: u64) {
        self.stream_dropped
            .inc_by(total.saturating_sub(self.stream_dropped.get()));
    }

    /// The total profile-file errors of one kind (`corrupt`, `save`) so far.
    pub fn observe_anomaly_profile_errors_total(&self, error: &str, total: u64) {
        let counter = self.anomaly_profile_errors.with_label_values(&[error]);
        counter.inc_by(total.saturating_sub(counter.get()));
    }

    /// Number of anomaly profiles in `state`.
    pub fn set_anomaly_profiles(&self, state: ProfileState, profiles: u64) {
        self.anomaly_profiles
            .with_label_values(&[state.as_str()])
            .set(saturating_i64(profiles));
    }
}
