//! The process table: who each pid is, and who its ancestors are.
//!
//! A pid is only unique while its process lives, so an entry is the pair
//! (pid, start time): an exec or fork for a pid whose entry has another
//! start time replaces it, and ancestry checks the parent's start time too.
//! Exited processes stay a while (late events, such as a TCP close handled
//! in softirq, still find them) in a bounded FIFO; live entries are bounded
//! by a cap whose overflow is counted.

use std::collections::VecDeque;

use rustc_hash::FxHashMap;

use crate::event::{ArcStr, Argv};

/// How many ancestors an event carries.
pub const MAX_ANCESTORS: usize = 8;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessEntry {
    pub pid: u32,
    pub ppid: u32,
    /// Boot-clock start time: with `pid`, the process's identity.
    pub start_ns: u64,
    /// Start time of the parent when this entry was made (0 = unknown).
    pub parent_start_ns: u64,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub exe: ArcStr,
    pub argv: Argv,
    pub argv_truncated: bool,
    pub comm: ArcStr,
    pub cgroup_id: u64,
    pub mnt_ns: Option<u32>,
    pub pid_ns: Option<u32>,
    pub exe_fileless: bool,
    /// fd 0 or 1 was a socket at exec.
    pub stdio_socket: bool,
    /// Boot-clock time of exit, once exited.
    pub exited_ns: Option<u64>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TableStats {
    /// Exited entries dropped to stay within the cap (normal churn).
    pub exited_evicted: u64,
    /// Live entries dropped because the table was full: stale ones first
    /// (the process is gone, its exit was lost), else the newest.
    pub live_evicted: u64,
    /// Entries replaced because their pid was reused.
    pub pid_reused: u64,
}

pub struct ProcessTable {
    // Keyed by pid, hashed with Fx: every event looks up its process and up
    // to eight ancestors here, and a pid is no key an attacker can choose
    // freely enough to collide.
    live: FxHashMap<u32, ProcessEntry>,
    /// Exited processes, oldest first, kept for late events.
    exited: VecDeque<ProcessEntry>,
    /// How many entries of `exited` each pid has: a pid in neither map (an
    /// ancestor chain's end, as often as not) is known absent without a
    /// scan of the FIFO.
    exited_pids: FxHashMap<u32, u32>,
    max_live: usize,
    max_exited: usize,
    stats: TableStats,
    /// Whether `/proc` tells which entries are stale (off in replay).
    check_procfs: bool,
}

/// Oldest live entries checked against `/proc` for one eviction.
const STALE_CHECKS: usize = 8;

impl ProcessTable {
    pub fn new(max_live: usize, max_exited: usize) -> Self {
        Self {
            live: FxHashMap::default(),
            exited: VecDeque::new(),
            exited_pids: FxHashMap::default(),
            max_live: max_live.max(1),
            max_exited,
            stats: TableStats::default(),
            check_procfs: false,
        }
    }

    /// Lets eviction ask `/proc` which entries are stale: only for a live
    /// host, not for replayed events.
    pub fn with_procfs_checks(mut self) -> Self {
        self.check_procfs = true;
        self
    }

    pub fn stats(&self) -> TableStats {
        self.stats
    }

    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    pub fn exited_count(&self) -> usize {
        self.exited.len()
    }

    /// The live process with this pid.
    pub fn get(&self, pid: u32) -> Option<&ProcessEntry> {
        self.live.get(&pid)
    }

    pub fn get_mut(&mut self, pid: u32) -> Option<&mut ProcessEntry> {
        self.live.get_mut(&pid)
    }

    /// Every live process, in no particular order.
    pub fn live(&self) -> impl Iterator<Item = &ProcessEntry> {
        self.live.values()
    }

    /// The live process, or else the most recently exited one, with this pid.
    pub fn get_any(&self, pid: u32) -> Option<&ProcessEntry> {
        self.live.get(&pid).or_else(|| {
            self.exited_pids
                .contains_key(&pid)
                .then(|| self.exited.iter().rev().find(|p| p.pid == pid))
                .flatten()
        })
    }

    /// Inserts or replaces the entry for `entry.pid`. An entry with another
    /// start time is a reused pid: the old process is gone.
    pub fn upsert(&mut self, mut entry: ProcessEntry) {
        if entry.parent_start_ns == 0 {
            if let Some(parent) = self.live.get(&entry.ppid) {
                entry.parent_start_ns = parent.start_ns;
            }
        }
        match self.live.get(&entry.pid) {
            Some(old) if !same_start(old.start_ns, entry.start_ns) => {
                self.stats.pid_reused += 1;
                let mut old = self.live.remove(&entry.pid).expect("checked above");
                old.exited_ns.get_or_insert(entry.start_ns);
                self.push_exited(old);
            }
            _ => {}
        }
        if !self.live.contains_key(&entry.pid) && self.live.len() >= self.max_live {
            self.evict_one_live();
        }
        self.live.insert(entry.pid, entry);
    }

    /// A fork: the child starts as a copy of its parent.
    pub fn fork(&mut self, parent_pid: u32, child_pid: u32, child_start_ns: u64) {
        let child = match self.live.get(&parent_pid) {
            Some(parent) => ProcessEntry {
                pid: child_pid,
                ppid: parent_pid,
                start_ns: child_start_ns,
                parent_start_ns: parent.start_ns,
                exited_ns: None,
                ..parent.clone()
            },
            None => ProcessEntry {
                pid: child_pid,
                ppid: parent_pid,
                start_ns: child_start_ns,
                ..Default::default()
            },
        };
        self.upsert(child);
    }

    /// Marks a process exited and moves it to the FIFO of exited entries.
    /// Returns the entry as it was.
    pub fn exit(&mut self, pid: u32, ktime_ns: u64) -> Option<&ProcessEntry> {
        let mut entry = self.live.remove(&pid)?;
        entry.exited_ns = Some(ktime_ns);
        self.push_exited(entry);
        self.exited.back()
    }

    /// The ancestors of `pid`, nearest first, stopping at a parent whose
    /// start time shows it is not the real parent (pid reuse).
    pub fn ancestors(&self, pid: u32) -> Vec<&ProcessEntry> {
        let mut chain = Vec::new();
        let Some(mut current) = self.get_any(pid) else {
            return chain;
        };
        while chain.len() < MAX_ANCESTORS {
            if current.ppid == 0 || current.ppid == current.pid {
                break;
            }
            let Some(parent) = self.get_any(current.ppid) else {
                break;
            };
            if !same_start(parent.start_ns, current.parent_start_ns) {
                break;
            }
            chain.push(parent);
            current = parent;
        }
        chain
    }

    fn push_exited(&mut self, entry: ProcessEntry) {
        *self.exited_pids.entry(entry.pid).or_default() += 1;
        self.exited.push_back(entry);
        while self.exited.len() > self.max_exited {
            let Some(evicted) = self.exited.pop_front() else {
                break;
            };
            if let Some(count) = self.exited_pids.get_mut(&evicted.pid) {
                *count -= 1;
                if *count == 0 {
                    self.exited_pids.remove(&evicted.pid);
                }
            }
            self.stats.exited_evicted += 1;
        }
    }

    /// Drops one live entry to make room, never init's. First a stale one:
    /// among the oldest entries, one whose process is gone (its exit was
    /// lost). Else the newest: a full table of live processes is a flood,
    /// and what a flood adds is new, while init and long-running model
    /// servers are old. An evicted process that acts again is read back
    /// from `/proc`.
    fn evict_one_live(&mut self) {
        let candidates = || self.live.values().filter(|p| p.pid != 1);
        let stale = if self.check_procfs {
            let mut oldest: Vec<(u64, u32)> = candidates().map(|p| (p.start_ns, p.pid)).collect();
            let checks = oldest.len().min(STALE_CHECKS);
            if checks > 0 && checks < oldest.len() {
                oldest.select_nth_unstable(checks - 1);
            }
            oldest.truncate(checks);
            oldest.sort_unstable();
            oldest
                .into_iter()
                .map(|(_, pid)| pid)
                .find(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        } else {
            None
        };
        let victim = stale.or_else(|| candidates().max_by_key(|p| p.start_ns).map(|p| p.pid));
        if let Some(pid) = victim {
            self.live.remove(&pid);
            self.stats.live_evicted += 1;
        }
    }
}

/// Whether two start times name the same process. `/proc` gives start times
/// in clock ticks (10 ms), the kernel in nanoseconds, so they are compared
/// within two ticks; a pid is never reused that fast. Zero means unknown.
fn same_start(a: u64, b: u64) -> bool {
    const TOLERANCE_NS: u64 = 20_000_000;
    a == 0 || b == 0 || a.abs_diff(b) <= TOLERANCE_NS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pid: u32, ppid: u32, start_ns: u64, exe: &str) -> ProcessEntry {
        ProcessEntry {
            pid,
            ppid,
            start_ns,
            exe: exe.into(),
            ..Default::default()
        }
    }

    #[test]
    fn ancestry_follows_parents() {
        let mut t = ProcessTable::new(100, 100);
        t.upsert(entry(1, 0, 1, "/sbin/init"));
        t.upsert(entry(10, 1, 10, "/usr/bin/python3"));
        t.fork(10, 11, 11);
        t.upsert(ProcessEntry {
            exe: "/bin/sh".into(),
            ..t.get(11).unwrap().clone()
        });
        let chain: Vec<_> = t.ancestors(11).iter().map(|p| p.exe.clone()).collect();
        assert_eq!(chain, ["/usr/bin/python3", "/sbin/init"]);
    }

    #[test]
    fn pid_reuse_never_mixes_two_processes() {
        let mut t = ProcessTable::new(100, 100);
        t.upsert(entry(1, 0, 1, "/sbin/init"));
        t.upsert(entry(50, 1, 100, "/usr/bin/old"));
        t.upsert(entry(60, 50, 150, "/usr/bin/child-of-old"));
        // 50 exits without us seeing it, and the pid comes back as another process.
        t.upsert(entry(50, 1, 900_000_000, "/usr/bin/new"));
        assert_eq!(t.stats().pid_reused, 1);
        assert_eq!(t.get(50).unwrap().exe, "/usr/bin/new");
        // The child of the old 50 must not claim the new 50 as its parent.
        let chain: Vec<_> = t.ancestors(60).iter().map(|p| p.exe.clone()).collect();
        assert!(!chain.iter().any(|exe| exe == "/usr/bin/new"), "{chain:?}");
    }

    #[test]
    fn proc_and_kernel_start_times_match() {
        let mut t = ProcessTable::new(100, 100);
        // Seeded from /proc with 10 ms resolution, then exec'd: same process.
        t.upsert(entry(70, 1, 5_120_000_000, "/bin/bash"));
        t.upsert(entry(70, 1, 5_123_456_789, "/usr/bin/python3"));
        assert_eq!(t.stats().pid_reused, 0);
    }

    #[test]
    fn exited_entries_are_bounded() {
        let mut t = ProcessTable::new(10_000, 16);
        for pid in 2..1002 {
            t.upsert(entry(pid, 1, pid as u64, "/bin/true"));
            t.exit(pid, pid as u64 + 1);
        }
        assert_eq!(t.live_count(), 0);
        assert_eq!(t.exited_count(), 16);
        assert_eq!(t.stats().exited_evicted, 1000 - 16);
        // A late event still finds a recently exited process.
        assert_eq!(t.get_any(1001).unwrap().exited_ns, Some(1002));
        assert!(t.get_any(2).is_none());
        // A pid that exited twice stays findable until its last entry goes.
        let mut t = ProcessTable::new(10_000, 3);
        t.upsert(entry(7, 1, 1, "/bin/first"));
        t.exit(7, 2);
        t.upsert(entry(7, 1, 3, "/bin/second"));
        t.exit(7, 4);
        t.upsert(entry(8, 1, 5, "/bin/true"));
        t.exit(8, 6);
        assert_eq!(t.get_any(7).map(|p| p.exe.as_str()), Some("/bin/second"));
        t.upsert(entry(9, 1, 7, "/bin/true"));
        t.exit(9, 8);
        assert_eq!(t.get_any(7).map(|p| p.exe.as_str()), Some("/bin/second"));
        for pid in 10..12 {
            t.upsert(entry(pid, 1, pid as u64 * 10, "/bin/true"));
            t.exit(pid, pid as u64 * 10 + 1);
        }
        assert!(t.get_any(7).is_none());
    }

    #[test]
    fn a_flood_of_live_processes_evicts_the_newest_never_init_or_the_old() {
        let mut t = ProcessTable::new(8, 8);
        // init and a long-running model server, then a flood.
        t.upsert(entry(1, 0, 1, "/sbin/init"));
        t.upsert(entry(500, 1, 2, "/usr/bin/python3"));
        for pid in 1000..1100 {
            t.upsert(entry(pid, 1, pid as u64, "/bin/sleep"));
        }
        assert_eq!(t.live_count(), 8);
        assert_eq!(t.stats().live_evicted, 94);
        assert!(t.get(1).is_some(), "init was evicted");
        assert!(t.get(500).is_some(), "the model server was evicted");
        // The flood's last process is in the table: each newcomer replaced
        // the previous newest.
        assert!(t.get(1099).is_some());
    }

    #[test]
    fn stale_entries_go_before_live_ones() {
        // pids above the kernel's maximum (4,194,304) never exist.
        let (gone_a, gone_b) = (4_194_400, 4_194_401);
        let me = std::process::id();
        let mut t = ProcessTable::new(4, 4).with_procfs_checks();
        t.upsert(entry(1, 0, 1, "/sbin/init"));
        t.upsert(entry(me, 1, 2, "/usr/bin/python3"));
        t.upsert(entry(gone_a, 1, 3, "/bin/sleep"));
        t.upsert(entry(gone_b, 1, 4, "/bin/sleep"));
        t.upsert(entry(77, 1, 5, "/bin/true"));
        // The oldest stale entry made room; init and the live process stay.
        assert!(t.get(gone_a).is_none());
        assert!(t.get(gone_b).is_some());
        assert!(t.get(1).is_some() && t.get(me).is_some() && t.get(77).is_some());
        assert_eq!(t.stats().live_evicted, 1);
    }

    #[test]
    fn fork_inherits_identity() {
        let mut t = ProcessTable::new(100, 100);
        t.upsert(ProcessEntry {
            uid: 1000,
            cgroup_id: 9,
            ..entry(10, 1, 10, "/usr/bin/python3")
        });
        t.fork(10, 12, 20);
        let child = t.get(12).unwrap();
        assert_eq!((child.ppid, child.uid, child.cgroup_id), (10, 1000, 9));
        assert_eq!(child.exe, "/usr/bin/python3");
        assert_eq!(child.parent_start_ns, 10);
    }
}
