//! The agent's own state: attached probes, readiness, supervised tasks.

use super::*;

/// The agent's own metric families, and its build information.
pub(super) struct AgentMetrics {
    probe_attached: IntGaugeVec,
    ready: IntGauge,
    task_failures: IntCounterVec,
}

impl AgentMetrics {
    /// Registers them; `kernel_release` is read from
    /// `/proc/sys/kernel/osrelease` when `None`.
    pub(super) fn register(
        reg: &mut Registrar<'_>,
        kernel_release: Option<String>,
    ) -> Result<Self, MetricsError> {
        let build_info = reg.gauge_vec(
            "aiwatch_build_info",
            "Always 1; labels carry the aiwatch version and the kernel release.",
            &["version", "kernel"],
        )?;
        let kernel = kernel_release.unwrap_or_else(read_kernel_release);
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), kernel.as_str()])
            .set(1);
        let probe_attached = reg.gauge_vec(
            "aiwatch_probe_attached",
            "1 if the eBPF program attached at start-up, 0 if it failed to (set once).",
            &["probe"],
        )?;
        let ready = reg.gauge(
            "aiwatch_ready",
            "1 when probes are attached and the pipeline is flowing (as /readyz).",
        )?;

        let task_failures = reg.counter_vec(
            "aiwatch_task_failures_total",
            "Agent tasks that panicked, failed or stopped on their own, by task.",
            &["task"],
        )?;
        Ok(AgentMetrics {
            probe_attached,
            ready,
            task_failures,
        })
    }
}

fn read_kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|release| release.trim().to_string())
        .unwrap_or_else(|_| UNKNOWN_KIND.to_string())
}

impl Metrics {
    /// Whether the eBPF program `probe` (its program name) is attached.
    pub fn set_probe_attached(&self, probe: &str, attached: bool) {
        self.agent
            .probe_attached
            .with_label_values(&[probe])
            .set(i64::from(attached));
    }

    /// Mirrors `/readyz` into `aiwatch_ready`; the HTTP listener sets it on
    /// every scrape.
    pub fn set_ready(&self, ready: bool) {
        self.agent.ready.set(i64::from(ready));
    }

    /// A supervised task started: its failure series exists from now on, at 0.
    pub fn task_started(&self, task: &str) {
        self.agent.task_failures.with_label_values(&[task]);
    }

    /// A supervised task died (`observe::supervise`).
    pub fn task_failed(&self, task: &str) {
        self.agent.task_failures.with_label_values(&[task]).inc();
    }
}
