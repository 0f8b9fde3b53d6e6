//! Detaching every program at shutdown, side by side.
//!
//! Detaching a tracepoint or uprobe program waits for a grace period of the
//! kernel's (tasks-trace RCU) before it returns, so dropping the `Ebpf`
//! object, which detaches its ninety-odd programs one after the other, kept
//! a stopping agent alive for 6 to 9 seconds on a quiet 2-core host. Waits
//! that start together share grace periods: detaching every program from
//! its own thread brought SIGTERM-to-exit down to 3.6 seconds there. What
//! remains is the kernel unregistering each tracepoint that no one else
//! uses, one at a time under a single lock. Every restart by systemd or the
//! kubelet, and every test's agent, pays this wait.

use std::thread;

use aya::{
    programs::{Program, ProgramError},
    Ebpf,
};

/// At most this many threads detach at once; below it, one per program.
/// Each is short-lived, with a small stack, and spends its life asleep.
const MAX_DETACH_THREADS: usize = 128;

/// Detaches and unloads every loaded program of `ebpf`, one thread per
/// program. The maps stay until `ebpf` is dropped.
pub fn detach_all(ebpf: &mut Ebpf) {
    let mut programs: Vec<(&str, &mut Program)> = ebpf.programs_mut().collect();
    if programs.is_empty() {
        return;
    }
    let per_thread = programs.len().div_ceil(MAX_DETACH_THREADS);
    thread::scope(|scope| {
        for chunk in programs.chunks_mut(per_thread) {
            let spawned = thread::Builder::new()
                .name("detach".into())
                .stack_size(64 * 1024)
                .spawn_scoped(scope, move || {
                    for (name, program) in chunk.iter_mut() {
                        unload(name, program);
                    }
                });
            // A thread the system refuses leaves its programs to the drop
            // of `ebpf`, which detaches them one by one.
            if let Err(err) = spawned {
                log::debug!("detaching on this thread only: cannot start a thread: {err}");
            }
        }
    });
}

fn unload(name: &str, program: &mut Program) {
    let result = match program {
        Program::TracePoint(p) => p.unload(),
        Program::RawTracePoint(p) => p.unload(),
        Program::BtfTracePoint(p) => p.unload(),
        Program::UProbe(p) => p.unload(),
        Program::CgroupSockAddr(p) => p.unload(),
        Program::CgroupSkb(p) => p.unload(),
        Program::CgroupDevice(p) => p.unload(),
        Program::Lsm(p) => p.unload(),
        Program::Iter(p) => p.unload(),
        // No other kind is loaded; dropping `ebpf` unloads it if one is.
        _ => Ok(()),
    };
    match result {
        // Programs that a disabled family or a kernel without their hook
        // left unloaded.
        Ok(()) | Err(ProgramError::NotLoaded) => {}
        Err(err) => log::debug!("program {name} did not unload cleanly: {err}"),
    }
}
