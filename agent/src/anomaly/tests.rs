//! Engine tests on synthetic event streams: benign behaviour with jitter
//! raises nothing; each planted departure raises exactly one alert with the
//! right explanation; profiles survive restarts; memory stays bounded.

use std::path::Path;

use crate::alert::{Alert, Severity};
use crate::event::{
    DeviceInfo, Endpoint, Event, FileInfo, GpuInfo, Kind, NetInfo, Parent, Process, WallTime,
    WorkloadRef,
};

use super::config::{AnomalyConfig, Caps, DetectorTuning, WorkloadTuning};
use super::profile::{Mode, WorkloadKey, ASSET_CLASSES};
use super::{cli, export, AnomalyEngine};

const SEC: u64 = 1_000_000_000;
const MIN: u64 = 60 * SEC;
const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;
/// Boot-clock start of the synthetic streams (a machine up for a while).
const T0: u64 = 5_000 * SEC;
const LEARN_MINUTES: u64 = 60;

/// Deterministic jitter (xorshift64*).
struct Jitter(u64);

impl Jitter {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// 2024-06-01T00:00:00Z plus `ktime` nanoseconds.
fn wall_time(ktime: u64) -> Option<WallTime> {
    const JUNE_2024_NS: u128 = 1_717_200_000 * 1_000_000_000;
    Some(WallTime::from_unix_nanos(JUNE_2024_NS + u128::from(ktime)))
}

fn event(kind: Kind, ktime: u64, workload: (&str, &str)) -> Event {
    Event {
        time: wall_time(ktime),
        ktime_ns: ktime,
        kind,
        process: Process {
            pid: 4242,
            exe: "/usr/bin/python3.11".into(),
            comm: "python3".into(),
            ..Process::default()
        },
        workload: Some(WorkloadRef {
            id: format!("pod-{}", workload.1),
            kind: crate::event::WorkloadKind::parse(workload.0).expect("a workload kind"),
            name: workload.1.into(),
            claimed: false,
        }),
        ..Event::default()
    }
}

const VLLM: (&str, &str) = ("inference", "vllm-llama");
const EMBEDDER: (&str, &str) = ("pipeline", "batch-embedder");

fn exec(t: u64, w: (&str, &str), exe: &str, parent: &str) -> Event {
    let mut e = event(Kind::Exec, t, w);
    e.process.exe = exe.into();
    e.parent = Some(Parent {
        pid: 1,
        exe: parent.into(),
        ..Parent::default()
    });
    e
}

fn open(
    t: u64,
    w: (&str, &str),
    path: &str,
    class: &str,
    size: Option<u64>,
    access: &str,
) -> Event {
    let mut e = event(Kind::Open, t, w);
    e.file = Some(FileInfo {
        path: path.into(),
        class: Some(class.parse().unwrap()),
        size,
        access: Some(access.parse().unwrap()),
        ..FileInfo::default()
    });
    e
}

fn net(kind: Kind, t: u64, w: (&str, &str), ip: &str, port: u16, name: Option<&str>) -> Event {
    let mut e = event(kind, t, w);
    e.net = Some(NetInfo {
        family: "ipv4".parse().unwrap(),
        protocol: "tcp".parse().unwrap(),
        dst: Some(Endpoint {
            ip: ip.parse().unwrap(),
            port,
        }),
        dst_external: !ip.starts_with("127."),
        dst_name: name.map(str::to_string),
        ..NetInfo::default()
    });
    e
}

fn summary(t: u64, w: (&str, &str), ip: &str, port: u16, bytes: u64, name: Option<&str>) -> Event {
    let mut e = net(Kind::TcpSummary, t, w, ip, port, name);
    if let Some(n) = e.net.as_mut() {
        n.bytes_sent = Some(bytes);
    }
    e
}

fn listen(t: u64, w: (&str, &str), port: u16) -> Event {
    let mut e = event(Kind::Listen, t, w);
    e.net = Some(NetInfo {
        family: "ipv4".parse().unwrap(),
        protocol: "tcp".parse().unwrap(),
        src: Some(Endpoint {
            ip: "0.0.0.0".parse().unwrap(),
            port,
        }),
        ..NetInfo::default()
    });
    e
}

fn gpu(t: u64, w: (&str, &str), ioctls: u64) -> Event {
    let mut e = event(Kind::GpuIoctl, t, w);
    e.gpu = Some(GpuInfo {
        ioctls,
        interval_s: 10.0,
        device: DeviceInfo {
            kind: "char".parse().unwrap(),
            major: 195,
            minor: 0,
            accelerator: Some("nvidia".into()),
        },
    });
    e
}

/// One minute of the inference server's ordinary life, with jitter.
/// `shard_base` moves on a model refresh (new shard numbers, same folder).
fn vllm_minute(minute: u64, j: &mut Jitter, out: &mut Vec<Event>) {
    let t = T0 + minute * MIN;
    let at = |j: &mut Jitter| t + j.range(0, 59) * SEC;
    if minute == 0 {
        out.push(listen(t, VLLM, 8000));
        out.push(listen(t, VLLM, j.range(33000, 60000) as u16));
        out.push(open(
            t,
            VLLM,
            "/var/run/secrets/kubernetes.io/serviceaccount/token",
            "secret",
            Some(900),
            "read",
        ));
    }
    // Initial model load, and a daily refresh at minute 150 with new shard numbers.
    if minute == 0 || minute == 150 {
        let first = if minute == 0 { 1 } else { 17 };
        for shard in first..first + 8 {
            let path = format!("/models/llama/shard-{shard:05}.safetensors");
            out.push(open(
                t + shard * SEC,
                VLLM,
                &path,
                "model",
                Some(2 * GIB),
                "read",
            ));
        }
        out.push(net(
            Kind::Connect,
            t,
            VLLM,
            &format!("18.64.7.{}", j.range(1, 250)),
            443,
            Some("huggingface.co"),
        ));
    }
    // Cache and metrics traffic.
    let redis = format!("10.0.{}.{}", j.range(0, 3), j.range(2, 200));
    out.push(net(Kind::Connect, at(j), VLLM, &redis, 6379, None));
    out.push(net(Kind::Connect, at(j), VLLM, "127.0.0.1", 9090, None));
    // Responses to clients: 20–40 MiB a minute in several summaries.
    for _ in 0..j.range(3, 6) {
        let client = format!("198.51.100.{}", j.range(1, 254));
        out.push(summary(
            at(j),
            VLLM,
            &client,
            51000,
            j.range(5, 8) * MIB,
            None,
        ));
    }
    for _ in 0..6 {
        out.push(gpu(at(j), VLLM, j.range(400, 900)));
    }
    // Health check every five minutes, with jitter in the second.
    if minute.is_multiple_of(5) {
        out.push(exec(
            at(j),
            VLLM,
            "/usr/bin/nvidia-smi",
            "/usr/bin/python3.11",
        ));
    }
    // A periodic snapshot of the LoRA adapter.
    if minute % 30 == 7 {
        let path = format!("/checkpoints/step-{}/adapter.safetensors", minute * 100);
        out.push(open(at(j), VLLM, &path, "model", Some(30 * MIB), "write"));
    }
}

/// The embedder never touches the GPU while learning.
fn embedder_minute(minute: u64, j: &mut Jitter, out: &mut Vec<Event>) {
    let t = T0 + minute * MIN;
    for _ in 0..j.range(1, 3) {
        let path = format!("/data/corpus/part-{:05}.parquet", j.range(0, 9999));
        out.push(open(
            t + j.range(0, 59) * SEC,
            EMBEDDER,
            &path,
            "dataset",
            Some(64 * MIB),
            "read",
        ));
    }
    out.push(net(
        Kind::Connect,
        t + j.range(0, 59) * SEC,
        EMBEDDER,
        "10.1.2.3",
        5432,
        None,
    ));
}

fn stream(minutes: std::ops::Range<u64>, seed: u64) -> Vec<Event> {
    let mut j = Jitter(seed);
    let mut out = Vec::new();
    for minute in minutes {
        vllm_minute(minute, &mut j, &mut out);
        embedder_minute(minute, &mut j, &mut out);
    }
    out.sort_by_key(|e| e.ktime_ns);
    out
}

fn test_config() -> AnomalyConfig {
    AnomalyConfig {
        learning_window_secs: LEARN_MINUTES * 60,
        ..AnomalyConfig::default()
    }
}

fn feed(engine: &mut AnomalyEngine, events: &[Event]) -> Vec<Alert> {
    events.iter().flat_map(|e| engine.observe(e)).collect()
}

/// Both workloads learned for an hour, then lived three more benignly.
fn learned_engine(state_dir: Option<&Path>) -> (AnomalyEngine, u64) {
    let mut engine =
        AnomalyEngine::new(test_config(), state_dir.map(Path::to_path_buf)).expect("engine starts");
    let alerts = feed(&mut engine, &stream(0..LEARN_MINUTES + 180, 7));
    assert_eq!(alerts, Vec::<Alert>::new(), "benign stream raised alerts");
    (engine, LEARN_MINUTES + 180)
}

fn vllm_key() -> WorkloadKey {
    WorkloadKey {
        kind: VLLM.0.into(),
        name: VLLM.1.into(),
    }
}

/// Feeds `planted` in the middle of `minutes` more benign minutes, then
/// closes the last minute; returns every alert raised.
fn plant(engine: &mut AnomalyEngine, start: u64, planted: Vec<Event>, minutes: u64) -> Vec<Alert> {
    let mut events = stream(start..start + minutes, 99);
    events.extend(planted);
    events.sort_by_key(|e| e.ktime_ns);
    let mut alerts = feed(engine, &events);
    alerts.extend(engine.tick(T0 + (start + minutes + 1) * MIN));
    alerts
}

fn only_alert(alerts: &[Alert], rule: &str) -> Alert {
    let rules: Vec<&str> = alerts.iter().map(|a| a.rule.as_str()).collect();
    assert_eq!(rules, vec![rule], "alerts: {alerts:#?}");
    alerts[0].clone()
}

#[test]
fn benign_streams_learn_then_enforce_silently() {
    let (engine, _) = learned_engine(None);
    let profile = engine.profile(&vllm_key()).expect("profile");
    assert_eq!(profile.mode, Mode::Enforcing);
    assert!(profile.peers.contains("10.0.0.0/8:6379"));
    assert!(profile.peers.contains("huggingface.co:443"));
    assert!(profile.peers.contains("loopback:9090"));
    assert!(profile.listen_ports.contains("tcp/8000"));
    assert!(profile.listen_ports.contains("tcp/ephemeral"));
    let models = profile.paths.get("model").expect("model paths");
    assert!(models.contains("/models/llama/*.safetensors"), "{models:?}");
    assert!(
        models.contains("/checkpoints/step-*/*.safetensors"),
        "{models:?}"
    );
    assert_eq!(profile.learning.learned_ns / MIN, LEARN_MINUTES);
    // docs/anomaly.md: real profiles are a few KiB.
    let size = serde_json::to_vec(profile).map_or(usize::MAX, |v| v.len());
    assert!(size < 4096, "profile is {size} bytes");
    let states = engine.profile_states();
    assert_eq!((states.learning, states.enforcing), (0, 2));
}

#[test]
fn new_executable_alerts_once_naming_parent() {
    let (mut engine, m) = learned_engine(None);
    let t = T0 + (m + 2) * MIN + 5 * SEC;
    let planted = vec![
        exec(t, VLLM, "/bin/bash", "/usr/bin/python3.11"),
        exec(t + SEC, VLLM, "/bin/bash", "/usr/bin/python3.11"),
    ];
    let alert = only_alert(&plant(&mut engine, m, planted, 5), "anomaly.new-executable");
    assert_eq!(alert.severity, Severity::High);
    assert_eq!(
        alert.summary,
        "inference workload `vllm-llama` ran /bin/bash (started by /usr/bin/python3.11), \
         never seen in 1h of learning; its known executables are /usr/bin/nvidia-smi, \
         /usr/bin/python3.11"
    );
    assert_eq!(
        alert.workload.map(|w| w.name).as_deref(),
        Some("vllm-llama")
    );
}

#[test]
fn new_process_pair_of_known_executables() {
    let (mut engine, m) = learned_engine(None);
    let t = T0 + (m + 1) * MIN;
    let planted = vec![exec(t, VLLM, "/usr/bin/nvidia-smi", "/usr/bin/nvidia-smi")];
    let alert = only_alert(
        &plant(&mut engine, m, planted, 3),
        "anomaly.new-process-pair",
    );
    assert!(
        alert.summary.contains(
            "/usr/bin/nvidia-smi -> /usr/bin/nvidia-smi, a parent → child pair never seen"
        ),
        "{}",
        alert.summary
    );
    assert!(alert
        .summary
        .ends_with("its known pairs are /usr/bin/python3.11 -> /usr/bin/nvidia-smi"));
}

#[test]
fn new_peer_alerts_once_per_generalised_peer() {
    let (mut engine, m) = learned_engine(None);
    let t = T0 + (m + 1) * MIN;
    let planted = vec![
        net(Kind::Connect, t, VLLM, "203.0.113.9", 443, None),
        net(Kind::Connect, t + MIN, VLLM, "203.0.113.10", 443, None),
    ];
    let alert = only_alert(&plant(&mut engine, m, planted, 4), "anomaly.new-peer");
    assert_eq!(
        alert.summary,
        "inference workload `vllm-llama` connected to 203.0.113.9:443, never seen in 1h of \
         learning; its known peers are 10.0.0.0/8:6379, 18.64.7.0/24:443, huggingface.co:443, loopback:9090"
    );
}

#[test]
fn new_listen_port_alerts() {
    let (mut engine, m) = learned_engine(None);
    let planted = vec![listen(T0 + (m + 1) * MIN, VLLM, 4444)];
    let alert = only_alert(
        &plant(&mut engine, m, planted, 3),
        "anomaly.new-listen-port",
    );
    assert!(alert.summary.contains("listened on tcp port 4444"));
    assert!(alert
        .summary
        .ends_with("its known listening ports are tcp/8000, tcp/ephemeral"));
}

#[test]
fn new_secret_path_alerts() {
    let (mut engine, m) = learned_engine(None);
    let planted = vec![open(
        T0 + (m + 1) * MIN,
        VLLM,
        "/root/.ssh/id_rsa",
        "secret",
        Some(2000),
        "read",
    )];
    let alert = only_alert(
        &plant(&mut engine, m, planted, 3),
        "anomaly.new-file-class-path",
    );
    assert_eq!(
        alert.summary,
        "inference workload `vllm-llama` opened secret file /root/.ssh/id_rsa (path class \
         /root/.ssh/id_rsa), never seen in 1h of learning; its known secret paths are \
         /var/run/secrets/kubernetes.io/serviceaccount/token"
    );
}

#[test]
fn egress_jump_with_model_reads_is_one_exfiltration_alert() {
    let (mut engine, m) = learned_engine(None);
    let mut planted = Vec::new();
    for minute in m + 1..m + 5 {
        let t = T0 + minute * MIN;
        for shard in 1..=8u64 {
            let path = format!("/models/llama/shard-{shard:05}.safetensors");
            planted.push(open(
                t + shard * SEC,
                VLLM,
                &path,
                "model",
                Some(2 * GIB),
                "read",
            ));
        }
        // 50× the usual ~30 MiB a minute, to a peer it knows.
        for k in 0..10 {
            planted.push(summary(
                t + (20 + k) * SEC,
                VLLM,
                "18.64.7.20",
                443,
                150 * MIB,
                Some("huggingface.co"),
            ));
        }
    }
    let alert = only_alert(
        &plant(&mut engine, m, planted, 6),
        "anomaly.rate.egress-bytes",
    );
    assert_eq!(alert.severity, Severity::Critical);
    assert!(alert.summary.starts_with(
        "inference workload `vllm-llama` sent 1.5 GiB a minute to remote peers for 3 consecutive minutes; its profile expects about"
    ), "{}", alert.summary);
    assert!(alert.summary.ends_with(
        "while its model-file reads jumped to 16.0 GiB a minute (usually 0 B): possible model exfiltration"
    ), "{}", alert.summary);
    assert!(alert.tags.contains(&"mitre.T1041".to_string()));
}

#[test]
fn spawn_storm_alerts_once() {
    let (mut engine, m) = learned_engine(None);
    let mut planted = Vec::new();
    for minute in m + 1..m + 6 {
        for k in 0..120 {
            let t = T0 + minute * MIN + k * SEC / 2;
            planted.push(exec(t, VLLM, "/usr/bin/nvidia-smi", "/usr/bin/python3.11"));
        }
    }
    let alert = only_alert(&plant(&mut engine, m, planted, 8), "anomaly.rate.spawns");
    assert!(alert.summary.starts_with(
        "inference workload `vllm-llama` started 120 processes a minute for 3 consecutive minutes"
    ), "{}", alert.summary);
}

#[test]
fn gpu_ioctl_surge_from_idle_workload_alerts_once() {
    let (mut engine, m) = learned_engine(None);
    let mut planted = Vec::new();
    for minute in m + 1..m + 5 {
        for k in 0..6 {
            planted.push(gpu(T0 + minute * MIN + k * 10 * SEC, EMBEDDER, 25_000));
        }
    }
    let alert = only_alert(
        &plant(&mut engine, m, planted, 6),
        "anomaly.rate.gpu-ioctls",
    );
    assert!(alert.summary.starts_with(
        "pipeline workload `batch-embedder` made 150000 GPU ioctls a minute for 3 consecutive minutes; its profile expects about 0"
    ), "{}", alert.summary);
}

#[test]
fn replay_gives_the_same_alerts() {
    let planted = |m: u64| {
        vec![net(
            Kind::Connect,
            T0 + (m + 1) * MIN,
            VLLM,
            "203.0.113.9",
            443,
            None,
        )]
    };
    let run = || {
        let (mut engine, m) = learned_engine(None);
        plant(&mut engine, m, planted(m), 3)
    };
    let first = run();
    assert_eq!(first.len(), 1);
    assert_eq!(first, run());
}

#[test]
fn drifting_flags_once_then_learns_and_frozen_learns_nothing() {
    let (mut engine, m) = learned_engine(None);
    assert!(engine.set_mode(&vllm_key(), Mode::Drifting));
    let t = T0 + (m + 1) * MIN;
    let alerts = plant(&mut engine, m, vec![listen(t, VLLM, 7000)], 2);
    only_alert(&alerts, "anomaly.new-listen-port");
    let profile = engine.profile(&vllm_key()).expect("profile");
    assert!(profile.listen_ports.contains("tcp/7000"));

    let mut frozen = AnomalyEngine::new(test_config(), None).expect("engine");
    frozen.observe(&exec(T0, VLLM, "/usr/bin/a", "/bin/sh"));
    assert!(frozen.set_frozen(&vllm_key(), true));
    frozen.observe(&exec(T0 + SEC, VLLM, "/usr/bin/b", "/bin/sh"));
    let alerts = frozen.tick(T0 + 2 * LEARN_MINUTES * MIN);
    assert!(alerts.is_empty());
    let profile = frozen.profile(&vllm_key()).expect("profile");
    assert_eq!(profile.mode, Mode::Learning);
    assert_eq!(profile.learning.events, 1);
    assert!(profile.executables.contains("/usr/bin/a"));
    assert!(!profile.executables.contains("/usr/bin/b"));
}

#[test]
fn per_workload_tuning_disables_and_reweights() {
    let mut config = test_config();
    config.workloads.push(WorkloadTuning {
        name: "vllm-*".into(),
        kind: Some("inference".into()),
        detectors: [
            (
                "new-peer".to_string(),
                DetectorTuning {
                    enabled: Some(false),
                    ..Default::default()
                },
            ),
            (
                "new-listen-port".to_string(),
                DetectorTuning {
                    severity: Some(Severity::Critical),
                    ..Default::default()
                },
            ),
        ]
        .into(),
    });
    let mut engine = AnomalyEngine::new(config, None).expect("engine");
    let alerts = feed(&mut engine, &stream(0..LEARN_MINUTES + 10, 7));
    assert!(alerts.is_empty());
    let m = LEARN_MINUTES + 10;
    let t = T0 + (m + 1) * MIN;
    let planted = vec![
        net(Kind::Connect, t, VLLM, "203.0.113.9", 443, None),
        listen(t, VLLM, 4444),
    ];
    let alert = only_alert(
        &plant(&mut engine, m, planted, 3),
        "anomaly.new-listen-port",
    );
    assert_eq!(alert.severity, Severity::Critical);

    let mut bad = test_config();
    bad.detectors
        .insert("no-such-detector".into(), DetectorTuning::default());
    assert!(AnomalyEngine::new(bad, None).is_err());
}

#[test]
fn profiles_round_trip_and_restart_raises_nothing_for_learned_behaviour() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut engine, _) = learned_engine(Some(dir.path()));
    let report = engine.save().expect("save");
    assert_eq!(report.written, 2);
    let before = engine.profile(&vllm_key()).expect("profile").clone();

    // After a reboot the boot clock starts low again.
    let mut restarted =
        AnomalyEngine::new(test_config(), Some(dir.path().to_path_buf())).expect("load");
    assert_eq!(restarted.profile(&vllm_key()), Some(&before));
    assert_eq!(restarted.profile_states().enforcing, 2);
    let replayed: Vec<Event> = stream(0..120, 1234)
        .into_iter()
        .map(|mut e| {
            e.ktime_ns -= T0 - 30 * SEC;
            e
        })
        .collect();
    let alerts = feed(&mut restarted, &replayed);
    assert_eq!(alerts, Vec::<Alert>::new());
    let after = restarted.profile(&vllm_key()).expect("profile");
    assert_eq!(after.mode, Mode::Enforcing);
    assert_eq!(after.learning, before.learning);
    assert_eq!(after.peers, before.peers);
    assert_eq!(after.executables, before.executables);
}

#[test]
fn corrupt_and_other_version_files_are_moved_aside_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut engine, _) = learned_engine(Some(dir.path()));
    engine.save().expect("save");
    std::fs::write(dir.path().join("broken.json"), "{\"version\": 1, \"workl").expect("write");
    let mut future = serde_json::to_value(engine.profile(&vllm_key())).expect("json");
    future["version"] = serde_json::json!(99);
    future["workload"]["name"] = serde_json::json!("future");
    std::fs::write(dir.path().join("future.json"), future.to_string()).expect("write");

    let loaded = AnomalyEngine::new(test_config(), Some(dir.path().to_path_buf())).expect("load");
    assert_eq!(loaded.stats().corrupt_profiles, 2);
    assert_eq!(loaded.profiles().count(), 2);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for bad in ["broken.json.corrupt-", "future.json.corrupt-"] {
        assert!(names.iter().any(|n| n.starts_with(bad)), "{names:?}");
    }
    assert!(!names.contains(&"broken.json".to_string()));
}

#[test]
fn cli_changes_are_picked_up_and_export_round_trips() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut engine, _) = learned_engine(Some(dir.path()));
    engine.save().expect("save");

    let listed = cli::list_profiles(dir.path()).expect("list");
    assert_eq!(listed.len(), 2);
    cli::update_profile(dir.path(), "vllm-llama", |p| p.mode = Mode::Drifting).expect("set-mode");
    let report = engine.save().expect("save");
    assert_eq!(report.reloaded, 1);
    assert_eq!(
        engine.profile(&vllm_key()).map(|p| p.mode),
        Some(Mode::Drifting)
    );

    let json = cli::export_profile(dir.path(), "inference/vllm-llama", false).expect("export");
    let other = tempfile::tempdir().expect("tempdir");
    let file = other.path().join("vllm.json");
    std::fs::write(&file, json).expect("write");
    let key = cli::import_profile(other.path(), &file).expect("import");
    assert_eq!(key, vllm_key());
    assert_eq!(
        cli::find_profile(other.path(), "vllm-llama").ok().as_ref(),
        engine.profile(&vllm_key())
    );

    cli::reset_profile(dir.path(), "vllm-llama").expect("reset");
    let report = engine.save().expect("save");
    assert_eq!(report.reset, 1);
    assert_eq!(
        engine.profile(&vllm_key()).map(|p| p.mode),
        Some(Mode::Learning)
    );
    assert!(matches!(
        cli::find_profile(dir.path(), "nope"),
        Err(cli::CliError::NotFound(_))
    ));
}

#[test]
fn policy_export_allowlists_what_was_learned() {
    let (engine, _) = learned_engine(None);
    let profile = engine.profile(&vllm_key()).expect("profile");
    let yaml = export::to_yaml(&export::policy_for(profile)).expect("yaml");
    let policy: serde_json::Value = serde_saphyr::from_str(&yaml).expect("parses back");
    let rules = policy["rules"].as_array().expect("rules");
    let rule = |suffix: &str| {
        rules
            .iter()
            .find(|r| r["id"] == format!("anomaly.profile.inference.vllm-llama.{suffix}"))
            .unwrap_or_else(|| panic!("no {suffix} rule in {yaml}"))
    };
    let exec = rule("exec");
    assert_eq!(exec["when"]["kind"], "exec");
    assert_eq!(exec["when"]["workload.name"], "vllm-llama");
    let allowed = exec["when"]["not"]["any"].to_string();
    assert!(
        allowed.contains("/usr/bin/nvidia-smi") && allowed.contains("/usr/bin/python3.11"),
        "{yaml}"
    );
    let connect = &rule("connect")["when"]["not"]["any"];
    let peers = connect.as_array().expect("peer list");
    assert_eq!(peers.len(), profile.peers.len());
    assert!(peers
        .iter()
        .any(|p| p["net.dst.ip"]["cidr"] == "10.0.0.0/8" && p["net.dst.port"] == 6379));
    assert!(peers
        .iter()
        .any(|p| p["net.dst_name"] == "huggingface.co" && p["net.dst.port"] == 443));
    let listen = &rule("listen")["when"]["not"]["any"];
    assert!(listen
        .as_array()
        .is_some_and(|a| a.iter().any(|c| c["net.src.port"] == 8000)));
    let models = &rule("open-model")["when"];
    assert_eq!(models["file.class"], "model");
    let globs = models["not"]["file.path"]["glob"]
        .as_array()
        .expect("globs");
    assert!(globs.iter().any(|g| g == "/models/llama/*.safetensors"));
    // Never-touched classes flag every open of that class.
    assert!(rule("open-pickle-model")["when"].get("not").is_none());
    for r in rules {
        assert!(["info", "low", "medium", "high", "critical"]
            .contains(&r["severity"].as_str().unwrap_or("")));
    }
}

#[test]
fn high_cardinality_stays_under_the_size_bound() {
    let config = test_config();
    let bound = config.caps.max_profile_bytes(ASSET_CLASSES.len());
    let mut engine = AnomalyEngine::new(config.clone(), None).expect("engine");
    let mut j = Jitter(3);
    for i in 0..100_000u64 {
        let t = T0 + i * 10_000_000; // 100k events over ~17 minutes
                                     // Same folder, new shard numbers: one pattern.
        let shard = format!("/models/llama/shard-{i:06}.safetensors");
        engine.observe(&open(t, VLLM, &shard, "model", Some(GIB), "read"));
        // Distinct random folders: capped.
        let scattered = format!("/srv/{:x}/{:x}.bin", j.next() % 1_000_000_007, j.next());
        engine.observe(&open(t, VLLM, &scattered, "dataset", Some(MIB), "read"));
        let ip = format!(
            "{}.{}.{}.{}",
            j.range(1, 223),
            j.range(0, 255),
            j.range(0, 255),
            j.range(1, 254)
        );
        engine.observe(&net(
            Kind::Connect,
            t,
            VLLM,
            &ip,
            j.range(1, 65535) as u16,
            None,
        ));
        let name = format!("h{}x{}.example.com", j.next() % 1000, i);
        engine.observe(&net(
            Kind::Connect,
            t,
            VLLM,
            "203.0.113.1",
            443,
            Some(&name),
        ));
    }
    let profile = engine.profile(&vllm_key()).expect("profile");
    let caps = &config.caps;
    assert_eq!(profile.paths.get("model").map(|s| s.len()), Some(1));
    assert!(profile.paths.get("dataset").map_or(0, |s| s.len()) <= caps.paths_per_class);
    assert_eq!(profile.peers.len(), caps.peers);
    assert!(profile.dropped_at_cap > 100_000);
    let size = serde_json::to_vec(profile).expect("json").len();
    assert!(size <= bound, "profile is {size} bytes, bound {bound}");
}

#[test]
fn a_thousand_workloads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = test_config();
    let bound = config.caps.max_profile_bytes(ASSET_CLASSES.len());
    let mut engine =
        AnomalyEngine::new(config.clone(), Some(dir.path().to_path_buf())).expect("engine");
    let mut j = Jitter(11);
    for minute in 0..3u64 {
        for w in 0..1000u64 {
            let name = format!("svc-{w}");
            let t = T0 + minute * MIN + j.range(0, 59) * SEC;
            let mut e = exec(t, ("agent", &name), "/usr/bin/python3.11", "/bin/sh");
            e.ktime_ns = t;
            engine.observe(&e);
            engine.observe(&net(
                Kind::Connect,
                t,
                ("agent", &name),
                "10.9.8.7",
                8080,
                None,
            ));
        }
    }
    assert_eq!(engine.profile_states().learning, 1000);
    let total: usize = engine
        .profiles()
        .map(|p| serde_json::to_vec(p).map_or(usize::MAX, |v| v.len()))
        .inspect(|size| assert!(*size <= bound))
        .sum();
    assert!(
        total < 1000 * 8 * 1024,
        "1000 small profiles took {total} bytes"
    );
    assert_eq!(engine.save().expect("save").written, 1000);
    let loaded = AnomalyEngine::new(config, Some(dir.path().to_path_buf())).expect("load");
    assert_eq!(loaded.profiles().count(), 1000);
    assert_eq!(loaded.stats().corrupt_profiles, 0);
}

#[test]
fn egress_alone_is_high_and_small_rises_under_the_floor_are_ignored() {
    let (mut engine, m) = learned_engine(None);
    let mut planted = Vec::new();
    for minute in m + 1..m + 6 {
        let t = T0 + minute * MIN;
        // Idle → tiny: the embedder starts a few processes a minute.
        for k in 0..5 {
            planted.push(exec(
                t + k * SEC,
                EMBEDDER,
                "/usr/bin/python3.11",
                "/bin/sh",
            ));
        }
        for k in 0..10 {
            planted.push(summary(
                t + (20 + k) * SEC,
                VLLM,
                "198.51.100.7",
                51000,
                150 * MIB,
                None,
            ));
        }
    }
    let alerts = plant(&mut engine, m, planted, 7);
    // The embedder runs python itself (learned from its own events), but
    // never started it from a shell: the pair is novel (once); its spawn
    // rate is not.
    let rules: Vec<&str> = alerts.iter().map(|a| a.rule.as_str()).collect();
    assert_eq!(
        rules,
        vec!["anomaly.new-process-pair", "anomaly.rate.egress-bytes"]
    );
    let egress = &alerts[1];
    assert_eq!(egress.severity, Severity::High);
    assert!(
        !egress.summary.contains("exfiltration"),
        "{}",
        egress.summary
    );
    assert_eq!(egress.event.kind, Kind::TcpSummary);
}

/// Eight letters from a random number: distinct names that no
/// generalisation folds together (no digits, not hash-like).
fn letters(j: &mut Jitter) -> String {
    let mut n = j.next();
    (0..8)
        .map(|_| {
            let c = (b'a' + (n % 26) as u8) as char;
            n /= 26;
            c
        })
        .collect()
}

#[test]
fn a_thousand_workloads_with_high_cardinality_paths_stay_bounded() {
    // Caps scaled down from the defaults so a thousand workloads overflow
    // every set quickly; the bound is computed from them the same way.
    let config = AnomalyConfig {
        learning_window_secs: 60,
        learning_min_events: 1,
        caps: Caps {
            paths_per_class: 16,
            peers: 32,
            alerted: 32,
            ..Caps::default()
        },
        ..AnomalyConfig::default()
    };
    let caps = config.caps.clone();
    let bound = caps.max_profile_bytes(ASSET_CLASSES.len());
    // Every item a profile may hold, at its longest.
    let per_profile_items = caps.executables
        + caps.process_pairs
        + caps.paths_per_class * ASSET_CLASSES.len()
        + caps.peers
        + caps.listen_ports
        + caps.gpu_devices
        + caps.alerted;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut engine =
        AnomalyEngine::new(config.clone(), Some(dir.path().to_path_buf())).expect("engine");
    let mut j = Jitter(17);
    let names: Vec<String> = (0..1000).map(|w| format!("svc-{w}")).collect();
    // Learning (the first minute): every workload opens more distinct data
    // set folders, model folders and secret files than a class may hold,
    // some with paths far longer than an item, and contacts more peers
    // than the peer set holds.
    let over = caps.paths_per_class + 16;
    for name in &names {
        let w = ("inference", name.as_str());
        for i in 0..over as u64 {
            let t = T0 + j.range(0, 50) * SEC;
            let dataset = format!("/data/{}/{}.parquet", letters(&mut j), letters(&mut j));
            engine.observe(&open(t, w, &dataset, "dataset", Some(MIB), "read"));
            let deep = format!(
                "/models/{}/{}/w.safetensors",
                letters(&mut j),
                "x".repeat(300)
            );
            engine.observe(&open(t, w, &deep, "model", Some(MIB), "read"));
            let secret = format!("/run/secrets/{}", letters(&mut j));
            engine.observe(&open(t, w, &secret, "secret", Some(64), "read"));
            let ip = format!("203.0.{}.{}", i % 250, j.range(1, 254));
            engine.observe(&net(Kind::Connect, t, w, &ip, 443, None));
        }
        for _ in 0..caps.peers {
            let t = T0 + j.range(0, 50) * SEC;
            let ip = format!("198.{}.{}.1", j.range(0, 255), j.range(0, 255));
            engine.observe(&net(Kind::Connect, t, w, &ip, 8443, None));
        }
    }
    // Enforcing: three minutes of new peers, more alerts than the alerted
    // set remembers, throttled per workload.
    let mut alerts = 0usize;
    for minute in 1..=3u64 {
        for name in &names {
            let w = ("inference", name.as_str());
            for _ in 0..24 {
                let t = T0 + minute * MIN + j.range(0, 59) * SEC;
                let ip = format!("192.0.{}.{}", j.range(0, 255), j.range(1, 254));
                let port = j.range(1024, 65535) as u16;
                alerts += engine
                    .observe(&net(Kind::Connect, t, w, &ip, port, None))
                    .len();
            }
        }
    }
    let states = engine.profile_states();
    assert_eq!(states.enforcing, 1000, "{states:?}");
    assert!(alerts > 0 && alerts <= 1000 * 3 * 20, "{alerts} alerts");
    assert!(engine.stats().suppressed_alerts > 0);

    let mut total_items = 0usize;
    for profile in engine.profiles() {
        for class in ["dataset", "model", "secret"] {
            assert_eq!(
                profile.paths.get(class).map(|s| s.len()),
                Some(caps.paths_per_class),
                "{} {class}",
                profile.workload
            );
        }
        assert_eq!(profile.peers.len(), caps.peers, "{}", profile.workload);
        assert_eq!(profile.alerted.len(), caps.alerted, "{}", profile.workload);
        assert!(profile.dropped_at_cap > 0);
        let sets = [&profile.peers, &profile.alerted]
            .into_iter()
            .chain(profile.paths.values());
        for set in sets {
            assert!(set.iter().all(|item| item.len() <= caps.item_bytes));
        }
        let items = profile.item_bytes();
        assert!(
            items <= per_profile_items * caps.item_bytes,
            "{items} bytes"
        );
        total_items += items;
        let size = serde_json::to_vec(profile).expect("json").len();
        assert!(
            size <= bound,
            "{}: {size} bytes, bound {bound}",
            profile.workload
        );
    }
    // What a thousand busy profiles hold in memory stays under the caps'
    // worst case (here about 148 MiB) by far.
    assert!(
        total_items < 16 * MIB as usize,
        "{total_items} bytes of items"
    );
    assert_eq!(engine.save().expect("save").written, 1000);
    let loaded = AnomalyEngine::new(config, Some(dir.path().to_path_buf())).expect("load");
    assert_eq!(loaded.profiles().count(), 1000);
    assert_eq!(loaded.profile_states().enforcing, 1000);
}

/// A server is discovered after it started: its own exec comes before it
/// belongs to the workload. Its executable is still learned, from its
/// other events, so it is neither novel nor missing from explanations.
#[test]
fn a_workload_learns_its_own_executable_without_seeing_its_exec() {
    let mut engine = AnomalyEngine::new(test_config(), None).expect("engine");
    let mut alerts = Vec::new();
    for minute in 0..LEARN_MINUTES + 5 {
        let t = T0 + minute * MIN;
        alerts.extend(engine.observe(&open(
            t,
            VLLM,
            "/models/llama.safetensors",
            "model",
            Some(MIB),
            "read",
        )));
    }
    assert!(alerts.is_empty(), "{alerts:#?}");
    let profile = engine.profile(&vllm_key()).expect("profile");
    assert_eq!(profile.mode, Mode::Enforcing);
    assert!(
        profile.executables.contains("/usr/bin/python3.11"),
        "{:?}",
        profile.executables
    );
    // A worker of the same executable is nothing new.
    let t = T0 + (LEARN_MINUTES + 6) * MIN;
    let worker = engine.observe(&exec(t, VLLM, "/usr/bin/python3.11", "/usr/bin/python3.11"));
    assert!(
        worker.iter().all(|a| a.rule != "anomaly.new-executable"),
        "{worker:#?}"
    );
}

/// Name lookups through the host's resolver are not peers; queries to any
/// other server on port 53 still are.
#[test]
fn lookups_through_the_resolver_are_not_new_peers() {
    let config = AnomalyConfig {
        dns_resolvers: vec!["10.255.255.53".parse().unwrap()],
        ..test_config()
    };
    let mut engine = AnomalyEngine::new(config, None).expect("engine");
    for minute in 0..LEARN_MINUTES + 5 {
        let t = T0 + minute * MIN;
        engine.observe(&net(Kind::Connect, t, VLLM, "10.1.2.3", 6379, None));
    }
    let t = T0 + (LEARN_MINUTES + 6) * MIN;
    let via_resolver = [
        net(Kind::Connect, t, VLLM, "10.255.255.53", 53, None),
        net(Kind::UdpSend, t + SEC, VLLM, "10.255.255.53", 53, None),
    ];
    let alerts = feed(&mut engine, &via_resolver);
    assert!(alerts.is_empty(), "{alerts:#?}");
    let rogue = engine.observe(&net(
        Kind::UdpSend,
        t + 2 * SEC,
        VLLM,
        "203.0.113.9",
        53,
        None,
    ));
    assert!(
        rogue.iter().any(|a| a.rule == "anomaly.new-peer"),
        "{rogue:#?}"
    );
}

#[test]
fn resolvers_come_from_resolv_conf() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("resolv.conf");
    std::fs::write(
        &path,
        "# generated\nsearch example.test\nnameserver 10.255.255.53\nnameserver fd00::53\noptions ndots:1\n",
    )
    .expect("write");
    let resolvers = super::config::host_resolvers(&path);
    assert_eq!(
        resolvers,
        vec![
            "10.255.255.53".parse::<std::net::IpAddr>().unwrap(),
            "fd00::53".parse().unwrap()
        ]
    );
    assert!(super::config::host_resolvers(&dir.path().join("missing")).is_empty());
}

#[test]
fn a_flood_of_workloads_evicts_the_least_recent_profile_which_comes_back_from_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = AnomalyConfig {
        max_profiles: 3,
        ..test_config()
    };
    let mut engine = AnomalyEngine::new(config, Some(dir.path().to_path_buf())).expect("engine");
    let first = ("inference", "first");
    engine.observe(&exec(T0, first, "/usr/bin/python3", "/bin/sh"));
    let pinned = ("inference", "pinned");
    engine.observe(&exec(T0 - SEC, pinned, "/usr/bin/python3", "/bin/sh"));
    let key = |name: &str| WorkloadKey {
        kind: "inference".into(),
        name: name.into(),
    };
    engine.set_frozen(&key("pinned"), true);
    // A flood of new workloads, each seen once and later than the first.
    for n in 0..20 {
        let w = ("inference", format!("flood-{n}"));
        engine.observe(&exec(
            T0 + (n + 1) * SEC,
            (w.0, &w.1),
            "/bin/true",
            "/bin/sh",
        ));
    }
    let stats = engine.stats();
    assert_eq!(stats.unprofiled_events, 0, "the cap refused workloads");
    assert_eq!(stats.evicted_profiles, 19);
    // The frozen profile stayed although it was the least recent; the first
    // one left memory, saved, and its file is there.
    assert!(engine.profile(&key("pinned")).is_some());
    assert!(engine.profile(&key("first")).is_none());
    assert!(dir
        .path()
        .join(super::store::ProfileStore::file_name(&key("first")))
        .exists());
    // It comes back with what it had learned.
    engine.observe(&exec(T0 + 30 * SEC, first, "/usr/bin/python3", "/bin/sh"));
    let back = engine.profile(&key("first")).expect("read back");
    assert!(back.executables.contains("/usr/bin/python3"));
}
