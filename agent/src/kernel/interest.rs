//! The kernel's interest maps: who and which paths the file family reports.
//!
//! The kernel reports every file operation of a tracked process (its tgid in
//! `TRACKED_PIDS`, or its cgroup in `TRACKED_CGROUPS`), and for everybody
//! else only operations on paths that match `PATH_PREFIXES` (an LPM trie of
//! absolute path prefixes) or `PATH_SUFFIXES` (extensions and base names).
//! [`KernelInterestMaps`] owns those maps and `GPU_MAJORS`; the entries
//! come from [`AssetClassifier::kernel_interest_for_homes`], so every path
//! the classifier could put in a class reaches user space.
//!
//! The key encodings (`interest/contract.rs`) must match `ebpf/src/probes/file.rs`;
//! [`kernel_would_report`] restates the kernel's test so tests can check
//! the two sides against each other.

use std::collections::HashSet;

use aiwatch_common::{
    track_value, SuffixKey, PREFIX_KEY_LEN, TRACKING_CGROUPS, TRACKING_EPOCH, TRACKING_PIDS,
    TRACK_FULL,
};
use aya::{
    maps::{
        lpm_trie::{Key, LpmTrie},
        Array, HashMap, MapData, MapError,
    },
    Ebpf,
};

use crate::kernel::cgroups::{CgroupPurpose, CgroupTracking, CgroupWrite};

mod contract;

pub use contract::{
    basename_key, extension_key, kernel_would_report, prefix_key, scan_tail, Filters,
    KernelInterest,
};
use contract::{entries, Entries};

#[derive(Debug, thiserror::Error)]
pub enum InterestError {
    #[error("the kernel programs lack the map {0}; the object and the agent do not match")]
    MissingMap(&'static str),
    #[error("cannot update the kernel map {map}: {source}")]
    Update {
        map: &'static str,
        #[source]
        source: MapError,
    },
}

/// What [`KernelInterestMaps::apply`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AppliedInterest {
    pub prefixes: usize,
    pub suffixes: usize,
    pub gpu_majors: usize,
    /// Entries the kernel cannot test (too long), so the prefilter may miss
    /// what they describe.
    pub skipped: Vec<String>,
}

/// The agent's handles on the kernel's interest and tracking maps.
pub struct KernelInterestMaps {
    prefixes: LpmTrie<MapData, [u8; PREFIX_KEY_LEN], u32>,
    suffixes: HashMap<MapData, SuffixKey, u32>,
    gpu_majors: HashMap<MapData, u32, u32>,
    tracked_pids: HashMap<MapData, u32, u32>,
    tracked_cgroups: HashMap<MapData, u64, u32>,
    /// The kernel's "may be non-empty" flags of the two tracking maps, and
    /// the tracking epoch.
    tracking: Array<MapData, u32>,
    /// The tracking epoch as last written (`TRACKING_EPOCH`).
    epoch: u32,
    suffix_filter: Array<MapData, u64>,
    prefix_filter: Array<MapData, u64>,
    /// What the last `apply` wrote, so the next one removes what is gone.
    current: Entries,
    /// The prefilter words as last written.
    current_filters: Filters,
    /// What this agent put in the tracking maps.
    pids: HashSet<u32>,
    cgroups: CgroupTracking,
    /// The enforcement scope of each tracked cgroup (its workload's).
    cgroup_scopes: std::collections::HashMap<u64, u16>,
}

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, InterestError>
where
    T: TryFrom<aya::maps::Map>,
{
    let map = ebpf.take_map(name).ok_or(InterestError::MissingMap(name))?;
    T::try_from(map).map_err(|_| InterestError::MissingMap(name))
}

fn update(map: &'static str) -> impl Fn(MapError) -> InterestError {
    move |source| InterestError::Update { map, source }
}

/// Deleting an absent key is not an error here.
fn removed(result: Result<(), MapError>, map: &'static str) -> Result<(), InterestError> {
    match result {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(ref err))
            if err.io_error.raw_os_error() == Some(libc::ENOENT) =>
        {
            Ok(())
        }
        Err(source) => Err(InterestError::Update { map, source }),
    }
}

impl KernelInterestMaps {
    /// Takes the maps out of the loaded object.
    pub fn from_ebpf(ebpf: &mut Ebpf) -> Result<Self, InterestError> {
        Ok(KernelInterestMaps {
            prefixes: take(ebpf, "PATH_PREFIXES")?,
            suffixes: take(ebpf, "PATH_SUFFIXES")?,
            gpu_majors: take(ebpf, "GPU_MAJORS")?,
            tracked_pids: take(ebpf, "TRACKED_PIDS")?,
            tracked_cgroups: take(ebpf, "TRACKED_CGROUPS")?,
            tracking: take(ebpf, "TRACKING")?,
            epoch: 0,
            suffix_filter: take(ebpf, "SUFFIX_FILTER")?,
            prefix_filter: take(ebpf, "PREFIX_FILTER")?,
            current: Entries::default(),
            current_filters: Filters::default(),
            pids: HashSet::new(),
            cgroups: CgroupTracking::default(),
            cgroup_scopes: std::collections::HashMap::new(),
        })
    }

    /// Writes the filter words that differ from what the kernel has.
    fn write_filters(&mut self, filters: &Filters) -> Result<(), InterestError> {
        let maps = [
            (
                &mut self.suffix_filter,
                &filters.suffixes,
                &mut self.current_filters.suffixes,
                "SUFFIX_FILTER",
            ),
            (
                &mut self.prefix_filter,
                &filters.prefixes,
                &mut self.current_filters.prefixes,
                "PREFIX_FILTER",
            ),
        ];
        for (map, wanted, current, name) in maps {
            for (index, (word, old)) in wanted.iter().zip(current.iter_mut()).enumerate() {
                if word != old {
                    map.set(index as u32, *word, 0).map_err(update(name))?;
                    *old = *word;
                }
            }
        }
        Ok(())
    }

    fn set_tracking(&mut self, slot: u32, on: bool) -> Result<(), InterestError> {
        self.tracking
            .set(slot, u32::from(on), 0)
            .map_err(update("TRACKING"))
    }

    /// Ends the kernel's memos of threads being tracked, after a write that
    /// may have untracked a process: its threads ask the maps again.
    fn bump_epoch(&mut self) -> Result<(), InterestError> {
        self.epoch = self.epoch.wrapping_add(1);
        self.tracking
            .set(TRACKING_EPOCH, self.epoch, 0)
            .map_err(update("TRACKING"))
    }

    /// Makes the kernel's prefix, suffix and GPU major sets equal to
    /// `interest`: new entries are added, entries no longer wanted removed.
    pub fn apply(&mut self, interest: &KernelInterest) -> Result<AppliedInterest, InterestError> {
        let (wanted, skipped) = entries(interest);
        // Filter bits go up before the entries they guard and come down
        // after them, so the prefilter never hides an entry.
        let filters = Filters::of(&wanted);
        self.write_filters(&self.current_filters.union(&filters))?;
        for (bits, data) in wanted.prefixes.difference(&self.current.prefixes) {
            self.prefixes
                .insert(&Key::new(*bits, *data), 1, 0)
                .map_err(update("PATH_PREFIXES"))?;
        }
        for (bits, data) in self.current.prefixes.difference(&wanted.prefixes) {
            removed(
                self.prefixes.remove(&Key::new(*bits, *data)),
                "PATH_PREFIXES",
            )?;
        }
        for (kind, bytes) in wanted.suffixes.difference(&self.current.suffixes) {
            let key = SuffixKey {
                kind: *kind,
                bytes: *bytes,
            };
            self.suffixes
                .insert(key, 1, 0)
                .map_err(update("PATH_SUFFIXES"))?;
        }
        for (kind, bytes) in self.current.suffixes.difference(&wanted.suffixes) {
            let key = SuffixKey {
                kind: *kind,
                bytes: *bytes,
            };
            removed(self.suffixes.remove(&key), "PATH_SUFFIXES")?;
        }
        self.write_filters(&filters)?;
        for major in wanted.gpu_majors.difference(&self.current.gpu_majors) {
            self.gpu_majors
                .insert(major, 1, 0)
                .map_err(update("GPU_MAJORS"))?;
        }
        for major in self.current.gpu_majors.difference(&wanted.gpu_majors) {
            removed(self.gpu_majors.remove(major), "GPU_MAJORS")?;
        }
        let applied = AppliedInterest {
            prefixes: wanted.prefixes.len(),
            suffixes: wanted.suffixes.len(),
            gpu_majors: wanted.gpu_majors.len(),
            skipped,
        };
        self.current = wanted;
        Ok(applied)
    }

    /// Reports every file operation of `pid` (and of the children it forks
    /// from now on: the kernel copies the entry at fork), and puts it in
    /// enforcement `scope` (0: none; `kernel::scopes`). `purposes` are
    /// `TRACK_*` bits beside `TRACK_FULL`, which is always set.
    pub fn track_pid(&mut self, pid: u32, purposes: u32, scope: u16) -> Result<(), InterestError> {
        if self.pids.is_empty() {
            // The flag first: the kernel skips the map while it is clear.
            self.set_tracking(TRACKING_PIDS, true)?;
        }
        self.tracked_pids
            .insert(pid, track_value(TRACK_FULL | purposes, scope), 0)
            .map_err(update("TRACKED_PIDS"))?;
        self.pids.insert(pid);
        Ok(())
    }

    pub fn untrack_pid(&mut self, pid: u32) -> Result<(), InterestError> {
        removed(self.tracked_pids.remove(&pid), "TRACKED_PIDS")?;
        self.bump_epoch()?;
        self.pids.remove(&pid);
        // Children the kernel added at fork may remain: clear the flag only
        // once the map itself is empty.
        if self.pids.is_empty() && self.tracked_pids.keys().next().is_none() {
            self.set_tracking(TRACKING_PIDS, false)?;
        }
        Ok(())
    }

    /// `pid` holds its cgroup v2 `id` in `TRACKED_CGROUPS` for `purpose`:
    /// with [`CgroupPurpose::DeclaredContainer`], every event of every process in the
    /// cgroup is reported, whether or not it descends from a tracked one.
    /// `scope` is the enforcement scope of the cgroup's workload (0: none).
    pub fn hold_cgroup(
        &mut self,
        pid: u32,
        id: u64,
        purpose: CgroupPurpose,
        scope: u16,
    ) -> Result<(), InterestError> {
        let mut writes = self.cgroups.hold(pid, id, purpose);
        if self.cgroup_scopes.insert(id, scope) != Some(scope)
            && !writes
                .iter()
                .any(|w| matches!(w, CgroupWrite::Set { id: set, .. } if *set == id))
        {
            writes.push(CgroupWrite::Set {
                id,
                purposes: self.cgroups.purposes(id),
            });
        }
        self.write_cgroups(&writes)
    }

    /// `pid` no longer holds a cgroup (it left its workload, or exited).
    pub fn release_cgroup(&mut self, pid: u32) -> Result<(), InterestError> {
        let writes = self.cgroups.release(pid);
        self.write_cgroups(&writes)
    }

    fn write_cgroups(&mut self, writes: &[CgroupWrite]) -> Result<(), InterestError> {
        for write in writes {
            match *write {
                CgroupWrite::Set { id, purposes } => {
                    // The flag first: the kernel skips the map while it is clear.
                    self.set_tracking(TRACKING_CGROUPS, true)?;
                    let scope = self.cgroup_scopes.get(&id).copied().unwrap_or(0);
                    self.tracked_cgroups
                        .insert(id, track_value(purposes, scope), 0)
                        .map_err(update("TRACKED_CGROUPS"))?;
                }
                CgroupWrite::Remove { id } => {
                    self.cgroup_scopes.remove(&id);
                    removed(self.tracked_cgroups.remove(&id), "TRACKED_CGROUPS")?;
                }
            }
        }
        if !writes.is_empty() {
            // A removal, or new purposes without `TRACK_FULL`, may untrack.
            self.bump_epoch()?;
            if self.cgroups.is_empty() {
                self.set_tracking(TRACKING_CGROUPS, false)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
