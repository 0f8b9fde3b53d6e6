//! Reads of `/proc/<pid>/maps`, off the pipeline thread.
//!
//! Reading a process's maps takes its memory-map lock. A process stuck in
//! a page fault on a dead network or FUSE file while another of its
//! threads waits to map or unmap holds every reader of its maps behind it,
//! and so would hold the pipeline. The reads run on a thread of their own;
//! the pipeline asks and goes on, and the answer comes back on a channel
//! (`Analyzer::maps_read`). While a read has been stuck for
//! [`STUCK_AFTER`], or the queue is full, nothing more is asked (counted as
//! skipped): a scheduled look comes again, and an urgent one's events go on
//! when their hold ends. Scheduled looks are asked only while fewer than
//! [`BACKGROUND_DEPTH`] reads wait, so that an urgent one (a model open, a
//! listen, whose events wait for it) never queues behind many.

use std::{
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        mpsc::{sync_channel, SyncSender, TrySendError},
        Arc,
    },
    time::Duration,
};

use procfs::process::MemoryMaps;

use crate::clock::now_boot_ns;

/// Pids waiting for their read.
const QUEUE: usize = 256;
/// Scheduled looks are asked only while fewer reads than this wait.
pub const BACKGROUND_DEPTH: usize = 8;
/// A read this long is taken as stuck.
pub const STUCK_AFTER: Duration = Duration::from_secs(1);

/// The maps of one process, or `None` when it had exited (or its maps
/// could not be read).
#[derive(Debug)]
pub struct MapsRead {
    pub pid: u32,
    pub maps: Option<MemoryMaps>,
}

/// The pipeline's handle on the maps reader.
#[derive(Debug)]
pub struct MapsReader {
    requests: SyncSender<u32>,
    /// Boot-clock ns at which the current read began; 0 while idle.
    reading_since: Arc<AtomicU64>,
    /// Reads asked and not yet begun.
    waiting: Arc<AtomicUsize>,
}

impl MapsReader {
    /// Starts the reader thread; its answers come on the receiver.
    pub fn start() -> std::io::Result<(MapsReader, tokio::sync::mpsc::Receiver<MapsRead>)> {
        let (requests, queue) = sync_channel::<u32>(QUEUE);
        let (answers, received) = tokio::sync::mpsc::channel(QUEUE);
        let reading_since = Arc::new(AtomicU64::new(0));
        let since = reading_since.clone();
        let waiting = Arc::new(AtomicUsize::new(0));
        let taken = waiting.clone();
        std::thread::Builder::new()
            .name("aiwatch-maps".into())
            .spawn(move || {
                for pid in queue {
                    taken.fetch_sub(1, Ordering::AcqRel);
                    since.store(now_boot_ns().max(1), Ordering::Release);
                    let maps = procfs::process::Process::new(pid as i32)
                        .and_then(|process| process.maps())
                        .ok();
                    since.store(0, Ordering::Release);
                    if answers.blocking_send(MapsRead { pid, maps }).is_err() {
                        // The pipeline stopped.
                        return;
                    }
                }
            })?;
        Ok((
            MapsReader {
                requests,
                reading_since,
                waiting,
            },
            received,
        ))
    }

    /// Asks for `pid`'s maps (`urgent`: events wait for the answer); false
    /// when the reader is stuck or too busy (nothing will come for this
    /// ask).
    pub fn ask(&self, pid: u32, urgent: bool) -> bool {
        let since = self.reading_since.load(Ordering::Acquire);
        if since != 0 && now_boot_ns().saturating_sub(since) >= STUCK_AFTER.as_nanos() as u64 {
            return false;
        }
        if !urgent && self.waiting.load(Ordering::Acquire) >= BACKGROUND_DEPTH {
            return false;
        }
        self.waiting.fetch_add(1, Ordering::AcqRel);
        match self.requests.try_send(pid) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_live_process_maps_come_back_and_a_gone_one_says_so() {
        let (reader, mut answers) = MapsReader::start().expect("reader");
        assert!(reader.ask(std::process::id(), true));
        let read = answers.recv().await.expect("an answer");
        assert_eq!(read.pid, std::process::id());
        assert!(read.maps.is_some_and(|maps| maps.len() > 0));
        // No process has pid 0 in /proc.
        assert!(reader.ask(0, false));
        let gone = answers.recv().await.expect("an answer");
        assert!(gone.maps.is_none());
    }

    #[test]
    fn a_stuck_reader_is_not_asked_and_scheduled_looks_yield_to_urgent_ones() {
        let (requests, _queue) = sync_channel(QUEUE);
        let reader = MapsReader {
            requests,
            reading_since: Arc::new(AtomicU64::new(0)),
            waiting: Arc::new(AtomicUsize::new(0)),
        };
        // No thread takes the asks: they wait.
        for pid in 0..BACKGROUND_DEPTH as u32 {
            assert!(reader.ask(pid, false));
        }
        assert!(!reader.ask(100, false), "a scheduled look past the depth");
        assert!(reader.ask(101, true), "an urgent one still goes");
        // A read begun over STUCK_AFTER ago: nothing is asked.
        let begun = now_boot_ns().saturating_sub(STUCK_AFTER.as_nanos() as u64 + 1);
        reader.reading_since.store(begun.max(1), Ordering::Release);
        assert!(!reader.ask(102, true));
    }
}
