//! The kernel side's own counters (`STATS`, per CPU): records the ring
//! buffer had no room for, events filtered out in the kernel, pending
//! syscall entries that could not be stored, and children of tracked
//! processes the tracking map had no room for. Also the pending entries
//! the kernel lost without a word ([`PendingDrift`]).

use std::sync::atomic::{AtomicU64, Ordering};

use aiwatch_common::{EventKind, Stat, SyscallRecord, KIND_SLOTS, STATS_LEN};
use aya::{
    maps::{Array, HashMap, MapData, PerCpuArray},
    Ebpf,
};

use crate::event::Kind;

pub struct KernelStats {
    map: PerCpuArray<MapData, u64>,
    drift: Option<PendingDrift>,
}

/// One counter for one kind, summed over CPUs and per CPU.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KindTotal {
    pub kind: Option<Kind>,
    pub total: u64,
    pub per_cpu: Vec<u64>,
}

#[derive(Clone, Debug, Default)]
pub struct KernelTotals {
    pub ringbuf_lost: Vec<KindTotal>,
    pub filtered: Vec<KindTotal>,
    pub pending_lost: Vec<KindTotal>,
    pub track_lost: Vec<KindTotal>,
    /// Privilege syscalls whose pending entry the kernel evicted.
    pub pending_evicted: u64,
}

impl KernelTotals {
    pub fn ringbuf_lost_total(&self) -> u64 {
        self.ringbuf_lost.iter().map(|k| k.total).sum()
    }
}

impl KernelStats {
    pub fn new(map: PerCpuArray<MapData, u64>, drift: Option<PendingDrift>) -> Self {
        Self { map, drift }
    }

    /// Reads every counter. Kinds whose counters are all zero are left out.
    pub fn read(&self) -> KernelTotals {
        KernelTotals {
            ringbuf_lost: self.read_stat(Stat::RingbufLost),
            filtered: self.read_stat(Stat::Filtered),
            pending_lost: self.read_stat(Stat::PendingLost),
            track_lost: self.read_stat(Stat::TrackLost),
            pending_evicted: self.drift.as_ref().map_or(0, PendingDrift::lost),
        }
    }

    fn read_stat(&self, stat: Stat) -> Vec<KindTotal> {
        let mut out = Vec::new();
        for kind in EventKind::ALL {
            let index = stat.index(kind.slot());
            debug_assert!(index < STATS_LEN && kind.slot() < KIND_SLOTS);
            let Ok(values) = self.map.get(&index, 0) else {
                continue;
            };
            let per_cpu: Vec<u64> = values.iter().copied().collect();
            let total = per_cpu.iter().sum();
            if total > 0 {
                out.push(KindTotal {
                    kind: Some(Kind::from(kind)),
                    total,
                    per_cpu,
                });
            }
        }
        out
    }
}

/// Pending entries of privilege syscalls that vanished between their entry
/// and exit. `PRIV_PENDING` is an LRU map, so a full map evicts an older
/// entry without telling anybody, and that syscall's exit then finds
/// nothing: its event is lost. The kernel counts entries in and out
/// (`PENDING_COUNTS`); what the counts hold beyond the entries the map
/// still has is what was evicted (or left by a thread that died inside the
/// syscall, whose event is lost as well).
pub struct PendingDrift {
    counts: Array<MapData, u64>,
    privilege: HashMap<MapData, u64, SyscallRecord>,
    /// The highest drift seen: the counter only grows.
    lost: AtomicU64,
}

/// `PENDING_COUNTS` slot of the privilege family (`ebpf/src/maps.rs`).
const PENDING_PRIV: u32 = 2;

impl PendingDrift {
    /// Takes the two maps out of `ebpf`; `None` (with the reason) when the
    /// object lacks them.
    pub fn from_ebpf(ebpf: &mut Ebpf) -> Result<Self, &'static str> {
        let counts = ebpf
            .take_map("PENDING_COUNTS")
            .and_then(|map| Array::try_from(map).ok())
            .ok_or("PENDING_COUNTS")?;
        let privilege = ebpf
            .take_map("PRIV_PENDING")
            .and_then(|map| HashMap::try_from(map).ok())
            .ok_or("PRIV_PENDING")?;
        Ok(Self {
            counts,
            privilege,
            lost: AtomicU64::new(0),
        })
    }

    /// Entries lost so far. Counted twice around one walk of the map and
    /// the smaller taken, so that a syscall finishing during the walk is
    /// not taken for a loss.
    pub fn lost(&self) -> u64 {
        let before = self.counts.get(&PENDING_PRIV, 0).unwrap_or(0);
        let present = self.privilege.keys().filter(Result::is_ok).count() as u64;
        let after = self.counts.get(&PENDING_PRIV, 0).unwrap_or(0);
        let drift = before.min(after).saturating_sub(present);
        self.lost.fetch_max(drift, Ordering::Relaxed).max(drift)
    }
}
