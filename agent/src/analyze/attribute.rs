//! Attribution: which workload an event belongs to, which asset class its
//! file is, which container its process runs in. Feeds discovery with the
//! signals events carry (exec, model and device opens, listens).

use super::{has_path, Analyzer};
use crate::{
    analyze::runtime::{IdentityCache, Resolved},
    analyze::workload::{parse_proc_cgroup, ProcessFacts, WorkloadChange},
    enrich::assets::AssetClass,
    event::{Access, Container, Event, K8s, Kind, WorkloadRef},
};
use std::collections::{HashMap, VecDeque};

/// Kinds the kernel counts and the agent reports periodically: the last
/// report of a process comes after its exit.
pub(super) fn reported_after_exit(kind: Kind) -> bool {
    matches!(kind, Kind::FileAccess | Kind::GpuIoctl | Kind::TcpSummary)
}

/// Most exited processes whose workload is remembered.
const MAX_DEPARTED: usize = 4096;

/// The workloads of the latest exited processes, oldest forgotten first.
///
/// Each entry carries the number of the `remember` that made it, and the
/// order queue names entries by pid and number: a pid forgotten (reused by
/// a new process) and remembered again leaves a stale slot in the queue,
/// whose eviction then removes nothing rather than the newer entry.
#[derive(Default)]
pub(super) struct Departed {
    workloads: HashMap<u32, (u64, WorkloadRef)>,
    order: VecDeque<(u32, u64)>,
    remembered: u64,
}

impl Departed {
    pub(super) fn remember(&mut self, pid: u32, workload: WorkloadRef) {
        self.remembered += 1;
        let number = self.remembered;
        if let Some(entry) = self.workloads.get_mut(&pid) {
            // The same process exited again (a late report): keep its slot.
            entry.1 = workload;
        } else {
            self.workloads.insert(pid, (number, workload));
            self.order.push_back((pid, number));
        }
        while self.workloads.len() > MAX_DEPARTED || self.order.len() > 2 * MAX_DEPARTED {
            let Some((oldest, number)) = self.order.pop_front() else {
                break;
            };
            if self
                .workloads
                .get(&oldest)
                .is_some_and(|(n, _)| *n == number)
            {
                self.workloads.remove(&oldest);
            }
        }
    }

    /// A new process has the pid: the old one's workload is not its.
    fn forget(&mut self, pid: u32) {
        self.workloads.remove(&pid);
    }

    fn get(&self, pid: u32) -> Option<WorkloadRef> {
        self.workloads
            .get(&pid)
            .map(|(_, workload)| workload.clone())
    }
}

impl Analyzer {
    /// Attributes `event` in place and returns the workload changes it
    /// caused, for the kernel's tracking maps.
    pub fn attribute(&mut self, event: &mut Event) -> Vec<WorkloadChange> {
        let pid = event.process.pid;
        (event.container, event.k8s) = self.container_of(event.process.cgroup_id, pid);
        let mut changes = Vec::new();
        if matches!(event.kind, Kind::Fork | Kind::Exec) {
            self.departed.forget(pid);
        }
        match event.kind {
            Kind::Exec => {
                let container = event.container.as_ref();
                let facts = ProcessFacts {
                    exe: event.process.exe.to_string(),
                    argv: event.process.argv.to_vec(),
                    cgroup: container.map(|c| c.cgroup.clone()).unwrap_or_default(),
                    container_id: container.and_then(|c| c.id.clone()),
                    ppid: Some(event.process.ppid),
                };
                changes.extend(self.workloads.on_exec(pid, facts));
                self.scanner.schedule(pid, event.ktime_ns);
            }
            Kind::Fork => {
                if let Some(parent) = &event.parent {
                    changes.extend(self.workloads.on_fork(parent.pid, pid));
                }
            }
            Kind::Listen => {
                if let Some(port) = event
                    .net
                    .as_ref()
                    .and_then(|n| n.src.as_ref())
                    .map(|s| s.port)
                {
                    changes.extend(self.scan_now(pid, true));
                    changes.extend(self.workloads.on_listen(pid, port));
                }
            }
            Kind::LlmRequest => {
                if let Some(llm) = &event.llm {
                    changes.extend(self.workloads.on_llm_call(pid, &llm.provider, &llm.host));
                }
            }
            kind if has_path(kind) => changes.extend(self.classify_file(event)),
            _ => {}
        }
        event.workload = self.workloads.lookup(pid).cloned();
        // The exit of a member that already departed (found gone while its
        // exit event waited) is still its workload's.
        if event.workload.is_none() && (reported_after_exit(event.kind) || event.kind == Kind::Exit)
        {
            event.workload = self.departed.get(pid);
        }
        if event.kind == Kind::Ptrace {
            if let Some(call) = event.syscall.as_mut() {
                call.target_workload = call
                    .target_pid
                    .and_then(|target| self.workloads.lookup(target).cloned());
            }
        }
        if event.kind == Kind::Exit {
            if let Some(workload) = &event.workload {
                self.departed.remember(pid, workload.clone());
            }
            changes.extend(self.workloads.on_exit(pid));
            self.note_exit(pid);
        }
        self.liveness.saw(event.ktime_ns);
        self.models_in_use.observe(event);
        if event.kind == Kind::Exit {
            // The exit first: it counts the process as exited, where the
            // `Left` it caused would only unlist it.
            self.inventory.observe(event);
            self.inventory.apply(&changes);
        } else {
            self.inventory.apply(&changes);
            self.inventory.observe(event);
        }
        changes
    }

    /// Sets `file.class` and, for classified files, feeds discovery.
    fn classify_file(&mut self, event: &mut Event) -> Vec<WorkloadChange> {
        let pid = event.process.pid;
        let Some(file) = event.file.as_mut() else {
            return Vec::new();
        };
        let Some(class) = file.class else {
            return Vec::new();
        };
        let mut changes = Vec::new();
        if class.is_model() {
            // A model open, or the rename that puts a freshly saved model in
            // place, is the moment the libraries that load or save it are
            // mapped: discovery sees them before the rules see the event.
            changes.extend(self.scan_now(pid, true));
        }
        let opened = event.kind == Kind::Open && file.result >= 0;
        let (path, write) = match event.kind {
            Kind::Open => (file.path.clone(), file.access.is_some_and(Access::writes)),
            // Savers (safetensors, torch.save through atomic writers, HF
            // checkpoints) write a temporary name and rename it into place:
            // the rename is the model write discovery must see.
            Kind::Rename if class.is_model() => match file.target.clone() {
                Some(target) => (target, true),
                None => return changes,
            },
            _ => return changes,
        };
        if class == AssetClass::GpuDevice {
            if event.kind != Kind::Open {
                return changes;
            }
            changes.extend(self.workloads.on_device_open(pid, &path));
        } else {
            changes.extend(self.workloads.on_file_open(pid, class, &path, write));
        }
        // Only a successful open holds the device.
        if class == AssetClass::GpuDevice && opened {
            if let Some(workload) = self.workloads.lookup(pid) {
                self.gpu_processes
                    .entry(workload.id.clone())
                    .or_default()
                    .insert(pid);
            }
        }
        changes
    }

    /// The container of a cgroup, read from `/proc/<pid>/cgroup` once per
    /// cgroup id, with what its runtime said about it (asked on first
    /// sight, answered later: see `analyze::runtime`).
    pub(super) fn container_of(
        &mut self,
        cgroup_id: u64,
        pid: u32,
    ) -> (Option<Container>, Option<K8s>) {
        let mut container = match self.containers.get(&cgroup_id) {
            Some(known) => known.clone(),
            None => {
                let groups = procfs::process::Process::new(pid as i32)
                    .and_then(|process| process.cgroups())
                    .ok();
                let container = groups
                    .as_ref()
                    .and_then(parse_proc_cgroup)
                    .map(|(path, identity)| identity.to_event(&path));
                if groups.is_some() {
                    if self.containers.len() >= 16_384 {
                        self.containers.clear();
                    }
                    self.containers.insert(cgroup_id, container.clone());
                }
                container
            }
        };
        let mut k8s = None;
        if let Some(container) = container.as_mut() {
            if let Some(id) = container.id.as_deref() {
                self.identities.observe(id, container.runtime.as_deref());
            }
            self.identities.fill(container, &mut k8s);
        }
        (container, k8s)
    }

    /// The container id whose identity `event` waits for, if it waits.
    pub fn identity_pending<'e>(&self, event: &'e Event) -> Option<&'e str> {
        let id = event.container.as_ref()?.id.as_deref()?;
        self.identities.is_pending(id).then_some(id)
    }

    /// A runtime's answer arrived: remembered, and a workload the pod
    /// declares is declared. Returns the workload changes, for the kernel's
    /// tracking maps.
    pub fn identity_resolved(&mut self, resolved: Resolved) -> Vec<WorkloadChange> {
        let declaration = resolved
            .identity
            .as_ref()
            .and_then(|identity| identity.declaration.clone());
        self.identities.resolved(&resolved.id, resolved.identity);
        let changes = match declaration {
            Some(declaration) => self.workloads.declare_container(&resolved.id, declaration),
            None => Vec::new(),
        };
        self.inventory.apply(&changes);
        changes
    }

    /// Fills what became known while `event` was held: its container's
    /// identity, and its workload if the pod declared one.
    pub fn refill(&mut self, event: &mut Event) {
        if let Some(container) = event.container.as_mut() {
            self.identities.fill(container, &mut event.k8s);
        }
        let had_workload = event.workload.is_some();
        self.refill_workload(event);
        // The inventory saw the event without its workload, so listed
        // nothing; opens are left out, since their model-file view (which
        // needs no workload) has counted them already.
        if event.workload.is_some() && !had_workload && event.kind != Kind::Open {
            self.inventory.observe(event);
        }
    }

    fn refill_workload(&self, event: &mut Event) {
        if let Some(workload) = self.workloads.lookup(event.process.pid) {
            event.workload = Some(workload.clone());
            return;
        }
        // The process may have exited while its events were held.
        let declared = event
            .container
            .as_ref()
            .and_then(|c| c.id.as_deref())
            .and_then(|id| self.identities.known(id))
            .and_then(|identity| identity.declaration.as_ref());
        if let (Some(declaration), None) = (declared, &event.workload) {
            event.workload = self.workloads.declared_ref(declaration);
        }
    }

    /// Container identities evicted and lookups skipped, since start-up.
    pub fn identity_stats(&self) -> (u64, u64) {
        (self.identities.evicted(), self.identities.unasked())
    }

    /// From now on, ask the container runtimes (`analyze::runtime`).
    pub fn use_runtime_identities(&mut self, identities: IdentityCache) {
        self.identities = identities;
    }
}

#[cfg(test)]
mod tests {
    use crate::analyze::{Analyzer, WorkloadsConfig};
    use crate::event::{Event, FileInfo, Kind, Process};

    /// No such process: nothing is read from `/proc` for it.
    const PID: u32 = 0x7fff_fff0;

    fn event(kind: Kind) -> Event {
        Event {
            kind,
            process: Process {
                pid: PID,
                exe: "/usr/bin/python3.11".into(),
                argv: vec!["python3".into(), "serve.py".into()].into(),
                ..Process::default()
            },
            ..Event::default()
        }
    }

    #[test]
    fn a_model_renamed_into_place_is_a_model_write() {
        let mut analyzer = Analyzer::new(&WorkloadsConfig::default()).expect("analyzer");
        analyzer.attribute(&mut event(Kind::Exec));
        let mut rename = event(Kind::Rename);
        rename.file = Some(FileInfo {
            path: "/srv/models/.tmpab12cd".into(),
            target: Some("/srv/models/tiny.safetensors".into()),
            class: Some("model".parse().unwrap()),
            ..FileInfo::default()
        });
        let changes = analyzer.attribute(&mut rename);
        assert_eq!(changes.len(), 1, "{changes:?}");
        // The rename itself is the workload's: no "unknown process
        // rewrote a model" for the server's own save.
        assert!(rename.workload.is_some());
        let info = analyzer.workloads.workloads();
        let reasons = info[0].reasons.join("; ");
        assert!(
            reasons.contains("wrote model model (/srv/models/tiny.safetensors)"),
            "{reasons}"
        );
    }
}

#[cfg(test)]
mod departed_tests {
    use super::*;

    fn workload(name: &str) -> WorkloadRef {
        WorkloadRef {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_reused_pid_keeps_its_new_entry_until_it_is_the_oldest() {
        let mut departed = Departed::default();
        departed.remember(7, workload("old"));
        // pid 7 is reused, and the new process exits too.
        departed.forget(7);
        departed.remember(7, workload("new"));
        for pid in 100..100 + MAX_DEPARTED as u32 - 1 {
            departed.remember(pid, workload("other"));
        }
        // The stale slot of the first pid 7 went first, and took nothing.
        assert_eq!(departed.get(7).map(|w| w.name), Some("new".to_string()));
        departed.remember(1, workload("one more"));
        assert_eq!(departed.get(7), None, "now the oldest, it goes");
        assert_eq!(departed.workloads.len(), MAX_DEPARTED);
    }
}
