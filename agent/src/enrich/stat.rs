//! `stat` of event paths, as the process that named them sees them, and
//! never on the pipeline thread.
//!
//! A failed open or a chmod brings no inode from the kernel; its device
//! numbers, mode and size come from a stat of the path. The path is
//! resolved in the process's own root (`/proc/<pid>/root`, `openat2` with
//! `RESOLVE_IN_ROOT`), so a container's absolute symlinks stay inside its
//! image instead of naming the host's files, and it is stat'ed through an
//! `O_PATH` descriptor, which opens no device. The stat runs on a worker
//! thread: a hung filesystem (a dead NFS mount, a stuck FUSE daemon) stalls
//! the worker, never the pipeline, which waits [`STAT_WAIT`] for the answer
//! and, while the worker is stuck, does not ask at all. Each stat's outcome
//! is counted in `aiwatch_path_stats_total{outcome}`.

use std::{
    os::fd::OwnedFd,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::{self, RecvTimeoutError, SyncSender, TrySendError},
        Arc,
    },
    time::Duration,
};

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::metrics::PathStatCounters;

/// How long the pipeline waits for one stat.
pub const STAT_WAIT: Duration = Duration::from_millis(20);

/// Stats waiting for the worker.
const QUEUE: usize = 16;

/// What a stat tells of a path: `(st_mode, (major, minor) of st_rdev,
/// st_size)`.
pub type PathStat = (u32, (u32, u32), i64);

struct Request {
    pid: u32,
    path: String,
    reply: SyncSender<Option<PathStat>>,
}

/// The pipeline's handle on the stat worker.
pub struct Statter {
    requests: SyncSender<Request>,
    /// Set while the worker is inside a stat.
    busy: Arc<AtomicBool>,
    counters: PathStatCounters,
}

impl Statter {
    /// Starts the worker thread.
    pub fn start(counters: PathStatCounters) -> std::io::Result<Statter> {
        let (requests, queue) = mpsc::sync_channel::<Request>(QUEUE);
        let busy = Arc::new(AtomicBool::new(false));
        let worker_busy = busy.clone();
        std::thread::Builder::new()
            .name("aiwatch-stat".into())
            .spawn(move || {
                for request in queue {
                    worker_busy.store(true, Ordering::Release);
                    let answer = stat_in_root(request.pid, &request.path);
                    worker_busy.store(false, Ordering::Release);
                    // The pipeline may have stopped waiting: that is fine.
                    let _ = request.reply.try_send(answer);
                }
            })?;
        Ok(Statter {
            requests,
            busy,
            counters,
        })
    }

    /// `path` as process `pid` sees it, or `None` (counted by why).
    pub fn stat(&self, pid: u32, path: &str) -> Option<PathStat> {
        if self.busy.load(Ordering::Acquire) {
            self.counters.skipped.inc();
            return None;
        }
        let (reply, answer) = mpsc::sync_channel(1);
        let request = Request {
            pid,
            path: path.to_owned(),
            reply,
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.requests.try_send(request)
        {
            self.counters.skipped.inc();
            return None;
        }
        match answer.recv_timeout(STAT_WAIT) {
            Ok(Some(stat)) => {
                self.counters.done.inc();
                Some(stat)
            }
            Ok(None) => {
                self.counters.failed.inc();
                None
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                self.counters.timed_out.inc();
                None
            }
        }
    }
}

/// Stats `path` inside the root of process `pid`.
fn stat_in_root(pid: u32, path: &str) -> Option<PathStat> {
    let root: OwnedFd = rustix::fs::open(
        format!("/proc/{pid}/root"),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let file = rustix::fs::openat2(
        &root,
        path,
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .ok()?;
    let stat = rustix::fs::fstat(&file).ok()?;
    let rdev = stat.st_rdev;
    Some((
        stat.st_mode,
        (rustix::fs::major(rdev), rustix::fs::minor(rdev)),
        stat.st_size,
    ))
}

#[cfg(test)]
mod tests {
    use prometheus::IntCounter;

    use super::*;

    fn counters() -> PathStatCounters {
        PathStatCounters {
            done: IntCounter::new("done", "d").unwrap(),
            failed: IntCounter::new("failed", "f").unwrap(),
            timed_out: IntCounter::new("timed_out", "t").unwrap(),
            skipped: IntCounter::new("skipped", "s").unwrap(),
        }
    }

    #[test]
    fn paths_resolve_in_the_process_root_and_failures_are_counted() {
        let statter = Statter::start(counters()).unwrap();
        let pid = std::process::id();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("weights.bin");
        std::fs::write(&file, vec![0u8; 1234]).unwrap();
        let (mode, _, size) = statter.stat(pid, file.to_str().unwrap()).expect("a stat");
        assert_eq!(mode & libc::S_IFMT, libc::S_IFREG);
        assert_eq!(size, 1234);
        // A character device: its numbers, without opening it.
        let (mode, (major, minor), _) = statter.stat(pid, "/dev/null").expect("/dev/null");
        assert_eq!(mode & libc::S_IFMT, libc::S_IFCHR);
        assert_eq!((major, minor), (1, 3));
        assert_eq!(statter.stat(pid, "/no/such/path"), None);
        // A pid that does not exist has no root.
        assert_eq!(statter.stat(u32::MAX - 1, "/dev/null"), None);
        assert_eq!(statter.counters.done.get(), 2);
        assert_eq!(statter.counters.failed.get(), 2);
        // While the worker is inside a stat (hung on a dead mount), the
        // pipeline does not ask.
        statter.busy.store(true, Ordering::Release);
        assert_eq!(statter.stat(pid, "/dev/null"), None);
        assert_eq!(statter.counters.skipped.get(), 1);
    }

    #[test]
    fn an_absolute_symlink_stays_inside_the_root() {
        // `RESOLVE_IN_ROOT` on the tempdir as a root: `/target` names the
        // tempdir's file, not the host's.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("target"), b"inside").unwrap();
        std::os::unix::fs::symlink("/target", dir.path().join("link")).unwrap();
        let root =
            rustix::fs::open(dir.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let file = rustix::fs::openat2(
            &root,
            "/link",
            OFlags::PATH,
            Mode::empty(),
            ResolveFlags::IN_ROOT,
        )
        .unwrap();
        assert_eq!(rustix::fs::fstat(&file).unwrap().st_size, 6);
    }
}
