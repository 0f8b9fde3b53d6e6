//! Decoding the file family's records (open, unlink, rename, chmod,
//! truncate) and the GPU ioctl counts.
//!
//! Lengths and flags come from the kernel but are still checked: a length
//! past its buffer is clamped, an unknown flag bit is ignored.

use aiwatch_common::{
    FileAccessKey, FileAccessRecord, FileRecord, GpuIoctlRecord, FILE_FLAG_ACCEL_DENIED,
    FILE_FLAG_ACCEL_WOULD_DENY, FILE_FLAG_DIR_FOLDED, FILE_FLAG_INODE, FILE_FLAG_KILLED,
    FILE_FLAG_KILL_RATE_LIMITED, FILE_FLAG_LSM_DENIED, FILE_FLAG_NAME_TRUNCATED,
    FILE_FLAG_PATH2_IS_DIR, FILE_FLAG_PATH2_SAME_DIR, FILE_FLAG_PATH_IS_DIR,
    FILE_FLAG_PATH_IS_FILE, FILE_FLAG_TRACKED, FILE_FLAG_UNCHECKED,
};

use super::{kernel_path, ResolvedPath};

/// A path syscall: what was asked, what the kernel resolved, the result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileOp {
    /// fd or 0 on success, `-errno` on failure.
    pub ret: i64,
    /// open flags, or the syscall's own flags (unlinkat, renameat2, ...).
    pub flags: u32,
    /// open mode, or the new mode of chmod.
    pub mode: u32,
    /// truncate's new length.
    pub length: i64,
    /// The path as the process passed it (maybe relative).
    pub name: String,
    /// The rename destination as passed.
    pub name2: Option<String>,
    /// A name was longer than the kernel keeps.
    pub name_truncated: bool,
    /// The process was tracked (else a path of interest let it through).
    pub tracked: bool,
    /// What `cgroup/dev` decided about an accelerator open outside the
    /// allowlist: refused, or let through in audit mode.
    pub accel: Option<AccelVerdict>,
    /// The kernel killed the opener of a protected file at the open's exit
    /// (`FILE_FLAG_KILLED`), or would have but the kill budget was spent.
    pub killed: bool,
    pub kill_rate_limited: bool,
    /// The BPF LSM refused the open (`FILE_FLAG_LSM_DENIED`): no descriptor
    /// was made.
    pub lsm_denied: bool,
    /// A relative name the kernel could not test: keep the event only if
    /// the resolved path is of interest.
    pub unchecked: bool,
    /// The opened file itself, resolved from its new fd.
    pub opened: Option<ResolvedPath>,
    /// The directory a relative `name` is relative to.
    pub dir: Option<ResolvedPath>,
    /// The directory a relative `name2` is relative to.
    pub dir2: Option<ResolvedPath>,
    /// The opened inode, for successful opens.
    pub inode: Option<Inode>,
    /// A tracked process's first plain read in a directory the kernel can
    /// fold: the directory's key in `FILE_ACCESS`.
    pub foldable_dir: Option<FileAccessKey>,
}

/// Plain reads by one process in one directory, counted in the kernel
/// (`FILE_ACCESS`) and reported as their growth over an interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileAccess {
    /// Opens counted in the interval.
    pub count: u64,
    /// Sum of those files' sizes at open.
    pub bytes: u64,
    /// Boot-clock times of the first and last open counted (the first ever
    /// counted for the directory, and the latest).
    pub first_ns: u64,
    pub last_ns: u64,
    /// The directory, as the agent resolved it from the full event of the
    /// first read there; empty until the poller names it.
    pub directory: String,
}

/// What the kernel read from an opened inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inode {
    pub i_mode: u32,
    /// Kernel `dev_t`: major in the top 12 bits, minor in the low 20.
    pub rdev: u32,
    pub size: i64,
}

/// Per-process ioctl count on accelerator fds over an interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuIoctl {
    pub count: u64,
    pub rdev: u32,
    pub interval_ns: u64,
}

/// Major and minor of a kernel `dev_t`.
pub fn kernel_dev(rdev: u32) -> (u32, u32) {
    (rdev >> 20, rdev & 0xf_ffff)
}

fn bytes_to_string(bytes: &[u8], len: u16) -> String {
    let used = &bytes[..usize::from(len).min(bytes.len())];
    // A NUL inside the declared length ends the string.
    let end = used.iter().position(|&b| b == 0).unwrap_or(used.len());
    String::from_utf8_lossy(&used[..end]).into_owned()
}

/// `cgroup/dev`'s verdict on an accelerator open outside the allowlist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccelVerdict {
    Denied,
    WouldDeny,
}

pub(super) fn file_op(r: &FileRecord) -> FileOp {
    let flags = r.header.flags;
    let path = kernel_path(&r.path);
    let (opened, dir) = if flags & FILE_FLAG_PATH_IS_FILE != 0 {
        (path, None)
    } else if flags & FILE_FLAG_PATH_IS_DIR != 0 {
        (None, path)
    } else {
        (None, None)
    };
    let name2 = (r.name2_len > 0).then(|| bytes_to_string(&r.name2, r.name2_len));
    let dir2 = if name2.is_none() {
        None
    } else if flags & FILE_FLAG_PATH2_SAME_DIR != 0 {
        dir.clone()
    } else if flags & FILE_FLAG_PATH2_IS_DIR != 0 {
        kernel_path(&r.path2)
    } else {
        None
    };
    FileOp {
        ret: r.ret,
        flags: r.flags,
        mode: r.mode,
        length: r.length,
        name: bytes_to_string(&r.name, r.name_len),
        name2,
        name_truncated: flags & FILE_FLAG_NAME_TRUNCATED != 0,
        tracked: flags & FILE_FLAG_TRACKED != 0,
        killed: flags & FILE_FLAG_KILLED != 0,
        kill_rate_limited: flags & FILE_FLAG_KILL_RATE_LIMITED != 0,
        lsm_denied: flags & FILE_FLAG_LSM_DENIED != 0,
        accel: if flags & FILE_FLAG_ACCEL_DENIED != 0 {
            Some(AccelVerdict::Denied)
        } else if flags & FILE_FLAG_ACCEL_WOULD_DENY != 0 {
            Some(AccelVerdict::WouldDeny)
        } else {
            None
        },
        unchecked: flags & FILE_FLAG_UNCHECKED != 0,
        opened,
        dir,
        dir2,
        inode: (flags & FILE_FLAG_INODE != 0).then_some(Inode {
            i_mode: r.i_mode,
            rdev: r.rdev,
            size: r.size,
        }),
        foldable_dir: (flags & FILE_FLAG_DIR_FOLDED != 0).then_some(FileAccessKey {
            tgid: r.header.pid,
            dev: r.dir_dev,
            dir_ino: r.dir_ino,
        }),
    }
}

pub(super) fn file_access(r: &FileAccessRecord) -> FileAccess {
    FileAccess {
        count: r.count,
        bytes: r.bytes,
        first_ns: r.first_ns,
        last_ns: r.last_ns,
        directory: String::new(),
    }
}

pub(super) fn gpu_ioctl(r: &GpuIoctlRecord) -> GpuIoctl {
    GpuIoctl {
        count: r.count,
        rdev: r.rdev,
        interval_ns: r.interval_ns,
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use aiwatch_common::{EventHeader, EventKind, KernelPath, PATH_FLAG_MISSING};

    use super::*;
    use crate::ingest::decode::{
        decode,
        test_support::{self, bytes_of, kernel_path_of, zeroed},
        DecodeError, Payload,
    };

    fn header(kind: EventKind, size: usize, flags: u16) -> EventHeader {
        let mut h = test_support::header(kind, size, 300, "python3");
        h.tid = 301;
        h.flags = flags;
        h
    }

    fn missing() -> KernelPath {
        let mut p: KernelPath = zeroed();
        p.flags = PATH_FLAG_MISSING;
        p
    }

    fn file_record(kind: EventKind, flags: u16, name: &str) -> FileRecord {
        let mut r: FileRecord = zeroed();
        r.header = header(kind, size_of::<FileRecord>(), flags);
        r.name[..name.len()].copy_from_slice(name.as_bytes());
        r.name_len = name.len() as u16;
        r.path = missing();
        r.path2 = missing();
        r
    }

    fn decode_file(r: &FileRecord) -> FileOp {
        match decode(&bytes_of(r)).expect("decodes").payload {
            Payload::File(op) => *op,
            other => panic!("not a file op: {other:?}"),
        }
    }

    #[test]
    fn successful_open_carries_the_resolved_file_and_inode() {
        let mut r = file_record(
            EventKind::Open,
            FILE_FLAG_PATH_IS_FILE | FILE_FLAG_INODE | FILE_FLAG_TRACKED,
            "weights/model.safetensors",
        );
        r.ret = 5;
        r.flags = 0o2; // O_RDWR
        r.i_mode = 0o100644;
        r.size = 4096;
        r.path = kernel_path_of(&["model.safetensors", "weights", "srv"]);
        let op = decode_file(&r);
        assert_eq!(op.ret, 5);
        assert!(op.tracked);
        assert_eq!(op.name, "weights/model.safetensors");
        assert_eq!(
            op.opened.map(|p| p.path).as_deref(),
            Some("/srv/weights/model.safetensors")
        );
        assert_eq!(op.dir, None);
        assert_eq!(
            op.inode,
            Some(Inode {
                i_mode: 0o100644,
                rdev: 0,
                size: 4096
            })
        );
    }

    #[test]
    fn failed_relative_open_carries_the_directory() {
        let mut r = file_record(EventKind::Open, FILE_FLAG_PATH_IS_DIR, "../x/secret.env");
        r.ret = -2;
        r.path = kernel_path_of(&["work", "tmp"]);
        let op = decode_file(&r);
        assert_eq!(op.ret, -2);
        assert!(!op.tracked);
        assert_eq!(op.opened, None);
        assert_eq!(op.dir.map(|p| p.path).as_deref(), Some("/tmp/work"));
        assert_eq!(op.inode, None);
    }

    #[test]
    fn rename_has_both_names_and_the_shared_directory() {
        let mut r = file_record(
            EventKind::Rename,
            FILE_FLAG_PATH_IS_DIR | FILE_FLAG_PATH2_SAME_DIR,
            "a.tmp",
        );
        r.name2[..7].copy_from_slice(b"b.final");
        r.name2_len = 7;
        r.path = kernel_path_of(&["d"]);
        let op = decode_file(&r);
        assert_eq!(op.name2.as_deref(), Some("b.final"));
        assert_eq!(op.dir2.map(|p| p.path).as_deref(), Some("/d"));

        // A different dirfd: its own directory.
        r.header.flags = FILE_FLAG_PATH_IS_DIR | FILE_FLAG_PATH2_IS_DIR;
        r.path2 = kernel_path_of(&["e", "d"]);
        assert_eq!(
            decode_file(&r).dir2.map(|p| p.path).as_deref(),
            Some("/d/e")
        );
    }

    #[test]
    fn lengths_past_the_buffers_are_clamped_not_trusted() {
        let mut r = file_record(EventKind::Unlink, FILE_FLAG_PATH_IS_DIR, "x");
        r.name_len = u16::MAX;
        r.name2_len = 9999;
        r.path.len = u16::MAX;
        r.path.flags = 0;
        let op = decode_file(&r);
        // The NUL after "x" ends the name; nothing past the buffer is read.
        assert_eq!(op.name, "x");
        assert_eq!(op.name2.as_deref(), Some(""));
        assert!(op.dir.is_some());
    }

    #[test]
    fn truncated_and_garbage_file_records_are_errors() {
        let r = file_record(EventKind::Chmod, 0, "/etc/passwd");
        let bytes = bytes_of(&r);
        let short = decode(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(matches!(
            short,
            DecodeError::BadSize {
                kind: EventKind::Chmod,
                ..
            }
        ));
        let mut lying = r;
        lying.header.size = 64;
        assert!(matches!(
            decode(&bytes_of(&lying)),
            Err(DecodeError::BadSize { .. })
        ));
        // Random bytes with a file kind: rejected or decoded, never a panic.
        let mut noise = bytes.clone();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for byte in noise.iter_mut().skip(size_of::<EventHeader>()) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = state as u8;
        }
        let op = match decode(&noise).unwrap().payload {
            Payload::File(op) => op,
            other => panic!("{other:?}"),
        };
        assert!(op.name.len() <= 4 * aiwatch_common::NAME_LEN);
    }

    #[test]
    fn gpu_ioctl_records_decode_and_short_ones_do_not() {
        let mut r: GpuIoctlRecord = zeroed();
        r.header = header(EventKind::GpuIoctl, size_of::<GpuIoctlRecord>(), 0);
        r.count = 1000;
        r.rdev = (195 << 20) | 3;
        r.interval_ns = 10_000_000_000;
        let record = decode(&bytes_of(&r)).unwrap();
        assert_eq!(record.common.comm, "python3");
        let Payload::GpuIoctl(gpu) = record.payload else {
            panic!("not a gpu record")
        };
        assert_eq!(gpu.count, 1000);
        assert_eq!(kernel_dev(gpu.rdev), (195, 3));
        let bytes = bytes_of(&r);
        assert!(decode(&bytes[..40]).is_err());
    }
}
