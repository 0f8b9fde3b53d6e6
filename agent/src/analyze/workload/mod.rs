//! AI workloads: which processes belong to which workload, and why.
//!
//! The pipeline feeds the [`WorkloadTable`] process lifecycle and the few
//! facts that are evidence (exec, mapped libraries, classified file opens,
//! device opens, listening sockets). The table classifies a process only
//! when its evidence changes, never per event, and answers [`lookup`]
//! cheaply for every event. Children inherit their parent's workload.
//! Declarations from the configuration win over discovery.
//!
//! Every method that can change an assignment returns [`WorkloadChange`]s,
//! so the pipeline can keep the kernel's tracking maps in step.
//!
//! [`lookup`]: WorkloadTable::lookup

pub mod classify;
pub mod cmdline;
pub mod container;
pub mod declared;
mod default_rules;
mod membership;
mod pod_declared;
pub mod signals;

use std::collections::{BTreeSet, HashMap, VecDeque};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::enrich::assets::AssetClass;
use crate::event::WorkloadRef;
pub use classify::{ClassifierConfig, WorkloadClassifier};
pub use container::{parse_cgroup_path, parse_proc_cgroup, ContainerIdentity};
pub use declared::{DeclaredSet, DeclaredWorkload, MatchFacts};
pub use signals::{Evidence, Signal, SignalSource, WorkloadKind};

/// What the pipeline knows about a process at exec (or at start-up scan).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessFacts {
    pub exe: String,
    pub argv: Vec<String>,
    /// cgroup path (v2 or the v1 path that names the container).
    pub cgroup: String,
    pub container_id: Option<String>,
    /// Parent pid, used when the process was not seen forking (start-up).
    pub ppid: Option<u32>,
}

/// A change of assignment the pipeline should mirror in kernel maps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum WorkloadChange {
    Joined {
        pid: u32,
        workload: WorkloadRef,
        /// The process joined through a declaration that names its container
        /// (`match.cgroup` or `match.container_id`): its whole cgroup is the
        /// workload's, and is tracked as such in the kernel.
        holds_container: bool,
        /// The workload is declared in the configuration (not discovered):
        /// its processes may open accelerators under accelerator deny.
        declared: bool,
    },
    Left {
        pid: u32,
        workload: WorkloadRef,
    },
    /// New evidence changed a discovered workload's kind (and so its id).
    Reclassified {
        from: WorkloadRef,
        to: WorkloadRef,
        pids: Vec<u32>,
    },
}

/// Containers whose pod declares their workload, remembered at most.
const POD_DECLARATIONS_KEPT: std::num::NonZeroUsize = match std::num::NonZeroUsize::new(4_096) {
    Some(kept) => kept,
    None => std::num::NonZeroUsize::MIN,
};

/// Bounds of the table. Defaults: 65 536 processes, 1 024 workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableLimits {
    /// Processes tracked. Past it the oldest process not in a workload is
    /// forgotten (it can still be classified again from new evidence).
    pub max_processes: usize,
    /// Workloads kept, including ones whose processes all exited. Past it
    /// the workload idle the longest is forgotten.
    pub max_workloads: usize,
}

impl Default for TableLimits {
    fn default() -> Self {
        TableLimits {
            max_processes: 65_536,
            max_workloads: 1_024,
        }
    }
}

/// Counters of what the bounds cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TableStats {
    pub processes_evicted: u64,
    pub processes_dropped: u64,
    pub workloads_evicted: u64,
    pub workloads_dropped: u64,
}

/// A workload as listed by [`WorkloadTable::workloads`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorkloadInfo {
    #[serde(flatten)]
    pub workload: WorkloadRef,
    pub declared: bool,
    pub score: u32,
    pub signals: Vec<Signal>,
    /// The signals as sentences, for people.
    pub reasons: Vec<String>,
    pub pids: Vec<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    pub cgroup: String,
}

#[derive(Clone, Debug, Default)]
struct ProcState {
    exe: String,
    argv: Vec<String>,
    cgroup: String,
    container_id: Option<String>,
    parent: Option<u32>,
    /// Evidence while the process is in no workload.
    evidence: Evidence,
    workload: Option<String>,
    /// It joined its workload through a declaration that names its
    /// container, or descends from a process that did: it holds its cgroup
    /// in the kernel's tracking map (`WorkloadChange::Joined`).
    holds_container: bool,
    seq: u64,
}

#[derive(Clone, Debug)]
struct WorkloadEntry {
    workload: WorkloadRef,
    declared: bool,
    evidence: Evidence,
    pids: BTreeSet<u32>,
    container_id: Option<String>,
    cgroup: String,
    scope: String,
    last_active: u64,
}

/// The per-process workload assignment. See the module documentation.
#[derive(Debug)]
pub struct WorkloadTable {
    classifier: WorkloadClassifier,
    declared: DeclaredSet,
    limits: TableLimits,
    procs: HashMap<u32, ProcState>,
    /// Insertion order of processes, for eviction; may hold stale entries.
    order: VecDeque<(u64, u32)>,
    workloads: HashMap<String, WorkloadEntry>,
    /// Workloads declared by pod annotations, by container id: as many as
    /// the container identities the runtime cache keeps by default.
    pod_declared: lru::LruCache<String, DeclaredWorkload>,
    seq: u64,
    stats: TableStats,
}

/// Stable id: the same kind, name and container (or cgroup) give the same
/// id, so a restarted server keeps its id.
pub fn workload_id(kind: WorkloadKind, name: &str, scope: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [kind.as_str(), name, scope] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    let digest = hasher.finalize();
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("wl-{hex}")
}

/// The container id, else the cgroup path without transient units
/// (`session-3.scope`), which change from one run to the next.
fn scope_of(container_id: Option<&str>, cgroup: &str) -> String {
    if let Some(id) = container_id {
        return id.to_string();
    }
    cgroup
        .split('/')
        .filter(|c| !c.is_empty() && !c.ends_with(".scope"))
        .collect::<Vec<_>>()
        .join("/")
}

impl WorkloadTable {
    pub fn new(classifier: WorkloadClassifier, declared: DeclaredSet, limits: TableLimits) -> Self {
        WorkloadTable {
            classifier,
            declared,
            limits,
            procs: HashMap::new(),
            order: VecDeque::new(),
            workloads: HashMap::new(),
            pod_declared: lru::LruCache::new(POD_DECLARATIONS_KEPT),
            seq: 0,
            stats: TableStats::default(),
        }
    }

    /// The workload of a process, if any. Cheap; call it for every event.
    pub fn lookup(&self, pid: u32) -> Option<&WorkloadRef> {
        let id = self.procs.get(&pid)?.workload.as_ref()?;
        self.workloads.get(id).map(|entry| &entry.workload)
    }

    /// Every workload with its evidence, sorted by name then id.
    pub fn workloads(&self) -> Vec<WorkloadInfo> {
        let mut list: Vec<WorkloadInfo> = self
            .workloads
            .values()
            .map(|entry| WorkloadInfo {
                workload: entry.workload.clone(),
                declared: entry.declared,
                score: entry.evidence.score(),
                signals: entry.evidence.signals.clone(),
                reasons: entry.evidence.signals.iter().map(Signal::reason).collect(),
                pids: entry.pids.iter().copied().collect(),
                container_id: entry.container_id.clone(),
                cgroup: entry.cgroup.clone(),
            })
            .collect();
        list.sort_by(|a, b| {
            (&a.workload.name, &a.workload.id).cmp(&(&b.workload.name, &b.workload.id))
        });
        list
    }

    /// The pids of every process that belongs to a workload.
    pub fn member_pids(&self) -> Vec<u32> {
        self.procs
            .iter()
            .filter(|(_, state)| state.workload.is_some())
            .map(|(&pid, _)| pid)
            .collect()
    }

    pub fn process_count(&self) -> usize {
        self.procs.len()
    }

    pub fn stats(&self) -> TableStats {
        self.stats
    }

    /// A process forked: the child inherits its parent's facts, evidence
    /// and workload.
    pub fn on_fork(&mut self, parent_pid: u32, child_pid: u32) -> Vec<WorkloadChange> {
        let mut changes = self.forget(child_pid);
        let mut child = match self.procs.get(&parent_pid) {
            Some(parent) => ProcState {
                exe: parent.exe.clone(),
                argv: parent.argv.clone(),
                cgroup: parent.cgroup.clone(),
                container_id: parent.container_id.clone(),
                evidence: parent.evidence.clone(),
                workload: parent.workload.clone(),
                holds_container: parent.holds_container,
                ..ProcState::default()
            },
            None => ProcState::default(),
        };
        child.parent = Some(parent_pid);
        let workload = child.workload.clone();
        if self.insert(child_pid, child) {
            if let Some(id) = workload {
                changes.extend(self.join(child_pid, &id));
            }
        }
        changes
    }

    /// A process executed a new image (or was found at start-up).
    pub fn on_exec(&mut self, pid: u32, facts: ProcessFacts) -> Vec<WorkloadChange> {
        let mut changes = Vec::new();
        if !self.procs.contains_key(&pid) {
            let parent = facts.ppid.and_then(|ppid| self.procs.get(&ppid));
            let inherited = parent.and_then(|parent| parent.workload.clone());
            let state = ProcState {
                parent: facts.ppid,
                workload: inherited.clone(),
                holds_container: parent.is_some_and(|parent| parent.holds_container),
                ..ProcState::default()
            };
            if !self.insert(pid, state) {
                return changes;
            }
            if let Some(id) = inherited {
                changes.extend(self.join(pid, &id));
            }
        }
        let exec_signals = self.classifier.exec_signals(&facts.exe, &facts.argv);
        let declared = self
            .declared
            .find(&MatchFacts {
                exe: &facts.exe,
                argv: &facts.argv,
                cgroup: &facts.cgroup,
                container_id: facts.container_id.as_deref(),
            })
            .cloned()
            .or_else(|| {
                // The configuration first, then the pod's annotations.
                facts
                    .container_id
                    .as_deref()
                    .and_then(|id| self.pod_declared.peek(id))
                    .cloned()
            });
        let Some(state) = self.procs.get_mut(&pid) else {
            return changes;
        };
        state.exe = facts.exe;
        state.argv = facts.argv;
        state.cgroup = facts.cgroup;
        state.container_id = facts.container_id;
        // A new image: what the old one mapped or opened says nothing now.
        state.evidence = Evidence::default();
        let current = state.workload.clone();

        if let Some(declaration) = declared {
            if current.as_deref()
                != Some(workload_id(declaration.kind, &declaration.name, "").as_str())
            {
                changes.extend(self.leave(pid));
                changes.extend(self.join_declared(pid, &declaration));
            }
            return changes;
        }
        // An inherited member keeps its workload whatever it runs: a shell
        // spawned by a model server is the server's business.
        if current.is_none() {
            for signal in exec_signals {
                changes.extend(self.add_signal(pid, signal));
            }
        }
        changes
    }

    /// A process exited.
    pub fn on_exit(&mut self, pid: u32) -> Vec<WorkloadChange> {
        self.forget(pid)
    }

    /// A classified file was opened. `write` is true for write access.
    pub fn on_file_open(
        &mut self,
        pid: u32,
        class: AssetClass,
        path: &str,
        write: bool,
    ) -> Vec<WorkloadChange> {
        let ignored = self
            .procs
            .get(&pid)
            .is_some_and(|p| self.classifier.ignores_files_of(&p.exe));
        if ignored {
            return Vec::new();
        }
        match self.classifier.file_signal(class, path, write) {
            Some(signal) => self.add_signal(pid, signal),
            None => Vec::new(),
        }
    }

    /// `/proc/<pid>/maps` was read for a process alive for a moment.
    pub fn on_library_scan(
        &mut self,
        pid: u32,
        maps: &procfs::process::MemoryMaps,
    ) -> Vec<WorkloadChange> {
        let mut changes = Vec::new();
        for signal in self.classifier.library_signals(maps) {
            changes.extend(self.add_signal(pid, signal));
        }
        changes
    }

    /// A GPU device node was opened.
    pub fn on_device_open(&mut self, pid: u32, path: &str) -> Vec<WorkloadChange> {
        let signal = self.classifier.device_signal(path);
        self.add_signal(pid, signal)
    }

    /// The process called an LLM API.
    pub fn on_llm_call(&mut self, pid: u32, provider: &str, host: &str) -> Vec<WorkloadChange> {
        let signal = self.classifier.llm_signal(provider, host);
        self.add_signal(pid, signal)
    }

    /// A socket of the process started listening.
    pub fn on_listen(&mut self, pid: u32, port: u16) -> Vec<WorkloadChange> {
        let signal = self.classifier.listen_signal(port);
        self.add_signal(pid, signal)
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
}

#[cfg(test)]
mod tests;
