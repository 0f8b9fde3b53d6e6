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
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use tokio::{
    signal::unix::{signal, SignalKind},
    sync::watch,
    task::JoinHandle,
};

use crate::{
    analyze::runtime::{IdentityCache, Resolver},
    analyze::workload::WorkloadChange,
    analyze::{AnalyzeError, Analyzer},
    anomaly::AnomalyError,
    app::config::{Config, ConfigError},
    app::detectors::Detectors,
    app::kernel_side::{start_tcp_summaries, track_workloads, KernelSetupError, KernelSide},
    app::outputs::{OutputError, Outputs},
    app::pipeline::{
        HeldEvents, IdentityAnswers, InventorySnapshot, MapsAnswers, Outlets, Pipeline, Stages,
    },
    clock::BootClock,
    enforce::{EnforceMapError, EnforceMaps, EnforcementHooks, Enforcer, PID_FILE},
    enrich::Enricher,
    ingest::{queue::record_queue, reader},
    kernel::stats::{KernelStats, KindTotal},
    metrics::pipeline_stats::PipelineStats,
    metrics::{Metrics, MetricsConfig, MetricsError},
    observe::http::{
        remote_stream::RemoteStream, HttpError, HttpOptions, HttpServer, HttpState,
        InventoryProvider, Readiness,
    },
    observe::supervise::{Criticality, Supervisor},
    observe::telemetry,
    policy::{reload::ReloadError, spawn_reloader, PolicyErrors, PolicySet},
};

mod settings;

pub use settings::{resolve_config, Overrides};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Kernel(#[from] KernelSetupError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error(transparent)]
    Analyze(#[from] AnalyzeError),
    #[error("anomaly detection: {0}")]
    Anomaly(#[from] AnomalyError),
    #[error("the policies have errors:\n{0}")]
    Policy(#[from] PolicyErrors),
    #[error(transparent)]
    Reload(#[from] ReloadError),
    #[error("the agent stopped because its {0} task died (see the log above)")]
    TaskDied(&'static str),
    #[error(transparent)]
    Privileges(#[from] crate::app::privileges::PrivilegeError),
    #[error(transparent)]
    Redact(#[from] crate::enrich::redact::RedactError),
    #[error(transparent)]
    Enforce(#[from] EnforceMapError),
    #[error(transparent)]
    RemoteStream(#[from] crate::app::remote_stream::RemoteStreamSetupError),
    #[error("cannot set up {what}: {source}")]
    Setup {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the agent until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), RunError> {
    // Without root nothing below can work: say that, not what failed first.
    crate::kernel::loader::require_root().map_err(KernelSetupError::from)?;
    let stats = Arc::new(PipelineStats::new());
    // Open the sinks and the listener before loading anything: a bad path
    // or a busy port fails fast, before the kernel is touched.
    let outputs = Outputs::open(&config)?;
    let metrics = Arc::new(Metrics::new(MetricsConfig {
        max_workload_series: config.max_workload_series,
        ..MetricsConfig::default()
    })?);
    let readiness = Arc::new(Readiness::default());
    let (supervisor, mut fatal_tasks) = Supervisor::new(metrics.clone(), readiness.clone());
    let mut analyzer = Analyzer::new(&config.workloads)?;
    crate::app::locks::write_configured(&config);
    let policies = Arc::new(PolicySet::load(
        &config.policy_paths(),
        config.default_policies,
    )?);
    metrics.policy_loaded(policies.rule_count());
    let detectors = Detectors::new(
        Some(policies.clone()),
        config.anomaly.clone(),
        Some(config.profile_dir()),
    )?;
    let policy_reloads = spawn_reloader(
        config.policy_paths(),
        config.default_policies,
        policies.clone(),
    )?;
    let inventory: InventorySnapshot =
        Arc::new(Mutex::new(Arc::new(analyzer.inventory_snapshot())));
    let remote_stream = crate::app::remote_stream::setup(
        config.remote_stream.as_ref(),
        config.listen,
        outputs.stream_hub(),
    )?;
    let http = bind_listener(&config, &metrics, &readiness, &inventory, remote_stream).await?;

    let mut kernel = KernelSide::start(&config, &metrics, &readiness)?;
    let enforce_maps = EnforceMaps::from_ebpf(&mut kernel.loaded.ebpf)?;
    let mut enforcer = Enforcer::new(
        config.enforcement.clone(),
        &config.state_dir,
        Some(enforce_maps),
    );
    // The names of egress allowlists are resolved by the agent only where
    // the kernel can refuse egress.
    let hooks = EnforcementHooks::from_probes(&kernel.loaded.probes);
    if hooks.egress() {
        match enforcer.start_name_resolver() {
            Ok(task) => {
                supervisor.spawn("egress_names", Criticality::Degrading, task);
            }
            Err(err) => log::warn!(
                "{err}; egress allowlist names get their addresses from verified DNS answers only"
            ),
        }
    }
    readiness.set_enforcement_hooks(hooks.list());
    enforcer.set_hooks(hooks, &metrics);
    enforcer.apply(&policies, &metrics);
    let pid_file = write_pid_file(&config.state_dir);
    let mut enricher = Enricher::new(config.process_table, BootClock::new(), true);
    enricher.set_name_limits(config.names);
    enricher.set_asset_classifier(kernel.assets.clone());
    let redactor = crate::enrich::redact::Redactor::new(&config.redact)?;
    enricher.set_redactor(redactor.clone());
    let llm = crate::llm::LlmStage::new(config.llm.clone(), redactor, metrics.clone());
    // Seed after attaching: a process started in between is then seen by
    // both, and the table reconciles the two by start time.
    let seeded = enricher.seed_from_procfs();
    // Workloads already running (started before the agent, or across a
    // restart) are discovered from /proc and tracked from the start.
    let running: Vec<_> = enricher.table.live().cloned().collect();
    // Once the programs are in (a failed start leaves no task behind), and
    // before the seed: the containers already running are looked up as
    // the seed finds them.
    let identities = start_runtime_identities(&config, &metrics, &supervisor, &mut analyzer);
    let changes = analyzer.seed_running(&running);
    // From here on, maps are read off the pipeline thread (the seed above
    // read them on the spot, before anything else ran).
    let maps = match crate::analyze::maps_reader::MapsReader::start() {
        Ok((reader, answers)) => {
            analyzer.read_maps_with(reader);
            Some(MapsAnswers::new(answers))
        }
        Err(err) => {
            log::warn!("cannot start the maps reader thread ({err}); library maps are read on the pipeline");
            None
        }
    };
    let scopes = enforcer.scopes();
    track_workloads(&mut kernel.interest_maps, &scopes, &changes);
    // The TLS libraries the running processes map, found by the same scans.
    let tls_found = analyzer.take_tls_candidates();
    if let Some(tls) = kernel.tls.as_mut() {
        for probe in tls.offer(&mut kernel.loaded.ebpf, tls_found) {
            metrics.set_probe_attached(probe, true);
        }
    }
    let joined = changes
        .iter()
        .filter(|c| matches!(c, WorkloadChange::Joined { .. }))
        .count();
    if joined > 0 {
        log::info!("{joined} running processes found in AI workloads");
    }
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let sinks = outputs.spawn(&config, &stats, shutdown_rx.clone())?;
    let (queue_tx, queue_rx) = record_queue(config.queue_capacity, config.queue_max_bytes);
    // From here on the programs are reached through one shared handle: the
    // pipeline's TLS handler places uprobes as libraries appear, the TCP
    // summary task attaches its iterator each round. They are detached when
    // both have ended.
    let probes_known = kernel.loaded.probes.len();
    let ebpf = Arc::new(Mutex::new(kernel.loaded.ebpf));
    // Kept here so that the programs are detached below, all at once,
    // rather than one by one by whichever task drops the last handle.
    let ebpf_at_exit = ebpf.clone();
    let mut sources = Vec::new();
    if let Some(task) = start_tcp_summaries(
        &ebpf,
        &config,
        queue_tx.clone(),
        stats.clone(),
        shutdown_rx.clone(),
    ) {
        sources.push(supervisor.spawn("tcp_summary", Criticality::Degrading, task));
    }
    sources.push(supervisor.spawn(
        "gpu_ioctl",
        Criticality::Degrading,
        tokio::spawn(kernel.gpu_poller.run(
            std::time::Duration::from_secs(config.gpu_ioctl_interval_secs),
            queue_tx.clone(),
            stats.clone(),
            shutdown_rx.clone(),
        )),
    ));
    let (fold_tx, fold_rx) = tokio::sync::mpsc::channel(crate::ingest::file_access::FOLD_QUEUE);
    sources.push(supervisor.spawn(
        "file_access",
        Criticality::Degrading,
        tokio::spawn(kernel.file_access.run(
            std::time::Duration::from_secs(config.file_access_interval_secs),
            fold_rx,
            queue_tx.clone(),
            stats.clone(),
            metrics.clone(),
            shutdown_rx.clone(),
        )),
    ));
    let watchdog =
        supervisor.spawn_watchdog(stats.clone(), queue_tx.downgrade(), shutdown_rx.clone());
    let reader_task = supervisor.spawn(
        "reader",
        Criticality::Fatal,
        reader::run(kernel.ring, queue_tx, stats.clone(), shutdown_rx.clone()),
    );
    let mut interest_maps = kernel.interest_maps;
    let probes_attached = kernel.attached;
    let mut tls = kernel.tls;
    // The capabilities are dropped once the tasks run (below).
    let keeps_sys_admin = config.families.llm && config.llm_capture.probe_after_start;
    if let Some(tls) = tls.as_mut() {
        tls.capabilities_dropped(keeps_sys_admin);
    }
    let tls_metrics = metrics.clone();
    let pipeline = Pipeline::new(
        Stages {
            enricher,
            analyzer,
            detectors,
            enforcer,
            llm,
        },
        Outlets {
            events: sinks.events,
            alerts: sinks.alerts,
            stream: sinks.stream,
            stats: stats.clone(),
            metrics: metrics.clone(),
            readiness: readiness.clone(),
            inventory,
            on_changes: Box::new(move |changes| {
                track_workloads(&mut interest_maps, &scopes, changes)
            }),
            on_fold: Box::new(move |key, directory| {
                // A full queue leaves the directory's reads as full events.
                let _ = fold_tx.try_send(crate::ingest::file_access::FoldOffer {
                    key: aiwatch_common::FileAccessKey {
                        tgid: key.tgid,
                        dev: key.dev,
                        dir_ino: key.ino,
                    },
                    directory: directory.to_string(),
                });
            }),
            on_tls: Box::new(move |candidates| {
                if let Some(tls) = tls.as_mut() {
                    let mut ebpf = ebpf
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    for probe in tls.offer(&mut ebpf, candidates) {
                        tls_metrics.set_probe_attached(probe, true);
                    }
                }
            }),
            identities,
            maps,
        },
        Some(policy_reloads),
    );
    let pipeline_task = supervisor.spawn("pipeline", Criticality::Fatal, pipeline.run(queue_rx));
    let telemetry_task = supervisor.spawn(
        "telemetry",
        Criticality::Degrading,
        telemetry::run(
            kernel.kernel_stats,
            stats.clone(),
            metrics.clone(),
            kernel.ring_usage,
            shutdown_rx.clone(),
        ),
    );
    let mut http_shutdown = shutdown_rx.clone();
    let http_task = supervisor.spawn(
        "listener",
        Criticality::Degrading,
        http.serve(async move {
            let _ = http_shutdown.changed().await;
        }),
    );
    let sink_tasks: Vec<_> = sinks
        .tasks
        .into_iter()
        .map(|(name, task)| supervisor.spawn(name, Criticality::Degrading, task))
        .collect();

    crate::app::privileges::apply(config.sink_group.is_some(), keeps_sys_admin)?;
    release_start_up_memory();
    log::info!(
        "aiwatch ready: {} of {} probes attached, {seeded} running processes known, listening on {}",
        probes_attached,
        probes_known,
        config.listen
    );
    let notify_task =
        crate::observe::sd_notify::start(&supervisor, readiness.clone(), shutdown_rx.clone());
    let died = tokio::select! {
        signalled = wait_for_signal() => { signalled?; None }
        task = fatal_tasks.recv() => task,
    };
    supervisor.begin_shutdown();
    let _ = shutdown_tx.send(true);
    // Stop in pipeline order: the sources drain into the queue, the
    // pipeline drains the queue into the sinks, the sinks flush.
    // The supervisor has logged any failure; here the tasks only end.
    let _ = reader_task.await;
    join_all(sources).await;
    let _ = pipeline_task.await;
    join_all(sink_tasks).await;
    let _ = http_task.await;
    let _ = watchdog.await;
    if let Some(task) = notify_task {
        let _ = task.await;
    }
    if let Ok(Some(kernel_stats)) = telemetry_task.await {
        log_summary(&stats, &kernel_stats);
    }
    crate::kernel::detach::detach_all(
        &mut ebpf_at_exit
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    if let Some(pid_file) = pid_file {
        let _ = std::fs::remove_file(pid_file);
    }
    match died {
        Some(task) => Err(RunError::TaskDied(task)),
        None => Ok(()),
    }
}

/// Starts the task that asks the container runtimes who each new container
/// is (`analyze::runtime`), unless the configuration turns it off.
fn start_runtime_identities(
    config: &Config,
    metrics: &Arc<Metrics>,
    supervisor: &Supervisor,
    analyzer: &mut Analyzer,
) -> Option<IdentityAnswers> {
    let runtimes = &config.container_runtimes;
    if !runtimes.enabled {
        log::info!("container runtimes are not asked (container_runtimes.enabled is false): containers are known by their cgroup-derived id");
        return None;
    }
    let (questions, answers, task) = Resolver::start(runtimes.clone(), metrics.clone());
    // It ends when the pipeline, which holds the questions' sender, ends.
    drop(supervisor.spawn("runtime_identity", Criticality::Degrading, task));
    analyzer.use_runtime_identities(IdentityCache::new(
        runtimes.max_containers,
        runtimes.hold(),
        Some(questions),
    ));
    Some(IdentityAnswers {
        answers: Some(answers),
        held: HeldEvents::new(runtimes.hold_max_events, runtimes.hold()),
    })
}

/// Writes `<state_dir>/aiwatch.pid`, for `aiwatch enforcement on|off`.
fn write_pid_file(state_dir: &Path) -> Option<PathBuf> {
    let path = state_dir.join(PID_FILE);
    let written = std::fs::create_dir_all(state_dir)
        .and_then(|()| std::fs::write(&path, format!("{}\n", std::process::id())));
    match written {
        Ok(()) => Some(path),
        Err(err) => {
            log::warn!(
                "cannot write {}: {err}; `aiwatch enforcement on|off` cannot tell this agent, send it SIGHUP instead",
                path.display()
            );
            None
        }
    }
}

/// Binds `/metrics`, `/healthz`, `/readyz`, `/inventory` and the remote stream.
async fn bind_listener(
    config: &Config,
    metrics: &Arc<Metrics>,
    readiness: &Arc<Readiness>,
    inventory: &InventorySnapshot,
    remote_stream: Option<RemoteStream>,
) -> Result<HttpServer, HttpError> {
    let published = inventory.clone();
    let inventory: InventoryProvider = Arc::new(move || {
        // Clone the Arc under the lock; serialise outside it.
        let snapshot = published.lock().map(|s| s.clone()).unwrap_or_default();
        serde_json::to_value(&*snapshot).unwrap_or_default()
    });
    HttpServer::bind(
        config.listen,
        HttpState {
            metrics: metrics.clone(),
            readiness: readiness.clone(),
            inventory,
            remote_stream,
        },
        HttpOptions::default(),
    )
    .await
}

async fn wait_for_signal() -> Result<(), RunError> {
    let setup = |what| move |source| RunError::Setup { what, source };
    let mut sigint = signal(SignalKind::interrupt()).map_err(setup("the SIGINT handler"))?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(setup("the SIGTERM handler"))?;
    tokio::select! {
        _ = sigint.recv() => log::info!("SIGINT: shutting down"),
        _ = sigterm.recv() => log::info!("SIGTERM: shutting down"),
    }
    Ok(())
}

async fn join_all<T>(tasks: Vec<JoinHandle<T>>) {
    for task in tasks {
        let _ = task.await;
    }
}

/// One line at exit with every loss, so that nothing is lost silently even
/// without a metrics scraper.
fn log_summary(stats: &PipelineStats, kernel: &KernelStats) {
    let totals = kernel.read();
    let per_kind = |list: &[KindTotal]| {
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
        "aiwatch stopped: events={} kernel_ringbuf_lost={} [{}] decode_errors={} queue_dropped={} sink_dropped={} alerts_dropped={}",
        stats.events.total(),
        totals.ringbuf_lost_total(),
        per_kind(&totals.ringbuf_lost),
        stats.decode_errors.total(),
        stats.queue_dropped.total(),
        stats.sink_dropped.total(),
        stats.alerts_dropped.load(std::sync::atomic::Ordering::Relaxed),
    );
}

/// Hands the heap that start-up used and freed (the kernel's BTF, parsed
/// twice; the eBPF object's relocations; the /proc seed) back to the
/// kernel. glibc keeps freed memory for reuse, and start-up's peak would
/// otherwise stay in the agent's resident set for its whole life.
fn release_start_up_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim takes a size and only walks the allocator's own
    // free lists; no pointer of ours is involved.
    unsafe {
        libc::malloc_trim(0);
    }
}
