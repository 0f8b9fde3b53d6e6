//! One workload's inventory taken into another's: when new evidence changes
//! a discovered workload's kind, its id changes with it, and what the
//! inventory learnt under the old id belongs to the new one.

use super::{
    llm::{LlmProviderUse, LlmUse, MAX_MODELS, MAX_PROVIDERS, MAX_TOOLS},
    FileUse, InventoryLimits, Listener, Overflow, Peer, WorkloadInventory,
};
use crate::event::WallTime;

impl WorkloadInventory {
    /// Takes in `older`'s facts: lists are joined by their key, with counts
    /// added, and what does not fit under `limits` is counted in
    /// `overflow` as when observed. The workload itself is kept.
    pub(super) fn absorb(&mut self, older: WorkloadInventory, limits: &InventoryLimits) {
        self.first_seen = earliest(self.first_seen, older.first_seen);
        self.last_seen = self.last_seen.max(older.last_seen);
        self.processes_exited += older.processes_exited;
        self.alerts += older.alerts;
        add_overflow(&mut self.overflow, &older.overflow);
        let overflow = &mut self.overflow;
        for (ours, theirs, cap, counted) in [
            (
                &mut self.models,
                older.models,
                limits.models,
                &mut overflow.models,
            ),
            (
                &mut self.datasets,
                older.datasets,
                limits.datasets,
                &mut overflow.datasets,
            ),
            (
                &mut self.gpu_devices,
                older.gpu_devices,
                limits.devices,
                &mut overflow.devices,
            ),
            (
                &mut self.secrets,
                older.secrets,
                limits.secrets,
                &mut overflow.secrets,
            ),
        ] {
            join(
                ours,
                theirs,
                cap,
                counted,
                |a, b| a.path == b.path,
                add_file_use,
            );
        }
        join(
            &mut self.peers,
            older.peers,
            limits.peers,
            &mut overflow.peers,
            |a, b| (a.ip, a.port, a.protocol) == (b.ip, b.port, b.protocol),
            add_peer,
        );
        join(
            &mut self.listening,
            older.listening,
            limits.listeners,
            &mut overflow.listeners,
            |a, b| (a.ip, a.port, a.protocol) == (b.ip, b.port, b.protocol),
            |ours: &mut Listener, theirs| {
                ours.first_seen = earliest(ours.first_seen, theirs.first_seen)
            },
        );
        join(
            &mut self.pods,
            older.pods,
            super::MAX_PODS,
            &mut overflow.pods,
            |a, b| a == b,
            |_, _| {},
        );
        join(
            &mut self.processes,
            older.processes,
            limits.processes,
            &mut overflow.processes,
            |a, b| a.pid == b.pid,
            |_, _| {},
        );
        self.llm.absorb(older.llm);
    }
}

impl LlmUse {
    fn absorb(&mut self, older: LlmUse) {
        self.overflow += older.overflow;
        for theirs in older.providers {
            let same = |p: &LlmProviderUse| p.provider == theirs.provider && p.host == theirs.host;
            match self.providers.iter().position(same) {
                Some(at) => {
                    let ours = &mut self.providers[at];
                    ours.requests += theirs.requests;
                    ours.input_tokens += theirs.input_tokens;
                    ours.output_tokens += theirs.output_tokens;
                    ours.last_seen = ours.last_seen.max(theirs.last_seen);
                    join(
                        &mut ours.models,
                        theirs.models,
                        MAX_MODELS,
                        &mut self.overflow,
                        |a, b| a == b,
                        |_, _| {},
                    );
                }
                None if self.providers.len() < MAX_PROVIDERS => self.providers.push(theirs),
                None => self.overflow += 1,
            }
        }
        for (ours, theirs) in [
            (&mut self.tools_offered, older.tools_offered),
            (&mut self.tools_called, older.tools_called),
        ] {
            join(
                ours,
                theirs,
                MAX_TOOLS,
                &mut self.overflow,
                |a, b| a == b,
                |_, _| {},
            );
        }
    }
}

/// Joins `theirs` into `ours`: an entry `same` as one of ours is combined
/// into it, a new one is appended while `ours` is under `cap` and counted
/// in `overflow` past it.
fn join<T>(
    ours: &mut Vec<T>,
    theirs: Vec<T>,
    cap: usize,
    overflow: &mut u64,
    same: impl Fn(&T, &T) -> bool,
    combine: impl Fn(&mut T, T),
) {
    for entry in theirs {
        match ours.iter().position(|o| same(o, &entry)) {
            Some(at) => combine(&mut ours[at], entry),
            None if ours.len() < cap => ours.push(entry),
            None => *overflow += 1,
        }
    }
}

fn add_file_use(ours: &mut FileUse, theirs: FileUse) {
    ours.opens += theirs.opens;
    ours.writes += theirs.writes;
    ours.bytes_read += theirs.bytes_read;
    ours.first_seen = earliest(ours.first_seen, theirs.first_seen);
    ours.last_seen = ours.last_seen.max(theirs.last_seen);
    ours.class = ours.class.or(theirs.class);
    ours.accelerator = ours.accelerator.take().or(theirs.accelerator);
}

fn add_peer(ours: &mut Peer, theirs: Peer) {
    ours.connections += theirs.connections;
    ours.bytes_out += theirs.bytes_out;
    ours.bytes_in += theirs.bytes_in;
    ours.first_seen = earliest(ours.first_seen, theirs.first_seen);
    ours.last_seen = ours.last_seen.max(theirs.last_seen);
    ours.name = ours.name.take().or(theirs.name);
    // Either one saw the peer as external: it is.
    ours.external |= theirs.external;
}

/// The earlier of two times, where `None` is unknown (not earliest).
fn earliest(a: Option<WallTime>, b: Option<WallTime>) -> Option<WallTime> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn add_overflow(ours: &mut Overflow, theirs: &Overflow) {
    let Overflow {
        workloads,
        processes,
        models,
        datasets,
        devices,
        secrets,
        peers,
        listeners,
        model_files,
        actors,
        connections,
        pods,
    } = theirs;
    ours.workloads += workloads;
    ours.processes += processes;
    ours.models += models;
    ours.datasets += datasets;
    ours.devices += devices;
    ours.secrets += secrets;
    ours.peers += peers;
    ours.listeners += listeners;
    ours.model_files += model_files;
    ours.actors += actors;
    ours.connections += connections;
    ours.pods += pods;
}
