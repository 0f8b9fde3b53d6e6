//! Loading the kernel programs, configuring them, and attaching them.
//!
//! The object is built by `build.rs` and embedded in the binary. Before the
//! verifier sees it, the loader writes the load-time globals: struct offsets
//! from this kernel's BTF, the agent's own pid, and the enabled families.
//! Each probe is attached on its own; a probe that cannot attach is reported
//! in one log line and in [`ProbeStatus`], and the agent runs with the rest,
//! unless it is one the pipeline cannot do without.

use std::{io::ErrorKind, os::fd::AsRawFd as _, panic::AssertUnwindSafe, path::Path};

use aiwatch_common::{KernelOffsets, FAMILY_FILE, OFFSET_UNKNOWN};
use aya::{
    programs::{
        CgroupAttachMode, CgroupDevice, CgroupSkb, CgroupSockAddr, Lsm, ProgramError,
        RawTracePoint, TracePoint,
    },
    sys::SyscallError,
    Btf, Ebpf, EbpfError, EbpfLoader, Endianness,
};

use crate::kernel::{
    features::{self, Availability, FeatureError},
    offsets::{self, OffsetError},
    probe_table::{Attach, Probe, PROBES},
};

/// The compiled kernel programs.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/aiwatch"));

/// The reason given for probes of families the configuration turned off.
pub const FAMILY_OFF: &str = "family disabled in the configuration";

/// The reason given for optional probes whose tracepoint this kernel lacks
/// (e.g. `init_module` on a kernel built without module support).
pub const NOT_IN_KERNEL: &str = "this kernel has no such tracepoint";

/// The reason given for uprobes with nothing to attach to on this host (no
/// TLS library found yet): not a fault, so neither unready nor paged about.
pub const NO_TARGET: &str = "no TLS library found to probe";

/// The reason given for the BPF LSM programs where the kernel does not run
/// the `bpf` LSM: enforcement keeps its signal paths (`docs/enforcement.md`).
pub const NO_BPF_LSM: &str = "this kernel does not run BPF LSM programs";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeStatus {
    pub probe: &'static str,
    pub attached: bool,
    /// Why it is not attached.
    pub reason: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("aiwatch must run as root to load eBPF programs (it runs as uid {0})")]
    NotRoot(u32),
    #[error(transparent)]
    Offsets(#[from] OffsetError),
    #[error(transparent)]
    Features(#[from] FeatureError),
    #[error(
        "this aiwatch binary was built without its eBPF programs (AYA_BUILD_SKIP); rebuild it \
         with `cargo xtask build`"
    )]
    NoObject,
    #[error("the kernel refused aiwatch's eBPF programs: {0}")]
    Load(#[source] EbpfError),
    #[error("cannot attach the required probe {probe}: {source}")]
    Attach {
        probe: &'static str,
        #[source]
        source: ProgramError,
    },
}

pub struct LoadOptions<'a> {
    pub btf_path: &'a Path,
    /// `FAMILY_*` bits to enable.
    pub families: u32,
    /// The pid the kernel side ignores: the agent itself.
    pub agent_pid: u32,
    /// Report every process's file operations (`trace_all_files`).
    pub trace_all_files: bool,
    /// Load every program as `return 0` (the benchmark floor: the same
    /// hooks, none of the work). Set by `aiwatch run --bench-floor`.
    pub bench_floor: bool,
    /// Bytes of each TLS call's clear text copied into a record.
    pub clear_text_capture: u32,
    /// The port DNS queries and answers are read on (`names.dns_port`).
    pub dns_port: u16,
    /// The model-server ports plain HTTP is read on
    /// (`llm_capture.plain_ports`), 0 in unused slots.
    pub plain_ports: [u16; aiwatch_common::PLAIN_PORTS_MAX],
}

pub struct Loaded {
    pub ebpf: Ebpf,
    pub probes: Vec<ProbeStatus>,
    /// Offsets this kernel's BTF lacks; the fields that need them are absent.
    pub missing_offsets: Vec<&'static str>,
}

/// Loading eBPF programs needs root: the one check, made first.
pub fn require_root() -> Result<(), LoadError> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(LoadError::NotRoot(euid));
    }
    Ok(())
}

pub fn load(options: &LoadOptions<'_>) -> Result<Loaded, LoadError> {
    require_root()?;
    if OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    let resolved = offsets::resolve(options.btf_path)?;
    let features = features::probe()?;
    features.log();
    for missing in &resolved.missing {
        log::warn!("kernel BTF has no {missing}: the fields that need it will be absent");
    }
    raise_memlock_limit();
    ensure_tracefs();

    // One parse of the kernel's BTF serves the loader's relocations and the
    // LSM hooks' prototypes; left to itself, aya reads it for each.
    let kernel_btf = match Btf::parse_file(options.btf_path, Endianness::default()) {
        Ok(btf) => Some(btf),
        Err(err) => {
            log::warn!(
                "cannot parse the kernel BTF at {} for the loader: {err}; programs that need it will not load",
                options.btf_path.display()
            );
            None
        }
    };

    let offsets: KernelOffsets = resolved.offsets;
    let open = |direct_reads: bool| {
        EbpfLoader::new()
            .btf(kernel_btf.as_ref())
            .override_global("OFFSETS", &offsets, true)
            .override_global("AGENT_PID", &options.agent_pid, true)
            .override_global("FAMILIES", &options.families, true)
            .override_global("FILE_TRACE_ALL", &u32::from(options.trace_all_files), true)
            .override_global("FLOOR", &u32::from(options.bench_floor), true)
            .override_global("CLEAR_TEXT_CAPTURE", &options.clear_text_capture, true)
            .override_global("DNS_PORT", &options.dns_port, true)
            .override_global("LLM_PLAIN_PORTS", &options.plain_ports, true)
            .override_global("DIRECT_READS", &u32::from(direct_reads), true)
            .load(OBJECT)
            .map_err(LoadError::Load)
    };
    // Direct loads of kernel fields (`ebpf/src/direct.rs`) need offsets
    // this kernel may lack, and a verifier that follows typed pointers
    // through arrays: the open exit tries them first, and on refusal every
    // program is loaded again without them.
    let direct_reads = offsets.files_fdtab != OFFSET_UNKNOWN
        && offsets.files_fd_array != OFFSET_UNKNOWN
        && options.families & FAMILY_FILE != 0
        && !options.bench_floor;
    let mut ebpf = open(direct_reads)?;
    if direct_reads {
        match load_tracepoint(&mut ebpf, DIRECT_READS_PROGRAM) {
            Ok(()) => log::info!("file exits read kernel fields directly"),
            Err(err) => {
                log::warn!(
                    "this kernel refuses direct loads of kernel fields ({err}); \
                     tracked processes' reads are folded with checked reads"
                );
                ebpf = open(false)?;
            }
        }
    }
    // The object is parsed: `ebpf` owns copies of what it needs.
    release_object_pages();
    // Before any other program is loaded: the programs refer to the log
    // map's fd, which the logger owns from here on.
    forward_kernel_log(&mut ebpf);

    let mut probes = Vec::with_capacity(PROBES.len());
    for probe in PROBES {
        let status = if probe.family != 0 && options.families & probe.family == 0 {
            ProbeStatus {
                probe: probe.name(),
                attached: false,
                reason: Some("family disabled in the configuration".into()),
            }
        } else if let (Attach::Lsm(_), Availability::Unavailable(why)) =
            (probe.attach, &features.lsm)
        {
            log::info!("probe {} not attached: {why}", probe.name());
            ProbeStatus {
                probe: probe.name(),
                attached: false,
                reason: Some(NO_BPF_LSM.into()),
            }
        } else if !probe.required && !tracepoint_exists(probe) {
            // One line per kernel difference: the start-up log says what
            // this kernel lacks, not only how many probes are missing.
            log::info!("probe {} not attached: {NOT_IN_KERNEL}", probe.name());
            ProbeStatus {
                probe: probe.name(),
                attached: false,
                reason: Some(NOT_IN_KERNEL.into()),
            }
        } else {
            let started = std::time::Instant::now();
            let attached = attach(&mut ebpf, probe, kernel_btf.as_ref());
            log::debug!(
                "probe {} loaded and attached in {} µs",
                probe.name(),
                started.elapsed().as_micros()
            );
            match attached {
                Ok(()) => ProbeStatus {
                    probe: probe.name(),
                    attached: true,
                    reason: None,
                },
                Err(source) if probe.required => {
                    return Err(LoadError::Attach {
                        probe: probe.name(),
                        source,
                    });
                }
                Err(err) => {
                    log::warn!("probe {} is not attached: {err}", probe.name());
                    ProbeStatus {
                        probe: probe.name(),
                        attached: false,
                        reason: Some(err.to_string()),
                    }
                }
            }
        };
        probes.push(status);
    }
    Ok(Loaded {
        ebpf,
        probes,
        missing_offsets: resolved.missing,
    })
}

/// Unmaps the embedded object's pages from the agent once it is parsed.
///
/// Parsing reads all of its megabytes, and the pages stay mapped (and in
/// the agent's RSS) for its whole life though nothing reads them again.
/// Given back, they are the page cache's to reclaim; a later read (none is
/// made) would fault them in again from the executable.
fn release_object_pages() {
    // SAFETY: sysconf has no preconditions.
    let Ok(page) = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }) else {
        return;
    };
    if page == 0 {
        return;
    }
    let start = (OBJECT.as_ptr() as usize).next_multiple_of(page);
    let end = (OBJECT.as_ptr() as usize + OBJECT.len()) / page * page;
    if end <= start {
        return;
    }
    // SAFETY: `start..end` is whole pages inside `OBJECT`, a read-only
    // static in the executable's private file mapping: no page of it was
    // ever written, so dropping them loses nothing, and any later read
    // faults in the same bytes from the file. No reference into the range
    // is used while the call runs (this thread makes it, and the loader's
    // output owns copies).
    let result =
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    if result != 0 {
        log::debug!(
            "cannot release the eBPF object's pages: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// The program whose verification says whether direct loads work here: the
/// one attached to the three open exits.
const DIRECT_READS_PROGRAM: &str = "exit_open";

/// Loads (verifies) one tracepoint program without attaching it.
fn load_tracepoint(ebpf: &mut Ebpf, name: &str) -> Result<(), ProgramError> {
    let program: &mut TracePoint = ebpf
        .program_mut(name)
        .ok_or(ProgramError::UnexpectedProgramType)?
        .try_into()?;
    program.load()
}

fn attach(ebpf: &mut Ebpf, probe: &Probe, kernel_btf: Option<&Btf>) -> Result<(), ProgramError> {
    let program = ebpf
        .program_mut(probe.program)
        .ok_or_else(|| ProgramError::UnexpectedProgramType)?;
    match probe.attach {
        Attach::Tracepoint(category, name) => {
            let program: &mut TracePoint = program.try_into()?;
            // The direct-reads check may have loaded it already.
            if program.fd().is_err() {
                program.load()?;
            }
            program.attach(category, name)?;
        }
        Attach::Raw(name) => {
            let program: &mut RawTracePoint = program.try_into()?;
            program.load()?;
            program.attach(name)?;
        }
        Attach::CgroupRoot => {
            let root = cgroup2_root().map_err(|io_error| SyscallError {
                call: "find the cgroup v2 hierarchy",
                io_error,
            })?;
            let program: &mut CgroupSockAddr = program.try_into()?;
            program.load()?;
            // aya passes the mode as the link's flags, which must be 0 for
            // a cgroup link; the kernel runs link-attached programs as
            // "multi", so programs other tools attach below the root
            // (systemd, container runtimes) keep running beside ours.
            program.attach(&root, CgroupAttachMode::Single)?;
        }
        Attach::CgroupDeviceRoot => {
            let root = cgroup2_root().map_err(|io_error| SyscallError {
                call: "find the cgroup v2 hierarchy",
                io_error,
            })?;
            let program: &mut CgroupDevice = program.try_into()?;
            program.load()?;
            // As above: a link, run beside the device programs systemd and
            // container runtimes attach below the root; any of them
            // refusing an access refuses it.
            program.attach(&root, CgroupAttachMode::Single)?;
        }
        Attach::CgroupSkb(direction) => {
            let program: &mut CgroupSkb = program.try_into()?;
            program.load()?;
            let root = cgroup2_root().map_err(|io_error| SyscallError {
                call: "find the cgroup v2 hierarchy",
                io_error,
            })?;
            // A link: cgroup links always run next to the cgroup's other
            // programs, and the link API refuses the multi flag itself.
            program.attach(root, direction, CgroupAttachMode::Single)?;
        }
        Attach::Lsm(hook) => {
            // The hook's prototype is looked up in the kernel's own BTF
            // (the offsets were resolved from the same file).
            let btf = kernel_btf.ok_or_else(|| {
                ProgramError::SyscallError(SyscallError {
                    call: "read the kernel BTF for an LSM hook",
                    io_error: std::io::Error::other("the kernel BTF could not be parsed"),
                })
            })?;
            let program: &mut Lsm = program.try_into()?;
            program.load(hook, btf)?;
            program.attach()?;
        }
    }
    Ok(())
}

/// Opens the root of the cgroup v2 hierarchy: the first `cgroup2` mount
/// (`/sys/fs/cgroup` on unified hosts, `/sys/fs/cgroup/unified` on hybrid
/// ones, elsewhere if the host says so).
pub fn cgroup2_root() -> std::io::Result<std::fs::File> {
    let mounts = procfs::mounts().map_err(std::io::Error::other)?;
    let mount = mounts
        .iter()
        .find(|m| m.fs_vfstype == "cgroup2")
        .ok_or_else(|| {
            std::io::Error::new(ErrorKind::NotFound, "no cgroup2 file system is mounted")
        })?;
    std::fs::File::open(&mount.fs_file)
}

/// Whether a classic tracepoint exists (raw tracepoints are assumed to).
fn tracepoint_exists(probe: &Probe) -> bool {
    let Attach::Tracepoint(category, name) = probe.attach else {
        return true;
    };
    let roots = [
        "/sys/kernel/tracing/events",
        "/sys/kernel/debug/tracing/events",
    ];
    let Some(root) = roots.iter().find(|r| Path::new(r).exists()) else {
        // Cannot tell: let the attach report the problem.
        return true;
    };
    Path::new(root).join(category).join(name).exists()
}

/// Forwards the kernel side's rare diagnostics (`ebpf/src/diag.rs`, written
/// with aya-log) to this process's log, from a thread of their own that
/// sleeps in `poll` until a record arrives.
///
/// The thread owns the logger for the agent's whole life: dropping it would
/// close the map's fd, and loading a program that logs would then fail
/// with EBADF.
fn forward_kernel_log(ebpf: &mut Ebpf) {
    let mut logger = match aya_log::EbpfLogger::init(ebpf) {
        Ok(logger) => logger,
        Err(err) => {
            log::warn!("the kernel programs' diagnostics are not forwarded: {err}");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("kernel-log".into())
        .spawn(move || loop {
            let mut poll = libc::pollfd {
                fd: logger.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, owned by this frame, for the call.
            let ready = unsafe { libc::poll(&mut poll, 1, -1) };
            if ready < 0 && std::io::Error::last_os_error().kind() != ErrorKind::Interrupted {
                log::warn!(
                    "stopped forwarding the kernel programs' diagnostics: poll failed: {}",
                    std::io::Error::last_os_error()
                );
                return;
            }
            // aya-log panics on a record it cannot parse; the records come
            // from our own programs, but one bad record must not end the
            // forwarding. The record is consumed either way.
            if std::panic::catch_unwind(AssertUnwindSafe(|| logger.flush())).is_err() {
                log::warn!("a kernel diagnostic record could not be decoded and was skipped");
            }
        });
    if let Err(err) = spawned {
        log::warn!("the kernel programs' diagnostics are not forwarded: no thread: {err}");
    }
}

/// Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK.
fn raise_memlock_limit() {
    let limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) } != 0 {
        log::debug!(
            "cannot raise RLIMIT_MEMLOCK; fine on kernels that account BPF memory by cgroup"
        );
    }
}

/// Tracepoint attachment reads event ids from tracefs; mount it if needed.
fn ensure_tracefs() {
    let candidates = [
        "/sys/kernel/tracing/events",
        "/sys/kernel/debug/tracing/events",
    ];
    if candidates.iter().any(|p| Path::new(p).exists()) {
        return;
    }
    // SAFETY: plain C strings; mount(2) copies them.
    let rc = unsafe {
        libc::mount(
            c"none".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    match rc {
        0 => log::info!("mounted tracefs at /sys/kernel/tracing"),
        _ => log::warn!("tracefs is not mounted and mounting it failed: tracepoints cannot attach"),
    }
}
