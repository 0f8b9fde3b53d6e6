//! Which rules' `kill` or `deny` the kernel can carry out, and why the
//! others cannot.
//!
//! A rule is enforced in the kernel only when its whole condition can be
//! decided there: the kernel programs test map lookups, not the rule
//! language. Everything else stays in user space (a `kill(2)` after the
//! event crossed the ring buffer) or, for `deny`, is not enforced at all and
//! alerts "would-deny". This module only decides; `enforce/` writes the
//! maps. `policy check` prints the decision for every rule with an action.
//!
//! Four shapes compile to maps (`kernel_plan/shapes.rs`): an exec kill on
//! exact executables (`kind: exec` + `process.exe`), a workload's exec
//! allowlist (`kind: exec` + `workload.name` + `not: {process.exe}`), the
//! protected files of an open rule (`kind: open` + `file.path`, with the
//! allowed openers under `not:`), and an egress allowlist, a `deny` rule
//! of the form
//!
//! ```yaml
//! when:
//!   kind: [connect, udp_send]
//!   workload.name: fraud-model
//!   not:
//!     any:
//!       - net.dst.ip: {cidr: 10.0.0.0/8}    # any port
//!       - {net.dst.ip: 127.0.0.1, net.dst.port: [8080, 8443]}
//!       - net.dst.port: 53                  # any address
//!       - {net.dst_name: api.example.com, net.dst.port: 443}
//! ```
//!
//! A name in an allowlist is carried out by address: the agent resolves it
//! itself and learns the addresses of verified DNS answers for it
//! (`enforce/egress_names.rs`), and the kernel allows those.

use std::collections::HashMap;

use ipnet::IpNet;

use super::set::{PolicySet, Rule, RuleBody};
use crate::alert::Action;

/// What the kernel is asked to do for one rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelRule {
    /// Kill at `sched_process_exec` any process whose new executable is one
    /// of these files (matched by device and inode, never by name).
    ExecDeny { exes: Vec<String> },
    /// Refuse at the BPF LSM's `file_open` where it is attached, else (for
    /// `kill` rules) kill at the exit of `open`, any process that opens one
    /// of these files (by device and inode) unless its executable is one of
    /// `allowed`. A `deny` rule is carried out only by the LSM.
    OpenKill {
        files: Vec<String>,
        allowed: Vec<String>,
    },
    /// Kill at `sched_process_exec` any process of `workload` whose new
    /// executable is none of `exes` (by device and inode): the workload's
    /// exec allowlist.
    ExecAllow { workload: String, exes: Vec<String> },
    /// Refuse (EPERM) the workload's connects and UDP sends to any
    /// destination but these, at `cgroup/connect*` and `cgroup/sendmsg*`.
    /// Names are allowed by the addresses the agent resolves for them.
    EgressAllow {
        workload: String,
        peers: Vec<EgressPeer>,
        names: Vec<EgressName>,
    },
}

/// A destination an egress allowlist lets through: a network and a port
/// (`None`: any port). Names resolved by the agent become peers too: one
/// per address, with the name's port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EgressPeer {
    pub net: IpNet,
    pub port: Option<u16>,
}

/// A DNS name an egress allowlist lets through, on a port (`None`: any
/// port): lower case, without the trailing dot.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EgressName {
    pub name: String,
    pub port: Option<u16>,
}

/// What an allowlist's `not:` lets through.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Allowed {
    pub peers: Vec<EgressPeer>,
    pub names: Vec<EgressName>,
}

/// `name` as allowlists and DNS answers are compared: lower case, without
/// the trailing dot; `None` when it is not a DNS name (empty, a label
/// over 63 bytes, a character other than letters, digits, `-` and `_`).
pub fn dns_name(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    valid.then_some(name)
}

/// Where a rule's action is carried out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Placement {
    Kernel(KernelRule),
    /// `kill(2)` from the agent once the alert is raised; the reason says
    /// why the kernel cannot do it.
    UserSpace(String),
    /// A `deny` the kernel cannot decide: the rule alerts "would-deny" only.
    NotEnforced(String),
}

/// The placement of one rule with an action.
#[derive(Clone, Debug)]
pub struct RulePlacement<'a> {
    pub rule: &'a Rule,
    pub placement: Placement,
}

/// The placement of every enabled rule whose action is `kill` or `deny`.
pub fn plan(set: &PolicySet) -> Vec<RulePlacement<'_>> {
    // One kernel allowlist per workload: the kernel allows what the
    // workload's scope lists, so a second list could only widen the first.
    let mut egress_owner: HashMap<String, &str> = HashMap::new();
    set.rules()
        .iter()
        .filter(|rule| rule.enabled && rule.action != Action::Alert)
        .map(|rule| {
            let mut placement = place(rule);
            if let Placement::Kernel(KernelRule::EgressAllow { workload, .. }) = &placement {
                if let Some(first) = egress_owner.get(workload) {
                    placement = Placement::NotEnforced(format!(
                        "workload `{workload}` already has its kernel egress allowlist in rule {first}; merge the two"
                    ));
                } else {
                    egress_owner.insert(workload.clone(), &rule.id);
                }
            }
            RulePlacement { rule, placement }
        })
        .collect()
}

fn place(rule: &Rule) -> Placement {
    let fallback = |why: String| match rule.action {
        Action::Deny => Placement::NotEnforced(why),
        _ => Placement::UserSpace(why),
    };
    let RuleBody::When(cond) = &rule.body else {
        return fallback("a sequence spans several events; the kernel sees one at a time".into());
    };
    if !rule.exceptions.is_empty() {
        return fallback("its exceptions are tested in user space".into());
    }
    if rule.action == Action::Deny {
        // A deny of an exec can only be a kill at exec (the enforcer says
        // so in the log and in aiwatch_enforcement_fallback_rules).
        if let Ok(exes) = exec_deny(cond) {
            return Placement::Kernel(KernelRule::ExecDeny { exes });
        }
        // An allowlist's deny is carried out as a kill at exec, as above.
        if let Ok((workload, exes)) = exec_allow(cond) {
            return Placement::Kernel(KernelRule::ExecAllow { workload, exes });
        }
        // Refused only by the BPF LSM; the enforcer says where it is not
        // attached.
        if let Ok((files, allowed)) = open_kill(cond) {
            return Placement::Kernel(KernelRule::OpenKill { files, allowed });
        }
        return match egress_allow(cond) {
            Ok((workload, Allowed { peers, names })) => {
                Placement::Kernel(KernelRule::EgressAllow {
                    workload,
                    peers,
                    names,
                })
            }
            Err(why) => fallback(format!(
                "{why}; the kernel refuses only egress allowlists (kind: connect/udp_send, workload.name, not: destinations), execs and opens of exact files; it alerts would-deny"
            )),
        };
    }
    if let Ok((workload, exes)) = exec_allow(cond) {
        return Placement::Kernel(KernelRule::ExecAllow { workload, exes });
    }
    match exec_deny(cond) {
        Ok(exes) => Placement::Kernel(KernelRule::ExecDeny { exes }),
        Err(why) => match open_kill(cond) {
            Ok((files, allowed)) => Placement::Kernel(KernelRule::OpenKill { files, allowed }),
            // Name the exec reason for exec rules, the open one otherwise.
            Err(open_why) if is_open_rule(cond) => fallback(open_why),
            Err(_) => fallback(why),
        },
    }
}

mod shapes;
use shapes::{egress_allow, exec_allow, exec_deny, is_open_rule, open_kill};

impl Placement {
    /// One line for `policy check`.
    pub fn describe(&self) -> String {
        match self {
            Placement::Kernel(KernelRule::ExecDeny { exes }) => format!(
                "kernel (sched_process_exec kills the exec of {} file(s), by device and inode; a `deny` rule is refused at the BPF LSM's bprm_check_security where it is attached)",
                exes.len()
            ),
            Placement::Kernel(KernelRule::ExecAllow { workload, exes }) => format!(
                "kernel (sched_process_exec kills workload {workload}'s execs of anything but {} allowed file(s), by device and inode)",
                exes.len()
            ),
            Placement::Kernel(KernelRule::OpenKill { files, allowed }) => format!(
                "kernel (openers of {} file(s) but {} allowed executable(s), by device and inode, are refused at the BPF LSM's file_open where it is attached; elsewhere a `kill` rule kills them at the exit of open and a `deny` rule is not enforced)",
                files.len(),
                allowed.len()
            ),
            Placement::Kernel(KernelRule::EgressAllow {
                workload,
                peers,
                names,
            }) if names.is_empty() => format!(
                "kernel (cgroup/connect and cgroup/sendmsg refuse workload {workload}'s egress outside {} allowed destination(s))",
                peers.len()
            ),
            Placement::Kernel(KernelRule::EgressAllow {
                workload,
                peers,
                names,
            }) => format!(
                "kernel (cgroup/connect and cgroup/sendmsg refuse workload {workload}'s egress outside {} allowed destination(s) and the addresses the agent resolves for {} name(s))",
                peers.len(),
                names.len()
            ),
            Placement::UserSpace(why) => format!("user space only: {why}"),
            Placement::NotEnforced(why) => format!("not enforced: {why}"),
        }
    }
}

#[cfg(test)]
mod tests;
