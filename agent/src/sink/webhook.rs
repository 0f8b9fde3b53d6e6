//! The webhook alert sink: batched JSON POSTs with retries.
//!
//! Alerts queue in a bounded channel (a full queue drops and counts); a
//! blocking worker sends them as a JSON array, at most `batch_max` per POST
//! and at least every `flush_interval`. A failed POST is retried with
//! exponential backoff; after the last attempt the batch is dropped and
//! counted, so a dead endpoint costs alerts at the webhook, never at the
//! other sinks or the pipeline.

use std::{sync::Arc, time::Duration};

use serde::Deserialize;
use tokio::sync::mpsc;

use super::SinkSender;
use crate::{alert::Alert, metrics::pipeline_stats::PipelineStats};

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` URL the batches are POSTed to.
    pub url: String,
    /// Alerts per POST at most.
    pub batch_max: usize,
    /// A partial batch is sent after this many milliseconds.
    pub flush_ms: u64,
    /// Alerts waiting at most; more are dropped and counted.
    pub queue: usize,
    /// Attempts per batch, the first included.
    pub attempts: u32,
    /// Delay before the first retry; doubles each time.
    pub backoff_ms: u64,
    /// Per-request timeout.
    pub timeout_ms: u64,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            batch_max: 100,
            flush_ms: 1_000,
            queue: 10_000,
            attempts: 5,
            backoff_ms: 500,
            timeout_ms: 5_000,
        }
    }
}

/// Starts the webhook worker.
pub fn spawn(
    config: WebhookConfig,
    stats: Arc<PipelineStats>,
) -> (SinkSender<Arc<Alert>>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Arc<Alert>>(config.queue.max(1));
    let worker_stats = stats.clone();
    let handle = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(config.timeout_ms)))
            .http_status_as_error(true)
            .build()
            .into();
        let mut batch: Vec<Arc<Alert>> = Vec::with_capacity(config.batch_max);
        let flush = Duration::from_millis(config.flush_ms.max(1));
        let runtime = tokio::runtime::Handle::current();
        // Wait for the first alert of a batch, then fill it until full or
        // until the flush interval passes.
        while let Some(first) = rx.blocking_recv() {
            batch.push(first);
            let deadline = std::time::Instant::now() + flush;
            while batch.len() < config.batch_max {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                match runtime.block_on(async { tokio::time::timeout(left, rx.recv()).await }) {
                    Ok(Some(alert)) => batch.push(alert),
                    Ok(None) | Err(_) => break,
                }
            }
            if !post(&agent, &config, &batch) {
                worker_stats.sink_dropped.add(None, batch.len() as u64);
            }
            batch.clear();
        }
    });
    (SinkSender::new(tx, stats), handle)
}

/// POSTs one batch with retries; false when every attempt failed.
fn post(agent: &ureq::Agent, config: &WebhookConfig, batch: &[Arc<Alert>]) -> bool {
    let body = match serde_json::to_vec(batch) {
        Ok(body) => body,
        Err(err) => {
            log::warn!("webhook: cannot serialise alerts: {err}");
            return false;
        }
    };
    let mut backoff = Duration::from_millis(config.backoff_ms);
    for attempt in 1..=config.attempts.max(1) {
        let sent = agent
            .post(&config.url)
            .header("content-type", "application/json")
            .send(&body[..]);
        match sent {
            Ok(_) => return true,
            Err(err) if attempt < config.attempts => {
                log::debug!("webhook: attempt {attempt} failed: {err}; retrying in {backoff:?}");
                std::thread::sleep(backoff);
                backoff = backoff.saturating_mul(2);
            }
            Err(err) => {
                log::warn!(
                    "webhook: {} alerts dropped after {attempt} attempts: {err}",
                    batch.len()
                );
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead, BufReader, Read, Write},
        net::TcpListener,
        sync::Mutex,
    };

    use super::*;
    use crate::{
        alert::{Action, Severity},
        event::Event,
    };

    fn alert(rule: &str) -> Arc<Alert> {
        Arc::new(Alert {
            time: "2026-01-01T00:00:00Z".into(),
            rule: rule.into(),
            severity: Severity::High,
            summary: "s".into(),
            tags: vec![],
            action: Action::Alert,
            action_taken: true,
            enforcement: None,
            workload: None,
            event: Event::default(),
            steps: vec![],
        })
    }

    /// A one-thread HTTP server answering with the given statuses in turn,
    /// recording each request body.
    fn server(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let seen = bodies.clone();
        std::thread::spawn(move || {
            for (stream, status) in listener.incoming().zip(statuses) {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                seen.lock().unwrap().push(String::from_utf8(body).unwrap());
                write!(
                    stream,
                    "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                )
                .unwrap();
            }
        });
        (url, bodies)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_and_retries_after_a_server_error() {
        let (url, bodies) = server(vec![500, 200]);
        let stats = Arc::new(PipelineStats::new());
        let config = WebhookConfig {
            url,
            flush_ms: 200,
            backoff_ms: 10,
            ..Default::default()
        };
        let (tx, task) = spawn(config, stats.clone());
        tx.send(alert("a.one"), None);
        tx.send(alert("a.two"), None);
        drop(tx);
        task.await.unwrap();
        let bodies = bodies.lock().unwrap();
        assert_eq!(bodies.len(), 2, "one failed POST, one retry");
        assert_eq!(bodies[0], bodies[1]);
        let batch: Vec<serde_json::Value> = serde_json::from_str(&bodies[1]).unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[1]["rule"], "a.two");
        assert_eq!(stats.sink_dropped.total(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dead_endpoint_drops_and_counts() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        drop(listener);
        let stats = Arc::new(PipelineStats::new());
        let config = WebhookConfig {
            url,
            flush_ms: 50,
            attempts: 2,
            backoff_ms: 1,
            ..Default::default()
        };
        let (tx, task) = spawn(config, stats.clone());
        tx.send(alert("a.one"), None);
        drop(tx);
        task.await.unwrap();
        assert_eq!(stats.sink_dropped.total(), 1);
    }
}
