//! The pipeline task: enrich each decoded record, analyse the event, and
//! hand events and alerts to the sinks.
//!
//! It owns all mutable analysis state (process table, and later workload
//! table, rules and profiles), so nothing here takes a lock.

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;

use crate::{
    alert::Alert, decode::Record, enrich::Enricher, event::Event, http::Readiness,
    metrics::Metrics, sink::SinkSender, stats::PipelineStats,
};

pub struct Pipeline {
    pub enricher: Enricher,
    pub event_sink: Option<SinkSender<Arc<Event>>>,
    pub alert_sink: SinkSender<Arc<Alert>>,
    pub stats: Arc<PipelineStats>,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
}

impl Pipeline {
    /// Runs until the queue closes (the reader stopped), then returns.
    pub async fn run(mut self, mut queue: mpsc::Receiver<Record>) {
        let mut batch = Vec::with_capacity(256);
        let mut heartbeat = tokio::time::interval(Duration::from_secs(1));
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                received = queue.recv_many(&mut batch, 256) => {
                    if received == 0 {
                        break;
                    }
                    for record in batch.drain(..) {
                        self.handle(record);
                    }
                    self.readiness.heartbeat();
                }
                _ = heartbeat.tick() => self.readiness.heartbeat(),
            }
        }
    }

    pub fn handle(&mut self, record: Record) {
        let event = Arc::new(self.enricher.enrich(record));
        self.stats.events.add(Some(event.kind), 1);
        self.metrics.event(event.kind);
        if let Some(sink) = &self.event_sink {
            sink.send(event.clone(), Some(event.kind));
        }
    }
}
