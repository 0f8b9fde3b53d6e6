//! Turns condition nodes into [`Cond`]s: resolves field paths, list and
//! macro names, builds glob and CIDR sets, and type-checks every operator
//! against its field.

use std::collections::HashMap;
use std::sync::Arc;

use globset::{GlobBuilder, GlobSetBuilder};
use ipnet::IpNet;
use rustc_hash::FxHashSet;

use super::cond::{Cmp, Cond, GlobMatcher, KindSet, Op};
use super::error::{Located, LocatedError, PolicyError, Pos};
use super::field::{Field, FieldType, Num};
use super::yaml::{Node, Value};
use crate::event::Kind;

/// A named list (`lists:`), kept as nodes: it is compiled at each use, as a
/// string set or a number set depending on the field it is used with.
#[derive(Clone, Debug)]
pub struct ListDef {
    pub file: Arc<str>,
    pub pos: Pos,
    pub items: Vec<Node>,
}

#[derive(Clone, Debug)]
pub struct MacroDef {
    pub file: Arc<str>,
    pub pos: Pos,
    pub node: Node,
}

enum MacroState {
    Compiling,
    Done(Arc<Cond>),
    Failed,
}

/// Compiles conditions of one policy set; macros are compiled once each.
pub struct Compiler<'a> {
    lists: &'a HashMap<String, ListDef>,
    macros: &'a HashMap<String, MacroDef>,
    macro_state: HashMap<String, MacroState>,
    /// Macros being expanded right now (macros using macros).
    macro_depth: usize,
    /// Errors found inside macro definitions, reported against their file.
    pub macro_errors: Vec<PolicyError>,
}

/// Macros may use macros up to this depth.
pub const MAX_MACRO_DEPTH: usize = 32;

const OPERATORS: &[&str] = &[
    "equals", "in", "glob", "prefix", "suffix", "contains", "cidr", "gt", "gte", "lt", "lte",
    "exists", "bits_all", "bits_any",
];

impl<'a> Compiler<'a> {
    pub fn new(
        lists: &'a HashMap<String, ListDef>,
        macros: &'a HashMap<String, MacroDef>,
    ) -> Compiler<'a> {
        Compiler {
            lists,
            macros,
            macro_state: HashMap::new(),
            macro_depth: 0,
            macro_errors: Vec::new(),
        }
    }

    /// A condition: a mapping whose entries must all hold.
    pub fn condition(&mut self, node: &Node) -> Located<Cond> {
        let entries = node.as_map("a condition")?;
        let mut parts = Vec::with_capacity(entries.len());
        for (key, key_node, value) in entries {
            parts.push(match key {
                "all" => Cond::All(self.condition_list(value, "all")?),
                "any" => Cond::Any(self.condition_list(value, "any")?),
                "not" => Cond::Not(Box::new(self.condition(value)?)),
                "macro" => self.macro_ref(value)?,
                path => self.field_test(path, key_node, value)?,
            });
        }
        Ok(match parts.len() {
            0 => Cond::Always,
            1 => parts.pop().unwrap_or(Cond::Always),
            _ => Cond::All(parts),
        })
    }

    fn condition_list(&mut self, node: &Node, what: &str) -> Located<Vec<Cond>> {
        let items = node.as_seq(&format!("`{what}`"))?;
        if items.is_empty() {
            return Err(node.err(format!("`{what}` needs at least one condition")));
        }
        items.iter().map(|item| self.condition(item)).collect()
    }

    fn macro_ref(&mut self, node: &Node) -> Located<Cond> {
        let name = node.as_str("a macro name")?;
        let Some(def) = self.macros.get(name) else {
            return Err(node.err(format!("unknown macro `{name}`")));
        };
        match self.macro_state.get(name) {
            Some(MacroState::Done(cond)) => return Ok(Cond::Shared(cond.clone())),
            Some(MacroState::Compiling) => {
                return Err(node.err(format!("macro `{name}` refers to itself")))
            }
            Some(MacroState::Failed) => {
                return Err(node.err(format!(
                    "macro `{name}` has an error (reported at its definition)"
                )))
            }
            None => {}
        }
        if self.macro_depth >= MAX_MACRO_DEPTH {
            return Err(node.err(format!(
                "macros nest deeper than {MAX_MACRO_DEPTH} levels at `{name}`"
            )));
        }
        self.macro_state
            .insert(name.to_string(), MacroState::Compiling);
        self.macro_depth += 1;
        let compiled = self.condition(&def.node);
        self.macro_depth -= 1;
        match compiled {
            Ok(cond) => {
                let cond = Arc::new(cond.optimize());
                self.macro_state
                    .insert(name.to_string(), MacroState::Done(cond.clone()));
                Ok(Cond::Shared(cond))
            }
            Err(error) => {
                self.macro_state
                    .insert(name.to_string(), MacroState::Failed);
                self.macro_errors.push(PolicyError {
                    file: def.file.to_string(),
                    pos: error.pos,
                    message: error.message,
                });
                Err(node.err(format!(
                    "macro `{name}` has an error (reported at its definition)"
                )))
            }
        }
    }

    /// Compiles every macro, so errors in unused macros are reported too.
    pub fn compile_all_macros(&mut self) {
        let mut names: Vec<&String> = self.macros.keys().collect();
        names.sort();
        for name in names {
            if self.macro_state.contains_key(name.as_str()) {
                continue;
            }
            let probe = Node {
                pos: Pos::default(),
                value: Value::Str(name.clone()),
            };
            let _ = self.macro_ref(&probe);
        }
    }

    pub fn field_test(&mut self, path: &str, key: &Node, value: &Node) -> Located<Cond> {
        let Some((field, ty)) = Field::lookup(path) else {
            return Err(key.err(format!(
                "unknown field `{path}`; see docs/policy.md for the field paths"
            )));
        };
        if ty == FieldType::Kind {
            return self.kind_test(value);
        }
        match &value.value {
            Value::Map(_) => {
                let entries = value.as_map("an operator mapping")?;
                if entries.is_empty() {
                    return Err(value.err(format!("`{path}` needs at least one operator")));
                }
                let mut tests = Vec::with_capacity(entries.len());
                for (op_name, op_key, operand) in entries {
                    let op = self.operator(path, ty, op_name, op_key, operand)?;
                    tests.push(Cond::Test { field, op });
                }
                Ok(if tests.len() == 1 {
                    tests.pop().unwrap_or(Cond::Always)
                } else {
                    Cond::All(tests)
                })
            }
            Value::Seq(_) => Ok(Cond::Test {
                field,
                op: self.operator(path, ty, "in", value, value)?,
            }),
            _ => Ok(Cond::Test {
                field,
                op: self.operator(path, ty, "equals", value, value)?,
            }),
        }
    }

    fn kind_test(&mut self, value: &Node) -> Located<Cond> {
        let names: Vec<&Node> = match &value.value {
            Value::Str(_) => vec![value],
            Value::Seq(items) => items.iter().collect(),
            Value::Map(_) => {
                let entries = value.as_map("an operator mapping")?;
                let mut set = KindSet::ALL;
                for (op, op_key, operand) in entries {
                    let kinds = match op {
                        "equals" => parse_kinds(&[operand])?,
                        "in" => {
                            parse_kinds_owned(&self.string_items(operand, "in")?)?
                        }
                        _ => {
                            return Err(op_key.err(format!(
                                "`kind` takes a kind name, a list of kinds, `equals` or `in`, not `{op}`"
                            )))
                        }
                    };
                    set = set.intersect(kinds);
                }
                return Ok(Cond::Kind(set));
            }
            _ => {
                return Err(value.err(format!(
                    "`kind` must be an event kind name, not {}",
                    value.describe()
                )))
            }
        };
        Ok(Cond::Kind(parse_kinds(&names)?))
    }

    fn operator(
        &mut self,
        path: &str,
        ty: FieldType,
        op: &str,
        op_key: &Node,
        operand: &Node,
    ) -> Located<Op> {
        if !OPERATORS.contains(&op) {
            return Err(op_key.err(format!(
                "unknown operator `{op}`; expected one of: {}",
                OPERATORS.join(", ")
            )));
        }
        let wrong_type = || {
            op_key.err(format!(
                "operator `{op}` does not apply to `{path}`, which is {}",
                ty.describe()
            ))
        };
        if op == "exists" {
            return Ok(Op::Exists(operand.as_bool("`exists`")?));
        }
        match ty {
            FieldType::Section => Err(op_key.err(format!(
                "`{path}` is an object; only `exists` applies to it"
            ))),
            FieldType::Bool => match op {
                "equals" => Ok(Op::BoolEq(operand.as_bool(&format!("`{path}`"))?)),
                _ => Err(wrong_type()),
            },
            FieldType::Num | FieldType::NumList => match op {
                "equals" => Ok(Op::NumEq(number(operand, path)?)),
                "in" => {
                    let items = self.items(operand, op)?;
                    let mut set = FxHashSet::default();
                    for item in &items {
                        match number(item, path)? {
                            Num::Int(i) => set.insert(i),
                            Num::Float(_) => {
                                return Err(item.err("`in` takes whole numbers for numeric fields"))
                            }
                        };
                    }
                    Ok(Op::NumIn(set))
                }
                "gt" => Ok(Op::Compare(Cmp::Gt, number(operand, path)?)),
                "gte" => Ok(Op::Compare(Cmp::Gte, number(operand, path)?)),
                "lt" => Ok(Op::Compare(Cmp::Lt, number(operand, path)?)),
                "lte" => Ok(Op::Compare(Cmp::Lte, number(operand, path)?)),
                "bits_all" | "bits_any" => {
                    let mask = match number(operand, path)? {
                        Num::Int(i) => u64::try_from(i).ok(),
                        Num::Float(_) => None,
                    }
                    .ok_or_else(|| {
                        operand.err(format!("`{op}` takes a non-negative whole number"))
                    })?;
                    Ok(if op == "bits_all" {
                        Op::BitsAll(mask)
                    } else {
                        Op::BitsAny(mask)
                    })
                }
                _ => Err(wrong_type()),
            },
            FieldType::Str | FieldType::Ip | FieldType::StrList | FieldType::Kind => match op {
                "equals" => Ok(Op::StrEq(scalar_string(operand, path)?.into())),
                "in" => Ok(Op::StrIn(
                    self.string_items(operand, op)?
                        .into_iter()
                        .map(|(s, _)| s.into_boxed_str())
                        .collect(),
                )),
                "glob" => self.globs(operand),
                "prefix" | "suffix" | "contains" => {
                    let items: Vec<Box<str>> = self
                        .string_items(operand, op)?
                        .into_iter()
                        .map(|(s, _)| s.into_boxed_str())
                        .collect();
                    Ok(match op {
                        "prefix" => Op::Prefix(items),
                        "suffix" => Op::Suffix(items),
                        _ => Op::Contains(items),
                    })
                }
                "cidr" if ty == FieldType::Ip => self.cidrs(operand),
                _ => Err(wrong_type()),
            },
        }
    }

    /// The items of an operand: a list, a single scalar, `{list: name}`, or
    /// (for `in`) a bare list name.
    fn items(&self, operand: &Node, op: &str) -> Located<Vec<Node>> {
        match &operand.value {
            Value::Seq(items) => Ok(items.clone()),
            Value::Str(name) if op == "in" => self.list(name, operand),
            Value::Map(_) => {
                let entries = operand.as_map("a list reference")?;
                match entries.as_slice() {
                    [("list", _, name)] => self.list(name.as_str("a list name")?, name),
                    _ => Err(operand.err(format!(
                        "`{op}` takes a value, a list of values or `{{list: NAME}}`"
                    ))),
                }
            }
            _ => Ok(vec![operand.clone()]),
        }
    }

    fn list(&self, name: &str, at: &Node) -> Located<Vec<Node>> {
        self.lists
            .get(name)
            .map(|def| def.items.clone())
            .ok_or_else(|| at.err(format!("unknown list `{name}`")))
    }

    fn string_items(&self, operand: &Node, op: &str) -> Located<Vec<(String, Pos)>> {
        self.items(operand, op)?
            .iter()
            .map(|item| {
                item.scalar_text().map(|s| (s, item.pos)).ok_or_else(|| {
                    item.err(format!("`{op}` takes strings, not {}", item.describe()))
                })
            })
            .collect()
    }

    fn globs(&self, operand: &Node) -> Located<Op> {
        let mut matcher = GlobMatcher::default();
        let mut builder = GlobSetBuilder::new();
        let mut complex = 0;
        for (pattern, pos) in self.string_items(operand, "glob")? {
            // Validate every pattern, even those matched as plain strings.
            let glob = GlobBuilder::new(&pattern)
                .literal_separator(true)
                .build()
                .map_err(|error| {
                    LocatedError::new(pos, format!("bad glob `{pattern}`: {}", error.kind()))
                })?;
            if !matcher.add_simple(&pattern) {
                builder.add(glob);
                complex += 1;
            }
        }
        if complex > 0 {
            matcher.set = Some(
                builder
                    .build()
                    .map_err(|error| operand.err(format!("bad glob: {error}")))?,
            );
        }
        Ok(Op::Glob(matcher))
    }

    fn cidrs(&self, operand: &Node) -> Located<Op> {
        let mut nets = Vec::new();
        for (text, pos) in self.string_items(operand, "cidr")? {
            let net = match text.parse::<IpNet>() {
                Ok(net) => net,
                // A bare address is a /32 or /128.
                Err(_) => match text.parse::<std::net::IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => {
                        return Err(LocatedError::new(
                            pos,
                            format!("bad CIDR `{text}`: expected an address/prefix such as 10.0.0.0/8 or fd00::/8"),
                        ))
                    }
                },
            };
            nets.push(net.trunc());
        }
        Ok(Op::Cidr(IpNet::aggregate(&nets)))
    }
}

fn parse_kinds(nodes: &[&Node]) -> Located<KindSet> {
    let mut set = KindSet::NONE;
    for node in nodes {
        let name = node.as_str("an event kind")?;
        let kind = Kind::parse(name).ok_or_else(|| {
            node.err(format!(
                "unknown event kind `{name}`; expected one of: {}",
                Kind::ALL.map(Kind::as_str).join(", ")
            ))
        })?;
        set = set.union(KindSet::of(kind));
    }
    Ok(set)
}

fn parse_kinds_owned(items: &[(String, Pos)]) -> Located<KindSet> {
    let mut set = KindSet::NONE;
    for (name, pos) in items {
        let kind = Kind::parse(name)
            .ok_or_else(|| LocatedError::new(*pos, format!("unknown event kind `{name}`")))?;
        set = set.union(KindSet::of(kind));
    }
    Ok(set)
}

fn scalar_string(node: &Node, path: &str) -> Located<String> {
    node.scalar_text().ok_or_else(|| {
        node.err(format!(
            "`{path}` compares with a string, not {}",
            node.describe()
        ))
    })
}

/// A number, or a byte size written `100MB`, `1.5GiB`, `64k`.
fn number(node: &Node, path: &str) -> Located<Num> {
    match &node.value {
        Value::Int(i) => Ok(Num::Int(i128::from(*i))),
        Value::Float(f) => Ok(Num::Float(*f)),
        Value::Str(s) => parse_size(s).map(Num::Int).ok_or_else(|| {
            node.err(format!(
                "`{path}` compares with a number (or a size such as 100MB), not `{s}`"
            ))
        }),
        _ => Err(node.err(format!(
            "`{path}` compares with a number, not {}",
            node.describe()
        ))),
    }
}

fn parse_size(text: &str) -> Option<i128> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = number * scale;
    (0.0..1e30).contains(&bytes).then_some(bytes as i128)
}
