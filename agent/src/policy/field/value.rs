//! The value of a field in one event ([`Val`]) and the numbers rules
//! compare ([`Num`]).

use std::{cmp::Ordering, net::IpAddr};

use crate::event::{Ancestor, ToolCall};

/// A number from an event or a rule; integers compare exactly.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    pub fn compare(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    pub fn as_int(self) -> Option<i128> {
        match self {
            Num::Int(i) => Some(i),
            Num::Float(_) => None,
        }
    }
}

/// The value of a field in one event, borrowed from it where possible.
#[derive(Debug)]
pub enum Val<'a> {
    Missing,
    Str(&'a str),
    Owned(String),
    /// An address; string operators see its text, `cidr` the address.
    Ip(IpAddr),
    Strs(&'a [String]),
    AncestorExes(&'a [Ancestor]),
    AncestorNames(&'a [Ancestor]),
    AncestorComms(&'a [Ancestor]),
    AncestorPids(&'a [Ancestor]),
    /// The names of a response's tool calls.
    ToolNames(&'a [ToolCall]),
    Num(Num),
    Bool(bool),
    Present,
}

impl Val<'_> {
    /// True if `pred` holds for the string, or for any string of a list.
    pub fn any_str(&self, mut pred: impl FnMut(&str) -> bool) -> bool {
        match self {
            Val::Str(s) => pred(s),
            Val::Owned(s) => pred(s),
            Val::Ip(ip) => pred(&ip.to_string()),
            Val::Strs(items) => items.iter().any(|s| pred(s)),
            Val::AncestorExes(items) => items.iter().any(|a| pred(&a.exe)),
            Val::AncestorNames(items) => items.iter().any(|a| pred(basename(&a.exe))),
            Val::AncestorComms(items) => items.iter().any(|a| pred(&a.comm)),
            Val::ToolNames(items) => items.iter().any(|t| pred(&t.name)),
            _ => false,
        }
    }

    /// True if `pred` holds for the number, or for any number of a list.
    pub fn any_num(&self, mut pred: impl FnMut(Num) -> bool) -> bool {
        match self {
            Val::Num(n) => pred(*n),
            Val::AncestorPids(items) => items.iter().any(|a| pred(Num::Int(a.pid.into()))),
            _ => false,
        }
    }

    /// True if `pred` holds for the address.
    pub fn any_ip(&self, mut pred: impl FnMut(IpAddr) -> bool) -> bool {
        match self {
            Val::Ip(ip) => pred(*ip),
            _ => false,
        }
    }

    pub fn is_present(&self) -> bool {
        !matches!(self, Val::Missing)
    }
}

/// The last component of a path (`/usr/bin/python3` → `python3`).
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}
