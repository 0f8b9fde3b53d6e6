//! Maps shared by all probe families.
//!
//! Names are part of the contract with the agent (`agent/src/kernel/loader.rs`).

use core::intrinsics::{atomic_xadd, AtomicOrdering};

use aiwatch_common::{
    filter_bit, track_scope, Stat, SuffixKey, FILTER_WORDS, PREFIX_KEY_LEN, STATS_LEN,
    TRACKING_CGROUPS, TRACKING_EPOCH, TRACKING_LEN, TRACKING_PIDS, TRACK_FULL, TRACK_PURPOSE_MASK,
};
use aya_ebpf::{
    helpers::bpf_get_current_cgroup_id,
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuArray, RingBuf},
};

/// Every record travels through this one ring buffer, in global order.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// Per-CPU counters: `Stat` × event-kind slot.
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STATS_LEN, 0);

/// Processes (tgid) whose every event is wanted. Children inherit the entry
/// at fork, in the kernel, so a workload's new processes are never missed.
/// The value is as in `TRACKED_CGROUPS`: purpose bits and the enforcement
/// scope.
#[map]
pub static TRACKED_PIDS: HashMap<u32, u32> = HashMap::with_max_entries(65536, 0);

/// cgroup v2 ids and why each is tracked (bits, `aiwatch_common::TRACK_*`):
/// the one per-cgroup map. Today the agent fills it for declared container
/// workloads (`TRACK_FULL`), with the workload's enforcement scope in the
/// value's upper half (`aiwatch_common::track_scope`).
#[map]
pub static TRACKED_CGROUPS: HashMap<u64, u32> = HashMap::with_max_entries(4096, 0);

/// Path prefixes of interest for untracked processes (value: unused flags).
#[map]
pub static PATH_PREFIXES: LpmTrie<[u8; PREFIX_KEY_LEN], u32> =
    LpmTrie::with_max_entries(1024, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

/// File extensions and base names of interest for untracked processes.
#[map]
pub static PATH_SUFFIXES: HashMap<SuffixKey, u32> = HashMap::with_max_entries(1024, 0);

/// Whether `TRACKED_PIDS` / `TRACKED_CGROUPS` may hold entries (slots
/// `TRACKING_PIDS`, `TRACKING_CGROUPS`), and the agent's tracking epoch
/// (`TRACKING_EPOCH`). Written by the agent; array reads are inlined by
/// the verifier, hash lookups are not.
#[map]
pub static TRACKING: Array<u32> = Array::with_max_entries(TRACKING_LEN, 0);

/// Prefilter of `PATH_SUFFIXES` (see `aiwatch_common::FILTER_WORDS`).
#[map]
pub static SUFFIX_FILTER: Array<u64> = Array::with_max_entries(FILTER_WORDS, 0);

/// Prefilter of `PATH_PREFIXES` (see `aiwatch_common::FILTER_WORDS`).
#[map]
pub static PREFIX_FILTER: Array<u64> = Array::with_max_entries(FILTER_WORDS, 0);

/// Entries stored in each family's pending map (slots `PENDING_*`), so that
/// a syscall exit can skip its hash lookup while nothing is pending. Only
/// ever too high (an LRU eviction or an overwritten entry is never taken
/// off), which costs the shortcut, never an event.
#[map]
static PENDING_COUNTS: Array<u64> = Array::with_max_entries(3, 0);

pub const PENDING_FILE: u32 = 0;
pub const PENDING_NET: u32 = 1;
pub const PENDING_PRIV: u32 = 2;

#[inline(always)]
fn tracking(slot: u32) -> bool {
    TRACKING.get(slot).is_some_and(|on| *on != 0)
}

/// The agent's tracking epoch (`TRACKING_EPOCH`): a memo of a thread being
/// tracked holds only while it is unchanged.
#[inline(always)]
pub fn tracking_epoch() -> u32 {
    TRACKING.get(TRACKING_EPOCH).copied().unwrap_or(0)
}

/// Whether the current process is tracked, by tgid or by cgroup.
#[inline(always)]
pub fn is_tracked(tgid: u32) -> bool {
    is_tracked_pid(tgid)
        || (tracking(TRACKING_CGROUPS)
            // SAFETY: the value is read once, as a copy of its bits; a
            // concurrent update changes which purposes it shows, nothing else.
            && unsafe { TRACKED_CGROUPS.get(bpf_get_current_cgroup_id()) }
                .is_some_and(|why| *why & TRACK_FULL != 0))
}

/// Whether `tgid`, in cgroup `cgroup_id`, is tracked: `is_tracked` for a
/// process that is not the current one (a socket's owner, in softirq).
#[inline(always)]
pub fn is_tracked_in(tgid: u32, cgroup_id: u64) -> bool {
    is_tracked_pid(tgid)
        || (tracking(TRACKING_CGROUPS)
            // SAFETY: as in `is_tracked`.
            && unsafe { TRACKED_CGROUPS.get(cgroup_id) }
                .is_some_and(|why| *why & TRACK_FULL != 0))
}

/// Whether `tgid` is in `TRACKED_PIDS` (cgroups aside).
#[inline(always)]
pub fn is_tracked_pid(tgid: u32) -> bool {
    // SAFETY: only the presence of the entry is used (see `is_tracked`).
    tracking(TRACKING_PIDS) && unsafe { TRACKED_PIDS.get(tgid) }.is_some()
}

/// The tracking value of `tgid` in `TRACKED_PIDS`, if it is there.
#[inline(always)]
pub fn tracked_pid_value(tgid: u32) -> Option<u32> {
    if !tracking(TRACKING_PIDS) {
        return None;
    }
    // SAFETY: the value is copied out at once (see `is_tracked`).
    unsafe { TRACKED_PIDS.get(tgid) }.copied()
}

/// The purpose bits of the current process: its own (`TRACKED_PIDS`) and
/// its cgroup's (`TRACKED_CGROUPS`), together.
#[inline(always)]
pub fn tracked_purposes(tgid: u32) -> u32 {
    let own = tracked_pid_value(tgid).unwrap_or(0);
    let cgroup = if tracking(TRACKING_CGROUPS) {
        // SAFETY: the value is copied out at once (see `is_tracked`).
        unsafe { TRACKED_CGROUPS.get(bpf_get_current_cgroup_id()) }.map_or(0, |value| *value)
    } else {
        0
    };
    (own | cgroup) & TRACK_PURPOSE_MASK
}

/// The enforcement scope of the current process: its own (`TRACKED_PIDS`),
/// else its cgroup's (`TRACKED_CGROUPS`); 0 when it has none.
#[inline(always)]
pub fn enforcement_scope(tgid: u32) -> u16 {
    if let Some(value) = tracked_pid_value(tgid) {
        let scope = track_scope(value);
        if scope != 0 {
            return scope;
        }
    }
    if !tracking(TRACKING_CGROUPS) {
        return 0;
    }
    // SAFETY: the value is copied out at once (see `is_tracked`).
    unsafe { TRACKED_CGROUPS.get(bpf_get_current_cgroup_id()) }
        .map_or(0, |value| track_scope(*value))
}

/// Whether `TRACKED_PIDS` may hold entries.
#[inline(always)]
pub fn tracking_pids() -> bool {
    tracking(TRACKING_PIDS)
}

/// Tests the bit of `first`, `second` in a prefilter.
#[inline(always)]
pub fn filter_hit(filter: &Array<u64>, first: u8, second: u8) -> bool {
    let (word, bit) = filter_bit(first, second);
    filter.get(word).is_some_and(|bits| *bits & bit != 0)
}

/// Counts an entry stored in a pending map.
#[inline(always)]
pub fn pending_added(slot: u32) {
    if let Some(count) = PENDING_COUNTS.get_ptr_mut(slot) {
        // SAFETY: `count` points into a map value, valid and aligned while
        // the program runs; CPUs share it, so it is updated atomically (the
        // BPF target's core has no atomic types with read-modify-write).
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(count, 1) };
    }
}

/// Counts an entry removed from a pending map.
#[inline(always)]
pub fn pending_removed(slot: u32) {
    if let Some(count) = PENDING_COUNTS.get_ptr_mut(slot) {
        // SAFETY: as in `pending_added`: an atomic add to a live map value;
        // adding all ones subtracts one.
        unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(count, u64::MAX) };
    }
}

/// Whether a pending map may hold entries.
#[inline(always)]
pub fn pending_any(slot: u32) -> bool {
    PENDING_COUNTS.get(slot).is_some_and(|count| *count != 0)
}

/// Adds one to a `STATS` counter.
#[inline(always)]
pub fn count(stat: Stat, kind_slot: u32) {
    if let Some(counter) = STATS.get_ptr_mut(stat.index(kind_slot)) {
        // SAFETY: `counter` points into this CPU's slot of a per-CPU map,
        // valid and aligned while the program runs. Only programs on this
        // CPU write it; one that preempts this one between the load and the
        // store costs a count, nothing else.
        unsafe { *counter += 1 };
    }
}
