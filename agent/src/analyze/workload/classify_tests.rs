use super::*;
use crate::analyze::workload::signals::Evidence;

const ORT_MAPS: &str = include_str!("testdata/onnxruntime_python.maps");
const NUMPY_MAPS: &str = include_str!("testdata/numpy_python.maps");

/// `/proc/<pid>/maps` text as procfs parses it.
fn maps(text: &str) -> procfs::process::MemoryMaps {
    use procfs::FromRead;
    procfs::process::MemoryMaps::from_read(text.as_bytes()).expect("procfs parses the maps")
}

fn classifier() -> WorkloadClassifier {
    WorkloadClassifier::with_defaults().expect("built-in rules compile")
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

fn exec_verdict(exe: &str, words: &[&str]) -> Option<WorkloadKind> {
    let c = classifier();
    let mut evidence = Evidence::default();
    for signal in c.exec_signals(exe, &argv(words)) {
        evidence.add(signal);
    }
    evidence.verdict(c.threshold())
}

#[test]
fn known_tools_decide_from_exec_alone() {
    let py = "/usr/bin/python3.11";
    let cases: &[(&str, &[&str], WorkloadKind)] = &[
        (
            py,
            &[
                "python3",
                "-m",
                "vllm.entrypoints.openai.api_server",
                "--model",
                "facebook/opt-125m",
            ],
            WorkloadKind::Inference,
        ),
        (
            "/usr/local/bin/vllm",
            &["vllm", "serve", "Qwen/Qwen2-0.5B"],
            WorkloadKind::Inference,
        ),
        (
            "/opt/tritonserver/bin/tritonserver",
            &["tritonserver", "--model-repository=/models"],
            WorkloadKind::Inference,
        ),
        (
            "/usr/local/bin/text-generation-launcher",
            &["text-generation-launcher", "--model-id", "gpt2"],
            WorkloadKind::Inference,
        ),
        (
            "/usr/bin/ollama",
            &["ollama", "serve"],
            WorkloadKind::Inference,
        ),
        (
            "/app/llama-server",
            &["./llama-server", "-m", "/models/phi.gguf", "--port", "8080"],
            WorkloadKind::Inference,
        ),
        // Console scripts run through their shebang: exe is the interpreter.
        (
            py,
            &[
                "/venv/bin/python3",
                "/venv/bin/torchrun",
                "--nproc_per_node=2",
                "train.py",
            ],
            WorkloadKind::Training,
        ),
        (
            "/venv/bin/deepspeed",
            &["deepspeed", "train.py"],
            WorkloadKind::Training,
        ),
        (
            py,
            &["python3", "/venv/bin/accelerate", "launch", "train.py"],
            WorkloadKind::Training,
        ),
        (
            py,
            &["python3", "-m", "torch.distributed.run", "train.py"],
            WorkloadKind::Training,
        ),
        (
            py,
            &[
                "python3",
                "-m",
                "ipykernel_launcher",
                "-f",
                "/run/jupyter/kernel-1.json",
            ],
            WorkloadKind::Notebook,
        ),
        (
            py,
            &["python3", "/venv/bin/jupyter-lab", "--no-browser"],
            WorkloadKind::Notebook,
        ),
        (
            py,
            &["ray::ServeReplica:app:Model"],
            WorkloadKind::Inference,
        ),
        (py, &["ray::TrainTrainable.train"], WorkloadKind::Training),
        (py, &["ray::IDLE"], WorkloadKind::Pipeline),
        (
            py,
            &["python3", "/venv/bin/crewai", "run"],
            WorkloadKind::Agent,
        ),
        (
            py,
            &[
                "python3",
                "/venv/bin/mlflow",
                "models",
                "serve",
                "-m",
                "runs:/abc/model",
            ],
            WorkloadKind::Inference,
        ),
    ];
    for (exe, words, kind) in cases {
        assert_eq!(exec_verdict(exe, words), Some(*kind), "{words:?}");
    }
}

#[test]
fn ordinary_commands_are_not_ai() {
    let py = "/usr/bin/python3";
    for (exe, words) in [
        (py, vec!["python3", "-c", "print(1)"]),
        (py, vec!["python3", "manage.py", "runserver"]),
        ("/usr/bin/bash", vec!["bash", "-c", "make"]),
        ("/usr/bin/ls", vec!["ls", "/models"]),
        // A serving-looking script name alone is only a hint.
        (py, vec!["python3", "http_server.py"]),
        (py, vec!["python3", "train.py"]),
        ("/usr/bin/uvicorn", vec!["uvicorn", "app:app"]),
    ] {
        assert_eq!(
            exec_verdict(
                exe,
                &argv(&words).iter().map(String::as_str).collect::<Vec<_>>()
            ),
            None,
            "{words:?}"
        );
    }
}

#[test]
fn real_onnxruntime_maps_name_the_library() {
    let signals = classifier().library_signals(&maps(ORT_MAPS));
    let ort = signals
        .iter()
        .find(|s| s.key == "onnxruntime")
        .expect("onnxruntime recognised");
    assert!(
        ort.detail.contains("onnxruntime/capi/"),
        "detail names the mapped file: {}",
        ort.detail
    );
    assert_eq!(ort.suggests, Some(WorkloadKind::Inference));
    assert_eq!(
        signals.len(),
        1,
        "numpy and libc are not evidence: {signals:?}"
    );
}

#[test]
fn numpy_alone_is_not_evidence() {
    assert!(classifier().library_signals(&maps(NUMPY_MAPS)).is_empty());
}

#[test]
fn onnx_server_scenario_is_inference() {
    let c = classifier();
    let mut evidence = Evidence::default();
    for s in c.exec_signals(
        "/usr/bin/python3.11",
        &argv(&["python3", "tests/workloads/onnx_server.py", "/tmp/w", "0"]),
    ) {
        evidence.add(s);
    }
    for s in c.library_signals(&maps(ORT_MAPS)) {
        evidence.add(s);
    }
    let model = c
        .file_signal(AssetClass::Model, "/tmp/w/models/tiny.onnx", false)
        .expect("model read is evidence");
    evidence.add(model);
    evidence.add(c.listen_signal(8080));
    assert_eq!(
        evidence.verdict(c.threshold()),
        Some(WorkloadKind::Inference)
    );
    let reasons: Vec<String> = evidence.signals.iter().map(Signal::reason).collect();
    assert!(
        reasons.iter().any(|r| r.contains("onnxruntime")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("tiny.onnx")),
        "{reasons:?}"
    );
}

#[test]
fn library_alone_or_model_alone_stays_below_threshold() {
    let c = classifier();
    let mut evidence = Evidence::default();
    for s in c.library_signals(&maps(ORT_MAPS)) {
        evidence.add(s);
    }
    assert_eq!(evidence.verdict(c.threshold()), None);
    let mut evidence = Evidence::default();
    evidence.add(
        c.file_signal(AssetClass::Model, "/m/x.safetensors", false)
            .expect("signal"),
    );
    assert_eq!(evidence.verdict(c.threshold()), None);
}

#[test]
fn checkpoint_writer_is_training() {
    let c = classifier();
    let mut evidence = Evidence::default();
    for s in c.exec_signals(
        "/usr/bin/python3",
        &argv(&["python3", "train_loop.py", "/tmp/run"]),
    ) {
        evidence.add(s);
    }
    assert_eq!(evidence.verdict(c.threshold()), None);
    evidence.add(
        c.file_signal(
            AssetClass::Model,
            "/tmp/run/checkpoints/step-1.safetensors",
            true,
        )
        .expect("signal"),
    );
    assert_eq!(
        evidence.verdict(c.threshold()),
        Some(WorkloadKind::Training)
    );
}

#[test]
fn secrets_are_not_evidence_and_gpu_is() {
    let c = classifier();
    assert!(c
        .file_signal(AssetClass::Secret, "/root/.aws/credentials", false)
        .is_none());
    let gpu = c
        .file_signal(AssetClass::GpuDevice, "/dev/nvidia0", false)
        .expect("gpu signal");
    assert_eq!(gpu.source, SignalSource::GpuDevice);
}

#[test]
fn copy_tools_are_ignored() {
    let c = classifier();
    assert!(c.ignores_files_of("/usr/bin/cp"));
    assert!(c.ignores_files_of("/usr/bin/rsync"));
    assert!(!c.ignores_files_of("/usr/bin/python3"));
}

#[test]
fn names_come_from_the_model_the_script_or_the_program() {
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "/usr/bin/python3",
            &[
                "python3",
                "-m",
                "vllm.entrypoints.openai.api_server",
                "--model",
                "facebook/opt-125m",
            ],
            "facebook/opt-125m",
        ),
        (
            "/usr/local/bin/vllm",
            &["vllm", "serve", "Qwen/Qwen2-0.5B"],
            "Qwen/Qwen2-0.5B",
        ),
        (
            "/app/llama-server",
            &["llama-server", "-m", "/models/phi-3.gguf"],
            "phi-3",
        ),
        (
            "/opt/tritonserver/bin/tritonserver",
            &["tritonserver", "--model-repository=/srv/models/"],
            "models",
        ),
        (
            "/usr/bin/python3",
            &[
                "python3",
                "-u",
                "/app/tests/workloads/onnx_server.py",
                "/tmp/x",
                "0",
            ],
            "onnx_server",
        ),
        (
            "/usr/bin/python3",
            &["python3", "-m", "ipykernel_launcher", "-f", "k.json"],
            "ipykernel_launcher",
        ),
        (
            "/usr/bin/python3",
            &["ray::ServeReplica:app"],
            "ray::ServeReplica:app",
        ),
        ("/usr/bin/ollama", &["ollama", "serve"], "ollama"),
    ];
    for (exe, words, name) in cases {
        assert_eq!(name_hint(exe, &argv(words)), *name, "{words:?}");
    }
}

#[test]
fn user_rules_extend_the_defaults() {
    let config: ClassifierConfig = serde_saphyr::from_str(
        "threshold: 12\ntools:\n  - pattern: 'prog:my-model-server'\n    tool: my-server\n    kind: inference\nlibraries:\n  - pattern: '**/libmyaccel*.so'\n    family: myaccel\n    weight: 12\n",
    )
    .expect("config parses");
    let c = WorkloadClassifier::new(&config).expect("compiles");
    assert_eq!(c.threshold(), 12);
    let signals = c.exec_signals("/opt/bin/my-model-server", &argv(&["my-model-server"]));
    assert_eq!(signals.first().map(|s| s.key.as_str()), Some("my-server"));
    assert!(signals.first().is_some_and(|s| s.decisive));
    let text = "7f00-7f01 r-xp 00000000 fe:00 1  /opt/lib/libmyaccel2.so\n";
    let mut evidence = Evidence::default();
    for s in c.library_signals(&maps(text)) {
        evidence.add(s);
    }
    assert_eq!(
        evidence.verdict(c.threshold()),
        Some(WorkloadKind::UnknownAi)
    );
}

#[test]
fn bad_rule_is_an_error() {
    let config = ClassifierConfig {
        tools: vec![ToolRule {
            pattern: "prog:[bad".into(),
            tool: "x".into(),
            kind: WorkloadKind::Inference,
            weight: 10,
            decisive: true,
        }],
        ..ClassifierConfig::default()
    };
    let error = WorkloadClassifier::new(&config).expect_err("bad glob");
    assert!(error.to_string().contains("[bad"));
}

#[test]
fn maps_paths_with_spaces_and_deleted_files() {
    let text = "7f00-7f01 r-xp 00000000 fe:00 1  /opt/my libs/libtorch_cpu.so (deleted)\n";
    let signals = classifier().library_signals(&maps(text));
    assert_eq!(signals.len(), 1);
    assert_eq!(signals[0].detail, "/opt/my libs/libtorch_cpu.so");
}
