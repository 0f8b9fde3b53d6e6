//! Compiled conditions and their evaluation against one event.
//!
//! Everything expensive happens at load time: lists become hash sets, globs
//! a `GlobSet`, CIDRs parsed prefixes, field paths a [`Field`]. Evaluation
//! only reads the event.

use std::cmp::Ordering;
use std::net::IpAddr;
use std::sync::Arc;

use globset::GlobSet;
use ipnet::IpNet;
use rustc_hash::FxHashSet;

use super::field::{Field, Num, Val};
use crate::event::{Event, Kind};

/// A set of event kinds, one bit per [`Kind::index`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindSet(pub u64);

impl KindSet {
    pub const ALL: KindSet = KindSet((1u64 << Kind::ALL.len()) - 1);
    pub const NONE: KindSet = KindSet(0);

    pub fn of(kind: Kind) -> KindSet {
        KindSet(1 << kind.index())
    }

    pub fn contains(self, kind: Kind) -> bool {
        self.0 & (1 << kind.index()) != 0
    }

    pub fn union(self, other: KindSet) -> KindSet {
        KindSet(self.0 | other.0)
    }

    pub fn intersect(self, other: KindSet) -> KindSet {
        KindSet(self.0 & other.0)
    }

    pub fn kinds(self) -> impl Iterator<Item = Kind> {
        Kind::ALL
            .into_iter()
            .filter(move |kind| self.contains(*kind))
    }
}

#[derive(Clone, Debug)]
pub enum Cond {
    /// The empty condition `{}`.
    Always,
    All(Vec<Cond>),
    Any(Vec<Cond>),
    Not(Box<Cond>),
    /// A macro, compiled once and shared by every rule that names it.
    Shared(Arc<Cond>),
    Kind(KindSet),
    Test {
        field: Field,
        op: Op,
    },
}

/// Globs split by shape: the common `DIR/**`, `**/NAME`, `**/*.EXT` and
/// literal patterns become string comparisons; the rest go to a `GlobSet`.
#[derive(Clone, Debug, Default)]
pub struct GlobMatcher {
    pub exact: Vec<Box<str>>,
    pub prefixes: Vec<Box<str>>,
    pub suffixes: Vec<Box<str>>,
    /// `LITERAL*`: starts with the literal, no `/` after it.
    pub name_prefixes: Vec<Box<str>>,
    /// `*LITERAL`: ends with the literal, no `/` before it.
    pub name_suffixes: Vec<Box<str>>,
    pub set: Option<GlobSet>,
}

impl GlobMatcher {
    pub fn is_match(&self, value: &str) -> bool {
        self.exact.iter().any(|e| **e == *value)
            || self.prefixes.iter().any(|p| value.starts_with(&**p))
            || self.suffixes.iter().any(|s| value.ends_with(&**s))
            || self.name_prefixes.iter().any(|p| {
                value
                    .strip_prefix(&**p)
                    .is_some_and(|rest| !rest.contains('/'))
            })
            || self.name_suffixes.iter().any(|s| {
                value
                    .strip_suffix(&**s)
                    .is_some_and(|rest| !rest.contains('/'))
            })
            || self.set.as_ref().is_some_and(|set| set.is_match(value))
    }

    /// Adds `pattern` as a plain string test if its shape allows; returns
    /// false when it needs the glob engine.
    pub fn add_simple(&mut self, pattern: &str) -> bool {
        let is_literal =
            |s: &str| !s.is_empty() && !s.contains(['*', '?', '[', ']', '{', '}', '\\']);
        if is_literal(pattern) {
            self.exact.push(pattern.into());
            return true;
        }
        // `DIR/**` matches everything below DIR (not DIR itself).
        if let Some(dir) = pattern.strip_suffix("/**") {
            if is_literal(dir) {
                self.prefixes.push(format!("{dir}/").into());
                return true;
            }
        }
        if let Some(literal) = pattern.strip_suffix('*') {
            if is_literal(literal) {
                self.name_prefixes.push(literal.into());
                return true;
            }
        }
        if let Some(literal) = pattern.strip_prefix('*') {
            if is_literal(literal) {
                self.name_suffixes.push(literal.into());
                return true;
            }
        }
        if let Some(rest) = pattern.strip_prefix("**/") {
            // `**/*.EXT`: any file name ending in `.EXT`.
            if let Some(ext) = rest.strip_prefix('*') {
                if is_literal(ext) && !ext.contains('/') {
                    self.suffixes.push(ext.into());
                    return true;
                }
            }
            // `**/NAME` (or `**/a/b`): the path is NAME or ends with `/NAME`.
            if is_literal(rest) {
                self.exact.push(rest.into());
                self.suffixes.push(format!("/{rest}").into());
                return true;
            }
        }
        false
    }
}

#[derive(Clone, Debug)]
pub enum Cmp {
    Gt,
    Gte,
    Lt,
    Lte,
}

#[derive(Clone, Debug)]
pub enum Op {
    StrEq(Box<str>),
    StrIn(FxHashSet<Box<str>>),
    Glob(GlobMatcher),
    Prefix(Vec<Box<str>>),
    Suffix(Vec<Box<str>>),
    Contains(Vec<Box<str>>),
    Cidr(Vec<IpNet>),
    NumEq(Num),
    NumIn(FxHashSet<i128>),
    Compare(Cmp, Num),
    BitsAll(u64),
    BitsAny(u64),
    BoolEq(bool),
    Exists(bool),
}

impl Cond {
    /// A rough cost, to test cheap conditions first within `all`.
    pub fn cost(&self) -> u32 {
        match self {
            Cond::Always | Cond::Kind(_) => 0,
            Cond::All(items) | Cond::Any(items) => items.iter().map(Cond::cost).sum::<u32>() + 1,
            Cond::Not(inner) => inner.cost(),
            Cond::Shared(inner) => inner.cost(),
            Cond::Test { field, op } => {
                let field_cost = match field {
                    Field::Cmdline => 8,
                    _ => 0,
                };
                let op_cost = match op {
                    Op::Exists(_) | Op::BoolEq(_) | Op::NumEq(_) | Op::Compare(..) => 1,
                    Op::BitsAll(_) | Op::BitsAny(_) | Op::NumIn(_) => 1,
                    Op::StrEq(_) => 2,
                    Op::StrIn(_) => 3,
                    Op::Prefix(_) | Op::Suffix(_) => 3,
                    Op::Contains(_) => 4,
                    Op::Glob(m) if m.set.is_none() => 4,
                    Op::Glob(_) | Op::Cidr(_) => 6,
                };
                field_cost + op_cost
            }
        }
    }

    /// An egress rule's condition, held to events with a destination
    /// address: `kind` connect and/or udp_send with a `not:` on
    /// destinations (`net.dst.ip`, `net.dst.port`, `net.dst_name`) speaks of
    /// network peers. A connect or send on a unix socket has no destination
    /// address, so the `not:` would hold for every one of them (glibc's
    /// probe of the nscd socket, a send to syslog), and the kernel's
    /// `cgroup/connect*` and `cgroup/sendmsg*` never see them: the rule
    /// would alert "would-deny" on local IPC it can never refuse. Any other
    /// condition is returned as it is.
    pub fn scoped_to_network_peers(self) -> Cond {
        let egress = KindSet::of(Kind::Connect).union(KindSet::of(Kind::UdpSend));
        let kinds = self.kinds();
        let is_egress = kinds != KindSet::NONE
            && kinds.intersect(egress) == kinds
            && self.terms().iter().any(|term| match term {
                Cond::Not(inner) => inner.tests_only_destinations(),
                _ => false,
            });
        if !is_egress {
            return self;
        }
        let has_address = Cond::Test {
            field: Field::NetDstIp,
            op: Op::Exists(true),
        };
        match self {
            Cond::All(mut items) => {
                items.push(has_address);
                Cond::All(items)
            }
            other => Cond::All(vec![other, has_address]),
        }
    }

    /// The terms of a top-level `all` (through shared macros), or the
    /// condition itself.
    pub fn terms(&self) -> Vec<&Cond> {
        fn flatten<'a>(cond: &'a Cond, out: &mut Vec<&'a Cond>) {
            match cond {
                Cond::All(items) => items.iter().for_each(|item| flatten(item, out)),
                Cond::Shared(inner) => flatten(inner, out),
                other => out.push(other),
            }
        }
        let mut out = Vec::new();
        flatten(self, &mut out);
        out
    }

    /// Whether every test in this condition compares a destination field
    /// with values (a test of its presence is not a list of destinations).
    fn tests_only_destinations(&self) -> bool {
        match self {
            Cond::All(items) | Cond::Any(items) => items.iter().all(Cond::tests_only_destinations),
            Cond::Not(inner) => inner.tests_only_destinations(),
            Cond::Shared(inner) => inner.tests_only_destinations(),
            Cond::Test {
                op: Op::Exists(_), ..
            } => false,
            Cond::Test { field, .. } => matches!(
                field,
                Field::NetDstIp | Field::NetDstPort | Field::NetDstName
            ),
            Cond::Always | Cond::Kind(_) => false,
        }
    }

    /// Orders the terms of every `all` cheapest first; `all` holds the same
    /// whatever the order, and most events fail on a cheap term.
    pub fn optimize(self) -> Cond {
        match self {
            Cond::All(items) => {
                let mut items: Vec<Cond> = items.into_iter().map(Cond::optimize).collect();
                items.sort_by_key(Cond::cost);
                Cond::All(items)
            }
            Cond::Any(items) => {
                let mut items: Vec<Cond> = items.into_iter().map(Cond::optimize).collect();
                items.sort_by_key(Cond::cost);
                Cond::Any(items)
            }
            Cond::Not(inner) => Cond::Not(Box::new(inner.optimize())),
            other => other,
        }
    }

    pub fn matches(&self, ev: &Event) -> bool {
        match self {
            Cond::Always => true,
            Cond::All(items) => items.iter().all(|c| c.matches(ev)),
            Cond::Any(items) => items.iter().any(|c| c.matches(ev)),
            Cond::Not(inner) => !inner.matches(ev),
            Cond::Shared(inner) => inner.matches(ev),
            Cond::Kind(set) => set.contains(ev.kind),
            Cond::Test { field, op } => op.holds(&field.get(ev)),
        }
    }

    /// The kinds this condition can possibly match, for the per-kind index.
    pub fn kinds(&self) -> KindSet {
        match self {
            Cond::Kind(set) => *set,
            Cond::All(items) => items
                .iter()
                .fold(KindSet::ALL, |acc, c| acc.intersect(c.kinds())),
            Cond::Any(items) => items
                .iter()
                .fold(KindSet::NONE, |acc, c| acc.union(c.kinds())),
            Cond::Shared(inner) => inner.kinds(),
            Cond::Always | Cond::Not(_) | Cond::Test { .. } => KindSet::ALL,
        }
    }
}

impl Op {
    fn holds(&self, value: &Val<'_>) -> bool {
        match self {
            Op::Exists(want) => value.is_present() == *want,
            Op::StrEq(s) => value.any_str(|v| v == &**s),
            Op::StrIn(set) => value.any_str(|v| set.contains(v)),
            Op::Glob(matcher) => value.any_str(|v| matcher.is_match(v)),
            Op::Prefix(items) => value.any_str(|v| items.iter().any(|p| v.starts_with(&**p))),
            Op::Suffix(items) => value.any_str(|v| items.iter().any(|p| v.ends_with(&**p))),
            Op::Contains(items) => value.any_str(|v| items.iter().any(|p| v.contains(&**p))),
            Op::Cidr(nets) => value.any_ip(|ip| {
                let ip = canonical_ip(ip);
                nets.iter().any(|net| net.contains(&ip))
            }),
            Op::NumEq(n) => value.any_num(|v| v.compare(*n) == Some(Ordering::Equal)),
            Op::NumIn(set) => value.any_num(|v| v.as_int().is_some_and(|i| set.contains(&i))),
            Op::Compare(cmp, n) => value.any_num(|v| {
                matches!(
                    (cmp, v.compare(*n)),
                    (Cmp::Gt, Some(Ordering::Greater))
                        | (Cmp::Gte, Some(Ordering::Greater | Ordering::Equal))
                        | (Cmp::Lt, Some(Ordering::Less))
                        | (Cmp::Lte, Some(Ordering::Less | Ordering::Equal))
                )
            }),
            Op::BitsAll(mask) => value.any_num(|v| as_bits(v).is_some_and(|b| b & mask == *mask)),
            Op::BitsAny(mask) => value.any_num(|v| as_bits(v).is_some_and(|b| b & mask != 0)),
            Op::BoolEq(want) => matches!(value, Val::Bool(b) if b == want),
        }
    }
}

fn as_bits(n: Num) -> Option<u64> {
    n.as_int().and_then(|i| u64::try_from(i).ok())
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) are matched as IPv4, so a
/// rule's `10.0.0.0/8` covers a dual-stack socket too.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}
