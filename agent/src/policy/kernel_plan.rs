//! Which rules' `kill` or `deny` the kernel can carry out, and why the
//! others cannot.
//!
//! A rule is enforced in the kernel only when its whole condition can be
//! decided there: the kernel programs test map lookups, not the rule
//! language. Everything else stays in user space (a `kill(2)` after the
//! event crossed the ring buffer) or, for `deny`, is not enforced at all and
//! alerts "would-deny". This module only decides; `enforce/` writes the
//! maps. `policy check` prints the decision for every rule with an action.

use super::cond::{Cond, KindSet, Op};
use super::field::Field;
use super::set::{PolicySet, Rule, RuleBody};
use crate::alert::Action;
use crate::event::Kind;

/// What the kernel is asked to do for one rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelRule {
    /// Kill at `sched_process_exec` any process whose new executable is one
    /// of these files (matched by device and inode, never by name).
    ExecDeny { exes: Vec<String> },
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
    set.rules()
        .iter()
        .filter(|rule| rule.enabled && rule.action != Action::Alert)
        .map(|rule| RulePlacement {
            rule,
            placement: place(rule),
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
        return fallback(
            "no kernel hook refuses this yet (egress and device deny are not built); it alerts would-deny"
                .into(),
        );
    }
    match exec_deny(cond) {
        Ok(exes) => Placement::Kernel(KernelRule::ExecDeny { exes }),
        Err(why) => fallback(why),
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
                "kernel (sched_process_exec kills the exec of {} file(s), by device and inode)",
                exes.len()
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
    fn a_deny_the_kernel_cannot_decide_is_not_enforced() {
        let got = placements(
            "rules:\n  - id: d\n    severity: high\n    action: deny\n    when:\n      kind: connect\n",
        );
        assert!(matches!(&got[0].1, Placement::NotEnforced(_)), "{got:?}");
    }
}
