//! Turns what a process is and does into weighted [`Signal`]s.
//!
//! Exec facts are reduced to a handful of identifiers (`prog:torchrun`,
//! `module:vllm.entrypoints.openai.api_server`, `cmd:accelerate launch`,
//! `argv0:ray::ServeReplica`, `script:train.py`) matched against one glob
//! set of tool rules. Mapped libraries are matched against another glob set
//! of library families, once per distinct path. File, device and socket
//! signals have fixed weights. The verdict itself lives in
//! [`Evidence::verdict`]; the weights and threshold are documented in
//! `docs/workloads.md`.

use std::collections::BTreeSet;

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

pub use super::default_rules::{default_libraries, default_tools, DEFAULT_IGNORE_EXE};
use super::signals::{Signal, SignalSource, WorkloadKind};
use crate::enrich::assets::AssetClass;

/// Score at which a process becomes a workload.
pub const DEFAULT_THRESHOLD: u32 = 10;

pub const WEIGHT_TOOL: u32 = 10;
pub const WEIGHT_HINT: u32 = 3;
pub const WEIGHT_GPU_DEVICE: u32 = 5;
pub const WEIGHT_MODEL_READ: u32 = 6;
pub const WEIGHT_MODEL_WRITE: u32 = 7;
pub const WEIGHT_DATASET_READ: u32 = 3;
pub const WEIGHT_LISTEN: u32 = 2;
/// A process that calls an LLM API acts on a model's answers: an agent by
/// itself, whatever else it is.
pub const WEIGHT_LLM_CALL: u32 = 10;

/// A rule that recognises a tool from its exec identifiers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolRule {
    /// Glob over an identifier: `prog:<exe or script base name>`,
    /// `module:<python -m module>`, `script:<script base name>`,
    /// `argv0:<argv[0]>` or `cmd:<program> <first two positional args>`.
    pub pattern: String,
    /// Name of the tool, the signal key.
    pub tool: String,
    pub kind: WorkloadKind,
    #[serde(default = "default_tool_weight")]
    pub weight: u32,
    /// The tool settles the kind (true for tools that are AI by nature).
    #[serde(default = "default_true")]
    pub decisive: bool,
}

fn default_tool_weight() -> u32 {
    WEIGHT_TOOL
}

fn default_true() -> bool {
    true
}

/// A family of shared libraries (`libtorch*`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LibraryRule {
    /// Glob over the mapped path (`**/libtorch*.so*`).
    pub pattern: String,
    pub family: String,
    pub weight: u32,
    #[serde(default)]
    pub kind: Option<WorkloadKind>,
}

/// Classifier configuration (`workloads.discovery:`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifierConfig {
    /// Score at which a process becomes a workload.
    pub threshold: u32,
    /// Extra tool rules, on top of the built-in ones.
    pub tools: Vec<ToolRule>,
    /// Extra library families.
    pub libraries: Vec<LibraryRule>,
    /// Extra executables (globs over the base name) whose file opens are
    /// never evidence: copy and transfer tools move models without running
    /// them.
    pub ignore_exe: Vec<String>,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        ClassifierConfig {
            threshold: DEFAULT_THRESHOLD,
            tools: Vec::new(),
            libraries: Vec::new(),
            ignore_exe: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClassifierError {
    #[error("workload pattern `{pattern}` is not a valid glob: {source}")]
    BadGlob {
        pattern: String,
        source: globset::Error,
    },
    #[error("workload patterns could not be compiled together: {0}")]
    Build(globset::Error),
}

/// What a process looks like at exec.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Invocation {
    program: String,
    script: Option<String>,
    module: Option<String>,
    positional: Vec<String>,
    argv0: String,
}

fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn is_python(name: &str) -> bool {
    let rest = name
        .strip_prefix("python")
        .or_else(|| name.strip_prefix("pypy"));
    rest.is_some_and(|r| r.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
}

/// Python options that take a separate argument.
const PYTHON_OPTIONS_WITH_ARG: &[&str] = &["-W", "-X", "-Q"];

fn parse_invocation(exe: &str, argv: &[String]) -> Invocation {
    let argv0 = argv.first().cloned().unwrap_or_default();
    let program = base_name(if exe.is_empty() { &argv0 } else { exe }).to_string();
    let mut invocation = Invocation {
        program,
        argv0,
        ..Invocation::default()
    };
    let mut rest = argv.iter().skip(1);
    if is_python(&invocation.program) {
        while let Some(arg) = rest.next() {
            if arg == "-m" {
                invocation.module = rest.next().cloned();
                break;
            }
            if arg == "-c" {
                // Inline code: nothing to name.
                rest.next();
                break;
            }
            if PYTHON_OPTIONS_WITH_ARG.contains(&arg.as_str()) {
                rest.next();
                continue;
            }
            if arg.starts_with('-') {
                continue;
            }
            invocation.script = Some(arg.clone());
            break;
        }
    }
    invocation.positional = rest
        .filter(|a| !a.starts_with('-'))
        .take(2)
        .cloned()
        .collect();
    invocation
}

impl Invocation {
    fn identifiers(&self) -> Vec<String> {
        let mut ids = vec![
            format!("prog:{}", self.program),
            format!("argv0:{}", self.argv0),
        ];
        let mut command_name = self.program.clone();
        if let Some(script) = &self.script {
            let name = base_name(script);
            ids.push(format!("script:{name}"));
            ids.push(format!("prog:{name}"));
            command_name = name.to_string();
        }
        if let Some(module) = &self.module {
            ids.push(format!("module:{module}"));
            command_name = module.clone();
        }
        let mut cmd = format!("cmd:{command_name}");
        for arg in &self.positional {
            cmd.push(' ');
            cmd.push_str(arg);
        }
        ids.push(cmd);
        ids
    }
}

/// Compiled discovery rules. Build once; classification is pure.
#[derive(Clone, Debug)]
pub struct WorkloadClassifier {
    threshold: u32,
    tools: Vec<ToolRule>,
    tool_set: GlobSet,
    libraries: Vec<LibraryRule>,
    library_set: GlobSet,
    ignore_set: GlobSet,
}

fn compile(pattern: &str, literal_separator: bool) -> Result<Glob, ClassifierError> {
    GlobBuilder::new(pattern)
        .literal_separator(literal_separator)
        .build()
        .map_err(|source| ClassifierError::BadGlob {
            pattern: pattern.to_string(),
            source,
        })
}

impl WorkloadClassifier {
    pub fn new(config: &ClassifierConfig) -> Result<Self, ClassifierError> {
        let mut tools = config.tools.clone();
        tools.extend(default_tools());
        let mut builder = GlobSetBuilder::new();
        for rule in &tools {
            // Identifiers are not paths: `*` may cross `/` in `cmd:` strings.
            builder.add(compile(&rule.pattern, false)?);
        }
        let tool_set = builder.build().map_err(ClassifierError::Build)?;

        let mut libraries = config.libraries.clone();
        libraries.extend(default_libraries());
        let mut builder = GlobSetBuilder::new();
        for rule in &libraries {
            builder.add(compile(&rule.pattern, true)?);
        }
        let library_set = builder.build().map_err(ClassifierError::Build)?;

        let mut builder = GlobSetBuilder::new();
        for name in DEFAULT_IGNORE_EXE
            .iter()
            .copied()
            .chain(config.ignore_exe.iter().map(String::as_str))
        {
            builder.add(compile(name, true)?);
        }
        let ignore_set = builder.build().map_err(ClassifierError::Build)?;
        Ok(WorkloadClassifier {
            threshold: config.threshold,
            tools,
            tool_set,
            libraries,
            library_set,
            ignore_set,
        })
    }

    pub fn with_defaults() -> Result<Self, ClassifierError> {
        Self::new(&ClassifierConfig::default())
    }

    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// Whether file opens of this executable are never evidence.
    pub fn ignores_files_of(&self, exe: &str) -> bool {
        self.ignore_set.is_match(base_name(exe))
    }

    /// Signals from the executable and its arguments.
    pub fn exec_signals(&self, exe: &str, argv: &[String]) -> Vec<Signal> {
        let invocation = parse_invocation(exe, argv);
        let mut hits = BTreeSet::new();
        for id in invocation.identifiers() {
            hits.extend(self.tool_set.matches(&id));
        }
        let mut signals: Vec<Signal> = Vec::new();
        for index in hits {
            let Some(rule) = self.tools.get(index) else {
                continue;
            };
            // The first (user rules come first, then the more specific
            // built-ins) rule for a tool wins.
            if signals.iter().any(|s| s.key == rule.tool) {
                continue;
            }
            signals.push(Signal {
                source: SignalSource::Exec,
                key: rule.tool.clone(),
                detail: command_line(argv),
                weight: rule.weight,
                suggests: Some(rule.kind),
                decisive: rule.decisive,
            });
        }
        signals.extend(super::cmdline::command_line_signals(argv));
        // `ray::*` is generic; a more specific ray rule replaces it.
        if signals.iter().any(|s| s.key.starts_with("ray-")) {
            signals.retain(|s| s.key != "ray");
        }
        signals
    }

    /// Signals from a process's `/proc/<pid>/maps`: one per library family.
    pub fn library_signals(&self, maps: &procfs::process::MemoryMaps) -> Vec<Signal> {
        let mut seen_paths = BTreeSet::new();
        let mut signals: Vec<Signal> = Vec::new();
        for map in maps {
            let procfs::process::MMapPath::Path(path) = &map.pathname else {
                continue;
            };
            let path = path.to_string_lossy();
            let path = path.strip_suffix(" (deleted)").unwrap_or(&path).to_string();
            if !path.starts_with('/') || !seen_paths.insert(path.clone()) {
                continue;
            }
            for index in self.library_set.matches(&path) {
                let Some(rule) = self.libraries.get(index) else {
                    continue;
                };
                if signals.iter().any(|s| s.key == rule.family) {
                    continue;
                }
                signals.push(Signal {
                    source: SignalSource::Library,
                    key: rule.family.clone(),
                    detail: path.clone(),
                    weight: rule.weight,
                    suggests: rule.kind,
                    decisive: false,
                });
            }
        }
        signals
    }

    /// The signal of opening a classified file, if it is evidence.
    pub fn file_signal(&self, class: AssetClass, path: &str, write: bool) -> Option<Signal> {
        let (source, weight, suggests) = match (class, write) {
            (AssetClass::Model | AssetClass::PickleModel, false) => (
                SignalSource::ModelRead,
                WEIGHT_MODEL_READ,
                WorkloadKind::Inference,
            ),
            (AssetClass::Model | AssetClass::PickleModel, true) => (
                SignalSource::ModelWrite,
                WEIGHT_MODEL_WRITE,
                WorkloadKind::Training,
            ),
            (AssetClass::Dataset, false) => (
                SignalSource::DatasetRead,
                WEIGHT_DATASET_READ,
                WorkloadKind::Training,
            ),
            (AssetClass::GpuDevice, _) => return Some(self.device_signal(path)),
            _ => return None,
        };
        Some(Signal {
            source,
            key: if class == AssetClass::Dataset {
                "dataset".into()
            } else {
                "model".into()
            },
            detail: path.to_string(),
            weight,
            suggests: Some(suggests),
            decisive: false,
        })
    }

    /// The signal of opening a GPU device node.
    pub fn device_signal(&self, path: &str) -> Signal {
        Signal {
            source: SignalSource::GpuDevice,
            key: "gpu".into(),
            detail: path.to_string(),
            weight: WEIGHT_GPU_DEVICE,
            suggests: None,
            decisive: false,
        }
    }

    /// The signal of a request to an LLM API: the provider is the key, the
    /// host the detail.
    pub fn llm_signal(&self, provider: &str, host: &str) -> Signal {
        Signal {
            source: SignalSource::LlmApi,
            key: provider.to_string(),
            detail: host.to_string(),
            weight: WEIGHT_LLM_CALL,
            suggests: Some(WorkloadKind::Agent),
            decisive: false,
        }
    }

    /// The signal of a listening socket.
    pub fn listen_signal(&self, port: u16) -> Signal {
        Signal {
            source: SignalSource::Listen,
            key: "socket".into(),
            detail: format!("port {port}"),
            weight: WEIGHT_LISTEN,
            suggests: Some(WorkloadKind::Inference),
            decisive: false,
        }
    }
}

fn command_line(argv: &[String]) -> String {
    let mut line = argv.join(" ");
    if line.len() > 200 {
        let mut cut = 200;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    line
}

/// Options that name the model a server serves.
const MODEL_OPTIONS: &[&str] = &[
    "--served-model-name",
    "--model",
    "--model-id",
    "--model_name_or_path",
    "--model-name",
    "--model-repository",
    "-m",
];

/// A human name for the workload a process founds: the served model, the
/// script, the module or the program.
pub fn name_hint(exe: &str, argv: &[String]) -> String {
    let invocation = parse_invocation(exe, argv);
    let is_interpreter_flag = |option: &str| option == "-m" && invocation.module.is_some();
    for option in MODEL_OPTIONS {
        if is_interpreter_flag(option) {
            continue;
        }
        let value = argv.iter().enumerate().find_map(|(i, arg)| {
            if arg == option {
                argv.get(i + 1).cloned()
            } else {
                arg.strip_prefix(&format!("{option}=")).map(str::to_string)
            }
        });
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            return model_name(&value);
        }
    }
    if matches!(invocation.program.as_str(), "vllm" | "ollama")
        && invocation.positional.first().map(String::as_str) == Some("serve")
    {
        if let Some(model) = invocation.positional.get(1) {
            return model_name(model);
        }
    }
    if invocation.argv0.starts_with("ray::") {
        return invocation.argv0.clone();
    }
    if let Some(script) = &invocation.script {
        let name = base_name(script);
        return name.strip_suffix(".py").unwrap_or(name).to_string();
    }
    if let Some(module) = &invocation.module {
        return module.clone();
    }
    invocation.program
}

/// `meta-llama/Llama-3-8B` stays; `/models/tiny.onnx` becomes `tiny`.
fn model_name(value: &str) -> String {
    let trimmed = value.trim_end_matches('/');
    if trimmed.starts_with('/') || trimmed.starts_with('.') {
        let name = base_name(trimmed);
        return match name.rsplit_once('.') {
            Some((stem, _)) if !stem.is_empty() => stem.to_string(),
            _ => name.to_string(),
        };
    }
    trimmed.to_string()
}

#[cfg(test)]
#[path = "classify_tests.rs"]
mod tests;
