//! The agent's own state: attached probes, readiness, supervised tasks.

use super::*;

impl Metrics {
    /// Whether the eBPF program `probe` (its program name) is attached.
    pub fn set_probe_attached(&self, probe: &str, attached: bool) {
        self.probe_attached
            .with_label_values(&[probe])
            .set(i64::from(attached));
    }

    /// Mirrors `/readyz` into `aiwatch_ready`; the HTTP listener sets it on
    /// every scrape.
    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// A supervised task started: its failure series exists from now on, at 0.
    pub fn task_started(&self, task: &str) {
        self.task_failures.with_label_values(&[task]);
    }

    /// A supervised task died (`observe::supervise`).
    pub fn task_failed(&self, task: &str) {
        self.task_failures.with_label_values(&[task]).inc();
    }
}
