//! The fields of `syscalls:sys_enter_*` and `sys_exit_*` records: the
//! syscall number at 8, then the arguments at 16, 8 bytes each; the exit's
//! return value at 16.
//!
//! Arguments are loaded straight from the context, not through
//! `bpf_probe_read`: some of these run for every `sendto`, `mmap` or
//! `ioctl` on the host.

use aya_ebpf::{programs::TracePointContext, EbpfContext};

use crate::plain::read_context;

const ARG0: usize = 16;
const RET: usize = 16;

/// Argument `index`. It must be below the syscall's argument count: the
/// kernel refuses to attach a program that reads past its record.
#[inline(always)]
pub fn arg(ctx: &TracePointContext, index: usize) -> u64 {
    // SAFETY: a load from the tracepoint record. The verifier checks every
    // context access against the record's size when the program is
    // attached, so an out-of-bounds index fails the attach, not the read.
    unsafe { core::ptr::read((ctx.as_ptr() as *const u8).add(ARG0 + 8 * index) as *const u64) }
}

/// All six argument slots, through a checked copy: past the syscall's own
/// arguments they hold whatever follows the record, which a direct load
/// may not touch. Zeros when the copy fails.
#[inline(always)]
pub fn args(ctx: &TracePointContext) -> [u64; 6] {
    read_context(ctx, ARG0).unwrap_or([0; 6])
}

/// The result of a `sys_exit_*` record.
#[inline(always)]
pub fn ret(ctx: &TracePointContext) -> i64 {
    // SAFETY: as in `arg`; every exit record has its `long ret` at 16.
    unsafe { core::ptr::read((ctx.as_ptr() as *const u8).add(RET) as *const i64) }
}
