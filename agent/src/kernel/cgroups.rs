//! What the agent wants in `TRACKED_CGROUPS`, the one per-cgroup tracking map.
//!
//! Each entry is a cgroup v2 id (what `bpf_get_current_cgroup_id` returns)
//! and a bitset of purposes ([`CgroupPurpose`]). A purpose holds a cgroup for
//! as long as one process keeps it there: a declared container workload's
//! members each hold their container's cgroup, and the entry goes when the
//! last of them leaves. Later users of the map (enforcement, Kubernetes
//! identity) add a purpose rather than a map, so one lookup in the kernel
//! answers every question about a cgroup.
//!
//! This module is the bookkeeping only: it says which map writes to make.
//! [`crate::kernel::interest::KernelInterestMaps`] makes them.

use std::collections::HashMap;

use aiwatch_common::{TRACK_ACCEL_ALLOWED, TRACK_FULL};

/// Why a cgroup is in `TRACKED_CGROUPS`: bits of its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum CgroupPurpose {
    /// Report every event of its processes, and let them open accelerators
    /// under accelerator deny (a declared container workload: declared,
    /// so trusted with the devices).
    DeclaredContainer = TRACK_FULL | TRACK_ACCEL_ALLOWED,
}

impl CgroupPurpose {
    fn bit(self) -> u32 {
        self as u32
    }
}

/// A write the kernel map needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupWrite {
    /// Insert or overwrite the entry of `id` with these purpose bits.
    Set { id: u64, purposes: u32 },
    /// Delete the entry of `id`: no purpose holds it any more.
    Remove { id: u64 },
}

/// The agent's copy of `TRACKED_CGROUPS`, with who holds each entry.
#[derive(Debug, Default)]
pub struct CgroupTracking {
    /// cgroup id → processes holding it, per purpose bit.
    holders: HashMap<u64, HashMap<CgroupPurpose, usize>>,
    /// process → the cgroup and purpose it holds.
    held_by: HashMap<u32, (u64, CgroupPurpose)>,
}

impl CgroupTracking {
    /// `pid` holds cgroup `id` for `purpose` (replacing what it held before).
    pub fn hold(&mut self, pid: u32, id: u64, purpose: CgroupPurpose) -> Vec<CgroupWrite> {
        if self.held_by.get(&pid) == Some(&(id, purpose)) {
            return Vec::new();
        }
        let mut writes = self.release(pid);
        let before = self.purposes(id);
        *self
            .holders
            .entry(id)
            .or_default()
            .entry(purpose)
            .or_default() += 1;
        self.held_by.insert(pid, (id, purpose));
        let after = self.purposes(id);
        if after != before {
            writes.push(CgroupWrite::Set {
                id,
                purposes: after,
            });
        }
        writes
    }

    /// `pid` holds nothing any more (it left its workload or exited).
    pub fn release(&mut self, pid: u32) -> Vec<CgroupWrite> {
        let Some((id, purpose)) = self.held_by.remove(&pid) else {
            return Vec::new();
        };
        let before = self.purposes(id);
        if let Some(by_purpose) = self.holders.get_mut(&id) {
            if let Some(count) = by_purpose.get_mut(&purpose) {
                *count -= 1;
                if *count == 0 {
                    by_purpose.remove(&purpose);
                }
            }
            if by_purpose.is_empty() {
                self.holders.remove(&id);
            }
        }
        match self.purposes(id) {
            0 => vec![CgroupWrite::Remove { id }],
            after if after != before => vec![CgroupWrite::Set {
                id,
                purposes: after,
            }],
            _ => Vec::new(),
        }
    }

    /// The purpose bits of cgroup `id` (0: not in the map).
    pub fn purposes(&self, id: u64) -> u32 {
        self.holders.get(&id).map_or(0, |by_purpose| {
            by_purpose
                .keys()
                .fold(0, |bits, purpose| bits | purpose.bit())
        })
    }

    /// Cgroups in the map.
    pub fn len(&self) -> usize {
        self.holders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.holders.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cgroup_stays_while_one_member_holds_it() {
        let mut tracking = CgroupTracking::default();
        let set = CgroupWrite::Set {
            id: 7,
            purposes: TRACK_FULL | TRACK_ACCEL_ALLOWED,
        };
        assert_eq!(
            tracking.hold(100, 7, CgroupPurpose::DeclaredContainer),
            vec![set]
        );
        assert_eq!(
            tracking.hold(101, 7, CgroupPurpose::DeclaredContainer),
            vec![]
        );
        assert_eq!(
            tracking.hold(101, 7, CgroupPurpose::DeclaredContainer),
            vec![]
        );
        assert_eq!(tracking.release(100), vec![]);
        assert_eq!(tracking.purposes(7), TRACK_FULL | TRACK_ACCEL_ALLOWED);
        assert_eq!(tracking.release(101), vec![CgroupWrite::Remove { id: 7 }]);
        assert!(tracking.is_empty());
        assert_eq!(tracking.release(101), vec![]);
    }

    #[test]
    fn a_member_moving_to_another_cgroup_releases_the_first() {
        let mut tracking = CgroupTracking::default();
        tracking.hold(100, 7, CgroupPurpose::DeclaredContainer);
        assert_eq!(
            tracking.hold(100, 8, CgroupPurpose::DeclaredContainer),
            vec![
                CgroupWrite::Remove { id: 7 },
                CgroupWrite::Set {
                    id: 8,
                    purposes: TRACK_FULL | TRACK_ACCEL_ALLOWED
                }
            ]
        );
        assert_eq!(tracking.len(), 1);
    }
}
