//! Privilege and tampering: set*id, capset, ptrace, module loads, bpf(),
//! memfd_create, and mmap/mprotect that make anonymous memory executable.
//!
//! All share one [`SyscallRecord`]: the arguments (and what must be read
//! from user memory) at entry, into a per-thread pending entry built in a
//! per-CPU scratch value, and the result at exit. These syscalls are rare,
//! so every process but the agent is reported, except:
//! - `mmap` only when it maps anonymous memory executable (`PROT_EXEC` with
//!   `MAP_ANONYMOUS`): file mappings of code are what every loader does;
//! - `mprotect` adding `PROT_EXEC` is what `ld.so` does at every start for
//!   relocated segments, so it is reported for tracked processes, and for
//!   everyone only when the result is writable and executable at once
//!   (`PROT_WRITE|PROT_EXEC`), which loaders never ask for.
//!
//! Signals are not syscalls: `signal:signal_generate` sees every signal the
//! kernel queues, whatever sent it (`kill`, `tgkill`, `pidfd_send_signal`,
//! a timer), and only those aimed at the agent by another process leave
//! the kernel, as a [`SyscallRecord`] of kind `signal`.

use core::{ffi::c_void, mem::size_of};

use aiwatch_common::{
    sys, EventKind, Stat, SyscallRecord, FAMILY_PRIVILEGE, NAME_LEN, PATH_FLAG_MISSING,
    SYSCALL_FLAG_TRACKED, SYSCALL_FLAG_USER_READ,
};
use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, generated::bpf_probe_read_user_str},
    macros::{map, raw_tracepoint, tracepoint},
    maps::{LruHashMap, PerCpuArray},
    programs::{RawTracePointContext, TracePointContext},
};

use crate::{
    diag,
    emit::{current_tgid, discard, fill_header, reserve, submit},
    globals::{agent_pid, family_on, floor, offset},
    kernel,
    maps::{count, is_tracked, pending_added, pending_any, pending_removed, PENDING_PRIV},
    path,
    plain::{read_kernel_into, read_user},
    syscall,
};

const PROT_WRITE: u64 = 2;
const PROT_EXEC: u64 = 4;
const MAP_ANONYMOUS: u64 = 0x20;
const BPF_PROG_LOAD: u64 = 5;
const BPF_PROG_GET_FD_BY_ID: u64 = 13;
const BPF_MAP_GET_FD_BY_ID: u64 = 14;
const BPF_LINK_GET_FD_BY_ID: u64 = 30;

/// Privilege syscalls between entry and exit, per thread. LRU: a thread
/// killed inside one of them cannot leak an entry for good.
#[map]
static PRIV_PENDING: LruHashMap<u64, SyscallRecord> = LruHashMap::with_max_entries(4096, 0);

#[map]
static PRIV_SCRATCH: PerCpuArray<SyscallRecord> = PerCpuArray::with_max_entries(1, 0);

/// Whether an mmap/mprotect is worth a record (see the module
/// documentation), from its arguments alone: most calls stop here, before
/// any helper call.
#[inline(always)]
fn wanted_by_arguments(ctx: &TracePointContext, syscall: u16) -> bool {
    match syscall {
        sys::MMAP => {
            syscall::arg(ctx, 2) & PROT_EXEC != 0 && syscall::arg(ctx, 3) & MAP_ANONYMOUS != 0
        }
        sys::MPROTECT => syscall::arg(ctx, 2) & PROT_EXEC != 0,
        _ => true,
    }
}

/// The rest of the test, for calls that passed [`wanted_by_arguments`].
#[inline(always)]
fn wanted(ctx: &TracePointContext, kind: EventKind, syscall: u16, tgid: u32) -> bool {
    if syscall != sys::MPROTECT || syscall::arg(ctx, 2) & PROT_WRITE != 0 || is_tracked(tgid) {
        return true;
    }
    count(Stat::Filtered, kind.slot());
    false
}

#[inline(always)]
fn enter(ctx: &TracePointContext, kind: EventKind, syscall: u16) {
    if !family_on(FAMILY_PRIVILEGE) || !wanted_by_arguments(ctx, syscall) {
        return;
    }
    let tgid = current_tgid();
    if tgid == agent_pid() || !wanted(ctx, kind, syscall, tgid) {
        return;
    }
    let Some(record) = PRIV_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    let flags = if is_tracked(tgid) {
        SYSCALL_FLAG_TRACKED
    } else {
        0
    };
    // SAFETY: `record` is this CPU's scratch value, valid and writable
    // while the program runs, and no other program on this CPU uses it
    // meanwhile (they do not nest within one syscall entry).
    let record = unsafe { &mut *record };
    // SAFETY: a field of the scratch value above.
    unsafe {
        fill_header(
            &raw mut record.header,
            kind,
            flags,
            size_of::<SyscallRecord>(),
        )
    };
    // All six argument slots at once; past the syscall's own arguments
    // they hold whatever follows (read with a checked copy: direct
    // context reads past the record would make the attach fail).
    record.args = syscall::args(ctx);
    record.ret = 0;
    record.syscall = syscall;
    record.text_len = 0;
    record._pad = 0;
    record.path.len = 0;
    record.path.depth = 0;
    record.path.flags = PATH_FLAG_MISSING;
    match syscall {
        sys::CAPSET => {
            // Version 2/3 headers come with two cap_user_data_t words.
            let data = record.args[1];
            let words = match read_user(data as *const [u32; 6]) {
                Ok(w) => Some(w),
                Err(_) => read_user(data as *const [u32; 3])
                    .ok()
                    .map(|w| [w[0], w[1], w[2], 0, 0, 0]),
            };
            if let Some(w) = words {
                record.args[2] = w[0] as u64 | (w[3] as u64) << 32;
                record.args[3] = w[1] as u64 | (w[4] as u64) << 32;
                record.args[4] = w[2] as u64 | (w[5] as u64) << 32;
                record.header.flags |= SYSCALL_FLAG_USER_READ;
            }
        }
        sys::BPF => {
            if record.args[0] == BPF_PROG_LOAD {
                // union bpf_attr starts with `__u32 prog_type` for PROG_LOAD.
                if let Ok(prog_type) = read_user(record.args[1] as *const u32) {
                    record.args[3] = prog_type as u64;
                    record.header.flags |= SYSCALL_FLAG_USER_READ;
                }
            } else if matches!(
                record.args[0],
                BPF_PROG_GET_FD_BY_ID | BPF_MAP_GET_FD_BY_ID | BPF_LINK_GET_FD_BY_ID
            ) {
                // The id is the union's first `__u32` for these commands: the
                // agent compares it with its own programs, maps and links.
                if let Ok(id) = read_user(record.args[1] as *const u32) {
                    record.args[3] = id as u64;
                    record.header.flags |= SYSCALL_FLAG_USER_READ;
                }
            }
        }
        sys::MEMFD_CREATE => read_text(record, record.args[0]),
        sys::INIT_MODULE => read_text(record, record.args[2]),
        sys::FINIT_MODULE => {
            read_text(record, record.args[1]);
            let file = kernel::file_of_fd(kernel::current_task(), record.args[0] as u32);
            let module_path = kernel::field(file, offset!(file_f_path));
            if !module_path.is_null() {
                // SAFETY: a field of the scratch value, writable.
                unsafe { path::walk(module_path, &raw mut record.path) };
            }
        }
        _ => {}
    }
    if PRIV_PENDING
        .insert(bpf_get_current_pid_tgid(), &*record, 0)
        .is_ok()
    {
        pending_added(PENDING_PRIV);
    } else {
        count(Stat::PendingLost, kind.slot());
        diag::pending_full(tgid, kind);
    }
}

/// Copies a user string into `record.text`.
#[inline(always)]
fn read_text(record: &mut SyscallRecord, user: u64) {
    if user == 0 {
        return;
    }
    // SAFETY: `text` is `NAME_LEN` writable bytes and the helper writes at
    // most that many; the source is read with a checked copy.
    let copied = unsafe {
        bpf_probe_read_user_str(
            record.text.as_mut_ptr() as *mut c_void,
            NAME_LEN as u32,
            user as *const c_void,
        )
    };
    record.text_len = if copied > 0 { (copied - 1) as u16 } else { 0 };
}

#[inline(always)]
fn exit(ctx: &TracePointContext, kind: EventKind) {
    // Every mmap on the host ends here: an array read while nothing waits.
    if !pending_any(PENDING_PRIV) {
        return;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(pending) = PRIV_PENDING.get_ptr(pid_tgid) else {
        return;
    };
    if let Some(mut entry) = reserve::<SyscallRecord>(kind) {
        // A checked copy: the entry is another map's value, which an LRU
        // eviction may reuse meanwhile.
        if read_kernel_into(&mut entry, pending).is_ok() {
            let record = entry.as_mut_ptr();
            // SAFETY: the reservation, now a whole `SyscallRecord`.
            unsafe { (*record).ret = syscall::ret(ctx) };
            submit(entry);
        } else {
            discard(entry);
        }
    }
    if PRIV_PENDING.remove(pid_tgid).is_ok() {
        pending_removed(PENDING_PRIV);
    }
}

/// The entry and exit programs of one privilege syscall: the entry hands
/// `$syscall` (a [`sys`] constant) and the event kind to [`enter`], the exit
/// completes the record in [`exit`]. The tracepoint names are spelled out:
/// the attribute wants string literals.
macro_rules! privilege_syscall {
    ($enter:ident = $enter_name:literal, $exit:ident = $exit_name:literal, $kind:ident, $syscall:ident) => {
        #[tracepoint(category = "syscalls", name = $enter_name)]
        pub fn $enter(ctx: TracePointContext) -> u32 {
            if !floor() {
                enter(&ctx, EventKind::$kind, sys::$syscall);
            }
            0
        }

        #[tracepoint(category = "syscalls", name = $exit_name)]
        pub fn $exit(ctx: TracePointContext) -> u32 {
            if !floor() {
                exit(&ctx, EventKind::$kind);
            }
            0
        }
    };
}

privilege_syscall!(
    sys_enter_setuid = "sys_enter_setuid",
    sys_exit_setuid = "sys_exit_setuid",
    Setuid,
    SETUID
);
privilege_syscall!(
    sys_enter_setreuid = "sys_enter_setreuid",
    sys_exit_setreuid = "sys_exit_setreuid",
    Setuid,
    SETREUID
);
privilege_syscall!(
    sys_enter_setresuid = "sys_enter_setresuid",
    sys_exit_setresuid = "sys_exit_setresuid",
    Setuid,
    SETRESUID
);
privilege_syscall!(
    sys_enter_setgid = "sys_enter_setgid",
    sys_exit_setgid = "sys_exit_setgid",
    Setgid,
    SETGID
);
privilege_syscall!(
    sys_enter_setregid = "sys_enter_setregid",
    sys_exit_setregid = "sys_exit_setregid",
    Setgid,
    SETREGID
);
privilege_syscall!(
    sys_enter_setresgid = "sys_enter_setresgid",
    sys_exit_setresgid = "sys_exit_setresgid",
    Setgid,
    SETRESGID
);
privilege_syscall!(
    sys_enter_capset = "sys_enter_capset",
    sys_exit_capset = "sys_exit_capset",
    Capset,
    CAPSET
);
privilege_syscall!(
    sys_enter_ptrace = "sys_enter_ptrace",
    sys_exit_ptrace = "sys_exit_ptrace",
    Ptrace,
    PTRACE
);
privilege_syscall!(
    sys_enter_init_module = "sys_enter_init_module",
    sys_exit_init_module = "sys_exit_init_module",
    ModuleLoad,
    INIT_MODULE
);
privilege_syscall!(
    sys_enter_finit_module = "sys_enter_finit_module",
    sys_exit_finit_module = "sys_exit_finit_module",
    ModuleLoad,
    FINIT_MODULE
);
privilege_syscall!(
    sys_enter_bpf = "sys_enter_bpf",
    sys_exit_bpf = "sys_exit_bpf",
    Bpf,
    BPF
);
privilege_syscall!(
    sys_enter_memfd_create = "sys_enter_memfd_create",
    sys_exit_memfd_create = "sys_exit_memfd_create",
    MemfdCreate,
    MEMFD_CREATE
);
privilege_syscall!(
    sys_enter_mmap = "sys_enter_mmap",
    sys_exit_mmap = "sys_exit_mmap",
    ExecMemory,
    MMAP
);
privilege_syscall!(
    sys_enter_mprotect = "sys_enter_mprotect",
    sys_exit_mprotect = "sys_exit_mprotect",
    ExecMemory,
    MPROTECT
);
privilege_syscall!(
    sys_enter_process_vm_writev = "sys_enter_process_vm_writev",
    sys_exit_process_vm_writev = "sys_exit_process_vm_writev",
    Ptrace,
    PROCESS_VM_WRITEV
);
privilege_syscall!(
    sys_enter_pidfd_getfd = "sys_enter_pidfd_getfd",
    sys_exit_pidfd_getfd = "sys_exit_pidfd_getfd",
    Ptrace,
    PIDFD_GETFD
);

/// Raw tracepoint: `TP_PROTO(int sig, struct kernel_siginfo *info, struct
/// task_struct *task, int group, int result)`. Runs for every signal on the
/// host (a child's exit signals its parent), so the test for "aimed at the
/// agent" comes first and costs one read of the target's tgid.
#[raw_tracepoint(tracepoint = "signal_generate")]
pub fn signal_generate(ctx: RawTracePointContext) -> u32 {
    if floor() || !family_on(FAMILY_PRIVILEGE) {
        return 0;
    }
    let task: *const u8 = ctx.arg::<u64>(2) as *const u8;
    let target_tgid = kernel::read::<u32>(task, offset!(task_tgid)).unwrap_or(0);
    let agent = agent_pid();
    if target_tgid != agent || current_tgid() == agent {
        return 0;
    }
    let Some(mut entry) = reserve::<SyscallRecord>(EventKind::Signal) else {
        return 0;
    };
    let record = entry.as_mut_ptr();
    // SAFETY: `record` is a reservation sized for a `SyscallRecord`; every
    // field is written before the submit.
    unsafe {
        fill_header(
            &raw mut (*record).header,
            EventKind::Signal,
            0,
            size_of::<SyscallRecord>(),
        );
        (*record).args = [
            ctx.arg::<u64>(0) as u32 as u64,
            target_tgid as u64,
            kernel::read::<u32>(task, offset!(task_pid)).unwrap_or(0) as u64,
            ctx.arg::<u64>(3) as u32 as u64,
            0,
            0,
        ];
        (*record).ret = ctx.arg::<u64>(4) as i32 as i64;
        (*record).syscall = sys::SIGNAL;
        (*record).text_len = 0;
        (*record)._pad = 0;
        (*record).path.len = 0;
        (*record).path.depth = 0;
        (*record).path.flags = PATH_FLAG_MISSING;
        (*record).path._pad = 0;
    }
    submit(entry);
    0
}
