//! The built-in asset patterns: what aiwatch calls a model, a pickle model,
//! a data set, a secret and a GPU device out of the box.
//!
//! Globs use `globset` syntax with `literal_separator` on: `*` stays inside
//! one path component, `**` crosses components. Patterns that describe a
//! file in somebody's home directory are written as a tail (`**/.aws/...`)
//! so they match `/root`, `/home/<user>` and any `$HOME` alike.

use super::AssetClass;

/// Path components that mark a folder holding model weights.
pub const MODEL_FOLDERS: &[&str] = &[
    "models",
    "model",
    "checkpoints",
    "checkpoint",
    "weights",
    "huggingface",
    "hub",
];

/// Path components that mark a folder holding training or evaluation data.
pub const DATA_FOLDERS: &[&str] = &["data", "datasets", "dataset", "corpus"];

/// One default pattern and the class it yields.
pub struct DefaultPattern {
    pub class: AssetClass,
    pub glob: String,
    /// Match regardless of ASCII case (file extensions).
    pub case_insensitive: bool,
}

fn push(out: &mut Vec<DefaultPattern>, class: AssetClass, glob: impl Into<String>, ci: bool) {
    out.push(DefaultPattern {
        class,
        glob: glob.into(),
        case_insensitive: ci,
    });
}

fn folders(list: &[&str]) -> String {
    format!("{{{}}}", list.join(","))
}

/// Every default pattern, in no particular order: the classifier resolves
/// overlaps by class priority, not by pattern order.
pub fn default_patterns() -> Vec<DefaultPattern> {
    let mut out = Vec::new();
    let model_dirs = folders(MODEL_FOLDERS);
    let data_dirs = folders(DATA_FOLDERS);

    // Weights in formats that hold tensors only.
    for ext in [
        "safetensors",
        "gguf",
        "ggml",
        "onnx",
        "h5",
        "keras",
        "tflite",
        "mlmodel",
    ] {
        push(&mut out, AssetClass::Model, format!("**/*.{ext}"), true);
    }
    // TensorFlow graphs: `.pb` is a generic protobuf extension, so only the
    // SavedModel name or a `.pb` inside a model folder counts.
    push(&mut out, AssetClass::Model, "**/saved_model.pb", true);
    push(
        &mut out,
        AssetClass::Model,
        format!("**/{model_dirs}/**/*.pb"),
        true,
    );
    // The Hugging Face hub cache (under any HF_HOME): content-addressed blobs
    // and the snapshot trees that link to them.
    push(
        &mut out,
        AssetClass::Model,
        "**/hub/models--*/{blobs,snapshots}/**",
        false,
    );

    // Formats that run code when loaded (Python pickle underneath).
    for ext in ["pt", "pth", "ckpt", "pkl", "joblib"] {
        push(
            &mut out,
            AssetClass::PickleModel,
            format!("**/*.{ext}"),
            true,
        );
    }
    // `.bin` is generic; it is a torch pickle in a model folder or under the
    // transformers naming scheme.
    push(
        &mut out,
        AssetClass::PickleModel,
        format!("**/{model_dirs}/**/*.bin"),
        true,
    );
    push(
        &mut out,
        AssetClass::PickleModel,
        "**/pytorch_model*.bin",
        true,
    );

    // Data sets.
    for ext in ["parquet", "arrow", "tfrecord", "tfrecords", "npy", "npz"] {
        push(&mut out, AssetClass::Dataset, format!("**/*.{ext}"), true);
    }
    push(
        &mut out,
        AssetClass::Dataset,
        format!("**/{data_dirs}/**/*.jsonl"),
        true,
    );
    push(
        &mut out,
        AssetClass::Dataset,
        "**/hub/datasets--*/{blobs,snapshots}/**",
        false,
    );
    push(
        &mut out,
        AssetClass::Dataset,
        "**/.cache/huggingface/datasets/**",
        false,
    );

    // Credentials in a home directory, matched on the tail.
    for tail in [
        ".cache/huggingface/token",
        ".huggingface/token",
        ".aws/credentials",
        ".config/gcloud/**",
        ".azure/**",
        ".kube/config",
        ".netrc",
        ".ssh/id_*",
        ".docker/config.json",
        ".git-credentials",
        // LLM API key files of the vendors' command-line tools.
        ".config/openai/**",
        ".config/anthropic/**",
        ".openai/**",
    ] {
        push(&mut out, AssetClass::Secret, format!("**/{tail}"), false);
    }
    push(&mut out, AssetClass::Secret, "**/.env", false);
    push(&mut out, AssetClass::Secret, "**/.env.*", false);
    push(&mut out, AssetClass::Secret, "/run/secrets/**", false);
    push(&mut out, AssetClass::Secret, "/var/run/secrets/**", false);

    // Persistence: files that make code run later, at login, at boot, on a
    // schedule, in every process (`ld.so.preload`) or on a git operation.
    for glob in PERSISTENCE_GLOBS {
        push(&mut out, AssetClass::Persistence, *glob, false);
    }

    // Accelerator device nodes.
    for glob in [
        "/dev/nvidia*",
        "/dev/nvidia-caps/*",
        "/dev/dri/**",
        "/dev/kfd",
        "/dev/accel/*",
    ] {
        push(&mut out, AssetClass::GpuDevice, glob, false);
    }
    out
}

/// The built-in `persistence` patterns. Home files are written as tails.
pub const PERSISTENCE_GLOBS: &[&str] = &[
    "**/.ssh/authorized_keys",
    "**/.ssh/authorized_keys2",
    "/etc/crontab",
    "/etc/cron.d/**",
    "/etc/cron.hourly/**",
    "/etc/cron.daily/**",
    "/etc/cron.weekly/**",
    "/etc/cron.monthly/**",
    "/var/spool/cron/**",
    "/etc/systemd/system/**",
    "/etc/systemd/user/**",
    "/usr/lib/systemd/system/**",
    "/lib/systemd/system/**",
    "**/.config/systemd/user/**",
    "**/.bashrc",
    "**/.bash_profile",
    "**/.bash_login",
    "**/.profile",
    "**/.zshrc",
    "**/.zprofile",
    "/etc/profile",
    "/etc/profile.d/**",
    "/etc/bash.bashrc",
    "/etc/ld.so.preload",
    "/etc/sudoers",
    "/etc/sudoers.d/**",
    "/etc/pam.d/**",
    "/lib/security/**",
    "/lib64/security/**",
    "/usr/lib/security/**",
    "/usr/lib64/security/**",
    "/lib/x86_64-linux-gnu/security/**",
    "/usr/lib/x86_64-linux-gnu/security/**",
    "/lib/aarch64-linux-gnu/security/**",
    "/usr/lib/aarch64-linux-gnu/security/**",
    "/etc/passwd",
    "/etc/shadow",
    "**/.git/hooks/*",
];

/// Paths the default patterns would catch but that hold nothing sensitive:
/// public keys next to private ones, `.env` templates, and the `.pth` path
/// configuration files Python's `site` module reads at every interpreter
/// start (they share the extension of torch pickles).
pub const DEFAULT_EXCLUDES: &[&str] = &[
    // Python's site path files (`distutils-precedence.pth`, editable
    // installs) share PyTorch's extension; every interpreter start reads them.
    "**/site-packages/*.pth",
    "**/dist-packages/*.pth",
    "**/.ssh/id_*.pub",
    "**/.env.example",
    "**/.env.sample",
    "**/.env.template",
    "**/.env.dist",
    // `git init` and `git clone` copy these inert examples into every repository.
    "**/.git/hooks/*.sample",
];

/// Base names the kernel prefilter should pass for default patterns whose
/// final component is a wildcard (so no extension or base name can be
/// derived from the glob itself).
pub const DEFAULT_HINT_BASENAMES: &[&str] = &[
    // ~/.ssh/id_*
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
    "id_ecdsa_sk",
    "id_ed25519_sk",
    // ~/.config/gcloud/**
    "credentials.db",
    "access_tokens.db",
    "application_default_credentials.json",
    "adc.json",
    // ~/.azure/**
    "accessTokens.json",
    "msal_token_cache.json",
    "msal_token_cache.bin",
    "service_principal_entries.json",
    "azureProfile.json",
    // /run/secrets/kubernetes.io/serviceaccount/token
    "token",
    // ~/.config/openai/**, ~/.config/anthropic/**, ~/.openai/**
    "api_key",
    "auth.json",
    "credentials.json",
    // **/.git/hooks/*: the hooks git runs.
    "pre-commit",
    "prepare-commit-msg",
    "commit-msg",
    "post-commit",
    "pre-rebase",
    "post-checkout",
    "post-merge",
    "pre-push",
    "pre-receive",
    "post-receive",
    "post-rewrite",
];

/// Major number of the NVIDIA character devices (`/dev/nvidia0`, ...).
pub const NVIDIA_MAJOR: u32 = 195;
/// Major number of DRM devices (`/dev/dri/card*`, `/dev/dri/renderD*`).
pub const DRM_MAJOR: u32 = 226;

/// The accelerators with a fixed character-device major, and the name
/// events give them. The one list: the kernel's GPU majors and the names in
/// `DeviceInfo.accelerator` both come from it. (`/dev/nvidia-uvm`,
/// `/dev/kfd` and `/dev/accel/*` have dynamic majors, found under `/dev`.)
pub const ACCELERATOR_MAJORS: &[(u32, &str)] = &[(NVIDIA_MAJOR, "nvidia"), (DRM_MAJOR, "dri")];
