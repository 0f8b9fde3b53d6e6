//! Enforcement in the BPF LSM, where the kernel offers it: the two hooks
//! at which a refusal leaves nothing behind.
//!
//! - `file_open`: a protected file (`PROTECTED_FILES`) opened by an
//!   executable its rule does not allow gets EPERM before a descriptor
//!   exists, so neither an `O_TRUNC` nor a sibling thread sharing the fd
//!   table can get ahead of the decision, as they can with the kill at the
//!   open's exit. A `kill` rule's opener is also killed.
//! - `bprm_check_security`: an executable on a `deny` rule's list
//!   (`EXEC_DENY` values with `ENFORCE_REFUSE_ONLY`) is refused: the exec
//!   fails with EPERM and the caller keeps its old image. `kill` rules stay
//!   with the kill at `sched_process_exec`.
//!
//! The decisions, rails and kill budget are the signal paths' own
//! (`probes/enforce.rs`), on the same maps. Every refusal is reported: a
//! refused open marks the open's pending record (the exit reports it), or
//! sends a record of its own when the entry kept none; a refused exec
//! sends its exec record from here, since no `sched_process_exec` follows.
//!
//! The kernel refuses to load these programs where the `bpf` LSM is not
//! active; the agent then keeps the signal paths and says so at start-up.
//! Like every other program, they go when the agent stops (fail-open).

use core::mem::size_of;

use aiwatch_common::{
    EventKind, FileRecord, ENFORCE_REFUSE_ONLY, FILE_FLAG_INODE, FILE_FLAG_KILLED,
    FILE_FLAG_KILL_RATE_LIMITED, FILE_FLAG_LSM_DENIED, FILE_FLAG_PATH_IS_FILE, PATH_FLAG_MISSING,
};
use aya_ebpf::{macros::lsm, programs::LsmContext};

use crate::{
    emit::{current_tgid, fill_header, reserve, submit},
    globals::{floor, offset},
    kernel::{self, field, read, read_ptr},
    path,
    probes::{enforce, file, process},
};

const EPERM: i32 = 1;

#[lsm(hook = "file_open")]
pub fn lsm_file_open(ctx: LsmContext) -> i32 {
    // The verdict of an LSM program attached before this one: never
    // overturned.
    let previous: i32 = ctx.arg(1);
    if previous != 0 || floor() {
        return previous;
    }
    let file: *const u8 = ctx.arg(0);
    let inode = read_ptr(file, offset!(file_f_inode));
    let Some(value) = enforce::open_refused(inode) else {
        return 0;
    };
    let mut flags = FILE_FLAG_LSM_DENIED;
    if value & ENFORCE_REFUSE_ONLY == 0 {
        flags |= enforce::kill(FILE_FLAG_KILLED, FILE_FLAG_KILL_RATE_LIMITED);
    }
    if !file::mark_pending(flags) {
        report_refused_open(file, inode, flags);
    }
    -EPERM
}

#[lsm(hook = "bprm_check_security")]
pub fn lsm_bprm_check_security(ctx: LsmContext) -> i32 {
    let previous: i32 = ctx.arg(1);
    if previous != 0 || floor() {
        return previous;
    }
    if !enforce::may_act(current_tgid()) {
        return 0;
    }
    // A kernel thread's exec (a usermode helper) is never refused, as the
    // exec kill never touches a task without an `mm`.
    if kernel::mm(kernel::current_task()).is_null() {
        return 0;
    }
    let bprm: *const u8 = ctx.arg(0);
    let file = read_ptr(bprm, offset!(linux_binprm_file));
    let inode = read_ptr(file, offset!(file_f_inode));
    let Some(exe) = enforce::inode_key(inode) else {
        return 0;
    };
    match enforce::exec_denied(&exe) {
        Some(value) if value & ENFORCE_REFUSE_ONLY != 0 => {
            process::emit_refused_exec(bprm, file);
            -EPERM
        }
        _ => 0,
    }
}

/// The record of a refused open whose entry kept no pending record (the
/// name was of no interest, or the pending table was full): the open is
/// reported from what the LSM sees, the file itself.
#[inline(always)]
fn report_refused_open(file: *const u8, inode: *const u8, flags: u16) {
    let Some(mut entry) = reserve::<FileRecord>(EventKind::Open) else {
        return;
    };
    let record = entry.as_mut_ptr();
    // SAFETY: `record` is a reservation sized for a `FileRecord`; every
    // field the decoder reads is written below (the names are empty, so
    // their bytes are never read), and every kernel read is a checked copy.
    unsafe {
        fill_header(
            &raw mut (*record).header,
            EventKind::Open,
            0,
            size_of::<FileRecord>(),
        );
        (*record).ret = -(EPERM as i64);
        (*record).size = read::<i64>(inode, offset!(inode_i_size)).unwrap_or(0);
        (*record).length = 0;
        (*record).flags = read::<u32>(file, offset!(file_f_flags)).unwrap_or(0);
        (*record).mode = 0;
        (*record).i_mode = read::<u16>(inode, offset!(inode_i_mode)).unwrap_or(0) as u32;
        (*record).rdev = read::<u32>(inode, offset!(inode_i_rdev)).unwrap_or(0);
        (*record).dir_dev = 0;
        (*record).dir_ino = 0;
        (*record).name_len = 0;
        (*record).name2_len = 0;
        path::walk(field(file, offset!(file_f_path)), &raw mut (*record).path);
        let mut flags = flags | FILE_FLAG_INODE;
        if (*record).path.flags & PATH_FLAG_MISSING == 0 {
            flags |= FILE_FLAG_PATH_IS_FILE;
        }
        file::mark_missing(&raw mut (*record).path2);
        (*record).header.flags = flags;
    }
    submit(entry);
}
