use super::*;

use aiwatch_common::{file_access_home, FILE_ACCESS_PROBES, FILE_ACCESS_SLOTS};

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

fn key(tgid: u32, dir_ino: u64) -> FileAccessKey {
    FileAccessKey {
        tgid,
        dev: 0x0800_0001,
        dir_ino,
    }
}

#[test]
fn a_key_is_placed_where_the_kernel_looks_for_it_and_freed_for_the_next() {
    let mut slots = Slots::default();
    let first = key(100, 7);
    let home = file_access_home(&first);
    let slot = slots.free_for(&first).unwrap();
    assert_eq!(slot, home);
    slots.take(first, slot);
    assert_eq!(slots.get(&first), Some(home));
    // Keys whose probes overlap take the next free slots, all within the
    // probes the kernel reads; past those a key is refused, not misplaced.
    let mut placed = vec![first];
    for tgid in 101..100_000 {
        let other = key(tgid, 7);
        if file_access_home(&other) != home {
            continue;
        }
        match slots.free_for(&other) {
            Some(slot) => {
                let offset = slot.wrapping_sub(home) & (FILE_ACCESS_SLOTS - 1);
                assert!(
                    offset < FILE_ACCESS_PROBES,
                    "slot {slot} is off the probes of {home}"
                );
                slots.take(other, slot);
                placed.push(other);
            }
            None => break,
        }
    }
    assert_eq!(
        placed.len(),
        FILE_ACCESS_PROBES as usize,
        "every probe used"
    );
    let late = (100_000..200_000)
        .map(|tgid| key(tgid, 7))
        .find(|k| file_access_home(k) == home)
        .unwrap();
    assert_eq!(slots.free_for(&late), None);
    // A released slot is taken by the next key that may use it.
    let freed = slots.release(&placed[1]).unwrap();
    assert_eq!(slots.get(&placed[1]), None);
    assert_eq!(slots.free_for(&late), Some(freed));
}

#[test]
fn homes_spread_over_the_array() {
    // A data loader's directories under one device, and many processes in
    // one directory: neither piles onto a few slots.
    let homes: HashSet<u32> = (0..4096u64)
        .map(|ino| file_access_home(&key(42, 1_000_000 + ino)))
        .collect();
    assert!(
        homes.len() > 3500,
        "{} homes for 4096 directories",
        homes.len()
    );
    let homes: HashSet<u32> = (0..4096u32)
        .map(|tgid| file_access_home(&key(1000 + tgid, 77)))
        .collect();
    assert!(
        homes.len() > 3500,
        "{} homes for 4096 processes",
        homes.len()
    );
}
