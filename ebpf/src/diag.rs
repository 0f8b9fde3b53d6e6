//! Rare diagnostics of the kernel side, forwarded to the agent's log by
//! aya-log (the agent drains them with `aya_log::EbpfLogger`, see
//! `agent/src/kernel/loader.rs`).
//!
//! Only conditions that a healthy host should not show, and never on a hot
//! path: a path deeper than the kernel walk follows, a full pending table.
//! What happened is also in the data (the path's truncated flag, the
//! `PendingLost` counter); the message says why, once. Each diagnostic is
//! rate-limited to one message per second, so a process that hits one in a
//! loop cannot flood the log.

use aiwatch_common::EventKind;
use aya_ebpf::{helpers::bpf_ktime_get_boot_ns, macros::map, maps::Array};
use aya_log_ebpf::warn;

/// The diagnostics, each with its own rate limit.
#[derive(Clone, Copy)]
#[repr(u32)]
enum Diagnostic {
    PathCut = 0,
    PendingFull = 1,
}

const DIAGNOSTICS: u32 = 2;
const INTERVAL_NS: u64 = 1_000_000_000;

/// When each diagnostic was last logged (boot-clock ns).
#[map]
static DIAGNOSTIC_LAST: Array<u64> = Array::with_max_entries(DIAGNOSTICS, 0);

/// Whether `diagnostic` may be logged now; if so, starts its next interval.
#[inline(always)]
fn due(diagnostic: Diagnostic) -> bool {
    let Some(last) = DIAGNOSTIC_LAST.get_ptr_mut(diagnostic as u32) else {
        return false;
    };
    // SAFETY: the helper takes no argument.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    // SAFETY: `last` points into a map value, valid while the program runs.
    // Two CPUs may race here and both log within one interval: harmless.
    unsafe {
        if *last != 0 && now.wrapping_sub(*last) < INTERVAL_NS {
            return false;
        }
        *last = now;
    }
    true
}

/// A path walk stopped at its depth limit or out of room: the path is a
/// suffix of the real one.
///
/// Not inlined: a log call site is about 4 KB of instructions, and this one
/// would otherwise be copied into every program that walks a path. As a
/// BPF-to-BPF call it exists once per program and costs nothing until the
/// rare branch calls it.
#[inline(never)]
pub fn path_cut(pid: u32, depth: u32, len: u32) {
    if due(Diagnostic::PathCut) {
        // The macros take a context argument they do not use yet; the walk
        // runs in several program types, so none is passed.
        warn!(
            &(),
            "kernel: the path walk for pid {} stopped at its limit after {} components ({} bytes); the event's path is incomplete",
            pid,
            depth,
            len
        );
    }
}

/// A syscall's entry could not be stored until its exit: the event is lost
/// (and counted as `PendingLost`). Not inlined, as [`path_cut`].
#[inline(never)]
pub fn pending_full(pid: u32, kind: EventKind) {
    if due(Diagnostic::PendingFull) {
        warn!(
            &(),
            "kernel: the pending table is full; a {} event of pid {} is lost", kind as u16, pid
        );
    }
}
