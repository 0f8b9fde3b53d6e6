//! The kernel side's own counters (`STATS`, per CPU): records the ring
//! buffer had no room for, events filtered out in the kernel, and pending
//! syscall entries that could not be stored.

use aiwatch_common::{EventKind, Stat, KIND_SLOTS, STATS_LEN};
use aya::maps::{MapData, PerCpuArray};

use crate::event::Kind;

pub struct KernelStats {
    map: PerCpuArray<MapData, u64>,
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
}

impl KernelTotals {
    pub fn ringbuf_lost_total(&self) -> u64 {
        self.ringbuf_lost.iter().map(|k| k.total).sum()
    }
}

impl KernelStats {
    pub fn new(map: PerCpuArray<MapData, u64>) -> Self {
        Self { map }
    }

    /// Reads every counter. Kinds whose counters are all zero are left out.
    pub fn read(&self) -> KernelTotals {
        KernelTotals {
            ringbuf_lost: self.read_stat(Stat::RingbufLost),
            filtered: self.read_stat(Stat::Filtered),
            pending_lost: self.read_stat(Stat::PendingLost),
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
