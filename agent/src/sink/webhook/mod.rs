//! The webhook alert sink: batched JSON POSTs with retries.
//!
//! Alerts queue in a bounded channel (a full queue drops and counts); a
//! blocking worker sends them as a JSON array, at most `batch_max` per POST
//! and at least every `flush_interval`. A failed POST is retried with
//! exponential backoff; after the last attempt the batch is dropped and
//! counted, so a dead endpoint costs alerts at the webhook, never at the
//! other sinks or the pipeline.
//!
//! The client (TLS, headers, the clear-text check) is built by
//! [`client::WebhookClient`] before the worker starts, so a bad setting stops
//! start-up instead of losing alerts later.

use std::{sync::Arc, time::Duration};

use super::{sink_queue, SinkItem, SinkSender, ALERT_SINK_MAX_BYTES};
use crate::{alert::Alert, metrics::pipeline_stats::PipelineStats};

mod client;

pub use client::{WebhookClient, WebhookConfig, WebhookError};

/// Checks the configuration, then starts the webhook worker.
pub fn spawn(
    config: WebhookConfig,
    stats: Arc<PipelineStats>,
) -> Result<(SinkSender<Arc<Alert>>, tokio::task::JoinHandle<()>), WebhookError> {
    let client = WebhookClient::new(&config)?;
    let (tx, mut rx) = sink_queue::<Arc<Alert>>(config.queue, ALERT_SINK_MAX_BYTES, stats.clone());
    let worker_stats = stats;
    let handle = tokio::task::spawn_blocking(move || {
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
            if !post(&client, &config, &batch) {
                Arc::<Alert>::count_lost(&worker_stats, None, batch.len() as u64);
            }
            batch.clear();
        }
    });
    Ok((tx, handle))
}

/// POSTs one batch with retries; false when every attempt failed.
fn post(client: &WebhookClient, config: &WebhookConfig, batch: &[Arc<Alert>]) -> bool {
    let body = match serde_json::to_vec(batch) {
        Ok(body) => body,
        Err(err) => {
            log::warn!("webhook: cannot serialise alerts: {err}");
            return false;
        }
    };
    let mut backoff = Duration::from_millis(config.backoff_ms);
    for attempt in 1..=config.attempts.max(1) {
        let mut request = client
            .agent
            .post(&config.url)
            .header("content-type", "application/json");
        for (name, value) in &client.headers {
            request = request.header(name, value);
        }
        let sent = request.send(&body[..]);
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
mod tests;
#[cfg(test)]
mod tls_tests;
