//! File operations: open/openat/openat2, unlink/unlinkat,
//! rename/renameat/renameat2, chmod/fchmodat/fchmodat2 and truncate.
//!
//! These syscalls are frequent, so the entry handler decides cheaply who is
//! wanted: a process in `TRACKED_PIDS` or `TRACKED_CGROUPS` (or every
//! process when the agent sets `FILE_TRACE_ALL`), or else a path that
//! matches the interest sets (`PATH_PREFIXES`, `PATH_SUFFIXES`). Everything
//! else is counted as filtered and dropped before any ring-buffer work.
//!
//! A wanted call is remembered per thread in `FILE_PENDING` (built in a
//! per-CPU scratch value, not on the stack) and completed at syscall exit,
//! where the result is known: a successful open resolves the new fd's own
//! path and inode; anything else resolves the directory a relative name is
//! relative to (the cwd or the dirfd) and lets the agent join the two.

use core::{
    ffi::c_void,
    mem::{size_of, MaybeUninit},
};

use aiwatch_common::{
    suffix::{self, TailKeys},
    EventKind, FileAccessKey, FileRecord, KernelPath, Stat, SuffixKey, FAMILY_FILE, FAMILY_GPU,
    FILE_FLAG_DIR_FOLDED, FILE_FLAG_INODE, FILE_FLAG_NAME_TRUNCATED, FILE_FLAG_PATH2_IS_DIR,
    FILE_FLAG_PATH2_SAME_DIR, FILE_FLAG_PATH_IS_DIR, FILE_FLAG_PATH_IS_FILE, FILE_FLAG_TRACKED,
    FILE_FLAG_UNCHECKED, NAME_LEN, PATH_FLAG_MISSING, PREFIX_KEY_LEN, SUFFIX_BASENAME,
    SUFFIX_EXTENSION, SUFFIX_KEY_LEN,
};
use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{bpf_probe_read_kernel, bpf_probe_read_user_str},
    },
    macros::{map, tracepoint},
    maps::{lpm_trie::Key, Array, HashMap, PerCpuArray},
    programs::TracePointContext,
};

use crate::{
    diag,
    emit::{fill_header, reserve, submit},
    globals::{agent_pid, family_on, floor, offset},
    kernel::{self, field, read, read_ptr},
    maps::{
        count, filter_hit, is_tracked, pending_added, pending_any, pending_removed, tracking_epoch,
        PATH_PREFIXES, PATH_SUFFIXES, PENDING_FILE, PREFIX_FILTER, SUFFIX_FILTER,
    },
    path,
    plain::read_user,
    probes::{
        enforce,
        file_access::{self, Fold},
        gpu,
    },
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

/// What the entry handler saw, kept until the exit handler.
#[repr(C)]
pub struct FilePending {
    /// An [`EventKind`] number: an enum read back from a map could hold
    /// any bits, so it is stored as a number and checked at the exit.
    kind: u16,
    /// `FILE_FLAG_TRACKED`, `FILE_FLAG_NAME_TRUNCATED` and `FILE_FLAG_UNCHECKED`.
    header_flags: u16,
    name_len: u16,
    name2_len: u16,
    dfd: i32,
    dfd2: i32,
    flags: u32,
    mode: u32,
    length: i64,
    /// The device the kernel's device check saw during the call (`S_IFCHR`
    /// or `S_IFBLK`, 0: none) and its number (`MKDEV` encoding): a failed
    /// open of a device node has no file to read them from.
    device_mode: u32,
    device_rdev: u32,
    /// A read-only open's fold, decided with direct loads at its exit
    /// (`complete_read`): `FOLD_UNDECIDED`, `FOLD_KEEP`, or `FOLD_REPORT`
    /// with the directory's key in `fold_dev` and `fold_dir_ino`.
    fold: u32,
    fold_dev: u32,
    fold_dir_ino: u64,
    name: [u8; NAME_LEN],
    name2: [u8; NAME_LEN],
}

const FOLD_UNDECIDED: u32 = 0;
const FOLD_KEEP: u32 = 1;
const FOLD_REPORT: u32 = 2;

/// Calls between their entry and exit, per thread (`pid_tgid`).
#[map]
static FILE_PENDING: HashMap<u64, FilePending> = HashMap::with_max_entries(8192, 0);

/// A tracked process's read-only open between its entry and exit. Most of
/// them are folded into a counter (`probes/file_access.rs`), so the entry
/// copies nothing: the name is read from the caller's memory at the exit,
/// only when the open is reported. (The kernel itself copies the name
/// after the entry tracepoint, so a name read at entry was no more certain
/// to be the one opened than one read at exit.)
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ReadSlot {
    /// The thread in the call; 0 when the slot is free.
    tid: u32,
    header_flags: u16,
    _pad: u16,
    dfd: i32,
    flags: u32,
    mode: u32,
    device_mode: u32,
    device_rdev: u32,
    /// A thread of this slot found tracked (0: none), its process, and the
    /// agent's tracking epoch then: while all three still hold, the thread
    /// is tracked without asking the tracking maps (see `tracked`).
    memo_tid: u32,
    /// The user address of the name.
    name: u64,
    memo_tgid: u32,
    memo_epoch: u32,
}

/// Slots of `READ_SLOTS`, indexed by thread id modulo this.
const READ_SLOTS_LEN: u32 = 1 << 16;

/// One [`ReadSlot`] per thread id modulo `READ_SLOTS_LEN`: an array read,
/// which the verifier inlines, instead of a hash insert and delete. Two
/// threads in such an open at once whose ids share a slot lose the older
/// call, counted as `Stat::PendingLost`.
#[map]
static READ_SLOTS: Array<ReadSlot> = Array::with_max_entries(READ_SLOTS_LEN, 0);

/// The current thread's slot in `READ_SLOTS`, if it holds this thread's
/// call.
#[inline(always)]
fn own_read_slot(tid: u32) -> Option<*mut ReadSlot> {
    let slot = READ_SLOTS.get_ptr_mut(tid % READ_SLOTS_LEN)?;
    // SAFETY: a live array value, valid while the program runs.
    (unsafe { (*slot).tid } == tid).then_some(slot)
}

/// Adds `flag` to the current thread's pending open: the `cgroup/dev` and
/// LSM programs run inside the open, between its entry and exit
/// tracepoints, so the event the exit builds says what they decided.
/// False when the entry kept no pending record.
#[inline(always)]
pub fn mark_pending(flag: u16) -> bool {
    let pid_tgid = bpf_get_current_pid_tgid();
    if let Some(slot) = own_read_slot(pid_tgid as u32) {
        // SAFETY: `slot` points into a live map value, valid for this
        // program run; only this thread's syscall uses it.
        unsafe { (*slot).header_flags |= flag };
        return true;
    }
    if !pending_any(PENDING_FILE) {
        return false;
    }
    match FILE_PENDING.get_ptr_mut(pid_tgid) {
        Some(pending) => {
            // SAFETY: `pending` points into a live map value, valid for this
            // program run; only this thread's syscall uses its entry.
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
    let pid_tgid = bpf_get_current_pid_tgid();
    if let Some(slot) = own_read_slot(pid_tgid as u32) {
        // SAFETY: as in `mark_pending`.
        unsafe {
            (*slot).device_mode = mode;
            (*slot).device_rdev = (major << 20) | (minor & 0xf_ffff);
        }
        return;
    }
    if !pending_any(PENDING_FILE) {
        return;
    }
    if let Some(pending) = FILE_PENDING.get_ptr_mut(pid_tgid) {
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
static FILE_SCRATCH: PerCpuArray<FilePending> = PerCpuArray::with_max_entries(1, 0);

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
    let tracked = trace_all() || tracked(tgid, pid_tgid as u32);
    if args.kind == EventKind::Open && take_read_slot(args, pid_tgid as u32, tracked) {
        return;
    }
    let Some(pending) = FILE_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's scratch value, valid while the program runs, and
    // plain data (any bytes are valid); no other program on this CPU uses
    // it meanwhile (syscall entries do not nest).
    let pending = unsafe { &mut *pending };
    let mut header_flags = if tracked { FILE_FLAG_TRACKED } else { 0 };
    let name_len = read_name(&mut pending.name, args.name);
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
    pending.fold = FOLD_UNDECIDED;
    remember(pid_tgid, pending, args.kind);
}

/// Stores a call's pending value until its exit; false, counted and logged,
/// when the table is full.
#[inline(always)]
fn remember(pid_tgid: u64, pending: &FilePending, kind: EventKind) -> bool {
    if FILE_PENDING.insert(pid_tgid, pending, 0).is_ok() {
        pending_added(PENDING_FILE);
        true
    } else {
        count(Stat::PendingLost, kind.slot());
        diag::pending_full((pid_tgid >> 32) as u32, kind);
        false
    }
}

/// Whether the process `tgid` is tracked, asked by its thread `tid`.
///
/// A tracked thread is remembered in its `READ_SLOTS` slot, so that its
/// next calls skip the tracking maps' hash lookups (half of a tracked
/// entry's cost). Only "tracked" is remembered: an untracked thread asks
/// every time, so a process that becomes tracked is never missed. A memo
/// ends when its thread exits (`forget_thread`), or when the agent bumps
/// its tracking epoch after any write that may untrack a process; until
/// then a thread whose cgroup left its workload may keep full events,
/// never fewer. (With the process family off, thread exits are not
/// watched and memos end with the epoch only: again more events, never
/// fewer.)
#[inline(always)]
fn tracked(tgid: u32, tid: u32) -> bool {
    let Some(slot) = READ_SLOTS.get_ptr_mut(tid % READ_SLOTS_LEN) else {
        return is_tracked(tgid);
    };
    // Read before the maps: an agent write between the two then leaves a
    // memo stamped with the older epoch, which the next call discards.
    let epoch = tracking_epoch();
    // SAFETY: a live array value, valid while the program runs; a thread
    // whose id shares the slot may overwrite the memo, which only costs a
    // lookup (the memo names its thread).
    unsafe {
        if (*slot).memo_tid == tid && (*slot).memo_tgid == tgid && (*slot).memo_epoch == epoch {
            return true;
        }
        if !is_tracked(tgid) {
            return false;
        }
        (*slot).memo_tid = tid;
        (*slot).memo_tgid = tgid;
        (*slot).memo_epoch = epoch;
    }
    true
}

/// Ends the memo of thread `tid` being tracked: it exits, and its id may
/// be given to a thread of another process.
#[inline(always)]
pub fn forget_thread(tid: u32) {
    if let Some(slot) = READ_SLOTS.get_ptr_mut(tid % READ_SLOTS_LEN) {
        // SAFETY: a live array value, valid while the program runs.
        unsafe {
            if (*slot).memo_tid == tid {
                (*slot).memo_tid = 0;
            }
        }
    }
}

/// Keeps a tracked process's read-only open in its thread's `READ_SLOTS`
/// slot; true when it did. Any other open by a thread that holds the slot
/// frees it, so that an exit never finds a slot its entry did not write.
#[inline(always)]
fn take_read_slot(args: &Args, tid: u32, tracked: bool) -> bool {
    let Some(slot) = READ_SLOTS.get_ptr_mut(tid % READ_SLOTS_LEN) else {
        return false;
    };
    let read_only = foldable(tracked, args.flags);
    // SAFETY: a live array value, valid while the program runs; another
    // thread whose id shares the slot may write it meanwhile, which costs
    // one of the two calls (counted below, or found at its exit).
    unsafe {
        let holder = (*slot).tid;
        if !read_only {
            if holder == tid {
                (*slot).tid = 0;
            }
            return false;
        }
        if holder != 0 && holder != tid {
            // Another thread's open is in flight in this slot: it is lost.
            count(Stat::PendingLost, EventKind::Open.slot());
        }
        (*slot).tid = tid;
        (*slot).header_flags = FILE_FLAG_TRACKED;
        (*slot).dfd = args.dfd;
        (*slot).flags = args.flags;
        (*slot).mode = args.mode;
        (*slot).device_mode = 0;
        (*slot).device_rdev = 0;
        (*slot).name = args.name;
    }
    true
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

// ---- interest: path prefixes and suffixes ---------------------------------

/// Whether the first `len` bytes of `name` match an interest
/// prefix, extension or base name.
///
/// Nearly every name matches nothing, so each exact lookup sits behind a
/// two-byte bitmap (`PREFIX_FILTER`, `SUFFIX_FILTER`): an array read the
/// verifier inlines. The suffix keys are built without a loop, from the
/// name's last 16 bytes held in two registers (see [`tail_keys`]).
#[inline(always)]
fn interesting(name: &[u8; NAME_LEN], len: usize) -> bool {
    if len == 0 || len >= NAME_LEN {
        return false;
    }
    let name = name.as_ptr();
    // SAFETY: every byte read through `name` is at an index below
    // `NAME_LEN` (`len < NAME_LEN`, and the masks keep the verifier sure).
    unsafe {
        if *name == b'/' {
            // The two bytes after the slash, 0 past the end of the name.
            let first = if len > 1 { *name.add(1) } else { 0 };
            let second = if len > 2 { *name.add(2) } else { 0 };
            if filter_hit(&PREFIX_FILTER, first, second) && prefix_match(name, len) {
                return true;
            }
        }
        let last = *name.add((len - 1) & (NAME_LEN - 1));
        let before = if len > 1 {
            *name.add((len - 2) & (NAME_LEN - 1))
        } else {
            0
        };
        suffix_prefilter(last, before) && suffix_lookup(&tail_keys(name, len))
    }
}

/// Whether a base name (no '/') of `len` bytes is of interest, from its tail
/// as `aiwatch_common::suffix::tail_keys` takes it. For names read from a
/// dentry, which are never absolute.
#[inline(always)]
pub fn basename_interesting(low: u64, high: u64, len: usize, before_tail: u8) -> bool {
    if len == 0 {
        return false;
    }
    // The filter first, on the name's last two bytes (the one before is 0
    // for a one-byte name), as `interesting` does: building both keys is
    // most of the work, and nearly every name stops at the filter.
    let (last, before) = if len >= SUFFIX_KEY_LEN {
        ((high >> 56) as u8, (high >> 48) as u8)
    } else {
        let byte = |index: usize| {
            let word = if index < 8 { low } else { high };
            (word >> ((index & 7) * 8)) as u8
        };
        (byte(len - 1), if len > 1 { byte(len - 2) } else { 0 })
    };
    suffix_prefilter(last, before) && suffix_lookup(&suffix::tail_keys(low, high, len, before_tail))
}

/// Whether a name ending in `before`, `last` (0 when it has one byte) may
/// have an extension or base name of interest. Both keys start with those
/// two bytes (lower-cased in the extension's, cut short by a '/' or '.'):
/// when none of those spellings is in the filter, neither key needs
/// building.
#[inline(always)]
fn suffix_prefilter(last: u8, before: u8) -> bool {
    let (last_lower, before_lower) = (last.to_ascii_lowercase(), before.to_ascii_lowercase());
    filter_hit(&SUFFIX_FILTER, last, before)
        || filter_hit(&SUFFIX_FILTER, last, 0)
        || filter_hit(&SUFFIX_FILTER, last_lower, before_lower)
        || filter_hit(&SUFFIX_FILTER, last_lower, 0)
}

/// The `PATH_SUFFIXES` lookups of a name's extension and base-name keys.
#[inline(always)]
fn suffix_lookup(keys: &TailKeys) -> bool {
    if keys.extension_len > 0 {
        let extension = SuffixKey {
            kind: SUFFIX_EXTENSION,
            bytes: keys.extension,
        };
        // SAFETY: a hash lookup; only the entry's presence is used.
        if filter_hit(&SUFFIX_FILTER, extension.bytes[0], extension.bytes[1])
            && unsafe { PATH_SUFFIXES.get(&extension) }.is_some()
        {
            return true;
        }
    }
    let basename = SuffixKey {
        kind: SUFFIX_BASENAME,
        bytes: keys.basename,
    };
    // SAFETY: as above.
    filter_hit(&SUFFIX_FILTER, basename.bytes[0], basename.bytes[1])
        && unsafe { PATH_SUFFIXES.get(&basename) }.is_some()
}

/// The exact `PATH_PREFIXES` lookup of an absolute name.
///
/// # Safety
/// `name` points to `NAME_LEN` readable bytes.
#[inline(always)]
unsafe fn prefix_match(name: *const u8, len: usize) -> bool {
    let bytes = if len < PREFIX_KEY_LEN {
        len
    } else {
        PREFIX_KEY_LEN
    };
    // Not zeroed first: the compiler turns that into a call to a byte-wise
    // `memset` loop, which cost this hot path more than the lookup. The
    // helper writes every byte of `data` (zeros when the read fails).
    let mut key = MaybeUninit::<Key<[u8; PREFIX_KEY_LEN]>>::uninit();
    let key = key.as_mut_ptr();
    // SAFETY: `key` is a writable `Key` on the stack; `data` is
    // `PREFIX_KEY_LEN` bytes, fewer than the `NAME_LEN` the caller
    // guarantees at `name`; both fields are written before the lookup reads
    // the key.
    unsafe {
        (*key).prefix_len = (bytes * 8) as u32;
        bpf_probe_read_kernel(
            &raw mut (*key).data as *mut c_void,
            PREFIX_KEY_LEN as u32,
            name as *const c_void,
        );
        PATH_PREFIXES.get(&*key).is_some()
    }
}

/// Both suffix keys of the `len`-byte name at `name` (`0 < len <
/// NAME_LEN`): one 16-byte read, then `aiwatch_common::suffix::tail_keys`.
///
/// # Safety
/// `name` points to `NAME_LEN` readable bytes.
#[inline(always)]
unsafe fn tail_keys(name: *const u8, len: usize) -> TailKeys {
    // The 16 bytes ending at the name's last byte, or the first 16 of a
    // shorter name.
    let start = len.saturating_sub(SUFFIX_KEY_LEN);
    // Not zeroed first (a call to a byte-wise `memset`): the helper writes
    // all 16 bytes, zeros when the read fails.
    let mut raw = MaybeUninit::<[u64; 2]>::uninit();
    // SAFETY: `raw` is 16 writable bytes, all written by the helper before
    // they are read; `start + 16 <= len < NAME_LEN` and the byte before the
    // tail is below `len` too, so every read stays within the caller's
    // `NAME_LEN` bytes (the masks say so to the verifier).
    let (raw, before_tail) = unsafe {
        bpf_probe_read_kernel(
            raw.as_mut_ptr() as *mut c_void,
            SUFFIX_KEY_LEN as u32,
            name.add(start & (NAME_LEN - 1)) as *const c_void,
        );
        let before_tail = if len > SUFFIX_KEY_LEN {
            *name.add((len - SUFFIX_KEY_LEN - 1) & (NAME_LEN - 1))
        } else {
            0
        };
        (raw.assume_init(), before_tail)
    };
    suffix::tail_keys(raw[0], raw[1], len, before_tail)
}

// ---- exit handlers --------------------------------------------------------

// Each exit names the kind its entry records, as a constant: the compiler
// then drops what other kinds need (the open's file, fold and verdict, the
// second path), and the verifier checks each program's own work only.
// Every `sys_exit_*` record has `long ret` at 16, so one program per kind
// serves all its syscalls: the agent attaches `exit_open` to the exits of
// open, openat and openat2 (`agent/src/kernel/probe_table.rs`), and the
// kernel verifies it once instead of three times.
macro_rules! exit_probe {
    ($name:ident, $kind:expr) => {
        #[tracepoint]
        pub fn $name(ctx: TracePointContext) -> u32 {
            if floor() {
                return 0;
            }
            exit(&ctx, $kind);
            0
        }
    };
}

exit_probe!(exit_open, EventKind::Open);
exit_probe!(exit_unlink, EventKind::Unlink);
exit_probe!(exit_rename, EventKind::Rename);
exit_probe!(exit_link, EventKind::Link);
exit_probe!(exit_chmod, EventKind::Chmod);
exit_probe!(exit_truncate, EventKind::Truncate);

/// Completes a remembered call of `kind`: an array read while nothing is
/// pending, one hash lookup for everybody else.
#[inline(always)]
fn exit(ctx: &TracePointContext, kind: EventKind) {
    let pid_tgid = bpf_get_current_pid_tgid();
    if kind == EventKind::Open {
        if let Some(slot) = own_read_slot(pid_tgid as u32) {
            // SAFETY: `slot` is this thread's live slot; it is copied out
            // and freed before anything else can reuse it.
            let call = unsafe {
                let call = *slot;
                (*slot).tid = 0;
                call
            };
            if !complete_read(&call, syscall::ret(ctx), pid_tgid) {
                return;
            }
        }
    }
    if !pending_any(PENDING_FILE) {
        return;
    }
    let Some(pending) = FILE_PENDING.get_ptr(pid_tgid) else {
        return;
    };
    // `long ret` at 16 in every `sys_exit_*` record.
    let ret = syscall::ret(ctx);
    // SAFETY: a value of `FILE_PENDING`, valid while the program runs; only
    // this thread's exit removes it, after `emit` returns.
    unsafe { emit(pending, kind, ret, (pid_tgid >> 32) as u32) };
    if FILE_PENDING.remove(pid_tgid).is_ok() {
        pending_removed(PENDING_FILE);
    }
}

/// Completes a tracked process's read-only open kept in a `READ_SLOTS` slot:
/// folded when it can be (false: done). Otherwise it is to be reported: it
/// goes into `FILE_PENDING` as any other call's entry, its name read now,
/// for the exit to report it (true). One path to `emit` keeps the
/// verifier's work on the open exits as it was.
#[inline(always)]
fn complete_read(call: &ReadSlot, ret: i64, pid_tgid: u64) -> bool {
    let tgid = (pid_tgid >> 32) as u32;
    let Some(scratch) = FILE_SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: this CPU's scratch value, valid while the program runs, and
    // plain data; syscall exits do not nest, and the entry handlers that
    // also use it are done with it.
    let scratch = unsafe { &mut *scratch };
    scratch.fold = FOLD_UNDECIDED;
    // While enforcement is on, a file a rule protects is decided on first,
    // in `emit`, with checked reads: the direct fold leaves it alone.
    if ret >= 0 {
        let enforcing = enforce::may_act(tgid);
        match file_access::fold_read_direct(ret as u32, tgid, enforcing, basename_interesting) {
            Some(Fold::Counted) => return false,
            Some(Fold::Report(key)) => {
                scratch.fold = FOLD_REPORT;
                scratch.fold_dev = key.dev;
                scratch.fold_dir_ino = key.dir_ino;
            }
            Some(Fold::Keep) => scratch.fold = FOLD_KEEP,
            None => {}
        }
    }
    let name_len = read_name(&mut scratch.name, call.name);
    scratch.kind = EventKind::Open as u16;
    scratch.header_flags = call.header_flags;
    if name_len >= NAME_LEN - 1 {
        scratch.header_flags |= FILE_FLAG_NAME_TRUNCATED;
    }
    scratch.name_len = name_len as u16;
    scratch.name2_len = 0;
    scratch.dfd = call.dfd;
    scratch.dfd2 = AT_FDCWD;
    scratch.flags = call.flags;
    scratch.mode = call.mode;
    scratch.length = 0;
    scratch.device_mode = call.device_mode;
    scratch.device_rdev = call.device_rdev;
    remember(pid_tgid, scratch, EventKind::Open)
}

/// Builds and sends the record of a completed call. A tracked process's
/// read-only open is folded here with checked reads, unless
/// `complete_read` decided already.
///
/// # Safety
/// `pending` points to a live `FilePending`.
#[inline(always)]
unsafe fn emit(pending: *const FilePending, kind: EventKind, ret: i64, tgid: u32) {
    // SAFETY: `pending` is live (the caller's guarantee) and `record` is a
    // ring-buffer reservation sized for a `FileRecord`; the name copies are
    // `NAME_LEN` bytes between two `NAME_LEN` arrays.
    unsafe {
        if (*pending).kind != kind as u16 {
            // An entry left by a call whose exit was never seen (the thread
            // was in it while the exit probes attached): that call is lost,
            // and this one was not wanted, or its entry would be here.
            if let Some(stale) = EventKind::from_u16((*pending).kind) {
                count(Stat::PendingLost, stale.slot());
            }
            return;
        }
        let task = kernel::current_task();
        // A successful open: its file, inode and the enforcement verdict,
        // decided before anything else (the verdict may kill, once).
        let mut opened: *const u8 = core::ptr::null();
        let mut opened_inode: *const u8 = core::ptr::null();
        let mut opened_mode: Option<u16> = None;
        let mut verdict = 0;
        let mut folded_dir: Option<FileAccessKey> = None;
        if kind == EventKind::Open && ret >= 0 {
            opened = kernel::file_of_fd(task, ret as u32);
            opened_inode = read_ptr(opened, offset!(file_f_inode));
            if let Ok(i_mode) = read::<u16>(opened_inode, offset!(inode_i_mode)) {
                opened_mode = Some(i_mode);
                verdict = enforce::open_verdict(opened_inode);
                let fold = (*pending).fold;
                if fold == FOLD_REPORT {
                    folded_dir = Some(FileAccessKey {
                        tgid,
                        dev: (*pending).fold_dev,
                        dir_ino: (*pending).fold_dir_ino,
                    });
                } else if fold == FOLD_UNDECIDED && verdict == 0 && plain_read(pending) {
                    let Some(scratch) = FILE_SCRATCH.get_ptr_mut(0) else {
                        return;
                    };
                    match file_access::fold_read(
                        opened,
                        opened_inode,
                        i_mode as u32,
                        tgid,
                        &mut (*scratch).name,
                        interesting,
                    ) {
                        Fold::Counted => return,
                        Fold::Report(key) => folded_dir = Some(key),
                        Fold::Keep => {}
                    }
                }
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
        if has_second_name(kind) && (*pending).name2_len > 0 {
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
            target = field(opened, offset!(file_f_path));
            if !target.is_null() {
                flags |= FILE_FLAG_PATH_IS_FILE;
            }
            if let Some(i_mode) = opened_mode {
                let inode = opened_inode;
                let rdev = read::<u32>(inode, offset!(inode_i_rdev)).unwrap_or(0);
                (*record).i_mode = i_mode as u32;
                (*record).rdev = rdev;
                (*record).size = read::<i64>(inode, offset!(inode_i_size)).unwrap_or(0);
                flags |= FILE_FLAG_INODE;
                if family_on(FAMILY_GPU) && (i_mode as u32) & S_IFMT == S_IFCHR {
                    gpu::remember_fd(tgid, ret as u32, rdev);
                }
                flags |= verdict;
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

        let relative2 =
            has_second_name(kind) && (*pending).name2_len > 0 && (*pending).name2[0] != b'/';
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

/// Only renames and links have a second name. `kind` is a constant in each
/// exit program, so the test costs nothing and the code it guards is gone
/// from the other programs.
#[inline(always)]
const fn has_second_name(kind: EventKind) -> bool {
    matches!(kind, EventKind::Rename | EventKind::Link)
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
    foldable(header_flags & FILE_FLAG_TRACKED != 0, open_flags)
}

/// Whether an open with `flags`, by a process `tracked` or not, is a plain
/// read that may be folded.
#[inline(always)]
fn foldable(tracked: bool, flags: u32) -> bool {
    tracked && !trace_all() && flags & (O_ACCMODE | O_CREAT | O_TRUNC) == 0
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
