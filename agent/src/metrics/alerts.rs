//! Alerts, enforcement actions and policy loads.

use super::*;

/// The alert, enforcement and policy metric families.
pub(super) struct AlertMetrics {
    alerts: IntCounterVec,
    /// Per-workload alert series, which the workload part creates and drops
    /// with the workload's other series.
    pub(super) workload_alerts: IntCounterVec,
    enforcement_actions: IntCounterVec,
    enforcement_rules: IntGaugeVec,
    enforcement_active: IntGauge,
    enforcement_mode: IntGaugeVec,
    enforcement_fallback_rules: IntGauge,
    enforcement_name_lookups: IntCounterVec,
    enforcement_name_addresses: IntGauge,
    rules_loaded: IntGauge,
    policy_reloads: IntCounterVec,
    policy_last_reload_success: Gauge,
    policy_last_reload_successful: IntGauge,
}

impl AlertMetrics {
    pub(super) fn register(reg: &mut Registrar<'_>) -> Result<Self, MetricsError> {
        let alerts = reg.counter_vec(
            "aiwatch_alerts_total",
            "Alerts raised, by rule, severity, workload kind and action.",
            &["rule", "severity", "workload_kind", "action"],
        )?;
        // One series per severity from start-up, so `rate()` and `absent()`
        // see a quiet node: rule "" (no rule), no workload, plain alert.
        // Only severities: every rule x workload kind x action would be noise.
        for severity in Severity::ALL {
            alerts.with_label_values(&["", severity.as_str(), NO_WORKLOAD_KIND, "alert"]);
        }
        let workload_alerts = reg.counter_vec(
            "aiwatch_workload_alerts_total",
            "Alerts raised against an AI workload, by workload and severity.",
            &["workload", "kind", "severity"],
        )?;

        let enforcement_actions = reg.counter_vec(
            "aiwatch_enforcement_actions_total",
            "Kills and denials carried out (killed, denied) or only reported (would-kill, would-deny), by rule.",
            &["outcome", "rule"],
        )?;
        let enforcement_rules = reg.gauge_by(
            "aiwatch_enforcement_rules",
            "Rules with a kill or deny action, by where it is carried out (kernel, user_space, not_enforced).",
            "placement",
            ["kernel", "user_space", "not_enforced"],
        )?;
        let enforcement_mode = reg.gauge_vec(
            "aiwatch_enforcement_mode",
            "1 where the kernel can enforce on this host, by hook (sched_process_exec, cgroup_connect, cgroup_sendmsg, cgroup_device, bpf_lsm_file_open, bpf_lsm_bprm_check_security); set at start-up.",
            &["hook"],
        )?;
        let enforcement_fallback_rules = reg.gauge(
            "aiwatch_enforcement_fallback_rules",
            "Rules whose deny the kernel cannot refuse and carries out as a kill instead (logged at each load).",
        )?;
        let enforcement_name_lookups = reg.counter_by(
            "aiwatch_enforcement_name_lookups_total",
            "The agent's own lookups of the names in egress allowlists, by outcome (ok, failed).",
            "outcome",
            ["ok", "failed"],
        )?;
        let enforcement_name_addresses = reg.gauge(
            "aiwatch_enforcement_name_addresses",
            "Addresses known for the names of egress allowlists, resolved by the agent or from verified DNS answers; the kernel allows them where the list is enforced.",
        )?;
        let enforcement_active = reg.gauge(
            "aiwatch_enforcement_active",
            "1 while enforcement is on (not switched off by config, SIGHUP or `aiwatch enforcement off`).",
        )?;

        let rules_loaded = reg.gauge("aiwatch_rules_loaded", "Rules in the active policy set.")?;
        let policy_reloads = reg.counter_by(
            "aiwatch_policy_reloads_total",
            "Policy reloads, by result (success or failure).",
            "result",
            ["success", "failure"],
        )?;
        let policy_last_reload_success = Gauge::with_opts(Opts::new(
            "aiwatch_policy_last_reload_success_timestamp_seconds",
            "Unix time of the last successful policy load or reload.",
        ))?;
        reg.collector(Box::new(policy_last_reload_success.clone()))?;
        let policy_last_reload_successful = reg.gauge(
            "aiwatch_policy_last_reload_successful",
            "1 if the last policy load or reload succeeded, 0 if it failed.",
        )?;
        Ok(AlertMetrics {
            alerts,
            workload_alerts,
            enforcement_actions,
            enforcement_rules,
            enforcement_active,
            enforcement_mode,
            enforcement_fallback_rules,
            enforcement_name_lookups,
            enforcement_name_addresses,
            rules_loaded,
            policy_reloads,
            policy_last_reload_success,
            policy_last_reload_successful,
        })
    }
}

impl Metrics {
    /// One alert written.
    pub fn alert(&self, alert: &Alert) {
        let workload_kind = alert
            .workload
            .as_ref()
            .map_or(NO_WORKLOAD_KIND, |workload| {
                kind_label(workload.kind.as_str())
            });
        let action = match (alert.action, alert.action_taken) {
            (Action::Alert, _) => "alert",
            (Action::Kill, true) => "kill",
            (Action::Kill, false) => "kill_failed",
            (Action::Deny, true) => "deny",
            (Action::Deny, false) => "deny_failed",
        };
        if let Some(enforcement) = alert.enforcement {
            self.alerts
                .enforcement_actions
                .with_label_values(&[enforcement.outcome.as_str(), alert.rule.as_str()])
                .inc();
        }
        self.alerts
            .alerts
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
        self.alerts
            .workload_alerts
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
            self.alerts
                .enforcement_rules
                .with_label_values(&[placement])
                .set(saturating_i64(count as u64));
        }
    }

    /// Whether kills and denials are carried out at all.
    pub fn set_enforcement_active(&self, active: bool) {
        self.alerts.enforcement_active.set(i64::from(active));
    }

    /// Whether the kernel can enforce at `hook` on this host.
    pub fn set_enforcement_mode(&self, hook: &str, usable: bool) {
        self.alerts
            .enforcement_mode
            .with_label_values(&[hook])
            .set(i64::from(usable));
    }

    /// Rules whose deny is carried out as a kill.
    pub fn set_enforcement_fallback_rules(&self, count: usize) {
        self.alerts
            .enforcement_fallback_rules
            .set(saturating_i64(count as u64));
    }

    /// One lookup of an allowlisted name by the agent.
    pub fn enforcement_name_lookup(&self, ok: bool) {
        self.alerts
            .enforcement_name_lookups
            .with_label_values(&[if ok { "ok" } else { "failed" }])
            .inc();
    }

    /// Addresses allowed for allowlisted names.
    pub fn set_enforcement_name_addresses(&self, count: usize) {
        self.alerts
            .enforcement_name_addresses
            .set(saturating_i64(count as u64));
    }

    // Policies.

    /// The policy set was loaded at startup with `rules` rules.
    pub fn policy_loaded(&self, rules: usize) {
        self.alerts.rules_loaded.set(saturating_i64(rules as u64));
        self.alerts
            .policy_last_reload_success
            .set(unix_now_seconds());
        self.alerts.policy_last_reload_successful.set(1);
    }

    /// A reload (SIGHUP) succeeded; `rules` is the new rule count.
    pub fn policy_reload_succeeded(&self, rules: usize) {
        self.alerts
            .policy_reloads
            .with_label_values(&["success"])
            .inc();
        self.policy_loaded(rules);
    }

    /// A reload failed; the previous policy set stays active.
    pub fn policy_reload_failed(&self) {
        self.alerts
            .policy_reloads
            .with_label_values(&["failure"])
            .inc();
        self.alerts.policy_last_reload_successful.set(0);
    }
}
