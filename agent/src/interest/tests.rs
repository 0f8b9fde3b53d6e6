use super::*;
use crate::assets::AssetClassifier;

fn default_interest() -> KernelInterest {
    AssetClassifier::with_defaults()
        .expect("defaults compile")
        .kernel_interest_for_homes(&["/root", "/home/ann"])
}

#[test]
fn suffix_keys_are_reversed_tails() {
    let key = extension_key("SafeTensors").unwrap();
    assert_eq!(key.kind, SUFFIX_EXTENSION);
    assert_eq!(&key.bytes[..11], b"srosnetefas");
    assert!(key.bytes[11..].iter().all(|&b| b == 0));
    let key = basename_key("application_default_credentials.json").unwrap();
    assert_eq!(key.kind, SUFFIX_BASENAME);
    // The last 16 bytes, last byte first.
    assert_eq!(&key.bytes, b"nosj.slaitnederc");
    assert!(extension_key("").is_none());
    assert!(extension_key("a/b").is_none());
    assert!(extension_key("averyveryverylongext").is_none());
    assert!(basename_key("dir/name").is_none());
}

#[test]
fn prefix_keys_count_bits_and_cap_at_the_key_size() {
    let (bits, data) = prefix_key("/dev/nvidia").unwrap();
    assert_eq!(bits, 11 * 8);
    assert_eq!(&data[..11], b"/dev/nvidia");
    let long = format!("/{}", "x".repeat(100));
    let (bits, _) = prefix_key(&long).unwrap();
    assert_eq!(bits as usize, PREFIX_KEY_LEN * 8);
    assert!(prefix_key("relative/").is_none());
}

#[test]
fn default_interest_lets_assets_through_and_ordinary_files_not() {
    let interest = default_interest();
    for wanted in [
        "/srv/models/llama.safetensors",
        "weights.SAFETENSORS",
        "model.onnx",
        "/tmp/x/ckpt.pt",
        "/root/.aws/credentials",
        "/home/ann/.config/gcloud/anything",
        "/dev/nvidia0",
        "/dev/nvidiactl",
        "/dev/dri/renderD128",
        "/dev/kfd",
        "/dev/accel/accel0",
        "/proc/1/environ",
        "/run/secrets/kubernetes.io/serviceaccount/token",
        ".env",
        "/app/.netrc",
        "/root/.ssh/id_rsa",
        "/root/.docker/config.json",
    ] {
        assert!(kernel_would_report(&interest, wanted), "{wanted} filtered");
    }
    for unwanted in [
        "notes.txt",
        "/etc/ld.so.cache",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/proc/self/stat",
        "/home/ann/project/main.rs",
        "",
        "/",
    ] {
        assert!(
            !kernel_would_report(&interest, unwanted),
            "{unwanted} reported"
        );
    }
}

#[test]
fn every_classified_default_path_passes_the_prefilter() {
    // The prefilter must be a necessary condition of the classifier.
    let classifier = AssetClassifier::with_defaults().unwrap();
    let interest = classifier.kernel_interest_for_homes(&["/root"]);
    for path in [
        "/data/train.parquet",
        "/srv/models/x/weights.bin",
        "/root/.cache/huggingface/hub/models--org--m/blobs/abc123",
        "/root/.kube/config",
        "/var/run/secrets/x",
        "/dev/nvidia-uvm",
    ] {
        assert!(classifier.classify(path, Some(1)).is_some(), "{path}");
        assert!(kernel_would_report(&interest, path), "{path} filtered");
    }
}

#[test]
fn entries_skip_what_the_kernel_cannot_test() {
    let interest = KernelInterest {
        extensions: vec!["onnx".into(), "x".repeat(20)],
        basenames: vec!["token".into()],
        prefixes: vec!["/dev/kfd".into(), "not/absolute".into()],
        device_majors: vec![195, 226],
        ..KernelInterest::default()
    };
    let (entries, skipped) = entries(&interest);
    assert_eq!(entries.prefixes.len(), 1);
    assert_eq!(entries.suffixes.len(), 2);
    assert_eq!(entries.gpu_majors.len(), 2);
    assert_eq!(skipped.len(), 2, "{skipped:?}");
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
    for major in [1, crate::assets::NVIDIA_MAJOR, DRM_MAJOR] {
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
