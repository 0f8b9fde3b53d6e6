//! When to read a process's `/proc/<pid>/maps` for library signals.
//!
//! An interpreter maps its AI libraries when the program imports them,
//! seconds after exec, so one look at exec time is not enough, and a look
//! per event is far too much. Each process is looked at a few times on a
//! back-off schedule after exec (and immediately when it opens a model or
//! starts listening); short-lived processes are gone before their first
//! look and cost nothing.

use std::collections::{BTreeMap, HashMap};

/// Delays after exec at which a process's maps are read.
const SCHEDULE_NS: [u64; 4] = [500_000_000, 3_000_000_000, 15_000_000_000, 60_000_000_000];
/// Processes waiting for a scan at most; the oldest are dropped past it.
const MAX_PENDING: usize = 16_384;

#[derive(Debug, Default)]
pub struct LibraryScanner {
    /// Due time → pids.
    queue: BTreeMap<u64, Vec<u32>>,
    /// pid → (exec time, next schedule step).
    pending: HashMap<u32, (u64, usize)>,
}

impl LibraryScanner {
    /// Starts the schedule of a freshly exec'd process.
    pub fn schedule(&mut self, pid: u32, exec_ns: u64) {
        if self.pending.len() >= MAX_PENDING {
            if let Some((&due, _)) = self.queue.iter().next() {
                if let Some(pids) = self.queue.remove(&due) {
                    for pid in pids {
                        self.pending.remove(&pid);
                    }
                }
            }
        }
        self.pending.insert(pid, (exec_ns, 0));
        self.queue
            .entry(exec_ns + SCHEDULE_NS[0])
            .or_default()
            .push(pid);
    }

    pub fn forget(&mut self, pid: u32) {
        self.pending.remove(&pid);
    }

    /// The pids whose next look is due at `now_ns`; reschedules each.
    pub fn due(&mut self, now_ns: u64) -> Vec<u32> {
        let later = self.queue.split_off(&(now_ns + 1));
        let due = std::mem::replace(&mut self.queue, later);
        let mut pids = Vec::new();
        for pid in due.into_values().flatten() {
            let Some(&(exec_ns, step)) = self.pending.get(&pid) else {
                continue;
            };
            pids.push(pid);
            match SCHEDULE_NS.get(step + 1) {
                Some(delay) => {
                    self.pending.insert(pid, (exec_ns, step + 1));
                    self.queue.entry(exec_ns + delay).or_default().push(pid);
                }
                None => {
                    self.pending.remove(&pid);
                }
            }
        }
        pids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_process_is_looked_at_on_a_back_off_schedule() {
        let mut s = LibraryScanner::default();
        s.schedule(10, 0);
        assert!(s.due(100_000_000).is_empty());
        assert_eq!(s.due(600_000_000), [10]);
        assert!(s.due(2_000_000_000).is_empty());
        assert_eq!(s.due(3_000_000_000), [10]);
        assert_eq!(s.due(100_000_000_000), [10]);
        assert_eq!(s.due(200_000_000_000), [10]);
        assert!(s.due(u64::MAX - 1).is_empty());
    }

    #[test]
    fn exited_processes_are_not_scanned() {
        let mut s = LibraryScanner::default();
        s.schedule(10, 0);
        s.schedule(11, 0);
        s.forget(10);
        assert_eq!(s.due(1_000_000_000), [11]);
    }
}
