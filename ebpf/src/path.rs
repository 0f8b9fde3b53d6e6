//! Resolving a `struct path` to its components by walking dentries.
//!
//! `bpf_d_path` is not allowed in tracepoints, so this follows `d_parent`
//! up to the mount root, then crosses to the parent mount through
//! `mount->mnt_mountpoint`, as `d_path` does. Components are written leaf
//! first (see [`KernelPath`]); the agent reverses them.
//!
//! The walk runs under `bpf_loop`: the verifier checks one step once,
//! instead of every unrolled iteration and every mix of mount crossings.

use core::ffi::c_void;

use aiwatch_common::{
    KernelPath, OFFSET_UNKNOWN, PATH_BUF_LEN, PATH_COMPONENT_MAX, PATH_FLAG_MISSING,
    PATH_FLAG_TRUNCATED, PATH_MAX_DEPTH,
};
use aya_ebpf::{
    helpers::generated::{bpf_loop, bpf_probe_read_kernel, bpf_probe_read_kernel_str},
    macros::map,
    maps::PerCpuArray,
};

use crate::{diag, emit::current_tgid, globals::offset, kernel::read_ptr};

/// Where a walk is built before it is copied into its record.
#[map]
static PATH_SCRATCH: PerCpuArray<KernelPath> = PerCpuArray::with_max_entries(1, 0);

/// The walk's position, on the caller's stack, shared with each step.
#[repr(C)]
struct Walk {
    dentry: *const u8,
    vfsmnt: *const u8,
    mount: *const u8,
    /// `vfsmnt->mnt_root`, read once per mount rather than per component.
    mnt_root: *const u8,
    len: u32,
    depth: u32,
    flags: u32,
    /// Why the walk stopped (`STOP_*`); `STOP_LIMIT` until a step stops it.
    stop: u32,
}

/// The loop ran out of iterations: the path is deeper than the walk follows.
const STOP_LIMIT: u32 = 0;
/// The root of the mount namespace, or a pseudo filesystem's own dentry.
const STOP_ROOT: u32 = 1;
/// The buffer has no room for another component.
const STOP_ROOM: u32 = 2;
/// A name could not be read, or this kernel's layout is unknown.
const STOP_UNREADABLE: u32 = 3;

const UNKNOWN: usize = OFFSET_UNKNOWN as usize;

/// Walks `path` (a kernel `struct path *`) into `out`.
///
/// # Safety
/// `out` must point to writable memory (a ring-buffer reservation or a map
/// value); `path` may be anything: reads are checked.
#[inline(always)]
pub unsafe fn walk(path: *const u8, out: *mut KernelPath) {
    // SAFETY: the caller guarantees `out` is writable.
    unsafe {
        (*out).len = 0;
        (*out).depth = 0;
        (*out).flags = PATH_FLAG_MISSING;
        (*out)._pad = 0;
    }
    let mount_mnt = offset!(mount_mnt);
    if path.is_null() || mount_mnt == UNKNOWN {
        return;
    }
    let dentry = read_ptr(path, offset!(path_dentry));
    let vfsmnt = read_ptr(path, offset!(path_mnt));
    if dentry.is_null() || vfsmnt.is_null() {
        return;
    }
    let Some(scratch) = PATH_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let mut state = Walk {
        dentry,
        vfsmnt,
        mount: vfsmnt.wrapping_sub(mount_mnt),
        mnt_root: read_ptr(vfsmnt, offset!(vfsmount_mnt_root)),
        len: 0,
        depth: 0,
        flags: PATH_FLAG_TRUNCATED as u32,
        stop: STOP_LIMIT,
    };
    // SAFETY: `walk_step` has the callback signature bpf_loop expects, and
    // `state` outlives the call; the helper runs the callback synchronously.
    unsafe {
        // Mount crossings use iterations too, hence the margin.
        bpf_loop(
            PATH_MAX_DEPTH + 8,
            walk_step as *mut c_void,
            &raw mut state as *mut c_void,
            0,
        );
    }
    if state.len > 0 {
        // SAFETY: both buffers are `PATH_BUF_LEN` bytes: `out` is writable
        // (the caller's guarantee), `scratch` is this CPU's map value.
        unsafe {
            // A constant size keeps the verifier's bounds simple; the agent
            // reads only `len` bytes.
            bpf_probe_read_kernel(
                (*out).buf.as_mut_ptr() as *mut c_void,
                PATH_BUF_LEN as u32,
                (*scratch).buf.as_ptr() as *const c_void,
            );
        }
    }
    if state.stop == STOP_LIMIT || state.stop == STOP_ROOM {
        diag::path_cut(current_tgid(), state.depth, state.len);
    }
    // SAFETY: the caller guarantees `out` is writable.
    unsafe {
        (*out).len = state.len as u16;
        (*out).depth = state.depth as u16;
        (*out).flags = state.flags as u16;
    }
}

/// Copies the name of a parentless dentry unless it is the root's "/".
#[inline(always)]
fn copy_pseudo_name(state: &mut Walk, scratch: *mut KernelPath) {
    let (d_name, qstr_name) = (offset!(dentry_d_name), offset!(qstr_name));
    if d_name == UNKNOWN || qstr_name == UNKNOWN {
        return;
    }
    let name = read_ptr(state.dentry, d_name + qstr_name);
    // SAFETY: `scratch` is this CPU's map value, `PATH_BUF_LEN` bytes, and
    // the copy writes at most `PATH_COMPONENT_MAX` of them; the source is
    // read with a checked copy.
    unsafe {
        let copied = bpf_probe_read_kernel_str(
            (*scratch).buf.as_mut_ptr() as *mut c_void,
            PATH_COMPONENT_MAX as u32,
            name as *const c_void,
        );
        if copied > 1 && (*scratch).buf[0] != b'/' {
            state.len = copied as u32;
            state.depth = 1;
        }
    }
}

/// One step of the walk: returns 1 to stop, 0 to go on.
///
/// # Safety
/// `ctx` is the `Walk` that [`walk`] passed to `bpf_loop`.
unsafe extern "C" fn walk_step(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `walk` passes its own `Walk`, alive for the whole loop, and
    // nothing else refers to it while a step runs.
    let state = unsafe { &mut *(ctx as *mut Walk) };
    let Some(scratch) = PATH_SCRATCH.get_ptr_mut(0) else {
        state.stop = STOP_UNREADABLE;
        return 1;
    };
    let mount_mnt = offset!(mount_mnt);
    let parent = read_ptr(state.dentry, offset!(dentry_d_parent));
    if state.dentry == state.mnt_root || state.dentry == parent || parent.is_null() {
        let mount_parent = read_ptr(state.mount, offset!(mount_mnt_parent));
        if mount_parent.is_null() || mount_parent == state.mount {
            // The root of the mount namespace, or a pseudo filesystem's
            // own dentry: a memfd, pipe or socket is a parentless
            // dentry on an unattached mount. Its name ("memfd:x") is
            // the whole path, as `/proc/<pid>/exe` shows it; the real
            // root is named "/" and adds nothing.
            if state.depth == 0 && state.dentry == parent {
                copy_pseudo_name(state, scratch);
            }
            state.flags = 0;
            state.stop = STOP_ROOT;
            return 1;
        }
        state.dentry = read_ptr(state.mount, offset!(mount_mnt_mountpoint));
        state.mount = mount_parent;
        state.vfsmnt = mount_parent.wrapping_add(mount_mnt);
        state.mnt_root = read_ptr(state.vfsmnt, offset!(vfsmount_mnt_root));
        return 0;
    }
    let (d_name, qstr_name) = (offset!(dentry_d_name), offset!(qstr_name));
    if d_name == UNKNOWN || qstr_name == UNKNOWN {
        state.stop = STOP_UNREADABLE;
        return 1;
    }
    let len = state.len as usize;
    if len > PATH_BUF_LEN - PATH_COMPONENT_MAX {
        // Out of room: the path stays flagged truncated.
        state.stop = STOP_ROOM;
        return 1;
    }
    let name = read_ptr(state.dentry, d_name + qstr_name);
    // SAFETY: `scratch` is this CPU's map value of `PATH_BUF_LEN` bytes;
    // `len` leaves room for `PATH_COMPONENT_MAX` more (checked above). The
    // source is read with a checked copy.
    let copied = unsafe {
        bpf_probe_read_kernel_str(
            (*scratch).buf.as_mut_ptr().add(len) as *mut c_void,
            PATH_COMPONENT_MAX as u32,
            name as *const c_void,
        )
    };
    if copied <= 0 {
        state.stop = STOP_UNREADABLE;
        return 1;
    }
    state.len += copied as u32;
    state.depth += 1;
    state.dentry = parent;
    0
}
