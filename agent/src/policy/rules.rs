//! Rules: their compiled form, and the compiling of one file's top level,
//! rules, sequences, exceptions, throttles and tests from YAML nodes. The
//! conditions themselves are compiled by `compile.rs`; `set.rs` loads files
//! and holds the result.

use std::{collections::HashMap, sync::Arc};

use super::compile::Compiler;
use super::cond::{Cond, KindSet};
use super::error::{Located, LocatedError, Pos};
use super::field::{Field, FieldType};
use super::set::{Source, MAX_STEPS};
use super::yaml::{self, check_keys, parse_duration_ns, Node, Value};
use crate::alert::{Action, EnforcementMode, Severity};
use crate::event::Event;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceBy {
    /// The same process (pid and start time).
    Process,
    /// The first step's process or any of its descendants.
    Tree,
    /// The same workload id.
    Workload,
}

#[derive(Debug)]
pub struct Step {
    pub name: String,
    pub cond: Cond,
    /// The kinds `cond` can match: most steps are of one kind, and the
    /// others need not be tested on every event of a sequence's kinds.
    pub kinds: KindSet,
    /// Comparisons with earlier steps' events (`differs`, `at_least`).
    pub relations: Vec<super::relation::Relation>,
}

#[derive(Debug)]
pub struct SequenceSpec {
    pub by: SequenceBy,
    pub within_ns: u64,
    pub steps: Vec<Step>,
}

#[derive(Debug)]
pub enum RuleBody {
    When(Cond),
    Sequence(SequenceSpec),
}

#[derive(Debug)]
pub struct ThrottleSpec {
    /// `None`: one budget for the whole rule.
    pub key: Option<Field>,
    pub window_ns: u64,
    pub max: u32,
}

#[derive(Debug)]
pub struct Exception {
    pub name: String,
    pub cond: Cond,
}

#[derive(Debug)]
pub struct Rule {
    pub id: String,
    pub description: String,
    pub severity: Severity,
    pub tags: Vec<String>,
    pub enabled: bool,
    pub action: Action,
    /// The file's `enforcement:`, when it sets one; otherwise the agent's
    /// `enforcement.mode` decides.
    pub enforcement: Option<EnforcementMode>,
    pub body: RuleBody,
    pub exceptions: Vec<Exception>,
    pub throttle: Option<ThrottleSpec>,
    /// Kinds this rule can match; it is only evaluated for those.
    pub kinds: KindSet,
    pub file: Arc<str>,
    pub pos: Pos,
    /// Canonical text of the rule: state carries over a reload only to a
    /// rule with the same fingerprint.
    pub fingerprint: String,
}

/// One entry of a file's `tests:`.
#[derive(Debug)]
pub struct RuleTest {
    pub name: String,
    pub file: Arc<str>,
    pub pos: Pos,
    pub events: Vec<Event>,
    pub expect: Vec<String>,
}

/// The top level of one file, split by section.
pub(super) struct TopLevel {
    pub(super) enforcement: Option<EnforcementMode>,
    pub(super) lists: Vec<(String, Node, Node)>,
    pub(super) macros: Vec<(String, Node, Node)>,
    pub(super) rules: Vec<Node>,
    pub(super) tests: Vec<Node>,
}

pub(super) fn parse_top(source: &Source) -> Located<TopLevel> {
    let mut top = TopLevel {
        enforcement: None,
        lists: Vec::new(),
        macros: Vec::new(),
        rules: Vec::new(),
        tests: Vec::new(),
    };
    let Some(root) = yaml::parse_document(&source.text)? else {
        return Ok(top);
    };
    if root.value == Value::Null {
        return Ok(top);
    }
    let entries = root.as_map("a policy file")?;
    check_keys(
        &entries,
        &["enforcement", "lists", "macros", "rules", "tests"],
        "a policy file",
    )?;
    for (key, _, value) in entries {
        if value.value == Value::Null {
            continue;
        }
        match key {
            "lists" | "macros" => {
                let named: Vec<(String, Node, Node)> = value
                    .as_map(&format!("`{key}`"))?
                    .into_iter()
                    .map(|(name, k, v)| (name.to_string(), k.clone(), v.clone()))
                    .collect();
                if key == "lists" {
                    top.lists = named;
                } else {
                    top.macros = named;
                }
            }
            "rules" => top.rules = value.as_seq("`rules`")?.to_vec(),
            "enforcement" => top.enforcement = Some(parse_enforcement(value)?),
            _ => top.tests = value.as_seq("`tests`")?.to_vec(),
        }
    }
    Ok(top)
}

const RULE_KEYS: &[&str] = &[
    "id",
    "description",
    "severity",
    "tags",
    "enabled",
    "when",
    "sequence",
    "exceptions",
    "action",
    "throttle",
];

pub(super) fn compile_rule(
    compiler: &mut Compiler<'_>,
    file: &Arc<str>,
    node: &Node,
) -> Located<Rule> {
    let entries = node.as_map("a rule")?;
    check_keys(&entries, RULE_KEYS, "a rule")?;
    let get = |name: &str| yaml::entry(&entries, name);

    let id_node = get("id").ok_or_else(|| node.err("this rule has no `id`"))?;
    let id = id_node.as_str("`id`")?.to_string();
    if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(id_node.err("a rule id is a non-empty dotted name without spaces"));
    }
    let description = match get("description") {
        Some(n) => n.as_str("`description`")?.to_string(),
        None => String::new(),
    };
    let severity_node =
        get("severity").ok_or_else(|| node.err(format!("rule `{id}` has no `severity`")))?;
    let severity = parse_severity(severity_node)?;
    let tags = match get("tags") {
        Some(n) => n
            .as_seq("`tags`")?
            .iter()
            .map(|t| {
                t.scalar_text()
                    .ok_or_else(|| t.err("a tag must be a string"))
            })
            .collect::<Located<Vec<_>>>()?,
        None => Vec::new(),
    };
    let enabled = match get("enabled") {
        Some(n) => n.as_bool("`enabled`")?,
        None => true,
    };
    let action = match get("action") {
        None => Action::Alert,
        Some(n) => match n.as_str("`action`")? {
            "alert" | "audit" => Action::Alert,
            "kill" => Action::Kill,
            "deny" => Action::Deny,
            other => {
                return Err(n.err(format!(
                    "unknown action `{other}`; expected audit, kill or deny"
                )))
            }
        },
    };
    let body = match (get("when"), get("sequence")) {
        (Some(when), None) => RuleBody::When(
            compiler
                .condition(when)?
                .scoped_to_network_peers()
                .optimize(),
        ),
        (None, Some(seq)) => RuleBody::Sequence(compile_sequence(compiler, seq)?),
        (Some(_), Some(seq)) => {
            return Err(seq.err(format!(
                "rule `{id}` has both `when` and `sequence`; keep one"
            )))
        }
        (None, None) => {
            return Err(node.err(format!(
                "rule `{id}` needs a `when` condition or a `sequence`"
            )))
        }
    };
    let exceptions = match get("exceptions") {
        Some(n) => compile_exceptions(compiler, n)?,
        None => Vec::new(),
    };
    let throttle = get("throttle").map(compile_throttle).transpose()?;
    let kinds = match &body {
        RuleBody::When(cond) => cond.kinds(),
        RuleBody::Sequence(spec) => spec
            .steps
            .iter()
            .fold(KindSet::NONE, |acc, s| acc.union(s.kinds)),
    };
    Ok(Rule {
        id,
        description,
        severity,
        tags,
        enabled,
        action,
        enforcement: None,
        body,
        exceptions,
        throttle,
        kinds,
        file: file.clone(),
        pos: node.pos,
        fingerprint: node.fingerprint(),
    })
}

fn parse_enforcement(node: &Node) -> Located<EnforcementMode> {
    match node.as_str("`enforcement`")? {
        "audit" => Ok(EnforcementMode::Audit),
        "enforce" => Ok(EnforcementMode::Enforce),
        other => Err(node.err(format!(
            "unknown enforcement `{other}`; expected audit or enforce"
        ))),
    }
}

fn parse_severity(node: &Node) -> Located<Severity> {
    Ok(match node.as_str("`severity`")? {
        "info" => Severity::Info,
        "low" => Severity::Low,
        "medium" => Severity::Medium,
        "high" => Severity::High,
        "critical" => Severity::Critical,
        other => {
            return Err(node.err(format!(
                "unknown severity `{other}`; expected info, low, medium, high or critical"
            )))
        }
    })
}

fn compile_sequence(compiler: &mut Compiler<'_>, node: &Node) -> Located<SequenceSpec> {
    let entries = node.as_map("`sequence`")?;
    check_keys(&entries, &["by", "within", "steps"], "a sequence")?;
    let get = |name: &str| yaml::entry(&entries, name);
    let by = match get("by") {
        None => SequenceBy::Process,
        Some(n) => match n.as_str("`by`")? {
            "process" => SequenceBy::Process,
            "tree" => SequenceBy::Tree,
            "workload" => SequenceBy::Workload,
            other => {
                return Err(n.err(format!(
                    "unknown sequence key `{other}`; expected process, tree or workload"
                )))
            }
        },
    };
    let within_ns = parse_duration_ns(
        get("within").ok_or_else(|| node.err("a sequence needs `within` (for example 30s)"))?,
        "`within`",
    )?;
    let steps_node = get("steps").ok_or_else(|| node.err("a sequence needs `steps`"))?;
    let items = steps_node.as_seq("`steps`")?;
    if items.len() < 2 || items.len() > MAX_STEPS {
        return Err(steps_node.err(format!(
            "a sequence needs between 2 and {MAX_STEPS} steps, not {}",
            items.len()
        )));
    }
    let mut steps = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let entries = item.as_map("a sequence step")?;
        check_keys(
            &entries,
            &["name", "when", "differs", "at_least"],
            "a sequence step",
        )?;
        let get = |name: &str| yaml::entry(&entries, name);
        let name = match get("name") {
            Some(n) => n.as_str("`name`")?.to_string(),
            None => format!("step {}", index + 1),
        };
        let when = get("when").ok_or_else(|| item.err("a sequence step needs `when`"))?;
        let names: Vec<String> = steps.iter().map(|s: &Step| s.name.clone()).collect();
        let mut relations = Vec::new();
        for key in super::relation::RELATION_KEYS {
            if let Some(node) = get(key) {
                relations.push(super::relation::compile(key, node, index, &names)?);
            }
        }
        let cond = compiler
            .condition(when)?
            .scoped_to_network_peers()
            .optimize();
        steps.push(Step {
            name,
            kinds: cond.kinds(),
            cond,
            relations,
        });
    }
    Ok(SequenceSpec {
        by,
        within_ns,
        steps,
    })
}

fn compile_exceptions(compiler: &mut Compiler<'_>, node: &Node) -> Located<Vec<Exception>> {
    let mut out = Vec::new();
    for item in node.as_seq("`exceptions`")? {
        let entries = item.as_map("an exception")?;
        check_keys(&entries, &["name", "when"], "an exception")?;
        let get = |name: &str| yaml::entry(&entries, name);
        let name = get("name")
            .ok_or_else(|| item.err("an exception needs a `name`"))?
            .as_str("`name`")?
            .to_string();
        let when = get("when").ok_or_else(|| item.err("an exception needs `when`"))?;
        out.push(Exception {
            name,
            cond: compiler.condition(when)?.optimize(),
        });
    }
    Ok(out)
}

fn compile_throttle(node: &Node) -> Located<ThrottleSpec> {
    let entries = node.as_map("`throttle`")?;
    check_keys(&entries, &["key", "window", "max"], "a throttle")?;
    let get = |name: &str| yaml::entry(&entries, name);
    let key = match get("key") {
        None => None,
        Some(n) => {
            let path = n.as_str("`key`")?;
            match Field::lookup(path) {
                Some((_, FieldType::Section)) => {
                    return Err(n.err(format!(
                        "`{path}` is an object; a throttle key must be a value"
                    )))
                }
                Some((field, _)) => Some(field),
                None => return Err(n.err(format!("unknown field `{path}`"))),
            }
        }
    };
    let window_ns = parse_duration_ns(
        get("window").ok_or_else(|| node.err("a throttle needs a `window` (for example 60s)"))?,
        "`window`",
    )?;
    let max = match get("max") {
        None => 1,
        Some(n) => match n.value {
            Value::Int(i) if i >= 1 && i <= i64::from(u32::MAX) => i as u32,
            _ => return Err(n.err("`max` must be a whole number of at least 1")),
        },
    };
    Ok(ThrottleSpec {
        key,
        window_ns,
        max,
    })
}

pub(super) fn compile_test(
    file: &Arc<str>,
    node: &Node,
    rules: &HashMap<String, (Arc<str>, Pos)>,
) -> Located<RuleTest> {
    let entries = node.as_map("a test")?;
    check_keys(&entries, &["name", "events", "expect"], "a test")?;
    let get = |name: &str| yaml::entry(&entries, name);
    let name = get("name")
        .ok_or_else(|| node.err("a test needs a `name`"))?
        .as_str("`name`")?
        .to_string();
    let events_node = get("events").ok_or_else(|| node.err("a test needs `events`"))?;
    let mut events = Vec::new();
    let mut last_ktime = 0u64;
    for item in events_node.as_seq("`events`")? {
        let event = test_event(item, last_ktime)?;
        last_ktime = event.ktime_ns;
        events.push(event);
    }
    let expect_node =
        get("expect").ok_or_else(|| node.err("a test needs `expect` ([] for none)"))?;
    let mut expect = Vec::new();
    for item in expect_node.as_seq("`expect`")? {
        let id = item.as_str("a rule id")?;
        if !rules.contains_key(id) {
            return Err(item.err(format!("`expect` names unknown rule `{id}`")));
        }
        expect.push(id.to_string());
    }
    Ok(RuleTest {
        name,
        file: file.clone(),
        pos: node.pos,
        events,
        expect,
    })
}

/// An event written in a test. `time` may be left out, and `ktime_ns` too:
/// it then follows the previous event by one millisecond.
fn test_event(node: &Node, last_ktime: u64) -> Located<Event> {
    let mut json = node.to_json();
    let Some(object) = json.as_object_mut() else {
        return Err(node.err(format!(
            "an event must be a mapping, not {}",
            node.describe()
        )));
    };
    object
        .entry("time")
        .or_insert_with(|| serde_json::Value::String(String::new()));
    object
        .entry("ktime_ns")
        .or_insert_with(|| serde_json::Value::from(last_ktime + 1_000_000));
    object
        .entry("process")
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    let mut unknown = Vec::new();
    let event: Event = serde_ignored::deserialize(&json, |path| unknown.push(path.to_string()))
        .map_err(|error| {
            LocatedError::new(node.pos, format!("this is not a valid event: {error}"))
        })?;
    if let Some(path) = unknown.first() {
        return Err(node.err(format!("unknown event field `{path}`")));
    }
    Ok(event)
}
