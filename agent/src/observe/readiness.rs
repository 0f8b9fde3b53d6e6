//! What `/readyz` reports: the agent sees the host and makes progress.
//!
//! Ready means: the probes are attached, no supervised task has died, the
//! ring-buffer reader and the pipeline are alive, and the pipeline drains
//! its queue. A stall is judged from the pipeline's own progress (events
//! handled while records wait in the queue, see `observe::supervise`), not
//! from a timer inside the pipeline that keeps ticking while events pile up.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

/// Default longest gap between pipeline heartbeats before `/readyz` fails.
pub const DEFAULT_MAX_SILENCE: Duration = Duration::from_secs(30);

/// Why `/readyz` answers 503.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotReady {
    ProbesNotAttached,
    NoHeartbeatYet,
    Stalled {
        silent_for: Duration,
    },
    /// Supervised tasks that panicked, failed or stopped on their own.
    TasksFailed {
        tasks: Vec<&'static str>,
    },
    /// Tasks alive but making no progress (`reader`, `pipeline`).
    TasksStalled {
        tasks: Vec<&'static str>,
    },
}

impl std::fmt::Display for NotReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotReady::ProbesNotAttached => f.write_str("eBPF programs are not attached"),
            NotReady::NoHeartbeatYet => f.write_str("the event pipeline has not started"),
            NotReady::Stalled { silent_for } => write!(
                f,
                "the event pipeline has not made progress for {}s",
                silent_for.as_secs()
            ),
            NotReady::TasksFailed { tasks } => {
                write!(f, "tasks failed: {}", tasks.join(", "))
            }
            NotReady::TasksStalled { tasks } => {
                write!(f, "tasks make no progress: {}", tasks.join(", "))
            }
        }
    }
}

/// Readiness shared between the pipeline and the supervisor (writers) and
/// the listener (reader).
///
/// The pipeline calls [`Readiness::set_probes_attached`] after loading and
/// attaching, and [`Readiness::heartbeat`] from its main loop on every
/// iteration, events or not (an idle host is still a healthy one). The
/// supervisor records failed tasks and stalls.
#[derive(Debug)]
pub struct Readiness {
    origin: Instant,
    probes_attached: AtomicBool,
    /// Milliseconds from `origin` to the last heartbeat, plus one; 0 = never.
    last_heartbeat: AtomicU64,
    max_silence: Duration,
    failed: Mutex<Vec<&'static str>>,
    stalled: Mutex<Vec<&'static str>>,
    /// Where the kernel can enforce on this host: hook → usable, as found
    /// at start-up (`enforce::EnforcementHooks`). Detail of `/readyz`.
    enforcement_hooks: Mutex<Vec<(&'static str, bool)>>,
}

impl Readiness {
    pub fn new(max_silence: Duration) -> Self {
        Readiness {
            origin: Instant::now(),
            probes_attached: AtomicBool::new(false),
            last_heartbeat: AtomicU64::new(0),
            max_silence,
            failed: Mutex::new(Vec::new()),
            stalled: Mutex::new(Vec::new()),
            enforcement_hooks: Mutex::new(Vec::new()),
        }
    }

    /// Records where the kernel can enforce (start-up).
    pub fn set_enforcement_hooks(&self, hooks: Vec<(&'static str, bool)>) {
        *self
            .enforcement_hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = hooks;
    }

    /// Where the kernel can enforce, as recorded at start-up.
    pub fn enforcement_hooks(&self) -> Vec<(&'static str, bool)> {
        self.enforcement_hooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn max_silence(&self) -> Duration {
        self.max_silence
    }

    pub fn set_probes_attached(&self, attached: bool) {
        self.probes_attached.store(attached, Ordering::Relaxed);
    }

    /// The pipeline is making progress.
    pub fn heartbeat(&self) {
        let since_origin = self.origin.elapsed().as_millis();
        let stamp = u64::try_from(since_origin).unwrap_or(u64::MAX - 1) + 1;
        self.last_heartbeat.store(stamp, Ordering::Relaxed);
    }

    /// A supervised task died: readiness stays red until restart.
    pub fn task_failed(&self, task: &'static str) {
        let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        if !failed.contains(&task) {
            failed.push(task);
        }
    }

    /// A task is (or is no longer) stalled.
    pub fn set_stalled(&self, task: &'static str, stalled: bool) {
        let mut list = self.stalled.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|t| *t != task);
        if stalled {
            list.push(task);
        }
    }

    pub fn check(&self) -> Result<(), NotReady> {
        if !self.probes_attached.load(Ordering::Relaxed) {
            return Err(NotReady::ProbesNotAttached);
        }
        let failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        if !failed.is_empty() {
            return Err(NotReady::TasksFailed {
                tasks: failed.clone(),
            });
        }
        drop(failed);
        let stalled = self.stalled.lock().unwrap_or_else(|e| e.into_inner());
        if !stalled.is_empty() {
            return Err(NotReady::TasksStalled {
                tasks: stalled.clone(),
            });
        }
        drop(stalled);
        let stamp = self.last_heartbeat.load(Ordering::Relaxed);
        if stamp == 0 {
            return Err(NotReady::NoHeartbeatYet);
        }
        let last = Duration::from_millis(stamp - 1);
        let silent_for = self.origin.elapsed().saturating_sub(last);
        if silent_for > self.max_silence {
            return Err(NotReady::Stalled { silent_for });
        }
        Ok(())
    }
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness::new(DEFAULT_MAX_SILENCE)
    }
}
