//! Filling record headers and reserving ring-buffer space, with every
//! failure counted.

use aiwatch_common::{EventHeader, EventKind, Stat};
use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_uid_gid, bpf_ktime_get_boot_ns,
    },
    maps::ring_buf::RingBufEntry,
};

use crate::maps::{count, EVENTS};

/// `BPF_RB_NO_WAKEUP`, `BPF_RB_FORCE_WAKEUP` and `BPF_RB_AVAIL_DATA`.
const RB_NO_WAKEUP: u64 = 1;
const RB_FORCE_WAKEUP: u64 = 2;
const RB_AVAIL_DATA: u64 = 0;

/// Unread bytes in `EVENTS` past which a submit wakes the reader. Below
/// it nobody is woken: the agent drains the ring on a short timer
/// (`agent/src/ingest/reader.rs`). Waking the reader for every record costs an
/// interrupt and a context switch per event, which on a busy host (or a
/// virtual machine, where the interrupt is a VM exit) is most of an
/// event's cost.
const WAKEUP_BYTES: u64 = 512 * 1024;

/// Submits a reserved record, waking the reader only past `WAKEUP_BYTES`.
#[inline(always)]
pub fn submit<T>(entry: RingBufEntry<T>) {
    entry.submit(wakeup_flags());
}

/// Gives a reserved record back; never wakes the reader.
#[inline(always)]
pub fn discard<T>(entry: RingBufEntry<T>) {
    entry.discard(RB_NO_WAKEUP);
}

#[inline(always)]
fn wakeup_flags() -> u64 {
    if EVENTS.query(RB_AVAIL_DATA) >= WAKEUP_BYTES {
        RB_FORCE_WAKEUP
    } else {
        RB_NO_WAKEUP
    }
}

/// Reserves a record of type `T` for `kind`, or counts the loss.
#[inline(always)]
pub fn reserve<T: 'static>(kind: EventKind) -> Option<RingBufEntry<T>> {
    match EVENTS.reserve::<T>(0) {
        Some(entry) => Some(entry),
        None => {
            count(Stat::RingbufLost, kind.slot());
            None
        }
    }
}

/// Fills `header` from the current task.
///
/// # Safety
/// `header` must point to writable memory.
#[inline(always)]
pub unsafe fn fill_header(header: *mut EventHeader, kind: EventKind, flags: u16, size: usize) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    // SAFETY: the caller guarantees `header` is writable; the helpers take
    // no arguments.
    unsafe {
        (*header).kind = kind as u16;
        (*header).flags = flags;
        (*header).size = size as u32;
        (*header).ktime_ns = bpf_ktime_get_boot_ns();
        (*header).pid = (pid_tgid >> 32) as u32;
        (*header).tid = pid_tgid as u32;
        (*header).uid = uid_gid as u32;
        (*header).gid = (uid_gid >> 32) as u32;
        (*header).cgroup_id = bpf_get_current_cgroup_id();
        (*header).comm = bpf_get_current_comm().unwrap_or([0; 16]);
    }
}

/// The current thread-group id.
#[inline(always)]
pub fn current_tgid() -> u32 {
    (bpf_get_current_pid_tgid() >> 32) as u32
}
