//! Detection on an attributed event: the policy rules, then the anomaly
//! profiles. Both are optional (`--no-rules` style runs and `anomaly.enabled:
//! false`), and both keep their own state; this only runs them in order.

use std::path::PathBuf;

use crate::{
    alert::Alert,
    anomaly::{AnomalyConfig, AnomalyEngine, AnomalyError},
    event::Event,
    metrics::{EvictionTable, Metrics, ProfileState},
    policy::{PolicyEngine, PolicySet},
};

pub struct Detectors {
    policy: Option<PolicyEngine>,
    anomaly: Option<AnomalyEngine>,
}

impl Detectors {
    /// Rules from `policies`, and profiles when anomaly detection is on
    /// (persisted under `state_dir`).
    pub fn new(
        policies: Option<std::sync::Arc<PolicySet>>,
        anomaly: AnomalyConfig,
        state_dir: Option<PathBuf>,
    ) -> Result<Detectors, AnomalyError> {
        let anomaly = match anomaly.enabled {
            true => Some(AnomalyEngine::new(anomaly, state_dir)?),
            false => None,
        };
        Ok(Detectors {
            policy: policies.map(PolicyEngine::new),
            anomaly,
        })
    }

    /// Runs the detectors on an attributed event.
    pub fn detect(&mut self, event: &Event) -> Vec<Alert> {
        let mut alerts = match &mut self.policy {
            Some(policy) => policy.evaluate(event),
            None => Vec::new(),
        };
        if let Some(anomaly) = &mut self.anomaly {
            alerts.extend(anomaly.observe(event));
        }
        alerts
    }

    /// Closes time windows with no events in them (rates of idle workloads).
    pub fn tick(&mut self, ktime_ns: u64) -> Vec<Alert> {
        match &mut self.anomaly {
            Some(anomaly) => anomaly.tick(ktime_ns),
            None => Vec::new(),
        }
    }

    /// Swaps in a reloaded rule set.
    pub fn swap_policies(&mut self, set: std::sync::Arc<PolicySet>) {
        if let Some(engine) = &mut self.policy {
            engine.swap(set);
        }
    }

    /// Exports the rule engine's evictions.
    pub fn report_rules(&self, metrics: &Metrics) {
        if let Some(policy) = &self.policy {
            let stats = policy.stats();
            metrics
                .observe_evictions_total(EvictionTable::ThrottleWindow, stats.throttle_evictions);
            metrics.observe_evictions_total(EvictionTable::Sequence, stats.sequence_evictions);
        }
    }

    /// Exports profile states, and saves the profiles when asked.
    pub fn report_profiles(&mut self, metrics: &Metrics, save: bool) {
        let Some(anomaly) = &mut self.anomaly else {
            return;
        };
        let states = anomaly.profile_states();
        for state in ProfileState::ALL {
            let n = states
                .iter()
                .find(|(s, _)| *s == state.as_str())
                .map(|(_, n)| n)
                .unwrap_or(0);
            metrics.set_anomaly_profiles(state, n as u64);
        }
        let stats = anomaly.stats();
        metrics.observe_evictions_total(EvictionTable::AnomalyProfile, stats.evicted_profiles);
        metrics.observe_anomaly_profile_errors_total("corrupt", stats.corrupt_profiles);
        metrics.observe_anomaly_profile_errors_total("save", stats.save_errors);
        if save {
            if let Err(err) = anomaly.save() {
                log::warn!("cannot save anomaly profiles: {err}");
            }
        }
    }
}
