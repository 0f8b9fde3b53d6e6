//! The built-in classification tables: which programs, modules and command
//! lines are AI tools, which mapped libraries are AI library families, and
//! which programs never become workloads however they touch model files.

use super::{
    classify::{LibraryRule, ToolRule, WEIGHT_HINT, WEIGHT_TOOL},
    signals::WorkloadKind,
};

fn tool(pattern: &str, tool: &str, kind: WorkloadKind) -> ToolRule {
    ToolRule {
        pattern: pattern.into(),
        tool: tool.into(),
        kind,
        weight: WEIGHT_TOOL,
        decisive: true,
    }
}

fn hint(pattern: &str, tool: &str, kind: WorkloadKind, weight: u32) -> ToolRule {
    ToolRule {
        pattern: pattern.into(),
        tool: tool.into(),
        kind,
        weight,
        decisive: false,
    }
}

/// The built-in tool rules.
pub fn default_tools() -> Vec<ToolRule> {
    use WorkloadKind::*;
    vec![
        // Model servers.
        tool("prog:vllm", "vllm", Inference),
        tool("module:vllm.*", "vllm", Inference),
        tool("prog:tritonserver", "tritonserver", Inference),
        tool(
            "prog:text-generation-*",
            "text-generation-inference",
            Inference,
        ),
        tool("prog:ollama", "ollama", Inference),
        tool("prog:llama-server", "llama.cpp", Inference),
        tool("prog:llama-cli", "llama.cpp", Inference),
        tool("prog:*.llamafile", "llamafile", Inference),
        tool("module:llama_cpp.server*", "llama.cpp", Inference),
        tool(
            "prog:onnxruntime[_-]server",
            "onnxruntime-server",
            Inference,
        ),
        tool("prog:tensorflow_model_server", "tf-serving", Inference),
        tool("prog:torchserve", "torchserve", Inference),
        tool("module:ts.model_service_worker", "torchserve", Inference),
        tool("cmd:mlflow models serve", "mlflow", Inference),
        tool("module:sglang.*", "sglang", Inference),
        // Training launchers.
        tool("prog:torchrun", "torchrun", Training),
        tool("module:torch.distributed.run", "torchrun", Training),
        tool("module:torch.distributed.launch", "torchrun", Training),
        tool("prog:deepspeed", "deepspeed", Training),
        tool("module:deepspeed.launcher.*", "deepspeed", Training),
        tool("cmd:accelerate launch*", "accelerate", Training),
        tool("module:accelerate.commands.launch", "accelerate", Training),
        tool("argv0:ray::*Train*", "ray-train", Training),
        // Notebooks.
        tool("module:ipykernel_launcher", "ipykernel", Notebook),
        tool("module:ipykernel", "ipykernel", Notebook),
        tool("prog:jupyter-*", "jupyter", Notebook),
        tool(
            "cmd:jupyter {lab,notebook,server,console,kernel}*",
            "jupyter",
            Notebook,
        ),
        tool("module:jupyterlab*", "jupyter", Notebook),
        // Agent frameworks.
        tool("prog:crewai", "crewai", Agent),
        tool("module:crewai*", "crewai", Agent),
        tool("prog:langgraph", "langgraph", Agent),
        tool("module:autogen*", "autogen", Agent),
        tool("prog:autogenstudio", "autogen", Agent),
        tool("cmd:langchain serve*", "langchain", Agent),
        hint(
            "script:*{langchain,langgraph,autogen,crewai,llama_index,llamaindex}*",
            "agent-framework-script",
            Agent,
            6,
        ),
        hint("script:*agent*.py", "agent-script", Agent, WEIGHT_HINT),
        // Pipelines and distributed runtimes.
        tool("argv0:ray::ServeReplica*", "ray-serve", Inference),
        tool("argv0:ray::*", "ray", Pipeline),
        tool("prog:raylet", "ray", Pipeline),
        tool("cmd:ray start*", "ray", Pipeline),
        tool("cmd:mlflow run*", "mlflow", Pipeline),
        tool("prog:kedro", "kedro", Pipeline),
        hint("prog:mlflow", "mlflow", Pipeline, 6),
        // Web servers that may serve a model; they need a model or library
        // to pass the threshold.
        hint(
            "prog:{uvicorn,gunicorn,hypercorn}",
            "web-server",
            Inference,
            WEIGHT_HINT,
        ),
        hint(
            "module:{uvicorn,gunicorn,hypercorn}",
            "web-server",
            Inference,
            WEIGHT_HINT,
        ),
        // Script names: they steer the kind, never decide on their own.
        hint(
            "script:*{train,finetune,fine_tune,pretrain}*.py",
            "training-script",
            Training,
            WEIGHT_HINT,
        ),
        hint(
            "script:*{serve,server,serving,infer,predict}*.py",
            "serving-script",
            Inference,
            WEIGHT_HINT,
        ),
    ]
}

fn library(pattern: &str, family: &str, weight: u32, kind: Option<WorkloadKind>) -> LibraryRule {
    LibraryRule {
        pattern: pattern.into(),
        family: family.into(),
        weight,
        kind,
    }
}

/// The built-in library families.
pub fn default_libraries() -> Vec<LibraryRule> {
    use WorkloadKind::*;
    vec![
        library("**/libtorch*.so*", "torch", 6, None),
        library("**/libc10*.so*", "torch", 6, None),
        library("**/torch/_C*.so", "torch", 6, None),
        // The pip wheel links the runtime statically into its Python module.
        library("**/libonnxruntime*.so*", "onnxruntime", 6, Some(Inference)),
        library(
            "**/onnxruntime_pybind11_state*.so",
            "onnxruntime",
            6,
            Some(Inference),
        ),
        library("**/libtensorflow*.so*", "tensorflow", 6, None),
        library("**/_pywrap_tensorflow*.so", "tensorflow", 6, None),
        library("**/xla_extension*.so", "jax", 6, None),
        library("**/jaxlib/**/*.so", "jax", 6, None),
        library("**/libggml*.so*", "ggml", 8, Some(Inference)),
        library("**/libllama*.so*", "ggml", 8, Some(Inference)),
        library("**/libnvinfer*.so*", "tensorrt", 6, Some(Inference)),
        library("**/libopenvino*.so*", "openvino", 6, Some(Inference)),
        library("**/libctranslate2*.so*", "ctranslate2", 6, Some(Inference)),
        library("**/vllm/_C*.so", "vllm", 10, Some(Inference)),
        library("**/libcudart*.so*", "cuda", 4, None),
        library("**/libcublas*.so*", "cuda", 4, None),
        library("**/libcudnn*.so*", "cuda", 4, None),
        library("**/libamdhip64*.so*", "rocm", 4, None),
        library("**/libnccl*.so*", "nccl", 4, Some(Training)),
        library("**/librccl*.so*", "nccl", 4, Some(Training)),
    ]
}

/// Copy, archive, checksum and transfer tools: they touch model files
/// without being AI workloads.
pub const DEFAULT_IGNORE_EXE: &[&str] = &[
    "cp",
    "mv",
    "ln",
    "rsync",
    "scp",
    "sftp",
    "tar",
    "gzip",
    "gunzip",
    "zstd",
    "xz",
    "pigz",
    "bzip2",
    "zip",
    "unzip",
    "7z",
    "cat",
    "dd",
    "head",
    "tail",
    "file",
    "stat",
    "ls",
    "du",
    "find",
    "md5sum",
    "sha1sum",
    "sha256sum",
    "sha512sum",
    "b2sum",
    "cksum",
    "curl",
    "wget",
    "git",
    "git-lfs",
    "rclone",
    "aws",
    "gsutil",
    "gcloud",
    "azcopy",
    "s3cmd",
    "updatedb",
    "locate",
    "clamscan",
    "restic",
    "borg",
    "huggingface-cli",
    "hf",
];
