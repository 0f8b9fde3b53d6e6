//! The supervisor: nothing in the agent dies or stalls unseen.
//!
//! Every long-lived task (reader, pipeline, sinks, telemetry, listener,
//! periodic sources) is started through [`Supervisor::spawn`]. A task that
//! panics, returns an error, or ends on its own before shutdown is logged,
//! counted in `aiwatch_task_failures_total{task}`, and turns `/readyz` red
//! with its name.
//!
//! The ring-buffer reader is the agent's eyes: when it dies the agent is
//! blind, and an agent that looks alive but sees nothing is worse than one
//! that is restarted. So a dead *critical* task (the reader, the pipeline)
//! stops the agent with a non-zero status, and systemd or the DaemonSet
//! restarts it; other tasks stay red in readiness and the agent keeps
//! running with what works.
//!
//! A watchdog samples progress once a second: the reader must keep draining
//! the ring (it does at least every 10 ms), and the pipeline must handle
//! events while records wait in its queue. An idle host has an empty queue
//! and is not a stall.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

use crate::{
    ingest::decode::Record,
    kernel::stats::KernelStats,
    metrics::{pipeline_stats::PipelineStats, Metrics},
    observe::readiness::Readiness,
};

/// What a task's output says about how it ended.
pub trait Outcome {
    /// `Some(reason)` when the task failed.
    fn failure(&self) -> Option<String> {
        None
    }
}

impl Outcome for () {}

impl Outcome for KernelStats {}

impl<E: std::fmt::Display> Outcome for Result<(), E> {
    fn failure(&self) -> Option<String> {
        self.as_ref().err().map(|err| err.to_string())
    }
}

/// Whether a task's death stops the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Criticality {
    /// The agent is blind without it: stop with a non-zero status.
    Fatal,
    /// Readiness turns red; the rest keeps working.
    Degrading,
}

/// The environment variable that makes a named task panic a second after
/// start, in debug builds only: tests prove failures are seen.
pub const FAULT_INJECTION_ENV: &str = "AIWATCH_TEST_PANIC_TASK";

#[derive(Clone)]
pub struct Supervisor {
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
    fatal: mpsc::UnboundedSender<&'static str>,
    shutting_down: Arc<AtomicBool>,
}

/// Receives the name of a fatal task that died.
pub type FatalTasks = mpsc::UnboundedReceiver<&'static str>;

impl Supervisor {
    pub fn new(metrics: Arc<Metrics>, readiness: Arc<Readiness>) -> (Supervisor, FatalTasks) {
        let (fatal, fatal_rx) = mpsc::unbounded_channel();
        (
            Supervisor {
                readiness,
                metrics,
                fatal,
                shutting_down: Arc::new(AtomicBool::new(false)),
            },
            fatal_rx,
        )
    }

    /// From now on, tasks ending are expected.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    /// Runs `task` under supervision. The handle yields its output, or
    /// `None` when it panicked.
    pub fn spawn<F>(
        &self,
        name: &'static str,
        criticality: Criticality,
        task: F,
    ) -> JoinHandle<Option<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Outcome + Send + 'static,
    {
        self.metrics.task_started(name);
        let inject = fault_injected(name);
        let inner = tokio::spawn(async move {
            if inject {
                tokio::time::sleep(Duration::from_secs(1)).await;
                panic!("{FAULT_INJECTION_ENV}={name}: injected panic");
            }
            task.await
        });
        let supervisor = self.clone();
        tokio::spawn(async move {
            let (output, failure) = match inner.await {
                Ok(output) => {
                    let failure = output.failure().or_else(|| {
                        (!supervisor.shutting_down.load(Ordering::Relaxed))
                            .then(|| "stopped on its own".to_owned())
                    });
                    (Some(output), failure)
                }
                Err(err) if err.is_panic() => (None, Some(panic_message(err.into_panic()))),
                Err(_cancelled) => (None, Some("cancelled".to_owned())),
            };
            if let Some(reason) = failure {
                supervisor.failed(name, criticality, &reason);
            }
            output
        })
    }

    fn failed(&self, task: &'static str, criticality: Criticality, reason: &str) {
        self.metrics.task_failed(task);
        self.readiness.task_failed(task);
        match criticality {
            Criticality::Fatal => {
                log::error!("task {task} failed: {reason}; the agent stops (exit status 1) so that it is restarted");
                let _ = self.fatal.send(task);
            }
            Criticality::Degrading => {
                log::error!("task {task} failed: {reason}; /readyz reports it until restart")
            }
        }
    }

    /// Samples the reader's and the pipeline's progress every second until
    /// `shutdown` turns true; a lack of progress for the readiness window
    /// is a stall.
    pub fn spawn_watchdog(
        &self,
        stats: Arc<PipelineStats>,
        queue: mpsc::WeakSender<Record>,
        mut shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<Option<()>> {
        let readiness = self.readiness.clone();
        let window = readiness.max_silence();
        self.spawn("watchdog", Criticality::Degrading, async move {
            let mut watch = ProgressWatch::new(window);
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                // Shutdown ends the wait at once: an agent being stopped
                // must not wait out the tick.
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.wait_for(|stop| *stop) => break,
                }
                let queued = queue
                    .upgrade()
                    .map(|tx| tx.max_capacity() - tx.capacity())
                    .unwrap_or(0);
                let sample = Sample {
                    reader_drains: stats.reader_drains.load(Ordering::Relaxed),
                    events: stats.events.total(),
                    queued,
                };
                let verdict = watch.observe(Instant::now(), sample);
                for (task, stalled) in [("reader", verdict.reader), ("pipeline", verdict.pipeline)]
                {
                    readiness.set_stalled(task, stalled);
                }
            }
        })
    }
}

/// What the watchdog reads each second.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub reader_drains: u64,
    pub events: u64,
    pub queued: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub reader: bool,
    pub pipeline: bool,
}

/// Judges stalls from successive samples.
#[derive(Debug)]
pub struct ProgressWatch {
    window: Duration,
    last: Option<Sample>,
    reader_still_since: Option<Instant>,
    pipeline_still_since: Option<Instant>,
}

impl ProgressWatch {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            last: None,
            reader_still_since: None,
            pipeline_still_since: None,
        }
    }

    pub fn observe(&mut self, now: Instant, sample: Sample) -> Verdict {
        let Some(last) = self.last.replace(sample) else {
            return Verdict::default();
        };
        let reader_moved = sample.reader_drains != last.reader_drains;
        // The pipeline is stuck when records wait and none gets handled.
        let pipeline_moved = sample.events != last.events || sample.queued == 0;
        let still = |moved: bool, since: &mut Option<Instant>| {
            if moved {
                *since = None;
                false
            } else {
                now.duration_since(*since.get_or_insert(now)) >= self.window
            }
        };
        Verdict {
            reader: still(reader_moved, &mut self.reader_still_since),
            pipeline: still(pipeline_moved, &mut self.pipeline_still_since),
        }
    }
}

fn fault_injected(task: &str) -> bool {
    cfg!(debug_assertions)
        && std::env::var(FAULT_INJECTION_ENV)
            .map(|v| v.split(',').any(|t| t == task))
            .unwrap_or(false)
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    let text = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic without a message".to_owned());
    format!("panicked: {text}")
}

#[cfg(test)]
#[path = "supervise_tests.rs"]
mod tests;
