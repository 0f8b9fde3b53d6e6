//! What was done about each alert of a rule with an action: the kernel's
//! own report on the event, a `kill(2)` from user space where the kernel
//! could not act, or a would-kill/would-deny report.

use super::{Enforcer, Placed, ACCELERATOR_RULE, RATE_LIMIT_RULE};
use crate::{
    alert::{Action, Alert, Enforcement, EnforcementHook, EnforcementMode, Outcome, Severity},
    event::{Event, KernelAction, Kind, WallTime},
};

impl Enforcer {
    /// Fills in the alert's `enforcement` and `action_taken`, killing from
    /// user space where the kernel could not. `same_process(pid,
    /// start_time)` guards a user-space kill against a reused pid. Returns
    /// the critical alert to raise when the kernel's kill budget was spent.
    pub fn carry_out(
        &self,
        alert: &mut Alert,
        same_process: impl Fn(u32, Option<WallTime>) -> bool,
    ) -> Option<Alert> {
        // Plain alerts, and alerts of what the kernel did outside any rule
        // (`kernel_alert`), which carry their enforcement already.
        if alert.action == Action::Alert || alert.enforcement.is_some() {
            return None;
        }
        let (file_mode, placed) = self
            .rules
            .get(&alert.rule)
            .copied()
            .unwrap_or((None, Placed::UserSpace));
        let mode = self.mode_of(file_mode);
        let refused = alert.event.kernel_action == Some(KernelAction::Refused);
        let lsm_open = placed == Placed::KernelOpen && self.hooks.lsm_open;
        let hook = match placed {
            Placed::KernelExec if refused => EnforcementHook::BpfLsmBprmCheckSecurity,
            Placed::KernelExec => EnforcementHook::SchedProcessExec,
            Placed::KernelOpen if lsm_open => EnforcementHook::BpfLsmFileOpen,
            Placed::KernelOpen => EnforcementHook::SysExitOpen,
            Placed::KernelEgress if alert.event.kind == Kind::UdpSend => {
                EnforcementHook::CgroupSendmsg
            }
            Placed::KernelEgress => EnforcementHook::CgroupConnect,
            _ => EnforcementHook::UserSpace,
        };
        let (outcome, taken, extra) = match (alert.action, alert.event.kernel_action) {
            (Action::Kill, Some(KernelAction::Killed)) => (Outcome::Killed, true, None),
            // The LSM refused the open; the budget spared the opener.
            (Action::Kill, Some(KernelAction::KillRateLimited)) if lsm_open => {
                (Outcome::Denied, true, Some(budget_spent(alert)))
            }
            // The LSM refused, and the kill did not go out.
            (_, Some(KernelAction::Refused)) => (Outcome::Denied, true, None),
            (Action::Kill, Some(KernelAction::KillRateLimited)) => {
                (Outcome::WouldKill, false, Some(budget_spent(alert)))
            }
            (Action::Kill, None)
                if mode == EnforcementMode::Enforce
                    && !matches!(placed, Placed::KernelExec | Placed::KernelOpen) =>
            {
                let process = &alert.event.process;
                let killed = same_process(process.pid, process.start_time) && kill(process.pid);
                (
                    if killed {
                        Outcome::Killed
                    } else {
                        Outcome::WouldKill
                    },
                    killed,
                    None,
                )
            }
            // Audit mode, the switch off, or a kernel rule the kernel's
            // rails spared (the agent, pid 1, never-touch).
            (Action::Kill, _) => (Outcome::WouldKill, false, None),
            (Action::Deny, Some(KernelAction::Denied)) => (Outcome::Denied, true, None),
            // A deny rule the kernel carries out as a kill at exec.
            (Action::Deny, Some(KernelAction::Killed)) => (Outcome::Killed, true, None),
            (Action::Deny, Some(KernelAction::KillRateLimited)) => {
                (Outcome::WouldDeny, false, Some(budget_spent(alert)))
            }
            // A UDP send is reported at syscall entry, before
            // `cgroup/sendmsg*` decides on the same map: with the scope
            // enforced the kernel refuses it.
            (Action::Deny, None)
                if placed == Placed::KernelEgress
                    && mode == EnforcementMode::Enforce
                    && alert.event.kind == Kind::UdpSend =>
            {
                (Outcome::Denied, true, None)
            }
            // Audit mode, the switch off, or a connect made before the
            // process's scope reached the kernel.
            _ => (Outcome::WouldDeny, false, None),
        };
        alert.action_taken = taken;
        alert.enforcement = Some(Enforcement { outcome, hook });
        extra
    }
}

impl Enforcer {
    /// The alert for an event the kernel enforced on by itself, outside any
    /// rule: an accelerator open outside the accelerator allowlist, refused
    /// or (audit mode) let through.
    pub fn kernel_alert(&self, event: &Event) -> Option<Alert> {
        if event.kind != Kind::Open {
            return None;
        }
        let (outcome, taken) = match event.kernel_action? {
            KernelAction::Denied => (Outcome::Denied, true),
            KernelAction::WouldDeny => (Outcome::WouldDeny, false),
            _ => return None,
        };
        let process = &event.process;
        let path = event.file.as_ref().map_or("", |file| file.path.as_str());
        Some(Alert {
            time: event.time,
            rule: ACCELERATOR_RULE.into(),
            severity: Severity::High,
            summary: format!(
                "{} (pid {}) {} accelerator device {path}: it is not in a declared workload nor an allowed executable",
                process.exe,
                process.pid,
                if taken { "was refused" } else { "opened (audit mode)" }
            ),
            tags: vec!["enforcement".into(), "accelerator".into()],
            action: Action::Deny,
            action_taken: taken,
            enforcement: Some(Enforcement {
                outcome,
                hook: EnforcementHook::CgroupDevice,
            }),
            workload: event.workload.clone(),
            event: event.clone(),
            steps: Vec::new(),
        })
    }
}

/// Sends SIGKILL from user space; never to the agent or pid 1.
pub(super) fn kill(pid: u32) -> bool {
    if pid <= 1 || pid == std::process::id() {
        return false;
    }
    // SAFETY: kill(2) with a plain pid and signal.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) == 0 }
}

fn budget_spent(alert: &Alert) -> Alert {
    let process = &alert.event.process;
    Alert {
        rule: RATE_LIMIT_RULE.into(),
        severity: Severity::Critical,
        summary: format!(
            "Kill budget spent in cgroup {}: {} (pid {}) matched {} but was left running; the kernel stops killing there until the window ends",
            process.cgroup_id, process.exe, process.pid, alert.rule
        ),
        tags: vec!["enforcement".into()],
        action: Action::Alert,
        action_taken: true,
        enforcement: None,
        steps: Vec::new(),
        ..alert.clone()
    }
}
