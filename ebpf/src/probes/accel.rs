//! Enforcement in the kernel: accelerator deny.
//!
//! A `cgroup/dev` program on the root of the cgroup v2 hierarchy is asked
//! about every device access of every process (the kernel runs the
//! programs of a process's cgroup and of its ancestors). For a read or
//! write open of a character device whose major is an accelerator
//! (`GPU_MAJORS`, from the agent's one table of accelerator majors), it
//! lets through only:
//! - processes of declared workloads (`TRACK_ACCEL_ALLOWED` in their
//!   `TRACKED_PIDS` entry, inherited at fork, or in their cgroup's
//!   `TRACKED_CGROUPS` entry for a declared container);
//! - configured executables (`ACCEL_ALLOW_EXES`, by device and inode of
//!   `mm->exe_file`, never by name);
//! - the agent itself.
//!
//! Discovery alone never grants access: a miner dressed as `vllm` is not
//! a declared workload, and CUDA opens the devices before any library scan
//! could classify it. Everybody else gets EPERM in enforce mode; in audit
//! mode the open goes through. Either way the open's pending record is
//! marked, so its event says what was (or would have been) done. `mknod`
//! is not refused: a node is harmless until it is opened.
//!
//! Every read or write check of any device also notes the device on the
//! caller's pending open (`file::note_device`), whatever the mode: a failed
//! open of a device node (EPERM here, ENXIO with no driver) still says
//! which device it was, and the agent never stats paths.

use aiwatch_common::{
    ExeKey, ACCEL_ENFORCE, ACCEL_OFF, ENFORCE_ACCEL, ENFORCE_ON, FILE_FLAG_ACCEL_DENIED,
    FILE_FLAG_ACCEL_WOULD_DENY, TRACK_ACCEL_ALLOWED,
};
use aya_ebpf::{
    bindings::{BPF_DEVCG_ACC_READ, BPF_DEVCG_ACC_WRITE, BPF_DEVCG_DEV_CHAR},
    macros::{cgroup_device, map},
    maps::HashMap,
    programs::DeviceContext,
};

use super::{
    enforce::{control, exe_key},
    file::{mark_pending, note_device, S_IFBLK, S_IFCHR},
    gpu::is_accelerator,
};
use crate::{
    emit::current_tgid,
    globals::{agent_pid, floor},
    kernel,
    maps::tracked_purposes,
};

/// Executables allowed to open accelerators (value unused).
#[map]
static ACCEL_ALLOW_EXES: HashMap<ExeKey, u32> = HashMap::with_max_entries(256, 0);

const ALLOW: i32 = 1;
const DENY: i32 = 0;

#[cgroup_device]
pub fn accel_device(ctx: DeviceContext) -> i32 {
    if floor() {
        return ALLOW;
    }
    // SAFETY: the program's context, valid for this run; the verifier
    // checks each 4-byte field load.
    let (access_type, major, minor) = unsafe {
        (
            (*ctx.device).access_type,
            (*ctx.device).major,
            (*ctx.device).minor,
        )
    };
    let (device_type, access) = (access_type & 0xffff, access_type >> 16);
    // Whatever the mode: a failed open's event says which device it was.
    if access & (BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE) != 0 {
        let mode = if device_type == BPF_DEVCG_DEV_CHAR {
            S_IFCHR
        } else {
            S_IFBLK
        };
        note_device(mode, major, minor);
    }
    let mode = control(ENFORCE_ACCEL);
    if mode == ACCEL_OFF {
        return ALLOW;
    }
    if device_type != BPF_DEVCG_DEV_CHAR
        || access & (BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE) == 0
        || !is_accelerator(major)
    {
        return ALLOW;
    }
    let tgid = current_tgid();
    if tgid == agent_pid() || tracked_purposes(tgid) & TRACK_ACCEL_ALLOWED != 0 {
        return ALLOW;
    }
    let mm = kernel::mm(kernel::current_task());
    if !mm.is_null() {
        if let Some(exe) = exe_key(mm) {
            // SAFETY: only the presence of the entry is used.
            if unsafe { ACCEL_ALLOW_EXES.get(&exe) }.is_some() {
                return ALLOW;
            }
        }
    }
    if mode == ACCEL_ENFORCE && control(ENFORCE_ON) != 0 {
        mark_pending(FILE_FLAG_ACCEL_DENIED);
        DENY
    } else {
        mark_pending(FILE_FLAG_ACCEL_WOULD_DENY);
        ALLOW
    }
}
