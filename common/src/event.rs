//! Records written by the kernel programs into the `EVENTS` ring buffer.
//!
//! Every record starts with an [`EventHeader`] whose `kind` says which record
//! follows and whose `size` is the record's full size in bytes. The agent
//! checks both before it reads anything else, so a short, unknown or garbage
//! record is counted and skipped, never trusted.

/// The one list of event kinds: variant, stable ABI number and the name used
/// in JSON, metric labels and rule conditions.
///
/// Every other list of kinds is generated from this one: [`EventKind`] here,
/// and the agent's serialisable `Kind` through the same macro. Numbers are
/// part of the ABI and of recorded event files: never renumber, only add.
/// Each family owns a range of 100.
///
/// `event_kinds!(callback)` expands to `callback! { Variant = number, "name"; ... }`.
#[macro_export]
macro_rules! event_kinds {
    ($callback:ident) => {
        $callback! {
            // Processes: 100..
            Exec = 100, "exec";
            Fork = 101, "fork";
            Exit = 102, "exit";
            // A signal sent to the agent by another process.
            Signal = 103, "signal";
            // Files: 200..
            Open = 200, "open";
            Unlink = 201, "unlink";
            Rename = 202, "rename";
            Chmod = 203, "chmod";
            Truncate = 204, "truncate";
            // A hard or symbolic link: `name` is the existing file (or the
            // symlink's text), `name2` the new name.
            Link = 205, "link";
            // Plain reads by a tracked process in one directory, counted in
            // the kernel and reported periodically (`FileAccessRecord`).
            FileAccess = 206, "file_access";
            // Network: 300..
            Connect = 300, "connect";
            Accept = 301, "accept";
            Bind = 302, "bind";
            Listen = 303, "listen";
            // Byte totals of a TCP connection, at close or periodically.
            TcpSummary = 304, "tcp_summary";
            UdpSend = 305, "udp_send";
            // A DNS query seen on the wire (UDP or TCP to port 53).
            Dns = 306, "dns";
            // A DNS answer to a socket that sent a query.
            DnsAnswer = 307, "dns_answer";
            // Privilege and tampering: 400..
            Setuid = 400, "setuid";
            Setgid = 401, "setgid";
            Capset = 402, "capset";
            Ptrace = 403, "ptrace";
            ModuleLoad = 404, "module_load";
            Bpf = 405, "bpf";
            MemfdCreate = 406, "memfd_create";
            // mmap/mprotect that makes anonymous memory executable.
            ExecMemory = 407, "exec_memory";
            // Accelerators: 500..
            // Per-process ioctl counts on accelerator device fds, sampled.
            GpuIoctl = 500, "gpu_ioctl";
            // LLM traffic: 600..
            // A bounded copy of the clear text of one TLS library call
            // (`SSL_write`/`SSL_read` and their `_ex` forms) or plain-HTTP
            // socket call; the agent reassembles it and writes no event of
            // this kind by itself.
            ClearText = 600, "clear_text";
            // A request to an LLM API, and the answer to it (`llm`), made by
            // the agent from clear text.
            LlmRequest = 601, "llm_request";
            LlmResponse = 602, "llm_response";
            // The first bytes a process wrote on a TCP connection, when they
            // are a TLS ClientHello: the server name it asks for.
            TlsClientHello = 603, "tls_client_hello";
            // The head of a plain HTTP request a tracked process sent on a
            // TCP connection: the host it names (a family holds at most
            // eight kinds, and the network family's are taken).
            HttpRequest = 604, "http_request";
        }
    };
}

macro_rules! define_event_kind {
    ($($variant:ident = $number:literal, $name:literal;)*) => {
        /// Stable numbers for event kinds, generated from [`event_kinds!`].
        #[repr(u16)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum EventKind {
            $($variant = $number,)*
        }

        impl EventKind {
            /// Every kind, in ABI order. Counter arrays are indexed by [`EventKind::slot`].
            pub const ALL: [EventKind; [$(EventKind::$variant),*].len()] = [$(EventKind::$variant),*];

            pub const fn from_u16(raw: u16) -> Option<EventKind> {
                match raw {
                    $($number => Some(EventKind::$variant),)*
                    _ => None,
                }
            }

            /// The name used in JSON, metric labels and rule conditions.
            pub const fn name(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)*
                }
            }
        }
    };
}

event_kinds!(define_event_kind);

impl EventKind {
    /// A dense index for per-kind counter arrays: the family times 8 plus the
    /// offset within the family. Stays below [`KIND_SLOTS`].
    pub const fn slot(self) -> u32 {
        let raw = self as u16 as u32;
        (raw / 100 - 1) * 8 + raw % 100
    }
}

/// Size of per-kind counter arrays (six families of up to eight kinds each).
pub const KIND_SLOTS: u32 = 48;

// Every kind has a slot of its own below KIND_SLOTS: a family holds at most
// eight kinds, numbered from its hundred.
const _: () = {
    let mut i = 0;
    while i < EventKind::ALL.len() {
        let raw = EventKind::ALL[i] as u16;
        assert!(
            raw >= 100 && raw % 100 < 8,
            "a kind outside its family's eight slots"
        );
        assert!(
            EventKind::ALL[i].slot() < KIND_SLOTS,
            "a kind past KIND_SLOTS"
        );
        i += 1;
    }
};

/// Common leading part of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// An [`EventKind`] number.
    pub kind: u16,
    /// Kind-specific flags (see the `*_FLAG_*` constants).
    pub flags: u16,
    /// Size of the whole record in bytes, header included.
    pub size: u32,
    /// `bpf_ktime_get_boot_ns` when the event happened.
    pub ktime_ns: u64,
    /// Thread-group id: the process id as user space sees it.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    /// cgroup v2 id of the task.
    pub cgroup_id: u64,
    pub comm: [u8; COMM_LEN],
}

pub const COMM_LEN: usize = 16;
/// Bytes kept of a path as user space passed it.
pub const NAME_LEN: usize = 256;
/// Bytes of a path resolved in the kernel by walking dentries.
pub const PATH_BUF_LEN: usize = 512;
/// The longest component the kernel walk copies; longer ones are truncated.
pub const PATH_COMPONENT_MAX: usize = 128;
/// The deepest directory chain the kernel walk follows.
pub const PATH_MAX_DEPTH: u32 = 24;
/// Bytes of argv kept per exec.
pub const ARGS_LEN: usize = 1024;
/// Arguments kept per exec; more set [`EXEC_FLAG_ARGS_TRUNCATED`].
pub const ARGS_MAX: usize = 16;

/// A path resolved in the kernel from a `struct path`.
///
/// `buf` holds the components leaf first, each followed by a NUL: the agent
/// reverses them. The kernel cannot prepend cheaply, so this keeps the walk a
/// single forward pass.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KernelPath {
    /// Bytes used in `buf`.
    pub len: u16,
    /// Number of components in `buf`.
    pub depth: u16,
    /// `PATH_FLAG_*`.
    pub flags: u16,
    pub _pad: u16,
    pub buf: [u8; PATH_BUF_LEN],
}

/// The walk stopped before the root: the path is a suffix of the real one.
pub const PATH_FLAG_TRUNCATED: u16 = 1;
/// The walk was not attempted or failed; only the name as given is known.
pub const PATH_FLAG_MISSING: u16 = 2;

// Exec flags.
pub const EXEC_FLAG_ARGS_TRUNCATED: u16 = 1;
/// The executable has no links left: it was deleted, or is a memfd.
pub const EXEC_FLAG_EXE_UNLINKED: u16 = 2;
/// The executable is a memfd (its name starts with `memfd:`).
pub const EXEC_FLAG_EXE_MEMFD: u16 = 4;
/// fd 0 or fd 1 of the new image is a socket (a reverse shell's tell).
pub const EXEC_FLAG_STDIO_SOCKET: u16 = 8;
/// The kernel sent SIGKILL at exec: the executable is on an enforced deny
/// list (`EXEC_DENY`). The new image never ran an instruction.
pub const EXEC_FLAG_KILLED: u16 = 16;
/// The executable is on an enforced deny list, but the workload's kill
/// budget is spent: the kernel did not kill (deny-only until the window ends).
pub const EXEC_FLAG_KILL_RATE_LIMITED: u16 = 32;
/// The BPF LSM refused the exec (`bprm_check_security`, EPERM): the
/// executable is on an enforced deny list of a `deny` rule. The record is
/// sent by the refusing program: the process keeps its old image, and the
/// record's `exe` and `filename` name the executable it was refused.
pub const EXEC_FLAG_LSM_DENIED: u16 = 64;

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecRecord {
    pub header: EventHeader,
    pub ppid: u32,
    /// The pid before exec; differs from `header.pid` when a thread exec'd.
    pub old_pid: u32,
    pub euid: u32,
    pub egid: u32,
    pub mnt_ns: u32,
    pub pid_ns: u32,
    /// Boot-clock time the process started (`task->start_boottime`).
    pub start_boottime_ns: u64,
    /// Bytes used in `args`: NUL-separated arguments.
    pub args_len: u16,
    /// Bytes used in `filename`, NUL excluded.
    pub filename_len: u16,
    pub _pad: u32,
    /// The file name as passed to execve (may be relative).
    pub filename: [u8; NAME_LEN],
    /// The executable file, resolved in the kernel.
    pub exe: KernelPath,
    pub args: [u8; ARGS_LEN],
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ForkRecord {
    /// The parent's view: `header.pid` is the parent process.
    pub header: EventHeader,
    pub child_pid: u32,
    pub _pad: u32,
    pub child_start_boottime_ns: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExitRecord {
    pub header: EventHeader,
    /// `task->exit_code`: status in bits 8..16, terminating signal in 0..7.
    pub exit_code: u32,
    pub ppid: u32,
    pub start_boottime_ns: u64,
}

/// open/openat/openat2, and the other path operations (unlink, rename,
/// chmod, truncate).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FileRecord {
    pub header: EventHeader,
    /// Syscall result: a fd or 0 on success, `-errno` on failure.
    pub ret: i64,
    /// `i_size` of the opened inode (valid with [`FILE_FLAG_INODE`]).
    pub size: i64,
    /// The new length, for truncate.
    pub length: i64,
    /// Inode number of the opened file's directory (with
    /// [`FILE_FLAG_DIR_FOLDED`]): later plain reads there are counted under
    /// this directory in `FILE_ACCESS`.
    pub dir_ino: u64,
    /// open flags, or the flags of unlinkat/renameat2/fchmodat2.
    pub flags: u32,
    /// open mode (with `O_CREAT`), or the new mode for chmod.
    pub mode: u32,
    /// `i_mode` of the opened inode (valid with [`FILE_FLAG_INODE`]).
    pub i_mode: u32,
    /// Device number of a device file (`major << 20 | minor`, kernel form).
    pub rdev: u32,
    /// Bytes used in `name` / `name2`, NUL excluded.
    pub name_len: u16,
    pub name2_len: u16,
    /// Device of the opened file's directory (kernel form, with
    /// [`FILE_FLAG_DIR_FOLDED`]).
    pub dir_dev: u32,
    /// The path as given.
    pub name: [u8; NAME_LEN],
    /// The second path of a rename (the destination), as given.
    pub name2: [u8; NAME_LEN],
    /// The opened file itself ([`FILE_FLAG_PATH_IS_FILE`]), or the directory
    /// a relative `name` is relative to ([`FILE_FLAG_PATH_IS_DIR`]).
    pub path: KernelPath,
    /// The directory a relative `name2` is relative to
    /// ([`FILE_FLAG_PATH2_IS_DIR`]).
    pub path2: KernelPath,
}

/// The process is tracked (or all files are traced); else an interest
/// prefix or suffix let the event through.
pub const FILE_FLAG_TRACKED: u16 = 1;
/// `path` is the opened file, resolved from the new fd.
pub const FILE_FLAG_PATH_IS_FILE: u16 = 2;
/// `path` is the directory of a relative `name` (the cwd or the dirfd).
pub const FILE_FLAG_PATH_IS_DIR: u16 = 4;
/// `path2` is the directory of a relative `name2`.
pub const FILE_FLAG_PATH2_IS_DIR: u16 = 8;
/// A relative `name2` shares the directory of `name` (same dirfd).
pub const FILE_FLAG_PATH2_SAME_DIR: u16 = 16;
/// `i_mode`, `rdev` and `size` were read from the opened inode.
pub const FILE_FLAG_INODE: u16 = 32;
/// The name as given was longer than [`NAME_LEN`] and was cut.
pub const FILE_FLAG_NAME_TRUNCATED: u16 = 64;
/// An untracked process changed a file through a relative name, which the
/// interest sets cannot test before the path is resolved: user space keeps
/// the event only if the resolved path is of interest.
pub const FILE_FLAG_UNCHECKED: u16 = 128;
/// `cgroup/dev` refused the open: an accelerator device, and the process is
/// outside the accelerator allowlist (EPERM).
pub const FILE_FLAG_ACCEL_DENIED: u16 = 256;
/// As [`FILE_FLAG_ACCEL_DENIED`], in audit mode: the open was let through.
pub const FILE_FLAG_ACCEL_WOULD_DENY: u16 = 512;
/// The opened file is protected and the executable is not allowed to open
/// it: SIGKILL at the open's exit, before the process returns to user
/// space holding the descriptor.
pub const FILE_FLAG_KILLED: u16 = 1024;
/// As [`FILE_FLAG_KILLED`], but the cgroup's kill budget was spent: the
/// process was left running.
pub const FILE_FLAG_KILL_RATE_LIMITED: u16 = 2048;
/// A tracked process's first plain read in this directory: its later plain
/// reads there are counted in the kernel (`FILE_ACCESS`, keyed by process,
/// `dir_dev` and `dir_ino`) and reported as `file_access` summaries.
pub const FILE_FLAG_DIR_FOLDED: u16 = 4096;
/// The BPF LSM refused the open (`file_open`, EPERM): the file is protected
/// and the executable is not allowed to open it. No descriptor was made and
/// no `O_TRUNC`/`O_CREAT` side effect took place. With a `kill` rule the
/// process is also killed ([`FILE_FLAG_KILLED`]).
pub const FILE_FLAG_LSM_DENIED: u16 = 8192;

/// A socket address in network byte order; v4 addresses use the first 4 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SockAddr {
    pub family: u16,
    /// Host byte order.
    pub port: u16,
    pub _pad: u32,
    pub addr: [u8; 16],
}

pub const UNIX_PATH_LEN: usize = 108;

/// `NetRecord.header.flags`: the record was made at syscall entry, so it has
/// no result (UDP sends are reported before they happen, to keep the cost of
/// every `sendto` to one program run).
pub const NET_FLAG_NO_RESULT: u16 = 1;
/// The remote address is an abstract unix socket name (leading NUL).
pub const NET_FLAG_UNIX_ABSTRACT: u16 = 2;
/// The process is tracked (`TRACKED_PIDS`/`TRACKED_CGROUPS`).
pub const NET_FLAG_TRACKED: u16 = 4;
/// `local` was read from the kernel socket after the syscall.
pub const NET_FLAG_LOCAL_FROM_SOCKET: u16 = 8;
/// An egress allowlist refused the connect in the kernel
/// (`cgroup/connect4`/`connect6` returned EPERM).
pub const NET_FLAG_DENIED: u16 = 16;

/// connect, accept, bind, listen and UDP sends.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NetRecord {
    pub header: EventHeader,
    pub ret: i64,
    /// The socket the syscall was made on (the listening socket for accept).
    pub fd: i32,
    /// `SOCK_STREAM`, `SOCK_DGRAM`, ...; 0 when unknown.
    pub sock_type: u16,
    pub unix_path_len: u16,
    pub local: SockAddr,
    pub remote: SockAddr,
    pub unix_path: [u8; UNIX_PATH_LEN],
    /// UDP sends: the payload size passed to the syscall.
    pub len: u32,
    /// Inode number of the process's network namespace (0: unknown).
    pub netns: u32,
    pub _pad2: u32,
}

pub const TCP_SUMMARY_FLAG_FINAL: u16 = 1;
/// The kernel's `bytes_acked` and `bytes_received` count the SYN and FIN
/// sequence numbers too. These flags say which of them the raw totals in a
/// summary include, so that the agent reports data bytes only:
/// the socket opened actively (its SYN was acked, if anything was);
pub const TCP_SUMMARY_FLAG_ACTIVE: u16 = 2;
/// our FIN was sent and acked;
pub const TCP_SUMMARY_FLAG_FIN_ACKED: u16 = 4;
/// the peer's FIN was received.
pub const TCP_SUMMARY_FLAG_FIN_RECEIVED: u16 = 8;

/// `TcpOwner::flags`: the owner connected (active open).
pub const TCP_OWNER_ACTIVE: u32 = 1;

/// Byte totals of one TCP connection.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TcpSummaryRecord {
    /// The process that owned the socket when it connected or accepted.
    pub header: EventHeader,
    pub local: SockAddr,
    pub remote: SockAddr,
    /// `tcp_sock.bytes_acked` and `bytes_received`, raw (see the flags).
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub opened_ktime_ns: u64,
    /// The owner's network namespace inode (0: unknown).
    pub netns: u32,
    pub _pad: u32,
}

/// Value of the `TCP_OWNERS` map (key: the kernel `struct sock *`): who
/// opened a TCP connection, recorded in process context (connect, accept),
/// so that a close running in softirq context is still attributed. The
/// `iter/tcp` program refreshes the addresses and byte counts in place for
/// the agent's periodic summaries.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TcpOwner {
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    /// `TCP_OWNER_*`.
    pub flags: u32,
    pub cgroup_id: u64,
    pub comm: [u8; COMM_LEN],
    pub opened_ktime_ns: u64,
    /// Last refresh by the iterator (0: never).
    pub refreshed_ktime_ns: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub local: SockAddr,
    pub remote: SockAddr,
    /// The owner's network namespace inode (0: unknown).
    pub netns: u32,
    pub _pad: u32,
}

/// Bytes of a DNS message copied from the wire: RFC 1035's classic UDP
/// limit, which holds the answers of ordinary lookups whole.
pub const DNS_PAYLOAD_LEN: usize = 512;

/// `DnsRecord.header.flags`: the message went over TCP (the copy starts
/// after its two-byte length prefix).
pub const DNS_FLAG_TCP: u16 = 1;
/// The message was longer than [`DNS_PAYLOAD_LEN`]: the copy is its start.
pub const DNS_FLAG_CUT: u16 = 2;

/// A message seen on the wire by the `cgroup_skb` programs: a DNS query
/// (`Dns`) leaving a socket for port 53, a DNS answer (`DnsAnswer`) from
/// port 53 arriving at a socket that sent a query, or a TLS ClientHello
/// (`TlsClientHello`: the payload starts at its TLS record header,
/// `wire_len` is the record's length). The header names the process that
/// sent the query or the hello on that socket.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DnsRecord {
    pub header: EventHeader,
    /// The socket's own end.
    pub local: SockAddr,
    /// The resolver: the query's destination, the answer's source.
    pub remote: SockAddr,
    /// `bpf_get_socket_cookie`: ties an answer to the socket of its query.
    pub socket_cookie: u64,
    /// The querying process's network namespace inode (0: unknown).
    pub netns: u32,
    /// Bytes copied into `payload`.
    pub payload_len: u16,
    /// The DNS message's length on the wire (at most 65535).
    pub wire_len: u16,
    pub payload: [u8; DNS_PAYLOAD_LEN],
}

/// Value of the `DNS_SOCKETS` map (key: socket cookie): who sent the last
/// DNS query on a socket, recorded at the query's egress in process
/// context, so that its answer, delivered in softirq context, is
/// attributed to the process that asked.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DnsOwner {
    pub pid: u32,
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    pub comm: [u8; COMM_LEN],
    pub netns: u32,
    pub _pad: u32,
}

/// Which syscall a [`SyscallRecord`] reports (`SyscallRecord::syscall`).
pub mod sys {
    pub const SETUID: u16 = 1;
    pub const SETREUID: u16 = 2;
    pub const SETRESUID: u16 = 3;
    pub const SETGID: u16 = 4;
    pub const SETREGID: u16 = 5;
    pub const SETRESGID: u16 = 6;
    pub const CAPSET: u16 = 7;
    pub const PTRACE: u16 = 8;
    pub const INIT_MODULE: u16 = 9;
    pub const FINIT_MODULE: u16 = 10;
    pub const BPF: u16 = 11;
    pub const MEMFD_CREATE: u16 = 12;
    pub const MMAP: u16 = 13;
    pub const MPROTECT: u16 = 14;
    /// Not a syscall: `signal:signal_generate`, for [`crate::EventKind::Signal`].
    pub const SIGNAL: u16 = 15;
    pub const PROCESS_VM_WRITEV: u16 = 16;
    pub const PIDFD_GETFD: u16 = 17;
}

/// `SyscallRecord.header.flags`: the process is tracked.
pub const SYSCALL_FLAG_TRACKED: u16 = 1;
/// `args[3]` holds what the kernel read from user memory at entry (capset's
/// capability sets, bpf's program type); see [`SyscallRecord`].
pub const SYSCALL_FLAG_USER_READ: u16 = 2;

/// Privilege and tampering syscalls share one record: the syscall's own
/// arguments, its result, one string and one resolved path where it has them.
///
/// `args` are the raw syscall arguments, except where user memory is read at
/// entry ([`SYSCALL_FLAG_USER_READ`]):
/// - capset: `args[2]`, `args[3]`, `args[4]` = effective, permitted and
///   inheritable sets (64 bits: the two `cap_user_data_t` words);
/// - bpf `BPF_PROG_LOAD`: `args[3]` = `attr->prog_type`;
/// - bpf `BPF_*_GET_FD_BY_ID`: `args[3]` = the object id asked for.
///
/// Signals ([`sys::SIGNAL`]) use the record without a syscall: `args[0]` =
/// the signal, `args[1]` = the target's process id, `args[2]` = its thread
/// id, `args[3]` = whether the whole group was signalled, `ret` = the
/// kernel's `TRACE_SIGNAL_*` result.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SyscallRecord {
    pub header: EventHeader,
    pub args: [u64; 6],
    pub ret: i64,
    /// One of the [`sys`] constants.
    pub syscall: u16,
    pub text_len: u16,
    pub _pad: u32,
    /// memfd_create's name, a module's parameters.
    pub text: [u8; NAME_LEN],
    /// finit_module: the module file, from its fd.
    pub path: KernelPath,
}

/// ioctl calls of one process on accelerator device fds.
///
/// The kernel keeps one per process in the `GPU_IOCTLS` map (the header is
/// filled at the first ioctl, `count` only grows); the agent turns the
/// growth of `count` over each interval into one of these records.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GpuIoctlRecord {
    pub header: EventHeader,
    pub count: u64,
    /// The device of the first fd the process used (kernel form).
    pub rdev: u32,
    pub _pad: u32,
    /// Nanoseconds `count` covers; 0 in the kernel's map.
    pub interval_ns: u64,
}

/// A process and a directory whose plain reads the kernel counts in
/// `FILE_ACCESS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileAccessKey {
    pub tgid: u32,
    /// Device of the directory (kernel form).
    pub dev: u32,
    pub dir_ino: u64,
}

/// Slots of the kernel's `FILE_ACCESS` array (a power of two).
pub const FILE_ACCESS_SLOTS: u32 = 16384;
/// Consecutive slots, from a key's home slot on, that may hold it: the
/// agent places a key in the first free one, and the kernel looks in all
/// of them (a miss costs this many array reads, each inlined).
pub const FILE_ACCESS_PROBES: u32 = 4;

/// The first slot of `FILE_ACCESS` that may hold `key`. An open-addressed
/// array, not a hash map: the kernel's folded read finds its counter with
/// a multiplication and inlined array reads instead of a hash map's
/// out-of-line lookup, a sixth of that exit's cost. Both sides use this one
/// function; the agent does all placing and removing.
#[inline(always)]
pub fn file_access_home(key: &FileAccessKey) -> u32 {
    // Fibonacci hashing of the three fields, mixed: the top bits of the
    // product are the well-spread ones.
    let mixed = (key.dir_ino ^ ((key.dev as u64) << 32) ^ ((key.tgid as u64) << 12))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (mixed >> (64 - FILE_ACCESS_SLOTS.trailing_zeros())) as u32
}

/// The slots of `FILE_ACCESS` that may hold `key`, in the order the agent
/// fills them and the kernel reads them: its home slot and the next ones.
#[inline(always)]
pub fn file_access_slots(key: &FileAccessKey) -> [u32; FILE_ACCESS_PROBES as usize] {
    let home = file_access_home(key);
    let mut slots = [0; FILE_ACCESS_PROBES as usize];
    let mut probe = 0;
    while probe < slots.len() {
        slots[probe] = (home + probe as u32) & (FILE_ACCESS_SLOTS - 1);
        probe += 1;
    }
    slots
}

/// One slot of the kernel's `FILE_ACCESS` array, one copy per CPU: the key
/// it counts for (all zero: free) and the count. The agent writes the key
/// into every CPU's copy; the kernel only adds to a copy whose key matches.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FileAccessSlot {
    pub key: FileAccessKey,
    pub record: FileAccessRecord,
}

/// Plain reads by one process in one directory, counted in the kernel: in
/// a slot of `FILE_ACCESS`, one per CPU. The kernel only adds; the agent
/// reports the growth since its last reading as a `file_access` record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FileAccessRecord {
    /// Filled at the slot's first counted read (identity of the process).
    pub header: EventHeader,
    /// Opens counted.
    pub count: u64,
    /// Sum of the opened files' sizes (`i_size` at open).
    pub bytes: u64,
    /// `bpf_ktime_get_boot_ns` of the first and last counted open; 0 for a
    /// slot with none. The last is read once per clock tick: it is the
    /// time of the first counted open in the latest tick that had one, at
    /// most a tick (1 to 10 ms) before the last open itself.
    pub first_ns: u64,
    pub last_ns: u64,
    /// The kernel's `jiffies` when `last_ns` was read: the kernel's own
    /// bookkeeping, for reading the clock once per tick, not per open.
    pub last_jiffies: u64,
}

/// The most clear text one [`ClearTextRecord`] carries. Every record
/// reserves this much ring-buffer space (a reservation's size is fixed when
/// the program is verified); the configured capture size only bounds the
/// copy.
pub const CLEAR_TEXT_MAX: usize = 16384;

/// `ClearTextRecord.direction`: the process wrote the bytes.
pub const CLEAR_TEXT_SENT: u16 = 1;
/// `ClearTextRecord.direction`: the process read the bytes.
pub const CLEAR_TEXT_RECEIVED: u16 = 2;

/// `ClearTextRecord.source`: a TLS library call, before encryption or
/// after decryption; `connection` is the library's `SSL *`.
pub const CLEAR_TEXT_TLS: u16 = 1;
/// `ClearTextRecord.source`: a plain socket's send or receive;
/// `connection` is the socket cookie.
pub const CLEAR_TEXT_PLAIN: u16 = 2;

/// `ClearTextRecord.header.flags`: `data_len < len`, the rest of the call
/// was not copied (capture size, or unreadable user memory).
pub const CLEAR_TEXT_FLAG_TRUNCATED: u16 = 1;
/// This write of an untracked process matched an LLM API request line in
/// the kernel, which tracked the process from it on (`TRACKED_PIDS`).
pub const CLEAR_TEXT_FLAG_PROMOTED: u16 = 2;
/// The process was fully captured because of the configured capture list
/// (`CAPTURE_PIDS`), not because it is tracked.
pub const CLEAR_TEXT_FLAG_LISTED: u16 = 4;

/// How many model-server ports plain HTTP is read on
/// (`llm_capture.plain_ports`); 0 marks an unused slot.
pub const PLAIN_PORTS_MAX: usize = 8;

/// Bytes of a write the kernel tests against the LLM API request lines of
/// `LLM_PATHS` ("POST " and the path's first bytes).
pub const LLM_PATH_KEY_LEN: usize = 32;

/// One call's clear text: a bounded copy of what a process wrote or read.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ClearTextRecord {
    pub header: EventHeader,
    /// The connection within the process: `SSL *` or socket cookie.
    pub connection: u64,
    /// Bytes the call carried (a read's result).
    pub len: u32,
    /// Bytes copied into `data`.
    pub data_len: u32,
    /// `CLEAR_TEXT_SENT` or `CLEAR_TEXT_RECEIVED`.
    pub direction: u16,
    /// `CLEAR_TEXT_TLS` or `CLEAR_TEXT_PLAIN`.
    pub source: u16,
    /// `CLEAR_TEXT_PLAIN`: the TCP sequence number of `data`'s first byte,
    /// so that the agent can drop a retransmitted segment. 0 for TLS.
    pub seq: u32,
    /// The socket's peer; family 0 when the kernel could not tie the call
    /// to a socket.
    pub peer: SockAddr,
    pub data: [u8; CLEAR_TEXT_MAX],
}

#[cfg(feature = "user")]
mod pod {
    use super::*;

    macro_rules! pod {
        ($($record:ty),* $(,)?) => {
            $(
                // SAFETY: `repr(C)` and `Copy`, made of integers and integer
                // arrays only, so any bytes are a valid value, with no
                // padding (checked in `layout.rs`).
                unsafe impl aya::Pod for $record {}
            )*
        };
    }

    pod!(
        EventHeader,
        KernelPath,
        ExecRecord,
        ForkRecord,
        ExitRecord,
        FileRecord,
        NetRecord,
        TcpSummaryRecord,
        DnsRecord,
        DnsOwner,
        TcpOwner,
        SockAddr,
        SyscallRecord,
        GpuIoctlRecord,
        FileAccessKey,
        FileAccessRecord,
        FileAccessSlot,
        ClearTextRecord,
    );
}
