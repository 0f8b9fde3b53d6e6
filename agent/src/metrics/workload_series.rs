//! Bounded label values for per-workload series.
//!
//! Every per-workload metric carries a `workload` label. Workloads come and go
//! (notebooks, batch jobs), so the label values are admitted up to a cap; past
//! it, new workloads share the single value `other`. A workload that ends is
//! forgotten, which frees its slot and lets its series be dropped.
//!
//! Several workloads may map to one label value (two pods both named `vllm`,
//! or everything past the cap), so gauges are kept per workload id here and
//! summed per label value when written.

use std::collections::{HashMap, HashSet};

use crate::event::WorkloadRef;

/// The label value shared by the workloads admitted past the cap.
pub const OVERFLOW_LABEL: &str = "other";

/// Workload kinds known to the classifier; anything else is reported as
/// `other` so that a misbehaving classifier cannot blow up the `kind` label.
pub const WORKLOAD_KINDS: [&str; 6] = [
    "inference",
    "training",
    "notebook",
    "agent",
    "pipeline",
    "unknown-ai",
];

/// Label value used for `workload_kind` when an alert has no workload.
pub const NO_WORKLOAD_KIND: &str = "none";

/// The bounded `kind` label value for a workload kind string.
pub fn kind_label(kind: &str) -> &'static str {
    WORKLOAD_KINDS
        .into_iter()
        .find(|known| *known == kind)
        .unwrap_or(OVERFLOW_LABEL)
}

/// The label pair (`workload`, `kind`) a workload's series use.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SeriesLabels {
    pub workload: String,
    pub kind: &'static str,
}

/// What admitting a workload did, so the caller can count overflows.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// Already known, or admitted under its own label value.
    Own(SeriesLabels),
    /// Seen for the first time past the cap: now reported as `other`.
    NewOverflow(SeriesLabels),
}

impl Admission {
    pub fn labels(&self) -> &SeriesLabels {
        match self {
            Admission::Own(labels) | Admission::NewOverflow(labels) => labels,
        }
    }
}

/// Tracks which workload ids map to which label values.
#[derive(Debug)]
pub struct WorkloadSeries {
    max_series: usize,
    /// Label value → ids of live workloads reported under it.
    ids_by_label: HashMap<String, HashSet<String>>,
    /// Workload id → its labels (own or `other`).
    labels_by_id: HashMap<String, SeriesLabels>,
    /// Workload id → last GPU process count, summed per label when written.
    gpu_processes_by_id: HashMap<String, u64>,
}

impl WorkloadSeries {
    pub fn new(max_series: usize) -> Self {
        WorkloadSeries {
            max_series,
            ids_by_label: HashMap::new(),
            labels_by_id: HashMap::new(),
            gpu_processes_by_id: HashMap::new(),
        }
    }

    /// The label value a workload is shown under: its name, or its id when
    /// it has no name.
    fn own_label(workload: &WorkloadRef) -> &str {
        if workload.name.is_empty() {
            &workload.id
        } else {
            &workload.name
        }
    }

    /// Returns the labels for `workload`, admitting it if it is new.
    pub fn admit(&mut self, workload: &WorkloadRef) -> Admission {
        if let Some(labels) = self.labels_by_id.get(&workload.id) {
            return Admission::Own(labels.clone());
        }
        let kind = kind_label(workload.kind.as_str());
        let own = Self::own_label(workload);
        // The `other` value itself never counts against the cap, and a
        // workload literally named `other` is folded into it.
        let label_known = self.ids_by_label.contains_key(own);
        let admitted_labels = self
            .ids_by_label
            .keys()
            .filter(|label| label.as_str() != OVERFLOW_LABEL)
            .count();
        let overflow =
            own == OVERFLOW_LABEL || (!label_known && admitted_labels >= self.max_series);
        let labels = SeriesLabels {
            workload: if overflow {
                OVERFLOW_LABEL.to_string()
            } else {
                own.to_string()
            },
            kind,
        };
        self.ids_by_label
            .entry(labels.workload.clone())
            .or_default()
            .insert(workload.id.clone());
        self.labels_by_id
            .insert(workload.id.clone(), labels.clone());
        if overflow {
            Admission::NewOverflow(labels)
        } else {
            Admission::Own(labels)
        }
    }

    /// Records a workload's GPU process count and returns the labels and the
    /// total to write for them (the sum over workloads sharing the labels).
    pub fn set_gpu_processes(&mut self, workload: &WorkloadRef, count: u64) -> (Admission, u64) {
        let admission = self.admit(workload);
        self.gpu_processes_by_id.insert(workload.id.clone(), count);
        let total = self.gpu_total_for(admission.labels());
        (admission, total)
    }

    fn gpu_total_for(&self, labels: &SeriesLabels) -> u64 {
        self.labels_by_id
            .iter()
            .filter(|(_, other)| *other == labels)
            .filter_map(|(id, _)| self.gpu_processes_by_id.get(id))
            .sum()
    }

    /// Forgets an ended workload. Returns its labels, whether another live
    /// workload still uses them (else the series can be dropped), and the
    /// GPU total still owed to the labels.
    pub fn forget(&mut self, workload_id: &str) -> Option<Forgotten> {
        let labels = self.labels_by_id.remove(workload_id)?;
        self.gpu_processes_by_id.remove(workload_id);
        let label_unused = match self.ids_by_label.get_mut(&labels.workload) {
            Some(ids) => {
                ids.remove(workload_id);
                ids.is_empty()
            }
            None => true,
        };
        if label_unused {
            self.ids_by_label.remove(&labels.workload);
        }
        let remaining_gpu_processes = self.gpu_total_for(&labels);
        let kind_still_used = self.labels_by_id.values().any(|other| *other == labels);
        Some(Forgotten {
            labels,
            kind_still_used,
            remaining_gpu_processes,
        })
    }

    /// Sets an ended workload's GPU process count to 0; returns its labels
    /// and the total now owed to them.
    pub fn clear_gpu_processes(&mut self, workload_id: &str) -> Option<(SeriesLabels, u64)> {
        let labels = self.labels_by_id.get(workload_id)?.clone();
        self.gpu_processes_by_id.insert(workload_id.to_string(), 0);
        let total = self.gpu_total_for(&labels);
        Some((labels, total))
    }

    /// Ids of the workloads admitted and not forgotten.
    pub fn admitted_ids(&self) -> Vec<String> {
        self.labels_by_id.keys().cloned().collect()
    }

    /// Number of distinct label values in use, `other` included.
    #[cfg(test)]
    pub fn label_count(&self) -> usize {
        self.ids_by_label.len()
    }
}

/// The outcome of [`WorkloadSeries::forget`].
#[derive(Debug)]
pub struct Forgotten {
    pub labels: SeriesLabels,
    /// Another live workload still uses the same (`workload`, `kind`) pair.
    pub kind_still_used: bool,
    pub remaining_gpu_processes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::tests::workload;

    #[test]
    fn admits_up_to_the_cap_then_collapses_into_other() {
        let mut series = WorkloadSeries::new(2);
        let first = series.admit(&workload("a", "alpha", "inference"));
        let second = series.admit(&workload("b", "beta", "training"));
        let third = series.admit(&workload("c", "gamma", "notebook"));
        assert_eq!(first.labels().workload, "alpha");
        assert_eq!(second.labels().workload, "beta");
        assert!(matches!(third, Admission::NewOverflow(_)));
        assert_eq!(third.labels().workload, OVERFLOW_LABEL);
        // Seeing it again is not a new overflow.
        assert!(matches!(
            series.admit(&workload("c", "gamma", "notebook")),
            Admission::Own(_)
        ));
    }

    #[test]
    fn shared_names_do_not_use_a_new_slot() {
        let mut series = WorkloadSeries::new(1);
        series.admit(&workload("pod-1", "vllm", "inference"));
        let twin = series.admit(&workload("pod-2", "vllm", "inference"));
        assert_eq!(twin.labels().workload, "vllm");
        assert_eq!(series.label_count(), 1);
    }

    #[test]
    fn forgetting_frees_a_slot() {
        let mut series = WorkloadSeries::new(1);
        series.admit(&workload("a", "alpha", "agent"));
        let gone = series.forget("a").expect("known workload");
        assert!(!gone.kind_still_used);
        let next = series.admit(&workload("b", "beta", "agent"));
        assert_eq!(next.labels().workload, "beta");
    }

    #[test]
    fn gpu_counts_are_summed_over_workloads_sharing_labels() {
        let mut series = WorkloadSeries::new(0);
        let (_, first) = series.set_gpu_processes(&workload("a", "alpha", "training"), 3);
        let (_, both) = series.set_gpu_processes(&workload("b", "beta", "training"), 2);
        assert_eq!(first, 3);
        assert_eq!(both, 5);
        let gone = series.forget("a").expect("known workload");
        assert_eq!(gone.remaining_gpu_processes, 2);
        // Both were past the cap of zero: `other` still has a live workload.
        assert!(gone.kind_still_used);
    }

    #[test]
    fn unknown_kinds_are_bounded() {
        assert_eq!(kind_label("inference"), "inference");
        assert_eq!(kind_label("made-up-kind"), OVERFLOW_LABEL);
    }

    #[test]
    fn unnamed_workloads_use_their_id() {
        let mut series = WorkloadSeries::new(5);
        let admission = series.admit(&workload("cgroup-42", "", "pipeline"));
        assert_eq!(admission.labels().workload, "cgroup-42");
    }
}
