//! Relations between the steps of a sequence: a later step's field compared
//! with an earlier step's. They say what a plain condition cannot: "a secret
//! of another kind than the first" (`differs`), "at least half as many bytes
//! as the model file had" (`at_least`).
//!
//! ```yaml
//! - name: second-kind
//!   when: {kind: open, file.class: secret}
//!   differs: {field: file.secret_kind, from: first-secret}
//! - name: upload
//!   when: {kind: tcp_summary, net.dst_external: true}
//!   at_least: {field: net.bytes_sent, from: model-open, of: file.size, ratio: 0.5}
//! ```

use super::{
    error::Located,
    field::{Field, FieldType, Num, Val},
    yaml::{check_keys, entry, Node, Value},
};
use crate::event::Event;

/// One relation of a step with an earlier step.
#[derive(Debug, Clone)]
pub enum Relation {
    /// The field differs from the same field of step `step` (both present).
    Differs { field: Field, step: usize },
    /// `field` ≥ `ratio` × `of` of step `step` (both present numbers).
    AtLeast {
        field: Field,
        step: usize,
        of: Field,
        ratio: f64,
    },
}

/// A field's value as something two events can be compared on.
#[derive(Debug, PartialEq)]
enum Scalar {
    Text(String),
    Number(f64),
    Flag(bool),
}

fn scalar(value: Val<'_>) -> Option<Scalar> {
    match value {
        Val::Str(s) => Some(Scalar::Text(s.to_string())),
        Val::Owned(s) => Some(Scalar::Text(s)),
        Val::Num(n) => Some(Scalar::Number(number(n))),
        Val::Bool(b) => Some(Scalar::Flag(b)),
        _ => None,
    }
}

fn number(n: Num) -> f64 {
    match n {
        Num::Int(i) => i as f64,
        Num::Float(f) => f,
    }
}

impl Relation {
    /// Whether `ev`, as step `index` of a partial match whose earlier
    /// events are `earlier`, keeps the relation.
    pub fn holds(&self, ev: &Event, earlier: &[Event]) -> bool {
        match self {
            Relation::Differs { field, step } => {
                let Some(before) = earlier.get(*step) else {
                    return false;
                };
                match (scalar(field.get(ev)), scalar(field.get(before))) {
                    (Some(now), Some(then)) => now != then,
                    _ => false,
                }
            }
            Relation::AtLeast {
                field,
                step,
                of,
                ratio,
            } => {
                let Some(before) = earlier.get(*step) else {
                    return false;
                };
                match (scalar(field.get(ev)), scalar(of.get(before))) {
                    (Some(Scalar::Number(now)), Some(Scalar::Number(then))) => now >= ratio * then,
                    _ => false,
                }
            }
        }
    }
}

/// The keys a step may hold besides `name` and `when`.
pub const RELATION_KEYS: &[&str] = &["differs", "at_least"];

/// Compiles the relations of the step at `index`, whose earlier steps are
/// named `names`.
pub fn compile(key: &str, node: &Node, index: usize, names: &[String]) -> Located<Relation> {
    let entries = node.as_map(&format!("`{key}`"))?;
    let get = |name: &str| entry(&entries, name);
    let field_of = |name: &str, numeric: bool| -> Located<Field> {
        let node = get(name).ok_or_else(|| node.err(format!("`{key}` needs `{name}`")))?;
        let path = node.as_str(&format!("`{name}`"))?;
        let (field, ty) =
            Field::lookup(path).ok_or_else(|| node.err(format!("unknown field `{path}`")))?;
        let scalar = matches!(
            ty,
            FieldType::Str | FieldType::Ip | FieldType::Num | FieldType::Bool
        );
        if !scalar || (numeric && ty != FieldType::Num) {
            let wanted = if numeric {
                "a number"
            } else {
                "a single value"
            };
            return Err(node.err(format!(
                "`{path}` is {}; `{key}` compares {wanted}",
                ty.describe()
            )));
        }
        Ok(field)
    };
    let from = get("from")
        .ok_or_else(|| node.err(format!("`{key}` needs `from` (an earlier step's name)")))?;
    let from_name = from.as_str("`from`")?;
    let step = names[..index]
        .iter()
        .position(|n| n == from_name)
        .ok_or_else(|| {
            from.err(format!(
                "`from: {from_name}` must name an earlier step of this sequence"
            ))
        })?;
    match key {
        "differs" => {
            check_keys(&entries, &["field", "from"], "`differs`")?;
            Ok(Relation::Differs {
                field: field_of("field", false)?,
                step,
            })
        }
        _ => {
            check_keys(&entries, &["field", "from", "of", "ratio"], "`at_least`")?;
            let ratio = match get("ratio").map(|n| &n.value) {
                None => 1.0,
                Some(Value::Int(i)) if *i >= 0 => *i as f64,
                Some(Value::Float(f)) if *f >= 0.0 => *f,
                Some(_) => {
                    return Err(get("ratio")
                        .expect("present")
                        .err("`ratio` must be a number of at least 0"))
                }
            };
            let field = field_of("field", true)?;
            let of = match get("of") {
                Some(_) => field_of("of", true)?,
                None => field,
            };
            Ok(Relation::AtLeast {
                field,
                step,
                of,
                ratio,
            })
        }
    }
}
