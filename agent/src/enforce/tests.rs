use std::sync::Arc;

use super::{outcome::kill, *};
use crate::{
    alert::{Alert, Enforcement, EnforcementHook, Outcome, Severity},
    event::{Event, KernelAction, Kind},
    metrics::MetricsConfig,
    policy::{PolicyEngine, Source},
};

fn policies(text: &str) -> PolicySet {
    PolicySet::from_sources(&[Source {
        name: Arc::from("t.yaml"),
        text: text.into(),
    }])
    .expect("valid policy")
}

const KERNEL_KILL: &str = "rules:\n  - id: k\n    severity: high\n    action: kill\n    when:\n      kind: exec\n      process.exe: /nonexistent/miner\n";

fn alert_for(set: PolicySet, event: Event) -> Alert {
    let mut engine = PolicyEngine::new(Arc::new(set));
    engine.evaluate(&event).pop().expect("the rule matches")
}

fn exec(kernel_action: Option<KernelAction>) -> Event {
    let mut event = Event {
        kind: Kind::Exec,
        kernel_action,
        ..Event::default()
    };
    event.process.pid = 0;
    event.process.exe = "/nonexistent/miner".into();
    event
}

fn enforcer(mode: EnforcementMode, set: &PolicySet) -> Enforcer {
    let state = std::env::temp_dir().join(format!("aiwatch-enforce-unit-{}", std::process::id()));
    let mut enforcer = Enforcer::new(
        EnforcementConfig {
            mode,
            ..EnforcementConfig::default()
        },
        &state,
        None,
    );
    let metrics = Metrics::new(MetricsConfig::default()).expect("metrics");
    enforcer.apply(set, &metrics);
    enforcer
}

#[test]
fn audit_mode_reports_would_kill_at_the_kernel_hook() {
    let set = policies(KERNEL_KILL);
    let enforcer = enforcer(EnforcementMode::Audit, &set);
    let mut alert = alert_for(set, exec(None));
    assert!(enforcer.carry_out(&mut alert, |_, _| true).is_none());
    assert!(!alert.action_taken);
    assert_eq!(
        alert.enforcement,
        Some(Enforcement {
            outcome: Outcome::WouldKill,
            hook: EnforcementHook::SchedProcessExec
        })
    );
}

#[test]
fn a_kernel_kill_is_reported_as_killed() {
    let set = policies(KERNEL_KILL);
    let enforcer = enforcer(EnforcementMode::Enforce, &set);
    let mut alert = alert_for(set, exec(Some(KernelAction::Killed)));
    enforcer.carry_out(&mut alert, |_, _| true);
    assert!(alert.action_taken);
    assert_eq!(alert.enforcement.map(|e| e.outcome), Some(Outcome::Killed));
    let json = serde_json::to_value(&alert).expect("serialise");
    assert_eq!(json["enforcement"]["outcome"], "killed");
    assert_eq!(json["enforcement"]["hook"], "sched_process_exec");
}

#[test]
fn a_spent_kill_budget_raises_a_critical_alert() {
    let set = policies(KERNEL_KILL);
    let enforcer = enforcer(EnforcementMode::Enforce, &set);
    let mut alert = alert_for(set, exec(Some(KernelAction::KillRateLimited)));
    let extra = enforcer
        .carry_out(&mut alert, |_, _| true)
        .expect("critical alert");
    assert_eq!(extra.rule, RATE_LIMIT_RULE);
    assert_eq!(extra.severity, Severity::Critical);
    assert_eq!(
        alert.enforcement.map(|e| e.outcome),
        Some(Outcome::WouldKill)
    );
}

#[test]
fn a_file_in_audit_mode_overrides_the_global_enforce() {
    let text = format!("enforcement: audit\n{KERNEL_KILL}");
    let set = policies(&text);
    let enforcer = enforcer(EnforcementMode::Enforce, &set);
    let mut alert = alert_for(set, exec(None));
    enforcer.carry_out(&mut alert, |_, _| true);
    assert_eq!(
        alert.enforcement.map(|e| e.outcome),
        Some(Outcome::WouldKill)
    );
}

#[test]
fn user_space_kills_never_reach_pid_1_or_the_agent() {
    assert!(!kill(1));
    assert!(!kill(0));
    assert!(!kill(std::process::id()));
}

#[test]
fn a_deny_without_a_kernel_hook_is_would_deny() {
    let set = policies(
        "enforcement: enforce\nrules:\n  - id: d\n    severity: high\n    action: deny\n    when:\n      kind: exec\n",
    );
    let enforcer = enforcer(EnforcementMode::Enforce, &set);
    let mut alert = alert_for(set, exec(None));
    enforcer.carry_out(&mut alert, |_, _| true);
    assert_eq!(
        alert.enforcement.map(|e| e.outcome),
        Some(Outcome::WouldDeny)
    );
    assert!(!alert.action_taken);
}

#[test]
fn a_deny_of_an_exec_falls_back_to_a_kernel_kill_and_says_so() {
    let set = policies(
        "enforcement: enforce\nrules:\n  - id: d\n    severity: high\n    action: deny\n    when:\n      kind: exec\n      process.exe: /nonexistent/miner\n",
    );
    let metrics = Metrics::new(MetricsConfig::default()).expect("metrics");
    let state =
        std::env::temp_dir().join(format!("aiwatch-enforce-unit-fb-{}", std::process::id()));
    let mut enforcer = Enforcer::new(EnforcementConfig::default(), &state, None);
    enforcer.apply(&set, &metrics);
    let text = metrics.encode_text().expect("encode");
    assert!(
        text.contains("aiwatch_enforcement_fallback_rules 1"),
        "{text}"
    );
    let mut alert = alert_for(set, exec(Some(KernelAction::Killed)));
    enforcer.carry_out(&mut alert, |_, _| true);
    assert!(alert.action_taken);
    assert_eq!(
        alert.enforcement,
        Some(Enforcement {
            outcome: Outcome::Killed,
            hook: EnforcementHook::SchedProcessExec
        })
    );
}

#[test]
fn a_kernel_placement_without_its_hook_is_not_enforced() {
    let set = policies(
        "enforcement: enforce\nrules:\n  - id: e\n    severity: high\n    action: deny\n    when:\n      kind: connect\n      workload.name: m\n      not:\n        net.dst.port: 443\n",
    );
    let metrics = Metrics::new(MetricsConfig::default()).expect("metrics");
    let state =
        std::env::temp_dir().join(format!("aiwatch-enforce-unit-hk-{}", std::process::id()));
    let mut enforcer = Enforcer::new(EnforcementConfig::default(), &state, None);
    enforcer.set_hooks(
        EnforcementHooks {
            sendmsg: false,
            ..EnforcementHooks::default()
        },
        &metrics,
    );
    enforcer.apply(&set, &metrics);
    let text = metrics.encode_text().expect("encode");
    assert!(
        text.contains("aiwatch_enforcement_rules{placement=\"not_enforced\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("aiwatch_enforcement_mode{hook=\"cgroup_sendmsg\"} 0"),
        "{text}"
    );
    let mut event = Event {
        kind: Kind::Connect,
        net: Some(crate::event::NetInfo {
            dst: Some(crate::event::Endpoint {
                ip: "203.0.113.7".parse().expect("an address"),
                port: 80,
            }),
            ..Default::default()
        }),
        ..Event::default()
    };
    event.workload = Some(crate::event::WorkloadRef {
        name: "m".into(),
        ..Default::default()
    });
    let mut alert = alert_for(set, event);
    enforcer.carry_out(&mut alert, |_, _| true);
    assert_eq!(
        alert.enforcement.map(|e| e.outcome),
        Some(Outcome::WouldDeny)
    );
}

const OPEN_DENY: &str = "enforcement: enforce\nrules:\n  - id: o\n    severity: high\n    action: deny\n    when:\n      kind: open\n      file.path: /nonexistent/protected.safetensors\n";

fn open(kernel_action: Option<KernelAction>) -> Event {
    Event {
        kind: Kind::Open,
        kernel_action,
        file: Some(crate::event::FileInfo {
            path: "/nonexistent/protected.safetensors".into(),
            ..Default::default()
        }),
        ..Event::default()
    }
}

/// An enforcer on a host whose BPF LSM programs attached (`lsm`) or not.
fn enforcer_with_lsm(set: &PolicySet, lsm: bool, metrics: &Metrics) -> Enforcer {
    let state = std::env::temp_dir().join(format!(
        "aiwatch-enforce-unit-lsm-{lsm}-{}",
        std::process::id()
    ));
    let mut enforcer = Enforcer::new(EnforcementConfig::default(), &state, None);
    enforcer.set_hooks(
        EnforcementHooks {
            lsm_open: lsm,
            lsm_exec: lsm,
            ..EnforcementHooks::default()
        },
        metrics,
    );
    enforcer.apply(set, metrics);
    enforcer
}

#[test]
fn a_deny_of_an_open_is_refused_only_where_the_lsm_is_attached() {
    let metrics = Metrics::new(MetricsConfig::default()).expect("metrics");
    let set = policies(OPEN_DENY);
    let without = enforcer_with_lsm(&set, false, &metrics);
    let text = metrics.encode_text().expect("encode");
    assert!(
        text.contains("aiwatch_enforcement_rules{placement=\"not_enforced\"} 1"),
        "{text}"
    );
    let mut alert = alert_for(policies(OPEN_DENY), open(None));
    without.carry_out(&mut alert, |_, _| true);
    assert_eq!(
        alert.enforcement.map(|e| e.outcome),
        Some(Outcome::WouldDeny)
    );
    assert!(!alert.action_taken);

    let metrics = Metrics::new(MetricsConfig::default()).expect("metrics");
    let with = enforcer_with_lsm(&set, true, &metrics);
    let text = metrics.encode_text().expect("encode");
    assert!(
        text.contains("aiwatch_enforcement_rules{placement=\"kernel\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("aiwatch_enforcement_mode{hook=\"bpf_lsm_file_open\"} 1"),
        "{text}"
    );
    let mut alert = alert_for(policies(OPEN_DENY), open(Some(KernelAction::Refused)));
    with.carry_out(&mut alert, |_, _| true);
    assert!(alert.action_taken);
    assert_eq!(
        alert.enforcement,
        Some(Enforcement {
            outcome: Outcome::Denied,
            hook: EnforcementHook::BpfLsmFileOpen
        })
    );
    // The kernel's own accelerator alert is for cgroup/dev's verdicts only.
    assert!(with.kernel_alert(&alert.event).is_none());
}

#[test]
fn a_deny_of_an_exec_is_refused_in_the_lsm_and_is_no_fallback() {
    let text = "enforcement: enforce\nrules:\n  - id: d\n    severity: high\n    action: deny\n    when:\n      kind: exec\n      process.exe: /nonexistent/miner\n";
    let metrics = Metrics::new(MetricsConfig::default()).expect("metrics");
    let enforcer = enforcer_with_lsm(&policies(text), true, &metrics);
    let encoded = metrics.encode_text().expect("encode");
    assert!(
        encoded.contains("aiwatch_enforcement_fallback_rules 0"),
        "{encoded}"
    );
    let mut alert = alert_for(policies(text), exec(Some(KernelAction::Refused)));
    enforcer.carry_out(&mut alert, |_, _| true);
    assert!(alert.action_taken);
    let json = serde_json::to_value(&alert).expect("serialise");
    assert_eq!(json["enforcement"]["outcome"], "denied");
    assert_eq!(json["enforcement"]["hook"], "bpf_lsm_bprm_check_security");
    assert_eq!(json["event"]["kernel_action"], "refused");
}

#[test]
fn a_kill_of_an_open_with_the_lsm_names_file_open() {
    let text = "enforcement: enforce\nrules:\n  - id: o\n    severity: high\n    action: kill\n    when:\n      kind: open\n      file.path: /nonexistent/protected.safetensors\n";
    let metrics = Metrics::new(MetricsConfig::default()).expect("metrics");
    let enforcer = enforcer_with_lsm(&policies(text), true, &metrics);
    let mut alert = alert_for(policies(text), open(Some(KernelAction::Killed)));
    enforcer.carry_out(&mut alert, |_, _| true);
    assert_eq!(
        alert.enforcement,
        Some(Enforcement {
            outcome: Outcome::Killed,
            hook: EnforcementHook::BpfLsmFileOpen
        })
    );
}
