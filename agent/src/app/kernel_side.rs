//! Start-up of the kernel side for `aiwatch run`: load and attach the
//! programs, fill the interest maps for this host, report which probes are
//! attached, and take out the maps the user-space tasks read.
//!
//! Everything here runs once, before any task starts; the result is
//! [`KernelSide`], whose parts `run` hands to the tasks that own them.

use std::path::Path;

use aiwatch_common::TRACK_ACCEL_ALLOWED;
use aya::{
    maps::{MapData, PerCpuArray, RingBuf},
    Ebpf,
};
use tokio::sync::watch;

use crate::{
    analyze::workload::WorkloadChange,
    app::config::Config,
    enrich::{
        assets::{host_interest, AssetClassifier, AssetError},
        procfs_seed,
    },
    ingest::{
        file_access::{FileAccessPoller, FoldPolicy},
        gpu_ioctl::GpuIoctlPoller,
        queue::RecordSender,
        tcp_summary::PeriodicSummaries,
    },
    kernel::{
        cgroups::CgroupPurpose,
        interest::{InterestError, KernelInterestMaps},
        loader::{self, LoadError, LoadOptions, Loaded, ProbeStatus},
        offsets::VMLINUX_BTF,
        ringbuf_usage::RingUsage,
        scopes::{self, SharedScopes},
        stats::{KernelStats, PendingDrift},
        tls::{self, CaptureError, TlsAttacher},
    },
    metrics::Metrics,
    observe::http::Readiness,
};

#[derive(Debug, thiserror::Error)]
pub enum KernelSetupError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Interest(#[from] InterestError),
    #[error("LLM capture: {0}")]
    Capture(#[from] CaptureError),
    #[error("asset classes: {0}")]
    Assets(#[from] AssetError),
    #[error("the kernel programs lack the map {0}; the object and the agent do not match")]
    MissingMap(&'static str),
}

/// The loaded programs and the parts taken out of them.
pub struct KernelSide {
    /// Keeps the programs attached: dropping it detaches them all.
    pub loaded: Loaded,
    pub interest_maps: KernelInterestMaps,
    pub assets: AssetClassifier,
    pub gpu_poller: GpuIoctlPoller,
    /// Tracked processes' plain reads, folded per directory in the kernel.
    pub file_access: FileAccessPoller,
    pub ring: RingBuf<MapData>,
    pub ring_usage: Option<RingUsage>,
    pub kernel_stats: KernelStats,
    /// Probes attached, of those wanted on this kernel.
    pub attached: usize,
    /// Places the TLS uprobes on libraries found later; `None` when the
    /// LLM family is off.
    pub tls: Option<TlsAttacher>,
}

impl KernelSide {
    pub fn start(
        config: &Config,
        metrics: &Metrics,
        readiness: &Readiness,
    ) -> Result<KernelSide, KernelSetupError> {
        let mut loaded = loader::load(&LoadOptions {
            btf_path: Path::new(VMLINUX_BTF),
            families: config.families.bits(),
            agent_pid: std::process::id(),
            trace_all_files: config.trace_all_files,
            bench_floor: config.bench_floor,
            clear_text_capture: config.llm_capture.kernel_capture_bytes(),
            dns_port: config.names.dns_port,
            plain_ports: config.llm_capture.kernel_plain_ports(),
        })?;
        if config.bench_floor {
            log::warn!(
                "--bench-floor: every kernel program returns at once; no events are reported"
            );
        }
        let (interest_maps, assets, fold_policy) = configure_interest(&mut loaded.ebpf, config)?;
        let gpu_poller = GpuIoctlPoller::from_ebpf(&mut loaded.ebpf)?;
        let file_access = FileAccessPoller::from_ebpf(&mut loaded.ebpf, fold_policy)?;
        let tls = attach_tls(&mut loaded, config)?;
        let attached = report_probes(&loaded, metrics, readiness);

        let ring = loaded
            .ebpf
            .take_map("EVENTS")
            .ok_or(KernelSetupError::MissingMap("EVENTS"))?;
        if let aya::maps::Map::RingBuf(data) = &ring {
            match data.info() {
                Ok(info) => metrics.set_ringbuf_size_bytes(u64::from(info.max_entries())),
                Err(err) => log::warn!("aiwatch_ringbuf_size_bytes stays at 0: cannot read the ring buffer's size: {err}"),
            }
        }
        let ring = RingBuf::try_from(ring).map_err(|_| KernelSetupError::MissingMap("EVENTS"))?;
        let ring_usage = match RingUsage::new(&ring) {
            Ok(usage) => Some(usage),
            Err(err) => {
                log::warn!("aiwatch_ringbuf_used_bytes stays at 0: cannot map the ring buffer's positions: {err}");
                None
            }
        };
        let kernel_stats = loaded
            .ebpf
            .take_map("STATS")
            .ok_or(KernelSetupError::MissingMap("STATS"))?;
        let kernel_stats: PerCpuArray<MapData, u64> = PerCpuArray::try_from(kernel_stats)
            .map_err(|_| KernelSetupError::MissingMap("STATS"))?;
        let pending_drift = match PendingDrift::from_ebpf(&mut loaded.ebpf) {
            Ok(drift) => Some(drift),
            Err(map) => {
                log::warn!(
                    "the kernel programs lack {map}: evicted pending entries are not counted"
                );
                None
            }
        };
        Ok(KernelSide {
            loaded,
            interest_maps,
            assets,
            gpu_poller,
            file_access,
            ring,
            ring_usage,
            kernel_stats: KernelStats::new(kernel_stats, pending_drift),
            attached,
            tls,
        })
    }
}

/// Exports which probes are attached and sets readiness; returns how many
/// are. Probes of a family turned off, for syscalls this kernel does not
/// have, or with nothing to attach to on this host (no TLS library yet) are
/// not wanted, nor are the BPF LSM programs on a kernel without the `bpf`
/// LSM: exporting them as 0 would page forever
/// (AiwatchProbeNotAttached) about something that cannot be fixed.
fn report_probes(loaded: &Loaded, metrics: &Metrics, readiness: &Readiness) -> usize {
    let wanted = || {
        loaded.probes.iter().filter(|p| {
            !matches!(
                p.reason.as_deref(),
                Some(loader::FAMILY_OFF)
                    | Some(loader::NOT_IN_KERNEL)
                    | Some(loader::NO_TARGET)
                    | Some(loader::NO_BPF_LSM)
            )
        })
    };
    for probe in wanted() {
        metrics.set_probe_attached(probe.probe, probe.attached);
    }
    let attached = loaded.probes.iter().filter(|p| p.attached).count();
    readiness.set_probes_attached(attached == wanted().count());
    attached
}

/// Fills the kernel's LLM capture settings and places the TLS uprobes on
/// the system's and the configured libraries; their statuses join the
/// other probes'. Libraries that processes map are offered later, as the
/// library scans find them (`analyze`).
fn attach_tls(
    loaded: &mut Loaded,
    config: &Config,
) -> Result<Option<TlsAttacher>, KernelSetupError> {
    if !config.families.llm {
        loaded
            .probes
            .extend(tls::UPROBES.iter().map(|(program, _)| ProbeStatus {
                probe: program,
                attached: false,
                reason: Some(loader::FAMILY_OFF.into()),
            }));
        return Ok(None);
    }
    tls::configure(&mut loaded.ebpf, &config.llm_capture)?;
    let targets = tls::configured_targets(&config.llm_capture);
    let (attacher, statuses) = TlsAttacher::start(&mut loaded.ebpf, &targets);
    log::info!(
        "LLM capture: {} request lines, {} bytes per call",
        config.llm_capture.request_lines.len(),
        config.llm_capture.kernel_capture_bytes(),
    );
    loaded.probes.extend(statuses);
    Ok(Some(attacher))
}

/// Builds the classifier the run uses (built-in patterns plus the configured
/// GPU majors), takes the interest maps out of `ebpf` and fills them for
/// this host.
fn configure_interest(
    ebpf: &mut Ebpf,
    config: &Config,
) -> Result<(KernelInterestMaps, AssetClassifier, FoldPolicy), KernelSetupError> {
    let classifier = AssetClassifier::new(&config.assets)?;
    let interest = host_interest(&classifier, &config.assets.gpu_majors);
    let mut maps = KernelInterestMaps::from_ebpf(ebpf)?;
    let applied = maps.apply(&interest)?;
    log::info!(
        "kernel file interest: {} path prefixes, {} extensions and base names, {} GPU majors{}",
        applied.prefixes,
        applied.suffixes,
        applied.gpu_majors,
        if config.trace_all_files {
            " (trace_all_files: every process is reported)"
        } else {
            ""
        }
    );
    for skipped in &applied.skipped {
        log::warn!("the kernel prefilter cannot test {skipped}: untracked processes' uses of it are not seen");
    }
    for glob in &interest.unfilterable {
        log::warn!("asset pattern {glob:?} has no kernel prefilter: only tracked processes' matches are seen");
    }
    Ok((maps, classifier, FoldPolicy::new(&interest)))
}

/// Mirrors workload membership into the kernel's tracking maps: a workload's
/// processes get every event, the rest of the host only what its filters
/// let through. The kernel adds children of tracked processes at fork; a
/// declared container workload's cgroup is tracked as a whole, so a process
/// entering the container (`podman exec`, `kubectl exec`) is reported from
/// its first instruction, before the agent has seen it.
///
/// Each process and cgroup also carries its workload's enforcement scope
/// (`kernel::scopes`), which the kernel's enforcement maps are keyed by.
pub fn track_workloads(
    maps: &mut KernelInterestMaps,
    scopes: &SharedScopes,
    changes: &[WorkloadChange],
) {
    for change in changes {
        log::debug!("workload change: {change:?}");
        let result = match change {
            WorkloadChange::Joined {
                pid,
                holds_container,
                workload,
                declared,
            } => {
                let scope = scopes::lock(scopes).scope(&workload.name);
                // Declared workloads may open accelerators under
                // accelerator deny; discovered ones never.
                let purposes = if *declared { TRACK_ACCEL_ALLOWED } else { 0 };
                maps.track_pid(*pid, purposes, scope).and_then(|()| {
                    if !*holds_container {
                        return Ok(());
                    }
                    match procfs_seed::cgroup_id(*pid) {
                        Some(id) => {
                            maps.hold_cgroup(*pid, id, CgroupPurpose::DeclaredContainer, scope)
                        }
                        // It exited already: its Left follows.
                        None => Ok(()),
                    }
                })
            }
            WorkloadChange::Left { pid, .. } => maps
                .untrack_pid(*pid)
                .and_then(|()| maps.release_cgroup(*pid)),
            WorkloadChange::Reclassified { .. } => Ok(()),
        };
        if let Err(err) = result {
            log::warn!("cannot update the kernel's tracked processes: {err}");
        }
    }
}

/// Starts the periodic summaries of open TCP connections, if configured and
/// the network family is on. A failure costs only the periodic reports.
pub fn start_tcp_summaries(
    ebpf: &std::sync::Arc<std::sync::Mutex<Ebpf>>,
    config: &Config,
    queue: RecordSender,
    stats: std::sync::Arc<crate::metrics::pipeline_stats::PipelineStats>,
    shutdown: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    if config.tcp_summary_interval_secs == 0 || !config.families.network {
        return None;
    }
    let interval = std::time::Duration::from_secs(config.tcp_summary_interval_secs);
    match PeriodicSummaries::setup(ebpf.clone(), interval) {
        Ok(periodic) => Some(tokio::spawn(periodic.run(queue, stats, shutdown))),
        Err(err) => {
            log::warn!("open TCP connections are reported at close only: {err}");
            None
        }
    }
}
