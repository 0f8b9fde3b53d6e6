//! Analysis after enrichment: workload attribution, library scans and the
//! inventory. Detection (rules and profiles) runs after it, on the
//! attributed event, and lives in `policy/` and `anomaly/`.
//!
//! Live, [`Analyzer::attribute`] runs on each freshly enriched event.
//! `replay` skips it, since recorded events already carry their workload and
//! classes.

mod attribute;
pub mod inventory;
mod liveness;
pub mod maps_reader;
pub mod models_in_use;
pub mod runtime;
mod scan;
mod seed;
pub mod workload;

use std::collections::HashMap;

use crate::{
    analyze::inventory::{Inventory, InventoryLimits, InventorySnapshot},
    analyze::workload::{
        ClassifierConfig, DeclaredSet, DeclaredWorkload, WorkloadChange, WorkloadClassifier,
        WorkloadInfo, WorkloadTable,
    },
    enrich::assets::AssetError,
    event::Kind,
    kernel::tls::{self, FileId, Target},
};

pub use liveness::Departures;
pub use scan::LibraryScanner;

/// The `workloads:` section of the configuration.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkloadsConfig {
    /// Discovery: thresholds and extra patterns.
    pub discovery: ClassifierConfig,
    /// Declared workloads; they take precedence over discovery.
    pub declared: Vec<DeclaredWorkload>,
}

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error("workload discovery: {0}")]
    Classifier(#[from] crate::analyze::workload::classify::ClassifierError),
    #[error("declared workloads: {0}")]
    Declared(#[from] crate::analyze::workload::declared::DeclaredError),
    #[error("asset classes: {0}")]
    Assets(#[from] AssetError),
}

pub struct Analyzer {
    pub workloads: WorkloadTable,
    pub inventory: Inventory,
    /// Model files read by workloads, to tell tampering from deployment.
    pub models_in_use: models_in_use::ModelsInUse,
    scanner: LibraryScanner,
    /// cgroup id → container identity, read once per cgroup.
    containers: HashMap<u64, Option<crate::event::Container>>,
    /// What the container runtimes said about each container id.
    identities: runtime::IdentityCache,
    /// Processes with an accelerator open, per workload id.
    gpu_processes: HashMap<String, std::collections::BTreeSet<u32>>,
    /// TLS libraries and executables the library scans found, not yet
    /// handed to the kernel side (`take_tls_candidates`).
    tls_candidates: Vec<Target>,
    /// Files already handed over, so that each is offered once.
    tls_offered: std::collections::HashSet<FileId>,
    /// The workloads of processes that exited lately, for the periodic
    /// reports (file_access, gpu_ioctl, tcp_summary) that come after them.
    departed: attribute::Departed,
    /// Members whose exit was lost, found gone from `/proc`.
    liveness: liveness::Liveness,
    /// Reads maps off the pipeline thread, once the pipeline runs; without
    /// it (start-up's seed, replay, tests) maps are read on the spot.
    maps_reader: Option<maps_reader::MapsReader>,
    /// Processes whose maps were asked for at a model open or a listen:
    /// events wait for their answers (`awaits_maps`).
    urgent_maps: std::collections::HashSet<u32>,
    /// Asks the reader could not take, since the pipeline last looked.
    maps_skipped: u64,
}

/// Most files remembered as offered to the TLS probes; past it the set
/// starts over (the kernel side remembers what it probed).
const MAX_TLS_OFFERED: usize = 16_384;

impl Analyzer {
    pub fn new(workloads: &WorkloadsConfig) -> Result<Analyzer, AnalyzeError> {
        let classifier = WorkloadClassifier::new(&workloads.discovery)?;
        let declared = DeclaredSet::new(&workloads.declared)?;
        Ok(Analyzer {
            workloads: WorkloadTable::new(classifier, declared, Default::default()),
            inventory: Inventory::new(InventoryLimits::default()),
            models_in_use: Default::default(),
            scanner: LibraryScanner::default(),
            containers: HashMap::new(),
            identities: runtime::IdentityCache::disabled(),
            gpu_processes: HashMap::new(),
            tls_candidates: Vec::new(),
            tls_offered: Default::default(),
            departed: Default::default(),
            liveness: Default::default(),
            maps_reader: None,
            urgent_maps: Default::default(),
            maps_skipped: 0,
        })
    }

    /// From now on maps are read by `reader`, off this thread; its answers
    /// come back through [`Analyzer::maps_read`].
    pub fn read_maps_with(&mut self, reader: maps_reader::MapsReader) {
        self.maps_reader = Some(reader);
    }

    /// Whether events wait for maps asked for at a model open or a listen
    /// and not answered yet.
    pub fn awaits_maps(&self) -> bool {
        !self.urgent_maps.is_empty()
    }

    /// The events went on without the maps awaited (their hold ended): the
    /// answers, when they come, only update discovery.
    pub fn stop_awaiting_maps(&mut self) {
        self.urgent_maps.clear();
    }

    /// Asks the reader could not take since the last call.
    pub fn take_maps_skipped(&mut self) -> u64 {
        std::mem::take(&mut self.maps_skipped)
    }

    /// The reader's answer for one process: its libraries feed discovery.
    pub fn maps_read(&mut self, read: maps_reader::MapsRead) -> Vec<WorkloadChange> {
        self.urgent_maps.remove(&read.pid);
        let changes = match read.maps {
            Some(maps) => self.library_scan(read.pid, &maps),
            None => Vec::new(),
        };
        self.inventory.apply(&changes);
        changes
    }

    /// Processes due for a library scan: their maps are read and fed to
    /// discovery. Returns the resulting changes.
    pub fn scan_due(&mut self, now_ns: u64) -> Vec<WorkloadChange> {
        let mut changes = Vec::new();
        for pid in self.scanner.due(now_ns) {
            changes.extend(self.scan_now(pid, false));
        }
        self.inventory.apply(&changes);
        changes
    }

    /// Reads `pid`'s maps: asked of the reader when there is one (the
    /// changes then come with its answer), else on the spot. `urgent`: the
    /// event at hand waits for the answer.
    fn scan_now(&mut self, pid: u32, urgent: bool) -> Vec<WorkloadChange> {
        if let Some(reader) = &self.maps_reader {
            if reader.ask(pid, urgent) {
                if urgent {
                    self.urgent_maps.insert(pid);
                }
            } else {
                self.maps_skipped += 1;
            }
            return Vec::new();
        }
        // A process that exited since it was scheduled has no maps to read.
        match procfs::process::Process::new(pid as i32).and_then(|process| process.maps()) {
            Ok(maps) => self.library_scan(pid, &maps),
            Err(_) => Vec::new(),
        }
    }

    fn library_scan(
        &mut self,
        pid: u32,
        maps: &procfs::process::MemoryMaps,
    ) -> Vec<WorkloadChange> {
        self.note_tls_candidates(pid, maps);
        self.workloads.on_library_scan(pid, maps)
    }

    /// Keeps the TLS libraries (and the executable) of a scanned process
    /// that were not offered to the TLS probes yet.
    fn note_tls_candidates(&mut self, pid: u32, maps: &procfs::process::MemoryMaps) {
        for candidate in tls::candidates_in(pid, maps) {
            if self.tls_offered.len() >= MAX_TLS_OFFERED {
                self.tls_offered.clear();
            }
            if self.tls_offered.insert(candidate.id) {
                self.tls_candidates.push(candidate);
            }
        }
    }

    /// The TLS candidates found since the last call, for the kernel side.
    pub fn take_tls_candidates(&mut self) -> Vec<Target> {
        std::mem::take(&mut self.tls_candidates)
    }

    /// The inventory as `/inventory` serves it, each workload with the
    /// discovery signals that made it one.
    pub fn inventory_snapshot(&self) -> InventorySnapshot {
        let mut snapshot = self.inventory.snapshot();
        let evidence: HashMap<String, WorkloadInfo> = self
            .workloads
            .workloads()
            .into_iter()
            .map(|info| (info.workload.id.clone(), info))
            .collect();
        for entry in &mut snapshot.workloads {
            if let Some(info) = evidence.get(&entry.workload.id) {
                entry.score = info.score;
                entry.reasons = info.reasons.clone();
                entry.signals = info.signals.clone();
            }
        }
        snapshot
    }

    /// Workload counts by kind, for `aiwatch_workloads{kind}`.
    pub fn workload_counts(&self) -> Vec<(String, u64)> {
        let mut counts: HashMap<String, u64> = HashMap::new();
        for info in self.workloads.workloads() {
            if !info.pids.is_empty() {
                *counts.entry(info.workload.kind.to_string()).or_default() += 1;
            }
        }
        counts.into_iter().collect()
    }

    /// Processes with an accelerator open, per workload.
    pub fn gpu_process_counts(&self) -> impl Iterator<Item = (&str, usize)> {
        self.gpu_processes
            .iter()
            .map(|(id, pids)| (id.as_str(), pids.len()))
    }

    fn note_exit(&mut self, pid: u32) {
        self.scanner.forget(pid);
        self.gpu_processes.retain(|_, pids| {
            pids.remove(&pid);
            !pids.is_empty()
        });
    }
}

/// Kinds whose events may carry a path to classify.
pub(crate) fn has_path(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::Open | Kind::Unlink | Kind::Rename | Kind::Link | Kind::Chmod | Kind::Truncate
    )
}

#[cfg(test)]
mod tests;
