use aiwatch_common::{SUFFIX_BASENAME, SUFFIX_EXTENSION, SUFFIX_KEY_LEN};

use super::*;
use crate::enrich::assets::AssetClassifier;

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

/// The words and the byte the kernel reads for a name held in a 256-byte
/// buffer whose bytes past the name are stale.
fn kernel_view(name: &[u8]) -> (u64, u64, u8) {
    let mut buffer = [0xa5u8; 256];
    buffer[..name.len()].copy_from_slice(name);
    let start = name.len().saturating_sub(SUFFIX_KEY_LEN);
    let word = |at: usize| u64::from_le_bytes(buffer[at..at + 8].try_into().expect("8 bytes"));
    let before_tail = if name.len() > SUFFIX_KEY_LEN {
        buffer[name.len() - SUFFIX_KEY_LEN - 1]
    } else {
        0x2e // a stale '.': must be ignored for short names
    };
    (word(start), word(start + 8), before_tail)
}

#[test]
fn loop_free_suffix_keys_equal_the_backward_scan() {
    let mut names: Vec<String> = [
        "a",
        "ab",
        ".",
        "..",
        "/",
        "x/",
        "/a",
        ".env",
        "a.",
        "A.ONNX",
        "model.onnx",
        "/models/Llama.SafeTensors",
        "dir.d/file",
        "dir.d/FILE",
        "/root/.aws/credentials",
        "application_default_credentials.json",
        "0123456789abcdef",
        ".0123456789abcdef",
        "x.0123456789abcdef",
        "x.0123456789abcdefg",
        "/x/.0123456789abcdef",
        "/x/0123456789abcde.f",
        "weird\u{e9}name.Gguf",
        "tr\u{c0}il.\u{c9}XT",
        "/usr/lib/python3/dist-packages/numpy/core/_multiarray_umath.cpython-311.so",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Every length around the key size, with a dot and a slash at every place.
    for len in 1..40 {
        for special in 0..len {
            for byte in ['.', '/', 'Q'] {
                let mut name: Vec<char> = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN"
                    .chars()
                    .take(len)
                    .collect();
                name[special] = byte;
                names.push(name.into_iter().collect());
            }
        }
    }
    for name in &names {
        let bytes = name.as_bytes();
        let (low, high, before_tail) = kernel_view(bytes);
        let keys = aiwatch_common::suffix::tail_keys(low, high, bytes.len(), before_tail);
        let (basename, extension, dot) = scan_tail(bytes);
        assert_eq!(keys.basename, basename, "base name key of {name:?}");
        let has_extension = dot.is_some_and(|d| d > 0);
        assert_eq!(
            keys.extension_len > 0,
            has_extension,
            "extension of {name:?}"
        );
        if has_extension {
            assert_eq!(keys.extension, extension, "extension key of {name:?}");
            assert_eq!(Some(keys.extension_len as usize), dot, "{name:?}");
        }
    }
}

#[test]
fn the_inline_name_tail_equals_the_copied_one() {
    let alphabet = b"abcdefghijklmnopqrstuvwxyz.ABCDE/";
    for len in 1..aiwatch_common::INLINE_NAME_LOADED as usize {
        for rotate in [0, 5, 13] {
            let name: Vec<u8> = alphabet
                .iter()
                .cycle()
                .skip(rotate)
                .take(len)
                .copied()
                .collect();
            // The inline buffer: the name, its NUL, then a longer name's
            // leftovers.
            let mut buffer = [0xa5u8; 32];
            buffer[..len].copy_from_slice(&name);
            buffer[len] = 0;
            let word =
                |at: usize| u64::from_le_bytes(buffer[at..at + 8].try_into().expect("8 bytes"));
            let inline =
                aiwatch_common::suffix::inline_tail([word(0), word(8), word(16), word(24)], len);
            let copied = kernel_view(&name);
            let name = String::from_utf8_lossy(&name);
            let keys = |(low, high, before): (u64, u64, u8)| {
                aiwatch_common::suffix::tail_keys(low, high, len, before)
            };
            assert_eq!(keys(inline), keys(copied), "keys of {name:?}");
            if len > SUFFIX_KEY_LEN {
                assert_eq!(inline, copied, "tail of {name:?}");
            }
        }
    }
}

#[test]
fn filters_hold_every_entry_and_short_prefixes_open_whole_rows() {
    let mut entries = Entries::default();
    entries.prefixes.insert(prefix_key("/dev/nvidia").unwrap());
    entries.prefixes.insert(prefix_key("/r").unwrap());
    let onnx = extension_key("onnx").unwrap();
    entries.suffixes.insert((onnx.kind, onnx.bytes));
    let filters = Filters::of(&entries);
    assert!(filters.prefix_may_match(b"/dev/nvidia0"));
    assert!(filters.prefix_may_match(b"/de"));
    assert!(!filters.prefix_may_match(b"/tmp/x"));
    // "/r" stands for every name whose second byte is 'r'.
    assert!(filters.prefix_may_match(b"/run/secrets/x"));
    assert!(filters.prefix_may_match(b"/r"));
    assert!(filters.suffix_may_match(&onnx.bytes));
    assert!(!filters.suffix_may_match(&extension_key("txt").unwrap().bytes));
    entries.prefixes.insert(prefix_key("/").unwrap());
    assert!(Filters::of(&entries).prefix_may_match(b"/tmp/x"));
}
