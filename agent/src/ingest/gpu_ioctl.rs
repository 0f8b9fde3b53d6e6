//! Periodic GPU ioctl reports: reads the kernel's per-process counters
//! (`GPU_IOCTLS`, per CPU) every interval and feeds one `gpu_ioctl` record
//! per process whose count grew into the pipeline, like any kernel record.
//!
//! The kernel only ever adds to a counter, so the agent reports the growth
//! since its last reading (no read-then-reset race with the kernel). The
//! entries of processes that have exited are removed after their last
//! report, with their fds in `GPU_FDS`.

use std::{collections::HashMap, mem::size_of, time::Duration};

use aiwatch_common::{EventKind, GpuIoctlRecord};
use aya::{
    maps::{HashMap as BpfHashMap, MapData, PerCpuHashMap, PerCpuValues},
    Ebpf,
};
use tokio::sync::watch;

use crate::{
    clock::now_boot_ns,
    ingest::{
        decode::{self, Record},
        queue::RecordSender,
    },
    kernel::interest::InterestError,
};

pub struct GpuIoctlPoller {
    counters: PerCpuHashMap<MapData, u32, GpuIoctlRecord>,
    fds: BpfHashMap<MapData, u64, u32>,
    /// Count at the last reading, per process.
    last: HashMap<u32, u64>,
    last_poll_ns: u64,
}

/// Sums a process's per-CPU counter slots. The header comes from the first
/// slot that has one (each CPU fills its own at its first ioctl).
pub fn merge(values: &[GpuIoctlRecord]) -> Option<GpuIoctlRecord> {
    let mut merged = *values.iter().find(|v| v.header.ktime_ns != 0)?;
    merged.count = values.iter().map(|v| v.count).sum();
    Some(merged)
}

/// The growth of `count` since `last` (a smaller count means the entry was
/// recreated: all of it is new).
pub fn growth(count: u64, last: Option<u64>) -> u64 {
    match last {
        Some(last) if count >= last => count - last,
        _ => count,
    }
}

impl GpuIoctlPoller {
    pub fn from_ebpf(ebpf: &mut Ebpf) -> Result<Self, InterestError> {
        let counters = ebpf
            .take_map("GPU_IOCTLS")
            .ok_or(InterestError::MissingMap("GPU_IOCTLS"))?;
        let fds = ebpf
            .take_map("GPU_FDS")
            .ok_or(InterestError::MissingMap("GPU_FDS"))?;
        Ok(GpuIoctlPoller {
            counters: PerCpuHashMap::try_from(counters)
                .map_err(|_| InterestError::MissingMap("GPU_IOCTLS"))?,
            fds: BpfHashMap::try_from(fds).map_err(|_| InterestError::MissingMap("GPU_FDS"))?,
            last: HashMap::new(),
            last_poll_ns: now_boot_ns(),
        })
    }

    /// Reads every counter; returns one record per process whose count
    /// grew, and forgets processes that are gone.
    pub fn poll(&mut self) -> Vec<Record> {
        let now = now_boot_ns();
        let interval_ns = now.saturating_sub(self.last_poll_ns);
        self.last_poll_ns = now;
        let mut out = Vec::new();
        let mut seen = HashMap::new();
        let entries: Vec<(u32, PerCpuValues<GpuIoctlRecord>)> =
            self.counters.iter().filter_map(Result::ok).collect();
        for (tgid, values) in entries {
            let Some(mut record) = merge(&values) else {
                continue;
            };
            let grown = growth(record.count, self.last.get(&tgid).copied());
            seen.insert(tgid, record.count);
            if grown > 0 {
                record.header.ktime_ns = now;
                record.header.size = size_of::<GpuIoctlRecord>() as u32;
                record.header.kind = EventKind::GpuIoctl as u16;
                record.count = grown;
                record.interval_ns = interval_ns;
                match decode::decode(decode::pod_bytes(&record)) {
                    Ok(decoded) => out.push(decoded),
                    Err(err) => log::debug!("GPU ioctl counter of {tgid} is unreadable: {err}"),
                }
            }
            if !std::path::Path::new(&format!("/proc/{tgid}")).exists() {
                self.forget(tgid);
                seen.remove(&tgid);
            }
        }
        self.last = seen;
        out
    }

    /// Removes an exited process's counter and fds.
    fn forget(&mut self, tgid: u32) {
        let _ = self.counters.remove(&tgid);
        let stale: Vec<u64> = self
            .fds
            .keys()
            .filter_map(Result::ok)
            .filter(|key| (key >> 32) as u32 == tgid)
            .collect();
        for key in stale {
            let _ = self.fds.remove(&key);
        }
    }

    /// Polls every `interval` until shutdown, sending records to the
    /// pipeline queue (a full queue drops the report, like the reader does).
    pub async fn run(
        mut self,
        interval: Duration,
        queue: RecordSender,
        stats: std::sync::Arc<crate::metrics::pipeline_stats::PipelineStats>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(100)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            for record in self.poll() {
                queue.send_or_count(record, &stats);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(ktime: u64, count: u64, pid: u32) -> GpuIoctlRecord {
        // SAFETY: all-zero is a valid record.
        let mut r: GpuIoctlRecord = unsafe { std::mem::zeroed() };
        r.header.ktime_ns = ktime;
        r.header.pid = pid;
        r.count = count;
        r
    }

    #[test]
    fn per_cpu_slots_sum_and_keep_a_header() {
        let merged = merge(&[slot(0, 0, 0), slot(7, 600, 42), slot(9, 400, 42)]).unwrap();
        assert_eq!(merged.count, 1000);
        assert_eq!(merged.header.pid, 42);
        assert!(merge(&[slot(0, 0, 0), slot(0, 0, 0)]).is_none());
    }

    #[test]
    fn growth_is_the_difference_or_everything_after_a_reset() {
        assert_eq!(growth(1500, Some(1000)), 500);
        assert_eq!(growth(1000, None), 1000);
        assert_eq!(growth(1000, Some(1000)), 0);
        assert_eq!(growth(30, Some(1000)), 30);
    }

    #[test]
    fn a_report_decodes_as_a_gpu_ioctl_record() {
        let mut record = slot(5, 12, 77);
        record.header.kind = EventKind::GpuIoctl as u16;
        record.header.size = size_of::<GpuIoctlRecord>() as u32;
        let decoded = decode::decode(decode::pod_bytes(&record)).unwrap();
        assert_eq!(decoded.common.pid, 77);
        assert!(matches!(
            decoded.payload,
            decode::Payload::GpuIoctl(decode::GpuIoctl { count: 12, .. })
        ));
    }
}
