//! Turning raw ring-buffer records into typed, owned values.
//!
//! This is the only module that reads the `repr(C)` records of
//! `aiwatch-common`. It checks a record's length, kind and declared size
//! before reading anything else, so a short, unknown or garbage record is an
//! error value that the caller counts, never a panic or a misread.

mod file;

use std::mem::size_of;

pub mod clear_text;
pub mod dns;
pub mod dns_answer;
pub mod http_head;
pub mod net;
pub mod privilege;
pub mod tls_hello;

use aiwatch_common::{
    EventHeader, EventKind, ExecRecord, ExitRecord, FileAccessRecord, FileRecord, ForkRecord,
    GpuIoctlRecord, KernelPath, ARGS_MAX, EXEC_FLAG_ARGS_TRUNCATED, EXEC_FLAG_EXE_MEMFD,
    EXEC_FLAG_EXE_UNLINKED, EXEC_FLAG_KILLED, EXEC_FLAG_KILL_RATE_LIMITED, EXEC_FLAG_LSM_DENIED,
    EXEC_FLAG_STDIO_SOCKET, PATH_FLAG_MISSING, PATH_FLAG_TRUNCATED,
};

pub use file::{kernel_dev, AccelVerdict, FileAccess, FileOp, GpuIoctl, Inode};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than a header")]
    TooShort { len: usize },
    #[error("record has unknown kind {kind}")]
    UnknownKind { kind: u16 },
    #[error("{kind:?} record is {len} bytes (declares {declared}), expected {expected}")]
    BadSize {
        kind: EventKind,
        len: usize,
        declared: u32,
        expected: usize,
    },
    #[error("{kind:?} record has {field} {value}, which no kernel program writes")]
    BadField {
        kind: EventKind,
        field: &'static str,
        value: u64,
    },
}

impl DecodeError {
    /// The kind the record claimed, when it named a known one.
    pub fn kind(&self) -> Option<EventKind> {
        match self {
            DecodeError::BadSize { kind, .. } | DecodeError::BadField { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

/// Fields every record carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Common {
    pub kind: EventKind,
    pub flags: u16,
    pub ktime_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    pub comm: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exec {
    pub ppid: u32,
    pub old_pid: u32,
    pub euid: u32,
    pub egid: u32,
    pub mnt_ns: u32,
    pub pid_ns: u32,
    pub start_boottime_ns: u64,
    /// The name passed to execve.
    pub filename: String,
    /// The executable resolved in the kernel, when the walk succeeded.
    pub exe: Option<ResolvedPath>,
    pub argv: Vec<String>,
    pub argv_truncated: bool,
    pub exe_unlinked: bool,
    pub exe_memfd: bool,
    pub stdio_socket: bool,
    /// The kernel killed the process at exec (`EXEC_FLAG_KILLED`).
    pub killed: bool,
    /// The BPF LSM refused the exec (`EXEC_FLAG_LSM_DENIED`): the process
    /// keeps its old image; `exe` and `filename` name the refused one.
    pub lsm_denied: bool,
    /// The kill was skipped: the cgroup's kill budget was spent.
    pub kill_rate_limited: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fork {
    pub child_pid: u32,
    pub child_start_boottime_ns: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    pub exit_code: u32,
    pub ppid: u32,
    pub start_boottime_ns: u64,
}

/// A path resolved by the kernel's dentry walk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedPath {
    pub path: String,
    /// The walk stopped early: `path` is the tail of the real path.
    pub truncated: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    Exec(Box<Exec>),
    Fork(Fork),
    Exit(Exit),
    /// connect, accept, bind, listen, UDP sends.
    Net(Box<net::Net>),
    TcpSummary(net::TcpSummary),
    Dns(Box<net::Dns>),
    DnsAnswer(Box<net::DnsAnswer>),
    TlsClientHello(Box<net::TlsClientHello>),
    HttpRequest(Box<net::HttpRequest>),
    /// Privilege and tampering syscalls.
    Syscall(Box<privilege::Syscall>),
    /// open, unlink, rename, chmod, truncate.
    File(Box<FileOp>),
    GpuIoctl(GpuIoctl),
    /// A tracked process's plain reads in one directory, folded in the kernel.
    FileAccess(Box<FileAccess>),
    /// TLS or plain-HTTP clear text, for `llm` (not an event by itself).
    ClearText(Box<clear_text::ClearText>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub common: Common,
    pub payload: Payload,
}

impl Record {
    /// What the record holds in memory, its strings and buffers included:
    /// the measure of the queue's byte bound. An estimate that only needs
    /// to be the same on both ends of the queue and near the truth.
    pub fn queued_bytes(&self) -> usize {
        fn path(p: &Option<ResolvedPath>) -> usize {
            p.as_ref().map_or(0, |p| p.path.len())
        }
        let heap = match &self.payload {
            Payload::Exec(exec) => {
                size_of::<Exec>()
                    + exec.filename.len()
                    + path(&exec.exe)
                    + exec
                        .argv
                        .iter()
                        .map(|arg| arg.len() + size_of::<String>())
                        .sum::<usize>()
            }
            Payload::File(op) => {
                size_of::<FileOp>()
                    + op.name.len()
                    + op.name2.as_ref().map_or(0, String::len)
                    + path(&op.opened)
                    + path(&op.dir)
                    + path(&op.dir2)
            }
            Payload::Net(net) => {
                size_of::<net::Net>() + net.unix_path.as_ref().map_or(0, String::len)
            }
            Payload::Dns(_) => size_of::<net::Dns>() + DNS_NAME_ESTIMATE,
            Payload::DnsAnswer(reply) => {
                size_of::<net::DnsAnswer>()
                    + reply.answer.as_ref().map_or(0, |answer| {
                        (answer.cnames.len() + 1) * DNS_NAME_ESTIMATE
                            + answer.addresses.len() * size_of::<std::net::IpAddr>()
                    })
            }
            Payload::TlsClientHello(_) => size_of::<net::TlsClientHello>() + DNS_NAME_ESTIMATE,
            Payload::HttpRequest(_) => size_of::<net::HttpRequest>() + DNS_NAME_ESTIMATE,
            Payload::Syscall(call) => {
                size_of::<privilege::Syscall>()
                    + call.text.as_ref().map_or(0, String::len)
                    + path(&call.path)
            }
            Payload::ClearText(text) => size_of::<clear_text::ClearText>() + text.data.len(),
            Payload::FileAccess(access) => size_of::<FileAccess>() + access.directory.len(),
            Payload::Fork(_) | Payload::Exit(_) | Payload::TcpSummary(_) | Payload::GpuIoctl(_) => {
                0
            }
        };
        size_of::<Record>() + self.common.comm.len() + heap
    }
}

/// A DNS question's name, at most 255 bytes: counted at its longest.
const DNS_NAME_ESTIMATE: usize = 256;

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
    let header: EventHeader = read_pod(bytes).ok_or(DecodeError::TooShort { len: bytes.len() })?;
    let kind =
        EventKind::from_u16(header.kind).ok_or(DecodeError::UnknownKind { kind: header.kind })?;
    let common = Common {
        kind,
        flags: header.flags,
        ktime_ns: header.ktime_ns,
        pid: header.pid,
        tid: header.tid,
        uid: header.uid,
        gid: header.gid,
        cgroup_id: header.cgroup_id,
        comm: c_string(&header.comm),
    };
    let payload = match kind {
        EventKind::Exec => {
            let r = checked::<ExecRecord>(kind, &header, bytes)?;
            Payload::Exec(Box::new(exec(&r)))
        }
        EventKind::Fork => {
            let r = checked::<ForkRecord>(kind, &header, bytes)?;
            Payload::Fork(Fork {
                child_pid: r.child_pid,
                child_start_boottime_ns: r.child_start_boottime_ns,
            })
        }
        EventKind::Exit => {
            let r = checked::<ExitRecord>(kind, &header, bytes)?;
            Payload::Exit(Exit {
                exit_code: r.exit_code,
                ppid: r.ppid,
                start_boottime_ns: r.start_boottime_ns,
            })
        }
        EventKind::Connect
        | EventKind::Accept
        | EventKind::Bind
        | EventKind::Listen
        | EventKind::UdpSend
        | EventKind::TcpSummary
        | EventKind::Dns
        | EventKind::DnsAnswer
        | EventKind::TlsClientHello
        | EventKind::HttpRequest => net::decode(kind, &header, bytes)?,
        EventKind::Setuid
        | EventKind::Setgid
        | EventKind::Capset
        | EventKind::Ptrace
        | EventKind::ModuleLoad
        | EventKind::Bpf
        | EventKind::MemfdCreate
        | EventKind::ExecMemory
        | EventKind::Signal => privilege::decode(kind, &header, bytes)?,
        EventKind::Open
        | EventKind::Unlink
        | EventKind::Rename
        | EventKind::Link
        | EventKind::Chmod
        | EventKind::Truncate => {
            let r = checked::<FileRecord>(kind, &header, bytes)?;
            Payload::File(Box::new(file::file_op(&r)))
        }
        EventKind::GpuIoctl => {
            let r = checked::<GpuIoctlRecord>(kind, &header, bytes)?;
            Payload::GpuIoctl(file::gpu_ioctl(&r))
        }
        EventKind::FileAccess => {
            let r = checked::<FileAccessRecord>(kind, &header, bytes)?;
            Payload::FileAccess(Box::new(file::file_access(&r)))
        }
        EventKind::ClearText => clear_text::decode(&header, bytes)?,
        // The agent makes LLM events itself, from clear text; a kernel
        // record claiming to be one is garbage.
        EventKind::LlmRequest | EventKind::LlmResponse => {
            return Err(DecodeError::UnknownKind { kind: header.kind })
        }
    };
    Ok(Record { common, payload })
}

fn exec(r: &ExecRecord) -> Exec {
    let flags = r.header.flags;
    let args = &r.args[..usize::from(r.args_len).min(r.args.len())];
    let (argv, more_args) = split_args(args);
    let filename_len = usize::from(r.filename_len).min(r.filename.len());
    Exec {
        ppid: r.ppid,
        old_pid: r.old_pid,
        euid: r.euid,
        egid: r.egid,
        mnt_ns: r.mnt_ns,
        pid_ns: r.pid_ns,
        start_boottime_ns: r.start_boottime_ns,
        filename: String::from_utf8_lossy(&r.filename[..filename_len]).into_owned(),
        exe: kernel_path(&r.exe),
        argv,
        argv_truncated: more_args || flags & EXEC_FLAG_ARGS_TRUNCATED != 0,
        exe_unlinked: flags & EXEC_FLAG_EXE_UNLINKED != 0,
        exe_memfd: flags & EXEC_FLAG_EXE_MEMFD != 0,
        stdio_socket: flags & EXEC_FLAG_STDIO_SOCKET != 0,
        killed: flags & EXEC_FLAG_KILLED != 0,
        lsm_denied: flags & EXEC_FLAG_LSM_DENIED != 0,
        kill_rate_limited: flags & EXEC_FLAG_KILL_RATE_LIMITED != 0,
    }
}

/// Splits NUL-separated arguments, keeping at most [`ARGS_MAX`]. Returns
/// whether any were left out.
pub fn split_args(bytes: &[u8]) -> (Vec<String>, bool) {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if bytes.is_empty() {
        return (Vec::new(), false);
    }
    let mut parts = bytes.split(|&b| b == 0);
    let argv: Vec<String> = parts
        .by_ref()
        .take(ARGS_MAX)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect();
    (argv, parts.next().is_some())
}

/// Rebuilds a path from the kernel's leaf-first components.
pub fn kernel_path(raw: &KernelPath) -> Option<ResolvedPath> {
    if raw.flags & PATH_FLAG_MISSING != 0 {
        return None;
    }
    let used = &raw.buf[..usize::from(raw.len).min(raw.buf.len())];
    let used = used.strip_suffix(&[0]).unwrap_or(used);
    let mut path = String::with_capacity(used.len() + 1);
    if !used.is_empty() {
        for component in used.rsplit(|&b| b == 0) {
            path.push('/');
            path.push_str(&String::from_utf8_lossy(component));
        }
    }
    if path.is_empty() {
        path.push('/');
    }
    Some(ResolvedPath {
        path,
        truncated: raw.flags & PATH_FLAG_TRUNCATED != 0,
    })
}

/// A NUL-terminated byte array as a string.
pub fn c_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The bytes a record is made of, as the kernel writes it into the ring:
/// how the pollers of kernel counters (`gpu_ioctl`, `file_access`) hand
/// their records to [`decode`] like any other.
pub fn pod_bytes<T: aya::Pod>(record: &T) -> &[u8] {
    // SAFETY: `Pod` types are plain `repr(C)` data without padding (checked
    // in common's layout assertions); the slice covers exactly the value
    // and lives as long as the borrow.
    unsafe { std::slice::from_raw_parts(record as *const T as *const u8, size_of::<T>()) }
}

/// Reads a `T` from the start of `bytes`, if there are enough of them.
fn read_pod<T: aya::Pod>(bytes: &[u8]) -> Option<T> {
    (bytes.len() >= size_of::<T>())
        // SAFETY: `T: Pod` is valid for any bytes, and the length is checked;
        // `read_unaligned` copes with the ring buffer's 8-byte alignment.
        .then(|| unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const T) })
}

/// A whole record of type `T`, checking both the buffer's length and the
/// size the record declares. Borrowed in place when the buffer is aligned
/// for `T` (ring-buffer records are 8-byte aligned): records are kilobytes,
/// and copying each one was a tenth of the pipeline's time.
fn checked<'a, T: aya::Pod + Clone>(
    kind: EventKind,
    header: &EventHeader,
    bytes: &'a [u8],
) -> Result<std::borrow::Cow<'a, T>, DecodeError> {
    let expected = size_of::<T>();
    if bytes.len() < expected || header.size as usize != expected {
        return Err(DecodeError::BadSize {
            kind,
            len: bytes.len(),
            declared: header.size,
            expected,
        });
    }
    if bytes.as_ptr().align_offset(std::mem::align_of::<T>()) == 0 {
        // SAFETY: aligned, long enough (checked above), and `T: Pod` is
        // valid for any bytes; the borrow lives as long as `bytes`.
        return Ok(std::borrow::Cow::Borrowed(unsafe {
            &*(bytes.as_ptr() as *const T)
        }));
    }
    read_pod(bytes)
        .map(std::borrow::Cow::Owned)
        .ok_or(DecodeError::BadSize {
            kind,
            len: bytes.len(),
            declared: header.size,
            expected,
        })
}

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
