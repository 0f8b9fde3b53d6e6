//! Names on the wire: DNS queries and answers, the server name of TLS
//! ClientHellos and the head of tracked processes' plain HTTP requests
//! (their `Host`), seen by `cgroup_skb` programs attached to the cgroup2
//! root, so every process in every cgroup is covered without a program on
//! its `send*`/`recv*`/`read`/`write` syscalls. The same programs read plain
//! HTTP to model servers (`plain_http.rs`).
//!
//! Why on the wire: glibc's resolver `connect()`s a UDP socket and then
//! uses `sendmmsg` and `recvfrom`, TCP DNS goes through `writev` and `read`,
//! and resolvers in static binaries use whatever they like. Every one of
//! them puts the same bytes on port 53. Syscall hooks on those paths would
//! run on every read and write of every process (a server's hottest
//! paths); here a packet that is neither costs two small header loads (three,
//! and six bytes of data, for a TCP segment: the ClientHello and HTTP
//! request tests). A request's head is sent in the context of the process
//! that writes it, as a ClientHello is; a segment sent later from softirq
//! (a full congestion window) can be taken for another process's, and is
//! then reported only if that process is tracked.
//!
//! Attribution: a query leaves in the context of the process that sends it
//! (UDP sends and the first TCP segment run the egress hook synchronously
//! inside the syscall), so the egress program records that process as the
//! owner of the socket, keyed by socket cookie. An answer is delivered in
//! softirq context, on behalf of nobody: the ingress program looks its
//! socket's cookie up and reports the answer for the recorded owner, so a
//! name resolved by a local stub (127.0.0.53) belongs to the process that
//! asked, not to the stub. Answers to sockets that sent no query are
//! counted as filtered, never reported.

use core::ffi::c_void;

use aiwatch_common::{
    DnsOwner, DnsRecord, EventHeader, EventKind, SockAddr, Stat, COMM_LEN, DNS_FLAG_CUT,
    DNS_FLAG_TCP, DNS_PAYLOAD_LEN, FAMILY_NET,
};
use aya_ebpf::{
    helpers::{
        bpf_ktime_get_boot_ns,
        generated::{bpf_get_socket_cookie, bpf_skb_cgroup_id, bpf_skb_load_bytes},
    },
    macros::{cgroup_skb, map},
    maps::LruHashMap,
    programs::SkBuffContext,
    EbpfContext,
};

use super::plain_http;
use crate::{
    emit::{reserve, submit},
    globals::{agent_pid, family_on, floor, offset},
    kernel::{self, read, read_ptr},
    maps::{count, is_tracked_in},
};

/// `cgroup_skb` verdict: let the packet through (these programs only look).
const PASS: i32 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// The port DNS is read on (`names.dns_port`, 53 unless configured): a
/// load-time global, patched by the agent before verification.
#[unsafe(no_mangle)]
static DNS_PORT: u16 = 53;

#[inline(always)]
fn dns_port() -> u16 {
    // SAFETY: an aligned read of an immutable static, as `globals::offset!`.
    unsafe { core::ptr::read_volatile(&raw const DNS_PORT) }
}
/// `ETH_P_IP` and `ETH_P_IPV6` as `__sk_buff.protocol` holds them
/// (network byte order in the low 16 bits).
const PROTO_IPV4: u32 = 0x0800u16.to_be() as u32;
const PROTO_IPV6: u32 = 0x86ddu16.to_be() as u32;

/// Who sent the last DNS query on each socket (key: socket cookie). LRU, so
/// sockets closed without an answer cannot fill it.
#[map]
static DNS_SOCKETS: LruHashMap<u64, DnsOwner> = LruHashMap::with_max_entries(16384, 0);

/// The addresses, ports and payload position of one packet.
pub(super) struct Flow {
    pub(super) family: u16,
    pub(super) tcp: bool,
    pub(super) src: [u8; 16],
    pub(super) dst: [u8; 16],
    pub(super) sport: u16,
    pub(super) dport: u16,
    /// Offset of the transport header from the network header.
    pub(super) l4: u32,
}

/// Reads the IP header and the ports of `ctx`'s packet; `None` for anything
/// but unfragmented (or first-fragment) TCP and UDP over IPv4 or IPv6
/// without extension headers.
#[inline(always)]
fn flow(ctx: &SkBuffContext) -> Option<Flow> {
    let protocol = ctx.skb.protocol();
    let mut flow = Flow {
        family: 0,
        tcp: false,
        src: [0; 16],
        dst: [0; 16],
        sport: 0,
        dport: 0,
        l4: 0,
    };
    let l4_proto;
    if protocol == PROTO_IPV4 {
        let ip: [u8; 20] = ctx.load(0).ok()?;
        if ip[0] >> 4 != 4 {
            return None;
        }
        // A later fragment has no transport header.
        if u16::from_be_bytes([ip[6], ip[7]]) & 0x1fff != 0 {
            return None;
        }
        flow.family = AF_INET;
        flow.l4 = u32::from(ip[0] & 0x0f) * 4;
        l4_proto = ip[9];
        flow.src[..4].copy_from_slice(&ip[12..16]);
        flow.dst[..4].copy_from_slice(&ip[16..20]);
    } else if protocol == PROTO_IPV6 {
        let ip: [u8; 40] = ctx.load(0).ok()?;
        flow.family = AF_INET6;
        flow.l4 = 40;
        l4_proto = ip[6];
        flow.src.copy_from_slice(&ip[8..24]);
        flow.dst.copy_from_slice(&ip[24..40]);
    } else {
        return None;
    }
    if l4_proto != IPPROTO_UDP && l4_proto != IPPROTO_TCP {
        return None;
    }
    flow.tcp = l4_proto == IPPROTO_TCP;
    let ports: [u8; 4] = ctx.load(flow.l4 as usize).ok()?;
    flow.sport = u16::from_be_bytes([ports[0], ports[1]]);
    flow.dport = u16::from_be_bytes([ports[2], ports[3]]);
    Some(flow)
}

/// Where the DNS message starts in the packet, and its length on the wire;
/// `None` for a TCP segment without data (handshake, bare ACK).
#[inline(always)]
fn dns_message(ctx: &SkBuffContext, flow: &Flow) -> Option<(u32, u16)> {
    let len = ctx.len();
    if flow.tcp {
        let header: [u8; 14] = ctx.load(flow.l4 as usize).ok()?;
        let data = flow.l4 + u32::from(header[12] >> 4) * 4;
        // TCP DNS prefixes each message with its length.
        if len < data + 2 {
            return None;
        }
        let prefix: [u8; 2] = ctx.load(data as usize).ok()?;
        Some((data + 2, u16::from_be_bytes(prefix)))
    } else {
        let start = flow.l4 + 8;
        if len <= start {
            return None;
        }
        Some((start, (len - start) as u16))
    }
}

/// The current task as the owner of a DNS socket. The helpers that name
/// the current process are not all offered to `cgroup_skb` programs on
/// every kernel; the task struct is, through the load-time offsets.
#[inline(always)]
pub(super) fn current_owner(ctx: &SkBuffContext) -> DnsOwner {
    let task = kernel::current_task();
    let cred = read_ptr(task, offset!(task_cred));
    DnsOwner {
        pid: read::<u32>(task, offset!(task_tgid)).unwrap_or(0),
        tid: read::<u32>(task, offset!(task_pid)).unwrap_or(0),
        uid: read::<u32>(cred, offset!(cred_uid)).unwrap_or(u32::MAX),
        gid: read::<u32>(cred, offset!(cred_gid)).unwrap_or(u32::MAX),
        // SAFETY: `ctx.skb.skb` is this program's context.
        cgroup_id: unsafe { bpf_skb_cgroup_id(ctx.skb.skb) },
        comm: read::<[u8; COMM_LEN]>(task, offset!(task_comm)).unwrap_or([0; COMM_LEN]),
        netns: kernel::net_ns(task),
        _pad: 0,
    }
}

#[inline(always)]
pub(super) fn sock_addr(family: u16, port: u16, addr: [u8; 16]) -> SockAddr {
    SockAddr {
        family,
        port,
        _pad: 0,
        addr,
    }
}

/// Reports one DNS message for `owner`, with a bounded copy of it.
#[inline(always)]
fn emit_dns(
    ctx: &SkBuffContext,
    kind: EventKind,
    owner: &DnsOwner,
    cookie: u64,
    flow: &Flow,
    message: (u32, u16),
) {
    let Some(mut entry) = reserve::<DnsRecord>(kind) else {
        return;
    };
    let (start, wire_len) = message;
    let record = entry.as_mut_ptr();
    let egress = kind != EventKind::DnsAnswer;
    // SAFETY: `record` is a reservation sized for a `DnsRecord`; the copy
    // below writes at most `DNS_PAYLOAD_LEN` bytes into that array (the
    // length is 512 or masked into 1..=511).
    unsafe {
        let mut flags = 0;
        if flow.tcp {
            flags |= DNS_FLAG_TCP;
        }
        let src = sock_addr(flow.family, flow.sport, flow.src);
        let dst = sock_addr(flow.family, flow.dport, flow.dst);
        (*record).local = if egress { src } else { dst };
        (*record).remote = if egress { dst } else { src };
        (*record).socket_cookie = cookie;
        (*record).netns = owner.netns;
        (*record).wire_len = wire_len;
        let available = ctx.len().saturating_sub(start);
        let copied =
            copy_bounded::<DNS_PAYLOAD_LEN>(ctx, start, available, (*record).payload.as_mut_ptr());
        if u32::from(wire_len) > copied {
            flags |= DNS_FLAG_CUT;
        }
        fill_owner_header(
            &raw mut (*record).header,
            kind,
            flags,
            core::mem::size_of::<DnsRecord>(),
            owner,
        );
        (*record).payload_len = copied as u16;
    }
    submit(entry);
}

/// Fills a record's header for `owner`, the process a socket belongs to
/// (a packet's program runs in whatever task the kernel is in).
///
/// # Safety
/// `header` points to a record header in a ring-buffer reservation.
#[inline(always)]
pub(super) unsafe fn fill_owner_header(
    header: *mut EventHeader,
    kind: EventKind,
    flags: u16,
    size: usize,
    owner: &DnsOwner,
) {
    // SAFETY: the caller's guarantee; plain stores of plain data.
    unsafe {
        (*header).kind = kind as u16;
        (*header).flags = flags;
        (*header).size = size as u32;
        (*header).ktime_ns = bpf_ktime_get_boot_ns();
        (*header).pid = owner.pid;
        (*header).tid = owner.tid;
        (*header).uid = owner.uid;
        (*header).gid = owner.gid;
        (*header).cgroup_id = owner.cgroup_id;
        (*header).comm = owner.comm;
    }
}

/// Copies `min(available, cap, MAX)` bytes of the packet from `start` to
/// `dst` in one `bpf_skb_load_bytes`; returns how many were copied (0 when
/// the packet is shorter than it said). The helper wants a length the
/// verifier can bound away from zero, so the length is formed as
/// `((n - 1) & (MAX - 1)) + 1`, which lies in `1..=MAX` whatever `n` is,
/// behind `black_box` so that the compiler keeps that shape. One call: a
/// copy in power-of-two steps multiplies the paths the verifier of older
/// kernels (6.1) walks.
///
/// # Safety
/// `dst` points to `MAX` writable bytes; `MAX` is a power of two.
#[inline(always)]
pub(super) unsafe fn copy_bounded<const MAX: usize>(
    ctx: &SkBuffContext,
    start: u32,
    available: u32,
    dst: *mut u8,
) -> u32 {
    const { assert!(MAX.is_power_of_two()) };
    let wanted = available.min(MAX as u32);
    if wanted == 0 {
        return 0;
    }
    let len = (core::hint::black_box(wanted - 1) & (MAX as u32 - 1)) + 1;
    // SAFETY: `len` is at most `MAX`, the size of `dst`; the helper checks
    // the packet's bounds itself.
    let ok = unsafe { bpf_skb_load_bytes(ctx.as_ptr(), start, dst as *mut c_void, len) } == 0;
    if ok {
        len
    } else {
        0
    }
}

/// The start of a TCP segment's data and its first six bytes; `None` for a
/// segment with fewer (a handshake, a bare ACK).
#[inline(always)]
fn segment_start(ctx: &SkBuffContext, flow: &Flow) -> Option<(u32, [u8; 6])> {
    let header: [u8; 14] = ctx.load(flow.l4 as usize).ok()?;
    let data = flow.l4 + u32::from(header[12] >> 4) * 4;
    if ctx.len() < data + 6 {
        return None;
    }
    Some((data, ctx.load(data as usize).ok()?))
}

/// Whether a segment's data starts a TLS ClientHello: a handshake record
/// (22) of TLS 1.x whose first message is a ClientHello (1). Later records
/// of a connection are application data (23), and a server's first message
/// is a ServerHello (2).
#[inline(always)]
fn is_client_hello(head: &[u8; 6]) -> bool {
    head[0] == 22 && head[1] == 3 && head[5] == 1
}

/// Whether a segment's data starts an HTTP/1.x request: a method and its
/// space (`CONNECT` and `OPTIONS` by their first four letters). A server's
/// answers start with `HTTP/`.
#[inline(always)]
fn is_http_request(head: &[u8; 6]) -> bool {
    matches!(
        [head[0], head[1], head[2], head[3]],
        [b'G', b'E', b'T', b' ']
            | [b'P', b'O', b'S', b'T']
            | [b'P', b'U', b'T', b' ']
            | [b'H', b'E', b'A', b'D']
            | [b'D', b'E', b'L', b'E']
            | [b'P', b'A', b'T', b'C']
            | [b'O', b'P', b'T', b'I']
            | [b'C', b'O', b'N', b'N']
    )
}

/// Names in the first bytes of a TCP segment: the server name of a TLS
/// ClientHello (any process, whatever TLS library wrote it, static ones
/// included), and the head of a plain HTTP request of a tracked process
/// (its `Host`), copied from the wire.
#[inline(always)]
fn names_in_segment(ctx: &SkBuffContext, flow: &Flow) {
    let Some((data, head)) = segment_start(ctx, flow) else {
        return;
    };
    let kind = if is_client_hello(&head) {
        EventKind::TlsClientHello
    } else if is_http_request(&head) {
        EventKind::HttpRequest
    } else {
        return;
    };
    let owner = current_owner(ctx);
    if owner.pid == agent_pid() || owner.pid == 0 {
        return;
    }
    let wire_len = if kind == EventKind::TlsClientHello {
        let record_len = u16::from_be_bytes([head[3], head[4]]);
        record_len.saturating_add(5)
    } else {
        if !is_tracked_in(owner.pid, owner.cgroup_id) {
            count(Stat::Filtered, EventKind::HttpRequest.slot());
            return;
        }
        let available = ctx.len() - data;
        if available > u32::from(u16::MAX) {
            u16::MAX
        } else {
            available as u16
        }
    };
    // SAFETY: the context is this program's `__sk_buff`.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    emit_dns(ctx, kind, &owner, cookie, flow, (data, wire_len));
}

/// DNS queries (any packet to port 53) and TLS ClientHellos (the first
/// data of a TCP connection, on any port).
#[cgroup_skb(egress)]
pub fn names_egress(ctx: SkBuffContext) -> i32 {
    if floor() || !family_on(FAMILY_NET) {
        return PASS;
    }
    let Some(flow) = flow(&ctx) else {
        return PASS;
    };
    if flow.dport != dns_port() {
        if flow.tcp {
            if plain_http::is_model_port(flow.dport) {
                plain_http::plain_egress(&ctx, &flow);
            } else {
                names_in_segment(&ctx, &flow);
            }
        }
        return PASS;
    }
    let Some(message) = dns_message(&ctx, &flow) else {
        return PASS;
    };
    let owner = current_owner(&ctx);
    if owner.pid == agent_pid() || owner.pid == 0 {
        return PASS;
    }
    // SAFETY: the context is this program's `__sk_buff`.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    if DNS_SOCKETS.insert(cookie, owner, 0).is_err() {
        count(Stat::PendingLost, EventKind::DnsAnswer.slot());
    }
    emit_dns(&ctx, EventKind::Dns, &owner, cookie, &flow, message);
    PASS
}

/// DNS answers: packets from port 53 to a socket that sent a query.
#[cgroup_skb(ingress)]
pub fn names_ingress(ctx: SkBuffContext) -> i32 {
    if floor() || !family_on(FAMILY_NET) {
        return PASS;
    }
    // A connected socket whose peer is not on port 53 (a TCP server's or
    // client's traffic, redis's included) is told apart from the context
    // alone, before any packet load. Unconnected sockets (peer port 0)
    // can receive from anyone: their packets are parsed.
    // `remote_port` holds the port in network order in its upper half
    // (the kernel shifts it there on little-endian machines).
    let peer_port = u16::from_be((ctx.skb.remote_port() >> 16) as u16);
    if plain_http::is_model_port(peer_port) {
        if let Some(flow) = flow(&ctx).filter(|flow| flow.tcp) {
            plain_http::plain_ingress(&ctx, &flow);
        }
        return PASS;
    }
    if peer_port != 0 && peer_port != dns_port() {
        return PASS;
    }
    let Some(flow) = flow(&ctx) else {
        return PASS;
    };
    if flow.sport != dns_port() {
        return PASS;
    }
    let Some(message) = dns_message(&ctx, &flow) else {
        return PASS;
    };
    // SAFETY: the context is this program's `__sk_buff`.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    // SAFETY: the value is copied out at once; a racing update at worst
    // attributes the answer to the socket's newer querier.
    let Some(owner) = (unsafe { DNS_SOCKETS.get(cookie) }).copied() else {
        count(Stat::Filtered, EventKind::DnsAnswer.slot());
        return PASS;
    };
    emit_dns(&ctx, EventKind::DnsAnswer, &owner, cookie, &flow, message);
    PASS
}
