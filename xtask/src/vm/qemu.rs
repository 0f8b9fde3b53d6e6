//! Boots a guest under QEMU's TCG (KVM guests hang on this machine kind),
//! streams its serial console to the terminal and to
//! `<target>/vm/console-<label>.log`, and kills it once its time budget has
//! passed. The guest's verdict is QEMU's exit status through the
//! `isa-debug-exit` device: QEMU's own status says nothing about the guest.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use super::{
    guest::{DEBUG_EXIT_PORT, FAIL_VALUE, MARK, PASS_VALUE},
    kernel::Kernel,
    CgroupLayout, GuestKernel,
};
use crate::workspace::Workspace;

/// Guest memory: the initramfs (about 300 MB) is unpacked into it.
const MEMORY_MB: u32 = 3072;
const CPUS: u32 = 2;
/// BPF LSM is active only when `bpf` is on the kernel's LSM list.
const LSMS: &str = "lockdown,capability,landlock,yama,bpf";

/// What a guest run left.
#[derive(Debug)]
pub struct Outcome {
    /// The guest's verdict from `isa-debug-exit`: `None` when the guest
    /// ended another way (crash, power-off without a verdict, timeout).
    pub verdict: Option<bool>,
    pub timed_out: bool,
    /// The console lines that start with the guest's mark, without it.
    pub marked: Vec<String>,
    pub elapsed: Duration,
}

/// Boots `kernel` with `initrd` and waits at most `budget`.
pub fn boot(
    workspace: &Workspace,
    kernel: &Kernel,
    guest: &GuestKernel,
    initrd: &std::path::Path,
    budget: Duration,
) -> anyhow::Result<Outcome> {
    let mut append = format!("console=ttyS0 panic=-1 quiet lsm={LSMS}");
    if guest.cgroups == CgroupLayout::Unified {
        append.push_str(" cgroup_no_v1=all");
    }
    let log_path = workspace
        .target_dir
        .join(format!("vm/console-{}.log", guest.label));
    let mut log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    println!(
        "vm: booting {} under TCG (budget {} min), console in {}",
        kernel.release,
        budget.as_secs() / 60,
        log_path.display()
    );
    let started = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-accel", "tcg", "-nodefaults", "-no-reboot"])
        .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
        .args(["-m", &MEMORY_MB.to_string(), "-smp", &CPUS.to_string()])
        .arg("-kernel")
        .arg(&kernel.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", &append])
        .args([
            "-device",
            &format!("isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x04"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start qemu-system-x86_64")?;
    let pid = child.id();
    let finished = Arc::new(AtomicBool::new(false));
    let timed_out = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let finished = finished.clone();
        let timed_out = timed_out.clone();
        thread::spawn(move || {
            while started.elapsed() < budget {
                if finished.load(Ordering::Relaxed) {
                    return;
                }
                thread::sleep(Duration::from_millis(500));
            }
            timed_out.store(true, Ordering::Relaxed);
            // SAFETY: kill has no memory preconditions; pid is our QEMU,
            // not yet reaped (the main thread waits only after its output
            // closes, which killing it causes).
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        })
    };
    let mut marked = Vec::new();
    let stdout = child.stdout.take().context("QEMU's output")?;
    for line in BufReader::new(stdout).split(b'\n') {
        let Ok(line) = line else { break };
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches('\r');
        let _ = writeln!(log, "{text}");
        println!("[{}] {text}", guest.label);
        if let Some(rest) = text.strip_prefix(MARK) {
            marked.push(rest.trim().to_owned());
        }
    }
    let status = child.wait().context("waiting for QEMU")?;
    finished.store(true, Ordering::Relaxed);
    let _ = watchdog.join();
    let timed_out = timed_out.load(Ordering::Relaxed);
    let verdict = match status.code() {
        Some(code) if code == i32::from(PASS_VALUE) << 1 | 1 => Some(true),
        Some(code) if code == i32::from(FAIL_VALUE) << 1 | 1 => Some(false),
        _ => None,
    };
    if verdict.is_none() {
        eprintln!(
            "vm: the {} guest ended without a verdict ({status}{})",
            guest.label,
            if timed_out {
                ", killed at its time budget"
            } else {
                ""
            }
        );
    }
    Ok(Outcome {
        verdict,
        timed_out,
        marked,
        elapsed: started.elapsed(),
    })
}
