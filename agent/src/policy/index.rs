//! The rule index: for each event kind, the rules that can match it, and
//! within a kind a lookup by a required string field (`file.class`,
//! `process.name`, `workload.kind`, or a required absence such as
//! `workload: {exists: false}`), so most rules are never looked at for an
//! event that cannot match them.

use rustc_hash::FxHashMap;

use super::cond::{Cond, Op};
use super::field::{Field, FieldType, Val};
use crate::event::Event;

/// Rules whose condition requires `field` to be one of a few values, or to
/// be absent.
#[derive(Debug, Default)]
struct Discriminator {
    field: Option<Field>,
    by_value: FxHashMap<Box<str>, Vec<usize>>,
    missing: Vec<usize>,
}

/// The candidate rules of one event kind.
#[derive(Debug, Default)]
pub struct KindIndex {
    /// Rules with no usable required field: always evaluated.
    always: Vec<usize>,
    groups: Vec<Discriminator>,
}

/// What a rule requires of one field, found among the terms its condition
/// ANDs together.
enum Requirement<'a> {
    OneOf(Field, Vec<&'a str>),
    Missing(Field),
}

/// Above this many values a requirement is not worth indexing.
const MAX_KEYS: usize = 64;

fn requirements<'a>(cond: &'a Cond, out: &mut Vec<Requirement<'a>>) {
    match cond {
        Cond::All(items) => items.iter().for_each(|c| requirements(c, out)),
        Cond::Shared(inner) => requirements(inner, out),
        Cond::Test { field, op } => {
            let single_string = Field::lookup(field.path())
                .is_some_and(|(_, ty)| matches!(ty, FieldType::Str | FieldType::Ip));
            match op {
                Op::StrEq(value) if single_string => {
                    out.push(Requirement::OneOf(*field, vec![&**value]))
                }
                Op::StrIn(set) if single_string && set.len() <= MAX_KEYS => out.push(
                    Requirement::OneOf(*field, set.iter().map(|v| &**v).collect()),
                ),
                Op::Exists(false) => out.push(Requirement::Missing(*field)),
                _ => {}
            }
        }
        _ => {}
    }
}

impl KindIndex {
    /// Adds rule `index` whose condition (for `when` rules) is `cond`.
    pub fn add(&mut self, index: usize, cond: Option<&Cond>) {
        let mut found = Vec::new();
        if let Some(cond) = cond {
            requirements(cond, &mut found);
        }
        // The requirement with the fewest values narrows the most.
        let best = found.into_iter().min_by_key(|r| match r {
            Requirement::OneOf(_, values) => values.len(),
            Requirement::Missing(_) => 1,
        });
        let Some(best) = best else {
            self.always.push(index);
            return;
        };
        let field = match &best {
            Requirement::OneOf(field, _) | Requirement::Missing(field) => *field,
        };
        let group = match self.groups.iter().position(|g| g.field == Some(field)) {
            Some(position) => &mut self.groups[position],
            None => {
                self.groups.push(Discriminator {
                    field: Some(field),
                    ..Discriminator::default()
                });
                let last = self.groups.len() - 1;
                &mut self.groups[last]
            }
        };
        match best {
            Requirement::OneOf(_, values) => {
                for value in values {
                    group.by_value.entry(value.into()).or_default().push(index);
                }
            }
            Requirement::Missing(_) => group.missing.push(index),
        }
    }

    /// The rules that may match `ev`, in rule order, into `out`.
    pub fn candidates(&self, ev: &Event, out: &mut Vec<usize>) {
        out.clear();
        out.extend_from_slice(&self.always);
        for group in &self.groups {
            let Some(field) = group.field else { continue };
            let matched = match field.get(ev) {
                Val::Missing => Some(&group.missing),
                Val::Str(s) => group.by_value.get(s),
                Val::Owned(s) => group.by_value.get(s.as_str()),
                Val::Ip(ip) => group.by_value.get(ip.to_string().as_str()),
                _ => None,
            };
            if let Some(rules) = matched {
                out.extend_from_slice(rules);
            }
        }
        if !self.groups.is_empty() {
            out.sort_unstable();
        }
    }

    /// Number of distinct rules indexed for this kind.
    pub fn rule_count(&self) -> usize {
        let mut all: Vec<usize> = self.always.clone();
        for group in &self.groups {
            all.extend_from_slice(&group.missing);
            all.extend(group.by_value.values().flatten());
        }
        all.sort_unstable();
        all.dedup();
        all.len()
    }
}
