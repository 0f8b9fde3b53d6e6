use std::time::Instant;

use super::*;

fn reading(at: Instant, events: f64, workloads: &[(&str, &str, WorkloadTotals)]) -> Reading {
    Reading {
        at,
        events,
        lost: 0.0,
        ringbuf_used_bytes: 1024.0,
        ringbuf_size_bytes: 4096.0,
        rules_loaded: 40.0,
        ready: true,
        stream_dropped: 0.0,
        workloads: workloads
            .iter()
            .map(|(name, kind, totals)| ((name.to_string(), kind.to_string()), totals.clone()))
            .collect(),
    }
}

fn totals(egress: f64, model_reads: f64, alerts: f64) -> WorkloadTotals {
    WorkloadTotals {
        egress_bytes: egress,
        model_read_bytes: model_reads,
        alerts,
        gpu_processes: 1.0,
    }
}

fn alert(workload: &str, kind: &str) -> Alert {
    serde_json::from_value(serde_json::json!({
        "time": "2026-11-29T12:03:44.120Z", "rule": "r", "severity": "high",
        "summary": "s", "action": "alert", "action_taken": true,
        "workload": {"id": workload, "kind": kind, "name": workload},
        "event": {"time": "2026-11-29T12:03:44.120Z", "ktime_ns": 0, "kind": "exec", "process": {}},
    }))
    .unwrap()
}

#[test]
fn rates_come_from_the_growth_between_readings() {
    let start = Instant::now();
    let mut model = TopModel::default();
    model.push_reading(reading(
        start,
        100.0,
        &[("onnx", "inference", totals(0.0, 0.0, 1.0))],
    ));
    model.push_reading(reading(
        start + Duration::from_secs(2),
        300.0,
        &[("onnx", "inference", totals(2000.0, 500.0, 4.0))],
    ));
    let health = model.health().unwrap();
    assert_eq!(health.events_per_second, 100.0);
    assert_eq!(health.ringbuf_fill, Some(0.25));
    assert_eq!(health.rules_loaded, 40);
    let rows = model.rows();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row.egress_per_second, 1000.0);
    assert_eq!(row.model_read_bytes, 500.0);
    assert_eq!(row.alerts, 3, "alerts since the reading a minute ago");
    assert_eq!(row.gpu_processes, 1);
    assert_eq!(row.processes, None, "not in any inventory yet");
}

#[test]
fn a_minute_counts_from_a_reading_a_minute_old_and_forgets_older_ones() {
    let start = Instant::now();
    let mut model = TopModel::default();
    for second in 0..=90u64 {
        let alerts = second as f64; // one alert a second
        model.push_reading(reading(
            start + Duration::from_secs(second),
            0.0,
            &[("onnx", "inference", totals(0.0, 0.0, alerts))],
        ));
    }
    assert_eq!(model.rows()[0].alerts, 60);
    assert!(
        model.readings.len() <= 62,
        "{} readings kept",
        model.readings.len()
    );
}

#[test]
fn a_restarted_agent_does_not_give_negative_rates() {
    let start = Instant::now();
    let mut model = TopModel::default();
    model.push_reading(reading(start, 1000.0, &[]));
    model.push_reading(reading(start + Duration::from_secs(1), 10.0, &[]));
    assert_eq!(model.health().unwrap().events_per_second, 10.0);
}

#[test]
fn filters_apply_to_rows_and_alerts_and_sorting_orders_rows() {
    let start = Instant::now();
    let mut model = TopModel::default();
    let workloads = [
        ("onnx-server", "inference", totals(0.0, 0.0, 0.0)),
        ("trainer", "training", totals(0.0, 0.0, 0.0)),
    ];
    model.push_reading(reading(start, 0.0, &workloads));
    let later = [
        ("onnx-server", "inference", totals(0.0, 10.0, 1.0)),
        ("trainer", "training", totals(50.0, 0.0, 5.0)),
    ];
    model.push_reading(reading(start + Duration::from_secs(1), 0.0, &later));
    model.push_alert(alert("onnx-server", "inference"));
    model.push_alert(alert("trainer", "training"));

    let names = |model: &TopModel| model.rows().into_iter().map(|r| r.name).collect::<Vec<_>>();
    assert_eq!(
        names(&model),
        ["trainer", "onnx-server"],
        "most alerts first"
    );
    model.sort = Some(SortKey::ModelReads);
    assert_eq!(names(&model), ["onnx-server", "trainer"]);
    model.sort = Some(SortKey::Name);
    assert_eq!(names(&model), ["onnx-server", "trainer"]);

    model.filter.workload = "onnx".into();
    assert_eq!(names(&model), ["onnx-server"]);
    assert_eq!(model.alerts().count(), 1);

    model.filter.workload.clear();
    model.filter.next_kind();
    assert_eq!(model.filter.kind, Some("inference"));
    model.filter.next_kind();
    assert_eq!(model.filter.kind, Some("training"));
    assert_eq!(names(&model), ["trainer"]);
    assert_eq!(model.alerts().next().unwrap().rule, "r");
    for _ in 0..WORKLOAD_KINDS.len() - 1 {
        model.filter.next_kind();
    }
    assert_eq!(model.filter.kind, None, "the cycle ends at every kind");
    assert_eq!(model.alerts().count(), 2);
}

#[test]
fn since_start_counts_the_whole_counters() {
    let start = Instant::now();
    let mut model = TopModel::counting_since_start();
    model.push_reading(reading(
        start,
        0.0,
        &[("onnx", "inference", totals(0.0, 70.0, 3.0))],
    ));
    model.push_reading(reading(
        start + Duration::from_secs(1),
        0.0,
        &[("onnx", "inference", totals(0.0, 70.0, 4.0))],
    ));
    let row = &model.rows()[0];
    assert_eq!((row.alerts, row.model_read_bytes), (4, 70.0));
}
