//! The rule shapes the kernel can carry out, read off a rule's condition:
//! each returns what the kernel maps need, or why the rule is not of its
//! shape.

use ipnet::IpNet;

use super::super::cond::{Cond, KindSet, Op};
use super::super::field::{Field, Num};
use super::{Allowed, EgressName, EgressPeer};
use crate::event::Kind;

pub(super) fn is_open_rule(cond: &Cond) -> bool {
    let terms = cond.terms();
    terms
        .iter()
        .any(|term| matches!(term, Cond::Kind(kinds) if *kinds == KindSet::of(Kind::Open)))
}

/// The protected files and allowed executables of a condition of the form
/// `kind: open` + `file.path: PATH | [PATH...]` + optionally `not:
/// {process.exe: PATH | [PATH...]}`, and nothing else.
pub(super) fn open_kill(cond: &Cond) -> Result<(Vec<String>, Vec<String>), String> {
    let terms = cond.terms();
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
pub(super) fn exec_deny(cond: &Cond) -> Result<Vec<String>, String> {
    let terms = cond.terms();
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
pub(super) fn exec_allow(cond: &Cond) -> Result<(String, Vec<String>), String> {
    let terms = cond.terms();
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
pub(super) fn egress_allow(cond: &Cond) -> Result<(String, Allowed), String> {
    let egress_kinds = KindSet::of(Kind::Connect).union(KindSet::of(Kind::UdpSend));
    let terms = cond.terms();
    let (mut kinds, mut workload, mut allowed) = (None, None, None);
    for term in terms {
        match term {
            Cond::Kind(set) if set.intersect(egress_kinds) == *set => kinds = Some(*set),
            Cond::Kind(_) => return Err("it matches other kinds than connect and udp_send".into()),
            // The scope every egress rule gets (`Cond::scoped_to_network_peers`):
            // the kernel's hooks see only IP destinations anyway.
            Cond::Always
            | Cond::Test {
                field: Field::NetDstIp,
                op: Op::Exists(true),
            } => {}
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
        (Some(_), Some(workload), Some(mut allowed)) => {
            allowed.peers.sort();
            allowed.peers.dedup();
            allowed.names.sort();
            allowed.names.dedup();
            Ok((workload, allowed))
        }
        (None, ..) => Err("it does not name its kinds (connect, udp_send)".into()),
        (_, None, _) => Err("it does not name one workload by `workload.name`".into()),
        (.., None) => Err("it has no `not:` naming the allowed destinations".into()),
    }
}

/// The destinations of an allowlist's `not:`: one destination, or `any` of
/// them.
fn peers(cond: &Cond) -> Result<Allowed, String> {
    match cond {
        Cond::Shared(inner) => peers(inner),
        Cond::Any(items) => {
            let mut all = Allowed::default();
            for item in items {
                let one = peers(item)?;
                all.peers.extend(one.peers);
                all.names.extend(one.names);
            }
            Ok(all)
        }
        other => destination(other),
    }
}

/// One destination: `net.dst.ip` networks or `net.dst_name` names, a
/// `net.dst.port` list, or both.
fn destination(cond: &Cond) -> Result<Allowed, String> {
    let terms = cond.terms();
    let mut nets: Option<Vec<IpNet>> = None;
    let mut names: Option<Vec<String>> = None;
    let mut ports: Option<Vec<Option<u16>>> = None;
    for term in terms {
        match term {
            Cond::Test {
                field: Field::NetDstIp,
                op,
            } if nets.is_none() => nets = Some(networks(op)?),
            Cond::Test {
                field: Field::NetDstName,
                op,
            } if names.is_none() => names = Some(dns_names(op)?),
            Cond::Test {
                field: Field::NetDstPort,
                op,
            } if ports.is_none() => ports = Some(port_list(op)?),
            Cond::Test { field, .. } => {
                return Err(format!(
                    "an allowed destination tests `{}`; only net.dst.ip, net.dst_name and net.dst.port are decided in the kernel",
                    field.path()
                ))
            }
            _ => {
                return Err(
                    "an allowed destination is not net.dst.ip or net.dst_name and/or net.dst.port"
                        .into(),
                )
            }
        }
    }
    let ports = ports.unwrap_or_else(|| vec![None]);
    match (nets, names) {
        (Some(_), Some(_)) => Err(
            "an allowed destination names both addresses and names; give each its own entry under `any`"
                .into(),
        ),
        (None, Some(names)) => Ok(Allowed {
            peers: Vec::new(),
            names: names
                .iter()
                .flat_map(|name| {
                    ports.iter().map(|port| EgressName {
                        name: name.clone(),
                        port: *port,
                    })
                })
                .collect(),
        }),
        (None, None) if ports == [None] => Err(
            "an allowed destination names neither net.dst.ip, net.dst_name nor net.dst.port"
                .into(),
        ),
        (nets, None) => {
            let nets = nets.unwrap_or_else(|| {
                vec![IpNet::V4(Default::default()), IpNet::V6(Default::default())]
            });
            Ok(Allowed {
                peers: nets
                    .iter()
                    .flat_map(|net| {
                        ports.iter().map(|port| EgressPeer {
                            net: *net,
                            port: *port,
                        })
                    })
                    .collect(),
                names: Vec::new(),
            })
        }
    }
}

/// `net.dst_name: NAME | [NAME...]`: exact DNS names, which the agent
/// resolves. A pattern cannot be resolved in advance.
fn dns_names(op: &Op) -> Result<Vec<String>, String> {
    let names = literals(op).ok_or_else(|| {
        "`net.dst_name` is matched by pattern; only exact names can be resolved for the kernel"
            .to_string()
    })?;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        out.push(super::dns_name(name).ok_or_else(|| format!("`{name}` is not a DNS name"))?);
    }
    out.sort();
    Ok(out)
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

/// The strings an exact match names (`x`, `[x, y]`, or globs without a
/// wildcard); `None` for a pattern.
fn literals(op: &Op) -> Option<Vec<&str>> {
    match op {
        Op::StrEq(text) => Some(vec![text]),
        Op::StrIn(texts) => Some(texts.iter().map(|t| &**t).collect()),
        Op::Glob(globs)
            if globs.set.is_none()
                && globs.prefixes.is_empty()
                && globs.suffixes.is_empty()
                && globs.name_prefixes.is_empty()
                && globs.name_suffixes.is_empty() =>
        {
            Some(globs.exact.iter().map(|t| &**t).collect())
        }
        _ => None,
    }
}

/// Absolute literal paths: the agent resolves each to a device and inode.
fn exact_paths(op: &Op) -> Result<Vec<String>, String> {
    let paths: Vec<String> = literals(op)
        .ok_or("`process.exe` is matched by pattern, not by exact paths")?
        .into_iter()
        .map(str::to_string)
        .collect();
    if let Some(relative) = paths.iter().find(|p| !p.starts_with('/')) {
        return Err(format!("`{relative}` is not an absolute path"));
    }
    let mut paths = paths;
    paths.sort();
    Ok(paths)
}
