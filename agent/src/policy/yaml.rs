//! A small owned YAML tree with positions, built from saphyr's marked nodes.
//!
//! The compiler works on this tree so that every later error (unknown key,
//! wrong type, bad glob, ...) can name the line and column of the node at
//! fault.

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

use super::error::{Located, LocatedError, Pos};

/// Nesting deeper than this is refused: policies are shallow, and the
/// compiler recurses over the tree.
pub const MAX_DEPTH: usize = 64;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

/// Parses one YAML document. An empty file gives `None`.
pub fn parse_document(text: &str) -> Located<Option<Node>> {
    check_nesting(text)?;
    let documents = MarkedYaml::load_from_str(text).map_err(|error| {
        let mark = error.marker();
        LocatedError::new(
            Pos::new(mark.line().max(1), mark.col() + 1),
            format!("this is not valid YAML: {}", error.info()),
        )
    })?;
    let mut documents = documents.into_iter();
    let Some(first) = documents.next() else {
        return Ok(None);
    };
    if let Some(second) = documents.next() {
        return Err(LocatedError::new(
            pos_of(&second),
            "a policy file holds a single YAML document; remove the `---` separator",
        ));
    }
    convert(&first, 0).map(Some)
}

/// Refuses deeply nested flow collections before saphyr builds (and later
/// drops) a tree deep enough to exhaust the stack.
fn check_nesting(text: &str) -> Located<()> {
    let mut depth = 0usize;
    let (mut line, mut column) = (1usize, 1usize);
    for ch in text.chars() {
        match ch {
            '[' | '{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(LocatedError::new(
                        Pos::new(line, column),
                        format!("nesting is deeper than {MAX_DEPTH} levels"),
                    ));
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if ch == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    Ok(())
}

fn pos_of(node: &MarkedYaml<'_>) -> Pos {
    Pos::new(node.span.start.line().max(1), node.span.start.col() + 1)
}

fn convert(node: &MarkedYaml<'_>, depth: usize) -> Located<Node> {
    let pos = pos_of(node);
    if depth > MAX_DEPTH {
        return Err(LocatedError::new(
            pos,
            format!("nesting is deeper than {MAX_DEPTH} levels"),
        ));
    }
    let value = match &node.data {
        YamlData::Value(scalar) => convert_scalar(scalar),
        YamlData::Representation(text, _, _) => Value::Str(text.to_string()),
        YamlData::Sequence(items) => Value::Seq(
            items
                .iter()
                .map(|item| convert(item, depth + 1))
                .collect::<Located<Vec<_>>>()?,
        ),
        YamlData::Mapping(entries) => {
            let mut out = Vec::with_capacity(entries.len());
            for (key, value) in entries {
                out.push((convert(key, depth + 1)?, convert(value, depth + 1)?));
            }
            Value::Map(out)
        }
        YamlData::Tagged(_, inner) => return convert(inner, depth + 1),
        YamlData::Alias(_) | YamlData::BadValue => {
            return Err(LocatedError::new(pos, "this value could not be read"))
        }
    };
    Ok(Node { pos, value })
}

fn convert_scalar(scalar: &Scalar<'_>) -> Value {
    match scalar {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(*b),
        Scalar::Integer(i) => Value::Int(*i),
        Scalar::FloatingPoint(f) => Value::Float(f.into_inner()),
        Scalar::String(s) => Value::Str(s.to_string()),
    }
}

impl Node {
    /// "a string", "a list", ... for error sentences.
    pub fn describe(&self) -> &'static str {
        match self.value {
            Value::Null => "empty",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn err(&self, message: impl Into<String>) -> LocatedError {
        LocatedError::new(self.pos, message)
    }

    pub fn as_str(&self, what: &str) -> Located<&str> {
        match &self.value {
            Value::Str(s) => Ok(s),
            _ => Err(self.err(format!("{what} must be a string, not {}", self.describe()))),
        }
    }

    /// A scalar as text: strings as is, numbers and booleans written out.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    pub fn as_bool(&self, what: &str) -> Located<bool> {
        match self.value {
            Value::Bool(b) => Ok(b),
            _ => Err(self.err(format!(
                "{what} must be true or false, not {}",
                self.describe()
            ))),
        }
    }

    pub fn as_seq(&self, what: &str) -> Located<&[Node]> {
        match &self.value {
            Value::Seq(items) => Ok(items),
            _ => Err(self.err(format!("{what} must be a list, not {}", self.describe()))),
        }
    }

    /// A mapping whose keys are all strings.
    pub fn as_map(&self, what: &str) -> Located<Vec<(&str, &Node, &Node)>> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .map(|(key, value)| Ok((key.as_str("a key")?, key, value)))
                .collect(),
            _ => Err(self.err(format!("{what} must be a mapping, not {}", self.describe()))),
        }
    }

    /// The JSON form of this node, for events written in rule tests.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.scalar_text().unwrap_or_default(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// A canonical text of the node without positions: two rules with the
    /// same fingerprint behave the same, so their state survives a reload.
    pub fn fingerprint(&self) -> String {
        self.to_json().to_string()
    }
}

/// The value of key `name` among a map's `entries`, if present.
pub fn entry<'a>(entries: &[(&str, &'a Node, &'a Node)], name: &str) -> Option<&'a Node> {
    entries
        .iter()
        .find(|(key, _, _)| *key == name)
        .map(|(_, _, value)| *value)
}

/// Rejects keys that are not in `allowed`, naming the allowed ones.
pub fn check_keys(entries: &[(&str, &Node, &Node)], allowed: &[&str], what: &str) -> Located<()> {
    for (key, key_node, _) in entries {
        if !allowed.contains(key) {
            return Err(key_node.err(format!(
                "unknown key `{key}` in {what}; expected one of: {}",
                allowed.join(", ")
            )));
        }
    }
    Ok(())
}

/// A duration in humantime's syntax (`30s`, `500ms`, `5m`, `1h`, `2d`,
/// `1h 30m`), or a whole number of seconds.
pub fn parse_duration_ns(node: &Node, what: &str) -> Located<u64> {
    let bad = || {
        node.err(format!(
            "{what} must be a duration such as 30s, 500ms, 5m or 1h"
        ))
    };
    let duration = match &node.value {
        Value::Int(i) if *i > 0 => return Ok((*i as u64).saturating_mul(1_000_000_000)),
        Value::Str(s) => humantime::parse_duration(s.trim()).map_err(|_| bad())?,
        _ => return Err(bad()),
    };
    match u64::try_from(duration.as_nanos()) {
        Ok(ns) if ns > 0 => Ok(ns),
        _ => Err(bad()),
    }
}
