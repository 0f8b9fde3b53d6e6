//! The live inventory of AI workloads: per workload its processes, the
//! models, data sets, GPU devices and secrets it opened, its network peers
//! and listening sockets; per model file, who read and who wrote it.
//!
//! Fed with enriched events ([`Inventory::observe`]), served as JSON by the
//! `/inventory` endpoint and `aiwatch inventory` ([`Inventory::snapshot`]).
//!
//! Everything is bounded by [`InventoryLimits`]; what does not fit is
//! counted in `overflow`, never stored. An open of a model for reading
//! counts as a read of the file's size at open (`file.size`): loaders read
//! or map the whole file. TCP summaries carry running totals per
//! connection; the inventory adds the growth since the previous summary of
//! the same connection.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
};

mod llm;
mod merge;
mod snapshot;

pub use llm::{LlmProviderUse, LlmUse};
pub use snapshot::{
    Actor, FileUse, InventoryLimits, InventorySnapshot, Listener, ModelFile, Overflow, Peer,
    PodEntry, ProcessEntry, WorkloadInventory,
};

use crate::analyze::workload::WorkloadChange;
use crate::event::{AssetClass, Endpoint, Event, Kind, Protocol, WallTime, WorkloadRef};

/// Kubernetes pods listed per workload; a workload of more replicas lists
/// the first ones and counts the rest in `overflow.pods`.
pub(super) const MAX_PODS: usize = 64;

type ConnectionKey = (String, IpAddr, u16, IpAddr, u16);

/// The live inventory. Single-threaded: the pipeline owns it.
#[derive(Debug, Default)]
pub struct Inventory {
    limits: InventoryLimits,
    workloads: BTreeMap<String, WorkloadInventory>,
    /// Order of activity, for evicting the idlest workload.
    activity: HashMap<String, u64>,
    models: BTreeMap<String, ModelFile>,
    connections: HashMap<ConnectionKey, (u64, u64)>,
    overflow: Overflow,
    tick: u64,
}

/// Finds `key` in a bounded list or appends a new entry, counting overflow.
fn upsert<'a, T>(
    list: &'a mut Vec<T>,
    cap: usize,
    overflow: &mut u64,
    matches: impl Fn(&T) -> bool,
    make: impl FnOnce() -> T,
) -> Option<&'a mut T> {
    if let Some(index) = list.iter().position(matches) {
        return list.get_mut(index);
    }
    if list.len() >= cap {
        *overflow += 1;
        return None;
    }
    list.push(make());
    list.last_mut()
}

fn is_write(event: &Event) -> bool {
    let file = event.file.as_ref();
    match file.and_then(|f| f.access) {
        Some(access) => access.writes(),
        // O_WRONLY | O_RDWR | O_CREAT | O_TRUNC
        None => file.is_some_and(|f| f.flags & (0o1 | 0o2 | 0o100 | 0o1000) != 0),
    }
}

impl Inventory {
    pub fn new(limits: InventoryLimits) -> Self {
        Inventory {
            limits,
            ..Inventory::default()
        }
    }

    /// Counts an alert raised about a workload's process.
    pub fn note_alert(&mut self, workload: &WorkloadRef) {
        if let Some(entry) = self.workloads.get_mut(&workload.id) {
            entry.alerts += 1;
        }
    }

    /// Takes the table's changes of assignment into account. A process
    /// that left its workload is no longer listed there; its exit, which
    /// removes it, comes under the workload it ends in. A workload whose
    /// kind (and so id) changed is listed under its new id only, with all
    /// it was seen doing under the old one: the old id is no workload any
    /// more, and listing it would show a workload of no process.
    pub fn apply(&mut self, changes: &[WorkloadChange]) {
        for change in changes {
            match change {
                WorkloadChange::Left { pid, workload } => {
                    if let Some(entry) = self.workloads.get_mut(&workload.id) {
                        entry.processes.retain(|p| p.pid != *pid);
                    }
                }
                WorkloadChange::Reclassified { from, to, .. } => self.rename(from, to),
                WorkloadChange::Joined { .. } => {}
            }
        }
    }

    /// A process of `workload` exited without an exit event (it was lost,
    /// and the process was found gone).
    pub fn process_exited(&mut self, workload: &WorkloadRef, pid: u32) {
        if let Some(entry) = self.workloads.get_mut(&workload.id) {
            entry.unlist_exited(pid);
        }
    }

    /// Moves the entry of `from` to `to`, into `to`'s own if it has one (a
    /// kind the workload had before, or a past run of the same workload).
    fn rename(&mut self, from: &WorkloadRef, to: &WorkloadRef) {
        let Some(mut older) = self.workloads.remove(&from.id) else {
            return;
        };
        let activity = self.activity.remove(&from.id).unwrap_or(self.tick);
        self.activity
            .entry(to.id.clone())
            .and_modify(|tick| *tick = (*tick).max(activity))
            .or_insert(activity);
        match self.workloads.get_mut(&to.id) {
            Some(entry) => {
                entry.workload.clone_from(to);
                entry.absorb(older, &self.limits);
            }
            None => {
                older.workload.clone_from(to);
                self.workloads.insert(to.id.clone(), older);
            }
        }
    }

    pub fn observe(&mut self, event: &Event) {
        self.tick += 1;
        if event.kind == Kind::Open {
            self.observe_model_file(event);
        }
        let Some(workload) = &event.workload else {
            return;
        };
        if !self.ensure_workload(workload, event.time) {
            return;
        }
        self.activity.insert(workload.id.clone(), self.tick);
        let limits = self.limits;
        let Some(entry) = self.workloads.get_mut(&workload.id) else {
            return;
        };
        entry.last_seen = event.time;
        if let Some(k8s) = &event.k8s {
            let namespace = k8s.namespace.as_deref().unwrap_or_default();
            let pod = k8s.pod.as_deref().unwrap_or_default();
            upsert(
                &mut entry.pods,
                MAX_PODS,
                &mut entry.overflow.pods,
                |p| p.namespace == namespace && p.pod == pod,
                || PodEntry {
                    namespace: namespace.to_string(),
                    pod: pod.to_string(),
                },
            );
        }
        let time = event.time;
        let pid = event.process.pid;
        // A fork adds the child; an exit removes the process; anything else
        // the workload's process did, but a periodic report, makes sure it
        // is listed.
        let member = match (&event.kind, &event.fork) {
            (Kind::Fork, Some(fork)) => fork.child_pid,
            _ => pid,
        };
        if event.kind == Kind::Exit {
            entry.unlist_exited(pid);
        } else if super::attribute::reported_after_exit(event.kind) {
            // A periodic report may come after the process exited (its last
            // folded reads): it lists nobody, or the exited would stay.
        } else if let Some(process) = upsert(
            &mut entry.processes,
            limits.processes,
            &mut entry.overflow.processes,
            |p| p.pid == member,
            || ProcessEntry {
                pid: member,
                exe: event.process.exe.to_string(),
                first_seen: time,
            },
        ) {
            if event.kind == Kind::Exec {
                event.process.exe.as_str().clone_into(&mut process.exe);
            }
        }
        match event.kind {
            Kind::Open => Self::observe_open(entry, &limits, event),
            Kind::Connect | Kind::Accept | Kind::UdpSend | Kind::TcpSummary => {
                Self::observe_peer(
                    entry,
                    &limits,
                    &mut self.connections,
                    &mut self.overflow,
                    event,
                );
            }
            Kind::Listen | Kind::Bind => Self::observe_listener(entry, &limits, event),
            Kind::LlmRequest | Kind::LlmResponse => entry.llm.observe(event),
            _ => {}
        }
    }

    fn ensure_workload(&mut self, workload: &WorkloadRef, time: Option<WallTime>) -> bool {
        if let Some(entry) = self.workloads.get_mut(&workload.id) {
            // Kind or name may be refined; the id is what identifies.
            entry.workload.clone_from(workload);
            return true;
        }
        if self.workloads.len() >= self.limits.workloads {
            let idlest = self
                .activity
                .iter()
                .min_by_key(|(_, tick)| **tick)
                .map(|(id, _)| id.clone());
            match idlest {
                Some(id) => {
                    self.workloads.remove(&id);
                    self.activity.remove(&id);
                    self.overflow.workloads += 1;
                }
                None => return false,
            }
        }
        self.workloads.insert(
            workload.id.clone(),
            WorkloadInventory {
                workload: workload.clone(),
                first_seen: time,
                last_seen: time,
                ..WorkloadInventory::default()
            },
        );
        true
    }

    fn observe_open(entry: &mut WorkloadInventory, limits: &InventoryLimits, event: &Event) {
        let Some(file) = &event.file else { return };
        if file.result < 0 {
            return;
        }
        let Some(class) = file.class else {
            return;
        };
        let (list, cap, overflow) = match class {
            // Not an AI asset: persistence writes are for the rules.
            AssetClass::Persistence | AssetClass::Aiwatch => return,
            AssetClass::Model | AssetClass::PickleModel => {
                (&mut entry.models, limits.models, &mut entry.overflow.models)
            }
            AssetClass::Dataset => (
                &mut entry.datasets,
                limits.datasets,
                &mut entry.overflow.datasets,
            ),
            AssetClass::Secret => (
                &mut entry.secrets,
                limits.secrets,
                &mut entry.overflow.secrets,
            ),
            AssetClass::GpuDevice => (
                &mut entry.gpu_devices,
                limits.devices,
                &mut entry.overflow.devices,
            ),
        };
        let write = is_write(event);
        let Some(usage) = upsert(
            list,
            cap,
            overflow,
            |u| u.path == file.path,
            || FileUse {
                path: file.path.clone(),
                class: Some(class),
                first_seen: event.time,
                accelerator: file.device.as_ref().and_then(|d| d.accelerator.clone()),
                ..FileUse::default()
            },
        ) else {
            return;
        };
        usage.opens += 1;
        if write {
            usage.writes += 1;
        } else {
            usage.bytes_read = usage.bytes_read.saturating_add(file.size.unwrap_or(0));
        }
        usage.last_seen = event.time;
    }

    fn observe_peer(
        entry: &mut WorkloadInventory,
        limits: &InventoryLimits,
        connections: &mut HashMap<ConnectionKey, (u64, u64)>,
        global: &mut Overflow,
        event: &Event,
    ) {
        let Some(net) = &event.net else { return };
        let Some(dst) = &net.dst else { return };
        if event.kind == Kind::Connect && net.result.is_some_and(|r| r < 0 && r != -115) {
            return; // failed connect (EINPROGRESS still counts)
        }
        let (mut bytes_out, mut bytes_in) =
            (net.bytes_sent.unwrap_or(0), net.bytes_received.unwrap_or(0));
        if event.kind == Kind::TcpSummary {
            let src = net.src.clone().unwrap_or_default();
            let key = (
                entry.workload.id.clone(),
                src.ip,
                src.port,
                dst.ip,
                dst.port,
            );
            let previous = connections.get(&key).copied().unwrap_or((0, 0));
            // Totals only grow; a smaller one is a new connection on the same ports.
            bytes_out = bytes_out.checked_sub(previous.0).unwrap_or(bytes_out);
            bytes_in = bytes_in.checked_sub(previous.1).unwrap_or(bytes_in);
            if net.closed == Some(true) {
                connections.remove(&key);
            } else if connections.len() < limits.connections || connections.contains_key(&key) {
                let totals = (net.bytes_sent.unwrap_or(0), net.bytes_received.unwrap_or(0));
                connections.insert(key, totals);
            } else {
                global.connections += 1;
            }
        }
        let same = |p: &Peer| p.ip == dst.ip && p.port == dst.port && p.protocol == net.protocol;
        let Some(peer) = upsert(
            &mut entry.peers,
            limits.peers,
            &mut entry.overflow.peers,
            same,
            || peer_from(dst, net.protocol, net.dst_external, event.time),
        ) else {
            return;
        };
        if matches!(event.kind, Kind::Connect | Kind::Accept) {
            peer.connections += 1;
        }
        if net.dst_name.is_some() {
            peer.name.clone_from(&net.dst_name);
        }
        peer.bytes_out = peer.bytes_out.saturating_add(bytes_out);
        peer.bytes_in = peer.bytes_in.saturating_add(bytes_in);
        peer.last_seen = event.time;
    }

    fn observe_listener(entry: &mut WorkloadInventory, limits: &InventoryLimits, event: &Event) {
        let Some(net) = &event.net else { return };
        let Some(src) = &net.src else { return };
        if net.result.is_some_and(|r| r < 0) {
            return;
        }
        // A bound TCP socket is not listening yet; a bound UDP socket receives.
        let protocol = match (event.kind, net.protocol) {
            (Kind::Listen, Protocol::Unknown) => Protocol::Tcp,
            (Kind::Listen, p) => p,
            (Kind::Bind, Protocol::Udp) if src.port != 0 => Protocol::Udp,
            _ => return,
        };
        upsert(
            &mut entry.listening,
            limits.listeners,
            &mut entry.overflow.listeners,
            |l| l.ip == src.ip && l.port == src.port && l.protocol == protocol,
            || Listener {
                ip: src.ip,
                port: src.port,
                protocol,
                first_seen: event.time,
            },
        );
    }

    fn observe_model_file(&mut self, event: &Event) {
        let Some(file) = &event.file else { return };
        let Some(class) = file.class else {
            return;
        };
        if !class.is_model() || file.result < 0 {
            return;
        }
        if !self.models.contains_key(&file.path) {
            if self.models.len() >= self.limits.model_files {
                self.overflow.model_files += 1;
                return;
            }
            self.models.insert(
                file.path.clone(),
                ModelFile {
                    path: file.path.clone(),
                    class,
                    size: None,
                    readers: Vec::new(),
                    writers: Vec::new(),
                    first_seen: event.time,
                    last_seen: None,
                },
            );
        }
        let Some(model) = self.models.get_mut(&file.path) else {
            return;
        };
        if file.size.is_some() {
            model.size = file.size;
        }
        model.last_seen = event.time;
        let actors = if is_write(event) {
            &mut model.writers
        } else {
            &mut model.readers
        };
        let workload_id = event.workload.as_ref().map(|w| w.id.clone());
        let exe = event.process.exe.as_str();
        if let Some(actor) = upsert(
            actors,
            self.limits.actors,
            &mut self.overflow.actors,
            |a| a.workload == workload_id && (workload_id.is_some() || a.exe == exe),
            || Actor {
                workload: workload_id.clone(),
                workload_name: event.workload.as_ref().map(|w| w.name.clone()),
                exe: exe.to_string(),
                ..Actor::default()
            },
        ) {
            actor.opens += 1;
            actor.last_seen = event.time;
        }
    }

    /// The Kubernetes pods workload `id`'s processes ran in.
    pub fn pods_of(&self, id: &str) -> &[PodEntry] {
        self.workloads
            .get(id)
            .map_or(&[], |entry| entry.pods.as_slice())
    }

    /// A copy of everything, sorted by workload name and model path.
    pub fn snapshot(&self) -> InventorySnapshot {
        let mut workloads: Vec<WorkloadInventory> = self.workloads.values().cloned().collect();
        workloads.sort_by(|a, b| {
            (&a.workload.name, &a.workload.id).cmp(&(&b.workload.name, &b.workload.id))
        });
        InventorySnapshot {
            workloads,
            models: self.models.values().cloned().collect(),
            overflow: self.overflow.clone(),
            limits: self.limits,
        }
    }
}

impl WorkloadInventory {
    /// Unlists an exited process, counting it once.
    fn unlist_exited(&mut self, pid: u32) {
        let before = self.processes.len();
        self.processes.retain(|p| p.pid != pid);
        if self.processes.len() < before {
            self.processes_exited += 1;
        }
    }
}

fn peer_from(dst: &Endpoint, protocol: Protocol, external: bool, time: Option<WallTime>) -> Peer {
    Peer {
        ip: dst.ip,
        port: dst.port,
        protocol,
        name: None,
        external,
        connections: 0,
        bytes_out: 0,
        bytes_in: 0,
        first_seen: time,
        last_seen: time,
    }
}

#[cfg(test)]
#[path = "inventory_tests.rs"]
mod tests;
