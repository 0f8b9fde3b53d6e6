//! Decoding of the privilege and tampering record (`SyscallRecord`): which
//! syscall, its arguments, its result, and its string and path if any.

use aiwatch_common::{
    sys, EventHeader, EventKind, SyscallRecord, SYSCALL_FLAG_TRACKED, SYSCALL_FLAG_USER_READ,
};

use super::{checked, kernel_path, DecodeError, Payload, ResolvedPath};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Syscall {
    /// The syscall's name (`setresuid`, `bpf`, ...), or `unknown`.
    pub name: &'static str,
    /// One of the `aiwatch_common::sys` numbers.
    pub number: u16,
    /// Raw arguments; see `SyscallRecord` for the ones replaced by values
    /// read from user memory.
    pub args: [u64; 6],
    pub result: i64,
    /// The kernel read the user memory it wanted (capset sets, bpf prog type).
    pub user_read: bool,
    pub tracked: bool,
    /// memfd name or module parameters.
    pub text: Option<String>,
    /// finit_module's file.
    pub path: Option<ResolvedPath>,
}

pub(super) fn decode(
    kind: EventKind,
    header: &EventHeader,
    bytes: &[u8],
) -> Result<Payload, DecodeError> {
    let r = checked::<SyscallRecord>(kind, header, bytes)?;
    Ok(Payload::Syscall(Box::new(syscall(&r))))
}

pub fn syscall(r: &SyscallRecord) -> Syscall {
    let flags = r.header.flags;
    let text_len = usize::from(r.text_len).min(r.text.len());
    Syscall {
        name: syscall_name(r.syscall),
        number: r.syscall,
        args: r.args,
        result: r.ret,
        user_read: flags & SYSCALL_FLAG_USER_READ != 0,
        tracked: flags & SYSCALL_FLAG_TRACKED != 0,
        text: (text_len > 0).then(|| super::c_string(&r.text[..text_len])),
        path: kernel_path(&r.path),
    }
}

pub fn syscall_name(number: u16) -> &'static str {
    match number {
        sys::SETUID => "setuid",
        sys::SETREUID => "setreuid",
        sys::SETRESUID => "setresuid",
        sys::SETGID => "setgid",
        sys::SETREGID => "setregid",
        sys::SETRESGID => "setresgid",
        sys::CAPSET => "capset",
        sys::PTRACE => "ptrace",
        sys::INIT_MODULE => "init_module",
        sys::FINIT_MODULE => "finit_module",
        sys::BPF => "bpf",
        sys::MEMFD_CREATE => "memfd_create",
        sys::MMAP => "mmap",
        sys::MPROTECT => "mprotect",
        sys::SIGNAL => "signal",
        sys::PROCESS_VM_WRITEV => "process_vm_writev",
        sys::PIDFD_GETFD => "pidfd_getfd",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use aiwatch_common::PATH_FLAG_MISSING;

    use super::*;
    use crate::ingest::decode::{
        decode,
        test_support::{self, bytes_of, zeroed},
    };

    fn record(kind: EventKind, number: u16) -> SyscallRecord {
        let mut r: SyscallRecord = zeroed();
        r.header = test_support::header(kind, size_of::<SyscallRecord>(), 7, "");
        r.syscall = number;
        r.path.flags = PATH_FLAG_MISSING;
        r
    }

    #[test]
    fn decodes_a_setuid_with_result() {
        let mut r = record(EventKind::Setuid, sys::SETUID);
        r.args[0] = 65534;
        r.ret = 0;
        let Payload::Syscall(s) = decode(&bytes_of(&r)).unwrap().payload else {
            panic!("not a syscall payload");
        };
        assert_eq!((s.name, s.args[0], s.result), ("setuid", 65534, 0));
        assert_eq!((s.text, s.path), (None, None));
    }

    #[test]
    fn text_and_path_are_bounded_by_the_buffer() {
        let mut r = record(EventKind::MemfdCreate, sys::MEMFD_CREATE);
        r.text[..7].copy_from_slice(b"payload");
        r.text_len = u16::MAX; // garbage length: clamped, then cut at the NUL
        r.path.flags = 0;
        r.path.len = u16::MAX;
        r.path.buf[..8].copy_from_slice(b"mod.ko\0x");
        let s = syscall(&r);
        assert_eq!(s.text.as_deref(), Some("payload"));
        assert!(s.path.is_some());
        assert_eq!(syscall_name(999), "unknown");
    }

    #[test]
    fn short_or_mislabelled_records_are_errors() {
        let r = record(EventKind::Bpf, sys::BPF);
        let bytes = bytes_of(&r);
        assert!(decode(&bytes[..size_of::<SyscallRecord>() - 8]).is_err());
        let mut wrong = r;
        wrong.header.size = 64;
        assert!(matches!(
            decode(&bytes_of(&wrong)),
            Err(DecodeError::BadSize {
                kind: EventKind::Bpf,
                ..
            })
        ));
    }
}
