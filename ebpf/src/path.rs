//! Resolving a `struct path` to its components by walking dentries.
//!
//! `bpf_d_path` is not allowed in tracepoints, so this follows `d_parent`
//! up to the mount root, then crosses to the parent mount through
//! `mount->mnt_mountpoint`, as `d_path` does. Components are written leaf
//! first (see [`KernelPath`]); the agent reverses them.

use aiwatch_common::{
    KernelPath, PATH_BUF_LEN, PATH_COMPONENT_MAX, PATH_FLAG_MISSING, PATH_FLAG_TRUNCATED,
    PATH_MAX_DEPTH,
};
use aya_ebpf::helpers::generated::bpf_probe_read_kernel_str;

use crate::{globals::offset, kernel::read_ptr};

/// Walks `path` (a kernel `struct path *`) into `out`.
///
/// # Safety
/// `out` must point to writable memory (a ring-buffer reservation or a map
/// value); `path` may be anything: reads are checked.
#[inline(always)]
pub unsafe fn walk(path: *const u8, out: *mut KernelPath) {
    unsafe {
        (*out).len = 0;
        (*out).depth = 0;
        (*out).flags = PATH_FLAG_MISSING;
        (*out)._pad = 0;
        if path.is_null() {
            return;
        }
        let mut dentry = read_ptr(path, offset!(path_dentry));
        let mut vfsmnt = read_ptr(path, offset!(path_mnt));
        let mount_mnt = offset!(mount_mnt);
        if dentry.is_null() || vfsmnt.is_null() || mount_mnt == 0 {
            return;
        }
        let mut mount = vfsmnt.sub(mount_mnt);
        let buf = (*out).buf.as_mut_ptr();
        let mut len: usize = 0;
        let mut depth: u16 = 0;
        let mut flags = PATH_FLAG_TRUNCATED;
        // Mount crossings use iterations too, hence the margin.
        for _ in 0..(PATH_MAX_DEPTH + 8) {
            let mnt_root = read_ptr(vfsmnt, offset!(vfsmount_mnt_root));
            let parent = read_ptr(dentry, offset!(dentry_d_parent));
            if dentry == mnt_root || dentry == parent || parent.is_null() {
                let mount_parent = read_ptr(mount, offset!(mount_mnt_parent));
                if mount_parent.is_null() || mount_parent == mount {
                    // The root of the mount namespace (or of a pseudo
                    // filesystem such as the one memfds live on).
                    flags = 0;
                    break;
                }
                dentry = read_ptr(mount, offset!(mount_mnt_mountpoint));
                mount = mount_parent;
                vfsmnt = mount.add(mount_mnt);
                continue;
            }
            if len > PATH_BUF_LEN - PATH_COMPONENT_MAX {
                break;
            }
            let name = read_ptr(dentry, offset!(dentry_d_name) + offset!(qstr_name));
            let copied = bpf_probe_read_kernel_str(
                buf.add(len) as *mut _,
                PATH_COMPONENT_MAX as u32,
                name as *const _,
            );
            if copied <= 0 {
                break;
            }
            len += copied as usize;
            depth += 1;
            dentry = parent;
        }
        (*out).len = len as u16;
        (*out).depth = depth;
        (*out).flags = flags;
    }
}
