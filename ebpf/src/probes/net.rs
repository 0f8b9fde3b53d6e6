//! Network: connect, accept, bind and listen per process, UDP destinations,
//! and per-connection TCP byte totals. DNS messages are read on the wire
//! by `names.rs`.
//!
//! connect/accept/bind/listen are low-rate: every process but the agent is
//! reported. The sockaddr is read at syscall entry into a per-thread pending
//! entry, built in a per-CPU scratch value; the exit completes it with the
//! result and with what the kernel socket says (the local address a connect
//! or a port-0 bind was given, an accepted peer).
//!
//! UDP sends are frequent: `sendto`/`sendmsg` with a destination address are
//! reported at entry only (no exit program) and only for tracked processes
//! or to port 53; the rest are counted as filtered.
//!
//! TCP byte totals need no per-send probe: `sock:inet_sock_set_state`
//! records the owner of a socket when it goes SYN_SENT (process context,
//! inside connect) and `accept` records the owner of the sockets it returns;
//! on the transition to CLOSE, which may run in softirq context, the summary
//! is attributed to the stored owner and reads `tcp_sock.bytes_acked` and
//! `bytes_received`. The `iter/tcp` program refreshes the counts of open
//! connections in the owner map for the agent's periodic summaries.

use core::{ffi::c_void, mem::size_of};

use aiwatch_common::{
    EventKind, NetRecord, SockAddr, Stat, TcpOwner, TcpSummaryRecord, FAMILY_NET, NET_FLAG_DENIED,
    NET_FLAG_LOCAL_FROM_SOCKET, NET_FLAG_NO_RESULT, NET_FLAG_TRACKED, NET_FLAG_UNIX_ABSTRACT,
    TCP_OWNER_ACTIVE, TCP_SUMMARY_FLAG_ACTIVE, TCP_SUMMARY_FLAG_FINAL, TCP_SUMMARY_FLAG_FIN_ACKED,
    TCP_SUMMARY_FLAG_FIN_RECEIVED, UNIX_PATH_LEN,
};
use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_uid_gid, bpf_ktime_get_boot_ns,
        generated::{self, bpf_probe_read_user_str},
    },
    macros::{map, tracepoint},
    maps::{HashMap, LruHashMap, PerCpuArray},
    programs::TracePointContext,
};

use crate::{
    diag,
    emit::{current_tgid, discard, fill_header, reserve, submit},
    globals::{agent_pid, family_on, floor, offset},
    kernel::{self, read, read_ptr},
    maps::{count, is_tracked, pending_added, pending_any, pending_removed, PENDING_NET},
    plain::{read_context, read_kernel, read_kernel_into, read_user},
    syscall,
};

const AF_UNIX: u16 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const SOCK_STREAM: u16 = 1;
const IPPROTO_TCP: u16 = 6;
const TCP_SYN_SENT: i32 = 2;
const TCP_CLOSE: i32 = 7;
const DNS_PORT: u16 = 53;
const RCV_SHUTDOWN: u8 = 1;
const SEND_SHUTDOWN: u8 = 2;
const EAGAIN: i64 = 11;
const EINPROGRESS: i64 = 115;

/// connect/accept/bind/listen between entry and exit, per thread.
#[map]
static NET_PENDING: HashMap<u64, NetRecord> = HashMap::with_max_entries(8192, 0);

/// Where a pending record is built before it is stored.
#[map]
static NET_SCRATCH: PerCpuArray<NetRecord> = PerCpuArray::with_max_entries(1, 0);

/// The owner of each open TCP socket, keyed by `struct sock *`. LRU, so a
/// socket whose close was never seen cannot fill it.
#[map]
pub static TCP_OWNERS: LruHashMap<u64, TcpOwner> = LruHashMap::with_max_entries(65536, 0);

/// The `struct socket *` behind a socket fd (only meaningful once a socket
/// syscall on that fd succeeded).
#[inline(always)]
pub(crate) fn socket_of_fd(fd: u64) -> *const u8 {
    read_ptr(
        kernel::file_of_fd(kernel::current_task(), fd as u32),
        offset!(file_private_data),
    )
}

/// An IPv4 address in the first 4 bytes of a [`SockAddr`] address.
#[inline(always)]
fn v4(a: [u8; 4]) -> [u8; 16] {
    [a[0], a[1], a[2], a[3], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// Fills `local` and `remote` from a kernel socket's `sock_common`.
///
/// # Safety
/// `local` and `remote` point to writable memory.
#[inline(always)]
pub(crate) unsafe fn sock_addrs(sk: *const u8, local: *mut SockAddr, remote: *mut SockAddr) {
    // SAFETY: the caller guarantees both are writable; the kernel reads
    // are checked copies.
    unsafe {
        let family = read::<u16>(sk, offset!(sk_family)).unwrap_or(0);
        (*local).port = read::<u16>(sk, offset!(sk_num)).unwrap_or(0);
        (*remote).port = u16::from_be(read::<u16>(sk, offset!(sk_dport)).unwrap_or(0));
        if family == AF_INET {
            (*local).addr = v4(read::<[u8; 4]>(sk, offset!(sk_rcv_saddr)).unwrap_or([0; 4]));
            (*remote).addr = v4(read::<[u8; 4]>(sk, offset!(sk_daddr)).unwrap_or([0; 4]));
        } else if family == AF_INET6 {
            (*local).addr = read::<[u8; 16]>(sk, offset!(sk_v6_rcv_saddr)).unwrap_or([0; 16]);
            (*remote).addr = read::<[u8; 16]>(sk, offset!(sk_v6_daddr)).unwrap_or([0; 16]);
        } else {
            return;
        }
        (*local).family = family;
        (*local)._pad = 0;
        (*remote)._pad = 0;
        // A listening or unconnected socket has no peer.
        (*remote).family = if (*remote).port == 0 { 0 } else { family };
    }
}

/// Reads a user `struct sockaddr` into `out` (inet) or `record.unix_path`.
///
/// # Safety
/// `out` and `record` point to writable memory.
#[inline(always)]
unsafe fn read_user_sockaddr(user: u64, addrlen: u64, out: *mut SockAddr, record: *mut NetRecord) {
    // SAFETY: the caller guarantees both are writable; the unix path copies
    // write at most `UNIX_PATH_LEN` bytes into the `UNIX_PATH_LEN` array,
    // and every user read is a checked copy.
    unsafe {
        (*out).family = 0;
        (*out).port = 0;
        (*out)._pad = 0;
        (*out).addr = [0; 16];
        if user == 0 {
            return;
        }
        let family = read_user(user as *const u16).unwrap_or(0);
        match family {
            AF_INET => {
                // sockaddr_in: family, port (network order), address.
                let Ok(raw) = read_user(user as *const [u8; 8]) else {
                    return;
                };
                (*out).port = u16::from_be_bytes([raw[2], raw[3]]);
                (*out).addr = v4([raw[4], raw[5], raw[6], raw[7]]);
            }
            AF_INET6 => {
                // sockaddr_in6: family, port, flowinfo, address, scope.
                let Ok(raw) = read_user(user as *const [u8; 24]) else {
                    return;
                };
                (*out).port = u16::from_be_bytes([raw[2], raw[3]]);
                (*out).addr.copy_from_slice(&raw[8..24]);
            }
            AF_UNIX => {
                let dst = (*record).unix_path.as_mut_ptr() as *mut c_void;
                let src = (user + 2) as *const c_void;
                let mut len = addrlen.saturating_sub(2);
                if len > UNIX_PATH_LEN as u64 {
                    len = UNIX_PATH_LEN as u64;
                }
                // A constant size keeps the verifier simple; short buffers at
                // the end of a page fall back to a string copy.
                if generated::bpf_probe_read_user(dst, UNIX_PATH_LEN as u32, src) != 0 {
                    let copied = bpf_probe_read_user_str(dst, UNIX_PATH_LEN as u32, src);
                    len = if copied > 0 { (copied - 1) as u64 } else { 0 };
                }
                if (*record).unix_path[0] == 0 && len > 0 {
                    (*record).header.flags |= NET_FLAG_UNIX_ABSTRACT;
                }
                (*record).unix_path_len = len as u16;
            }
            _ => return,
        }
        (*out).family = family;
    }
}

/// Starts a pending connect/accept/bind/listen record.
#[inline(always)]
fn net_enter(ctx: &TracePointContext, kind: EventKind) {
    if !family_on(FAMILY_NET) {
        return;
    }
    let tgid = current_tgid();
    if tgid == agent_pid() {
        return;
    }
    let Some(record) = NET_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: `record` is this CPU's scratch value, valid and writable
    // while the program runs; syscall entries do not nest on one CPU.
    unsafe {
        let flags = if is_tracked(tgid) {
            NET_FLAG_TRACKED
        } else {
            0
        };
        fill_header(
            &raw mut (*record).header,
            kind,
            flags,
            size_of::<NetRecord>(),
        );
        (*record).ret = 0;
        (*record).fd = syscall::arg(ctx, 0) as i32;
        (*record).sock_type = 0;
        (*record).unix_path_len = 0;
        (*record).len = 0;
        (*record).netns = kernel::net_ns(kernel::current_task());
        (*record)._pad2 = 0;
        (*record).local = SockAddr {
            family: 0,
            port: 0,
            _pad: 0,
            addr: [0; 16],
        };
        (*record).remote = SockAddr {
            family: 0,
            port: 0,
            _pad: 0,
            addr: [0; 16],
        };
        match kind {
            EventKind::Connect => read_user_sockaddr(
                syscall::arg(ctx, 1),
                syscall::arg(ctx, 2),
                &raw mut (*record).remote,
                record,
            ),
            EventKind::Bind => read_user_sockaddr(
                syscall::arg(ctx, 1),
                syscall::arg(ctx, 2),
                &raw mut (*record).local,
                record,
            ),
            _ => {}
        }
        if NET_PENDING
            .insert(bpf_get_current_pid_tgid(), &*record, 0)
            .is_ok()
        {
            pending_added(PENDING_NET);
        } else {
            count(Stat::PendingLost, kind.slot());
            diag::pending_full(tgid, kind);
        }
    }
}

/// Completes a pending record with the result and the kernel socket's view.
#[inline(always)]
fn net_exit(ctx: &TracePointContext, kind: EventKind) {
    if !pending_any(PENDING_NET) {
        return;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(pending) = NET_PENDING.get_ptr(pid_tgid) else {
        return;
    };
    let ret = syscall::ret(ctx);
    // Event loops end every accept burst with EAGAIN: not an event.
    if kind == EventKind::Accept && ret == -EAGAIN {
        forget_pending(pid_tgid);
        count(Stat::Filtered, kind.slot());
        return;
    }
    let Some(mut entry) = reserve::<NetRecord>(kind) else {
        forget_pending(pid_tgid);
        return;
    };
    // A checked copy: the entry is another map's value.
    if read_kernel_into(&mut entry, pending).is_err() {
        discard(entry);
        forget_pending(pid_tgid);
        return;
    }
    forget_pending(pid_tgid);
    let record = entry.as_mut_ptr();
    // SAFETY: `record` is the reservation, now a whole `NetRecord`.
    unsafe {
        (*record).ret = ret;
        (*record).header.ktime_ns = bpf_ktime_get_boot_ns();
        let socket_fd = match kind {
            EventKind::Accept if ret >= 0 => Some(ret as u64),
            EventKind::Connect if ret == 0 || ret == -EINPROGRESS => Some((*record).fd as u64),
            EventKind::Bind | EventKind::Listen if ret == 0 => Some((*record).fd as u64),
            _ => None,
        };
        if let Some(fd) = socket_fd {
            let socket = socket_of_fd(fd);
            let sk = read_ptr(socket, offset!(socket_sk));
            (*record).sock_type = read::<u16>(socket, offset!(socket_type)).unwrap_or(0);
            if !sk.is_null() {
                let family = read::<u16>(sk, offset!(sk_family)).unwrap_or(0);
                if family == AF_INET || family == AF_INET6 {
                    if kind == EventKind::Accept {
                        sock_addrs(sk, &raw mut (*record).local, &raw mut (*record).remote);
                        // A loopback connection accepted by an untracked
                        // server is the far end of a connect that is already
                        // reported with its bytes: skip it, and its summary.
                        // Tracking is asked again here, not taken from the
                        // entry: a server blocks in accept from before the
                        // agent knows it is a workload.
                        if is_tracked((*record).header.pid) {
                            (*record).header.flags |= NET_FLAG_TRACKED;
                        } else if is_loopback(&(*record).remote) {
                            discard(entry);
                            count(Stat::Filtered, kind.slot());
                            return;
                        }
                        if (*record).sock_type == SOCK_STREAM {
                            remember_owner(sk as u64, &(*record).local, &(*record).remote, 0);
                        }
                    } else {
                        let mut peer = SockAddr {
                            family: 0,
                            port: 0,
                            _pad: 0,
                            addr: [0; 16],
                        };
                        sock_addrs(sk, &raw mut (*record).local, &raw mut peer);
                        if kind == EventKind::Connect && (*record).sock_type == SOCK_STREAM {
                            super::tls::note_connect(pid_tgid, &(*record).remote);
                        }
                    }
                    (*record).header.flags |= NET_FLAG_LOCAL_FROM_SOCKET;
                } else if family == AF_UNIX && kind == EventKind::Accept {
                    (*record).remote.family = AF_UNIX;
                    (*record).local.family = AF_UNIX;
                }
            }
        }
    }
    submit(entry);
}

/// Marks the current thread's pending connect as refused by an egress
/// allowlist: the `cgroup/connect*` programs run inside the syscall,
/// between its entry and exit tracepoints, so the record the exit
/// completes says the kernel denied it (`NET_FLAG_DENIED`).
#[inline(always)]
pub fn mark_connect_denied() {
    if !pending_any(PENDING_NET) {
        return;
    }
    if let Some(pending) = NET_PENDING.get_ptr_mut(bpf_get_current_pid_tgid()) {
        // SAFETY: `pending` points into a live map value, valid for this
        // program run; only this thread's syscall uses its entry.
        unsafe { (*pending).header.flags |= NET_FLAG_DENIED };
    }
}

/// Removes the thread's pending record.
#[inline(always)]
fn forget_pending(pid_tgid: u64) {
    if NET_PENDING.remove(pid_tgid).is_ok() {
        pending_removed(PENDING_NET);
    }
}

/// 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104.
#[inline(always)]
fn is_loopback(addr: &SockAddr) -> bool {
    let a = &addr.addr;
    match addr.family {
        AF_INET => a[0] == 127,
        AF_INET6 => {
            let head_zero = a[..10].iter().all(|&b| b == 0);
            (head_zero
                && a[10] == 0
                && a[11] == 0
                && a[12..15].iter().all(|&b| b == 0)
                && a[15] == 1)
                || (head_zero && a[10] == 0xff && a[11] == 0xff && a[12] == 127)
        }
        _ => false,
    }
}

/// Records the current process as the owner of TCP socket `sk`.
#[inline(always)]
fn remember_owner(sk: u64, local: &SockAddr, remote: &SockAddr, flags: u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    // SAFETY: the helpers take no arguments.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    let owner = TcpOwner {
        pid: (pid_tgid >> 32) as u32,
        uid: uid_gid as u32,
        gid: (uid_gid >> 32) as u32,
        flags,
        // SAFETY: the helper takes no argument.
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
        opened_ktime_ns: now,
        refreshed_ktime_ns: 0,
        bytes_sent: 0,
        bytes_received: 0,
        local: *local,
        remote: *remote,
        netns: kernel::net_ns(kernel::current_task()),
        _pad: 0,
    };
    if TCP_OWNERS.insert(sk, owner, 0).is_err() {
        count(Stat::PendingLost, EventKind::TcpSummary.slot());
    }
}

#[tracepoint(category = "syscalls", name = "sys_enter_connect")]
pub fn sys_enter_connect(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    net_enter(&ctx, EventKind::Connect);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_connect")]
pub fn sys_exit_connect(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    net_exit(&ctx, EventKind::Connect);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_accept")]
pub fn sys_enter_accept(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    net_enter(&ctx, EventKind::Accept);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_accept")]
pub fn sys_exit_accept(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    net_exit(&ctx, EventKind::Accept);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_accept4")]
pub fn sys_enter_accept4(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    net_enter(&ctx, EventKind::Accept);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_accept4")]
pub fn sys_exit_accept4(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    net_exit(&ctx, EventKind::Accept);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_bind")]
pub fn sys_enter_bind(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    net_enter(&ctx, EventKind::Bind);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_bind")]
pub fn sys_exit_bind(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    net_exit(&ctx, EventKind::Bind);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_listen")]
pub fn sys_enter_listen(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    net_enter(&ctx, EventKind::Listen);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_listen")]
pub fn sys_exit_listen(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    net_exit(&ctx, EventKind::Listen);
    0
}

/// `sendto(fd, buf, len, flags, addr, addrlen)`.
#[tracepoint(category = "syscalls", name = "sys_enter_sendto")]
pub fn sys_enter_sendto(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    let addr = syscall::arg(&ctx, 4);
    if addr != 0 && family_on(FAMILY_NET) {
        udp_send(
            syscall::arg(&ctx, 0),
            addr,
            syscall::arg(&ctx, 5),
            syscall::arg(&ctx, 2),
        );
    }
    0
}

/// `sendmsg(fd, msg, flags)`: the destination is `msg->msg_name`, the
/// first buffer's size `msg->msg_iov[0].iov_len`.
#[tracepoint(category = "syscalls", name = "sys_enter_sendmsg")]
pub fn sys_enter_sendmsg(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    if !family_on(FAMILY_NET) {
        return 0;
    }
    let msg = syscall::arg(&ctx, 1);
    if msg == 0 {
        return 0;
    }
    // struct user_msghdr: msg_name, msg_namelen, msg_iov, msg_iovlen.
    let Ok(header) = read_user(msg as *const [u64; 4]) else {
        return 0;
    };
    let (name, namelen, iov, iovlen) = (header[0], header[1] & 0xffff_ffff, header[2], header[3]);
    if name == 0 {
        return 0;
    }
    let len = if iov != 0 && iovlen > 0 {
        read_user(iov as *const [u64; 2]).map(|v| v[1]).unwrap_or(0)
    } else {
        0
    };
    udp_send(syscall::arg(&ctx, 0), name, namelen, len);
    0
}

/// Reports a datagram send to `addr` by a tracked process, or any send to
/// port 53 (the query itself is read on the wire, `names.rs`).
#[inline(always)]
fn udp_send(fd: u64, addr: u64, addrlen: u64, len: u64) {
    let tgid = current_tgid();
    if tgid == agent_pid() {
        return;
    }
    let Ok(head) = read_user(addr as *const [u8; 4]) else {
        return;
    };
    let family = u16::from_ne_bytes([head[0], head[1]]);
    if family != AF_INET && family != AF_INET6 {
        return;
    }
    let port = u16::from_be_bytes([head[2], head[3]]);
    let tracked = is_tracked(tgid);
    if !tracked && port != DNS_PORT {
        count(Stat::Filtered, EventKind::UdpSend.slot());
        return;
    }
    if let Some(mut entry) = reserve::<NetRecord>(EventKind::UdpSend) {
        let record = entry.as_mut_ptr();
        // SAFETY: `record` is a reservation sized for a `NetRecord`.
        unsafe {
            let mut flags = NET_FLAG_NO_RESULT;
            if tracked {
                flags |= NET_FLAG_TRACKED;
            }
            fill_header(
                &raw mut (*record).header,
                EventKind::UdpSend,
                flags,
                size_of::<NetRecord>(),
            );
            (*record).ret = 0;
            (*record).fd = fd as i32;
            (*record).sock_type = 0;
            (*record).unix_path_len = 0;
            (*record).len = len as u32;
            (*record).netns = kernel::net_ns(kernel::current_task());
            (*record)._pad2 = 0;
            (*record).local = SockAddr {
                family: 0,
                port: 0,
                _pad: 0,
                addr: [0; 16],
            };
            read_user_sockaddr(addr, addrlen, &raw mut (*record).remote, record);
        }
        submit(entry);
    }
}

/// Field offsets of `sock:inet_sock_set_state` (stable since Linux 4.16).
mod set_state {
    pub const SKADDR: usize = 8;
    pub const NEWSTATE: usize = 20;
    pub const SPORT: usize = 24;
    pub const DPORT: usize = 26;
    pub const FAMILY: usize = 28;
    pub const PROTOCOL: usize = 30;
    pub const SADDR: usize = 32;
    pub const DADDR: usize = 36;
    pub const SADDR_V6: usize = 40;
    pub const DADDR_V6: usize = 56;
}

/// The endpoints a `inet_sock_set_state` record carries.
#[inline(always)]
fn state_endpoints(ctx: &TracePointContext, local: &mut SockAddr, remote: &mut SockAddr) {
    let family = read_context::<u16>(ctx, set_state::FAMILY).unwrap_or(0);
    local.family = family;
    remote.family = family;
    local._pad = 0;
    remote._pad = 0;
    local.port = read_context::<u16>(ctx, set_state::SPORT).unwrap_or(0);
    remote.port = read_context::<u16>(ctx, set_state::DPORT).unwrap_or(0);
    if family == AF_INET6 {
        local.addr = read_context::<[u8; 16]>(ctx, set_state::SADDR_V6).unwrap_or([0; 16]);
        remote.addr = read_context::<[u8; 16]>(ctx, set_state::DADDR_V6).unwrap_or([0; 16]);
    } else {
        local.addr = v4(read_context::<[u8; 4]>(ctx, set_state::SADDR).unwrap_or([0; 4]));
        remote.addr = v4(read_context::<[u8; 4]>(ctx, set_state::DADDR).unwrap_or([0; 4]));
    }
}

#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    if !family_on(FAMILY_NET) {
        return 0;
    }
    let (protocol, newstate, sk) = (
        read_context::<u16>(&ctx, set_state::PROTOCOL).unwrap_or(0),
        read_context::<i32>(&ctx, set_state::NEWSTATE).unwrap_or(0),
        read_context::<u64>(&ctx, set_state::SKADDR).unwrap_or(0),
    );
    if protocol != IPPROTO_TCP || sk == 0 {
        return 0;
    }
    if newstate == TCP_SYN_SENT {
        // Inside connect(): the current task is the owner.
        let tgid = current_tgid();
        if tgid == agent_pid() || tgid == 0 {
            return 0;
        }
        let mut local = SockAddr {
            family: 0,
            port: 0,
            _pad: 0,
            addr: [0; 16],
        };
        let mut remote = local;
        state_endpoints(&ctx, &mut local, &mut remote);
        remember_owner(sk, &local, &remote, TCP_OWNER_ACTIVE);
    } else if newstate == TCP_CLOSE {
        emit_summary(&ctx, sk);
    }
    0
}

/// The final summary of a closing socket, attributed to its stored owner.
#[inline(always)]
fn emit_summary(ctx: &TracePointContext, sk: u64) {
    let Some(owner) = TCP_OWNERS.get_ptr(sk) else {
        return;
    };
    if let Some(mut entry) = reserve::<TcpSummaryRecord>(EventKind::TcpSummary) {
        let record = entry.as_mut_ptr();
        // SAFETY: `record` is a reservation sized for a `TcpSummaryRecord`;
        // `owner` is a value of `TCP_OWNERS`, live until the remove below.
        unsafe {
            let header = &raw mut (*record).header;
            (*header).kind = EventKind::TcpSummary as u16;
            (*header).flags =
                TCP_SUMMARY_FLAG_FINAL | control_flags(sk as *const u8, (*owner).flags);
            (*header).size = size_of::<TcpSummaryRecord>() as u32;
            (*header).ktime_ns = bpf_ktime_get_boot_ns();
            (*header).pid = (*owner).pid;
            (*header).tid = (*owner).pid;
            (*header).uid = (*owner).uid;
            (*header).gid = (*owner).gid;
            (*header).cgroup_id = (*owner).cgroup_id;
            (*header).comm = (*owner).comm;
            (*record).opened_ktime_ns = (*owner).opened_ktime_ns;
            (*record).netns = (*owner).netns;
            (*record)._pad = 0;
            state_endpoints(ctx, &mut (*record).local, &mut (*record).remote);
            let sk = sk as *const u8;
            (*record).bytes_sent = read::<u64>(sk, offset!(tcp_bytes_acked)).unwrap_or(0);
            (*record).bytes_received = read::<u64>(sk, offset!(tcp_bytes_received)).unwrap_or(0);
        }
        submit(entry);
    }
    let _ = TCP_OWNERS.remove(sk);
}

/// Which SYN/FIN sequence numbers the raw byte totals of `sk` include. Read
/// inside `tcp_set_state`, before `tcp_done` marks the socket shut down.
#[inline(always)]
fn control_flags(sk: *const u8, owner_flags: u32) -> u16 {
    let mut flags = 0;
    if owner_flags & TCP_OWNER_ACTIVE != 0 {
        flags |= TCP_SUMMARY_FLAG_ACTIVE;
    }
    let shutdown = read::<u8>(sk, offset!(sk_shutdown)).unwrap_or(0);
    if shutdown & RCV_SHUTDOWN != 0 {
        flags |= TCP_SUMMARY_FLAG_FIN_RECEIVED;
    }
    if shutdown & SEND_SHUTDOWN != 0 {
        let snd_una = read::<u32>(sk, offset!(tcp_snd_una));
        let write_seq = read::<u32>(sk, offset!(tcp_write_seq));
        if let (Ok(una), Ok(seq)) = (snd_una, write_seq) {
            if una == seq {
                flags |= TCP_SUMMARY_FLAG_FIN_ACKED;
            }
        }
    }
    flags
}

/// `iter/tcp`: run by the agent before each periodic report; refreshes the
/// byte counts and endpoints of the sockets in [`TCP_OWNERS`]. The context
/// is `struct bpf_iter__tcp { meta; sk_common; uid }`.
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/tcp")]
pub fn tcp_owners_refresh(ctx: *mut c_void) -> i32 {
    if floor() {
        return 0;
    }
    // Read the socket pointer as a plain number: the helpers below take it
    // as an address, and the verifier then needs no BTF type for it.
    let sk = read_kernel((ctx as *const u64).wrapping_add(1)).unwrap_or(0);
    if sk == 0 {
        return 0;
    }
    let Some(owner) = TCP_OWNERS.get_ptr_mut(sk) else {
        return 0;
    };
    // SAFETY: `owner` points into a value of `TCP_OWNERS`, valid while the
    // program runs; a racing close at worst refreshes a removed entry.
    unsafe {
        let sk = sk as *const u8;
        (*owner).bytes_sent = read::<u64>(sk, offset!(tcp_bytes_acked)).unwrap_or(0);
        (*owner).bytes_received = read::<u64>(sk, offset!(tcp_bytes_received)).unwrap_or(0);
        sock_addrs(sk, &raw mut (*owner).local, &raw mut (*owner).remote);
        (*owner).refreshed_ktime_ns = bpf_ktime_get_boot_ns();
    }
    0
}
