//! How processes join, leave and move between workloads: the process and
//! workload bounds, membership, and the decisions new evidence brings
//! (a new discovered workload, or a reclassified one).

use std::collections::BTreeSet;

use super::{
    classify, scope_of, workload_id, Evidence, ProcState, Signal, WorkloadChange, WorkloadEntry,
    WorkloadKind, WorkloadTable,
};
use crate::event::WorkloadRef;

impl WorkloadTable {
    /// Inserts a process, evicting the oldest unassigned one when full.
    pub(super) fn insert(&mut self, pid: u32, mut state: ProcState) -> bool {
        if self.procs.len() >= self.limits.max_processes && !self.evict_one_process() {
            self.stats.processes_dropped += 1;
            return false;
        }
        state.seq = self.next_seq();
        self.order.push_back((state.seq, pid));
        self.procs.insert(pid, state);
        if self.order.len() > self.limits.max_processes.saturating_mul(2).max(16) {
            let procs = &self.procs;
            self.order
                .retain(|(seq, pid)| procs.get(pid).is_some_and(|p| p.seq == *seq));
        }
        true
    }

    fn evict_one_process(&mut self) -> bool {
        let mut skipped = Vec::new();
        let mut evicted = false;
        while let Some((seq, pid)) = self.order.pop_front() {
            match self.procs.get(&pid) {
                Some(p) if p.seq == seq && p.workload.is_none() => {
                    self.procs.remove(&pid);
                    self.stats.processes_evicted += 1;
                    evicted = true;
                    break;
                }
                Some(p) if p.seq == seq => skipped.push((seq, pid)),
                _ => {}
            }
        }
        for entry in skipped.into_iter().rev() {
            self.order.push_front(entry);
        }
        evicted
    }

    /// Removes a process and its membership.
    pub(super) fn forget(&mut self, pid: u32) -> Vec<WorkloadChange> {
        let changes = self.leave(pid);
        self.procs.remove(&pid);
        changes
    }

    pub(super) fn leave(&mut self, pid: u32) -> Vec<WorkloadChange> {
        let Some(state) = self.procs.get_mut(&pid) else {
            return Vec::new();
        };
        state.holds_container = false;
        let Some(id) = state.workload.take() else {
            return Vec::new();
        };
        let seq = self.next_seq();
        match self.workloads.get_mut(&id) {
            Some(entry) => {
                entry.pids.remove(&pid);
                entry.last_active = seq;
                vec![WorkloadChange::Left {
                    pid,
                    workload: entry.workload.clone(),
                }]
            }
            None => Vec::new(),
        }
    }

    pub(super) fn join(&mut self, pid: u32, id: &str) -> Vec<WorkloadChange> {
        let seq = self.next_seq();
        let (Some(entry), Some(state)) = (self.workloads.get_mut(id), self.procs.get_mut(&pid))
        else {
            return Vec::new();
        };
        state.workload = Some(id.to_string());
        entry.evidence.merge(&std::mem::take(&mut state.evidence));
        entry.workload.claimed = !entry.declared && entry.evidence.claims_only();
        entry.pids.insert(pid);
        entry.last_active = seq;
        vec![WorkloadChange::Joined {
            pid,
            workload: entry.workload.clone(),
            holds_container: state.holds_container,
            declared: entry.declared,
        }]
    }

    /// Makes sure workload `id` exists; false when the cap forbids it.
    pub(super) fn ensure_workload(
        &mut self,
        id: &str,
        kind: WorkloadKind,
        name: &str,
        scope: String,
        founder: u32,
        declared: bool,
    ) -> bool {
        if self.workloads.contains_key(id) {
            return true;
        }
        if self.workloads.len() >= self.limits.max_workloads {
            let idle = self
                .workloads
                .iter()
                .filter(|(_, entry)| entry.pids.is_empty())
                .min_by_key(|(_, entry)| entry.last_active)
                .map(|(id, _)| id.clone());
            match idle {
                Some(idle) => {
                    self.workloads.remove(&idle);
                    self.stats.workloads_evicted += 1;
                }
                None => {
                    self.stats.workloads_dropped += 1;
                    return false;
                }
            }
        }
        let (container_id, cgroup) = self
            .procs
            .get(&founder)
            .map(|p| (p.container_id.clone(), p.cgroup.clone()))
            .unwrap_or_default();
        self.workloads.insert(
            id.to_string(),
            WorkloadEntry {
                workload: WorkloadRef {
                    id: id.to_string(),
                    kind,
                    name: name.to_string(),
                    claimed: false,
                },
                declared,
                evidence: Evidence::default(),
                pids: BTreeSet::new(),
                container_id,
                cgroup,
                scope,
                last_active: 0,
            },
        );
        true
    }

    /// Adds evidence to a process (or its workload) and re-decides only if
    /// the evidence changed.
    pub(super) fn add_signal(&mut self, pid: u32, signal: Signal) -> Vec<WorkloadChange> {
        let Some(state) = self.procs.get_mut(&pid) else {
            return Vec::new();
        };
        if let Some(id) = state.workload.clone() {
            let threshold = self.classifier.threshold();
            let Some(entry) = self.workloads.get_mut(&id) else {
                return Vec::new();
            };
            if !entry.evidence.add(signal) || entry.declared {
                return Vec::new();
            }
            entry.workload.claimed = entry.evidence.claims_only();
            let Some(kind) = entry.evidence.verdict(threshold) else {
                return Vec::new();
            };
            if kind == entry.workload.kind {
                return Vec::new();
            }
            return self.reclassify(&id, kind);
        }
        if !state.evidence.add(signal) {
            return Vec::new();
        }
        let Some(kind) = state.evidence.verdict(self.classifier.threshold()) else {
            return Vec::new();
        };
        let name = classify::name_hint(&state.exe, &state.argv);
        let scope = scope_of(state.container_id.as_deref(), &state.cgroup);
        let id = workload_id(kind, &name, &scope);
        if !self.ensure_workload(&id, kind, &name, scope, pid, false) {
            return Vec::new();
        }
        let mut changes = self.join(pid, &id);
        for descendant in self.unassigned_descendants(pid) {
            changes.extend(self.join(descendant, &id));
        }
        changes
    }

    /// Moves every member of a discovered workload to the id of its new kind.
    fn reclassify(&mut self, id: &str, kind: WorkloadKind) -> Vec<WorkloadChange> {
        let Some(old) = self.workloads.remove(id) else {
            return Vec::new();
        };
        let new_id = workload_id(kind, &old.workload.name, &old.scope);
        let pids: Vec<u32> = old.pids.iter().copied().collect();
        let mut entry = self
            .workloads
            .remove(&new_id)
            .unwrap_or_else(|| WorkloadEntry {
                workload: WorkloadRef {
                    id: new_id.clone(),
                    kind,
                    name: old.workload.name.clone(),
                    claimed: false,
                },
                evidence: Evidence::default(),
                pids: BTreeSet::new(),
                ..old.clone()
            });
        entry.evidence.merge(&old.evidence);
        entry.workload.claimed = !entry.declared && entry.evidence.claims_only();
        entry.pids.extend(old.pids.iter().copied());
        entry.last_active = self.next_seq();
        for pid in &pids {
            if let Some(state) = self.procs.get_mut(pid) {
                state.workload = Some(new_id.clone());
            }
        }
        let to = entry.workload.clone();
        self.workloads.insert(new_id, entry);
        vec![WorkloadChange::Reclassified {
            from: old.workload,
            to,
            pids,
        }]
    }

    /// Processes below `root` (up to 16 generations) in no workload.
    fn unassigned_descendants(&self, root: u32) -> Vec<u32> {
        self.procs
            .iter()
            .filter(|(pid, state)| **pid != root && state.workload.is_none())
            .filter(|(_, state)| {
                let mut cursor = state.parent;
                for _ in 0..16 {
                    match cursor {
                        Some(p) if p == root => return true,
                        Some(p) => cursor = self.procs.get(&p).and_then(|s| s.parent),
                        None => return false,
                    }
                }
                false
            })
            .map(|(pid, _)| *pid)
            .collect()
    }
}
