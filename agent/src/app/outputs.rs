//! The sinks of `aiwatch run`: files are opened before anything is loaded,
//! so that a bad path fails fast, and their tasks started once the pipeline
//! is about to run.

use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::sink::stream::{StreamError, StreamHub};

use crate::{
    alert::Alert,
    app::config::Config,
    event::Event,
    metrics::pipeline_stats::PipelineStats,
    sink::{
        self, syslog::SyslogError, webhook::WebhookError, LineWriter, OpenError, SinkSender,
        ALERT_SINK_CAPACITY, ALERT_SINK_MAX_BYTES, EVENT_SINK_CAPACITY, EVENT_SINK_MAX_BYTES,
    },
};

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(transparent)]
    Syslog(#[from] SyslogError),
    #[error(transparent)]
    Webhook(#[from] WebhookError),
    #[error(transparent)]
    Stream(#[from] StreamError),
}

/// The files, opened.
pub struct Outputs {
    events: Option<LineWriter>,
    alerts: LineWriter,
    stream: Option<(tokio::net::UnixListener, std::path::PathBuf)>,
    /// The live stream's readers, local and remote.
    hub: Arc<StreamHub>,
}

/// The senders the pipeline writes into, and the tasks behind them.
pub struct Sinks {
    pub events: Option<SinkSender<Arc<Event>>>,
    /// Every alert goes to each of these (JSON lines, webhook, syslog).
    pub alerts: Vec<SinkSender<Arc<Alert>>>,
    /// The live stream's readers (`aiwatch alerts|events --follow`).
    pub stream: Arc<StreamHub>,
    /// Each sink's task, by name (`sink:events`, `sink:alerts`, ...).
    pub tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Outputs {
    pub fn open(config: &Config) -> Result<Outputs, OutputError> {
        let open = |spec: &str| {
            sink::open_target(
                spec,
                config.sink_max_bytes,
                config.sink_keep_files,
                config.sink_group.as_deref(),
            )
        };
        let events = match &config.events {
            Some(spec) => Some(open(spec)?),
            None => None,
        };
        let alerts = open(&config.alerts)?;
        let stream = match &config.stream_socket {
            Some(path) => match sink::stream::bind(path) {
                Ok(listener) => Some((listener, path.clone())),
                Err(err @ StreamError::InUse(_)) => {
                    log::warn!("{err}; this agent runs without a live stream");
                    None
                }
                Err(err) => return Err(err.into()),
            },
            None => None,
        };
        Ok(Outputs {
            events,
            alerts,
            stream,
            hub: Arc::new(StreamHub::default()),
        })
    }

    /// Where the live stream's readers register: the socket's, and the
    /// listener's remote ones.
    pub fn stream_hub(&self) -> Arc<StreamHub> {
        self.hub.clone()
    }

    /// Starts a task per sink. Each ends, flushing, when the pipeline drops
    /// its senders.
    pub fn spawn(
        self,
        config: &Config,
        stats: &Arc<PipelineStats>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Sinks, OutputError> {
        let mut sinks = Sinks {
            events: None,
            alerts: Vec::new(),
            stream: self.hub.clone(),
            tasks: Vec::new(),
        };
        if let Some((listener, path)) = self.stream {
            sinks.tasks.push((
                "stream",
                tokio::spawn(sink::stream::serve(
                    sinks.stream.clone(),
                    listener,
                    path,
                    shutdown,
                )),
            ));
        }
        if let Some(writer) = self.events {
            let queue = (EVENT_SINK_CAPACITY, EVENT_SINK_MAX_BYTES);
            let (tx, task) = sink::spawn::<Arc<Event>>(writer, queue, stats.clone());
            sinks.events = Some(tx);
            sinks.tasks.push(("sink:events", task));
        }
        let queue = (ALERT_SINK_CAPACITY, ALERT_SINK_MAX_BYTES);
        let (tx, task) = sink::spawn::<Arc<Alert>>(self.alerts, queue, stats.clone());
        sinks.alerts.push(tx);
        sinks.tasks.push(("sink:alerts", task));
        if let Some(webhook) = config.webhook.clone().filter(|w| !w.url.is_empty()) {
            let (tx, task) = sink::webhook::spawn(webhook, stats.clone())?;
            sinks.alerts.push(tx);
            sinks.tasks.push(("sink:webhook", task));
        }
        if let Some(syslog) = &config.syslog {
            let logger = sink::syslog::connect(syslog)?;
            let (tx, task) = sink::syslog::spawn(logger, stats.clone());
            sinks.alerts.push(tx);
            sinks.tasks.push(("sink:syslog", task));
        }
        Ok(sinks)
    }
}
