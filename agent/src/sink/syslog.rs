//! The syslog alert sink: RFC 5424 messages to a local socket.
//!
//! Each alert is one message whose text is the alert's JSON, with the rule
//! in the message id and the severity mapped to syslog's.

use std::{path::PathBuf, sync::Arc};

use serde::Deserialize;
use syslog::{Facility, Formatter5424, Logger, LoggerBackend};

use super::{SinkItem, SinkSender, ALERT_SINK_CAPACITY, ALERT_SINK_MAX_BYTES};
use crate::{
    alert::{Alert, Severity},
    metrics::pipeline_stats::PipelineStats,
};

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SyslogConfig {
    /// The local syslog socket.
    pub socket: PathBuf,
    /// `auth`, `authpriv`, `daemon`, `local0` ... `local7`.
    pub facility: String,
}

impl Default for SyslogConfig {
    fn default() -> Self {
        Self {
            socket: PathBuf::from("/dev/log"),
            facility: "authpriv".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyslogError {
    #[error("unknown syslog facility `{0}`")]
    Facility(String),
    #[error("cannot connect to the syslog socket {path}: {reason}")]
    Connect { path: String, reason: String },
}

pub fn connect(config: &SyslogConfig) -> Result<Logger<LoggerBackend, Formatter5424>, SyslogError> {
    let facility: Facility = config
        .facility
        .parse()
        .map_err(|_| SyslogError::Facility(config.facility.clone()))?;
    let formatter = Formatter5424 {
        facility,
        hostname: hostname(),
        process: "aiwatch".into(),
        pid: std::process::id(),
    };
    syslog::unix_custom(formatter, &config.socket).map_err(|err| SyslogError::Connect {
        path: config.socket.display().to_string(),
        reason: err.to_string(),
    })
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
}

/// Starts the syslog worker on a connected logger.
pub fn spawn(
    mut logger: Logger<LoggerBackend, Formatter5424>,
    stats: Arc<PipelineStats>,
) -> (SinkSender<Arc<Alert>>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) =
        super::sink_queue::<Arc<Alert>>(ALERT_SINK_CAPACITY, ALERT_SINK_MAX_BYTES, stats.clone());
    let worker_stats = stats;
    let handle = tokio::task::spawn_blocking(move || {
        while let Some(alert) = rx.blocking_recv() {
            let text = match serde_json::to_string(&*alert) {
                Ok(text) => text,
                Err(_) => continue,
            };
            let message = (0u32, Default::default(), text);
            let sent = match alert.severity {
                Severity::Critical => logger.crit(message),
                Severity::High => logger.err(message),
                Severity::Medium => logger.warning(message),
                Severity::Low => logger.notice(message),
                Severity::Info => logger.info(message),
            };
            if let Err(err) = sent {
                Arc::<Alert>::count_lost(&worker_stats, None, 1);
                log::debug!("syslog: alert dropped: {err}");
            }
        }
    });
    (tx, handle)
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;

    use super::*;
    use crate::alert::Severity;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_rfc5424_with_the_alert_as_json() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("log");
        let server = UnixDatagram::bind(&socket).unwrap();
        let config = SyslogConfig {
            socket,
            facility: "authpriv".into(),
        };
        let stats = Arc::new(PipelineStats::new());
        let (tx, task) = spawn(connect(&config).unwrap(), stats);
        tx.send(Arc::new(Alert::sample("ai.test", Severity::Critical)), None);
        drop(tx);
        task.await.unwrap();
        let mut buf = vec![0; 65536];
        let n = server.recv(&mut buf).unwrap();
        let message = String::from_utf8_lossy(&buf[..n]);
        // authpriv (10) * 8 + crit (2) = 82, version 1.
        assert!(message.starts_with("<82>1 "), "{message}");
        assert!(message.contains(" aiwatch "), "{message}");
        let json = &message[message.find('{').unwrap()..];
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(value["rule"], "ai.test");
    }

    #[test]
    fn bad_facility_and_missing_socket_are_clear_errors() {
        let err = connect(&SyslogConfig {
            socket: "/nonexistent/log".into(),
            facility: "nope".into(),
        })
        .err()
        .unwrap();
        assert!(err.to_string().contains("nope"));
        let err = connect(&SyslogConfig {
            socket: "/nonexistent/log".into(),
            facility: "daemon".into(),
        })
        .err()
        .unwrap();
        assert!(err.to_string().contains("/nonexistent/log"), "{err}");
    }
}
