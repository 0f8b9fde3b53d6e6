//! Least privilege: once the programs are loaded and attached, every thread
//! of the agent drops the capabilities it will never need again.
//!
//! Capabilities are per thread, and the tokio runtime's workers (and other
//! threads, such as the policy watcher's) exist before the programs are
//! loaded. So the calling thread sends a signal to every other thread of
//! the process; each one's handler drops the same set with raw `prctl` and
//! `capset` calls (async-signal-safe: no allocation, no lock), and the
//! caller waits until all have answered. Threads created later inherit the
//! reduced sets. Finally every `/proc/self/task/*/status` is read back, and
//! any thread still holding more than the kept set is an error.
//!
//! Kept (docs/security.md says why each one):
//! `CAP_BPF`, `CAP_PERFMON` (maps, and programs loaded or attached later:
//! uprobes on newly seen TLS libraries), `CAP_NET_ADMIN` (cgroup network
//! programs attached for enforcement), `CAP_SYS_PTRACE` (`/proc/<pid>/exe`,
//! `root`, `ns/*` of other users' processes), `CAP_DAC_READ_SEARCH` (model,
//! library and cgroup files whatever their modes), `CAP_KILL` (`action:
//! kill` from user space), `CAP_CHOWN` only with `sink_group` (the
//! reopened files get the group), and `CAP_SYS_ADMIN` only with
//! `llm_capture.probe_after_start` (the kernel refuses uprobes placed with
//! `CAP_PERFMON` alone). Everything else goes from the effective,
//! permitted, inheritable and ambient sets, and from the bounding set when
//! the agent may shrink it (`CAP_SETPCAP`, then dropped as well).

use std::{
    sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use caps::Capability;

/// The capabilities the running agent keeps; `CAP_SYS_ADMIN` only with
/// `sys_admin` (`llm_capture.probe_after_start`: uprobes placed on TLS
/// libraries found after start-up).
pub fn kept(sink_group: bool, sys_admin: bool) -> Vec<Capability> {
    let mut kept = vec![
        Capability::CAP_BPF,
        Capability::CAP_PERFMON,
        Capability::CAP_NET_ADMIN,
        Capability::CAP_SYS_PTRACE,
        Capability::CAP_DAC_READ_SEARCH,
        Capability::CAP_KILL,
    ];
    if sink_group {
        kept.push(Capability::CAP_CHOWN);
    }
    if sys_admin {
        kept.push(Capability::CAP_SYS_ADMIN);
    }
    kept
}

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("cannot read the process's threads: {0}")]
    Threads(#[source] std::io::Error),
    #[error("cannot install the capability-drop signal handler: {0}")]
    Handler(#[source] std::io::Error),
    #[error("cannot drop capabilities on the main thread: {0}")]
    Capset(#[source] std::io::Error),
    #[error("{threads} threads did not drop their capabilities within 2 s")]
    Timeout { threads: usize },
    #[error("thread {tid} still holds capabilities {mask:#x} beyond the kept set after the drop")]
    Kept { tid: u32, mask: u64 },
}

/// What the drop did, for the start-up log.
#[derive(Debug)]
pub struct Dropped {
    pub threads: usize,
    pub bounding_reduced: bool,
    pub kept: Vec<Capability>,
}

/// The sets a thread applies, as two 32-bit words each (capset's layout).
static KEEP_LOW: AtomicU32 = AtomicU32::new(0);
static KEEP_HIGH: AtomicU32 = AtomicU32::new(0);
static LAST_CAP: AtomicU32 = AtomicU32::new(40);
static ANSWERED: AtomicUsize = AtomicUsize::new(0);
static FAILED: AtomicUsize = AtomicUsize::new(0);
static BOUNDING_REFUSED: AtomicBool = AtomicBool::new(false);

/// Drops, checks and logs: the one call `aiwatch run` makes once the
/// programs are attached.
pub fn apply(sink_group: bool, sys_admin: bool) -> Result<(), PrivilegeError> {
    let dropped = drop_unneeded(sink_group, sys_admin)?;
    let names: Vec<String> = dropped.kept.iter().map(|c| c.to_string()).collect();
    log::info!(
        "capabilities dropped on all {} threads; kept {}{}",
        dropped.threads,
        names.join(" "),
        if dropped.bounding_reduced {
            ""
        } else {
            " (the bounding set stays as given: no CAP_SETPCAP)"
        }
    );
    Ok(())
}

/// Drops every capability but [`kept`] from every thread, and checks it.
pub fn drop_unneeded(sink_group: bool, sys_admin: bool) -> Result<Dropped, PrivilegeError> {
    let kept = kept(sink_group, sys_admin);
    let mask = kept.iter().fold(0u64, |m, c| m | c.bitmask());
    KEEP_LOW.store(mask as u32, Ordering::SeqCst);
    KEEP_HIGH.store((mask >> 32) as u32, Ordering::SeqCst);
    if let Ok(text) = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap") {
        if let Ok(last) = text.trim().parse() {
            LAST_CAP.store(last, Ordering::SeqCst);
        }
    }
    ANSWERED.store(0, Ordering::SeqCst);
    FAILED.store(0, Ordering::SeqCst);
    BOUNDING_REFUSED.store(false, Ordering::SeqCst);

    let signal = libc::SIGRTMIN() + 6;
    install_handler(signal)?;
    // SAFETY: gettid has no preconditions.
    let me = unsafe { libc::gettid() } as u32;
    let mut signalled = 0;
    for tid in threads()? {
        if tid == me {
            continue;
        }
        // SAFETY: tgkill to a thread of our own process; the handler is
        // installed above. A thread that exited meanwhile gives ESRCH.
        let sent = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, signal) };
        if sent == 0 {
            signalled += 1;
        }
    }
    if !drop_on_this_thread() {
        return Err(PrivilegeError::Capset(std::io::Error::last_os_error()));
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while ANSWERED.load(Ordering::SeqCst) < signalled {
        if Instant::now() > deadline {
            return Err(PrivilegeError::Timeout {
                threads: signalled - ANSWERED.load(Ordering::SeqCst),
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    if FAILED.load(Ordering::SeqCst) > 0 {
        return Err(PrivilegeError::Capset(std::io::Error::other(
            "capset failed on a worker thread",
        )));
    }
    let bounding_reduced = !BOUNDING_REFUSED.load(Ordering::SeqCst);
    for status in thread_caps()? {
        let extra = (status.effective | status.permitted | status.inheritable) & !mask;
        let extra_bounding = if bounding_reduced {
            status.bounding & !mask
        } else {
            0
        };
        if extra | extra_bounding != 0 {
            return Err(PrivilegeError::Kept {
                tid: status.tid,
                mask: extra | extra_bounding,
            });
        }
    }
    Ok(Dropped {
        threads: signalled + 1,
        bounding_reduced,
        kept,
    })
}

fn install_handler(signal: i32) -> Result<(), PrivilegeError> {
    extern "C" fn on_signal(_: libc::c_int) {
        if !drop_on_this_thread() {
            FAILED.fetch_add(1, Ordering::SeqCst);
        }
        ANSWERED.fetch_add(1, Ordering::SeqCst);
    }
    // SAFETY: a zeroed sigaction is a valid starting point; the handler only
    // makes async-signal-safe system calls and touches atomics. SA_RESTART
    // keeps interrupted system calls of the worker going.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
            return Err(PrivilegeError::Handler(std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Drops on the calling thread. Async-signal-safe: system calls and atomics.
fn drop_on_this_thread() -> bool {
    let low = KEEP_LOW.load(Ordering::SeqCst);
    let high = KEEP_HIGH.load(Ordering::SeqCst);
    let keep = (u64::from(high) << 32) | u64::from(low);
    // The bounding set first, while CAP_SETPCAP is still effective.
    for cap in 0..=LAST_CAP.load(Ordering::SeqCst) {
        if keep & (1u64 << cap) != 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments only.
        let dropped = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if dropped != 0 {
            // Without CAP_SETPCAP (a container's reduced set), the
            // bounding set stays as the runtime made it.
            BOUNDING_REFUSED.store(true, Ordering::SeqCst);
        }
    }
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        );
    }
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let data = [
        Data {
            effective: low,
            permitted: low,
            inheritable: 0,
        },
        Data {
            effective: high,
            permitted: high,
            inheritable: 0,
        },
    ];
    // Only what we hold can be kept: capset refuses to add.
    let mut held = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: capget/capset with a version-3 header and two data words, as
    // the kernel expects; pid 0 is the calling thread.
    unsafe {
        if libc::syscall(
            libc::SYS_capget,
            &mut header as *mut Header,
            held.as_mut_ptr(),
        ) != 0
        {
            return false;
        }
        let wanted = [
            Data {
                effective: data[0].effective & held[0].permitted,
                permitted: data[0].permitted & held[0].permitted,
                inheritable: 0,
            },
            Data {
                effective: data[1].effective & held[1].permitted,
                permitted: data[1].permitted & held[1].permitted,
                inheritable: 0,
            },
        ];
        header.version = VERSION_3;
        header.pid = 0;
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut Header,
            wanted.as_ptr(),
        ) == 0
    }
}

fn threads() -> Result<Vec<u32>, PrivilegeError> {
    let dir = std::fs::read_dir("/proc/self/task").map_err(PrivilegeError::Threads)?;
    Ok(dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect())
}

/// One thread's capability sets, from `/proc/self/task/<tid>/status`.
#[derive(Debug, Default)]
pub struct ThreadCaps {
    pub tid: u32,
    pub inheritable: u64,
    pub permitted: u64,
    pub effective: u64,
    pub bounding: u64,
    pub ambient: u64,
}

/// Every thread's sets, as the kernel reports them.
pub fn thread_caps() -> Result<Vec<ThreadCaps>, PrivilegeError> {
    let mut all = Vec::new();
    for tid in threads()? {
        let Ok(status) = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")) else {
            continue; // exited
        };
        let mut caps = ThreadCaps {
            tid,
            ..Default::default()
        };
        for line in status.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = u64::from_str_radix(value.trim(), 16).unwrap_or(u64::MAX);
            match key {
                "CapInh" => caps.inheritable = value,
                "CapPrm" => caps.permitted = value,
                "CapEff" => caps.effective = value,
                "CapBnd" => caps.bounding = value,
                "CapAmb" => caps.ambient = value,
                _ => {}
            }
        }
        all.push(caps);
    }
    Ok(all)
}
