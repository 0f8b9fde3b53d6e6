//! Process lifecycle: exec, fork and exit.
//!
//! These fire for every process on the host: they feed the agent's process
//! table and workload discovery, and they are rare compared to syscalls.
//! Only the agent's own process is left out.

use core::mem::size_of;

use aiwatch_common::{
    EventKind, ExecRecord, ExitRecord, ForkRecord, Stat, ARGS_LEN, EXEC_FLAG_ARGS_TRUNCATED,
    EXEC_FLAG_EXE_MEMFD, EXEC_FLAG_EXE_UNLINKED, EXEC_FLAG_LSM_DENIED, EXEC_FLAG_STDIO_SOCKET,
    FAMILY_PROCESS, NAME_LEN,
};
use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid,
        generated::{bpf_probe_read_kernel_str, bpf_probe_read_user},
    },
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
    EbpfContext,
};

use super::{enforce, file};
use crate::{
    emit::{current_tgid, fill_header, reserve, submit},
    globals::{agent_pid, family_on, floor, offset},
    kernel::{self, read, read_ptr},
    maps::{count, tracked_pid_value, tracking_pids, TRACKED_PIDS},
    path,
    plain::read_context,
};

/// `sched:sched_process_exec` record layout: `__data_loc char[] filename`
/// at 8, `pid_t pid` at 12, `pid_t old_pid` at 16. Stable since Linux 3.4.
const EXEC_FILENAME_LOC: usize = 8;
const EXEC_OLD_PID: usize = 16;

#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    let tgid = current_tgid();
    // Decided before the record is built: the kill must not wait on it.
    let verdict = enforce::exec_verdict(kernel::current_task(), tgid);
    if family_on(FAMILY_PROCESS) && tgid != agent_pid() {
        emit_exec(&ctx, verdict);
    }
    0
}

/// The exec record of an exec the BPF LSM refused (`probes/lsm.rs`): the
/// caller, which keeps its image, with the executable it was refused as
/// `exe` and `filename`. No argv: the new image's memory is not set up
/// yet, and the refused program never gets any.
#[inline(always)]
pub fn emit_refused_exec(bprm: *const u8, file: *const u8) {
    let Some(mut entry) = reserve::<ExecRecord>(EventKind::Exec) else {
        return;
    };
    let record = entry.as_mut_ptr();
    let task = kernel::current_task();
    // SAFETY: `record` is a reservation sized for an `ExecRecord`; the name
    // copy writes at most `NAME_LEN` bytes into an array of that size, and
    // every kernel read is a checked copy.
    unsafe {
        fill_header(
            &raw mut (*record).header,
            EventKind::Exec,
            EXEC_FLAG_LSM_DENIED,
            size_of::<ExecRecord>(),
        );
        (*record).ppid = kernel::parent_tgid(task);
        (*record).old_pid = current_tgid();
        let (euid, egid) = kernel::effective_ids(task);
        (*record).euid = euid;
        (*record).egid = egid;
        let (mnt_ns, pid_ns) = kernel::namespaces(task);
        (*record).mnt_ns = mnt_ns;
        (*record).pid_ns = pid_ns;
        (*record).start_boottime_ns = kernel::start_boottime(task);
        (*record)._pad = 0;
        (*record).args_len = 0;
        let name = read_ptr(bprm, offset!(linux_binprm_filename));
        let copied = if name.is_null() {
            0
        } else {
            bpf_probe_read_kernel_str(
                (*record).filename.as_mut_ptr() as *mut _,
                NAME_LEN as u32,
                name as *const _,
            )
        };
        (*record).filename_len = if copied > 0 { (copied - 1) as u16 } else { 0 };
        path::walk(
            kernel::field(file, offset!(file_f_path)),
            &raw mut (*record).exe,
        );
    }
    submit(entry);
}

#[inline(always)]
fn emit_exec(ctx: &TracePointContext, verdict: u16) {
    let Some(mut entry) = reserve::<ExecRecord>(EventKind::Exec) else {
        return;
    };
    let record = entry.as_mut_ptr();
    let task = kernel::current_task();
    // SAFETY: `record` is a reservation sized for an `ExecRecord`. The
    // string and argv copies write at most `NAME_LEN` and `ARGS_LEN` bytes
    // into arrays of those sizes (`args_len` is capped first); the file name
    // is read from the tracepoint record at its `__data_loc` offset, and
    // every read is a checked copy.
    unsafe {
        fill_header(
            &raw mut (*record).header,
            EventKind::Exec,
            0,
            size_of::<ExecRecord>(),
        );
        let mut flags = verdict;
        (*record).ppid = kernel::parent_tgid(task);
        (*record).old_pid = read_context::<u32>(ctx, EXEC_OLD_PID).unwrap_or(0);
        let (euid, egid) = kernel::effective_ids(task);
        (*record).euid = euid;
        (*record).egid = egid;
        let (mnt_ns, pid_ns) = kernel::namespaces(task);
        (*record).mnt_ns = mnt_ns;
        (*record).pid_ns = pid_ns;
        (*record).start_boottime_ns = kernel::start_boottime(task);
        (*record)._pad = 0;

        // The file name as given to execve.
        let loc = read_context::<u32>(ctx, EXEC_FILENAME_LOC).unwrap_or(0);
        let name_src = (ctx.as_ptr() as *const u8).wrapping_add((loc & 0xffff) as usize);
        let copied = bpf_probe_read_kernel_str(
            (*record).filename.as_mut_ptr() as *mut _,
            NAME_LEN as u32,
            name_src as *const _,
        );
        (*record).filename_len = if copied > 0 { (copied - 1) as u16 } else { 0 };

        // The executable actually mapped, resolved in the kernel.
        let mm = kernel::mm(task);
        let exe_file = read_ptr(mm, offset!(mm_exe_file));
        path::walk(
            kernel::field(exe_file, offset!(file_f_path)),
            &raw mut (*record).exe,
        );
        let inode = read_ptr(exe_file, offset!(file_f_inode));
        if let Ok(0) = read::<u32>(inode, offset!(inode_i_nlink)) {
            flags |= EXEC_FLAG_EXE_UNLINKED;
        }
        // Leaf component first: a memfd's dentry is named "memfd:<name>".
        let exe = &(*record).exe.buf;
        if exe[0] == b'm'
            && exe[1] == b'e'
            && exe[2] == b'm'
            && exe[3] == b'f'
            && exe[4] == b'd'
            && exe[5] == b':'
        {
            flags |= EXEC_FLAG_EXE_MEMFD;
        }

        // argv from the new image's memory: NUL-separated, already in place.
        let arg_start = read::<u64>(mm, offset!(mm_arg_start)).unwrap_or(0);
        let arg_end = read::<u64>(mm, offset!(mm_arg_end)).unwrap_or(0);
        let mut args_len = arg_end.saturating_sub(arg_start) as usize;
        if args_len > ARGS_LEN {
            args_len = ARGS_LEN;
            flags |= EXEC_FLAG_ARGS_TRUNCATED;
        }
        if args_len > 0
            && bpf_probe_read_user(
                (*record).args.as_mut_ptr() as *mut _,
                args_len as u32,
                arg_start as *const _,
            ) != 0
        {
            args_len = 0;
        }
        (*record).args_len = args_len as u16;
        if kernel::file_type(kernel::file_of_fd(task, 0)) == kernel::S_IFSOCK
            || kernel::file_type(kernel::file_of_fd(task, 1)) == kernel::S_IFSOCK
        {
            flags |= EXEC_FLAG_STDIO_SOCKET;
        }
        (*record).header.flags = flags;
    }
    submit(entry);
}

/// Raw tracepoint: `TP_PROTO(struct task_struct *parent, struct task_struct
/// *child)`. The classic tracepoint's field layout changed across kernels;
/// the task pointers did not.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    let parent_tgid = current_tgid();
    if parent_tgid == agent_pid() {
        return 0;
    }
    let child: *const u8 = ctx.arg::<u64>(1) as *const u8;
    let (child_pid, child_tgid) = (
        read::<u32>(child, offset!(task_pid)).unwrap_or(0),
        read::<u32>(child, offset!(task_tgid)).unwrap_or(0),
    );
    if child_pid != child_tgid {
        // A new thread, not a new process.
        return 0;
    }
    // Tracking is inherited in the kernel, so no child of a tracked process
    // escapes between its fork and the agent's reaction.
    // The value (purposes and enforcement scope) goes with it.
    if let Some(value) = tracked_pid_value(parent_tgid) {
        if TRACKED_PIDS.insert(child_tgid, value, 0).is_err() {
            count(Stat::TrackLost, EventKind::Fork.slot());
        }
    }
    if !family_on(FAMILY_PROCESS) {
        count(Stat::Filtered, EventKind::Fork.slot());
        return 0;
    }
    let Some(mut entry) = reserve::<ForkRecord>(EventKind::Fork) else {
        return 0;
    };
    let record = entry.as_mut_ptr();
    // SAFETY: `record` is a reservation sized for a `ForkRecord`.
    unsafe {
        fill_header(
            &raw mut (*record).header,
            EventKind::Fork,
            0,
            size_of::<ForkRecord>(),
        );
        (*record).child_pid = child_tgid;
        (*record)._pad = 0;
        (*record).child_start_boottime_ns = kernel::start_boottime(child);
    }
    submit(entry);
    0
}

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn sched_process_exit(_ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    // Every thread's exit: its id may next be another process's.
    file::forget_thread(bpf_get_current_pid_tgid() as u32);
    let tgid = current_tgid();
    if tgid == agent_pid() {
        return 0;
    }
    let task = kernel::current_task();
    if !kernel::group_dead(task) {
        // Another thread of the process is still running.
        return 0;
    }
    if tracking_pids() {
        let _ = TRACKED_PIDS.remove(tgid);
    }
    if !family_on(FAMILY_PROCESS) {
        count(Stat::Filtered, EventKind::Exit.slot());
        return 0;
    }
    let Some(mut entry) = reserve::<ExitRecord>(EventKind::Exit) else {
        return 0;
    };
    let record = entry.as_mut_ptr();
    // SAFETY: `record` is a reservation sized for an `ExitRecord`.
    unsafe {
        fill_header(
            &raw mut (*record).header,
            EventKind::Exit,
            0,
            size_of::<ExitRecord>(),
        );
        (*record).exit_code = read::<u32>(task, offset!(task_exit_code)).unwrap_or(0);
        (*record).ppid = kernel::parent_tgid(task);
        let leader = read_ptr(task, offset!(task_group_leader));
        (*record).start_boottime_ns =
            kernel::start_boottime(if leader.is_null() { task } else { leader });
    }
    submit(entry);
    0
}
