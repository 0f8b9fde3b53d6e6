//! `aiwatch run`: wires the pipeline together and runs it until a signal.
//!
//! kernel → ring buffer → [`reader`] (decode) → queue → pipeline task
//! ([`enrich`], then rules and detectors) → sinks.
//!
//! Shutdown on SIGINT or SIGTERM: the reader drains the ring and stops, the
//! pipeline drains its queue, the sinks flush, and the programs are detached
//! when the `Ebpf` object is dropped last.

use std::{path::Path, sync::Arc, time::Duration};

use aya::maps::{MapData, PerCpuArray, RingBuf};
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::{mpsc, watch},
};

use crate::{
    clock::BootClock,
    config::{Config, ConfigError},
    decode::Record,
    enrich::{Enricher, TableLimits},
    event::Event,
    kernel_stats::KernelStats,
    loader::{self, LoadError, LoadOptions},
    offsets::VMLINUX_BTF,
    reader,
    sink::{self, LineWriter, OpenError, SinkSender, Target},
    stats::PipelineStats,
};

/// Command-line settings that override the configuration file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub events: Option<String>,
    pub alerts: Option<String>,
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Sink(#[from] OpenError),
    #[error("the kernel programs lack the map {0}; the object and the agent do not match")]
    MissingMap(&'static str),
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
    Ok(config)
}

pub async fn run(config: Config) -> Result<(), RunError> {
    let stats = Arc::new(PipelineStats::new());
    let setup = |what| move |source| RunError::Setup { what, source };

    // Open the sinks before loading anything: a bad path fails fast.
    let event_writer = match &config.events {
        Some(spec) => Some(LineWriter::open(Target::parse(
            spec,
            config.sink_max_bytes,
            config.sink_keep_files,
        ))?),
        None => None,
    };
    let alert_writer = LineWriter::open(Target::parse(
        &config.alerts,
        config.sink_max_bytes,
        config.sink_keep_files,
    ))?;

    let mut loaded = loader::load(&LoadOptions {
        btf_path: Path::new(VMLINUX_BTF),
        families: config.families.bits(),
        agent_pid: std::process::id(),
    })?;
    let attached = loaded.probes.iter().filter(|p| p.attached).count();
    log::info!(
        "aiwatch attached {attached} of {} probes",
        loaded.probes.len()
    );

    let ring = loaded
        .ebpf
        .take_map("EVENTS")
        .ok_or(RunError::MissingMap("EVENTS"))?;
    let ring = RingBuf::try_from(ring).map_err(|_| RunError::MissingMap("EVENTS"))?;
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
    // Seed after attaching: a process started in between is then seen by
    // both, and the table reconciles the two by start time.
    let seeded = enricher.seed_from_procfs();
    log::info!("process table seeded with {seeded} running processes");

    let (event_sink, event_sink_task) = match event_writer {
        Some(writer) => {
            let (tx, task) = sink::spawn::<Arc<Event>>(writer, 65_536, stats.clone());
            (Some(tx), Some(task))
        }
        None => (None, None),
    };
    let (alert_sink, alert_sink_task) =
        sink::spawn::<Arc<crate::alert::Alert>>(alert_writer, 16_384, stats.clone());

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (queue_tx, queue_rx) = mpsc::channel::<Record>(config.queue_capacity.max(1));
    let reader_task = tokio::spawn(reader::run(ring, queue_tx, stats.clone(), shutdown_rx));
    let pipeline_task = tokio::spawn(pipeline(
        enricher,
        queue_rx,
        event_sink,
        alert_sink,
        stats.clone(),
    ));

    let mut sigint = signal(SignalKind::interrupt()).map_err(setup("the SIGINT handler"))?;
    let mut sigterm = signal(SignalKind::terminate()).map_err(setup("the SIGTERM handler"))?;
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
    if let Err(err) = pipeline_task.await {
        log::error!("pipeline task failed: {err}");
    }
    if let Some(task) = event_sink_task {
        let _ = task.await;
    }
    let _ = alert_sink_task.await;

    log_summary(&stats, &kernel_stats);
    // Dropping the Ebpf object detaches every program.
    drop(loaded);
    Ok(())
}

async fn pipeline(
    mut enricher: Enricher,
    mut queue: mpsc::Receiver<Record>,
    event_sink: Option<SinkSender<Arc<Event>>>,
    alert_sink: SinkSender<Arc<crate::alert::Alert>>,
    stats: Arc<PipelineStats>,
) {
    let _ = &alert_sink;
    let mut batch = Vec::with_capacity(256);
    while queue.recv_many(&mut batch, 256).await > 0 {
        for record in batch.drain(..) {
            let event = Arc::new(enricher.enrich(record));
            stats.events.add(Some(event.kind), 1);
            if let Some(sink) = &event_sink {
                sink.send(event.clone(), Some(event.kind));
            }
        }
    }
    let table = enricher.table.stats();
    log::debug!(
        "process table: {} live, {} exited kept, {} pid reuses",
        enricher.table.live_count(),
        enricher.table.exited_count(),
        table.pid_reused
    );
    // Give the sinks a moment to take the last values.
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// One line at exit with every loss, so that nothing is lost silently even
/// without a metrics scraper.
fn log_summary(stats: &PipelineStats, kernel: &KernelStats) {
    let totals = kernel.read();
    log::info!(
        "aiwatch stopped: events={} kernel_ringbuf_lost={} decode_errors={} queue_dropped={} sink_dropped={}",
        stats.events.total(),
        totals.ringbuf_lost_total(),
        stats.decode_errors.total(),
        stats.queue_dropped.total(),
        stats.sink_dropped.total(),
    );
}
