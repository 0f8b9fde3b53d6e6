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
pub mod egress_names;
mod hooks;
pub mod maps;
mod outcome;
mod switch;

use std::{
    collections::HashMap,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Instant,
};

use tokio::sync::{mpsc, watch};

use aiwatch_common::{
    ExeKey, ExecAllowKey, OpenAllowKey, ACCEL_AUDIT, ACCEL_ENFORCE, ACCEL_OFF, ENFORCE_REFUSE_ONLY,
};

pub use config::{AcceleratorDeny, EnforcementConfig, PID_FILE, SWITCH_OFF_FILE};
pub use egress_names::Resolved;
use egress_names::{EgressNames, ResolverError};
pub use hooks::EnforcementHooks;
pub use maps::{exe_key, EnforceMapError, EnforceMaps};
pub use switch::{switch_command, SwitchCommand};

use crate::{
    alert::{Action, EnforcementMode},
    kernel::scopes::{self, EnforcementScopes, SharedScopes},
    metrics::Metrics,
    policy::{
        kernel_plan::{self, EgressPeer, KernelRule, Placement},
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
    /// The enforced egress allowlists' own peers, by scope, as last applied.
    egress_lists: Vec<(u16, Vec<EgressPeer>)>,
    /// The names of the enforced egress allowlists and their addresses.
    egress_names: EgressNames,
    /// Tells the agent's resolver which names to resolve.
    resolver_names: Option<watch::Sender<Vec<String>>>,
    /// What the resolver finds, until the pipeline takes it.
    lookups: Option<mpsc::Receiver<Resolved>>,
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
            egress_lists: Vec::new(),
            egress_names: EgressNames::default(),
            resolver_names: None,
            lookups: None,
        }
    }

    /// Starts the agent's resolver of allowlisted names (before `apply`);
    /// the caller supervises the task.
    pub fn start_name_resolver(&mut self) -> Result<tokio::task::JoinHandle<()>, ResolverError> {
        let resolver = egress_names::spawn_resolver(&self.config.egress_name_servers)?;
        self.resolver_names = Some(resolver.names);
        self.lookups = Some(resolver.found);
        Ok(resolver.task)
    }

    /// What the resolver finds, for the pipeline to hand back to
    /// [`Enforcer::learn_name`].
    pub fn take_lookups(&mut self) -> Option<mpsc::Receiver<Resolved>> {
        self.lookups.take()
    }

    /// Addresses given for an allowlisted name, by the agent's resolver or
    /// a verified DNS answer: the kernel allows them from now on. `name` is
    /// compared as `kernel_plan::dns_name` spells it.
    pub fn learn_name(&mut self, name: &str, addresses: &[IpAddr], metrics: &Metrics) {
        let mut new = self.egress_names.learn(name, addresses, Instant::now());
        // Only enforced lists reach the kernel (audit mode resolves too).
        new.retain(|(scope, _)| self.egress_lists.iter().any(|(s, _)| s == scope));
        metrics.set_enforcement_name_addresses(self.egress_names.address_count());
        if new.is_empty() {
            return;
        }
        if let Some(maps) = &mut self.maps {
            if let Err(err) = maps.add_egress(&new) {
                log::error!("egress allowlist: the addresses of {name} were not added: {err}");
            }
        }
        log::debug!("egress allowlist: {} new peer(s) for {name}", new.len());
    }

    /// The agent's resolver's answer for an allowlisted name.
    pub fn name_resolved(&mut self, resolved: &Resolved, metrics: &Metrics) {
        metrics.enforcement_name_lookup(resolved.error.is_none());
        match &resolved.error {
            None => self.learn_name(&resolved.name, &resolved.addresses, metrics),
            Some(error) => log::warn!(
                "egress allowlist name {} cannot be resolved ({error}); only the addresses of verified DNS answers for it are allowed",
                resolved.name
            ),
        }
    }

    /// Forgets allowlisted names' addresses not given for an hour, and
    /// takes them out of the kernel (housekeeping).
    pub fn expire_names(&mut self, metrics: &Metrics) {
        if !self.egress_names.expire(Instant::now()) {
            return;
        }
        let egress = self.egress_with_names();
        if let Some(maps) = &mut self.maps {
            if let Err(err) = maps.set_egress(&egress) {
                log::error!("egress allowlists not updated: {err}");
            }
        }
        metrics.set_enforcement_name_addresses(self.egress_names.address_count());
    }

    /// The enforced allowlists with the addresses their names stand for.
    fn egress_with_names(&self) -> Vec<(u16, Vec<EgressPeer>)> {
        self.egress_lists
            .iter()
            .map(|(scope, peers)| {
                let mut all = peers.clone();
                all.extend(self.egress_names.peers(*scope));
                (*scope, all)
            })
            .collect()
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
        let mut egress_names = Vec::new();
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
                Placement::Kernel(KernelRule::EgressAllow {
                    workload,
                    peers,
                    names,
                }) => {
                    let scope = scopes::lock(&self.scopes).scope(workload);
                    if scope != 0 {
                        if mode == EnforcementMode::Enforce {
                            egress.push((scope, peers.clone()));
                        }
                        // Resolved in audit mode too, so that its
                        // would-deny reports name what enforce would allow.
                        if !names.is_empty() {
                            egress_names.push((scope, names.clone()));
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
        self.egress_lists = egress;
        self.egress_names.set_lists(&egress_names);
        metrics.set_enforcement_name_addresses(self.egress_names.address_count());
        let names = self.egress_names.names();
        match &self.resolver_names {
            Some(resolver) => {
                resolver.send_if_modified(|wanted| {
                    let changed = *wanted != names;
                    *wanted = names.clone();
                    changed
                });
            }
            None if !names.is_empty() => log::debug!(
                "egress allowlist names ({}) are not resolved by the agent here; only verified DNS answers give them addresses",
                names.join(", ")
            ),
            None => {}
        }
        let egress = self.egress_with_names();
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
                        "kernel egress enforcement: {} workload allowlist(s), {} destination(s), {} name(s)",
                        egress.len(),
                        egress.iter().map(|(_, peers)| peers.len()).sum::<usize>(),
                        names.len()
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

#[cfg(test)]
mod tests;
