//! Folded reads: the agent's side of the kernel's `FILE_ACCESS` counters.
//!
//! A tracked process's first plain read in a directory comes as a full
//! `open` event whose file may be folded (`FileInfo::fold_candidate`). The
//! pipeline offers it here; [`FoldPolicy`] decides from the directory's path
//! whether every read there may be counted instead of reported: never in a
//! directory an asset path prefix can reach into, nor in a pseudo file
//! system. An accepted directory gets a zeroed counter in a slot of
//! `FILE_ACCESS`, an array the agent addresses openly ([`Slots`]), and
//! from then on the kernel counts the process's plain reads there whose
//! file name is not of interest.
//!
//! Every interval the poller reads the counters and feeds one `file_access`
//! record per process and directory whose count grew into the pipeline,
//! like the GPU ioctl poller. The kernel only adds, so the growth since the
//! last reading is exact. Counters of exited processes are removed after
//! their last report.

use std::{
    collections::{HashMap, HashSet},
    mem::size_of,
    time::Duration,
};

use aiwatch_common::{
    file_access_slots, EventKind, FileAccessKey, FileAccessRecord, FileAccessSlot,
};
use aya::{
    maps::{MapData, PerCpuArray, PerCpuValues},
    Ebpf,
};
use tokio::sync::{mpsc, watch};

use crate::{
    clock::now_boot_ns,
    ingest::{
        decode::{self, Payload, Record},
        gpu_ioctl::growth,
        queue::RecordSender,
    },
    kernel::interest::{InterestError, KernelInterest},
    metrics::{pipeline_stats::PipelineStats, Metrics},
};

/// Directories offered to the poller, at most this many waiting: a full
/// channel only means the directory's reads stay full events.
pub const FOLD_QUEUE: usize = 1024;

/// Directories remembered as refused, so each is judged once.
const MAX_REFUSED: usize = 16384;

/// A directory the pipeline offers for folding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoldOffer {
    pub key: FileAccessKey,
    /// The directory's absolute path.
    pub directory: String,
}

/// Which directories may be folded.
#[derive(Clone, Debug, Default)]
pub struct FoldPolicy {
    /// The kernel's path prefixes of interest.
    prefixes: Vec<String>,
    /// Some asset pattern has no prefilter: nothing is folded, since the
    /// kernel could not tell such a file from a plain one.
    disabled: bool,
}

/// Pseudo file systems whose files say things about processes and devices:
/// never folded.
const NEVER_FOLDED: &[&str] = &["/proc", "/sys", "/dev"];

impl FoldPolicy {
    pub fn new(interest: &KernelInterest) -> FoldPolicy {
        FoldPolicy {
            prefixes: interest.prefixes.clone(),
            disabled: !interest.unfilterable.is_empty(),
        }
    }

    /// Whether reads in `directory` may be counted instead of reported:
    /// no prefix of interest lies above it, names a file in it or reaches
    /// below it.
    pub fn allows(&self, directory: &str) -> bool {
        if self.disabled || !directory.starts_with('/') {
            return false;
        }
        let inside = if directory.ends_with('/') {
            directory.to_string()
        } else {
            format!("{directory}/")
        };
        if NEVER_FOLDED
            .iter()
            .any(|root| inside == "/" || inside.starts_with(&format!("{root}/")))
        {
            return false;
        }
        !self
            .prefixes
            .iter()
            .any(|prefix| prefix.starts_with(&inside) || inside.starts_with(prefix.as_str()))
    }
}

/// Which key holds which slot of the kernel's open-addressed `FILE_ACCESS`
/// array: a key lives in one of the `FILE_ACCESS_PROBES` slots from its
/// home slot on ([`file_access_slots`]), the first free one when placed.
#[derive(Debug, Default)]
pub struct Slots {
    by_key: HashMap<FileAccessKey, u32>,
    taken: HashSet<u32>,
}

impl Slots {
    /// A free slot where the kernel will look for `key`; `None` when all of
    /// them are taken.
    pub fn free_for(&self, key: &FileAccessKey) -> Option<u32> {
        file_access_slots(key)
            .into_iter()
            .find(|slot| !self.taken.contains(slot))
    }

    pub fn take(&mut self, key: FileAccessKey, slot: u32) {
        self.by_key.insert(key, slot);
        self.taken.insert(slot);
    }

    pub fn get(&self, key: &FileAccessKey) -> Option<u32> {
        self.by_key.get(key).copied()
    }

    pub fn release(&mut self, key: &FileAccessKey) -> Option<u32> {
        let slot = self.by_key.remove(key)?;
        self.taken.remove(&slot);
        Some(slot)
    }

    pub fn iter(&self) -> impl Iterator<Item = (FileAccessKey, u32)> + '_ {
        self.by_key.iter().map(|(key, slot)| (*key, *slot))
    }
}

pub struct FileAccessPoller {
    counters: PerCpuArray<MapData, FileAccessSlot>,
    slots: Slots,
    policy: FoldPolicy,
    /// The directory of each counter this agent created.
    directories: HashMap<FileAccessKey, String>,
    /// Directories judged not foldable.
    refused: HashSet<(u32, u64)>,
    /// Count and bytes at the last reading, per counter.
    last: HashMap<FileAccessKey, (u64, u64)>,
    cpus: usize,
}

/// Sums a counter's per-CPU slots: counts and bytes add up, the first time
/// is the earliest, the last the latest, and the header comes from the
/// first slot that has one.
pub fn merge(values: &[FileAccessRecord]) -> Option<FileAccessRecord> {
    let mut merged = *values.iter().find(|v| v.header.ktime_ns != 0)?;
    let used = || values.iter().filter(|v| v.header.ktime_ns != 0);
    merged.count = used().map(|v| v.count).sum();
    merged.bytes = used().map(|v| v.bytes).sum();
    merged.first_ns = used().map(|v| v.first_ns).min().unwrap_or(0);
    merged.last_ns = used().map(|v| v.last_ns).max().unwrap_or(0);
    Some(merged)
}

impl FileAccessPoller {
    pub fn from_ebpf(ebpf: &mut Ebpf, policy: FoldPolicy) -> Result<Self, InterestError> {
        let map = ebpf
            .take_map("FILE_ACCESS")
            .ok_or(InterestError::MissingMap("FILE_ACCESS"))?;
        let cpus = aya::util::nr_cpus().map_or(1, |n| n.max(1));
        Ok(FileAccessPoller {
            counters: PerCpuArray::try_from(map)
                .map_err(|_| InterestError::MissingMap("FILE_ACCESS"))?,
            slots: Slots::default(),
            policy,
            directories: HashMap::new(),
            refused: HashSet::new(),
            last: HashMap::new(),
            cpus,
        })
    }

    /// Starts counting the reads in an offered directory, if it may be
    /// folded. A key with no free slot, or a refused write, leaves its
    /// reads as full events: nothing is lost, it only costs more.
    pub fn offer(&mut self, offer: FoldOffer, metrics: &Metrics) {
        let directory_key = (offer.key.dev, offer.key.dir_ino);
        if self.directories.contains_key(&offer.key) || self.refused.contains(&directory_key) {
            return;
        }
        if !self.policy.allows(&offer.directory) {
            if self.refused.len() >= MAX_REFUSED {
                self.refused.clear();
            }
            self.refused.insert(directory_key);
            return;
        }
        let Some(slot) = self.slots.free_for(&offer.key) else {
            metrics.file_access_refused();
            log::debug!(
                "reads in {} stay full events: the FILE_ACCESS slots it may use are taken",
                offer.directory
            );
            return;
        };
        match self.write_slot(slot, Some(offer.key)) {
            Ok(()) => {
                self.slots.take(offer.key, slot);
                self.directories.insert(offer.key, offer.directory);
                metrics.set_file_access_dirs(self.directories.len());
            }
            Err(err) => {
                metrics.file_access_refused();
                log::debug!(
                    "reads in {} stay full events: FILE_ACCESS refused the counter: {err}",
                    offer.directory
                );
            }
        }
    }

    /// Writes `slot` on every CPU: a zeroed counter of `key`, or free.
    fn write_slot(&mut self, slot: u32, key: Option<FileAccessKey>) -> std::io::Result<()> {
        // SAFETY: an all-zero slot is valid: integers and integer arrays.
        let mut value: FileAccessSlot = unsafe { std::mem::zeroed() };
        if let Some(key) = key {
            value.key = key;
        }
        let values = PerCpuValues::try_from(vec![value; self.cpus])?;
        self.counters
            .set(slot, values, 0)
            .map_err(std::io::Error::other)
    }

    /// Reads every counter; returns one record per counter whose count
    /// grew, and removes those of processes that are gone.
    pub fn poll(&mut self) -> Vec<Record> {
        let now = now_boot_ns();
        let mut out = Vec::new();
        let mut seen = HashMap::new();
        let placed: Vec<(FileAccessKey, u32)> = self.slots.iter().collect();
        let mut gone = Vec::new();
        for (key, slot) in placed {
            // Asked before the reading, so that reads made between it and
            // the exit are in this last one; removed after the loop.
            if !std::path::Path::new(&format!("/proc/{}", key.tgid)).exists() {
                gone.push(key);
            }
            let values = match self.counters.get(&slot, 0) {
                Ok(values) => values,
                Err(err) => {
                    // The kernel keeps counting: the next reading reports
                    // this interval's growth, measured from the last one.
                    if let Some(previous) = self.last.get(&key) {
                        seen.insert(key, *previous);
                    }
                    log::warn!(
                        "cannot read the FILE_ACCESS counter of pid {} in {}: {err}",
                        key.tgid,
                        self.directories.get(&key).map_or("?", String::as_str)
                    );
                    continue;
                }
            };
            // Only the copies that still hold this key count (the agent
            // wrote them all at once, but a CPU's copy is all it reads).
            let records: Vec<FileAccessRecord> = values
                .iter()
                .filter(|value| value.key == key)
                .map(|value| value.record)
                .collect();
            if let Some(mut record) = merge(&records) {
                let last = self.last.get(&key).copied();
                let grown = growth(record.count, last.map(|(count, _)| count));
                seen.insert(key, (record.count, record.bytes));
                if grown > 0 {
                    let last_bytes = match last {
                        Some((count, bytes)) if record.count >= count => bytes,
                        _ => 0,
                    };
                    record.header.ktime_ns = now;
                    record.header.size = size_of::<FileAccessRecord>() as u32;
                    record.header.kind = EventKind::FileAccess as u16;
                    record.count = grown;
                    record.bytes = record.bytes.saturating_sub(last_bytes);
                    match decode::decode(decode::pod_bytes(&record)) {
                        Ok(mut decoded) => {
                            if let Payload::FileAccess(access) = &mut decoded.payload {
                                access.directory =
                                    self.directories.get(&key).cloned().unwrap_or_default();
                            }
                            out.push(decoded);
                        }
                        Err(err) => {
                            log::debug!("the read counter of {} is unreadable: {err}", key.tgid)
                        }
                    }
                }
            }
        }
        for key in gone {
            if let Some(slot) = self.slots.release(&key) {
                let _ = self.write_slot(slot, None);
            }
            self.directories.remove(&key);
            seen.remove(&key);
        }
        self.last = seen;
        out
    }

    /// Polls every `interval` and takes offers until shutdown, sending
    /// records to the pipeline queue (a full queue drops the report, like
    /// the reader does, and counts it).
    pub async fn run(
        mut self,
        interval: Duration,
        mut offers: mpsc::Receiver<FoldOffer>,
        queue: RecordSender,
        stats: std::sync::Arc<PipelineStats>,
        metrics: std::sync::Arc<Metrics>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(100)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let records = self.poll();
                    metrics.set_file_access_dirs(self.directories.len());
                    for record in records {
                        queue.send_or_count(record, &stats);
                    }
                }
                Some(offer) = offers.recv() => self.offer(offer, &metrics),
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
#[path = "file_access_tests.rs"]
mod tests;
