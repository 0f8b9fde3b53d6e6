//! Enforcement: carries out the rules' `kill` and `deny` actions.
//!
//! It reads the compiled policy (`policy::kernel_plan` says which rules the
//! kernel can enforce) and writes the kernel's enforcement maps: the exec
//! deny list by device and inode, the never-touch list, the switch and the
//! kill budget. For every alert of a rule with an action it decides the
//! alert's `enforcement` field: what the kernel already did (the exec
//! record says whether it killed), a `kill(2)` from user space for rules the
//! kernel cannot decide, or a "would-kill"/"would-deny" report in audit mode
//! and when the kill switch is off.
//!
//! It does not decide what matches: the policy engine does, on the same
//! event the kernel acted on.

pub mod config;
mod hooks;
pub mod maps;
mod switch;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use aiwatch_common::{
    ExeKey, ExecAllowKey, OpenAllowKey, ACCEL_AUDIT, ACCEL_ENFORCE, ACCEL_OFF, ENFORCE_REFUSE_ONLY,
};

pub use config::{AcceleratorDeny, EnforcementConfig, PID_FILE, SWITCH_OFF_FILE};
pub use hooks::EnforcementHooks;
pub use maps::{exe_key, EnforceMapError, EnforceMaps};
pub use switch::{switch_command, SwitchCommand};

use crate::{
    alert::{Action, Alert, Enforcement, EnforcementHook, EnforcementMode, Outcome, Severity},
    event::{Event, KernelAction, Kind},
    kernel::scopes::{self, EnforcementScopes, SharedScopes},
    metrics::Metrics,
    policy::{
        kernel_plan::{self, KernelRule, Placement},
        PolicySet,
    },
};

/// The rule id of the critical alert raised when a cgroup's kill budget is
/// spent and the kernel stops killing there.
pub const RATE_LIMIT_RULE: &str = "enforcement.kill-budget-spent";

/// The rule id of the alert raised for an accelerator open outside the
/// accelerator allowlist (`enforcement.accelerators`).
pub const ACCELERATOR_RULE: &str = "enforcement.accelerator-denied";

/// Where each rule with an action is carried out, from the last policy set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placed {
    /// The exec kill at `sched_process_exec`.
    KernelExec,
    /// The egress allowlist at `cgroup/connect*` and `cgroup/sendmsg*`.
    KernelEgress,
    /// The open kill at the exit of the open family.
    KernelOpen,
    UserSpace,
    NotEnforced,
}

pub struct Enforcer {
    config: EnforcementConfig,
    switch_file: PathBuf,
    /// The switch as last applied: enabled in config and not switched off.
    active: bool,
    /// The kernel maps, when the programs are loaded (not in replay).
    maps: Option<EnforceMaps>,
    /// Rule id → its file's mode (if set) and its placement.
    rules: HashMap<String, (Option<EnforcementMode>, Placed)>,
    /// Workload name → enforcement scope, shared with the tracking of
    /// workload members (`app::kernel_side::track_workloads`).
    scopes: SharedScopes,
    /// Where the kernel can enforce on this host.
    hooks: EnforcementHooks,
}

impl Enforcer {
    pub fn new(config: EnforcementConfig, state_dir: &Path, maps: Option<EnforceMaps>) -> Enforcer {
        Enforcer {
            active: false,
            switch_file: state_dir.join(SWITCH_OFF_FILE),
            config,
            maps,
            rules: HashMap::new(),
            scopes: EnforcementScopes::shared(),
            hooks: EnforcementHooks::default(),
        }
    }

    /// Says where the kernel can enforce (start-up, before `apply`): once
    /// in the log, in `/readyz` detail (by the caller) and in
    /// `aiwatch_enforcement_mode{hook}`.
    pub fn set_hooks(&mut self, hooks: EnforcementHooks, metrics: &Metrics) {
        self.hooks = hooks;
        for (hook, usable) in hooks.list() {
            metrics.set_enforcement_mode(hook, usable);
        }
        if hooks.list().iter().take(4).all(|(_, usable)| *usable) {
            log::info!("{}", hooks.describe());
        } else {
            log::warn!(
                "{}; rules that need a missing hook report would-kill/would-deny",
                hooks.describe()
            );
        }
    }

    /// The scopes the kernel's maps are keyed by; the tracking of workload
    /// members must use the same.
    pub fn scopes(&self) -> SharedScopes {
        self.scopes.clone()
    }

    /// Whether kills and denials are carried out at all.
    pub fn active(&self) -> bool {
        self.active
    }

    fn mode_of(&self, file_mode: Option<EnforcementMode>) -> EnforcementMode {
        if self.active {
            file_mode.unwrap_or(self.config.mode)
        } else {
            EnforcementMode::Audit
        }
    }

    /// Applies a policy set and the switch: at start-up, on every reload
    /// and on SIGHUP. Rules whose action the kernel cannot carry out are
    /// named in the log, once per load.
    pub fn apply(&mut self, policies: &PolicySet, metrics: &Metrics) {
        let switched_off = self.switch_file.exists();
        self.active = self.config.enabled && !switched_off;
        metrics.set_enforcement_active(self.active);
        if !self.active {
            log::warn!(
                "enforcement is off ({}): rules with kill or deny only report would-kill/would-deny",
                if switched_off {
                    format!("{} exists; `aiwatch enforcement on` removes it", self.switch_file.display())
                } else {
                    "enforcement.enabled: false".into()
                }
            );
        }
        self.rules.clear();
        let mut exec_deny = Vec::new();
        let mut egress = Vec::new();
        let mut protected = Vec::new();
        let mut open_allow = Vec::new();
        let mut exec_allow = Vec::new();
        let mut exec_allow_scopes = Vec::new();
        let mut counts = (0, 0, 0);
        let mut fallbacks = 0;
        for (slot, placed) in kernel_plan::plan(policies).into_iter().enumerate() {
            let rule = placed.rule;
            let mode = self.mode_of(rule.enforcement);
            let placement = self.usable(placed.placement, rule.action);
            // A `deny` the LSM refuses; anything else the signal paths kill.
            let refuse_only = rule.action == Action::Deny;
            if refuse_only
                && !self.hooks.lsm_exec
                && matches!(placement, Placement::Kernel(KernelRule::ExecDeny { .. }))
            {
                // Without the LSM a deny at exec can only be a kill: the
                // exec has happened when sched_process_exec sees the image.
                fallbacks += 1;
                log::warn!(
                    "rule {} ({}): deny falls back to a kill at exec: the BPF LSM's bprm_check_security, which refuses an exec, is not attached on this host",
                    rule.id,
                    mode.as_str()
                );
            }
            let value = |slot: usize| {
                let slot = slot as u32;
                if refuse_only && self.hooks.lsm_exec {
                    slot | ENFORCE_REFUSE_ONLY
                } else {
                    slot
                }
            };
            let kind = match &placement {
                Placement::Kernel(KernelRule::ExecDeny { exes }) => {
                    if mode == EnforcementMode::Enforce {
                        for exe in exes {
                            match exe_key(Path::new(exe)) {
                                Ok(key) => exec_deny.push((key, value(slot))),
                                Err(err) => log::warn!(
                                    "rule {}: {exe} cannot be resolved ({err}); the kernel kills only its other executables until a reload finds it",
                                    rule.id
                                ),
                            }
                        }
                    }
                    counts.0 += 1;
                    Placed::KernelExec
                }
                Placement::Kernel(KernelRule::ExecAllow { workload, exes }) => {
                    if rule.action == Action::Deny {
                        fallbacks += 1;
                        log::warn!(
                            "rule {} ({}): deny of execs outside workload {workload}'s allowlist falls back to a kill at exec",
                            rule.id,
                            mode.as_str()
                        );
                    }
                    if mode == EnforcementMode::Enforce {
                        let scope = u32::from(scopes::lock(&self.scopes).scope(workload));
                        let keys =
                            resolve_all(&format!("rule {} executable", rule.id), &as_paths(exes));
                        if scope != 0 {
                            exec_allow.extend(keys.into_iter().map(|(exe, _)| ExecAllowKey {
                                scope,
                                _pad: 0,
                                exe,
                            }));
                            exec_allow_scopes.push((scope, slot as u32));
                        }
                    }
                    counts.0 += 1;
                    Placed::KernelExec
                }
                Placement::Kernel(KernelRule::OpenKill { files, allowed }) => {
                    if mode == EnforcementMode::Enforce {
                        // Only the LSM refuses a deny's opens: `usable`
                        // left such a rule here only where it is attached.
                        let value = if refuse_only {
                            slot as u32 | ENFORCE_REFUSE_ONLY
                        } else {
                            slot as u32
                        };
                        let slot = slot as u32;
                        protected.extend(
                            resolve_all(&format!("rule {} file", rule.id), &as_paths(files))
                                .into_iter()
                                .map(|(key, _)| (key, value)),
                        );
                        open_allow.extend(
                            resolve_all(
                                &format!("rule {} executable", rule.id),
                                &as_paths(allowed),
                            )
                            .into_iter()
                            .map(|(exe, _)| OpenAllowKey {
                                slot,
                                _pad: 0,
                                exe,
                            }),
                        );
                    }
                    counts.0 += 1;
                    Placed::KernelOpen
                }
                Placement::Kernel(KernelRule::EgressAllow { workload, peers }) => {
                    if mode == EnforcementMode::Enforce {
                        let scope = scopes::lock(&self.scopes).scope(workload);
                        if scope != 0 {
                            egress.push((scope, peers.clone()));
                        }
                    }
                    counts.0 += 1;
                    Placed::KernelEgress
                }
                Placement::UserSpace(why) => {
                    log::warn!(
                        "rule {} ({}): killed from user space, after the fact: {why}",
                        rule.id,
                        mode.as_str()
                    );
                    counts.1 += 1;
                    Placed::UserSpace
                }
                Placement::NotEnforced(why) => {
                    log::warn!("rule {}: deny is not enforced: {why}", rule.id);
                    counts.2 += 1;
                    Placed::NotEnforced
                }
            };
            self.rules.insert(rule.id.clone(), (rule.enforcement, kind));
        }
        metrics.set_enforcement_rules(counts.0, counts.1, counts.2);
        metrics.set_enforcement_fallback_rules(fallbacks);
        if self.config.accelerators.deny && !self.hooks.device {
            log::warn!(
                "enforcement.accelerators.deny is set, but cgroup/dev is not attached: accelerator opens are neither refused nor reported as would-deny"
            );
        }
        let never_touch = resolve_all("never_touch", &self.config.never_touch);
        let accel_allow = resolve_all(
            "accelerators.allow_executables",
            &self.config.accelerators.allow_executables,
        );
        let accel = if !self.config.accelerators.deny {
            ACCEL_OFF
        } else if self.mode_of(None) == EnforcementMode::Enforce {
            ACCEL_ENFORCE
        } else {
            ACCEL_AUDIT
        };
        if let Some(maps) = &mut self.maps {
            let result = maps
                .set_never_touch(&never_touch)
                .and_then(|()| maps.set_exec_deny(&exec_deny))
                .and_then(|()| maps.set_exec_allow(&exec_allow, &exec_allow_scopes))
                .and_then(|()| maps.set_open_kill(&protected, &open_allow))
                .and_then(|()| maps.set_egress(&egress))
                .and_then(|()| maps.set_accel_allow(&accel_allow))
                .and_then(|()| {
                    maps.set_control(
                        self.active,
                        self.config.kill_budget,
                        self.config.kill_window_secs.saturating_mul(1_000_000_000),
                        accel,
                    )
                });
            match result {
                Ok(()) => {
                    let refused = exec_deny
                        .iter()
                        .filter(|(_, value)| value & ENFORCE_REFUSE_ONLY != 0)
                        .count();
                    log::info!(
                        "kernel enforcement: {} executables killed at exec, {refused} refused in the LSM, {} never touched, {}",
                        exec_deny.len() - refused,
                        never_touch.len(),
                        if self.active { "on" } else { "off" }
                    );
                    log::info!(
                        "kernel exec allowlists: {} workload(s), {} allowed executable(s)",
                        exec_allow_scopes.len(),
                        exec_allow.len()
                    );
                    log::info!(
                        "kernel open kill: {} protected file(s), {} allowed opener(s)",
                        protected.len(),
                        open_allow.len()
                    );
                    log::info!(
                        "kernel egress enforcement: {} workload allowlist(s), {} destination(s)",
                        egress.len(),
                        egress.iter().map(|(_, peers)| peers.len()).sum::<usize>()
                    );
                    log::info!(
                        "kernel accelerator deny: {}, {} executable(s) allowed besides declared workloads",
                        match accel {
                            ACCEL_OFF => "off",
                            ACCEL_AUDIT => "audit",
                            _ => "enforce",
                        },
                        accel_allow.len()
                    );
                }
                Err(err) => log::error!("kernel enforcement maps not updated: {err}"),
            }
        }
    }

    /// Fills in the alert's `enforcement` and `action_taken`, killing from
    /// user space where the kernel could not. `same_process(pid,
    /// start_time)` guards a user-space kill against a reused pid. Returns
    /// the critical alert to raise when the kernel's kill budget was spent.
    pub fn carry_out(
        &self,
        alert: &mut Alert,
        same_process: impl Fn(u32, &str) -> bool,
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
                let killed = same_process(process.pid, &process.start_time) && kill(process.pid);
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
            time: event.time.clone(),
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

impl Enforcer {
    /// The placement the kernel of this host can honour: a kernel
    /// placement whose hook did not attach is not enforced, and says why.
    fn usable(&self, placement: Placement, action: Action) -> Placement {
        match placement {
            Placement::Kernel(KernelRule::OpenKill { .. })
                if action == Action::Deny && !self.hooks.lsm_open =>
            {
                Placement::NotEnforced(
                    "only the BPF LSM's file_open refuses an open, and it is not attached on this host (`action: kill` kills at the open's exit instead); it alerts would-deny"
                        .into(),
                )
            }
            Placement::Kernel(KernelRule::ExecDeny { .. } | KernelRule::ExecAllow { .. })
                if !self.hooks.exec =>
            {
                Placement::UserSpace("sched_process_exec is not attached on this host".into())
            }
            Placement::Kernel(KernelRule::EgressAllow { .. }) if !self.hooks.egress() => {
                Placement::NotEnforced(
                    "cgroup/connect and cgroup/sendmsg are not both attached on this host; it alerts would-deny"
                        .into(),
                )
            }
            other => other,
        }
    }
}

fn as_paths(paths: &[String]) -> Vec<PathBuf> {
    paths.iter().map(PathBuf::from).collect()
}

/// Resolves configured executables to their identities; one that cannot
/// be resolved is named in the log and left out.
fn resolve_all(key: &str, paths: &[PathBuf]) -> Vec<(ExeKey, u32)> {
    paths
        .iter()
        .filter_map(|path| match exe_key(path) {
            Ok(key) => Some((key, 0)),
            Err(err) => {
                log::warn!("{key} {}: cannot be resolved: {err}", path.display());
                None
            }
        })
        .collect()
}

/// Sends SIGKILL from user space; never to the agent or pid 1.
fn kill(pid: u32) -> bool {
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

#[cfg(test)]
mod tests;
