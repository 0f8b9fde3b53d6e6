//! Candidate actions in a model's answer, and whether an exec, open or
//! connect is one of them.
//!
//! An answer names actions in its tool calls' arguments (every string in
//! them) and in its text's code (fenced blocks and inline code spans).
//! From these come commands (a line of code, a tool's command argument),
//! paths (words that start with `/`, `~/` or `./`) and hosts (the host of
//! every URL, and bare `host:port` words). Matching is literal: an action
//! is caused when its command line, path or destination is what the answer
//! said, not when it merely looks alike.

use std::{collections::BTreeSet, net::IpAddr};

use serde_json::Value;

use crate::event::{Event, Kind};

/// What a candidate names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum What {
    Command,
    Path,
    Host,
}

impl What {
    pub fn as_str(self) -> &'static str {
        match self {
            What::Command => "command",
            What::Path => "path",
            What::Host => "host",
        }
    }
}

/// One action an answer asked for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Candidate {
    pub what: What,
    /// The command line, the path, or the host (`name` or `name:port`).
    pub text: String,
    /// The tool call it came from; `None` for the answer's text.
    pub tool: Option<String>,
}

/// Candidates kept per answer.
pub const MAX_CANDIDATES: usize = 64;
/// Longest command kept as a candidate.
const MAX_COMMAND: usize = 1024;

/// The candidates of an answer: its tool calls and its text.
pub fn extract(tool_calls: &[(String, String)], text: &str) -> Vec<Candidate> {
    let mut out = BTreeSet::new();
    for (name, arguments) in tool_calls {
        let mut strings = Vec::new();
        match serde_json::from_str::<Value>(arguments) {
            Ok(json) => strings_in(&json, &mut strings),
            // Arguments cut short still name what they name.
            Err(_) => strings.push(arguments.clone()),
        }
        for s in strings {
            add_from_code(&s, Some(name), &mut out);
        }
    }
    for code in code_spans(text) {
        add_from_code(code, None, &mut out);
    }
    out.into_iter().take(MAX_CANDIDATES).collect()
}

/// The hosts a text names (URLs, `host:port`), lower-case.
pub fn hosts_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for word in words(text) {
        if let Some(host) = host_of_word(word) {
            out.insert(host);
        }
    }
    out
}

fn strings_in(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| strings_in(v, out)),
        Value::Object(map) => map.values().for_each(|v| strings_in(v, out)),
        _ => {}
    }
}

/// Fenced code blocks and inline code spans of a markdown text.
fn code_spans(text: &str) -> Vec<&str> {
    let mut spans = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        // The info string (`bash`, `sh`) ends at the first newline.
        let body_start = after.find('\n').map_or(after.len(), |n| n + 1);
        let body = &after[body_start..];
        let end = body.find("```").unwrap_or(body.len());
        spans.push(&body[..end]);
        rest = &body[(end + 3).min(body.len())..];
    }
    // Inline spans outside fences.
    let outside: Vec<&str> = text.split("```").step_by(2).collect();
    for part in outside {
        let mut pieces = part.split('`');
        pieces.next();
        while let Some(code) = pieces.next() {
            spans.push(code);
            pieces.next();
        }
    }
    spans
}

/// Commands, paths and hosts from a piece of code or a tool argument.
fn add_from_code(code: &str, tool: Option<&String>, out: &mut BTreeSet<Candidate>) {
    for line in code.lines() {
        let line = line.trim();
        let line = line.strip_prefix("$ ").unwrap_or(line).trim();
        if line.is_empty() || line.starts_with('#') || line.len() > MAX_COMMAND {
            continue;
        }
        let candidate = |what, text: String| Candidate {
            what,
            text,
            tool: tool.cloned(),
        };
        out.insert(candidate(What::Command, line.to_owned()));
        for word in words(line) {
            if is_path(word) {
                out.insert(candidate(What::Path, word.to_owned()));
            }
            if let Some(host) = host_of_word(word) {
                out.insert(candidate(What::Host, host));
            }
        }
    }
}

/// Words of a command line, quotes and shell punctuation stripped.
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| c.is_whitespace() || matches!(c, '|' | ';' | '&' | '(' | ')' | '<' | '>'))
        .map(|w| w.trim_matches(|c| matches!(c, '\'' | '"' | '`' | ',' | '{' | '}' | '[' | ']')))
        .filter(|w| !w.is_empty())
}

fn is_path(word: &str) -> bool {
    (word.starts_with('/') || word.starts_with("~/") || word.starts_with("./"))
        && word.len() > 1
        && !word.starts_with("//")
}

/// The host of a URL word, or of a `host:port` word; `None` otherwise.
fn host_of_word(word: &str) -> Option<String> {
    let rest = match word.split_once("://") {
        Some((scheme, rest)) if scheme.chars().all(|c| c.is_ascii_alphanumeric()) => rest,
        Some(_) => return None,
        None => {
            // A bare `host:port` (an address a command connects to).
            let (host, port) = word.rsplit_once(':')?;
            if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) || host.is_empty() {
                return None;
            }
            if !(host.parse::<IpAddr>().is_ok() || host.contains('.')) {
                return None;
            }
            return Some(word.to_ascii_lowercase());
        }
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    if authority.is_empty() {
        return None;
    }
    Some(authority.to_ascii_lowercase())
}

/// The candidate an event carries out, if any.
pub fn matching<'c>(event: &Event, candidates: &'c [Candidate]) -> Option<&'c Candidate> {
    match event.kind {
        Kind::Exec => {
            let argv = &event.process.argv;
            candidates.iter().find(|c| match c.what {
                What::Command => command_matches(argv, &c.text),
                What::Path => event.process.exe == c.text,
                What::Host => false,
            })
        }
        Kind::Open => {
            let path = &event.file.as_ref()?.path;
            candidates
                .iter()
                .find(|c| c.what == What::Path && path_matches(path, &c.text))
        }
        Kind::Connect => {
            let net = event.net.as_ref()?;
            let dst = net.dst.as_ref()?;
            candidates.iter().find(|c| {
                c.what == What::Host
                    && host_matches(&c.text, dst.ip, dst.port, net.dst_name.as_deref())
            })
        }
        _ => None,
    }
}

/// An exec carries out a command when its argv is the command's words
/// (`cat /x` for `cat /x`), or when one argument is the whole command
/// (`sh -c 'cat /x'`, `python3 -c '...'`).
fn command_matches(argv: &[String], command: &str) -> bool {
    let Some(program) = argv.first() else {
        return false;
    };
    if argv.iter().skip(1).any(|arg| arg.trim() == command) {
        return true;
    }
    let words: Vec<&str> = words(command).collect();
    let Some(first) = words.first() else {
        return false;
    };
    let base = |s: &str| s.rsplit('/').next().unwrap_or(s).to_owned();
    if base(program) != base(first) {
        return false;
    }
    // Every argument of the exec is a word of the command; a bare program
    // matches only a bare command.
    argv.iter().skip(1).all(|arg| words.contains(&arg.as_str()))
        && (argv.len() > 1 || words.len() == 1)
}

/// An open carries out a path when it is the path, or when the path is
/// relative to a home (`~/`) or the working directory (`./`) and the open
/// ends with it.
fn path_matches(opened: &str, candidate: &str) -> bool {
    if opened == candidate {
        return true;
    }
    let relative = candidate
        .strip_prefix("~/")
        .or_else(|| candidate.strip_prefix("./"));
    match relative {
        Some(tail) if !tail.is_empty() => opened
            .strip_suffix(tail)
            .is_some_and(|head| head.ends_with('/')),
        _ => false,
    }
}

/// A connect carries out a host when its address, or the name it was
/// resolved from, is the host (and the port, when the host names one).
fn host_matches(candidate: &str, ip: IpAddr, port: u16, name: Option<&str>) -> bool {
    let (host, want_port) = split_port(candidate);
    if want_port.is_some_and(|p| p != port) {
        return false;
    }
    if let Ok(addr) = host.parse::<IpAddr>() {
        return addr == ip;
    }
    name.is_some_and(|n| n.eq_ignore_ascii_case(host))
}

/// `host:port` → (host, port); `[v6]:port` too; a bare host has no port.
fn split_port(host: &str) -> (&str, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[') {
        let (addr, tail) = rest.split_once(']').unwrap_or((rest, ""));
        return (addr, tail.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => (name, port.parse().ok()),
        _ => (host, None),
    }
}

#[cfg(test)]
#[path = "candidates_tests.rs"]
mod tests;
