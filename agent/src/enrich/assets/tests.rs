use super::*;

fn classifier() -> AssetClassifier {
    AssetClassifier::with_defaults().expect("built-in patterns compile")
}

fn class_of(path: &str) -> Option<&'static str> {
    classifier()
        .classify(path, Some(4242))
        .map(AssetClass::as_str)
}

#[test]
fn tensor_formats_are_models_anywhere() {
    for path in [
        "/srv/app/models/tiny.onnx",
        "/tmp/x/tiny.safetensors",
        "/opt/llama/mistral-7b.Q4_K_M.gguf",
        "/data/old.ggml",
        "/home/ann/keras/net.h5",
        "/home/ann/keras/net.keras",
        "/app/detector.tflite",
        "/app/Classifier.mlmodel",
        "/app/export/saved_model.pb",
        "/app/models/frozen_graph.pb",
        "/app/MODEL.ONNX",
    ] {
        assert_eq!(class_of(path), Some("model"), "{path}");
    }
}

#[test]
fn pickle_formats_are_their_own_class() {
    for path in [
        "/work/run/checkpoints/step-100.ckpt",
        "/work/resnet50.pt",
        "/work/resnet50.pth",
        "/srv/sklearn/model.pkl",
        "/srv/sklearn/pipeline.joblib",
        "/srv/models/bert/pytorch_model.bin",
        "/srv/weights/layer0.bin",
        "/root/.cache/huggingface/hub/models--gpt2/snapshots/abc/pytorch_model.bin",
    ] {
        assert_eq!(class_of(path), Some("pickle-model"), "{path}");
    }
}

#[test]
fn python_site_path_files_are_not_pickle_models() {
    for path in [
        "/usr/lib/python3/dist-packages/distutils-precedence.pth",
        "/srv/venv/lib/python3.11/site-packages/distutils-precedence.pth",
        "/srv/venv/lib/python3.11/site-packages/__editable__.mypkg-0.1.pth",
    ] {
        assert_eq!(class_of(path), None, "{path}");
    }
    // A torch checkpoint inside a package folder is still one.
    assert_eq!(
        class_of("/srv/venv/lib/python3.11/site-packages/facenet/weights/vggface2.pth"),
        Some("pickle-model")
    );
}

#[test]
fn hugging_face_cache_blobs_are_models() {
    assert_eq!(
        class_of("/root/.cache/huggingface/hub/models--gpt2/blobs/0123456789abcdef"),
        Some("model")
    );
    assert_eq!(
        class_of("/data/hf/hub/models--org--name/snapshots/rev/config.json"),
        Some("model")
    );
    assert_eq!(
        class_of("/root/.cache/huggingface/hub/datasets--squad/blobs/feed"),
        Some("dataset")
    );
}

#[test]
fn generic_extensions_need_their_folder() {
    assert_eq!(class_of("/usr/lib/firmware/blob.bin"), None);
    assert_eq!(class_of("/usr/share/proto/thing.pb"), None);
    assert_eq!(class_of("/var/log/app/events.jsonl"), None);
    assert_eq!(class_of("/srv/data/train/part-0.jsonl"), Some("dataset"));
}

#[test]
fn datasets() {
    for path in [
        "/data/train.parquet",
        "/data/shard.arrow",
        "/data/x.tfrecord",
        "/tmp/features.npy",
        "/tmp/features.npz",
    ] {
        assert_eq!(class_of(path), Some("dataset"), "{path}");
    }
}

#[test]
fn secrets_match_under_any_home() {
    for path in [
        "/root/.cache/huggingface/token",
        "/home/ann/.cache/huggingface/token",
        "/tmp/tmpab12cd/.cache/huggingface/token",
        "/home/ann/.aws/credentials",
        "/root/.config/gcloud/application_default_credentials.json",
        "/home/bob/.config/gcloud/legacy_credentials/bob@example.com/adc.json",
        "/home/bob/.azure/msal_token_cache.json",
        "/root/.kube/config",
        "/home/ann/.netrc",
        "/home/ann/.ssh/id_ed25519",
        "/root/.docker/config.json",
        "/srv/app/.env",
        "/srv/app/.env.production",
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
        "/run/secrets/db_password",
    ] {
        assert_eq!(class_of(path), Some("secret"), "{path}");
    }
}

#[test]
fn public_keys_and_env_templates_are_not_secrets() {
    assert_eq!(class_of("/home/ann/.ssh/id_ed25519.pub"), None);
    assert_eq!(class_of("/srv/app/.env.example"), None);
    assert_eq!(class_of("/srv/app/.kube/config.bak"), None);
    assert_eq!(class_of("/etc/hostname"), None);
    assert_eq!(
        class_of("/usr/lib/python3/dist-packages/numpy/core.py"),
        None
    );
}

#[test]
fn persistence_locations_are_their_own_class() {
    for path in [
        "/root/.ssh/authorized_keys",
        "/home/ann/.ssh/authorized_keys",
        "/etc/crontab",
        "/etc/cron.d/backup",
        "/etc/cron.daily/logrotate",
        "/var/spool/cron/crontabs/root",
        "/etc/systemd/system/x.service",
        "/root/.config/systemd/user/x.service",
        "/home/ann/.bashrc",
        "/tmp/home/.profile",
        "/etc/profile.d/proxy.sh",
        "/etc/ld.so.preload",
        "/etc/sudoers.d/ci",
        "/etc/pam.d/sshd",
        "/usr/lib/x86_64-linux-gnu/security/pam_evil.so",
        "/etc/passwd",
        "/etc/shadow",
        "/srv/models/llama/.git/hooks/post-checkout",
    ] {
        assert_eq!(class_of(path), Some("persistence"), "{path}");
    }
    // The inert examples git copies into every repository.
    assert_eq!(class_of("/srv/repo/.git/hooks/pre-commit.sample"), None);
}

#[test]
fn the_kernel_prefilter_passes_persistence_locations() {
    let interest = AssetClassifier::with_defaults()
        .expect("defaults")
        .kernel_interest();
    for basename in [
        "authorized_keys",
        ".bashrc",
        "post-checkout",
        "ld.so.preload",
        "crontab",
        "passwd",
    ] {
        assert!(
            interest.basenames.iter().any(|b| b == basename),
            "{basename}"
        );
    }
    for prefix in ["/etc/cron.d/", "/etc/pam.d/", "/root/.config/systemd/user/"] {
        assert!(
            interest.prefixes.iter().any(|p| p == prefix),
            "{prefix}: {:?}",
            interest.prefixes
        );
    }
    assert!(
        interest.unfilterable.is_empty(),
        "{:?}",
        interest.unfilterable
    );
}

#[test]
fn environ_of_another_process_is_a_secret() {
    let c = classifier();
    assert_eq!(
        c.classify("/proc/77/environ", Some(12)),
        Some(AssetClass::Secret)
    );
    assert_eq!(
        c.classify("/proc/77/task/78/environ", Some(12)),
        Some(AssetClass::Secret)
    );
    assert_eq!(c.classify("/proc/77/environ", Some(77)), None);
    assert_eq!(c.classify("/proc/self/environ", Some(12)), None);
    assert_eq!(
        c.classify("/proc/77/environ", None),
        Some(AssetClass::Secret)
    );
    assert_eq!(c.classify("/proc/77/status", Some(12)), None);
}

#[test]
fn gpu_devices_by_path_and_major() {
    for path in [
        "/dev/nvidia0",
        "/dev/nvidiactl",
        "/dev/nvidia-uvm",
        "/dev/nvidia-uvm-tools",
        "/dev/dri/renderD128",
        "/dev/dri/by-path/pci-0000:00:02.0-render",
        "/dev/kfd",
        "/dev/accel/accel0",
    ] {
        assert_eq!(class_of(path), Some("gpu-device"), "{path}");
    }
    let c = classifier();
    assert_eq!(c.classify("/dev/null", None), None);
    let cache = &mut ClassCache::default();
    assert_eq!(
        c.classify_open("/dev/char/195:0", None, Some(195), cache),
        Some(AssetClass::GpuDevice)
    );
    assert_eq!(c.classify_open("/dev/tty1", None, Some(4), cache), None);
}

/// The cache gives the glob set's own answers, asked once or many times,
/// and never an answer that depends on who opens the path.
#[test]
fn cached_classes_are_the_classifiers_own() {
    let c = classifier();
    let cache = &mut ClassCache::default();
    let paths = [
        "/srv/models/llama.safetensors",
        "/srv/models/model.pkl",
        "/root/.aws/credentials",
        "/home/bob/.config/gcloud/application_default_credentials.json",
        "/data/train/img_000001.jpg",
        "/usr/lib/python3.11/json/__init__.py",
        "/etc/cron.d/job",
    ];
    for _ in 0..3 {
        for path in paths {
            assert_eq!(
                c.classify_cached(path, Some(12), cache),
                c.classify(path, Some(12)),
                "{path}"
            );
        }
    }
    // `/proc/<pid>/environ` is a secret of another process only.
    for _ in 0..2 {
        assert_eq!(
            c.classify_cached("/proc/77/environ", Some(12), cache),
            Some(AssetClass::Secret)
        );
        assert_eq!(c.classify_cached("/proc/77/environ", Some(77), cache), None);
    }
}

#[test]
fn accelerator_families() {
    assert_eq!(
        accelerator_family("/dev/nvidiactl", None),
        Some("nvidiactl")
    );
    assert_eq!(
        accelerator_family("/dev/nvidia-uvm-tools", None),
        Some("nvidia-uvm")
    );
    assert_eq!(accelerator_family("/dev/nvidia3", None), Some("nvidia"));
    assert_eq!(accelerator_family("/dev/dri/card0", None), Some("dri"));
    assert_eq!(accelerator_family("/dev/kfd", None), Some("kfd"));
    assert_eq!(accelerator_family("/dev/x", Some(195)), Some("nvidia"));
    assert_eq!(accelerator_family("/dev/null", Some(1)), None);
}

#[test]
fn user_patterns_extend_and_exclude() {
    let config: AssetConfig = serde_saphyr::from_str(
        "model: ['/mnt/weights/**']\nsecret: ['**/vault-token']\nexclude: ['**/tests/fixtures/**']\ngpu_majors: [195, 511]\n",
    )
    .expect("config parses");
    assert!(config.defaults, "defaults stay on when not mentioned");
    let c = AssetClassifier::new(&config).expect("compiles");
    assert_eq!(
        c.classify("/mnt/weights/llama/part1", None),
        Some(AssetClass::Model)
    );
    assert_eq!(
        c.classify("/home/x/vault-token", None),
        Some(AssetClass::Secret)
    );
    assert_eq!(c.classify("/src/tests/fixtures/tiny.onnx", None), None);
    assert_eq!(c.classify("/src/tiny.onnx", None), Some(AssetClass::Model));
    assert_eq!(c.classify_device(511), Some(AssetClass::GpuDevice));
}

#[test]
fn without_defaults_only_user_patterns_apply() {
    let config = AssetConfig {
        defaults: false,
        dataset: vec!["**/*.csv".into()],
        ..AssetConfig::default()
    };
    let c = AssetClassifier::new(&config).expect("compiles");
    assert_eq!(c.classify("/a/b.csv", None), Some(AssetClass::Dataset));
    assert_eq!(c.classify("/a/b.onnx", None), None);
}

#[test]
fn bad_glob_is_one_clear_error() {
    let config = AssetConfig {
        model: vec!["**/[unclosed".into()],
        ..AssetConfig::default()
    };
    let message = AssetClassifier::new(&config)
        .expect_err("invalid glob")
        .to_string();
    assert!(message.contains("[unclosed"), "{message}");
    assert!(message.contains("model"), "{message}");
}

#[test]
fn class_names_round_trip() {
    for class in AssetClass::ALL {
        assert_eq!(AssetClass::parse(class.as_str()), Some(class));
        let json = serde_json::to_string(&class).expect("serialises");
        assert_eq!(json, format!("\"{}\"", class.as_str()));
    }
    assert!(AssetClass::PickleModel.is_model());
    assert!(!AssetClass::Dataset.is_model());
}

#[test]
fn kernel_interest_covers_every_default_example() {
    let c = classifier();
    let interest = c.kernel_interest_for_homes(&["/root", "/home/ann"]);
    for ext in [
        "safetensors",
        "gguf",
        "onnx",
        "pt",
        "pkl",
        "bin",
        "parquet",
        "jsonl",
        "pb",
    ] {
        assert!(interest.extensions.contains(&ext.to_string()), "{ext}");
    }
    for name in [
        "token",
        "credentials",
        "config",
        ".netrc",
        "environ",
        ".env",
        "id_rsa",
        "kfd",
    ] {
        assert!(interest.basenames.contains(&name.to_string()), "{name}");
    }
    for prefix in [
        "/dev/nvidia",
        "/dev/dri/",
        "/dev/accel/",
        "/run/secrets/",
        "/var/run/secrets/",
        "/root/.cache/huggingface/",
        "/home/ann/.azure/",
        "/home/ann/.config/gcloud/",
    ] {
        assert!(interest.prefixes.contains(&prefix.to_string()), "{prefix}");
    }
    assert_eq!(interest.device_majors, vec![NVIDIA_MAJOR]);
    assert!(
        interest.unfilterable.is_empty(),
        "{:?}",
        interest.unfilterable
    );

    // Every default example path passes at least one entry of the filter.
    let passes = |path: &str| {
        let base = path.rsplit('/').next().unwrap_or(path);
        let ext = base.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
        ext.is_some_and(|e| interest.extensions.contains(&e))
            || interest.basenames.iter().any(|b| b == base)
            || interest
                .prefixes
                .iter()
                .any(|p| path.starts_with(p.as_str()))
    };
    for path in [
        "/home/ann/.config/gcloud/properties",
        "/root/.cache/huggingface/hub/models--gpt2/blobs/0123",
        "/home/ann/.ssh/id_ecdsa",
        "/srv/app/.env.local",
        "/proc/9/environ",
        "/dev/nvidia-uvm",
    ] {
        assert!(c.classify(path, Some(1)).is_some(), "{path} classifies");
        assert!(passes(path), "{path} passes the prefilter");
    }
}

#[test]
fn python_path_configuration_files_are_not_pickles() {
    // Every interpreter start reads these; they are `.pth` like torch weights.
    for path in [
        "/usr/lib/python3/dist-packages/distutils-precedence.pth",
        "/srv/venv/lib/python3.11/site-packages/distutils-precedence.pth",
        "/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages/easy-install.pth",
    ] {
        assert_eq!(class_of(path), None, "{path}");
    }
    // A checkpoint kept inside a package is still one.
    assert_eq!(
        class_of("/srv/venv/lib/python3.11/site-packages/mypkg/weights/resnet.pth"),
        Some("pickle-model")
    );
}

#[test]
fn passwd_homes_are_absolute_and_not_root_dir() {
    let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                  daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
                  nobody:x:65534:65534:nobody:/:/usr/sbin/nologin\n\
                  ann:x:1000:1000::/home/ann/:/bin/sh\n\
                  broken line\n";
    assert_eq!(
        passwd_homes(passwd),
        vec!["/root", "/usr/sbin", "/home/ann"]
    );
}

#[test]
fn host_interest_has_the_gpu_majors_and_real_homes() {
    let classifier = AssetClassifier::with_defaults().unwrap();
    let interest = host_interest(&classifier, &[1]);
    for major in [1, NVIDIA_MAJOR, DRM_MAJOR] {
        assert!(interest.device_majors.contains(&major), "{major}");
    }
    assert!(interest.prefixes.iter().any(|p| p.starts_with("/root/.")));
}

#[test]
fn dev_scan_finds_accelerator_nodes_only() {
    // A fake /dev with regular files: nothing is a character device.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("nvidia0"), b"").unwrap();
    std::fs::create_dir(dir.path().join("dri")).unwrap();
    std::fs::write(dir.path().join("dri/renderD128"), b"").unwrap();
    assert!(dev_accelerator_majors(dir.path().to_str().unwrap()).is_empty());
}
