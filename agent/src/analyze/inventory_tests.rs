use super::*;
use crate::event::{FileInfo, ForkInfo, NetInfo, Process, WallTime};

fn server() -> WorkloadRef {
    WorkloadRef {
        id: "wl-1".into(),
        kind: crate::event::WorkloadKind::Inference,
        name: "onnx_server".into(),
        claimed: false,
    }
}

/// The test's clock: `"t5"` is 5 s after the epoch.
fn at(label: &str) -> Option<WallTime> {
    let seconds: u128 = label
        .trim_start_matches('t')
        .parse()
        .expect("a t<seconds> label");
    Some(WallTime::from_unix_nanos(seconds * 1_000_000_000))
}

fn event(kind: Kind, pid: u32, time: &str, workload: Option<WorkloadRef>) -> Event {
    Event {
        time: at(time),
        kind,
        process: Process {
            pid,
            exe: "/usr/bin/python3.11".into(),
            ..Process::default()
        },
        workload,
        ..Event::default()
    }
}

fn open(pid: u32, time: &str, path: &str, class: &str, access: &str, size: u64) -> Event {
    let mut e = event(Kind::Open, pid, time, Some(server()));
    e.file = Some(FileInfo {
        path: path.into(),
        access: Some(access.parse().unwrap()),
        class: Some(class.parse().unwrap()),
        size: Some(size),
        result: 3,
        ..FileInfo::default()
    });
    e
}

fn net(
    kind: Kind,
    time: &str,
    dst: (&str, u16),
    sent: Option<u64>,
    received: Option<u64>,
) -> Event {
    let mut e = event(kind, 100, time, Some(server()));
    e.net = Some(NetInfo {
        family: "ipv4".parse().unwrap(),
        protocol: "tcp".parse().unwrap(),
        src: Some(Endpoint {
            ip: "10.0.0.5".parse().unwrap(),
            port: 40000,
        }),
        dst: Some(Endpoint {
            ip: dst.0.parse().unwrap(),
            port: dst.1,
        }),
        result: Some(0),
        bytes_sent: sent,
        bytes_received: received,
        dst_external: true,
        dst_name: Some("huggingface.co".into()),
        ..NetInfo::default()
    });
    e
}

#[test]
fn model_reads_add_bytes_and_times() {
    let mut inventory = Inventory::new(InventoryLimits::default());
    inventory.observe(&open(100, "t1", "/m/tiny.onnx", "model", "read", 1000));
    inventory.observe(&open(100, "t2", "/m/tiny.onnx", "model", "read", 1000));
    inventory.observe(&open(100, "t3", "/m/ckpt.pt", "pickle-model", "write", 0));
    let snapshot = inventory.snapshot();
    let workload = &snapshot.workloads[0];
    assert_eq!(workload.workload, server());
    let tiny = &workload.models[0];
    assert_eq!((tiny.opens, tiny.bytes_read), (2, 2000));
    assert_eq!((tiny.first_seen, tiny.last_seen), (at("t1"), at("t2")));
    let ckpt = &workload.models[1];
    assert_eq!((ckpt.writes, ckpt.bytes_read), (1, 0));
    // The per-file view knows the reader and the writer.
    let files: Vec<&str> = snapshot.models.iter().map(|m| m.path.as_str()).collect();
    assert_eq!(files, vec!["/m/ckpt.pt", "/m/tiny.onnx"]);
    assert_eq!(
        snapshot.models[1].readers[0].workload.as_deref(),
        Some("wl-1")
    );
    assert_eq!(snapshot.models[1].readers[0].opens, 2);
    assert_eq!(snapshot.models[0].writers.len(), 1);
    assert!(snapshot.models[0].readers.is_empty());
}

#[test]
fn writers_outside_workloads_are_recorded_by_exe() {
    let mut inventory = Inventory::new(InventoryLimits::default());
    let mut tamper = open(9, "t1", "/m/tiny.onnx", "model", "write", 0);
    tamper.workload = None;
    tamper.process.exe = "/usr/bin/dd".into();
    inventory.observe(&tamper);
    let snapshot = inventory.snapshot();
    assert!(snapshot.workloads.is_empty());
    let writer = &snapshot.models[0].writers[0];
    assert_eq!(
        (writer.workload.as_deref(), writer.exe.as_str()),
        (None, "/usr/bin/dd")
    );
}

#[test]
fn secrets_devices_and_datasets_are_listed() {
    let mut inventory = Inventory::new(InventoryLimits::default());
    inventory.observe(&open(
        100,
        "t1",
        "/tmp/h/.cache/huggingface/token",
        "secret",
        "read",
        37,
    ));
    inventory.observe(&open(
        100,
        "t1",
        "/dev/nvidia0",
        "gpu-device",
        "read_write",
        0,
    ));
    inventory.observe(&open(100, "t1", "/d/train.parquet", "dataset", "read", 50));
    let mut failed = open(100, "t1", "/root/.aws/credentials", "secret", "read", 0);
    if let Some(file) = failed.file.as_mut() {
        file.result = -13;
    }
    inventory.observe(&failed);
    let w = &inventory.snapshot().workloads[0];
    assert_eq!(w.secrets.len(), 1, "failed opens are not reads");
    assert_eq!(w.secrets[0].path, "/tmp/h/.cache/huggingface/token");
    assert_eq!(w.gpu_devices[0].path, "/dev/nvidia0");
    assert_eq!(w.datasets[0].bytes_read, 50);
}

#[test]
fn tcp_summaries_are_running_totals() {
    let mut inventory = Inventory::new(InventoryLimits::default());
    inventory.observe(&net(Kind::Connect, "t1", ("18.1.1.1", 443), None, None));
    inventory.observe(&net(
        Kind::TcpSummary,
        "t2",
        ("18.1.1.1", 443),
        Some(100),
        Some(1000),
    ));
    inventory.observe(&net(
        Kind::TcpSummary,
        "t3",
        ("18.1.1.1", 443),
        Some(150),
        Some(4000),
    ));
    let mut last = net(
        Kind::TcpSummary,
        "t4",
        ("18.1.1.1", 443),
        Some(160),
        Some(4000),
    );
    if let Some(n) = last.net.as_mut() {
        n.closed = Some(true);
    }
    inventory.observe(&last);
    // A new connection on the same ports starts from zero again.
    inventory.observe(&net(
        Kind::TcpSummary,
        "t5",
        ("18.1.1.1", 443),
        Some(5),
        Some(7),
    ));
    let peer = &inventory.snapshot().workloads[0].peers[0];
    assert_eq!(peer.connections, 1);
    assert_eq!((peer.bytes_out, peer.bytes_in), (165, 4007));
    assert_eq!(peer.name.as_deref(), Some("huggingface.co"));
    assert!(peer.external);
    assert_eq!(peer.last_seen, at("t5"));
}

#[test]
fn listeners_and_processes() {
    let mut inventory = Inventory::new(InventoryLimits::default());
    let mut listen = net(Kind::Listen, "t1", ("0.0.0.0", 0), None, None);
    if let Some(n) = listen.net.as_mut() {
        n.src = Some(Endpoint {
            ip: "127.0.0.1".parse().unwrap(),
            port: 8080,
        });
    }
    inventory.observe(&listen);
    let mut fork = event(Kind::Fork, 100, "t2", Some(server()));
    fork.fork = Some(ForkInfo { child_pid: 101 });
    inventory.observe(&fork);
    let w = &inventory.snapshot().workloads[0];
    assert_eq!(w.listening[0].port, 8080);
    assert_eq!(w.listening[0].protocol, Protocol::Tcp);
    let pids: Vec<u32> = w.processes.iter().map(|p| p.pid).collect();
    assert_eq!(pids, vec![100, 101]);
    inventory.observe(&event(Kind::Exit, 101, "t3", Some(server())));
    let w = &inventory.snapshot().workloads[0];
    assert_eq!(w.processes.len(), 1);
    assert_eq!(w.processes_exited, 1);
    // The reports that come after a process's exit (its last folded reads,
    // GPU ioctls, TCP totals) do not list it again.
    for kind in [Kind::FileAccess, Kind::GpuIoctl, Kind::TcpSummary] {
        inventory.observe(&event(kind, 101, "t4", Some(server())));
    }
    let pids: Vec<u32> = inventory.snapshot().workloads[0]
        .processes
        .iter()
        .map(|p| p.pid)
        .collect();
    assert_eq!(pids, vec![100]);
}

/// A discovered workload reclassified (training, then inference: a new
/// id) moves its processes: the old entry lists them no longer, so their
/// exit, which comes under the new workload, leaves nobody listed.
#[test]
fn a_reclassified_workload_takes_its_processes_with_it() {
    let mut inventory = Inventory::new(InventoryLimits::default());
    let training = WorkloadRef {
        kind: crate::event::WorkloadKind::Training,
        id: "wl-training".into(),
        ..server()
    };
    inventory.observe(&event(Kind::Exec, 300, "t1", Some(training.clone())));
    inventory.apply(&[crate::analyze::workload::WorkloadChange::Reclassified {
        from: training,
        to: server(),
        pids: vec![300],
    }]);
    // Listed under its new workload, and nowhere else, while it runs.
    let listed = |inventory: &Inventory| -> Vec<(String, u32)> {
        inventory
            .snapshot()
            .workloads
            .iter()
            .flat_map(|w| w.processes.iter().map(|p| (w.workload.id.clone(), p.pid)))
            .collect()
    };
    assert_eq!(listed(&inventory), [("wl-1".to_string(), 300)]);
    inventory.observe(&event(Kind::Exit, 300, "t3", Some(server())));
    assert!(listed(&inventory).is_empty());
}

/// A server writes its model (training evidence) before it listens: the
/// workload is first a training job, then an inference server. The
/// inventory lists it once, under the new id and kind, with what it did
/// under the old one; a past run under the new id adds up with it.
#[test]
fn a_reclassified_workload_is_listed_once_with_all_it_did() {
    use crate::analyze::workload::WorkloadChange::Reclassified;
    let training = WorkloadRef {
        kind: crate::event::WorkloadKind::Training,
        id: "wl-training".into(),
        ..server()
    };
    let under = |workload: &WorkloadRef, mut event: Event| {
        event.workload = Some(workload.clone());
        event
    };
    let mut inventory = Inventory::new(InventoryLimits::default());
    inventory.observe(&under(
        &training,
        open(300, "t1", "/m/tiny.onnx", "model", "write", 0),
    ));
    inventory.observe(&under(
        &training,
        open(300, "t2", "/m/tiny.onnx", "model", "read", 134),
    ));
    inventory.note_alert(&training);
    inventory.apply(&[Reclassified {
        from: training.clone(),
        to: server(),
        pids: vec![300],
    }]);
    inventory.observe(&open(300, "t3", "/m/tiny.onnx", "model", "read", 134));
    let snapshot = inventory.snapshot();
    assert_eq!(snapshot.workloads.len(), 1, "{:?}", snapshot.workloads);
    let listed = &snapshot.workloads[0];
    assert_eq!(listed.workload, server());
    assert_eq!(listed.first_seen, at("t1"));
    assert_eq!(listed.alerts, 1);
    assert_eq!(
        listed.processes.iter().map(|p| p.pid).collect::<Vec<_>>(),
        [300]
    );
    let model = &listed.models[0];
    assert_eq!((model.opens, model.writes, model.bytes_read), (3, 1, 268));

    // The next run starts as training again, with an entry of its own, and
    // is then found to be the server the inventory lists already.
    inventory.observe(&event(Kind::Exit, 300, "t4", Some(server())));
    inventory.observe(&under(
        &training,
        open(400, "t5", "/m/other.onnx", "model", "write", 0),
    ));
    inventory.observe(&under(
        &training,
        open(400, "t5", "/m/tiny.onnx", "model", "read", 134),
    ));
    inventory.apply(&[Reclassified {
        from: training,
        to: server(),
        pids: vec![400],
    }]);
    let snapshot = inventory.snapshot();
    assert_eq!(snapshot.workloads.len(), 1, "{:?}", snapshot.workloads);
    let listed = &snapshot.workloads[0];
    assert_eq!(listed.workload, server());
    assert_eq!(listed.first_seen, at("t1"));
    assert_eq!(listed.processes_exited, 1);
    assert_eq!(
        listed.processes.iter().map(|p| p.pid).collect::<Vec<_>>(),
        [400]
    );
    let opens: Vec<(&str, u64)> = listed
        .models
        .iter()
        .map(|m| (m.path.as_str(), m.opens))
        .collect();
    assert_eq!(opens, [("/m/tiny.onnx", 4), ("/m/other.onnx", 1)]);
}

#[test]
fn lists_are_bounded_and_overflow_is_counted() {
    let limits = InventoryLimits {
        models: 2,
        workloads: 1,
        model_files: 3,
        ..InventoryLimits::default()
    };
    let mut inventory = Inventory::new(limits);
    for i in 0..5 {
        inventory.observe(&open(
            100,
            "t0",
            &format!("/m/{i}.onnx"),
            "model",
            "read",
            1,
        ));
    }
    let snapshot = inventory.snapshot();
    assert_eq!(snapshot.workloads[0].models.len(), 2);
    assert_eq!(snapshot.workloads[0].overflow.models, 3);
    assert_eq!(snapshot.models.len(), 3);
    assert_eq!(snapshot.overflow.model_files, 2);
    // A second workload replaces the idlest one.
    let mut other = event(Kind::Exec, 7, "t9", None);
    other.workload = Some(WorkloadRef {
        id: "wl-2".into(),
        kind: crate::event::WorkloadKind::Notebook,
        name: "kernel".into(),
        claimed: false,
    });
    inventory.observe(&other);
    let snapshot = inventory.snapshot();
    assert_eq!(snapshot.workloads.len(), 1);
    assert_eq!(snapshot.workloads[0].workload.id, "wl-2");
    assert_eq!(snapshot.overflow.workloads, 1);
}

#[test]
fn snapshot_round_trips_as_json() {
    let mut inventory = Inventory::new(InventoryLimits::default());
    inventory.observe(&open(100, "t1", "/m/tiny.onnx", "model", "read", 10));
    inventory.observe(&net(Kind::Connect, "t1", ("1.1.1.1", 53), None, None));
    let snapshot = inventory.snapshot();
    let json = serde_json::to_string(&snapshot).expect("serialises");
    assert!(json.contains("\"kind\":\"inference\""), "{json}");
    let back: InventorySnapshot = serde_json::from_str(&json).expect("parses back");
    assert_eq!(back, snapshot);
}

/// `aiwatch inventory` reads `/inventory` back into these types to draw its
/// tables: everything the listener writes must parse.
#[test]
fn the_served_document_parses_back() {
    use crate::analyze::workload::{Signal, SignalSource};
    let mut inventory = Inventory::new(InventoryLimits::default());
    inventory.observe(&open(100, "t1", "/m/model.onnx", "model", "read", 4096));
    inventory.observe(&open(
        100,
        "t1",
        "/dev/nvidia0",
        "gpu-device",
        "read_write",
        0,
    ));
    let mut snapshot = inventory.snapshot();
    snapshot.workloads[0].signals.push(Signal {
        source: SignalSource::Library,
        key: "onnxruntime".into(),
        detail: "/x/libonnxruntime.so".into(),
        weight: 8,
        suggests: None,
        decisive: false,
    });
    let text = serde_json::to_string(&snapshot).unwrap();
    let back: InventorySnapshot = serde_json::from_str(&text).expect("parses back");
    assert_eq!(back, snapshot);
}
