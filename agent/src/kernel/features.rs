//! What the running kernel offers, probed once at start-up.
//!
//! aiwatch's core stands on tracepoints, raw tracepoints, ring buffers and
//! cgroup hooks. fentry/fexit, BPF LSM and kprobes would allow more (typed
//! hooks, in-kernel denial at the LSM layer), but kernels refuse them often
//! enough (lockdown, `CONFIG_KPROBES=n`, the `bpf` LSM not active) that
//! nothing depends on them: each missing one is one log line, and the agent
//! runs with what it has. A missing core feature is one clear error.

use std::path::Path;

use aya::{
    maps::MapType,
    programs::{LsmAttachType, ProgramType},
    sys::{is_map_supported, is_program_supported},
};

/// Whether an optional feature can be used, and why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Availability {
    Available,
    Unavailable(String),
}

impl Availability {
    pub fn is_available(&self) -> bool {
        matches!(self, Availability::Available)
    }
}

#[derive(Clone, Debug)]
pub struct KernelFeatures {
    pub fentry: Availability,
    pub lsm: Availability,
    pub kprobes: Availability,
}

#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error("this kernel has no BPF ring buffer (BPF_MAP_TYPE_RINGBUF, Linux 5.8 or later), which aiwatch needs")]
    NoRingBuffer,
    #[error("this kernel does not load BPF tracepoint programs ({0}), which aiwatch needs")]
    NoTracepoints(String),
}

/// Probes the kernel. Fails only when a core feature is missing.
pub fn probe() -> Result<KernelFeatures, FeatureError> {
    match is_map_supported(MapType::RingBuf) {
        Ok(true) => {}
        _ => return Err(FeatureError::NoRingBuffer),
    }
    match is_program_supported(ProgramType::TracePoint) {
        Ok(true) => {}
        Ok(false) => return Err(FeatureError::NoTracepoints("not supported".into())),
        Err(err) => return Err(FeatureError::NoTracepoints(err.to_string())),
    }
    let features = KernelFeatures {
        fentry: program(ProgramType::Tracing),
        lsm: lsm(),
        kprobes: kprobes(),
    };
    Ok(features)
}

impl KernelFeatures {
    /// One line per optional feature this kernel lacks.
    pub fn log(&self) {
        let lines = [
            (
                "fentry/fexit programs",
                &self.fentry,
                "process, file and network events come from tracepoints",
            ),
            (
                "BPF LSM programs",
                &self.lsm,
                "enforcement kills with SIGKILL instead of denying in the LSM",
            ),
            ("kprobes", &self.kprobes, "no probe needs them"),
        ];
        for (name, availability, consequence) in lines {
            let used = if std::ptr::eq(availability, &self.lsm) {
                "used to refuse protected opens and denied execs: file_open, bprm_check_security"
            } else {
                "unused"
            };
            match availability {
                Availability::Available => log::info!("kernel feature: {name} available ({used})"),
                Availability::Unavailable(why) => {
                    log::info!("kernel feature: {name} unavailable ({why}); {consequence}")
                }
            }
        }
    }
}

fn program(program_type: ProgramType) -> Availability {
    match is_program_supported(program_type) {
        Ok(true) => Availability::Available,
        Ok(false) => Availability::Unavailable("not supported by this kernel".into()),
        Err(err) => Availability::Unavailable(format!("load refused: {}", chain(&err))),
    }
}

/// An error and its causes, joined: aya's syscall errors keep the errno in
/// their source.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn lsm() -> Availability {
    let active = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
    if !active.is_empty() && !active.split(',').any(|lsm| lsm.trim() == "bpf") {
        return Availability::Unavailable(format!(
            "the bpf LSM is not active (active: {})",
            active.trim()
        ));
    }
    program(ProgramType::Lsm(LsmAttachType::Mac))
}

fn kprobes() -> Availability {
    let known = [
        "/sys/kernel/tracing/kprobe_events",
        "/sys/kernel/debug/tracing/kprobe_events",
    ]
    .iter()
    .any(|p| Path::new(p).exists())
        || Path::new("/sys/bus/event_source/devices/kprobe").exists();
    if known {
        Availability::Available
    } else {
        Availability::Unavailable("the kernel has no kprobe support (CONFIG_KPROBES)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the real probes: the core features are there on every kernel
    /// aiwatch supports, and the optional ones answer one way or the other
    /// without failing.
    #[test]
    fn probing_this_kernel_succeeds() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            panic!("this test loads BPF programs: run it as root (cargo xtask test)");
        }
        let features = probe().expect("ring buffers and tracepoints");
        for availability in [&features.fentry, &features.lsm, &features.kprobes] {
            if let Availability::Unavailable(why) = availability {
                assert!(!why.is_empty());
            }
        }
    }
}
