//! Plain HTTP to model servers: the payload of TCP connections to the
//! configured model-server ports (`llm_capture.plain_ports`: Ollama's
//! 11434, vLLM's and other OpenAI-compatible servers' 8000), read by the
//! names programs' `cgroup_skb` hooks on the cgroup2 root. No program runs
//! on any process's `send*`/`recv*`/`read`/`write`; a packet of another port
//! costs one more compare against a handful of ports.
//!
//! Attribution: a connection's SYN leaves inside `connect()`, in the context
//! of the process that connects, which is recorded as the socket's owner
//! (`PLAIN_SOCKETS`, keyed by socket cookie). Later segments may leave from
//! softirq (when the congestion window opens) and answers always arrive
//! there, so both are reported for the recorded owner. A connection opened
//! before the agent started has no owner and is not read.
//!
//! Who is captured is the TLS probes' rule (`tls.rs`): the whole exchange of
//! tracked and listed processes; for every other process only the first
//! bytes of each segment it sends are tested against the LLM API request
//! lines (`LLM_PATHS`), and a match tracks it at once.

use aiwatch_common::{
    ClearTextRecord, DnsOwner, EventKind, Stat, CLEAR_TEXT_FLAG_LISTED, CLEAR_TEXT_FLAG_PROMOTED,
    CLEAR_TEXT_FLAG_TRUNCATED, CLEAR_TEXT_MAX, CLEAR_TEXT_PLAIN, CLEAR_TEXT_RECEIVED,
    CLEAR_TEXT_SENT, FAMILY_LLM, LLM_PATH_KEY_LEN, PLAIN_PORTS_MAX,
};
use aya_ebpf::{
    helpers::generated::bpf_get_socket_cookie,
    macros::map,
    maps::{lpm_trie::Key, LruHashMap},
    programs::SkBuffContext,
    EbpfContext,
};

use super::{
    names::{copy_bounded, current_owner, fill_owner_header, sock_addr, Flow},
    tls,
};
use crate::{
    emit::{reserve, submit},
    globals::{agent_pid, family_on},
    maps::{count, is_tracked_in},
};

/// The model-server ports plain HTTP is read on; 0 is an unused slot. A
/// load-time global, patched by the agent before verification.
#[unsafe(no_mangle)]
static LLM_PLAIN_PORTS: [u16; PLAIN_PORTS_MAX] = [0; PLAIN_PORTS_MAX];

/// Who opened each connection to a model-server port (key: socket cookie).
/// LRU: connections closed long ago age out.
#[map]
static PLAIN_SOCKETS: LruHashMap<u64, DnsOwner> = LruHashMap::with_max_entries(16384, 0);

const TCP_FLAG_SYN: u8 = 0x02;

/// Whether `port` is a configured model-server port.
#[inline(always)]
pub(super) fn is_model_port(port: u16) -> bool {
    if port == 0 {
        return false;
    }
    // SAFETY: an aligned read of an immutable static, as `globals::offset!`.
    let ports = unsafe { core::ptr::read_volatile(&raw const LLM_PLAIN_PORTS) };
    let mut slot = 0;
    while slot < PLAIN_PORTS_MAX {
        if ports[slot] == port {
            return true;
        }
        slot += 1;
    }
    false
}

/// The TCP header's sequence number, flags and data offset of `flow`'s
/// segment: `(seq, flags, data start)`.
#[inline(always)]
fn tcp_header(ctx: &SkBuffContext, flow: &Flow) -> Option<(u32, u8, u32)> {
    let header: [u8; 14] = ctx.load(flow.l4 as usize).ok()?;
    let seq = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    let data = flow.l4 + u32::from(header[12] >> 4) * 4;
    Some((seq, header[13], data))
}

/// The capture flags of a socket's owner, or `None` when it is neither
/// tracked nor listed.
#[inline(always)]
fn captured(owner: &DnsOwner) -> Option<u16> {
    if is_tracked_in(owner.pid, owner.cgroup_id) {
        Some(0)
    } else if tls::is_listed(owner.pid) {
        Some(CLEAR_TEXT_FLAG_LISTED)
    } else {
        None
    }
}

/// Whether the segment's data, from `start`, begins with an LLM API request
/// line. A request's first segment holds its whole head, so one shorter
/// than the key is not tested.
#[inline(always)]
fn llm_request_line(ctx: &SkBuffContext, start: u32) -> bool {
    if ctx.len() < start + LLM_PATH_KEY_LEN as u32 {
        return false;
    }
    let Ok(data) = ctx.load::<[u8; LLM_PATH_KEY_LEN]>(start as usize) else {
        return false;
    };
    if data[0] != b'P' {
        return false;
    }
    tls::is_llm_path(Key::new(LLM_PATH_KEY_LEN as u32 * 8, data))
}

/// The owner recorded at the SYN of socket `cookie`, for a segment that
/// carries data from `start`; `None` for a bare ACK or a socket not seen
/// connecting.
#[inline(always)]
fn data_owner(ctx: &SkBuffContext, start: u32, cookie: u64) -> Option<DnsOwner> {
    if ctx.len() <= start {
        return None;
    }
    // SAFETY: the value is copied out at once.
    unsafe { PLAIN_SOCKETS.get(cookie) }.copied()
}

/// A segment a process sends to a model-server port (`flow.dport`).
#[inline(always)]
pub(super) fn plain_egress(ctx: &SkBuffContext, flow: &Flow) {
    if !family_on(FAMILY_LLM) {
        return;
    }
    let Some((seq, tcp_flags, start)) = tcp_header(ctx, flow) else {
        return;
    };
    // SAFETY: the context is this program's `__sk_buff`.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    if tcp_flags & TCP_FLAG_SYN != 0 {
        // Inside connect(): the current task is the one connecting.
        let owner = current_owner(ctx);
        if owner.pid == agent_pid() || owner.pid == 0 {
            return;
        }
        if PLAIN_SOCKETS.insert(cookie, owner, 0).is_err() {
            count(Stat::PendingLost, EventKind::ClearText.slot());
        }
        return;
    }
    let Some(owner) = data_owner(ctx, start, cookie) else {
        return;
    };
    let flags = match captured(&owner) {
        Some(flags) => flags,
        None if llm_request_line(ctx, start) => {
            tls::promote(owner.pid);
            CLEAR_TEXT_FLAG_PROMOTED
        }
        None => {
            count(Stat::Filtered, EventKind::ClearText.slot());
            return;
        }
    };
    emit(
        ctx,
        &owner,
        cookie,
        flow,
        (start, seq),
        CLEAR_TEXT_SENT,
        flags,
    );
}

/// A segment a model server sends back to a process (`flow.sport`).
#[inline(always)]
pub(super) fn plain_ingress(ctx: &SkBuffContext, flow: &Flow) {
    if !family_on(FAMILY_LLM) {
        return;
    }
    let Some((seq, _, start)) = tcp_header(ctx, flow) else {
        return;
    };
    // SAFETY: the context is this program's `__sk_buff`.
    let cookie = unsafe { bpf_get_socket_cookie(ctx.as_ptr()) };
    let Some(owner) = data_owner(ctx, start, cookie) else {
        return;
    };
    let Some(flags) = captured(&owner) else {
        count(Stat::Filtered, EventKind::ClearText.slot());
        return;
    };
    emit(
        ctx,
        &owner,
        cookie,
        flow,
        (start, seq),
        CLEAR_TEXT_RECEIVED,
        flags,
    );
}

/// Sends one segment's data, from `data.0` (TCP sequence number `data.1`),
/// as a clear-text record of `owner`.
#[inline(always)]
fn emit(
    ctx: &SkBuffContext,
    owner: &DnsOwner,
    cookie: u64,
    flow: &Flow,
    data: (u32, u32),
    direction: u16,
    flags: u16,
) {
    let Some(mut entry) = reserve::<ClearTextRecord>(EventKind::ClearText) else {
        return;
    };
    let (start, seq) = data;
    let len = ctx.len().saturating_sub(start);
    let record = entry.as_mut_ptr();
    // SAFETY: `record` is a reservation sized for a `ClearTextRecord`; the
    // copy writes at most `CLEAR_TEXT_MAX` bytes into its `data`.
    unsafe {
        let copied = copy_bounded::<CLEAR_TEXT_MAX>(
            ctx,
            start,
            len.min(tls::capture_bytes()),
            (*record).data.as_mut_ptr(),
        );
        let mut flags = flags;
        if copied < len {
            flags |= CLEAR_TEXT_FLAG_TRUNCATED;
        }
        fill_owner_header(
            &raw mut (*record).header,
            EventKind::ClearText,
            flags,
            core::mem::size_of::<ClearTextRecord>(),
            owner,
        );
        (*record).connection = cookie;
        (*record).len = len;
        (*record).data_len = copied;
        (*record).direction = direction;
        (*record).source = CLEAR_TEXT_PLAIN;
        (*record).seq = seq;
        (*record).peer = if direction == CLEAR_TEXT_SENT {
            sock_addr(flow.family, flow.dport, flow.dst)
        } else {
            sock_addr(flow.family, flow.sport, flow.src)
        };
    }
    submit(entry);
}
