//! Maps shared by all probe families.
//!
//! Names are part of the contract with the agent (`agent/src/loader.rs`).

use aiwatch_common::{Stat, SuffixKey, PREFIX_KEY_LEN, STATS_LEN};
use aya_ebpf::{
    macros::map,
    maps::{HashMap, LpmTrie, PerCpuArray, RingBuf},
};

/// Every record travels through this one ring buffer, in global order.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// Per-CPU counters: `Stat` × event-kind slot.
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(STATS_LEN, 0);

/// Processes (tgid) whose every event is wanted. Children inherit the entry
/// at fork, in the kernel, so a workload's new processes are never missed.
#[map]
pub static TRACKED_PIDS: HashMap<u32, u32> = HashMap::with_max_entries(65536, 0);

/// cgroup v2 ids whose processes are all tracked.
#[map]
pub static TRACKED_CGROUPS: HashMap<u64, u32> = HashMap::with_max_entries(4096, 0);

/// Path prefixes of interest for untracked processes (value: unused flags).
#[map]
pub static PATH_PREFIXES: LpmTrie<[u8; PREFIX_KEY_LEN], u32> =
    LpmTrie::with_max_entries(1024, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

/// File extensions and base names of interest for untracked processes.
#[map]
pub static PATH_SUFFIXES: HashMap<SuffixKey, u32> = HashMap::with_max_entries(1024, 0);

/// Adds one to a `STATS` counter.
#[inline(always)]
pub fn count(stat: Stat, kind_slot: u32) {
    if let Some(counter) = STATS.get_ptr_mut(stat.index(kind_slot)) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *counter += 1 };
    }
}
