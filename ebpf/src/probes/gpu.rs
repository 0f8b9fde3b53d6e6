//! Accelerator use: per-process counts of ioctl calls on GPU device fds.
//!
//! GPU drivers are driven through ioctls, thousands per second, so they are
//! counted in the kernel instead of reported one by one. The file family's
//! open exit handler records `(tgid, fd)` in `GPU_FDS` when the opened inode
//! is a character device whose major is in `GPU_MAJORS` (set by the agent).
//! `sys_enter_ioctl` then costs one hash lookup for every other fd, and one
//! add for a GPU fd. The agent reads `GPU_IOCTLS` periodically and reports
//! the growth; it also removes the entries of exited processes.
//!
//! `close` is not hooked: a syscall tracepoint costs every call of that
//! syscall on the host, and `close` is among the most frequent. A closed GPU
//! fd's entry stays until the LRU map drops it; if the number is reused,
//! the first ioctl on it finds a different device behind it and removes the
//! entry (one fd-table walk, for GPU entries only).

use core::mem::size_of;

use aiwatch_common::{EventKind, GpuIoctlRecord, FAMILY_GPU};
use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{map, tracepoint},
    maps::{HashMap, LruHashMap, LruPerCpuHashMap},
    programs::TracePointContext,
};

use crate::{
    emit::fill_header,
    globals::{floor, offset},
    kernel::{self, read, read_ptr},
    syscall,
};

/// Character device majors that are accelerators (value unused).
#[map]
static GPU_MAJORS: HashMap<u32, u32> = HashMap::with_max_entries(64, 0);

/// Whether character device major `major` is an accelerator.
#[inline(always)]
pub fn is_accelerator(major: u32) -> bool {
    // SAFETY: only the presence of the entry is used.
    unsafe { GPU_MAJORS.get(major) }.is_some()
}

/// Open GPU fds: `tgid << 32 | fd` → the device (kernel `dev_t`). LRU, so
/// fds of processes that exited without closing them age out.
#[map]
static GPU_FDS: LruHashMap<u64, u32> = LruHashMap::with_max_entries(16384, 0);

/// Per-process ioctl counters, per CPU (threads on other CPUs never share a
/// slot, so no atomics); the agent sums the CPUs. The header is filled at
/// the first ioctl on each CPU.
#[map]
static GPU_IOCTLS: LruPerCpuHashMap<u32, GpuIoctlRecord> =
    LruPerCpuHashMap::with_max_entries(4096, 0);

/// `BPF_NOEXIST`.
const NOEXIST: u64 = 1;

#[inline(always)]
fn fd_key(tgid: u32, fd: u32) -> u64 {
    ((tgid as u64) << 32) | fd as u64
}

/// Remembers `fd` of `tgid` when `rdev` is an accelerator (called by the
/// open exit handler for character devices).
#[inline(always)]
pub fn remember_fd(tgid: u32, fd: u32, rdev: u32) {
    let major = rdev >> 20;
    // SAFETY: only the presence of the entry is used, never the value.
    if unsafe { GPU_MAJORS.get(major) }.is_none() {
        return;
    }
    let _ = GPU_FDS.insert(fd_key(tgid, fd), rdev, 0);
}

/// The device number behind `fd` of the current task, if it is an inode.
#[inline(always)]
fn device_of_fd(fd: u32) -> Option<u32> {
    let file = kernel::file_of_fd(kernel::current_task(), fd);
    let inode = read_ptr(file, offset!(file_f_inode));
    read::<u32>(inode, offset!(inode_i_rdev)).ok()
}

#[tracepoint(category = "syscalls", name = "sys_enter_ioctl")]
pub fn sys_enter_ioctl(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    if !family_on_gpu() {
        return 0;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    let fd = syscall::arg(&ctx, 0) as u32;
    // SAFETY: the value is copied out at once; a concurrent update can only
    // make it stale, which the device check below catches.
    let Some(rdev) = (unsafe { GPU_FDS.get(fd_key(tgid, fd)) }).copied() else {
        return 0;
    };
    if device_of_fd(fd) != Some(rdev) {
        // The GPU fd was closed and its number reused (close is not hooked).
        let _ = GPU_FDS.remove(fd_key(tgid, fd));
        return 0;
    }
    if add_one(tgid) {
        return 0;
    }
    // First ioctl of this process: a new counter, with its identity.
    // SAFETY: an all-zero record is valid: integers and integer arrays.
    let mut record: GpuIoctlRecord = unsafe { core::mem::zeroed() };
    // SAFETY: `record` is a local, writable.
    unsafe {
        fill_header(
            &raw mut record.header,
            EventKind::GpuIoctl,
            0,
            size_of::<GpuIoctlRecord>(),
        );
    }
    record.count = 1;
    record.rdev = rdev;
    if GPU_IOCTLS.insert(tgid, &record, NOEXIST).is_err() {
        // Created on another CPU in between: this CPU's slot exists now.
        add_one(tgid);
    }
    0
}

/// Adds one to `tgid`'s counter if it exists.
#[inline(always)]
fn add_one(tgid: u32) -> bool {
    match GPU_IOCTLS.get_ptr_mut(tgid) {
        Some(counter) => {
            // SAFETY: this CPU's slot of a map value; nothing else writes it
            // while this program runs (tracepoint programs do not nest here).
            unsafe {
                if (*counter).header.ktime_ns == 0 {
                    // The slot was created zeroed by an insert on another CPU.
                    fill_header(
                        &raw mut (*counter).header,
                        EventKind::GpuIoctl,
                        0,
                        size_of::<GpuIoctlRecord>(),
                    );
                }
                (*counter).count += 1;
            }
            true
        }
        None => false,
    }
}

#[inline(always)]
fn family_on_gpu() -> bool {
    crate::globals::family_on(FAMILY_GPU)
}
