use super::test_support::{self, bytes_of, kernel_path_of, zeroed};
use super::*;
use aiwatch_common::PATH_BUF_LEN;

fn header(kind: EventKind, size: usize) -> EventHeader {
    let mut h = test_support::header(kind, size, 100, "sh");
    h.ktime_ns = 42;
    h.tid = 101;
    h.uid = 1000;
    h.cgroup_id = 7;
    h
}

fn exec_record(args: &[u8]) -> ExecRecord {
    let mut r: ExecRecord = zeroed();
    r.header = header(EventKind::Exec, size_of::<ExecRecord>());
    r.ppid = 1;
    r.args[..args.len()].copy_from_slice(args);
    r.args_len = args.len() as u16;
    r.filename[..7].copy_from_slice(b"/bin/sh");
    r.filename_len = 7;
    r.exe = kernel_path_of(&["dash", "bin", "usr"]);
    r
}

#[test]
fn decodes_an_exec_record() {
    let record = decode(&bytes_of(&exec_record(b"sh\0-c\0exit 3\0"))).unwrap();
    assert_eq!(record.common.kind, EventKind::Exec);
    assert_eq!(record.common.pid, 100);
    assert_eq!(record.common.comm, "sh");
    let Payload::Exec(exec) = record.payload else {
        panic!("not an exec")
    };
    assert_eq!(exec.argv, ["sh", "-c", "exit 3"]);
    assert!(!exec.argv_truncated);
    assert_eq!(exec.filename, "/bin/sh");
    assert_eq!(exec.exe.unwrap().path, "/usr/bin/dash");
}

#[test]
fn keeps_sixteen_arguments_and_flags_the_rest() {
    let mut args = Vec::new();
    for i in 0..20 {
        args.extend_from_slice(format!("a{i}\0").as_bytes());
    }
    let record = decode(&bytes_of(&exec_record(&args))).unwrap();
    let Payload::Exec(exec) = record.payload else {
        panic!("not an exec")
    };
    assert_eq!(exec.argv.len(), ARGS_MAX);
    assert_eq!(exec.argv[15], "a15");
    assert!(exec.argv_truncated);
}

#[test]
fn kernel_truncation_flag_survives() {
    let mut r = exec_record(b"x\0");
    r.header.flags = EXEC_FLAG_ARGS_TRUNCATED;
    let Payload::Exec(exec) = decode(&bytes_of(&r)).unwrap().payload else {
        panic!()
    };
    assert!(exec.argv_truncated);
}

#[test]
fn oversized_lengths_are_clamped() {
    let mut r = exec_record(b"x\0");
    r.args_len = u16::MAX;
    r.filename_len = u16::MAX;
    r.exe.len = u16::MAX;
    let Payload::Exec(exec) = decode(&bytes_of(&r)).unwrap().payload else {
        panic!()
    };
    assert_eq!(exec.argv[0], "x");
    assert!(exec.filename.len() <= aiwatch_common::NAME_LEN);
    assert!(exec.exe.unwrap().path.len() <= PATH_BUF_LEN + 64);
}

#[test]
fn short_record_is_an_error() {
    let bytes = bytes_of(&exec_record(b"sh\0"));
    assert_eq!(decode(&bytes[..10]), Err(DecodeError::TooShort { len: 10 }));
    let err = decode(&bytes[..size_of::<EventHeader>() + 8]).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::BadSize {
                kind: EventKind::Exec,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.kind(), Some(EventKind::Exec));
}

#[test]
fn declared_size_must_match() {
    let mut r = exec_record(b"sh\0");
    r.header.size = 12;
    assert!(matches!(
        decode(&bytes_of(&r)),
        Err(DecodeError::BadSize { declared: 12, .. })
    ));
}

#[test]
fn unknown_kind_is_an_error() {
    let mut r = exec_record(b"sh\0");
    r.header.kind = 999;
    assert_eq!(
        decode(&bytes_of(&r)),
        Err(DecodeError::UnknownKind { kind: 999 })
    );
}

#[test]
fn garbage_never_panics() {
    // A deterministic pseudo-random stream of garbage of every length.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for len in 0..4096 {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let _ = decode(&bytes);
    }
}

#[test]
fn exit_and_fork_records() {
    let mut exit: ExitRecord = zeroed();
    exit.header = header(EventKind::Exit, size_of::<ExitRecord>());
    exit.exit_code = 3 << 8;
    let Payload::Exit(e) = decode(&bytes_of(&exit)).unwrap().payload else {
        panic!()
    };
    assert_eq!(e.exit_code, 0x300);

    let mut fork: ForkRecord = zeroed();
    fork.header = header(EventKind::Fork, size_of::<ForkRecord>());
    fork.child_pid = 555;
    let Payload::Fork(f) = decode(&bytes_of(&fork)).unwrap().payload else {
        panic!()
    };
    assert_eq!(f.child_pid, 555);
}

#[test]
fn paths_are_rebuilt_root_first() {
    assert_eq!(
        kernel_path(&kernel_path_of(&["c", "b", "a"])).unwrap().path,
        "/a/b/c"
    );
    assert_eq!(kernel_path(&kernel_path_of(&[])).unwrap().path, "/");
    let mut missing = kernel_path_of(&["x"]);
    missing.flags = PATH_FLAG_MISSING;
    assert_eq!(kernel_path(&missing), None);
    let mut truncated = kernel_path_of(&["x"]);
    truncated.flags = PATH_FLAG_TRUNCATED;
    assert!(kernel_path(&truncated).unwrap().truncated);
}

#[test]
fn memfd_and_unlinked_flags() {
    let mut r = exec_record(b"x\0");
    r.header.flags = EXEC_FLAG_EXE_MEMFD | EXEC_FLAG_EXE_UNLINKED;
    let Payload::Exec(exec) = decode(&bytes_of(&r)).unwrap().payload else {
        panic!()
    };
    assert!(exec.exe_memfd && exec.exe_unlinked);
}

#[test]
fn decodes_the_same_record_aligned_and_unaligned() {
    let bytes = bytes_of(&exec_record(b"sh\0-c\0true\0"));
    // One byte in: the record is copied out instead of borrowed in place.
    let mut shifted = vec![0u8; bytes.len() + 1];
    shifted[1..].copy_from_slice(&bytes);
    let aligned = decode(&bytes).unwrap();
    let unaligned = decode(&shifted[1..]).unwrap();
    assert_eq!(aligned, unaligned);
    let Payload::Exec(exec) = unaligned.payload else {
        panic!("not an exec")
    };
    assert_eq!(exec.argv, ["sh", "-c", "true"]);
}
