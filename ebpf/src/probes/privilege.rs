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

use core::{ffi::c_void, mem::size_of};

use aiwatch_common::{
    sys, EventKind, Stat, SyscallRecord, FAMILY_PRIVILEGE, NAME_LEN, OFFSET_UNKNOWN,
    PATH_FLAG_MISSING, SYSCALL_FLAG_TRACKED, SYSCALL_FLAG_USER_READ,
};
use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_probe_read_user,
        generated::{self, bpf_probe_read_user_str},
    },
    macros::{map, tracepoint},
    maps::{LruHashMap, PerCpuArray},
    programs::TracePointContext,
    EbpfContext,
};

use super::net::{syscall_arg, syscall_ret};
use crate::{
    emit::{current_tgid, discard, fill_header, reserve, submit},
    globals::{agent_pid, family_on, floor, offset},
    kernel,
    maps::{count, is_tracked, pending_added, pending_any, pending_removed, PENDING_PRIV},
    path,
};

const PROT_WRITE: u64 = 2;
const PROT_EXEC: u64 = 4;
const MAP_ANONYMOUS: u64 = 0x20;
const BPF_PROG_LOAD: u64 = 5;

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
            syscall_arg(ctx, 2) & PROT_EXEC != 0 && syscall_arg(ctx, 3) & MAP_ANONYMOUS != 0
        }
        sys::MPROTECT => syscall_arg(ctx, 2) & PROT_EXEC != 0,
        _ => true,
    }
}

/// The rest of the test, for calls that passed [`wanted_by_arguments`].
#[inline(always)]
fn wanted(ctx: &TracePointContext, kind: EventKind, syscall: u16, tgid: u32) -> bool {
    if syscall != sys::MPROTECT || syscall_arg(ctx, 2) & PROT_WRITE != 0 || is_tracked(tgid) {
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
    unsafe {
        let flags = if is_tracked(tgid) {
            SYSCALL_FLAG_TRACKED
        } else {
            0
        };
        fill_header(
            &raw mut (*record).header,
            kind,
            flags,
            size_of::<SyscallRecord>(),
        );
        // All six argument slots at once; past the syscall's own arguments
        // they hold whatever follows (read with a checked copy: direct
        // context reads past the record would make the attach fail).
        if generated::bpf_probe_read_kernel(
            (*record).args.as_mut_ptr() as *mut c_void,
            size_of::<[u64; 6]>() as u32,
            (ctx.as_ptr() as *const u8).add(16) as *const c_void,
        ) != 0
        {
            (*record).args = [0; 6];
        }
        (*record).ret = 0;
        (*record).syscall = syscall;
        (*record).text_len = 0;
        (*record)._pad = 0;
        (*record).path.len = 0;
        (*record).path.depth = 0;
        (*record).path.flags = PATH_FLAG_MISSING;
        match syscall {
            sys::CAPSET => {
                // Version 2/3 headers come with two cap_user_data_t words.
                let data = (*record).args[1];
                let words = match bpf_probe_read_user(data as *const [u32; 6]) {
                    Ok(w) => Some(w),
                    Err(_) => bpf_probe_read_user(data as *const [u32; 3])
                        .ok()
                        .map(|w| [w[0], w[1], w[2], 0, 0, 0]),
                };
                if let Some(w) = words {
                    (*record).args[2] = w[0] as u64 | (w[3] as u64) << 32;
                    (*record).args[3] = w[1] as u64 | (w[4] as u64) << 32;
                    (*record).args[4] = w[2] as u64 | (w[5] as u64) << 32;
                    (*record).header.flags |= SYSCALL_FLAG_USER_READ;
                }
            }
            sys::BPF => {
                if (*record).args[0] == BPF_PROG_LOAD {
                    // union bpf_attr starts with `__u32 prog_type` for PROG_LOAD.
                    if let Ok(prog_type) = bpf_probe_read_user((*record).args[1] as *const u32) {
                        (*record).args[3] = prog_type as u64;
                        (*record).header.flags |= SYSCALL_FLAG_USER_READ;
                    }
                }
            }
            sys::MEMFD_CREATE => read_text(record, (*record).args[0]),
            sys::INIT_MODULE => read_text(record, (*record).args[2]),
            sys::FINIT_MODULE => {
                read_text(record, (*record).args[1]);
                let file = kernel::file_of_fd(kernel::current_task(), (*record).args[0] as u32);
                let f_path = offset!(file_f_path);
                if !file.is_null() && f_path != OFFSET_UNKNOWN as usize {
                    path::walk(file.add(f_path), &raw mut (*record).path);
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
        }
    }
}

/// Copies a user string into `record.text`.
#[inline(always)]
unsafe fn read_text(record: *mut SyscallRecord, user: u64) {
    if user == 0 {
        return;
    }
    unsafe {
        let copied = bpf_probe_read_user_str(
            (*record).text.as_mut_ptr() as *mut c_void,
            NAME_LEN as u32,
            user as *const c_void,
        );
        (*record).text_len = if copied > 0 { (copied - 1) as u16 } else { 0 };
    }
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
        let record = entry.as_mut_ptr();
        let copied = unsafe {
            generated::bpf_probe_read_kernel(
                record as *mut c_void,
                size_of::<SyscallRecord>() as u32,
                pending as *const c_void,
            )
        };
        if copied == 0 {
            unsafe { (*record).ret = syscall_ret(ctx) };
            submit(entry);
        } else {
            discard(entry);
        }
    }
    if PRIV_PENDING.remove(pid_tgid).is_ok() {
        pending_removed(PENDING_PRIV);
    }
}

#[tracepoint(category = "syscalls", name = "sys_enter_setuid")]
pub fn sys_enter_setuid(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    enter(&ctx, EventKind::Setuid, sys::SETUID);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_setuid")]
pub fn sys_exit_setuid(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    exit(&ctx, EventKind::Setuid);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_setreuid")]
pub fn sys_enter_setreuid(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    enter(&ctx, EventKind::Setuid, sys::SETREUID);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_setreuid")]
pub fn sys_exit_setreuid(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    exit(&ctx, EventKind::Setuid);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_setresuid")]
pub fn sys_enter_setresuid(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    enter(&ctx, EventKind::Setuid, sys::SETRESUID);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_setresuid")]
pub fn sys_exit_setresuid(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    exit(&ctx, EventKind::Setuid);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_setgid")]
pub fn sys_enter_setgid(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    enter(&ctx, EventKind::Setgid, sys::SETGID);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_setgid")]
pub fn sys_exit_setgid(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    exit(&ctx, EventKind::Setgid);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_setregid")]
pub fn sys_enter_setregid(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    enter(&ctx, EventKind::Setgid, sys::SETREGID);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_setregid")]
pub fn sys_exit_setregid(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    exit(&ctx, EventKind::Setgid);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_setresgid")]
pub fn sys_enter_setresgid(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    enter(&ctx, EventKind::Setgid, sys::SETRESGID);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_setresgid")]
pub fn sys_exit_setresgid(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    exit(&ctx, EventKind::Setgid);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_capset")]
pub fn sys_enter_capset(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    enter(&ctx, EventKind::Capset, sys::CAPSET);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_capset")]
pub fn sys_exit_capset(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    exit(&ctx, EventKind::Capset);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_ptrace")]
pub fn sys_enter_ptrace(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    enter(&ctx, EventKind::Ptrace, sys::PTRACE);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_ptrace")]
pub fn sys_exit_ptrace(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    exit(&ctx, EventKind::Ptrace);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_init_module")]
pub fn sys_enter_init_module(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    enter(&ctx, EventKind::ModuleLoad, sys::INIT_MODULE);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_init_module")]
pub fn sys_exit_init_module(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    exit(&ctx, EventKind::ModuleLoad);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_finit_module")]
pub fn sys_enter_finit_module(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    enter(&ctx, EventKind::ModuleLoad, sys::FINIT_MODULE);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_finit_module")]
pub fn sys_exit_finit_module(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    exit(&ctx, EventKind::ModuleLoad);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_bpf")]
pub fn sys_enter_bpf(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    enter(&ctx, EventKind::Bpf, sys::BPF);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_bpf")]
pub fn sys_exit_bpf(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    exit(&ctx, EventKind::Bpf);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_memfd_create")]
pub fn sys_enter_memfd_create(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    enter(&ctx, EventKind::MemfdCreate, sys::MEMFD_CREATE);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_memfd_create")]
pub fn sys_exit_memfd_create(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    exit(&ctx, EventKind::MemfdCreate);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_mmap")]
pub fn sys_enter_mmap(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    enter(&ctx, EventKind::ExecMemory, sys::MMAP);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_mmap")]
pub fn sys_exit_mmap(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    exit(&ctx, EventKind::ExecMemory);
    0
}

#[tracepoint(category = "syscalls", name = "sys_enter_mprotect")]
pub fn sys_enter_mprotect(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    enter(&ctx, EventKind::ExecMemory, sys::MPROTECT);
    0
}

#[tracepoint(category = "syscalls", name = "sys_exit_mprotect")]
pub fn sys_exit_mprotect(ctx: TracePointContext) -> u32 {
    if floor() {
        return 0;
    }
    exit(&ctx, EventKind::ExecMemory);
    0
}
