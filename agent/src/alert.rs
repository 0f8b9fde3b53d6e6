//! Alerts: what rules and anomaly detectors raise, and what alert sinks write.
//!
//! One JSON object per line (`docs/policy.md` documents the fields).

use serde::{Deserialize, Serialize};

use crate::event::{Event, WallTime, WorkloadRef};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];
}

impl std::str::FromStr for Severity {
    type Err = String;

    fn from_str(name: &str) -> Result<Severity, String> {
        Severity::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .ok_or_else(|| {
                format!("{name:?} is not a severity: info, low, medium, high or critical")
            })
    }
}

/// What a rule asks for besides the alert. Policy files may write `audit`
/// for `alert`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    #[serde(alias = "audit")]
    Alert,
    /// Kill the process (in the kernel where the rule compiles to a map).
    Kill,
    /// Refuse the operation; only the kernel can, before it happens.
    Deny,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Alert => "alert",
            Action::Kill => "kill",
            Action::Deny => "deny",
        }
    }
}

/// Whether a rule's kill or deny is carried out (`enforce`) or only
/// reported as "would-kill"/"would-deny" (`audit`, the default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnforcementMode {
    #[default]
    Audit,
    Enforce,
}

impl EnforcementMode {
    pub fn as_str(self) -> &'static str {
        match self {
            EnforcementMode::Audit => "audit",
            EnforcementMode::Enforce => "enforce",
        }
    }
}

/// What became of a rule's kill or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Killed,
    Denied,
    WouldKill,
    WouldDeny,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Killed => "killed",
            Outcome::Denied => "denied",
            Outcome::WouldKill => "would-kill",
            Outcome::WouldDeny => "would-deny",
        }
    }
}

/// Where the action was (or would have been) taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnforcementHook {
    /// `bpf_send_signal(SIGKILL)` at `sched:sched_process_exec`, before the
    /// new image runs an instruction.
    SchedProcessExec,
    /// `kill(2)` from the agent, after the event crossed the ring buffer.
    UserSpace,
    /// EPERM from `cgroup/connect4`/`connect6`: no packet was sent.
    CgroupConnect,
    /// EPERM from `cgroup/sendmsg4`/`sendmsg6` (UDP): no datagram was sent.
    CgroupSendmsg,
    /// EPERM from `cgroup/dev`: the device was not opened.
    CgroupDevice,
    /// SIGKILL at the exit of `open`/`openat`/`openat2`: the process never
    /// returned to user space holding the descriptor.
    SysExitOpen,
    /// EPERM from the BPF LSM's `file_open`: no descriptor was made (and a
    /// `kill` rule's opener was also killed there).
    BpfLsmFileOpen,
    /// EPERM from the BPF LSM's `bprm_check_security`: the exec failed and
    /// the caller kept its image.
    BpfLsmBprmCheckSecurity,
}

impl EnforcementHook {
    pub fn as_str(self) -> &'static str {
        match self {
            EnforcementHook::SchedProcessExec => "sched_process_exec",
            EnforcementHook::UserSpace => "user_space",
            EnforcementHook::CgroupConnect => "cgroup_connect",
            EnforcementHook::CgroupSendmsg => "cgroup_sendmsg",
            EnforcementHook::CgroupDevice => "cgroup_device",
            EnforcementHook::SysExitOpen => "sys_exit_open",
            EnforcementHook::BpfLsmFileOpen => "bpf_lsm_file_open",
            EnforcementHook::BpfLsmBprmCheckSecurity => "bpf_lsm_bprm_check_security",
        }
    }
}

/// The alert field `enforcement`: set on every alert of a rule whose action
/// is `kill` or `deny`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enforcement {
    pub outcome: Outcome,
    pub hook: EnforcementHook,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// RFC 3339 time of the triggering (last) event.
    #[serde(default, with = "crate::event::time_or_empty")]
    pub time: Option<WallTime>,
    /// Rule id, or `anomaly.<detector>` for anomaly alerts.
    pub rule: String,
    pub severity: Severity,
    /// One human sentence naming the process and the object.
    pub summary: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub action: Action,
    /// Whether the action was carried out (always true for `alert`).
    pub action_taken: bool,
    /// For `kill` and `deny`: what was done, or would have been, and where.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<Enforcement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadRef>,
    /// The triggering event (the last step for sequences).
    pub event: Event,
    /// For sequences: the events of each step, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Event>,
}

impl Alert {
    /// An estimate of the bytes this alert holds, its events included (the
    /// sinks' queues are bounded by it).
    pub fn held_bytes(&self) -> usize {
        std::mem::size_of::<Alert>()
            + self.summary.len()
            + crate::event::texts(&self.tags)
            + self.event.held_bytes()
            + self.steps.iter().map(Event::held_bytes).sum::<usize>()
    }
}

#[cfg(test)]
impl Alert {
    /// A plain alert of `rule` at `severity`, for the sinks' tests.
    pub fn sample(rule: &str, severity: Severity) -> Alert {
        Alert {
            time: WallTime::parse("2026-01-01T00:00:00Z").ok(),
            rule: rule.into(),
            severity,
            summary: "s".into(),
            tags: vec![],
            action: Action::Alert,
            action_taken: true,
            enforcement: None,
            workload: None,
            event: Event::default(),
            steps: vec![],
        }
    }
}
