//! The sinks of `aiwatch run`: files are opened before anything is loaded,
//! so that a bad path fails fast, and their tasks started once the pipeline
//! is about to run.

use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::{
    alert::Alert,
    app::config::Config,
    event::Event,
    metrics::pipeline_stats::PipelineStats,
    sink::{
        self, syslog::SyslogError, LineWriter, OpenError, SinkSender, Target, ALERT_SINK_CAPACITY,
        EVENT_SINK_CAPACITY,
    },
};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Syslog(#[from] SyslogError),
}

/// The files, opened.
pub struct Outputs {
    events: Option<LineWriter>,
    alerts: LineWriter,
}

/// The senders the pipeline writes into, and the tasks behind them.
pub struct Sinks {
    pub events: Option<SinkSender<Arc<Event>>>,
    /// Every alert goes to each of these (JSON lines, webhook, syslog).
    pub alerts: Vec<SinkSender<Arc<Alert>>>,
    pub tasks: Vec<JoinHandle<()>>,
}

impl Outputs {
    pub fn open(config: &Config) -> Result<Outputs, OutputError> {
        let target =
            |spec: &str| Target::parse(spec, config.sink_max_bytes, config.sink_keep_files);
        let events = match &config.events {
            Some(spec) => Some(LineWriter::open(target(spec))?),
            None => None,
        };
        let alerts = LineWriter::open(target(&config.alerts))?;
        Ok(Outputs { events, alerts })
    }

    /// Starts a task per sink. Each ends, flushing, when the pipeline drops
    /// its senders.
    pub fn spawn(self, config: &Config, stats: &Arc<PipelineStats>) -> Result<Sinks, OutputError> {
        let mut sinks = Sinks {
            events: None,
            alerts: Vec::new(),
            tasks: Vec::new(),
        };
        if let Some(writer) = self.events {
            let (tx, task) = sink::spawn::<Arc<Event>>(writer, EVENT_SINK_CAPACITY, stats.clone());
            sinks.events = Some(tx);
            sinks.tasks.push(task);
        }
        let (tx, task) = sink::spawn::<Arc<Alert>>(self.alerts, ALERT_SINK_CAPACITY, stats.clone());
        sinks.alerts.push(tx);
        sinks.tasks.push(task);
        if let Some(webhook) = config.webhook.clone().filter(|w| !w.url.is_empty()) {
            let (tx, task) = sink::webhook::spawn(webhook, stats.clone());
            sinks.alerts.push(tx);
            sinks.tasks.push(task);
        }
        if let Some(syslog) = &config.syslog {
            let logger = sink::syslog::connect(syslog)?;
            let (tx, task) = sink::syslog::spawn(logger, stats.clone());
            sinks.alerts.push(tx);
            sinks.tasks.push(task);
        }
        Ok(sinks)
    }
}
