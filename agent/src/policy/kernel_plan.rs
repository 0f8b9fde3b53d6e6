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
//! Two shapes compile to maps: an exec kill on exact executables
//! (`kind: exec` + `process.exe`), and an egress allowlist, a `deny` rule
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
//! ```

use std::collections::HashMap;

use ipnet::IpNet;

use super::cond::{Cond, KindSet, Op};
use super::field::Field;
use super::field::Num;
use super::set::{PolicySet, Rule, RuleBody};
use crate::alert::Action;
use crate::event::Kind;

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
    EgressAllow {
        workload: String,
        peers: Vec<EgressPeer>,
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
            Ok((workload, peers)) => Placement::Kernel(KernelRule::EgressAllow { workload, peers }),
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

fn is_open_rule(cond: &Cond) -> bool {
    let mut terms = Vec::new();
    flatten(cond, &mut terms);
    terms
        .iter()
        .any(|term| matches!(term, Cond::Kind(kinds) if *kinds == KindSet::of(Kind::Open)))
}

/// The protected files and allowed executables of a condition of the form
/// `kind: open` + `file.path: PATH | [PATH...]` + optionally `not:
/// {process.exe: PATH | [PATH...]}`, and nothing else.
fn open_kill(cond: &Cond) -> Result<(Vec<String>, Vec<String>), String> {
    let mut terms = Vec::new();
    flatten(cond, &mut terms);
    let (mut open_only, mut files, mut allowed) = (false, None, None);
    for term in terms {
        match term {
            Cond::Kind(kinds) if *kinds == KindSet::of(Kind::Open) => open_only = true,
            Cond::Kind(_) => return Err("it matches other kinds than open".into()),
            Cond::Always => {}
            Cond::Test {
                field: Field::FilePath,
                op,
            } if files.is_none() => files = Some(exact_paths(op)?),
            Cond::Not(inner) if allowed.is_none() => match &**inner {
                Cond::Test {
                    field: Field::Exe,
                    op,
                } => allowed = Some(exact_paths(op)?),
                _ => return Err(
                    "its `not:` is not `process.exe` (the executables allowed to open the files)"
                        .into(),
                ),
            },
            Cond::Test { field, .. } => {
                return Err(format!(
                    "its condition on `{}` is not decided in the kernel",
                    field.path()
                ))
            }
            _ => return Err("`any`/`not` conditions are not decided in the kernel".into()),
        }
    }
    if !open_only {
        return Err("only exec and open rules are killed in the kernel".into());
    }
    match files {
        Some(files) => Ok((files, allowed.unwrap_or_default())),
        None => Err("it does not name the protected files by exact `file.path`".into()),
    }
}

/// The executables of a condition of the form
/// `kind: exec` + `process.exe: PATH | [PATH...]`, and nothing else.
fn exec_deny(cond: &Cond) -> Result<Vec<String>, String> {
    let mut terms = Vec::new();
    flatten(cond, &mut terms);
    let mut exec_only = false;
    let mut exes: Option<Vec<String>> = None;
    for term in terms {
        match term {
            Cond::Kind(kinds) if *kinds == KindSet::of(Kind::Exec) => exec_only = true,
            Cond::Kind(_) => return Err("it matches other kinds than exec".into()),
            Cond::Always => {}
            Cond::Test {
                field: Field::Exe,
                op,
            } if exes.is_none() => exes = Some(exact_paths(op)?),
            Cond::Test { field, .. } => {
                return Err(format!(
                    "its condition on `{}` is not decided in the kernel",
                    field.path()
                ))
            }
            Cond::Any(_) | Cond::Not(_) => {
                return Err("`any`/`not` conditions are not decided in the kernel".into())
            }
            Cond::All(_) | Cond::Shared(_) => unreachable!("flattened"),
        }
    }
    if !exec_only {
        return Err("only exec rules are enforced in the kernel".into());
    }
    match exes {
        Some(exes) => Ok(exes),
        None => Err("it does not name the executables by `process.exe`".into()),
    }
}

/// The workload and allowed executables of a condition of the form
/// `kind: exec` + `workload.name: NAME` + `not: {process.exe: PATH |
/// [PATH...]}`, and nothing else.
fn exec_allow(cond: &Cond) -> Result<(String, Vec<String>), String> {
    let mut terms = Vec::new();
    flatten(cond, &mut terms);
    let (mut exec_only, mut workload, mut exes) = (false, None, None);
    for term in terms {
        match term {
            Cond::Kind(kinds) if *kinds == KindSet::of(Kind::Exec) => exec_only = true,
            Cond::Kind(_) => return Err("it matches other kinds than exec".into()),
            Cond::Always => {}
            Cond::Test {
                field: Field::WorkloadName,
                op: Op::StrEq(name),
            } if workload.is_none() => workload = Some(name.to_string()),
            Cond::Not(inner) if exes.is_none() => match &**inner {
                Cond::Test {
                    field: Field::Exe,
                    op,
                } => exes = Some(exact_paths(op)?),
                _ => return Err("its `not:` is not `process.exe`".into()),
            },
            _ => return Err("its condition is not an exec allowlist".into()),
        }
    }
    match (exec_only, workload, exes) {
        (true, Some(workload), Some(exes)) => Ok((workload, exes)),
        _ => Err("it is not `kind: exec` + `workload.name` + `not: {process.exe}`".into()),
    }
}

/// The workload and allowed destinations of a condition of the form
/// `kind` (connect and/or udp_send) + `workload.name: NAME` + `not:
/// DESTINATIONS`, and nothing else.
fn egress_allow(cond: &Cond) -> Result<(String, Vec<EgressPeer>), String> {
    let egress_kinds = KindSet::of(Kind::Connect).union(KindSet::of(Kind::UdpSend));
    let mut terms = Vec::new();
    flatten(cond, &mut terms);
    let (mut kinds, mut workload, mut allowed) = (None, None, None);
    for term in terms {
        match term {
            Cond::Kind(set) if set.intersect(egress_kinds) == *set => kinds = Some(*set),
            Cond::Kind(_) => return Err("it matches other kinds than connect and udp_send".into()),
            Cond::Always => {}
            Cond::Test {
                field: Field::WorkloadName,
                op: Op::StrEq(name),
            } if workload.is_none() => workload = Some(name.to_string()),
            Cond::Not(inner) if allowed.is_none() => allowed = Some(peers(inner)?),
            Cond::Test { field, .. } => {
                return Err(format!(
                    "its condition on `{}` is not decided in the kernel",
                    field.path()
                ))
            }
            _ => return Err("its condition is not an egress allowlist".into()),
        }
    }
    match (kinds, workload, allowed) {
        (Some(_), Some(workload), Some(mut peers)) => {
            peers.sort();
            peers.dedup();
            Ok((workload, peers))
        }
        (None, ..) => Err("it does not name its kinds (connect, udp_send)".into()),
        (_, None, _) => Err("it does not name one workload by `workload.name`".into()),
        (.., None) => Err("it has no `not:` naming the allowed destinations".into()),
    }
}

/// The destinations of an allowlist's `not:`: one destination, or `any` of
/// them.
fn peers(cond: &Cond) -> Result<Vec<EgressPeer>, String> {
    match cond {
        Cond::Shared(inner) => peers(inner),
        Cond::Any(items) => {
            let mut all = Vec::new();
            for item in items {
                all.extend(peers(item)?);
            }
            Ok(all)
        }
        other => destination(other),
    }
}

/// One destination: `net.dst.ip` networks, `net.dst.port` ports, or both.
fn destination(cond: &Cond) -> Result<Vec<EgressPeer>, String> {
    let mut terms = Vec::new();
    flatten(cond, &mut terms);
    let (mut nets, mut ports): (Option<Vec<IpNet>>, Option<Vec<Option<u16>>>) = (None, None);
    for term in terms {
        match term {
            Cond::Test {
                field: Field::NetDstIp,
                op,
            } if nets.is_none() => nets = Some(networks(op)?),
            Cond::Test {
                field: Field::NetDstPort,
                op,
            } if ports.is_none() => ports = Some(port_list(op)?),
            Cond::Test { field, .. } => {
                return Err(format!(
                    "an allowed destination tests `{}`; only net.dst.ip and net.dst.port are decided in the kernel",
                    field.path()
                ))
            }
            _ => {
                return Err(
                    "an allowed destination is not net.dst.ip and/or net.dst.port".into(),
                )
            }
        }
    }
    if nets.is_none() && ports.is_none() {
        return Err("an allowed destination names neither net.dst.ip nor net.dst.port".into());
    }
    let nets =
        nets.unwrap_or_else(|| vec![IpNet::V4(Default::default()), IpNet::V6(Default::default())]);
    let ports = ports.unwrap_or_else(|| vec![None]);
    Ok(nets
        .iter()
        .flat_map(|net| {
            ports.iter().map(|port| EgressPeer {
                net: *net,
                port: *port,
            })
        })
        .collect())
}

/// `net.dst.ip: {cidr: [...]}`, or exact addresses (a /32 or /128 each).
fn networks(op: &Op) -> Result<Vec<IpNet>, String> {
    let exact = |text: &str| {
        text.parse::<std::net::IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("`{text}` is not an IP address"))
    };
    match op {
        Op::Cidr(nets) => Ok(nets.clone()),
        Op::StrEq(text) => Ok(vec![exact(text)?]),
        Op::StrIn(texts) => {
            let mut nets = texts
                .iter()
                .map(|t| exact(t))
                .collect::<Result<Vec<_>, _>>()?;
            nets.sort();
            Ok(nets)
        }
        _ => Err("`net.dst.ip` is matched otherwise than by addresses or `cidr`".into()),
    }
}

fn port_list(op: &Op) -> Result<Vec<Option<u16>>, String> {
    let port = |n: i128| {
        u16::try_from(n)
            .ok()
            .filter(|p| *p != 0)
            .map(Some)
            .ok_or_else(|| format!("port {n} is not a port the kernel can match (1-65535)"))
    };
    match op {
        Op::NumEq(Num::Int(n)) => Ok(vec![port(*n)?]),
        Op::NumIn(set) => {
            let mut ports = set
                .iter()
                .map(|n| port(*n))
                .collect::<Result<Vec<_>, _>>()?;
            ports.sort();
            Ok(ports)
        }
        _ => Err("`net.dst.port` is matched otherwise than by exact ports".into()),
    }
}

/// The terms of nested `all`s and macros.
fn flatten<'a>(cond: &'a Cond, out: &mut Vec<&'a Cond>) {
    match cond {
        Cond::All(items) => items.iter().for_each(|item| flatten(item, out)),
        Cond::Shared(inner) => flatten(inner, out),
        other => out.push(other),
    }
}

/// Absolute literal paths: the agent resolves each to a device and inode.
fn exact_paths(op: &Op) -> Result<Vec<String>, String> {
    let paths: Vec<String> = match op {
        Op::StrEq(path) => vec![path.to_string()],
        Op::StrIn(paths) => paths.iter().map(|p| p.to_string()).collect(),
        Op::Glob(globs)
            if globs.set.is_none()
                && globs.prefixes.is_empty()
                && globs.suffixes.is_empty()
                && globs.name_prefixes.is_empty()
                && globs.name_suffixes.is_empty() =>
        {
            globs.exact.iter().map(|p| p.to_string()).collect()
        }
        _ => return Err("`process.exe` is matched by pattern, not by exact paths".into()),
    };
    if let Some(relative) = paths.iter().find(|p| !p.starts_with('/')) {
        return Err(format!("`{relative}` is not an absolute path"));
    }
    let mut paths = paths;
    paths.sort();
    Ok(paths)
}

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
            Placement::Kernel(KernelRule::EgressAllow { workload, peers }) => format!(
                "kernel (cgroup/connect and cgroup/sendmsg refuse workload {workload}'s egress outside {} allowed destination(s))",
                peers.len()
            ),
            Placement::UserSpace(why) => format!("user space only: {why}"),
            Placement::NotEnforced(why) => format!("not enforced: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::policy::set::Source;

    fn placements(text: &str) -> Vec<(String, Placement)> {
        let set = PolicySet::from_sources(&[Source {
            name: Arc::from("t.yaml"),
            text: text.into(),
        }])
        .expect("valid policy");
        plan(&set)
            .into_iter()
            .map(|p| (p.rule.id.clone(), p.placement))
            .collect()
    }

    #[test]
    fn an_exec_rule_on_exact_paths_goes_to_the_kernel() {
        let got = placements(
            "rules:\n  - id: a\n    severity: high\n    action: kill\n    when:\n      kind: exec\n      process.exe: [/tmp/b, /tmp/a]\n",
        );
        assert_eq!(
            got,
            vec![(
                "a".into(),
                Placement::Kernel(KernelRule::ExecDeny {
                    exes: vec!["/tmp/a".into(), "/tmp/b".into()]
                })
            )]
        );
    }

    #[test]
    fn names_patterns_and_other_fields_stay_in_user_space() {
        let got = placements(
            "rules:\n  - id: by-name\n    severity: high\n    action: kill\n    when:\n      kind: exec\n      process.name: xmrig\n  - id: by-glob\n    severity: high\n    action: kill\n    when:\n      kind: exec\n      process.exe: {glob: '/tmp/**'}\n  - id: alert-only\n    severity: high\n    when:\n      kind: exec\n",
        );
        assert_eq!(got.len(), 2, "rules without an action are not planned");
        assert_eq!(
            got[0].1,
            Placement::UserSpace(
                "its condition on `process.name` is not decided in the kernel".into()
            )
        );
        assert!(matches!(&got[1].1, Placement::UserSpace(why) if why.contains("pattern")));
    }

    #[test]
    fn an_open_rule_on_exact_files_goes_to_the_kernel() {
        let got = placements(
            "rules:\n  - id: o\n    severity: high\n    action: kill\n    when:\n      kind: open\n      file.path: [/models/b.safetensors, /models/a.safetensors]\n      not:\n        process.exe: /opt/server/python3\n  - id: by-glob\n    severity: high\n    action: kill\n    when:\n      kind: open\n      file.path: {glob: '/models/**'}\n",
        );
        assert_eq!(
            got[0].1,
            Placement::Kernel(KernelRule::OpenKill {
                files: vec![
                    "/models/a.safetensors".into(),
                    "/models/b.safetensors".into()
                ],
                allowed: vec!["/opt/server/python3".into()],
            })
        );
        assert!(
            matches!(&got[1].1, Placement::UserSpace(why) if why.contains("pattern")),
            "{got:?}"
        );
    }

    #[test]
    fn a_deny_of_an_open_on_exact_files_goes_to_the_kernel() {
        let got = placements(
            "rules:\n  - id: o\n    severity: high\n    action: deny\n    when:\n      kind: open\n      file.path: /models/a.safetensors\n",
        );
        assert_eq!(
            got[0].1,
            Placement::Kernel(KernelRule::OpenKill {
                files: vec!["/models/a.safetensors".into()],
                allowed: Vec::new(),
            })
        );
        assert!(got[0].1.describe().contains("file_open"), "{got:?}");
    }

    #[test]
    fn an_egress_allowlist_goes_to_the_kernel() {
        let got = placements(
            "rules:\n  - id: e\n    severity: high\n    action: deny\n    when:\n      kind: [connect, udp_send]\n      workload.name: model\n      not:\n        any:\n          - net.dst.ip: {cidr: 10.0.0.0/8}\n          - {net.dst.ip: [127.0.0.1, '::1'], net.dst.port: [8443, 8080]}\n          - net.dst.port: 53\n",
        );
        let peer = |net: &str, port| EgressPeer {
            net: net.parse().unwrap(),
            port,
        };
        let Placement::Kernel(KernelRule::EgressAllow { workload, peers }) = &got[0].1 else {
            panic!("{got:?}");
        };
        assert_eq!(workload, "model");
        let mut want = vec![
            peer("10.0.0.0/8", None),
            peer("127.0.0.1/32", Some(8080)),
            peer("127.0.0.1/32", Some(8443)),
            peer("::1/128", Some(8080)),
            peer("::1/128", Some(8443)),
            peer("0.0.0.0/0", Some(53)),
            peer("::/0", Some(53)),
        ];
        want.sort();
        assert_eq!(peers, &want);
    }

    #[test]
    fn egress_rules_the_kernel_cannot_decide_say_why() {
        let got = placements(
            "rules:\n  - id: by-name\n    severity: high\n    action: deny\n    when:\n      kind: connect\n      workload.name: m\n      not:\n        net.dst_name: api.example.com\n  - id: two-workloads\n    severity: high\n    action: deny\n    when:\n      kind: connect\n      not:\n        net.dst.port: 443\n  - id: first\n    severity: high\n    action: deny\n    when:\n      kind: connect\n      workload.name: m\n      not:\n        net.dst.port: 443\n  - id: second\n    severity: high\n    action: deny\n    when:\n      kind: connect\n      workload.name: m\n      not:\n        net.dst.port: 80\n",
        );
        assert!(
            matches!(&got[0].1, Placement::NotEnforced(why) if why.contains("net.dst_name")),
            "{got:?}"
        );
        assert!(
            matches!(&got[1].1, Placement::NotEnforced(why) if why.contains("workload.name")),
            "{got:?}"
        );
        assert!(matches!(&got[2].1, Placement::Kernel(_)), "{got:?}");
        assert!(
            matches!(&got[3].1, Placement::NotEnforced(why) if why.contains("rule first")),
            "{got:?}"
        );
    }

    #[test]
    fn a_deny_the_kernel_cannot_decide_is_not_enforced() {
        let got = placements(
            "rules:\n  - id: d\n    severity: high\n    action: deny\n    when:\n      kind: connect\n",
        );
        assert!(matches!(&got[0].1, Placement::NotEnforced(_)), "{got:?}");
    }
}
