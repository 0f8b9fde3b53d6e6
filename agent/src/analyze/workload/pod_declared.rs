//! Workloads declared by pod annotations (`analyze::runtime`), and the
//! join into a declared workload that they share with the configuration's
//! declarations.

use super::{workload_id, DeclaredWorkload, Signal, SignalSource, WorkloadChange, WorkloadTable};
use crate::event::WorkloadRef;

impl WorkloadTable {
    /// A pod's annotations declare the workload of container `container_id`
    /// (`analyze::runtime`): as a configured `match: {container_id: ...}`
    /// would, its processes join the declared workload now, and processes
    /// that start in the container later join it at exec. Processes a
    /// configured declaration holds keep theirs: the configuration wins.
    pub fn declare_container(
        &mut self,
        container_id: &str,
        declaration: DeclaredWorkload,
    ) -> Vec<WorkloadChange> {
        // Bounded: the least recently declared container goes first. Its
        // processes keep the workload they joined; only a process entering
        // it from outside afterwards would miss the declaration.
        self.pod_declared
            .push(container_id.to_string(), declaration.clone());
        let id = workload_id(declaration.kind, &declaration.name, "");
        let members: Vec<u32> = self
            .procs
            .iter()
            .filter(|(_, p)| p.container_id.as_deref() == Some(container_id))
            .filter(|(_, p)| match p.workload.as_deref() {
                Some(current) => {
                    current != id && !self.workloads.get(current).is_some_and(|w| w.declared)
                }
                None => true,
            })
            .map(|(pid, _)| *pid)
            .collect();
        let mut changes = Vec::new();
        for pid in members {
            changes.extend(self.leave(pid));
            changes.extend(self.join_declared(pid, &declaration));
        }
        changes
    }

    /// Puts `pid` in declared workload `declaration`.
    pub(super) fn join_declared(
        &mut self,
        pid: u32,
        declaration: &DeclaredWorkload,
    ) -> Vec<WorkloadChange> {
        let id = workload_id(declaration.kind, &declaration.name, "");
        let signal = Signal {
            source: SignalSource::Declared,
            key: declaration.name.clone(),
            detail: String::new(),
            weight: self.classifier.threshold(),
            suggests: Some(declaration.kind),
            decisive: true,
        };
        if !self.ensure_workload(
            &id,
            declaration.kind,
            &declaration.name,
            String::new(),
            pid,
            true,
        ) {
            return Vec::new();
        }
        if let Some(entry) = self.workloads.get_mut(&id) {
            entry.evidence.add(signal);
        }
        if let Some(state) = self.procs.get_mut(&pid) {
            state.holds_container = declaration.names_container();
        }
        self.join(pid, &id)
    }

    /// The workload a declaration puts its processes in, once it exists.
    pub fn declared_ref(&self, declaration: &DeclaredWorkload) -> Option<WorkloadRef> {
        let id = workload_id(declaration.kind, &declaration.name, "");
        self.workloads.get(&id).map(|entry| entry.workload.clone())
    }
}
