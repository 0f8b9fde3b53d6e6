//! Hot reload: watches the policy paths (and SIGHUP), rebuilds the policy
//! set, publishes successes and reports failures. A failed reload leaves the
//! current set in place.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use super::error::PolicyErrors;
use super::set::PolicySet;

/// Changes closer together than this are folded into one reload (editors
/// write a file in several steps).
pub const DEBOUNCE: Duration = Duration::from_millis(200);

#[derive(Debug)]
pub enum ReloadOutcome {
    Loaded { rules: usize },
    Failed(PolicyErrors),
}

#[derive(Debug, Default)]
pub struct ReloadCounters {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("cannot watch policy path {path}: {source}")]
    Watch { path: String, source: notify::Error },
    #[error("cannot listen for SIGHUP: {0}")]
    Signal(std::io::Error),
}

pub struct PolicyReloader {
    /// The current (last good) policy set.
    pub current: watch::Receiver<Arc<PolicySet>>,
    /// Every reload's result, for logging.
    pub outcomes: mpsc::Receiver<ReloadOutcome>,
    pub counters: Arc<ReloadCounters>,
    trigger: mpsc::UnboundedSender<()>,
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl PolicyReloader {
    /// Asks for a reload now (as SIGHUP does).
    pub fn reload_now(&self) {
        let _ = self.trigger.send(());
    }
}

impl Drop for PolicyReloader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching `paths` and SIGHUP. Must be called inside a tokio
/// runtime. `initial` is the set already in use.
pub fn spawn_reloader(
    paths: Vec<PathBuf>,
    with_default_pack: bool,
    initial: Arc<PolicySet>,
) -> Result<PolicyReloader, ReloadError> {
    let (trigger, mut triggers) = mpsc::unbounded_channel::<()>();
    // notify reports absolute paths: compare against canonical ones.
    let watched: Vec<PathBuf> = paths
        .iter()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
        .collect();
    let file_trigger = trigger.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let relevant = event.paths.iter().any(|changed| {
                watched
                    .iter()
                    .any(|p| changed == p || changed.parent() == Some(p.as_path()))
            });
            if relevant && !event.kind.is_access() {
                let _ = file_trigger.send(());
            }
        }
    })
    .map_err(|source| ReloadError::Watch {
        path: String::new(),
        source,
    })?;
    for path in &paths {
        // Editors replace files by renaming over them, which a watch on the
        // file itself would miss: watch its folder.
        let target: &Path = if path.is_dir() {
            path
        } else {
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
        };
        watcher
            .watch(target, RecursiveMode::NonRecursive)
            .map_err(|source| ReloadError::Watch {
                path: path.display().to_string(),
                source,
            })?;
    }
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(ReloadError::Signal)?;

    let (current_tx, current) = watch::channel(initial);
    let (outcome_tx, outcomes) = mpsc::channel(16);
    let counters = Arc::new(ReloadCounters::default());
    let task_counters = counters.clone();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                got = triggers.recv() => if got.is_none() { break },
                _ = hangups.recv() => {},
            }
            // Fold a burst of changes into one reload.
            tokio::time::sleep(DEBOUNCE).await;
            while triggers.try_recv().is_ok() {}
            let paths = paths.clone();
            let loaded =
                tokio::task::spawn_blocking(move || PolicySet::load(&paths, with_default_pack))
                    .await;
            let outcome = match loaded {
                Ok(Ok(set)) => {
                    task_counters.ok.fetch_add(1, Ordering::Relaxed);
                    let rules = set.rule_count();
                    let _ = current_tx.send(Arc::new(set));
                    ReloadOutcome::Loaded { rules }
                }
                Ok(Err(errors)) => {
                    task_counters.failed.fetch_add(1, Ordering::Relaxed);
                    ReloadOutcome::Failed(errors)
                }
                Err(join_error) => {
                    task_counters.failed.fetch_add(1, Ordering::Relaxed);
                    let mut errors = PolicyErrors::default();
                    errors.push(
                        "policy",
                        super::error::Pos::new(1, 1),
                        format!("reload failed: {join_error}"),
                    );
                    ReloadOutcome::Failed(errors)
                }
            };
            let _ = outcome_tx.try_send(outcome);
        }
    });
    Ok(PolicyReloader {
        current,
        outcomes,
        counters,
        trigger,
        _watcher: watcher,
        task,
    })
}
