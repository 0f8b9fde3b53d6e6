//! One reading of the running agent's metrics for `aiwatch top`: the
//! health counters and the per-workload series, as totals. Rates come from
//! the difference between two readings ([`super::model`]).

use std::{collections::HashMap, time::Instant};

use prometheus_parse::{Scrape, Value};

/// The per-workload series of one `workload`/`kind` label pair.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkloadTotals {
    pub egress_bytes: f64,
    pub model_read_bytes: f64,
    /// Alerts of every severity.
    pub alerts: f64,
    /// A gauge: processes holding an accelerator open now.
    pub gpu_processes: f64,
}

/// Label pair of the per-workload series: the workload's name and kind.
pub type SeriesKey = (String, String);

/// The agent's counters at one instant.
#[derive(Clone, Debug)]
pub struct Reading {
    pub at: Instant,
    /// Events decoded and delivered, every kind.
    pub events: f64,
    /// Events lost, every stage and kind.
    pub lost: f64,
    pub ringbuf_used_bytes: f64,
    /// 0 when the agent could not read it (or predates the gauge).
    pub ringbuf_size_bytes: f64,
    pub rules_loaded: f64,
    pub ready: bool,
    /// Lines the live stream dropped for slow readers.
    pub stream_dropped: f64,
    pub workloads: HashMap<SeriesKey, WorkloadTotals>,
}

#[derive(Debug, thiserror::Error)]
#[error("the agent's /metrics cannot be read as Prometheus text: {0}")]
pub struct BadMetrics(#[source] std::io::Error);

impl Reading {
    /// Reads the series `top` shows from the text of `/metrics`; series it
    /// does not know are ignored.
    pub fn from_metrics(text: &str, at: Instant) -> Result<Reading, BadMetrics> {
        let scrape =
            Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).map_err(BadMetrics)?;
        let mut reading = Reading {
            at,
            events: 0.0,
            lost: 0.0,
            ringbuf_used_bytes: 0.0,
            ringbuf_size_bytes: 0.0,
            rules_loaded: 0.0,
            ready: false,
            stream_dropped: 0.0,
            workloads: HashMap::new(),
        };
        for sample in &scrape.samples {
            let value = match sample.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                Value::Histogram(_) | Value::Summary(_) => continue,
            };
            let workload = || {
                let key = (
                    sample.labels.get("workload").unwrap_or_default().to_owned(),
                    sample.labels.get("kind").unwrap_or_default().to_owned(),
                );
                key
            };
            match sample.metric.as_str() {
                "aiwatch_events_total" => reading.events += value,
                "aiwatch_events_lost_total" => reading.lost += value,
                "aiwatch_ringbuf_used_bytes" => reading.ringbuf_used_bytes = value,
                "aiwatch_ringbuf_size_bytes" => reading.ringbuf_size_bytes = value,
                "aiwatch_rules_loaded" => reading.rules_loaded = value,
                "aiwatch_ready" => reading.ready = value >= 1.0,
                "aiwatch_stream_dropped_total" => reading.stream_dropped = value,
                "aiwatch_workload_egress_bytes_total" => {
                    reading
                        .workloads
                        .entry(workload())
                        .or_default()
                        .egress_bytes += value
                }
                "aiwatch_workload_model_read_bytes_total" => {
                    reading
                        .workloads
                        .entry(workload())
                        .or_default()
                        .model_read_bytes += value
                }
                "aiwatch_workload_alerts_total" => {
                    reading.workloads.entry(workload()).or_default().alerts += value
                }
                "aiwatch_workload_gpu_processes" => {
                    reading
                        .workloads
                        .entry(workload())
                        .or_default()
                        .gpu_processes += value
                }
                _ => {}
            }
        }
        Ok(reading)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_and_workload_series_are_summed_from_the_text() {
        let text = r#"# HELP aiwatch_events_total Events.
# TYPE aiwatch_events_total counter
aiwatch_events_total{kind="exec"} 10
aiwatch_events_total{kind="open"} 5
# TYPE aiwatch_events_lost_total counter
aiwatch_events_lost_total{stage="queue",kind="open"} 2
# TYPE aiwatch_ringbuf_used_bytes gauge
aiwatch_ringbuf_used_bytes 4096
# TYPE aiwatch_ringbuf_size_bytes gauge
aiwatch_ringbuf_size_bytes 16777216
# TYPE aiwatch_rules_loaded gauge
aiwatch_rules_loaded 42
# TYPE aiwatch_ready gauge
aiwatch_ready 1
# TYPE aiwatch_workload_alerts_total counter
aiwatch_workload_alerts_total{workload="onnx",kind="inference",severity="high"} 2
aiwatch_workload_alerts_total{workload="onnx",kind="inference",severity="low"} 1
# TYPE aiwatch_workload_egress_bytes_total counter
aiwatch_workload_egress_bytes_total{workload="onnx",kind="inference"} 1000
# TYPE aiwatch_workload_gpu_processes gauge
aiwatch_workload_gpu_processes{workload="onnx",kind="inference"} 1
# TYPE aiwatch_event_latency_seconds histogram
aiwatch_event_latency_seconds_bucket{le="0.1"} 3
aiwatch_event_latency_seconds_sum 0.2
aiwatch_event_latency_seconds_count 3
"#;
        let reading = Reading::from_metrics(text, Instant::now()).unwrap();
        assert_eq!(reading.events, 15.0);
        assert_eq!(reading.lost, 2.0);
        assert_eq!(reading.ringbuf_size_bytes, 16_777_216.0);
        assert_eq!(reading.rules_loaded, 42.0);
        assert!(reading.ready);
        let onnx = &reading.workloads[&("onnx".to_owned(), "inference".to_owned())];
        assert_eq!(onnx.alerts, 3.0);
        assert_eq!(onnx.egress_bytes, 1000.0);
        assert_eq!(onnx.gpu_processes, 1.0);
    }
}
