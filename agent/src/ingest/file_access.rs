//! Folded reads: the agent's side of the kernel's `FILE_ACCESS` counters.
//!
//! A tracked process's first plain read in a directory comes as a full
//! `open` event whose file may be folded (`FileInfo::fold_candidate`). The
//! pipeline offers it here; [`FoldPolicy`] decides from the directory's path
//! whether every read there may be counted instead of reported: never in a
//! directory an asset path prefix can reach into, nor in a pseudo file
//! system. An accepted directory gets a zeroed counter in `FILE_ACCESS`,
//! and from then on the kernel counts the process's plain reads there whose
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

use aiwatch_common::{EventKind, FileAccessKey, FileAccessRecord};
use aya::{
    maps::{MapData, PerCpuHashMap, PerCpuValues},
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

pub struct FileAccessPoller {
    counters: PerCpuHashMap<MapData, FileAccessKey, FileAccessRecord>,
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
            counters: PerCpuHashMap::try_from(map)
                .map_err(|_| InterestError::MissingMap("FILE_ACCESS"))?,
            policy,
            directories: HashMap::new(),
            refused: HashSet::new(),
            last: HashMap::new(),
            cpus,
        })
    }

    /// Starts counting the reads in an offered directory, if it may be
    /// folded. A refused insert (the map is full) leaves its reads as full
    /// events: nothing is lost, it only costs more.
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
        // SAFETY: an all-zero record is valid: integers and integer arrays.
        let zero: FileAccessRecord = unsafe { std::mem::zeroed() };
        let Ok(values) = PerCpuValues::try_from(vec![zero; self.cpus]) else {
            return;
        };
        match self.counters.insert(offer.key, values, 0) {
            Ok(()) => {
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

    /// Reads every counter; returns one record per counter whose count
    /// grew, and removes those of processes that are gone.
    pub fn poll(&mut self) -> Vec<Record> {
        let now = now_boot_ns();
        let mut out = Vec::new();
        let mut seen = HashMap::new();
        let entries: Vec<(FileAccessKey, PerCpuValues<FileAccessRecord>)> =
            self.counters.iter().filter_map(Result::ok).collect();
        let mut gone = Vec::new();
        for (key, values) in entries {
            if let Some(mut record) = merge(&values) {
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
            if !std::path::Path::new(&format!("/proc/{}", key.tgid)).exists() {
                gone.push(key);
            }
        }
        for key in gone {
            let _ = self.counters.remove(&key);
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
