//! Alerts, enforcement actions and policy loads.

use super::*;

impl Metrics {
    /// One alert written.
    pub fn alert(&self, alert: &Alert) {
        let workload_kind = alert
            .workload
            .as_ref()
            .map_or(NO_WORKLOAD_KIND, |workload| kind_label(&workload.kind));
        let action = match (alert.action, alert.action_taken) {
            (Action::Alert, _) => "alert",
            (Action::Kill, true) => "kill",
            (Action::Kill, false) => "kill_failed",
            (Action::Deny, true) => "deny",
            (Action::Deny, false) => "deny_failed",
        };
        if let Some(enforcement) = alert.enforcement {
            self.enforcement_actions
                .with_label_values(&[enforcement.outcome.as_str(), alert.rule.as_str()])
                .inc();
        }
        self.alerts
            .with_label_values(&[
                alert.rule.as_str(),
                alert.severity.as_str(),
                workload_kind,
                action,
            ])
            .inc();
        if let Some(workload) = &alert.workload {
            self.workload_alert(workload, alert.severity);
        }
    }

    fn workload_alert(&self, workload: &WorkloadRef, severity: Severity) {
        let labels = self.admit_workload(workload);
        self.workload_alerts
            .with_label_values(&[labels.workload.as_str(), labels.kind, severity.as_str()])
            .inc();
    }

    // Enforcement.

    /// How many rules with an action each placement holds.
    pub fn set_enforcement_rules(&self, kernel: usize, user_space: usize, not_enforced: usize) {
        for (placement, count) in [
            ("kernel", kernel),
            ("user_space", user_space),
            ("not_enforced", not_enforced),
        ] {
            self.enforcement_rules
                .with_label_values(&[placement])
                .set(saturating_i64(count as u64));
        }
    }

    /// Whether kills and denials are carried out at all.
    pub fn set_enforcement_active(&self, active: bool) {
        self.enforcement_active.set(i64::from(active));
    }

    /// Whether the kernel can enforce at `hook` on this host.
    pub fn set_enforcement_mode(&self, hook: &str, usable: bool) {
        self.enforcement_mode
            .with_label_values(&[hook])
            .set(i64::from(usable));
    }

    /// Rules whose deny is carried out as a kill.
    pub fn set_enforcement_fallback_rules(&self, count: usize) {
        self.enforcement_fallback_rules
            .set(saturating_i64(count as u64));
    }

    // Policies.

    /// The policy set was loaded at startup with `rules` rules.
    pub fn policy_loaded(&self, rules: usize) {
        self.rules_loaded.set(saturating_i64(rules as u64));
        self.policy_last_reload_success.set(unix_now_seconds());
        self.policy_last_reload_successful.set(1);
    }

    /// A reload (SIGHUP) succeeded; `rules` is the new rule count.
    pub fn policy_reload_succeeded(&self, rules: usize) {
        self.policy_reloads.with_label_values(&["success"]).inc();
        self.policy_loaded(rules);
    }

    /// A reload failed; the previous policy set stays active.
    pub fn policy_reload_failed(&self) {
        self.policy_reloads.with_label_values(&["failure"]).inc();
        self.policy_last_reload_successful.set(0);
    }
}
