//! File operations: open/openat/openat2, unlink/unlinkat,
//! rename/renameat/renameat2, chmod/fchmodat/fchmodat2 and truncate.
//!
//! These syscalls are frequent, so the entry handler decides cheaply who is
//! wanted: a process in `TRACKED_PIDS` or `TRACKED_CGROUPS` (or every
//! process when the agent sets `FILE_TRACE_ALL`), or else a path that
//! matches the interest sets (`PATH_PREFIXES`, `PATH_SUFFIXES`). Everything
//! else is counted as filtered and dropped before any ring-buffer work.
//!
//! A wanted call is remembered per thread (`file_pending.rs`) and
//! completed at syscall exit,
//! where the result is known: a successful open resolves the new fd's own
//! path and inode; anything else resolves the directory a relative name is
//! relative to (the cwd or the dirfd) and lets the agent join the two.

use core::{ffi::c_void, mem::size_of};

use aiwatch_common::{
    EventKind, ExeKey, FileAccessKey, FileRecord, KernelPath, Stat, FAMILY_FILE, FAMILY_GPU,
    FILE_FLAG_DIR_FOLDED, FILE_FLAG_INODE, FILE_FLAG_NAME_TRUNCATED, FILE_FLAG_PATH2_IS_DIR,
    FILE_FLAG_PATH2_SAME_DIR, FILE_FLAG_PATH_IS_DIR, FILE_FLAG_PATH_IS_FILE, FILE_FLAG_TRACKED,
    FILE_FLAG_UNCHECKED, NAME_LEN, PATH_FLAG_MISSING,
};
use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{bpf_probe_read_kernel, bpf_probe_read_user_str},
    },
    macros::tracepoint,
    programs::TracePointContext,
};

pub use super::file_pending::{forget_thread, mark_pending, note_device};
use super::{
    enforce,
    file_access::{self, Fold},
    file_interest::interesting,
    file_pending::{claim, pending_of, release, FilePending, FILE_SCRATCH},
    gpu,
};
use crate::{
    diag,
    emit::{fill_header, reserve, submit},
    globals::{agent_pid, family_on, floor, offset},
    kernel::{self, field, read, read_ptr},
    maps::{count, is_tracked},
    path,
    plain::read_user,
    syscall::{self, arg},
};

/// Report every process's file operations, not only tracked ones (the
/// `trace_all_files` setting). Written by the loader before verification.
#[unsafe(no_mangle)]
static FILE_TRACE_ALL: u32 = 0;

#[inline(always)]
fn trace_all() -> bool {
    // SAFETY: an aligned read of an immutable static the loader patches
    // before verification; volatile so the loader's value is used.
    unsafe { core::ptr::read_volatile(&raw const FILE_TRACE_ALL) != 0 }
}

/// `AT_FDCWD`: a relative name is relative to the cwd.
const AT_FDCWD: i32 = -100;
const O_ACCMODE: u32 = 0o3;
const O_CREAT: u32 = 0o100;
const O_TRUNC: u32 = 0o1000;
const S_IFMT: u32 = 0o170000;
pub const S_IFCHR: u32 = 0o020000;
pub const S_IFBLK: u32 = 0o060000;
/// Marks a `link` event made by `symlink`/`symlinkat` (in `mode`).
const S_IFLNK: u32 = 0o120000;

/// A syscall's arguments, as the entry handlers read them.
struct Args {
    kind: EventKind,
    dfd: i32,
    name: u64,
    dfd2: i32,
    /// User pointer of the second name (rename), or 0.
    name2: u64,
    flags: u32,
    mode: u32,
    length: i64,
}

impl Args {
    fn new(kind: EventKind, dfd: i32, name: u64) -> Args {
        Args {
            kind,
            dfd,
            name,
            dfd2: AT_FDCWD,
            name2: 0,
            flags: 0,
            mode: 0,
            length: 0,
        }
    }
}

// ---- entry handlers -------------------------------------------------------

#[tracepoint(category = "syscalls", name = "sys_enter_open")]
pub fn sys_enter_open(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    let mut args = Args::new(EventKind::Open, AT_FDCWD, arg(&ctx, 0));
    args.flags = arg(&ctx, 1) as u32;
    args.mode = arg(&ctx, 2) as u32;
    enter(&args);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_openat")]
pub fn sys_enter_openat(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    let mut args = Args::new(EventKind::Open, arg(&ctx, 0) as i32, arg(&ctx, 1));
    args.flags = arg(&ctx, 2) as u32;
    args.mode = arg(&ctx, 3) as u32;
    enter(&args);
    0
}

/// `struct open_how`: flags, mode, resolve (all u64).
type OpenHow = [u64; 3];

#[tracepoint(category = "syscalls", name = "sys_enter_openat2")]
pub fn sys_enter_openat2(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    let mut args = Args::new(EventKind::Open, arg(&ctx, 0) as i32, arg(&ctx, 1));
    if let Ok([flags, mode, _resolve]) = read_user(arg(&ctx, 2) as *const OpenHow) {
        args.flags = flags as u32;
        args.mode = mode as u32;
    }
    enter(&args);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_unlink")]
pub fn sys_enter_unlink(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    enter(&Args::new(EventKind::Unlink, AT_FDCWD, arg(&ctx, 0)));
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_unlinkat")]
pub fn sys_enter_unlinkat(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    let mut args = Args::new(EventKind::Unlink, arg(&ctx, 0) as i32, arg(&ctx, 1));
    args.flags = arg(&ctx, 2) as u32;
    enter(&args);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_rename")]
pub fn sys_enter_rename(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    let mut args = Args::new(EventKind::Rename, AT_FDCWD, arg(&ctx, 0));
    args.name2 = arg(&ctx, 1);
    enter(&args);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_renameat")]
pub fn sys_enter_renameat(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    let mut args = Args::new(EventKind::Rename, arg(&ctx, 0) as i32, arg(&ctx, 1));
    args.dfd2 = arg(&ctx, 2) as i32;
    args.name2 = arg(&ctx, 3);
    enter(&args);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_renameat2")]
pub fn sys_enter_renameat2(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    let mut args = Args::new(EventKind::Rename, arg(&ctx, 0) as i32, arg(&ctx, 1));
    args.dfd2 = arg(&ctx, 2) as i32;
    args.name2 = arg(&ctx, 3);
    args.flags = arg(&ctx, 4) as u32;
    enter(&args);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_link")]
pub fn sys_enter_link(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    let mut args = Args::new(EventKind::Link, AT_FDCWD, arg(&ctx, 0));
    args.name2 = arg(&ctx, 1);
    enter(&args);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_linkat")]
pub fn sys_enter_linkat(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    let mut args = Args::new(EventKind::Link, arg(&ctx, 0) as i32, arg(&ctx, 1));
    args.dfd2 = arg(&ctx, 2) as i32;
    args.name2 = arg(&ctx, 3);
    args.flags = arg(&ctx, 4) as u32;
    enter(&args);
    0
}

/// `symlink(target, linkpath)`: the target is text, kept as `name`.
#[tracepoint(category = "syscalls", name = "sys_enter_symlink")]
pub fn sys_enter_symlink(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    let mut args = Args::new(EventKind::Link, AT_FDCWD, arg(&ctx, 0));
    args.name2 = arg(&ctx, 1);
    args.mode = S_IFLNK;
    enter(&args);
    0
}

/// `symlinkat(target, newdfd, linkpath)`.
#[tracepoint(category = "syscalls", name = "sys_enter_symlinkat")]
pub fn sys_enter_symlinkat(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    let mut args = Args::new(EventKind::Link, AT_FDCWD, arg(&ctx, 0));
    args.dfd2 = arg(&ctx, 1) as i32;
    args.name2 = arg(&ctx, 2);
    args.mode = S_IFLNK;
    enter(&args);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_chmod")]
pub fn sys_enter_chmod(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    let mut args = Args::new(EventKind::Chmod, AT_FDCWD, arg(&ctx, 0));
    args.mode = arg(&ctx, 1) as u32;
    enter(&args);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_fchmodat")]
pub fn sys_enter_fchmodat(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    let mut args = Args::new(EventKind::Chmod, arg(&ctx, 0) as i32, arg(&ctx, 1));
    args.mode = arg(&ctx, 2) as u32;
    enter(&args);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_fchmodat2")]
pub fn sys_enter_fchmodat2(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    let mut args = Args::new(EventKind::Chmod, arg(&ctx, 0) as i32, arg(&ctx, 1));
    args.mode = arg(&ctx, 2) as u32;
    args.flags = arg(&ctx, 3) as u32;
    enter(&args);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_truncate")]
pub fn sys_enter_truncate(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    let mut args = Args::new(EventKind::Truncate, AT_FDCWD, arg(&ctx, 0));
    args.length = arg(&ctx, 1) as i64;
    enter(&args);
    0
}

/// The shared entry path: filter, then remember the call until its exit.
#[inline(always)]
fn enter(args: &Args) {
    if !family_on(FAMILY_FILE) {
        return;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if tgid == agent_pid() {
        return;
    }
    let tracked = trace_all() || is_tracked(tgid);
    // A tracked process's call is wanted whatever its names: it is built
    // in the thread's slot at once. Anything else is built in scratch
    // until the interest test has decided.
    let claimed = if tracked { claim(pid_tgid) } else { None };
    let Some(pending) = claimed.or_else(|| FILE_SCRATCH.get_ptr_mut(0)) else {
        return;
    };
    // SAFETY: the thread's claimed slot, or this CPU's scratch value: valid
    // while the program runs, and plain data (any bytes are valid); nothing
    // else writes either meanwhile (syscall entries do not nest, and the
    // slot is this thread's).
    let pending = unsafe { &mut *pending };
    let mut header_flags = if tracked { FILE_FLAG_TRACKED } else { 0 };
    // A read that may be folded at its exit needs no name there: it is
    // copied from the caller's memory only if the open is reported. (The
    // reported path of a successful open is the kernel's own, whatever the
    // name says by then.)
    let deferred = tracked && foldable(args.kind, args.flags);
    pending.name_ptr = if deferred { args.name } else { 0 };
    let name_len = if deferred {
        0
    } else {
        read_name(&mut pending.name, args.name)
    };
    let name2_len = if args.name2 != 0 {
        read_name(&mut pending.name2, args.name2)
    } else {
        0
    };
    if name_len >= NAME_LEN - 1 || name2_len >= NAME_LEN - 1 {
        header_flags |= FILE_FLAG_NAME_TRUNCATED;
    }
    if !tracked
        && !interesting(&pending.name, name_len)
        && !(name2_len > 0 && interesting(&pending.name2, name2_len))
    {
        // `cd /etc && echo x > cron.d/job`: a relative name says nothing
        // until its directory is known. Changes through one go to user
        // space, which resolves the path and keeps only what classifies.
        if !relative_change(args, pending, name_len, name2_len) {
            count(Stat::Filtered, args.kind.slot());
            return;
        }
        header_flags |= FILE_FLAG_UNCHECKED;
    }
    pending.kind = args.kind as u16;
    pending.header_flags = header_flags;
    pending.name_len = name_len as u16;
    pending.name2_len = name2_len as u16;
    pending.dfd = args.dfd;
    pending.dfd2 = args.dfd2;
    pending.flags = args.flags;
    pending.mode = args.mode;
    pending.length = args.length;
    pending.device_mode = 0;
    pending.device_rdev = 0;
    if claimed.is_some() {
        return;
    }
    pending.owner = pid_tgid;
    if let Some(slot) = claim(pid_tgid) {
        // SAFETY: the slot this thread just claimed and this CPU's scratch
        // value, both live map values of `size_of::<FilePending>()` bytes;
        // one helper copy, since a struct copy would pass through the
        // 512-byte stack.
        unsafe {
            bpf_probe_read_kernel(
                slot as *mut c_void,
                size_of::<FilePending>() as u32,
                &raw const *pending as *const c_void,
            )
        };
    } else {
        count(Stat::PendingLost, args.kind.slot());
        diag::pending_full(tgid, args.kind);
    }
}

/// Whether the call changes a file through a relative name: an open for
/// writing, creating or truncating, or a rename or link to a relative
/// destination.
#[inline(always)]
fn relative_change(args: &Args, pending: &FilePending, name_len: usize, name2_len: usize) -> bool {
    match args.kind {
        EventKind::Open => {
            name_len > 0
                && pending.name[0] != b'/'
                && args.flags & (O_ACCMODE | O_CREAT | O_TRUNC) != 0
        }
        EventKind::Rename | EventKind::Link => name2_len > 0 && pending.name2[0] != b'/',
        _ => false,
    }
}

/// Copies a user string into `dst`; returns its length without the NUL, 0
/// on failure.
#[inline(always)]
fn read_name(dst: &mut [u8; NAME_LEN], src: u64) -> usize {
    // SAFETY: `dst` is `NAME_LEN` writable bytes and the helper writes at
    // most that many; the source is read with a checked copy.
    let copied = unsafe {
        bpf_probe_read_user_str(
            dst.as_mut_ptr() as *mut c_void,
            NAME_LEN as u32,
            src as *const c_void,
        )
    };
    if copied > 0 {
        (copied - 1) as usize
    } else {
        0
    }
}

// ---- exit handlers --------------------------------------------------------

macro_rules! exit_probe {
    ($name:ident, $tracepoint:literal) => {
        #[tracepoint(category = "syscalls", name = $tracepoint)]
        pub fn $name(ctx: TracePointContext) -> u32 {
            if floor() {
                return 0;
            }
            exit(&ctx);
            0
        }
    };
}

exit_probe!(sys_exit_open, "sys_exit_open");
exit_probe!(sys_exit_openat, "sys_exit_openat");
exit_probe!(sys_exit_openat2, "sys_exit_openat2");
exit_probe!(sys_exit_unlink, "sys_exit_unlink");
exit_probe!(sys_exit_unlinkat, "sys_exit_unlinkat");
exit_probe!(sys_exit_rename, "sys_exit_rename");
exit_probe!(sys_exit_renameat, "sys_exit_renameat");
exit_probe!(sys_exit_renameat2, "sys_exit_renameat2");
exit_probe!(sys_exit_link, "sys_exit_link");
exit_probe!(sys_exit_linkat, "sys_exit_linkat");
exit_probe!(sys_exit_symlink, "sys_exit_symlink");
exit_probe!(sys_exit_symlinkat, "sys_exit_symlinkat");
exit_probe!(sys_exit_chmod, "sys_exit_chmod");
exit_probe!(sys_exit_fchmodat, "sys_exit_fchmodat");
exit_probe!(sys_exit_fchmodat2, "sys_exit_fchmodat2");
exit_probe!(sys_exit_truncate, "sys_exit_truncate");

/// Completes a remembered call, found in one of the thread's two slots.
#[inline(always)]
fn exit(ctx: &TracePointContext) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(pending) = pending_of(pid_tgid) else {
        return;
    };
    // `long ret` at 16 in every `sys_exit_*` record.
    let ret = syscall::ret(ctx);
    // SAFETY: this thread's slot, valid while the program runs; only this
    // thread's exit frees it, after `emit` returns.
    unsafe { emit(pending, ret, (pid_tgid >> 32) as u32) };
    release(pending);
}

/// # Safety
/// `pending` points to a live `FilePending`.
#[inline(always)]
unsafe fn emit(pending: *mut FilePending, ret: i64, tgid: u32) {
    // SAFETY: `pending` is live (the caller's guarantee) and `record` is a
    // ring-buffer reservation sized for a `FileRecord`; the name copies are
    // `NAME_LEN` bytes between two `NAME_LEN` arrays.
    unsafe {
        let Some(kind) = EventKind::from_u16((*pending).kind) else {
            return;
        };
        let task = kernel::current_task();
        // A successful open: its file, inode and the enforcement verdict,
        // decided before anything else (the verdict may kill, once).
        let mut opened: Option<Opened> = None;
        let mut verdict = 0;
        let mut folded_dir: Option<FileAccessKey> = None;
        if kind == EventKind::Open && ret >= 0 {
            opened = Opened::read(task, ret as u32);
            if let Some(file) = &opened {
                if let Some(key) = file.key {
                    verdict = enforce::open_verdict(key);
                }
                if verdict == 0 && plain_read(pending) {
                    let Some(scratch) = FILE_SCRATCH.get_ptr_mut(0) else {
                        return;
                    };
                    match file_access::fold_read(file, tgid, &mut (*scratch).name, interesting) {
                        Fold::Counted => return,
                        Fold::Report(key) => folded_dir = Some(key),
                        Fold::Keep => {}
                    }
                }
            }
        }
        if (*pending).name_ptr != 0 {
            let name_len = read_name(&mut (*pending).name, (*pending).name_ptr);
            (*pending).name_len = name_len as u16;
            if name_len >= NAME_LEN - 1 {
                (*pending).header_flags |= FILE_FLAG_NAME_TRUNCATED;
            }
        }
        let Some(mut entry) = reserve::<FileRecord>(kind) else {
            return;
        };
        let record = entry.as_mut_ptr();
        fill_header(&raw mut (*record).header, kind, 0, size_of::<FileRecord>());
        let mut flags = (*pending).header_flags;
        (*record).ret = ret;
        (*record).size = 0;
        (*record).length = (*pending).length;
        (*record).flags = (*pending).flags;
        (*record).mode = (*pending).mode;
        (*record).i_mode = 0;
        (*record).rdev = 0;
        (*record).dir_dev = 0;
        (*record).dir_ino = 0;
        if let Some(key) = folded_dir {
            (*record).dir_dev = key.dev;
            (*record).dir_ino = key.dir_ino;
        }
        (*record).name_len = (*pending).name_len;
        (*record).name2_len = (*pending).name2_len;
        bpf_probe_read_kernel(
            (*record).name.as_mut_ptr() as *mut c_void,
            NAME_LEN as u32,
            (*pending).name.as_ptr() as *const c_void,
        );
        if (*pending).name2_len > 0 {
            bpf_probe_read_kernel(
                (*record).name2.as_mut_ptr() as *mut c_void,
                NAME_LEN as u32,
                (*pending).name2.as_ptr() as *const c_void,
            );
        }

        if folded_dir.is_some() {
            flags |= FILE_FLAG_DIR_FOLDED;
        }
        let relative = (*pending).name_len > 0 && (*pending).name[0] != b'/';
        // The opened file itself when the open succeeded; else the
        // directory of a relative name; else nothing.
        let mut target: *const u8 = core::ptr::null();
        if kind == EventKind::Open && ret >= 0 {
            if let Some(file) = &opened {
                target = field(file.file, offset!(file_f_path));
                if !target.is_null() {
                    flags |= FILE_FLAG_PATH_IS_FILE;
                }
                (*record).i_mode = file.i_mode as u32;
                (*record).rdev = file.rdev;
                (*record).size = file.size;
                flags |= FILE_FLAG_INODE;
                if family_on(FAMILY_GPU) && (file.i_mode as u32) & S_IFMT == S_IFCHR {
                    gpu::remember_fd(tgid, ret as u32, file.rdev);
                }
                flags |= verdict;
            } else {
                let file = kernel::file_of_fd(task, ret as u32);
                target = field(file, offset!(file_f_path));
                if !target.is_null() {
                    flags |= FILE_FLAG_PATH_IS_FILE;
                }
            }
        } else if kind == EventKind::Open && (*pending).device_mode != 0 {
            // A failed open of a device node: the device the kernel's
            // device check saw (the agent never stats paths).
            (*record).i_mode = (*pending).device_mode;
            (*record).rdev = (*pending).device_rdev;
            flags |= FILE_FLAG_INODE;
        }
        if target.is_null() && relative {
            target = dir_path(task, (*pending).dfd);
            if !target.is_null() {
                flags |= FILE_FLAG_PATH_IS_DIR;
            }
        }
        path::walk(target, &raw mut (*record).path);
        if (*record).path.flags & PATH_FLAG_MISSING != 0 {
            flags &= !(FILE_FLAG_PATH_IS_FILE | FILE_FLAG_PATH_IS_DIR);
        }

        let relative2 = (*pending).name2_len > 0 && (*pending).name2[0] != b'/';
        let mut target2: *const u8 = core::ptr::null();
        if relative2 {
            if (*pending).dfd2 == (*pending).dfd && flags & FILE_FLAG_PATH_IS_DIR != 0 {
                flags |= FILE_FLAG_PATH2_SAME_DIR;
            } else {
                target2 = dir_path(task, (*pending).dfd2);
            }
        }
        if target2.is_null() {
            mark_missing(&raw mut (*record).path2);
        } else {
            path::walk(target2, &raw mut (*record).path2);
            if (*record).path2.flags & PATH_FLAG_MISSING == 0 {
                flags |= FILE_FLAG_PATH2_IS_DIR;
            }
        }
        (*record).header.flags = flags;
        submit(entry);
    }
}

/// What the exit of a successful open reads of the new file, once: the
/// `struct file`'s inode and dentry, the inode's mode, device number and
/// size, and the file's device and inode, each read once (the enforcement
/// verdict and the fold share them).
pub struct Opened {
    pub file: *const u8,
    pub dentry: *const u8,
    pub i_mode: u16,
    pub rdev: u32,
    pub size: i64,
    /// Device and inode number, when the superblock could be read.
    pub key: Option<ExeKey>,
}

impl Opened {
    /// The file behind `fd` of `task`; `None` when its inode cannot be read.
    #[inline(always)]
    fn read(task: *const u8, fd: u32) -> Option<Opened> {
        let file = kernel::file_of_fd(task, fd);
        let inode = read_ptr(file, offset!(file_f_inode));
        let i_mode = read::<u16>(inode, offset!(inode_i_mode)).ok()?;
        let sb = read_ptr(inode, offset!(inode_i_sb));
        let key = match (
            read::<u64>(inode, offset!(inode_i_ino)),
            read::<u32>(sb, offset!(super_block_s_dev)),
        ) {
            (Ok(ino), Ok(dev)) => Some(ExeKey { dev, _pad: 0, ino }),
            _ => None,
        };
        Some(Opened {
            file,
            dentry: read_ptr(field(file, offset!(file_f_path)), offset!(path_dentry)),
            i_mode,
            rdev: read::<u32>(inode, offset!(inode_i_rdev)).unwrap_or(0),
            size: read::<i64>(inode, offset!(inode_i_size)).unwrap_or(0),
            key,
        })
    }
}

/// A tracked process's open for reading only, which may be folded into its
/// directory's counter (`probes/file_access.rs`). Everything reported
/// because every process's files are (`trace_all_files`) stays one by one.
///
/// # Safety
/// `pending` points to a live `FilePending`.
#[inline(always)]
unsafe fn plain_read(pending: *const FilePending) -> bool {
    // SAFETY: the caller guarantees `pending` is live.
    let (header_flags, open_flags) = unsafe { ((*pending).header_flags, (*pending).flags) };
    header_flags & FILE_FLAG_TRACKED != 0 && foldable(EventKind::Open, open_flags)
}

/// Whether a tracked process's call of `kind` with open `flags` may be
/// folded: an open for reading only, unless every file is reported.
#[inline(always)]
fn foldable(kind: EventKind, flags: u32) -> bool {
    kind == EventKind::Open && !trace_all() && flags & (O_ACCMODE | O_CREAT | O_TRUNC) == 0
}

/// The `struct path *` a relative name is resolved against: the cwd for
/// `AT_FDCWD`, else the dirfd's file path.
#[inline(always)]
fn dir_path(task: *const u8, dfd: i32) -> *const u8 {
    if dfd == AT_FDCWD {
        let fs = read_ptr(task, offset!(task_fs));
        field(fs, offset!(fs_pwd))
    } else if dfd >= 0 {
        field(kernel::file_of_fd(task, dfd as u32), offset!(file_f_path))
    } else {
        core::ptr::null()
    }
}

/// # Safety
/// `out` points to writable memory.
#[inline(always)]
pub unsafe fn mark_missing(out: *mut KernelPath) {
    // SAFETY: the caller guarantees `out` is writable.
    unsafe {
        (*out).len = 0;
        (*out).depth = 0;
        (*out).flags = PATH_FLAG_MISSING;
        (*out)._pad = 0;
    }
}
