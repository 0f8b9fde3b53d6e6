//! Reading the agent: its process (`/proc/<pid>`: `VmRSS`, the fd folder,
//! CPU time), `/readyz`, and the counters of `/metrics` the soak follows:
//! events delivered, every loss and drop counter, the ring buffer's fill.

use std::time::Instant;

use crate::bench::agent::{series, BenchAgent};

use super::verdict::{Counters, Inventory, Sample};

/// The counters of loss, drop and overflow the agent exports
/// (`docs/metrics.md`), each with the label its final values are shown by
/// (`None`: one series).
pub const LOSS_COUNTERS: &[(&str, Option<&str>)] = &[
    ("aiwatch_events_lost_total", Some("stage")),
    ("aiwatch_stream_dropped_total", None),
    ("aiwatch_task_failures_total", Some("task")),
    ("aiwatch_evictions_total", Some("table")),
    ("aiwatch_name_cache_evictions_total", None),
    ("aiwatch_runtime_lookups_skipped_total", None),
    ("aiwatch_identity_held_events_total", Some("outcome")),
    ("aiwatch_file_access_refused_total", None),
    ("aiwatch_exits_inferred_total", None),
    ("aiwatch_workload_series_overflow_total", None),
    ("aiwatch_llm_unparsed_total", Some("reason")),
    ("aiwatch_anomaly_profile_errors_total", Some("error")),
];

/// Reads the agent once; `started` is when the loads started.
pub fn take(agent: &BenchAgent, started: Instant, under_load: bool) -> Sample {
    let at_s = started.elapsed().as_secs_f64();
    if !agent.alive() {
        return Sample {
            at_s,
            under_load,
            ..Sample::default()
        };
    }
    // The process first: the scrape's own connection is an fd of the agent.
    let rss_kib = agent.memory_kib().map_or(0, |(rss, _)| rss);
    let fds = agent.open_fds().unwrap_or(0);
    let cpu_s = agent.cpu_ns() as f64 / 1e9;
    let ready = agent.ready();
    let counters = agent.metrics_text().ok().map(|text| counters(&text));
    let inventory = agent.inventory_pids().ok().map(|pids| Inventory {
        listed: pids.len() as u64,
        exited: pids
            .iter()
            .filter(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
            .count() as u64,
    });
    Sample {
        at_s,
        under_load,
        alive: true,
        ready,
        rss_kib,
        fds,
        cpu_s,
        counters,
        inventory,
    }
}

/// The counters a sample keeps.
pub fn counters(text: &str) -> Counters {
    Counters {
        events: total(text, "aiwatch_events_total"),
        lost: total(text, "aiwatch_events_lost_total"),
        stream_dropped: total(text, "aiwatch_stream_dropped_total"),
        ringbuf_used: total(text, "aiwatch_ringbuf_used_bytes"),
        ringbuf_size: total(text, "aiwatch_ringbuf_size_bytes"),
    }
}

/// The sum of every series of `name`.
pub fn total(text: &str, name: &str) -> u64 {
    series(text, name).map(|(_, value)| value).sum::<f64>() as u64
}

/// The value of `label` in a series' labels (`a="x",b="y"`).
pub fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = labels;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let (value, after) = after.split_once('"')?;
        if key.trim_start_matches(',').trim() == name {
            return Some(value);
        }
        rest = after;
    }
    None
}

/// `name` summed by the values of `by`, in the order first seen.
pub fn by_label(text: &str, name: &str, by: &str) -> Vec<(String, u64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    for (labels, value) in series(text, name) {
        let key = label(labels, by).unwrap_or("").to_string();
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, sum)) => *sum += value,
            None => out.push((key, value)),
        }
    }
    out.into_iter().map(|(k, v)| (k, v as u64)).collect()
}

/// `name` summed over the series whose `key` label is `value`.
pub fn total_where(text: &str, name: &str, key: &str, value: &str) -> u64 {
    series(text, name)
        .filter(|(labels, _)| label(labels, key) == Some(value))
        .map(|(_, v)| v)
        .sum::<f64>() as u64
}

/// Every loss counter's final values, one line each (`name{label="x"} n`).
pub fn loss_lines(text: &str) -> Vec<(String, u64)> {
    let mut lines = Vec::new();
    for &(name, by) in LOSS_COUNTERS {
        match by {
            Some(by) => {
                let values = by_label(text, name, by);
                if values.is_empty() {
                    lines.push((format!("{name} (absent)"), 0));
                }
                for (value, count) in values {
                    lines.push((format!("{name}{{{by}=\"{value}\"}}"), count));
                }
            }
            None => lines.push((name.to_string(), total(text, name))),
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# TYPE aiwatch_events_lost_total counter
aiwatch_events_lost_total{stage=\"queue\",kind=\"exec\"} 4
aiwatch_events_lost_total{stage=\"queue\",kind=\"open\"} 6
aiwatch_events_lost_total{stage=\"sink\",kind=\"exec\"} 1
aiwatch_events_total{kind=\"exec\"} 100
aiwatch_events_total{kind=\"open\"} 50
aiwatch_stream_dropped_total 3
aiwatch_ringbuf_used_bytes 4096
aiwatch_ringbuf_size_bytes 1.6777216e7
";

    #[test]
    fn labels_are_found_by_name_not_by_suffix() {
        assert_eq!(label("stage=\"queue\",kind=\"exec\"", "kind"), Some("exec"));
        assert_eq!(
            label("stage=\"queue\",kind=\"exec\"", "stage"),
            Some("queue")
        );
        assert_eq!(label("workload_kind=\"none\"", "kind"), None);
        assert_eq!(label("", "kind"), None);
    }

    #[test]
    fn counters_sum_their_series() {
        let counters = counters(TEXT);
        assert_eq!(counters.events, 150);
        assert_eq!(counters.lost, 11);
        assert_eq!(counters.stream_dropped, 3);
        assert_eq!(counters.ringbuf_used, 4096);
        assert_eq!(counters.ringbuf_size, 16 << 20);
        assert_eq!(
            by_label(TEXT, "aiwatch_events_lost_total", "stage"),
            [("queue".to_string(), 10), ("sink".to_string(), 1)]
        );
        assert_eq!(
            total_where(TEXT, "aiwatch_events_lost_total", "kind", "exec"),
            5
        );
    }

    #[test]
    fn every_loss_counter_gets_a_line() {
        let lines = loss_lines(TEXT);
        assert!(lines.contains(&("aiwatch_events_lost_total{stage=\"queue\"}".into(), 10)));
        assert!(lines.contains(&("aiwatch_stream_dropped_total".into(), 3)));
        assert!(lines.contains(&("aiwatch_evictions_total (absent)".into(), 0)));
    }
}
