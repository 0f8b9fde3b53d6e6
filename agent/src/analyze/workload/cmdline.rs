//! Model references on a command line (`--model org/name`, `--model-path
//! /models/x.gguf`, `serve org/name`): evidence of a model server or job at
//! exec, before any library is mapped, so a process that is gone before its
//! library scan is still a workload.
//!
//! These are claims: anybody can write them. They only ever add monitoring
//! (the process falls under the workload rules); a workload known from
//! claims alone is marked `claimed`, and rules never trust it more than a
//! process outside any workload.

use super::signals::{Signal, SignalSource, WorkloadKind};

/// Weight of a model reference: enough for a workload on its own.
pub const WEIGHT_MODEL_REFERENCE: u32 = 10;

/// Options whose value names a model.
const MODEL_OPTIONS: &[&str] = &[
    "--model",
    "--model-id",
    "--model_id",
    "--model-path",
    "--model_path",
    "--model-name-or-path",
    "--model_name_or_path",
    "--model-dir",
    "--model_dir",
];

/// Extensions of model files.
const MODEL_EXTENSIONS: &[&str] = &[
    "safetensors",
    "gguf",
    "ggml",
    "onnx",
    "pt",
    "pth",
    "bin",
    "ckpt",
    "llamafile",
];

/// `org/name` as on Hugging Face: two non-empty components of letters,
/// digits, `-`, `_` and `.`, neither starting with a dot.
fn is_hub_repo(value: &str) -> bool {
    let mut parts = value.split('/');
    let (Some(org), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let ok = |part: &str| {
        !part.is_empty()
            && !part.starts_with('.')
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    ok(org) && ok(name)
}

/// A local model: a path to a model file, or to a folder named like one.
fn is_model_path(value: &str) -> bool {
    if !value.starts_with('/') && !value.starts_with("./") {
        return false;
    }
    let name = value.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    let extension = name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase());
    extension.is_some_and(|ext| MODEL_EXTENSIONS.contains(&ext.as_str()))
        || value
            .split('/')
            .any(|component| matches!(component, "models" | "model" | "checkpoints" | "weights"))
}

fn is_model_reference(value: &str) -> bool {
    is_hub_repo(value) || is_model_path(value)
}

/// The model a command line names, if any.
pub fn model_reference(argv: &[String]) -> Option<&str> {
    for (index, arg) in argv.iter().enumerate().skip(1) {
        let next = argv.get(index + 1).map(String::as_str);
        if let Some((option, value)) = arg.split_once('=') {
            if MODEL_OPTIONS.contains(&option) && is_model_reference(value) {
                return Some(value);
            }
        }
        if MODEL_OPTIONS.contains(&arg.as_str()) {
            if let Some(value) = next.filter(|v| is_model_reference(v)) {
                return Some(value);
            }
        }
        if arg == "serve" {
            if let Some(value) = next.filter(|v| is_hub_repo(v)) {
                return Some(value);
            }
        }
    }
    None
}

/// The signals of a command line: one for a model reference.
pub fn command_line_signals(argv: &[String]) -> Vec<Signal> {
    model_reference(argv)
        .map(|model| Signal {
            source: SignalSource::CommandLine,
            key: "model-reference".to_string(),
            detail: model.to_string(),
            weight: WEIGHT_MODEL_REFERENCE,
            suggests: Some(WorkloadKind::Inference),
            decisive: false,
        })
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn model_references_are_found() {
        for (line, model) in [
            (
                "python3 serve.py --model meta-llama/Llama-3.1-8B",
                "meta-llama/Llama-3.1-8B",
            ),
            (
                "python3 -m app --model=Qwen/Qwen2.5-0.5B",
                "Qwen/Qwen2.5-0.5B",
            ),
            (
                "text-generation-launcher --model-id bigscience/bloom-560m",
                "bigscience/bloom-560m",
            ),
            (
                "./server --model-path /srv/models/q4.gguf",
                "/srv/models/q4.gguf",
            ),
            (
                "vllm serve mistralai/Mistral-7B-v0.1 --port 8000",
                "mistralai/Mistral-7B-v0.1",
            ),
            (
                "python3 run.py --model_name_or_path /data/weights/",
                "/data/weights/",
            ),
        ] {
            assert_eq!(model_reference(&argv(line)), Some(model), "{line}");
        }
    }

    #[test]
    fn api_model_names_paths_and_other_serves_are_not_references() {
        for line in [
            "aider --model gpt-4o",
            "llm --model claude-3-opus",
            "python3 -m http.server 8000",
            "ollama serve",
            "python3 tool.py --model /etc/passwd",
            "python3 tool.py --output org/name",
            "git --model a/b/c",
        ] {
            assert_eq!(model_reference(&argv(line)), None, "{line}");
        }
    }

    #[test]
    fn a_reference_is_one_signal_heavy_enough_for_a_workload() {
        let signals = command_line_signals(&argv("python3 x.py --model org/m"));
        assert_eq!(signals.len(), 1);
        assert_eq!(signals[0].source, SignalSource::CommandLine);
        assert_eq!(signals[0].weight, WEIGHT_MODEL_REFERENCE);
        assert!(command_line_signals(&argv("python3 x.py")).is_empty());
    }
}
