//! `aiwatch run`: wires the pipeline together and runs it until a signal.
//!
//! kernel → ring buffer → [`reader`] (decode) → queue → pipeline task
//! ([`crate::app::pipeline`]: enrich, then rules and detectors) → sinks, with the
//! HTTP listener and the telemetry task on the side.
//!
//! Shutdown on SIGINT or SIGTERM: the reader drains the ring and stops, the
//! pipeline drains its queue, the sinks flush, and the programs are detached
//! when the `Ebpf` object is dropped last.

use std::{
    path::Path,
    sync::{Arc, Mutex},
};

use aya::maps::{MapData, PerCpuArray, RingBuf};
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::{mpsc, watch},
};

use crate::{
    alert::Alert,
    analyze::workload::WorkloadChange,
    analyze::{AnalyzeError, Analyzer},
    app::config::{Config, ConfigError},
    app::pipeline::{InventorySnapshot, Pipeline},
    clock::BootClock,
    enrich::{Enricher, TableLimits},
    event::Event,
    ingest::decode::Record,
    ingest::reader,
    kernel::loader::{self, LoadError, LoadOptions},
    kernel::offsets::VMLINUX_BTF,
    kernel::stats::KernelStats,
    metrics::pipeline_stats::PipelineStats,
    metrics::{Metrics, MetricsConfig, MetricsError},
    observe::http::{HttpError, HttpOptions, HttpServer, HttpState, InventoryProvider, Readiness},
    observe::telemetry,
    policy::{reload::ReloadError, spawn_reloader, PolicyEngine, PolicyErrors, PolicySet},
    sink::{self, OpenError},
};

/// Command-line settings that override the configuration file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub events: Option<String>,
    pub alerts: Option<String>,
    pub listen: Option<std::net::SocketAddr>,
    /// Load the kernel programs as the benchmark floor (`--bench-floor`).
    pub bench_floor: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Sink(#[from] OpenError),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Analyze(#[from] AnalyzeError),
    #[error("the policies have errors:\n{0}")]
    Policy(#[from] PolicyErrors),
    #[error(transparent)]
    Reload(#[from] ReloadError),
    #[error(transparent)]
    Syslog(#[from] crate::sink::syslog::SyslogError),
    #[error("the kernel programs lack the map {0}; the object and the agent do not match")]
    MissingMap(&'static str),
    #[error(transparent)]
    Webhook(#[from] crate::sink::webhook::WebhookError),
    #[error(transparent)]
    Redact(#[from] crate::enrich::redact::RedactError),
    #[error(transparent)]
    Interest(#[from] crate::kernel::interest::InterestError),
    #[error("cannot set up {what}: {source}")]
    Setup {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

pub fn resolve_config(
    config_path: Option<&Path>,
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let mut config = match config_path {
        Some(path) => Config::load(path)?,
        None => Config::embedded(),
    };
    if let Some(events) = &overrides.events {
        config.events = Some(events.clone());
    }
    if let Some(alerts) = &overrides.alerts {
        config.alerts = alerts.clone();
    }
    if let Some(listen) = overrides.listen {
        config.listen = listen;
    }
    config.bench_floor = overrides.bench_floor;
    Ok(config)
}

pub async fn run(config: Config) -> Result<(), RunError> {
    let stats = Arc::new(PipelineStats::new());
    let setup = |what| move |source| RunError::Setup { what, source };

    // Open the sinks and the listener before loading anything: a bad path
    // or a busy port fails fast, before the kernel is touched.
    let event_writer = match &config.events {
        Some(spec) => Some(sink::open_target(
            spec,
            config.sink_max_bytes,
            config.sink_keep_files,
            config.sink_group.as_deref(),
        )?),
        None => None,
    };
    let alert_writer = sink::open_target(
        &config.alerts,
        config.sink_max_bytes,
        config.sink_keep_files,
        config.sink_group.as_deref(),
    )?;
    let metrics = Arc::new(Metrics::new(MetricsConfig {
        max_workload_series: config.max_workload_series,
        ..MetricsConfig::default()
    })?);
    let readiness = Arc::new(Readiness::default());
    let analyzer = Analyzer::new(
        &config.workloads,
        Some((config.anomaly.clone(), Some(config.profile_dir()))),
    )?;
    let policies = Arc::new(PolicySet::load(&config.policies, config.default_policies)?);
    metrics.policy_loaded(policies.rule_count());
    let mut analyzer = analyzer;
    analyzer.policy = Some(PolicyEngine::new(policies.clone()));
    let policy_reloads = spawn_reloader(
        config.policies.clone(),
        config.default_policies,
        policies.clone(),
    )?;
    let inventory_snapshot: InventorySnapshot = Arc::new(Mutex::new(
        serde_json::to_value(analyzer.inventory_snapshot()).unwrap_or_default(),
    ));
    let published = inventory_snapshot.clone();
    let inventory: InventoryProvider =
        Arc::new(move || published.lock().map(|v| v.clone()).unwrap_or_default());
    let http = HttpServer::bind(
        config.listen,
        HttpState {
            metrics: metrics.clone(),
            readiness: readiness.clone(),
            inventory,
        },
        HttpOptions::default(),
    )
    .await?;

    let mut loaded = loader::load(&LoadOptions {
        btf_path: Path::new(VMLINUX_BTF),
        families: config.families.bits(),
        agent_pid: std::process::id(),
        trace_all_files: config.trace_all_files,
        bench_floor: config.bench_floor,
    })?;
    if config.bench_floor {
        log::warn!("--bench-floor: every kernel program returns at once; no events are reported");
    }
    let (mut interest_maps, assets) =
        crate::kernel::interest::configure(&mut loaded.ebpf, &config)?;
    let gpu_poller = crate::ingest::gpu_ioctl::GpuIoctlPoller::from_ebpf(&mut loaded.ebpf)?;
    // Probes of a family turned off, or for syscalls this kernel does not
    // have, are not wanted: exporting them as 0 would page forever
    // (AiwatchProbeNotAttached) about something that cannot be fixed.
    let wanted_probes = || {
        loaded.probes.iter().filter(|p| {
            !matches!(
                p.reason.as_deref(),
                Some(loader::FAMILY_OFF) | Some(loader::NOT_IN_KERNEL)
            )
        })
    };
    for probe in wanted_probes() {
        metrics.set_probe_attached(probe.probe, probe.attached);
    }
    let attached = loaded.probes.iter().filter(|p| p.attached).count();
    let wanted = wanted_probes().count();
    readiness.set_probes_attached(attached == wanted);

    let ring = loaded
        .ebpf
        .take_map("EVENTS")
        .ok_or(RunError::MissingMap("EVENTS"))?;
    let ring = RingBuf::try_from(ring).map_err(|_| RunError::MissingMap("EVENTS"))?;
    let ring_usage = match crate::kernel::ringbuf_usage::RingUsage::new(&ring) {
        Ok(usage) => Some(usage),
        Err(err) => {
            log::warn!("aiwatch_ringbuf_used_bytes stays at 0: cannot map the ring buffer's positions: {err}");
            None
        }
    };
    let kernel_stats = loaded
        .ebpf
        .take_map("STATS")
        .ok_or(RunError::MissingMap("STATS"))?;
    let kernel_stats: PerCpuArray<MapData, u64> =
        PerCpuArray::try_from(kernel_stats).map_err(|_| RunError::MissingMap("STATS"))?;
    let kernel_stats = KernelStats::new(kernel_stats);

    let mut enricher = Enricher::new(
        TableLimits {
            max_live: config.process_table.max_live,
            max_exited: config.process_table.max_exited,
        },
        BootClock::new(),
        true,
    );
    enricher.set_asset_classifier(assets);
    enricher.set_redactor(crate::enrich::redact::Redactor::new(&config.redact)?);
    // Seed after attaching: a process started in between is then seen by
    // both, and the table reconciles the two by start time.
    let seeded = enricher.seed_from_procfs();
    // Workloads already running (started before the agent, or across a
    // restart) are discovered from /proc and tracked from the start.
    let running: Vec<_> = enricher.table.live().cloned().collect();
    let changes = analyzer.seed_running(&running);
    track_workloads(&mut interest_maps, &changes);
    let joined = changes
        .iter()
        .filter(|c| matches!(c, WorkloadChange::Joined { .. }))
        .count();
    if joined > 0 {
        log::info!("{joined} running processes found in AI workloads");
    }

    let (event_sink, event_sink_task) = match event_writer {
        Some(writer) => {
            let (tx, task) = sink::spawn::<Arc<Event>>(writer, 65_536, stats.clone());
            (Some(tx), Some(task))
        }
        None => (None, None),
    };
    let (alert_sink, alert_sink_task) =
        sink::spawn::<Arc<Alert>>(alert_writer, 16_384, stats.clone());
    let mut alert_sinks = vec![alert_sink];
    let mut alert_sink_tasks = vec![alert_sink_task];
    if let Some(webhook) = config.webhook.clone().filter(|w| !w.url.is_empty()) {
        let (tx, task) = sink::webhook::spawn(webhook, stats.clone())?;
        alert_sinks.push(tx);
        alert_sink_tasks.push(task);
    }
    if let Some(syslog) = &config.syslog {
        let logger = sink::syslog::connect(syslog)?;
        let (tx, task) = sink::syslog::spawn(logger, stats.clone());
        alert_sinks.push(tx);
        alert_sink_tasks.push(task);
    }

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (queue_tx, queue_rx) = mpsc::channel::<Record>(config.queue_capacity.max(1));
    let tcp_summary_task = start_tcp_summaries(
        &mut loaded.ebpf,
        &config,
        queue_tx.clone(),
        shutdown_rx.clone(),
    );
    let gpu_task = tokio::spawn(gpu_poller.run(
        std::time::Duration::from_secs(config.gpu_ioctl_interval_secs),
        queue_tx.clone(),
        shutdown_rx.clone(),
    ));
    let reader_task = tokio::spawn(reader::run(
        ring,
        queue_tx,
        stats.clone(),
        shutdown_rx.clone(),
    ));
    let pipeline = Pipeline {
        enricher,
        analyzer,
        inventory: inventory_snapshot,
        on_changes: Box::new(move |changes| track_workloads(&mut interest_maps, changes)),
        policy_reloads: Some(policy_reloads),
        egress: Default::default(),
        ended_workloads: Default::default(),
        event_sink,
        alert_sinks,
        stats: stats.clone(),
        metrics: metrics.clone(),
        readiness: readiness.clone(),
    };
    let pipeline_task = tokio::spawn(pipeline.run(queue_rx));
    let telemetry_task = tokio::spawn(telemetry::run(
        kernel_stats,
        stats.clone(),
        metrics.clone(),
        ring_usage,
        shutdown_rx.clone(),
    ));
    let mut http_shutdown = shutdown_rx.clone();
    let http_task = tokio::spawn(http.serve(async move {
        let _ = http_shutdown.changed().await;
    }));

    let mut sigint = signal(SignalKind::interrupt()).map_err(setup("the SIGINT handler"))?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(setup("the SIGTERM handler"))?;
    log::info!(
        "aiwatch ready: {attached} of {} probes attached, {seeded} running processes known, listening on {}",
        loaded.probes.len(),
        config.listen
    );
    tokio::select! {
        _ = sigint.recv() => log::info!("SIGINT: shutting down"),
        _ = sigterm.recv() => log::info!("SIGTERM: shutting down"),
    }
    let _ = shutdown_tx.send(true);
    match reader_task.await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => log::error!("ring-buffer reader failed: {err}"),
        Err(err) => log::error!("ring-buffer reader panicked: {err}"),
    }
    if let Some(task) = tcp_summary_task {
        let _ = task.await;
    }
    let _ = gpu_task.await;
    if let Err(err) = pipeline_task.await {
        log::error!("pipeline task failed: {err}");
    }
    if let Some(task) = event_sink_task {
        let _ = task.await;
    }
    for task in alert_sink_tasks {
        let _ = task.await;
    }
    let _ = http_task.await;
    match telemetry_task.await {
        Ok(kernel_stats) => log_summary(&stats, &kernel_stats),
        Err(err) => log::error!("telemetry task failed: {err}"),
    }
    // Dropping the Ebpf object detaches every program.
    drop(loaded);
    Ok(())
}

/// Mirrors workload membership into the kernel's tracking map: a workload's
/// processes get every event, the rest of the host only what its filters
/// let through. The kernel adds children of tracked processes at fork.
fn track_workloads(
    maps: &mut crate::kernel::interest::KernelInterestMaps,
    changes: &[WorkloadChange],
) {
    for change in changes {
        log::debug!("workload change: {change:?}");
        let result = match change {
            WorkloadChange::Joined { pid, .. } => maps.track_pid(*pid),
            WorkloadChange::Left { pid, .. } => maps.untrack_pid(*pid),
            WorkloadChange::Reclassified { .. } => Ok(()),
        };
        if let Err(err) = result {
            log::warn!("cannot update the kernel's tracked processes: {err}");
        }
    }
}

/// Starts the periodic summaries of open TCP connections, if configured and
/// the network family is on. A failure costs only the periodic reports.
fn start_tcp_summaries(
    ebpf: &mut aya::Ebpf,
    config: &Config,
    queue: mpsc::Sender<Record>,
    shutdown: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    if config.tcp_summary_interval_secs == 0 || !config.families.network {
        return None;
    }
    let interval = std::time::Duration::from_secs(config.tcp_summary_interval_secs);
    match crate::ingest::tcp_summary::PeriodicSummaries::setup(ebpf, interval) {
        Ok(periodic) => Some(tokio::spawn(periodic.run(queue, shutdown))),
        Err(err) => {
            log::warn!("open TCP connections are reported at close only: {err}");
            None
        }
    }
}

/// One line at exit with every loss, so that nothing is lost silently even
/// without a metrics scraper.
fn log_summary(stats: &PipelineStats, kernel: &KernelStats) {
    let totals = kernel.read();
    let per_kind = |list: &[crate::kernel::stats::KindTotal]| {
        list.iter()
            .map(|k| {
                format!(
                    "{}:{}",
                    k.kind.map(|k| k.as_str()).unwrap_or("unknown"),
                    k.total
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    log::info!(
        "aiwatch stopped: events={} kernel_ringbuf_lost={} [{}] decode_errors={} queue_dropped={} sink_dropped={}",
        stats.events.total(),
        totals.ringbuf_lost_total(),
        per_kind(&totals.ringbuf_lost),
        stats.decode_errors.total(),
        stats.queue_dropped.total(),
        stats.sink_dropped.total(),
    );
}
