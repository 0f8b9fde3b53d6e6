//! Reading kernel structs at offsets resolved from BTF by the agent.
//!
//! Every read goes through `bpf_probe_read_kernel` (see [`crate::plain`]),
//! so a bad pointer yields an error, never a fault, and these functions are
//! safe. Pointer arithmetic on kernel addresses wraps: the addresses are
//! never dereferenced directly, so no Rust provenance rule applies to them.
//! An unknown offset (`OFFSET_UNKNOWN`) means the field does not exist on
//! this kernel: callers treat the result as absent.

use aiwatch_common::OFFSET_UNKNOWN;
use aya_ebpf::helpers::bpf_get_current_task;

use crate::{
    globals::offset,
    plain::{read_kernel, Plain},
};

/// Reads a `T` at `base + off`. Fails on a null base, an unknown offset or
/// an unreadable address.
#[inline(always)]
pub fn read<T: Plain>(base: *const u8, off: usize) -> Result<T, i32> {
    if base.is_null() || off == OFFSET_UNKNOWN as usize {
        return Err(-1);
    }
    read_kernel(base.wrapping_add(off) as *const T)
}

/// Reads a pointer at `base + off`; null on failure.
#[inline(always)]
pub fn read_ptr(base: *const u8, off: usize) -> *const u8 {
    read::<*const u8>(base, off).unwrap_or_default()
}

/// `base + off`, the address of an embedded struct, or null when either is
/// unknown.
#[inline(always)]
pub fn field(base: *const u8, off: usize) -> *const u8 {
    if base.is_null() || off == OFFSET_UNKNOWN as usize {
        core::ptr::null()
    } else {
        base.wrapping_add(off)
    }
}

#[inline(always)]
pub fn current_task() -> *const u8 {
    // SAFETY: the helper takes no argument and returns the running task's
    // address, which is only ever read through checked copies.
    unsafe { bpf_get_current_task() as *const u8 }
}

/// The thread-group id of the parent process of `task`.
#[inline(always)]
pub fn parent_tgid(task: *const u8) -> u32 {
    let parent = read_ptr(task, offset!(task_real_parent));
    read::<u32>(parent, offset!(task_tgid)).unwrap_or(0)
}

#[inline(always)]
pub fn start_boottime(task: *const u8) -> u64 {
    read::<u64>(task, offset!(task_start_boottime)).unwrap_or(0)
}

/// The effective uid and gid of `task`.
#[inline(always)]
pub fn effective_ids(task: *const u8) -> (u32, u32) {
    let cred = read_ptr(task, offset!(task_cred));
    (
        read::<u32>(cred, offset!(cred_euid)).unwrap_or(u32::MAX),
        read::<u32>(cred, offset!(cred_egid)).unwrap_or(u32::MAX),
    )
}

/// Mount and pid namespace inode numbers of `task`.
#[inline(always)]
pub fn namespaces(task: *const u8) -> (u32, u32) {
    let nsproxy = read_ptr(task, offset!(task_nsproxy));
    let mnt_ns = read_ptr(nsproxy, offset!(nsproxy_mnt_ns));
    let pid_ns = read_ptr(nsproxy, offset!(nsproxy_pid_ns));
    (
        read::<u32>(mnt_ns, offset!(mnt_ns_inum)).unwrap_or(0),
        read::<u32>(pid_ns, offset!(pid_ns_inum)).unwrap_or(0),
    )
}

/// The inode number of `task`'s network namespace, or 0.
#[inline(always)]
pub fn net_ns(task: *const u8) -> u32 {
    let nsproxy = read_ptr(task, offset!(task_nsproxy));
    let net = read_ptr(nsproxy, offset!(nsproxy_net_ns));
    read::<u32>(net, offset!(net_ns_inum)).unwrap_or(0)
}

/// `task->mm`, null for kernel threads.
#[inline(always)]
pub fn mm(task: *const u8) -> *const u8 {
    read_ptr(task, offset!(task_mm))
}

/// Whether `task` is the last live thread of its process, read at exit.
#[inline(always)]
pub fn group_dead(task: *const u8) -> bool {
    let signal = read_ptr(task, offset!(task_signal));
    // `signal->live` is decremented before the exit tracepoint fires.
    match read::<i32>(signal, offset!(signal_live)) {
        Ok(live) => live == 0,
        // Unknown layout: report every exit of a thread-group leader.
        Err(_) => true,
    }
}

/// The `struct file *` behind descriptor `fd` of `task`, or null.
#[inline(always)]
pub fn file_of_fd(task: *const u8, fd: u32) -> *const u8 {
    let files = read_ptr(task, offset!(task_files));
    let fdt = read_ptr(files, offset!(files_fdt));
    let max_fds = read::<u32>(fdt, offset!(fdt_max_fds)).unwrap_or(0);
    if fd >= max_fds {
        return core::ptr::null();
    }
    let fds = read_ptr(fdt, offset!(fdt_fd));
    read_ptr(fds, fd as usize * size_of::<*const u8>())
}

/// `S_IFMT` bits of a file's inode mode, or 0 when unknown.
#[inline(always)]
pub fn file_type(file: *const u8) -> u16 {
    let inode = read_ptr(file, offset!(file_f_inode));
    read::<u16>(inode, offset!(inode_i_mode)).unwrap_or(0) & S_IFMT
}

pub const S_IFMT: u16 = 0o170000;
pub const S_IFSOCK: u16 = 0o140000;
