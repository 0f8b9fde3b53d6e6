//! A loaded policy set: reads policy files (or the embedded default pack),
//! checks them, and compiles lists and macros, then rules and tests
//! (`rules.rs`), once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::compile::{Compiler, ListDef, MacroDef};
use super::error::{PolicyErrors, Pos};
use super::index::KindIndex;
use super::rules::{compile_rule, compile_test, parse_top};
pub use super::rules::{
    Exception, Rule, RuleBody, RuleTest, SequenceBy, SequenceSpec, Step, ThrottleSpec,
};
use super::yaml::{Node, Value};
use crate::event::Kind;

/// The default AI rule pack, embedded in the binary.
pub const DEFAULT_PACK: &[(&str, &str)] = &[
    (
        "policies/common.yaml",
        include_str!("../../../policies/common.yaml"),
    ),
    (
        "policies/ai-execution.yaml",
        include_str!("../../../policies/ai-execution.yaml"),
    ),
    (
        "policies/ai-models.yaml",
        include_str!("../../../policies/ai-models.yaml"),
    ),
    (
        "policies/ai-network.yaml",
        include_str!("../../../policies/ai-network.yaml"),
    ),
    (
        "policies/host.yaml",
        include_str!("../../../policies/host.yaml"),
    ),
    (
        "policies/persistence.yaml",
        include_str!("../../../policies/persistence.yaml"),
    ),
    (
        "policies/self.yaml",
        include_str!("../../../policies/self.yaml"),
    ),
    (
        "policies/credentials.yaml",
        include_str!("../../../policies/credentials.yaml"),
    ),
    (
        "policies/ai-llm.yaml",
        include_str!("../../../policies/ai-llm.yaml"),
    ),
];

/// Errors and tests of the embedded pack name their file with this prefix
/// (`builtin:policies/host.yaml`).
pub const BUILTIN_PREFIX: &str = "builtin:";

/// Sequences may have at most this many steps.
pub const MAX_STEPS: usize = 16;
/// A policy file's text and the name errors are reported under.
#[derive(Clone, Debug)]
pub struct Source {
    pub name: Arc<str>,
    pub text: String,
}

#[derive(Debug, Default)]
pub struct PolicySet {
    pub(crate) rules: Vec<Rule>,
    /// For each kind, the enabled rules that may match it, indexed by a
    /// required field value.
    pub(crate) index: Vec<KindIndex>,
    pub(crate) tests: Vec<RuleTest>,
    pub(crate) files: Vec<Arc<str>>,
}

impl PolicySet {
    /// Loads policy files and folders (`*.yaml`, `*.yml`), after the default
    /// pack when `with_default_pack`. A given file identical to a file of the
    /// default pack replaces it, so the pack's own files can be checked and
    /// tested from disk.
    pub fn load(paths: &[PathBuf], with_default_pack: bool) -> Result<PolicySet, PolicyErrors> {
        let mut errors = PolicyErrors::default();
        let mut user = Vec::new();
        for path in paths {
            read_path(path, &mut user, &mut errors);
        }
        let mut sources = Vec::new();
        if with_default_pack {
            for (name, text) in DEFAULT_PACK {
                if !user.iter().any(|s: &Source| s.text == *text) {
                    sources.push(Source {
                        name: Arc::from(format!("{BUILTIN_PREFIX}{name}")),
                        text: text.to_string(),
                    });
                }
            }
        }
        sources.extend(user);
        let set = PolicySet::from_sources(&sources);
        match set {
            Ok(set) if errors.is_empty() => Ok(set),
            Ok(_) => Err(errors),
            Err(more) => {
                errors.errors.extend(more.errors);
                Err(errors)
            }
        }
    }

    /// The embedded default pack alone.
    pub fn default_pack() -> Result<PolicySet, PolicyErrors> {
        PolicySet::load(&[], true)
    }

    /// An empty set: no rules.
    pub fn empty() -> PolicySet {
        PolicySet {
            index: (0..Kind::ALL.len()).map(|_| KindIndex::default()).collect(),
            ..PolicySet::default()
        }
    }

    /// Number of enabled rules.
    pub fn rule_count(&self) -> usize {
        self.rules.iter().filter(|r| r.enabled).count()
    }

    /// Number of enabled rules evaluated for events of `kind`.
    pub fn rules_for_kind(&self, kind: Kind) -> usize {
        self.index
            .get(kind.index())
            .map_or(0, KindIndex::rule_count)
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    pub fn tests(&self) -> &[RuleTest] {
        &self.tests
    }

    /// Names of the files the set was built from, in load order.
    pub fn files(&self) -> &[Arc<str>] {
        &self.files
    }

    /// Compiles policy texts (already read) into a set.
    pub fn from_sources(sources: &[Source]) -> Result<PolicySet, PolicyErrors> {
        let mut errors = PolicyErrors::default();
        let mut documents = Vec::new();
        for source in sources {
            match parse_top(source) {
                Ok(top) => documents.push((source.name.clone(), top)),
                Err(error) => errors.push(&source.name, error.pos, error.message),
            }
        }

        let mut lists: HashMap<String, ListDef> = HashMap::new();
        let mut macros: HashMap<String, MacroDef> = HashMap::new();
        let mut appends: Vec<(Arc<str>, &Node, &Node)> = Vec::new();
        for (file, top) in &documents {
            for (name, key, node) in &top.lists {
                if let Value::Map(entries) = &node.value {
                    match entries.as_slice() {
                        [(verb, items)] if verb.value == Value::Str("append".into()) => {
                            appends.push((file.clone(), key, items));
                        }
                        _ => errors.push(
                            file,
                            node.pos,
                            format!("list `{name}` must be a list, or `{{append: [...]}}` to extend a list"),
                        ),
                    }
                    continue;
                }
                if let Some(previous) = lists.get(name.as_str()) {
                    errors.push(
                        file,
                        key.pos,
                        format!(
                            "list `{name}` is already defined at {}:{}:{}",
                            previous.file, previous.pos.line, previous.pos.column
                        ),
                    );
                    continue;
                }
                match node.as_seq(&format!("list `{name}`")) {
                    Ok(items) => {
                        if let Some(bad) = items.iter().find(|i| i.scalar_text().is_none()) {
                            errors.push(
                                file,
                                bad.pos,
                                format!(
                                    "list `{name}` holds {}; lists hold strings or numbers",
                                    bad.describe()
                                ),
                            );
                            continue;
                        }
                        lists.insert(
                            name.clone(),
                            ListDef {
                                file: file.clone(),
                                pos: key.pos,
                                items: items.to_vec(),
                            },
                        );
                    }
                    Err(error) => errors.push(file, error.pos, error.message),
                }
            }
            for (name, key, node) in &top.macros {
                if let Some(previous) = macros.get(name.as_str()) {
                    errors.push(
                        file,
                        key.pos,
                        format!(
                            "macro `{name}` is already defined at {}:{}:{}",
                            previous.file, previous.pos.line, previous.pos.column
                        ),
                    );
                    continue;
                }
                macros.insert(
                    name.clone(),
                    MacroDef {
                        file: file.clone(),
                        pos: key.pos,
                        node: (*node).clone(),
                    },
                );
            }
        }

        // `name: {append: [...]}` extends a list defined in any file, so a
        // local policy can widen the default pack's allowlists.
        for (file, key, items) in appends {
            let name = key.scalar_text().unwrap_or_default();
            let Some(list) = lists.get_mut(&name) else {
                errors.push(
                    &file,
                    key.pos,
                    format!("cannot append to unknown list `{name}`"),
                );
                continue;
            };
            match items.as_seq("`append`") {
                Ok(items) => match items.iter().find(|i| i.scalar_text().is_none()) {
                    Some(bad) => errors.push(
                        &file,
                        bad.pos,
                        format!(
                            "list `{name}` holds {}; lists hold strings or numbers",
                            bad.describe()
                        ),
                    ),
                    None => list.items.extend(items.iter().cloned()),
                },
                Err(error) => errors.push(&file, error.pos, error.message),
            }
        }

        let mut compiler = Compiler::new(&lists, &macros);
        compiler.compile_all_macros();
        let mut rules: Vec<Rule> = Vec::new();
        let mut seen: HashMap<String, (Arc<str>, Pos)> = HashMap::new();
        for (file, top) in &documents {
            for node in &top.rules {
                match compile_rule(&mut compiler, file, node) {
                    Ok(mut rule) => {
                        rule.enforcement = top.enforcement;
                        if let Some((other_file, other)) = seen.get(&rule.id) {
                            errors.push(
                                file,
                                rule.pos,
                                format!(
                                    "duplicate rule id `{}`: already defined at {}:{}:{}",
                                    rule.id, other_file, other.line, other.column
                                ),
                            );
                            continue;
                        }
                        seen.insert(rule.id.clone(), (file.clone(), rule.pos));
                        rules.push(rule);
                    }
                    Err(error) => errors.push(file, error.pos, error.message),
                }
            }
        }
        for error in std::mem::take(&mut compiler.macro_errors) {
            errors.errors.push(error);
        }

        let mut tests = Vec::new();
        for (file, top) in &documents {
            for node in &top.tests {
                match compile_test(file, node, &seen) {
                    Ok(test) => tests.push(test),
                    Err(error) => errors.push(file, error.pos, error.message),
                }
            }
        }
        if !errors.is_empty() {
            errors.errors.sort_by(|a, b| {
                let rank = |f: &str| documents.iter().position(|(n, _)| &**n == f);
                (rank(&a.file), a.pos.line, a.pos.column).cmp(&(
                    rank(&b.file),
                    b.pos.line,
                    b.pos.column,
                ))
            });
            errors.errors.dedup();
            return Err(errors);
        }

        let mut index: Vec<KindIndex> =
            (0..Kind::ALL.len()).map(|_| KindIndex::default()).collect();
        for (position, rule) in rules.iter().enumerate() {
            if rule.enabled {
                let cond = match &rule.body {
                    RuleBody::When(cond) => Some(cond),
                    RuleBody::Sequence(_) => None,
                };
                for kind in rule.kinds.kinds() {
                    index[kind.index()].add(position, cond);
                }
            }
        }
        Ok(PolicySet {
            rules,
            index,
            tests,
            files: documents.into_iter().map(|(name, _)| name).collect(),
        })
    }
}

fn read_path(path: &Path, out: &mut Vec<Source>, errors: &mut PolicyErrors) {
    let name = path.display().to_string();
    if path.is_dir() {
        let entries = match std::fs::read_dir(path) {
            Ok(entries) => entries,
            Err(error) => {
                errors.push(
                    &name,
                    Pos::new(1, 1),
                    format!("cannot read this folder: {error}"),
                );
                return;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
            })
            .collect();
        files.sort();
        for file in files {
            read_path(&file, out, errors);
        }
        return;
    }
    match std::fs::read_to_string(path) {
        Ok(text) => out.push(Source {
            name: Arc::from(name.as_str()),
            text,
        }),
        Err(error) => errors.push(
            &name,
            Pos::new(1, 1),
            format!("cannot read this file: {error}"),
        ),
    }
}
