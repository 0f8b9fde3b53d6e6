//! Where a file syscall waits between its entry and its exit: one of the
//! thread's two slots of `FILE_PENDING_SLOTS`, taken by a compare-and-swap
//! of its owner. The `cgroup/dev` and LSM programs, which run inside an open, add
//! what they decided to the waiting call here.

use core::intrinsics::{atomic_cxchg, AtomicOrdering};

use aiwatch_common::NAME_LEN;
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::map,
    maps::{Array, PerCpuArray},
};

/// What the entry handler saw, kept until the exit handler.
#[repr(C)]
pub struct FilePending {
    /// The `pid_tgid` of the thread whose call this is, 0 for a free slot
    /// of `FILE_PENDING_SLOTS`.
    pub(super) owner: u64,
    /// An `EventKind` number: an enum read back from a map could hold
    /// any bits, so it is stored as a number and checked at the exit.
    pub(super) kind: u16,
    /// `FILE_FLAG_TRACKED`, `FILE_FLAG_NAME_TRUNCATED` and `FILE_FLAG_UNCHECKED`.
    pub(super) header_flags: u16,
    pub(super) name_len: u16,
    pub(super) name2_len: u16,
    pub(super) dfd: i32,
    pub(super) dfd2: i32,
    pub(super) flags: u32,
    pub(super) mode: u32,
    pub(super) length: i64,
    /// The device the kernel's device check saw during the call (`S_IFCHR`
    /// or `S_IFBLK`, 0: none) and its number (`MKDEV` encoding): a failed
    /// open of a device node has no file to read them from.
    pub(super) device_mode: u32,
    pub(super) device_rdev: u32,
    /// The caller's address of `name` when its copy waits for the exit (a
    /// tracked process's read-only open, which is folded without it), else 0.
    pub(super) name_ptr: u64,
    pub(super) name: [u8; NAME_LEN],
    pub(super) name2: [u8; NAME_LEN],
}

/// Calls between their entry and exit, per thread: one of two slots of
/// the thread's id (`slots_of`), claimed by a compare-and-swap of its
/// `owner`. An array slot costs a few instructions where a hash insert,
/// lookup and delete cost some 300 ns per call, on every open of a
/// tracked process; and every call's record is a value of this one map,
/// so the verifier follows the exit's path walk once, not once per map.
/// A call finds both its slots held by other threads' calls only when
/// three threads whose ids share them are inside file syscalls at once:
/// its event is lost and counted (`Stat::PendingLost`).
#[map]
static FILE_PENDING_SLOTS: Array<FilePending> = Array::with_max_entries(PENDING_SLOTS, 0);

const PENDING_SLOTS: u32 = 8192;

/// The two slots of thread `pid_tgid`: its id modulo the size, and a
/// multiplicative hash of it, so that ids equal modulo the size part ways.
#[inline(always)]
fn slots_of(pid_tgid: u64) -> [u32; 2] {
    let tid = pid_tgid as u32;
    [
        tid % PENDING_SLOTS,
        (tid.wrapping_mul(0x9e37_79b1) >> 19) % PENDING_SLOTS,
    ]
}

/// Takes `slot` for `pid_tgid` if it is free or held by an earlier call of
/// the same thread whose exit never ran.
#[inline(always)]
fn take(slot: u32, pid_tgid: u64) -> Option<*mut FilePending> {
    let pending = FILE_PENDING_SLOTS.get_ptr_mut(slot)?;
    // SAFETY: `owner` is an aligned u64 in a live map value; the
    // compare-and-swap is the only way any thread takes a slot, so no two
    // calls hold one at once.
    let (previous, _) = unsafe {
        atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(
            &raw mut (*pending).owner,
            0,
            pid_tgid,
        )
    };
    (previous == 0 || previous == pid_tgid).then_some(pending)
}

/// One of the thread's slots for this call, or `None` when both are held.
#[inline(always)]
pub(super) fn claim(pid_tgid: u64) -> Option<*mut FilePending> {
    let [first, second] = slots_of(pid_tgid);
    take(first, pid_tgid).or_else(|| take(second, pid_tgid))
}

/// The slot of the current thread's pending call, if it has one.
#[inline(always)]
pub(super) fn pending_of(pid_tgid: u64) -> Option<*mut FilePending> {
    for slot in slots_of(pid_tgid) {
        let Some(pending) = FILE_PENDING_SLOTS.get_ptr_mut(slot) else {
            continue;
        };
        // SAFETY: an aligned read of a live map value; only this thread
        // writes its own id there or takes it away.
        if unsafe { core::ptr::read_volatile(&raw const (*pending).owner) } == pid_tgid {
            return Some(pending);
        }
    }
    None
}

/// Frees the current thread's pending call (`pending`, from [`pending_of`]).
#[inline(always)]
pub(super) fn release(pending: *mut FilePending) {
    // SAFETY: `pending` is this thread's slot, live while the program runs;
    // it is handed back by clearing its owner, after every read of it (the
    // compare-and-swap that takes it next orders after this store).
    unsafe { core::ptr::write_volatile(&raw mut (*pending).owner, 0) };
}

/// Frees the slots of an exiting thread whose call never reached its exit
/// (a thread killed inside a file syscall), so that it does not hold them
/// for others.
#[inline(always)]
pub fn forget_thread(pid_tgid: u64) {
    for slot in slots_of(pid_tgid) {
        if let Some(pending) = FILE_PENDING_SLOTS.get_ptr_mut(slot) {
            // SAFETY: as in `take`: only the owner's id is swapped for 0.
            unsafe {
                atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(
                    &raw mut (*pending).owner,
                    pid_tgid,
                    0,
                )
            };
        }
    }
}

/// Adds `flag` to the current thread's pending open: the `cgroup/dev` and
/// LSM programs run inside the open, between its entry and exit
/// tracepoints, so the event the exit builds says what they decided.
/// False when the entry kept no pending record.
#[inline(always)]
pub fn mark_pending(flag: u16) -> bool {
    match pending_of(bpf_get_current_pid_tgid()) {
        Some(pending) => {
            // SAFETY: `pending` points into a live map value, valid for this
            // program run; only this thread's syscall uses it.
            unsafe { (*pending).header_flags |= flag };
            true
        }
        None => false,
    }
}

/// Notes on the current thread's pending open the device the `cgroup/dev`
/// program was asked about (`mode`: `S_IFCHR` or `S_IFBLK`), so that a
/// failed open of a device node still says which device it was: the check
/// runs inside the open, before the driver's open can fail. Nothing when
/// the entry kept no pending record.
#[inline(always)]
pub fn note_device(mode: u32, major: u32, minor: u32) {
    if let Some(pending) = pending_of(bpf_get_current_pid_tgid()) {
        // SAFETY: `pending` points into a live map value, valid for this
        // program run; only this thread's syscall uses its entry.
        unsafe {
            (*pending).device_mode = mode;
            (*pending).device_rdev = (major << 20) | (minor & 0xf_ffff);
        }
    }
}

/// Where a pending value is built: too big for the stack.
#[map]
pub(super) static FILE_SCRATCH: PerCpuArray<FilePending> = PerCpuArray::with_max_entries(1, 0);
