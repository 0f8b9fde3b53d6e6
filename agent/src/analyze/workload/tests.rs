use super::*;

const ORT_MAPS: &str = include_str!("testdata/onnxruntime_python.maps");
const NUMPY_MAPS: &str = include_str!("testdata/numpy_python.maps");

/// `/proc/<pid>/maps` text as procfs parses it.
fn maps(text: &str) -> procfs::process::MemoryMaps {
    use procfs::FromRead;
    procfs::process::MemoryMaps::from_read(text.as_bytes()).expect("procfs parses the maps")
}
const CONTAINER: &str = "4f1c2a3b5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7a8";

fn table_with(declared: &[DeclaredWorkload], limits: TableLimits) -> WorkloadTable {
    WorkloadTable::new(
        WorkloadClassifier::with_defaults().expect("classifier"),
        DeclaredSet::new(declared).expect("declarations"),
        limits,
    )
}

fn table() -> WorkloadTable {
    table_with(&[], TableLimits::default())
}

fn facts(exe: &str, argv: &[&str]) -> ProcessFacts {
    ProcessFacts {
        exe: exe.into(),
        argv: argv.iter().map(|a| a.to_string()).collect(),
        cgroup: "/user.slice/user-0.slice/session-4.scope".into(),
        container_id: None,
        ppid: None,
    }
}

fn onnx_server(table: &mut WorkloadTable, pid: u32) -> Vec<WorkloadChange> {
    let mut changes = table.on_exec(
        pid,
        facts(
            "/usr/bin/python3.11",
            &["python3", "tests/workloads/onnx_server.py", "/tmp/w", "0"],
        ),
    );
    changes.extend(table.on_library_scan(pid, &maps(ORT_MAPS)));
    changes.extend(table.on_file_open(pid, AssetClass::Model, "/tmp/w/models/tiny.onnx", false));
    changes
}

#[test]
fn onnx_server_becomes_an_inference_workload_with_reasons() {
    let mut table = table();
    let changes = onnx_server(&mut table, 100);
    let workload = table.lookup(100).expect("classified").clone();
    assert_eq!(workload.kind.as_str(), "inference");
    assert_eq!(workload.name, "onnx_server");
    assert_eq!(
        changes,
        vec![WorkloadChange::Joined {
            pid: 100,
            workload: workload.clone(),
            holds_container: false,
            declared: false,
        }]
    );
    let listed = table.workloads();
    assert_eq!(listed.len(), 1);
    let reasons = listed[0].reasons.join("; ");
    assert!(reasons.contains("onnxruntime"), "{reasons}");
    assert!(reasons.contains("tiny.onnx"), "{reasons}");
    assert_eq!(listed[0].pids, vec![100]);
}

#[test]
fn numpy_script_and_one_liner_are_not_workloads() {
    let mut table = table();
    table.on_exec(1, facts("/usr/bin/python3", &["python3", "-c", "print(1)"]));
    table.on_exec(2, facts("/usr/bin/python3", &["python3", "stats.py"]));
    table.on_library_scan(2, &maps(NUMPY_MAPS));
    table.on_file_open(2, AssetClass::Dataset, "/tmp/x.npy", false);
    assert!(table.lookup(1).is_none());
    assert!(table.lookup(2).is_none());
    assert!(table.workloads().is_empty());
}

#[test]
fn notebook_kernel_is_a_notebook_at_exec() {
    let mut table = table();
    let changes = table.on_exec(
        7,
        facts(
            "/usr/bin/python3",
            &["python3", "-m", "ipykernel_launcher", "-f", "/tmp/k.json"],
        ),
    );
    assert_eq!(changes.len(), 1);
    assert_eq!(table.lookup(7).map(|w| w.kind.as_str()), Some("notebook"));
    // Serving-like evidence later does not turn a notebook into a server.
    table.on_library_scan(7, &maps(ORT_MAPS));
    table.on_file_open(7, AssetClass::Model, "/tmp/m.onnx", false);
    table.on_listen(7, 8888);
    assert_eq!(table.lookup(7).map(|w| w.kind.as_str()), Some("notebook"));
}

#[test]
fn children_inherit_and_leave_on_exit() {
    let mut table = table();
    onnx_server(&mut table, 100);
    let workload = table.lookup(100).cloned().expect("workload");
    let changes = table.on_fork(100, 101);
    assert_eq!(
        changes,
        vec![WorkloadChange::Joined {
            pid: 101,
            workload: workload.clone(),
            holds_container: false,
            declared: false,
        }]
    );
    // The child runs a shell: still the server's workload.
    table.on_exec(101, facts("/bin/sh", &["/bin/sh", "-c", "true"]));
    assert_eq!(table.lookup(101), Some(&workload));
    let changes = table.on_exit(101);
    assert_eq!(
        changes,
        vec![WorkloadChange::Left {
            pid: 101,
            workload: workload.clone(),
        }]
    );
    assert!(table.lookup(101).is_none());
    assert_eq!(table.workloads()[0].pids, vec![100]);
}

#[test]
fn earlier_children_join_when_the_parent_is_classified() {
    let mut table = table();
    table.on_exec(
        200,
        facts("/usr/bin/python3", &["python3", "serve_model.py"]),
    );
    table.on_fork(200, 201);
    table.on_fork(201, 202);
    let changes = table.on_library_scan(200, &maps(ORT_MAPS));
    assert!(
        changes.is_empty(),
        "library alone is not enough: {changes:?}"
    );
    let changes = table.on_file_open(200, AssetClass::Model, "/srv/models/m.safetensors", false);
    let joined: BTreeSet<u32> = changes
        .iter()
        .filter_map(|c| match c {
            WorkloadChange::Joined { pid, .. } => Some(*pid),
            _ => None,
        })
        .collect();
    assert_eq!(joined, BTreeSet::from([200, 201, 202]));
}

#[test]
fn restart_keeps_the_id() {
    let mut table = table();
    onnx_server(&mut table, 100);
    let first = table.lookup(100).cloned().expect("workload");
    table.on_exit(100);
    // Same program, new login session: same id.
    let mut again = facts(
        "/usr/bin/python3.11",
        &["python3", "tests/workloads/onnx_server.py", "/tmp/w", "0"],
    );
    again.cgroup = "/user.slice/user-0.slice/session-9.scope".into();
    table.on_exec(300, again);
    table.on_library_scan(300, &maps(ORT_MAPS));
    table.on_file_open(300, AssetClass::Model, "/tmp/w/models/tiny.onnx", false);
    assert_eq!(table.lookup(300), Some(&first));
    assert_eq!(table.workloads().len(), 1);
}

#[test]
fn same_program_in_two_containers_is_two_workloads() {
    let mut table = table();
    for (pid, id) in [(1u32, CONTAINER), (2, "ab".repeat(32).leak() as &str)] {
        let mut f = facts("/usr/bin/ollama", &["ollama", "serve"]);
        f.container_id = Some(id.to_string());
        table.on_exec(pid, f);
    }
    let (a, b) = (table.lookup(1).cloned(), table.lookup(2).cloned());
    assert!(a.is_some() && b.is_some());
    assert_ne!(a, b);
    assert_eq!(table.workloads()[0].workload.name, "ollama");
}

#[test]
fn unknown_ai_is_refined_by_later_evidence() {
    let mut table = table();
    table.on_exec(10, facts("/usr/bin/python3", &["python3", "job.py"]));
    let torch_maps = "7f00-7f01 r-xp 0 fe:00 1 /venv/lib/python3.11/site-packages/torch/lib/libtorch_cuda.so\n\
                      7f02-7f03 r-xp 0 fe:00 2 /venv/lib/python3.11/site-packages/nvidia/cuda_runtime/lib/libcudart.so.12\n";
    table.on_library_scan(10, &maps(torch_maps));
    let before = table.lookup(10).cloned().expect("torch with CUDA passes");
    assert_eq!(before.kind.as_str(), "unknown-ai");
    table.on_fork(10, 11);
    let changes = table.on_file_open(
        11,
        AssetClass::Model,
        "/runs/a/checkpoints/step-5.safetensors",
        true,
    );
    let after = table.lookup(10).cloned().expect("still a workload");
    assert_eq!(after.kind.as_str(), "training");
    assert_eq!(table.lookup(11), Some(&after));
    assert_eq!(
        changes,
        vec![WorkloadChange::Reclassified {
            from: before,
            to: after,
            pids: vec![10, 11]
        }]
    );
}

#[test]
fn copy_tools_do_not_become_workloads() {
    let mut table = table();
    table.on_exec(
        5,
        facts("/usr/bin/cp", &["cp", "a.safetensors", "b.safetensors"]),
    );
    table.on_file_open(5, AssetClass::Model, "/m/a.safetensors", false);
    table.on_file_open(5, AssetClass::Model, "/m/b.safetensors", true);
    assert!(table.lookup(5).is_none());
}

#[test]
fn declarations_win_over_discovery() {
    let declared: Vec<DeclaredWorkload> = serde_saphyr::from_str(
        "- name: fraud\n  kind: pipeline\n  match:\n    argv: '*onnx_server.py*'\n",
    )
    .expect("parses");
    let mut table = table_with(&declared, TableLimits::default());
    let changes = onnx_server(&mut table, 100);
    let workload = table.lookup(100).cloned().expect("declared");
    assert_eq!(
        (workload.kind.as_str(), workload.name.as_str()),
        ("pipeline", "fraud")
    );
    assert_eq!(
        changes.len(),
        1,
        "joined once, never reclassified: {changes:?}"
    );
    assert!(
        matches!(changes[0], WorkloadChange::Joined { declared: true, .. }),
        "a declared workload's members are told apart (accelerator deny): {changes:?}"
    );
    assert!(table.workloads()[0].declared);
}

#[test]
fn exec_into_a_declared_program_moves_the_process() {
    let declared: Vec<DeclaredWorkload> = serde_saphyr::from_str(
        "- name: batch\n  kind: pipeline\n  match:\n    exe: '/opt/batch/*'\n",
    )
    .expect("parses");
    let mut table = table_with(&declared, TableLimits::default());
    onnx_server(&mut table, 100);
    table.on_fork(100, 101);
    let changes = table.on_exec(101, facts("/opt/batch/run", &["run"]));
    assert!(matches!(
        changes.first(),
        Some(WorkloadChange::Left { pid: 101, .. })
    ));
    assert!(matches!(
        changes.get(1),
        Some(WorkloadChange::Joined { pid: 101, .. })
    ));
    assert_eq!(table.lookup(101).map(|w| w.name.as_str()), Some("batch"));
}

#[test]
fn startup_scan_inherits_through_ppid() {
    let mut table = table();
    table.on_exec(50, facts("/usr/bin/ollama", &["ollama", "serve"]));
    let mut child = facts(
        "/usr/bin/ollama",
        &["/usr/bin/ollama", "runner", "--model", "/m/blob"],
    );
    child.ppid = Some(50);
    table.on_exec(51, child);
    assert_eq!(table.lookup(51), table.lookup(50));
}

#[test]
fn processes_are_bounded_and_workload_members_are_kept() {
    let limits = TableLimits {
        max_processes: 4,
        max_workloads: 1,
    };
    let mut table = table_with(&[], limits);
    table.on_exec(1, facts("/usr/bin/ollama", &["ollama", "serve"]));
    for pid in 2..10 {
        table.on_exec(pid, facts("/bin/true", &["true"]));
    }
    assert_eq!(table.process_count(), 4);
    assert!(
        table.lookup(1).is_some(),
        "workload member survives eviction"
    );
    assert_eq!(table.stats().processes_evicted, 5);
    // The only workload slot is taken by a live workload: a second is dropped.
    table.on_exec(20, facts("/usr/bin/tritonserver", &["tritonserver"]));
    assert!(table.lookup(20).is_none());
    assert_eq!(table.stats().workloads_dropped, 1);
    // Once the first workload is idle, its slot is reused.
    table.on_exit(1);
    table.on_exec(21, facts("/usr/bin/tritonserver", &["tritonserver"]));
    assert!(table.lookup(21).is_some());
    assert_eq!(table.stats().workloads_evicted, 1);
}

#[test]
fn ids_are_stable_and_distinct() {
    let a = workload_id(WorkloadKind::Inference, "m", "c1");
    assert_eq!(a, workload_id(WorkloadKind::Inference, "m", "c1"));
    assert_ne!(a, workload_id(WorkloadKind::Training, "m", "c1"));
    assert_ne!(a, workload_id(WorkloadKind::Inference, "m", "c2"));
    assert!(a.starts_with("wl-") && a.len() == 19, "{a}");
    assert_eq!(
        scope_of(None, "/user.slice/user-0.slice/session-3.scope"),
        "user.slice/user-0.slice"
    );
    assert_eq!(scope_of(Some("abc"), "/x"), "abc");
}

#[test]
fn listing_serialises_with_reasons() {
    let mut table = table();
    onnx_server(&mut table, 100);
    let json = serde_json::to_value(table.workloads()).expect("serialises");
    assert_eq!(json[0]["kind"], "inference");
    assert!(json[0]["reasons"].as_array().is_some_and(|r| !r.is_empty()));
}

fn in_container(exe: &str, id: &str) -> ProcessFacts {
    ProcessFacts {
        exe: exe.into(),
        argv: vec![exe.into()],
        cgroup: format!("/k8s.io/{id}"),
        container_id: Some(id.into()),
        ppid: None,
    }
}

fn pod_declaration(name: &str, kind: WorkloadKind) -> DeclaredWorkload {
    DeclaredWorkload {
        name: name.into(),
        kind,
        matcher: declared::DeclaredMatch {
            container_id: Some(CONTAINER.into()),
            ..declared::DeclaredMatch::default()
        },
    }
}

#[test]
fn a_pod_declaration_takes_in_the_container_now_and_later() {
    let mut table = table();
    table.on_exec(10, in_container("/bin/sh", CONTAINER));
    table.on_exec(11, in_container("/bin/sh", "b".repeat(64).as_str()));
    let changes =
        table.declare_container(CONTAINER, pod_declaration("fraud", WorkloadKind::Inference));
    let joined = table.lookup(10).expect("declared").clone();
    assert_eq!(
        (joined.name.as_str(), joined.kind.as_str()),
        ("fraud", "inference")
    );
    assert!(matches!(
        changes.as_slice(),
        [WorkloadChange::Joined {
            pid: 10,
            holds_container: true,
            declared: true,
            ..
        }]
    ));
    // Another container is not the pod's.
    assert_eq!(table.lookup(11), None);
    // A process started in the container later joins at exec.
    table.on_exec(12, in_container("/bin/cat", CONTAINER));
    assert_eq!(
        table.lookup(12).map(|w| w.id.as_str()),
        Some(joined.id.as_str())
    );
    assert_eq!(
        table.declared_ref(&pod_declaration("fraud", WorkloadKind::Inference)),
        Some(joined)
    );
}

#[test]
fn the_configuration_wins_over_a_pod_declaration() {
    let configured = DeclaredWorkload {
        name: "configured".into(),
        kind: WorkloadKind::Training,
        matcher: declared::DeclaredMatch {
            exe: Some("/bin/sh".into()),
            ..declared::DeclaredMatch::default()
        },
    };
    let mut table = table_with(&[configured], TableLimits::default());
    table.on_exec(20, in_container("/bin/sh", CONTAINER));
    let changes = table.declare_container(CONTAINER, pod_declaration("pod", WorkloadKind::Agent));
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(
        table.lookup(20).map(|w| w.name.as_str()),
        Some("configured")
    );
    // Execs the configuration does not match take the pod's.
    table.on_exec(21, in_container("/bin/cat", CONTAINER));
    assert_eq!(table.lookup(21).map(|w| w.name.as_str()), Some("pod"));
}

/// A container runtime's init enters the container, joins the declared
/// workload (its exec seen after the move), forks the container's process
/// and exits: the process it forked must hold the container's cgroup, or
/// the cgroup leaves the kernel's tracking map with the init.
#[test]
fn descendants_of_a_container_holder_hold_the_container_too() {
    let declaration = DeclaredWorkload {
        name: "boxed".into(),
        kind: WorkloadKind::Inference,
        matcher: declared::DeclaredMatch {
            cgroup: Some("/boxes/**".into()),
            ..declared::DeclaredMatch::default()
        },
    };
    let mut table = table_with(&[declaration], TableLimits::default());
    let in_box = |exe: &str| ProcessFacts {
        cgroup: "/boxes/libpod-1".into(),
        ..facts(exe, &[exe])
    };
    let holds = |changes: &[WorkloadChange], pid: u32| {
        changes.iter().any(|change| {
            matches!(change, WorkloadChange::Joined { pid: p, holds_container: true, .. } if *p == pid)
        })
    };
    let init = table.on_exec(30, in_box("/usr/sbin/runc"));
    assert!(holds(&init, 30), "{init:?}");
    let child = table.on_fork(30, 31);
    assert!(holds(&child, 31), "{child:?}");
    // The child's own exec in the box changes nothing: it holds already.
    assert_eq!(table.on_exec(31, in_box("/bin/sleep")), vec![]);
    // A process forked before the exec seen by a new pid inherits the hold.
    let late = table.on_exec(
        32,
        ProcessFacts {
            ppid: Some(31),
            ..in_box("/bin/sh")
        },
    );
    assert!(holds(&late, 32), "{late:?}");
    // Leaving drops the hold: a later join by inheritance from an
    // undeclared parent does not carry it.
    table.on_exit(30);
    let outside = table.on_exec(40, facts("/bin/true", &["true"]));
    assert!(!holds(&outside, 40), "{outside:?}");
}
