use super::*;

fn policy(prefixes: &[&str]) -> FoldPolicy {
    FoldPolicy::new(&KernelInterest {
        prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
        ..KernelInterest::default()
    })
}

#[test]
fn a_data_directory_folds_and_an_asset_directory_never_does() {
    let policy = policy(&["/root/.aws/", "/etc/passwd", "/etc/cron.d/", "/srv/models/"]);
    assert!(policy.allows("/data/train/shard-00"));
    assert!(policy.allows("/tmp/loader"));
    // A prefix above it, one naming a file in it, one reaching below it.
    assert!(!policy.allows("/root/.aws"));
    assert!(!policy.allows("/root/.aws/sso"));
    assert!(!policy.allows("/etc"));
    assert!(!policy.allows("/srv"));
    assert!(!policy.allows("/srv/models/llama"));
    // Pseudo file systems, the root and relative paths.
    assert!(!policy.allows("/proc/42"));
    assert!(!policy.allows("/sys/class/drm"));
    assert!(!policy.allows("/dev/shm"));
    assert!(!policy.allows("/"));
    assert!(!policy.allows("data"));
    assert!(!policy.allows(""));
}

#[test]
fn an_asset_pattern_without_a_prefilter_turns_folding_off() {
    let policy = FoldPolicy::new(&KernelInterest {
        unfilterable: vec!["srv/*/thing*".into()],
        ..KernelInterest::default()
    });
    assert!(!policy.allows("/data/train"));
}

fn slot(ktime: u64, count: u64, bytes: u64, first: u64, last: u64) -> FileAccessRecord {
    // SAFETY: all-zero is a valid record.
    let mut r: FileAccessRecord = unsafe { std::mem::zeroed() };
    r.header.ktime_ns = ktime;
    r.header.pid = if ktime == 0 { 0 } else { 42 };
    r.count = count;
    r.bytes = bytes;
    r.first_ns = first;
    r.last_ns = last;
    r
}

#[test]
fn per_cpu_slots_add_up_and_keep_the_earliest_and_latest_times() {
    let merged = merge(&[
        slot(0, 0, 0, 0, 0),
        slot(7, 600, 6000, 100, 700),
        slot(9, 400, 4000, 50, 900),
    ])
    .unwrap();
    assert_eq!(merged.count, 1000);
    assert_eq!(merged.bytes, 10000);
    assert_eq!(merged.first_ns, 50);
    assert_eq!(merged.last_ns, 900);
    assert_eq!(merged.header.pid, 42);
    assert!(merge(&[slot(0, 0, 0, 0, 0)]).is_none());
}

#[test]
fn a_report_decodes_as_a_file_access_record() {
    let mut record = slot(5, 12, 1200, 3, 5);
    record.header.kind = EventKind::FileAccess as u16;
    record.header.size = size_of::<FileAccessRecord>() as u32;
    let decoded = decode::decode(decode::pod_bytes(&record)).unwrap();
    assert_eq!(decoded.common.pid, 42);
    let Payload::FileAccess(access) = decoded.payload else {
        panic!("not a file_access payload: {:?}", decoded.payload);
    };
    assert_eq!((access.count, access.bytes), (12, 1200));
    assert_eq!((access.first_ns, access.last_ns), (3, 5));
}
