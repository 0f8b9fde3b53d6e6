//! Tests for the metrics registry, read back through `gather()` as a
//! scraper would see them.

use prometheus::proto::MetricType;

use super::*;
use crate::event::Event;

fn metrics_with_cap(max_workload_series: usize) -> Metrics {
    Metrics::new(MetricsConfig {
        max_workload_series,
        rule_eval_sample_every: 4,
        kernel_release: Some("6.1.0-test".to_string()),
    })
    .expect("metrics register")
}

/// Value of the series `name` whose labels include all of `labels`;
/// `None` when no such series exists.
fn value(metrics: &Metrics, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let families = metrics.registry().gather();
    let family = families.iter().find(|family| family.name() == name)?;
    let metric = family.get_metric().iter().find(|metric| {
        labels.iter().all(|(key, wanted)| {
            metric
                .get_label()
                .iter()
                .any(|pair| pair.name() == *key && pair.value() == *wanted)
        })
    })?;
    Some(match family.get_field_type() {
        MetricType::COUNTER => metric.get_counter().get_value(),
        MetricType::GAUGE => metric.get_gauge().get_value(),
        _ => metric.get_histogram().get_sample_count() as f64,
    })
}

fn series_count(metrics: &Metrics, name: &str) -> usize {
    metrics
        .registry()
        .gather()
        .iter()
        .find(|family| family.name() == name)
        .map_or(0, |family| family.get_metric().len())
}

pub(super) fn workload(id: &str, name: &str, kind: &str) -> WorkloadRef {
    WorkloadRef {
        id: id.to_string(),
        kind: crate::event::WorkloadKind::parse(kind).expect("a workload kind"),
        name: name.to_string(),
        claimed: false,
    }
}

fn alert(rule: &str, severity: Severity, workload: Option<WorkloadRef>) -> Alert {
    Alert {
        time: crate::event::WallTime::parse("2026-01-01T00:00:00Z").ok(),
        rule: rule.to_string(),
        severity,
        summary: "test".to_string(),
        tags: Vec::new(),
        action: Action::Alert,
        action_taken: true,
        enforcement: None,
        workload,
        event: Event::default(),
        steps: Vec::new(),
    }
}

#[test]
fn events_are_counted_per_kind_and_every_kind_starts_at_zero() {
    let metrics = metrics_with_cap(10);
    metrics.event(Kind::Exec);
    metrics.event(Kind::Exec);
    metrics.event(Kind::GpuIoctl);
    let exec = value(&metrics, "aiwatch_events_total", &[("kind", "exec")]);
    let gpu = value(&metrics, "aiwatch_events_total", &[("kind", "gpu_ioctl")]);
    let dns = value(&metrics, "aiwatch_events_total", &[("kind", "dns")]);
    assert_eq!(exec, Some(2.0));
    assert_eq!(gpu, Some(1.0));
    assert_eq!(dns, Some(0.0));
    assert_eq!(
        series_count(&metrics, "aiwatch_events_total"),
        Kind::ALL.len()
    );
}

#[test]
fn losses_carry_stage_and_kind_with_unknown_for_undecodable() {
    let metrics = metrics_with_cap(10);
    metrics.lost(LossStage::Queue, Some(Kind::Open), 3);
    metrics.lost(LossStage::Decode, None, 2);
    let queue_open = [("stage", "queue"), ("kind", "open")];
    let decode_unknown = [("stage", "decode"), ("kind", "unknown")];
    assert_eq!(
        value(&metrics, "aiwatch_events_lost_total", &queue_open),
        Some(3.0)
    );
    assert_eq!(
        value(&metrics, "aiwatch_events_lost_total", &decode_unknown),
        Some(2.0)
    );
}

#[test]
fn kernel_totals_become_counter_increases_and_survive_map_resets() {
    let metrics = metrics_with_cap(10);
    let labels = [("stage", "kernel_ringbuf"), ("kind", "exec")];
    metrics.observe_lost_total(LossStage::KernelRingbuf, Some(Kind::Exec), 10);
    metrics.observe_lost_total(LossStage::KernelRingbuf, Some(Kind::Exec), 15);
    assert_eq!(
        value(&metrics, "aiwatch_events_lost_total", &labels),
        Some(15.0)
    );
    // Programs reloaded: the map restarts from zero.
    metrics.observe_lost_total(LossStage::KernelRingbuf, Some(Kind::Exec), 4);
    assert_eq!(
        value(&metrics, "aiwatch_events_lost_total", &labels),
        Some(19.0)
    );

    metrics.observe_kernel_filtered_total(Kind::Open, 100);
    metrics.observe_kernel_filtered_total(Kind::Open, 100);
    let filtered = value(
        &metrics,
        "aiwatch_kernel_events_filtered_total",
        &[("kind", "open")],
    );
    assert_eq!(filtered, Some(100.0));
}

#[test]
fn every_severity_and_loss_stage_has_a_series_at_zero_before_anything_happens() {
    let metrics = metrics_with_cap(10);
    for severity in Severity::ALL {
        let labels = [("rule", ""), ("severity", severity.as_str())];
        assert_eq!(
            value(&metrics, "aiwatch_alerts_total", &labels),
            Some(0.0),
            "{severity:?}"
        );
    }
    for stage in LossStage::ALL {
        let labels = [("stage", stage.as_str()), ("kind", "exec")];
        assert_eq!(
            value(&metrics, "aiwatch_events_lost_total", &labels),
            Some(0.0),
            "{stage:?}"
        );
    }
    assert_eq!(
        series_count(&metrics, "aiwatch_alerts_total"),
        Severity::ALL.len()
    );
}

#[test]
fn alerts_are_labelled_by_rule_severity_workload_kind_and_action() {
    let metrics = metrics_with_cap(10);
    let notebook = workload("nb-1", "jupyter-alice", "notebook");
    metrics.alert(&alert("shell-in-notebook", Severity::High, Some(notebook)));
    let mut failed_kill = alert("crypto-miner", Severity::Critical, None);
    failed_kill.action = Action::Kill;
    failed_kill.action_taken = false;
    metrics.alert(&failed_kill);

    let labels = [
        ("rule", "shell-in-notebook"),
        ("severity", "high"),
        ("workload_kind", "notebook"),
        ("action", "alert"),
    ];
    assert_eq!(value(&metrics, "aiwatch_alerts_total", &labels), Some(1.0));
    let host = [
        ("rule", "crypto-miner"),
        ("workload_kind", "none"),
        ("action", "kill_failed"),
    ];
    assert_eq!(value(&metrics, "aiwatch_alerts_total", &host), Some(1.0));
    let per_workload = [("workload", "jupyter-alice"), ("severity", "high")];
    assert_eq!(
        value(&metrics, "aiwatch_workload_alerts_total", &per_workload),
        Some(1.0)
    );
}

#[test]
fn workload_series_are_capped_and_overflow_is_counted() {
    let metrics = metrics_with_cap(2);
    for index in 0..5 {
        let id = format!("w{index}");
        metrics.workload_egress(&workload(&id, &id, "inference"), 100);
    }
    // Two own series plus `other`.
    assert_eq!(
        series_count(&metrics, "aiwatch_workload_egress_bytes_total"),
        3
    );
    let other = value(
        &metrics,
        "aiwatch_workload_egress_bytes_total",
        &[("workload", "other")],
    );
    assert_eq!(other, Some(300.0));
    let overflow = value(&metrics, "aiwatch_workload_series_overflow_total", &[]);
    assert_eq!(overflow, Some(3.0));
    // Counting the same overflowed workload again is not a new overflow.
    metrics.workload_model_read(&workload("w4", "w4", "inference"), 1);
    let overflow = value(&metrics, "aiwatch_workload_series_overflow_total", &[]);
    assert_eq!(overflow, Some(3.0));
}

#[test]
fn forgetting_a_workload_drops_its_series_and_frees_the_slot() {
    let metrics = metrics_with_cap(1);
    let first = workload("a", "alpha", "training");
    metrics.workload_model_read(&first, 4096);
    metrics.set_workload_gpu_processes(&first, 2);
    metrics.forget_workload("a");
    assert_eq!(
        value(
            &metrics,
            "aiwatch_workload_model_read_bytes_total",
            &[("workload", "alpha")]
        ),
        None
    );
    assert_eq!(
        value(
            &metrics,
            "aiwatch_workload_gpu_processes",
            &[("workload", "alpha")]
        ),
        None
    );
    metrics.workload_model_read(&workload("b", "beta", "training"), 1);
    let beta = value(
        &metrics,
        "aiwatch_workload_model_read_bytes_total",
        &[("workload", "beta")],
    );
    assert_eq!(beta, Some(1.0));
}

#[test]
fn gpu_gauge_sums_workloads_that_share_a_name() {
    let metrics = metrics_with_cap(10);
    metrics.set_workload_gpu_processes(&workload("pod-1", "vllm", "inference"), 2);
    metrics.set_workload_gpu_processes(&workload("pod-2", "vllm", "inference"), 3);
    let labels = [("workload", "vllm"), ("kind", "inference")];
    assert_eq!(
        value(&metrics, "aiwatch_workload_gpu_processes", &labels),
        Some(5.0)
    );
    metrics.forget_workload("pod-1");
    assert_eq!(
        value(&metrics, "aiwatch_workload_gpu_processes", &labels),
        Some(3.0)
    );
}

#[test]
fn workload_counts_zero_missing_kinds_and_bound_unknown_ones() {
    let metrics = metrics_with_cap(10);
    metrics.set_workload_counts([("inference", 2), ("training", 1)]);
    metrics.set_workload_counts([("inference", 1), ("bogus", 4), ("weird", 1)]);
    let count = |kind| value(&metrics, "aiwatch_workloads", &[("kind", kind)]);
    assert_eq!(count("inference"), Some(1.0));
    assert_eq!(count("training"), Some(0.0));
    assert_eq!(count("other"), Some(5.0));
}

#[test]
fn policy_reloads_track_result_and_last_success() {
    let metrics = metrics_with_cap(10);
    metrics.policy_loaded(12);
    assert_eq!(value(&metrics, "aiwatch_rules_loaded", &[]), Some(12.0));
    let loaded_at = value(
        &metrics,
        "aiwatch_policy_last_reload_success_timestamp_seconds",
        &[],
    )
    .unwrap_or(0.0);
    assert!(
        loaded_at > 1.6e9,
        "timestamp is unix seconds, got {loaded_at}"
    );

    metrics.policy_reload_failed();
    assert_eq!(
        value(&metrics, "aiwatch_policy_last_reload_successful", &[]),
        Some(0.0)
    );
    assert_eq!(value(&metrics, "aiwatch_rules_loaded", &[]), Some(12.0));
    metrics.policy_reload_succeeded(15);
    assert_eq!(
        value(&metrics, "aiwatch_policy_last_reload_successful", &[]),
        Some(1.0)
    );
    assert_eq!(value(&metrics, "aiwatch_rules_loaded", &[]), Some(15.0));
    let reloads = |result| {
        value(
            &metrics,
            "aiwatch_policy_reloads_total",
            &[("result", result)],
        )
    };
    assert_eq!(reloads("failure"), Some(1.0));
    assert_eq!(reloads("success"), Some(1.0));
}

#[test]
fn histograms_observe_and_rule_eval_is_sampled() {
    let metrics = metrics_with_cap(10);
    let sampled = (0..8).filter(|_| metrics.sample_rule_eval()).count();
    assert_eq!(sampled, 2, "one in four with rule_eval_sample_every = 4");
    metrics.observe_rule_eval(Duration::from_micros(7));
    metrics.observe_event_latency(Duration::from_millis(3));
    // A kernel timestamp of zero is "boot time": latency is the uptime.
    metrics.observe_event_latency_since(0);
    assert_eq!(value(&metrics, "aiwatch_rule_eval_seconds", &[]), Some(1.0));
    assert_eq!(
        value(&metrics, "aiwatch_event_latency_seconds", &[]),
        Some(2.0)
    );
}

#[test]
fn self_metrics_and_text_encoding() {
    let metrics = metrics_with_cap(10);
    metrics.set_probe_attached("sched_process_exec", true);
    metrics.set_probe_attached("security_file_open", false);
    metrics.set_ready(true);
    metrics.set_ringbuf_used_bytes(4096);
    metrics.set_anomaly_profiles(ProfileState::Learning, 3);
    let text = metrics.encode_text().expect("encodes");
    assert!(text.contains("aiwatch_probe_attached{probe=\"sched_process_exec\"} 1"));
    assert!(text.contains("aiwatch_probe_attached{probe=\"security_file_open\"} 0"));
    assert!(text.contains("aiwatch_ready 1"));
    assert!(text.contains("aiwatch_ringbuf_used_bytes 4096"));
    assert!(text.contains("aiwatch_anomaly_profiles{state=\"learning\"} 3"));
    assert!(text.contains(&format!(
        "aiwatch_build_info{{kernel=\"6.1.0-test\",version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    assert!(text.contains("process_resident_memory_bytes"));
}

#[test]
fn metric_names_include_families_without_series() {
    let metrics = metrics_with_cap(10);
    let names = metrics.metric_names();
    // Labelled families that nothing has touched yet are absent from gather().
    assert_eq!(
        series_count(&metrics, "aiwatch_workload_egress_bytes_total"),
        0
    );
    for expected in [
        "aiwatch_workload_egress_bytes_total",
        "aiwatch_alerts_total",
        "aiwatch_probe_attached",
        "process_resident_memory_bytes",
    ] {
        assert!(
            names.iter().any(|name| name == expected),
            "{expected} missing"
        );
    }
}

#[test]
fn a_live_workload_has_every_series_from_the_start() {
    let metrics = metrics_with_cap(10);
    let vllm = workload("w1", "vllm", "inference");
    metrics.workload_live(&vllm, 2);
    let ours = [("workload", "vllm"), ("kind", "inference")];
    assert_eq!(
        value(&metrics, "aiwatch_workload_gpu_processes", &ours),
        Some(2.0)
    );
    assert_eq!(
        value(&metrics, "aiwatch_workload_egress_bytes_total", &ours),
        Some(0.0)
    );
    assert_eq!(
        value(&metrics, "aiwatch_workload_model_read_bytes_total", &ours),
        Some(0.0)
    );
    assert_eq!(series_count(&metrics, "aiwatch_workload_alerts_total"), 5);
    assert_eq!(metrics.workloads_with_series(), vec!["w1".to_string()]);

    // Ended: no GPU held, series kept until forgotten.
    metrics.workload_ended("w1");
    assert_eq!(
        value(&metrics, "aiwatch_workload_gpu_processes", &ours),
        Some(0.0)
    );
    assert_eq!(series_count(&metrics, "aiwatch_workload_alerts_total"), 5);
    metrics.forget_workload("w1");
    assert_eq!(series_count(&metrics, "aiwatch_workload_alerts_total"), 0);
    assert!(metrics.workloads_with_series().is_empty());
}

#[test]
fn alert_and_pending_losses_have_their_own_labels() {
    let metrics = Metrics::new(MetricsConfig::default()).unwrap();
    metrics.observe_alerts_lost_total(LossStage::Sink, 3);
    metrics.observe_alerts_lost_total(LossStage::Sink, 5);
    metrics.observe_lost_total(LossStage::KernelPending, Some(Kind::Open), 7);
    let text = metrics.encode_text().unwrap();
    assert!(
        text.contains("aiwatch_events_lost_total{kind=\"alert\",stage=\"sink\"} 5"),
        "{text}"
    );
    assert!(
        text.contains("aiwatch_events_lost_total{kind=\"open\",stage=\"kernel_pending\"} 7"),
        "{text}"
    );
}

#[test]
fn a_workloads_pods_are_capped_series_dropped_with_the_workload() {
    let metrics = metrics_with_cap(1);
    let served = workload("a", "fraud", "inference");
    metrics.workload_live(&served, 0);
    let names: Vec<String> = (0..12).map(|i| format!("fraud-{i}")).collect();
    metrics.workload_pods(&served, names.iter().map(|p| ("ml", p.as_str())));
    // Again: the same pods are not new series.
    metrics.workload_pods(&served, names.iter().map(|p| ("ml", p.as_str())));
    assert_eq!(
        value(
            &metrics,
            "aiwatch_workload_pod_info",
            &[
                ("workload", "fraud"),
                ("namespace", "ml"),
                ("pod", "fraud-0")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        series_count(&metrics, "aiwatch_workload_pod_info"),
        runtime::MAX_POD_SERIES_PER_WORKLOAD
    );
    // Past the workload series cap: no pod series for `other`.
    metrics.workload_pods(&workload("b", "second", "agent"), [("ml", "second-0")]);
    assert_eq!(
        series_count(&metrics, "aiwatch_workload_pod_info"),
        runtime::MAX_POD_SERIES_PER_WORKLOAD
    );
    metrics.forget_workload("a");
    assert_eq!(series_count(&metrics, "aiwatch_workload_pod_info"), 0);
}
