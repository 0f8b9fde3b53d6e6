//! Folding a tracked process's plain reads into per-directory counters.
//!
//! A data loader opens hundreds of thousands of distinct files; a full event
//! with a path walk for each is what made tracked opens expensive. Here a
//! successful read-only open of a regular file by a tracked process is
//! counted in `FILE_ACCESS` instead of reported, when:
//! - the agent has put the process's directory (by device and inode, so a
//!   rename cannot leave the key stale) in `FILE_ACCESS`, which it does
//!   after the full event of the first such open there, and only for a
//!   directory no asset path can lie in;
//! - the file's own name (the dentry's, so a symbolic link cannot hide a
//!   `.safetensors` behind another name) is not of interest.
//!
//! Writes, truncations, renames, unlinks, device opens and anything the
//! enforcement hooks decided on are never folded. The agent reads the
//! counters periodically and reports their growth as `file_access`.

use core::{ffi::c_void, mem::size_of};

use aiwatch_common::{EventKind, FileAccessKey, FileAccessRecord, NAME_LEN};
use aya_ebpf::{
    helpers::{bpf_ktime_get_boot_ns, generated::bpf_probe_read_kernel_str},
    macros::map,
    maps::PerCpuHashMap,
};

use crate::{
    emit::fill_header,
    globals::offset,
    kernel::{field, read, read_ptr},
};

/// Per process and directory, per CPU (no atomics: threads on other CPUs
/// never share a slot); the agent sums the CPUs. Only the agent inserts:
/// a directory is folded once it says so. A full map only means the agent's
/// insert fails and the opens stay full events.
#[map]
static FILE_ACCESS: PerCpuHashMap<FileAccessKey, FileAccessRecord> =
    PerCpuHashMap::with_max_entries(16384, 0);

const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;

/// What became of a read-only open.
pub enum Fold {
    /// Counted in `FILE_ACCESS`: no event.
    Counted,
    /// Not folded; the directory's key, for the agent to fold it.
    Report(FileAccessKey),
    /// Not folded, and not foldable (not a regular file, a name of
    /// interest, a directory the kernel cannot identify).
    Keep,
}

/// Folds the open of `file` (whose inode is `inode` and mode `i_mode`) by
/// `tgid` if its directory is folded and its name is not of interest.
/// `name_buf` is scratch space for the dentry's name.
#[inline(always)]
pub fn fold_read(
    file: *const u8,
    inode: *const u8,
    i_mode: u32,
    tgid: u32,
    name_buf: &mut [u8; NAME_LEN],
    interesting: impl Fn(&[u8; NAME_LEN], usize) -> bool,
) -> Fold {
    if i_mode & S_IFMT != S_IFREG {
        return Fold::Keep;
    }
    let dentry = read_ptr(field(file, offset!(file_f_path)), offset!(path_dentry));
    let parent = read_ptr(dentry, offset!(dentry_d_parent));
    let dir_inode = read_ptr(parent, offset!(dentry_d_inode));
    let Ok(dir_ino) = read::<u64>(dir_inode, offset!(inode_i_ino)) else {
        return Fold::Keep;
    };
    let sb = read_ptr(dir_inode, offset!(inode_i_sb));
    let Ok(dev) = read::<u32>(sb, offset!(super_block_s_dev)) else {
        return Fold::Keep;
    };
    let key = FileAccessKey { tgid, dev, dir_ino };
    let Some(slot) = FILE_ACCESS.get_ptr_mut(&key) else {
        return Fold::Report(key);
    };
    let name = read_ptr(field(dentry, offset!(dentry_d_name)), offset!(qstr_name));
    if name.is_null() {
        return Fold::Keep;
    }
    // SAFETY: `name_buf` is `NAME_LEN` writable bytes and the helper writes
    // at most that many, NUL included; the source is a checked kernel read.
    let copied = unsafe {
        bpf_probe_read_kernel_str(
            name_buf.as_mut_ptr() as *mut c_void,
            NAME_LEN as u32,
            name as *const c_void,
        )
    };
    if copied <= 1 || interesting(name_buf, copied as usize - 1) {
        return Fold::Keep;
    }
    let size = read::<i64>(inode, offset!(inode_i_size)).unwrap_or(0);
    // SAFETY: `bpf_ktime_get_boot_ns` takes no argument.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    // SAFETY: this CPU's slot of a map value, valid while the program runs;
    // nothing else writes it meanwhile (syscall exits do not nest).
    unsafe {
        if (*slot).header.ktime_ns == 0 {
            // The slot was created zeroed by the agent: the process's
            // identity comes with its first counted read on this CPU.
            fill_header(
                &raw mut (*slot).header,
                EventKind::FileAccess,
                0,
                size_of::<FileAccessRecord>(),
            );
            (*slot).first_ns = now;
        }
        (*slot).count += 1;
        (*slot).bytes += size.max(0) as u64;
        (*slot).last_ns = now;
    }
    Fold::Counted
}
