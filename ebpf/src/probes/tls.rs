//! LLM traffic: the clear text of TLS library calls, taken by uprobes on
//! OpenSSL's `SSL_write`, `SSL_write_ex`, `SSL_read` and `SSL_read_ex` in
//! every libssl the agent attaches them to.
//!
//! Who is captured:
//! - tracked processes (`TRACKED_PIDS`/`TRACKED_CGROUPS`) and the processes
//!   of the configured capture list (`CAPTURE_PIDS`): every call, a bounded
//!   copy of its bytes;
//! - every other process: only the first bytes of each write are looked at,
//!   here, against the LLM API request lines of `LLM_PATHS`
//!   (`POST /v1/chat/completions`, ...). A match tracks the process at once
//!   (so that the request's body, often a separate write, and the response
//!   are captured in full) and that write is sent. Any other clear text of
//!   an untracked process never leaves the kernel; it is counted as
//!   filtered.
//!
//! Writes are copied at entry: the buffer holds what is about to be sent.
//! Reads are copied at return, from the buffer saved per thread at entry
//! (`READS`), for as many bytes as the call returned (`SSL_read`) or stored
//! through its out-pointer (`SSL_read_ex`).

use core::{ffi::c_void, mem::size_of};

use aiwatch_common::{
    ClearTextRecord, EventKind, SockAddr, Stat, CLEAR_TEXT_FLAG_LISTED, CLEAR_TEXT_FLAG_PROMOTED,
    CLEAR_TEXT_FLAG_TRUNCATED, CLEAR_TEXT_MAX, CLEAR_TEXT_RECEIVED, CLEAR_TEXT_SENT,
    CLEAR_TEXT_TLS, FAMILY_LLM, LLM_PATH_KEY_LEN, TRACKING_PIDS, TRACK_FULL,
};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated},
    macros::{map, uprobe, uretprobe},
    maps::{lpm_trie::Key, HashMap, LpmTrie, LruHashMap},
    programs::{ProbeContext, RetProbeContext},
};

use crate::{
    emit::{current_tgid, fill_header, reserve, submit},
    globals::{agent_pid, family_on, floor, offset},
    kernel::read_ptr,
    maps::{count, is_tracked, TRACKED_PIDS, TRACKING},
    probes::net,
};

/// Bytes of each call copied into a record, at most `CLEAR_TEXT_MAX`
/// (the `llm_capture.capture_bytes` setting). Written by the loader.
#[unsafe(no_mangle)]
static CLEAR_TEXT_CAPTURE: u32 = CLEAR_TEXT_MAX as u32;

/// LLM API request lines ("POST /v1/chat/completions"), matched as byte
/// prefixes of an untracked process's writes (value unused). Filled by the
/// agent from `llm_capture.request_lines`.
#[map]
static LLM_PATHS: LpmTrie<[u8; LLM_PATH_KEY_LEN], u32> =
    LpmTrie::with_max_entries(256, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

/// Processes (tgid) whose clear text is captured though they are not
/// tracked: the configured capture list (value unused).
#[map]
static CAPTURE_PIDS: HashMap<u32, u32> = HashMap::with_max_entries(1024, 0);

/// The socket fd of each TLS connection, from `SSL_set_fd`: `[tgid, SSL *]`
/// → fd, so that a record can carry the socket's peer. LRU: connections
/// are never seen closing.
#[map]
static SSL_FDS: LruHashMap<[u64; 2], u32> = LruHashMap::with_max_entries(65536, 0);

/// Each thread's last TCP connect's peer (`pid_tgid` → address), the peer
/// of TLS connections whose library never says which fd it uses (curl
/// reads and writes through a BIO of its own, without `SSL_set_fd`).
#[map]
static LAST_CONNECTS: LruHashMap<u64, SockAddr> = LruHashMap::with_max_entries(16384, 0);

/// Remembers a thread's TCP connect (from the network family's connect
/// exit).
#[inline(always)]
pub(crate) fn note_connect(pid_tgid: u64, remote: &SockAddr) {
    if family_on(FAMILY_LLM) {
        // A copy on the stack: `remote` is in a ring-buffer reservation,
        // which kernels before 6.2 or so refuse as a map update's value
        // ("R3 type=alloc_mem expected=fp, ..."). Volatile, so the copy is
        // not folded back into the original pointer.
        // SAFETY: `remote` is a valid reference to plain data.
        let remote: SockAddr = unsafe { core::ptr::read_volatile(remote) };
        let _ = LAST_CONNECTS.insert(pid_tgid, &remote, 0);
    }
}

/// A read in progress: its arguments, saved at entry for the return probe.
#[derive(Clone, Copy)]
#[repr(C)]
struct PendingRead {
    ssl: u64,
    buf: u64,
    /// `SSL_read_ex`'s `size_t *readbytes`; 0 for `SSL_read`.
    readbytes: u64,
    flags: u64,
}

/// Reads in progress, per thread (`pid_tgid`). LRU: an entry whose return
/// probe never ran (the thread died in the call) ages out.
#[map]
static READS: LruHashMap<u64, PendingRead> = LruHashMap::with_max_entries(16384, 0);

/// Whether clear text is wanted at all (the family is on and this is not
/// the floor or the agent itself).
#[inline(always)]
fn family_wanted(tgid: u32) -> bool {
    !floor() && family_on(FAMILY_LLM) && tgid != agent_pid()
}

/// The record flags of a process whose every call is captured, or `None`
/// when it is neither tracked nor listed.
#[inline(always)]
fn captured(tgid: u32) -> Option<u16> {
    if is_tracked(tgid) {
        Some(0)
    } else if is_listed(tgid) {
        Some(CLEAR_TEXT_FLAG_LISTED)
    } else {
        None
    }
}

/// Whether `tgid` is on the configured capture list.
#[inline(always)]
pub(super) fn is_listed(tgid: u32) -> bool {
    CAPTURE_PIDS.get_ptr(tgid).is_some()
}

/// Whether `key` (a write's first bytes) starts with a request line of
/// `LLM_PATHS`.
#[inline(always)]
pub(super) fn is_llm_path(key: Key<[u8; LLM_PATH_KEY_LEN]>) -> bool {
    LLM_PATHS.get(&key).is_some()
}

/// Bytes of each call or segment copied into a record (the capture size).
#[inline(always)]
pub(super) fn capture_bytes() -> u32 {
    // SAFETY: an aligned read of an immutable static the loader patches
    // before verification (see `globals::offset!`).
    unsafe { core::ptr::read_volatile(&raw const CLEAR_TEXT_CAPTURE) }
}

/// Whether the first bytes of `buf` (`len` long) are an LLM API request
/// line of `LLM_PATHS`.
#[inline(always)]
fn llm_request_line(buf: u64, len: u64) -> bool {
    // The shortest request line worth testing: "POST /x".
    if len < 7 {
        return false;
    }
    let mut key = Key::new(0, [0u8; LLM_PATH_KEY_LEN]);
    let dst = &raw mut key.data as *mut c_void;
    let bytes = if len < LLM_PATH_KEY_LEN as u64 {
        // Opaque to the compiler, so that the mask is kept for the
        // verifier, which needs it to bound the copy.
        core::hint::black_box(len as u32) & (LLM_PATH_KEY_LEN as u32 - 1)
    } else {
        LLM_PATH_KEY_LEN as u32
    };
    // SAFETY: `key.data` is `LLM_PATH_KEY_LEN` writable bytes and `bytes`
    // is at most that; the helper checks the user address.
    let read = unsafe { generated::bpf_probe_read_user(dst, bytes, buf as *const c_void) };
    if read != 0 || key.data[0] != b'P' {
        return false;
    }
    key.prefix_len = bytes * 8;
    is_llm_path(key)
}

/// Tracks the current process from this write on, as the agent would
/// (children inherit the entry at fork).
#[inline(always)]
pub(super) fn promote(tgid: u32) {
    // The flag first: readers skip the map while it is clear. The agent
    // clears it only once the map is empty, which this entry prevents.
    if let Some(flag) = TRACKING.get_ptr_mut(TRACKING_PIDS) {
        // SAFETY: `flag` points into an array value, valid while the
        // program runs; a racing writer stores the same value.
        unsafe { *flag = 1 };
    }
    let _ = TRACKED_PIDS.insert(tgid, TRACK_FULL, 0);
}

/// A write of `len` bytes at `buf` on `ssl`.
#[inline(always)]
fn write(ssl: u64, buf: u64, len: u64) {
    let tgid = current_tgid();
    if !family_wanted(tgid) || buf == 0 || len == 0 {
        return;
    }
    let flags = match captured(tgid) {
        Some(flags) => flags,
        None if llm_request_line(buf, len) => {
            promote(tgid);
            CLEAR_TEXT_FLAG_PROMOTED
        }
        None => {
            count(Stat::Filtered, EventKind::ClearText.slot());
            return;
        }
    };
    emit(ssl, buf, len, CLEAR_TEXT_SENT, flags);
}

/// Saves a read's arguments for its return probe, for captured processes.
#[inline(always)]
fn read_entry(ssl: u64, buf: u64, readbytes: u64) {
    let tgid = current_tgid();
    if !family_wanted(tgid) || buf == 0 {
        return;
    }
    let Some(flags) = captured(tgid) else {
        return;
    };
    let pending = PendingRead {
        ssl,
        buf,
        readbytes,
        flags: flags as u64,
    };
    if READS
        .insert(bpf_get_current_pid_tgid(), &pending, 0)
        .is_err()
    {
        count(Stat::PendingLost, EventKind::ClearText.slot());
    }
}

/// Takes the read saved at entry by this thread, if any.
#[inline(always)]
fn take_read() -> Option<PendingRead> {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the entry is removed.
    let pending = unsafe { READS.get(key) }.copied()?;
    let _ = READS.remove(key);
    Some(pending)
}

/// Sends a record of `len` bytes at `buf`, copying at most the capture size.
#[inline(always)]
fn emit(ssl: u64, buf: u64, len: u64, direction: u16, flags: u16) {
    let Some(mut entry) = reserve::<ClearTextRecord>(EventKind::ClearText) else {
        return;
    };
    let capture = u64::from(capture_bytes());
    let want = if len < capture { len } else { capture };
    let record = entry.as_mut_ptr();
    // SAFETY: `record` is a reservation sized for a `ClearTextRecord`; the
    // copy writes at most `CLEAR_TEXT_MAX` bytes into its `data` (the size
    // is that constant or masked below it), and the helper checks the user
    // address.
    unsafe {
        let dst = (*record).data.as_mut_ptr() as *mut c_void;
        let copied = if want >= CLEAR_TEXT_MAX as u64 {
            if generated::bpf_probe_read_user(dst, CLEAR_TEXT_MAX as u32, buf as *const c_void) == 0
            {
                CLEAR_TEXT_MAX as u32
            } else {
                0
            }
        } else {
            // Opaque to the compiler, which would drop the mask the
            // verifier needs to bound the copy.
            let n = core::hint::black_box(want as u32) & (CLEAR_TEXT_MAX as u32 - 1);
            if generated::bpf_probe_read_user(dst, n, buf as *const c_void) == 0 {
                n
            } else {
                0
            }
        };
        let mut flags = flags;
        if (copied as u64) < len {
            flags |= CLEAR_TEXT_FLAG_TRUNCATED;
        }
        fill_header(
            &raw mut (*record).header,
            EventKind::ClearText,
            flags,
            size_of::<ClearTextRecord>(),
        );
        (*record).connection = ssl;
        (*record).len = if len > u32::MAX as u64 {
            u32::MAX
        } else {
            len as u32
        };
        (*record).data_len = copied;
        (*record).direction = direction;
        (*record).source = CLEAR_TEXT_TLS;
        (*record).seq = 0;
        (*record).peer = SockAddr {
            family: 0,
            port: 0,
            _pad: 0,
            addr: [0; 16],
        };
        peer(ssl, &raw mut (*record).peer);
    }
    submit(entry);
}

/// Fills `peer` from the socket `SSL_set_fd` tied to `ssl`, or else from
/// the thread's last TCP connect.
///
/// # Safety
/// `peer` points to writable memory.
#[inline(always)]
unsafe fn peer(ssl: u64, peer: *mut SockAddr) {
    let key = [current_tgid() as u64, ssl];
    let Some(fd) = SSL_FDS.get_ptr(&key) else {
        if let Some(last) = LAST_CONNECTS.get_ptr(bpf_get_current_pid_tgid()) {
            // SAFETY: `last` points into a map value, valid while the
            // program runs; the caller vouches for `peer`.
            unsafe { *peer = *last };
        }
        return;
    };
    // SAFETY: `fd` points into a map value, valid while the program runs.
    let fd = unsafe { *fd };
    let socket = net::socket_of_fd(fd as u64);
    if socket.is_null() {
        return;
    }
    let sk = read_ptr(socket, offset!(socket_sk));
    if sk.is_null() {
        return;
    }
    let mut local = SockAddr {
        family: 0,
        port: 0,
        _pad: 0,
        addr: [0; 16],
    };
    // SAFETY: `local` is on this stack and the caller vouches for `peer`.
    unsafe { net::sock_addrs(sk, &mut local, peer) };
}

/// `int SSL_set_fd(SSL *ssl, int fd)`: remembers the connection's socket
/// for every process (it runs once per connection, before any request line
/// could track the process).
#[uprobe]
pub fn ssl_set_fd(ctx: ProbeContext) -> u32 {
    let tgid = current_tgid();
    if !family_wanted(tgid) {
        return 0;
    }
    let (ssl, fd) = (
        ctx.arg::<u64>(0).unwrap_or(0),
        ctx.arg::<i32>(1).unwrap_or(-1),
    );
    if ssl != 0 && fd >= 0 {
        let _ = SSL_FDS.insert([tgid as u64, ssl], fd as u32, 0);
    }
    0
}

/// `int SSL_write(SSL *ssl, const void *buf, int num)`.
#[uprobe]
pub fn ssl_write(ctx: ProbeContext) -> u32 {
    let (ssl, buf, num) = (
        ctx.arg::<u64>(0).unwrap_or(0),
        ctx.arg::<u64>(1).unwrap_or(0),
        ctx.arg::<i32>(2).unwrap_or(0),
    );
    if num > 0 {
        write(ssl, buf, u64::from(num as u32));
    }
    0
}

/// `int SSL_write_ex(SSL *ssl, const void *buf, size_t num, size_t *written)`.
#[uprobe]
pub fn ssl_write_ex(ctx: ProbeContext) -> u32 {
    write(
        ctx.arg::<u64>(0).unwrap_or(0),
        ctx.arg::<u64>(1).unwrap_or(0),
        ctx.arg::<u64>(2).unwrap_or(0),
    );
    0
}

/// `int SSL_read(SSL *ssl, void *buf, int num)`: the entry.
#[uprobe]
pub fn ssl_read(ctx: ProbeContext) -> u32 {
    read_entry(
        ctx.arg::<u64>(0).unwrap_or(0),
        ctx.arg::<u64>(1).unwrap_or(0),
        0,
    );
    0
}

/// `SSL_read`'s return: the number of bytes read, or <= 0.
#[uretprobe]
pub fn ssl_read_ret(ctx: RetProbeContext) -> u32 {
    let Some(pending) = take_read() else {
        return 0;
    };
    let ret: i32 = ctx.ret();
    if ret > 0 {
        emit(
            pending.ssl,
            pending.buf,
            u64::from(ret as u32),
            CLEAR_TEXT_RECEIVED,
            pending.flags as u16,
        );
    }
    0
}

/// `int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes)`:
/// the entry.
#[uprobe]
pub fn ssl_read_ex(ctx: ProbeContext) -> u32 {
    read_entry(
        ctx.arg::<u64>(0).unwrap_or(0),
        ctx.arg::<u64>(1).unwrap_or(0),
        ctx.arg::<u64>(3).unwrap_or(0),
    );
    0
}

/// `SSL_read_ex`'s return: 1 on success, with the count in `*readbytes`.
#[uretprobe]
pub fn ssl_read_ex_ret(ctx: RetProbeContext) -> u32 {
    let Some(pending) = take_read() else {
        return 0;
    };
    let ret: i32 = ctx.ret();
    if ret != 1 || pending.readbytes == 0 {
        return 0;
    }
    let Ok(len) = crate::plain::read_user(pending.readbytes as *const u64) else {
        return 0;
    };
    if len > 0 {
        emit(
            pending.ssl,
            pending.buf,
            len,
            CLEAR_TEXT_RECEIVED,
            pending.flags as u16,
        );
    }
    0
}
