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
