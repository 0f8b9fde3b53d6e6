//! The agent's OCI image, run as the Kubernetes DaemonSet runs it.
//!
//! `cargo xtask image` builds the image the DaemonSet names (a static musl
//! release build: minutes the first time, seconds once cargo has it). The
//! test then turns the DaemonSet's pod spec into a `podman run`: host PID
//! namespace, the DaemonSet's volumes (its ConfigMap rendered into a folder,
//! its host paths, its emptyDirs as tmpfs), exactly its capabilities after
//! dropping all (never `--privileged`), its read-only root, seccomp and
//! AppArmor settings, memory and CPU limits, and its arguments. The agent in
//! the container must report the exec of a process this test starts on the
//! host, found by its pid, and serve `/metrics`.
//!
//! The agent's own data folders (state and alert log) are the test's scratch
//! folders instead of the host's /var paths; events go to a file there too.
//! The translation of the pod spec is the harness's `pod` module.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    sync::{mpsc, OnceLock},
    time::{Duration, Instant},
};

use aiwatch_tests::{
    aiwatch_bin, event_timeout, get, http_get, kind_of, pid_of,
    pod::{capabilities, output_text, podman, yaml, PodmanRun},
    read_json_lines, repo_root, wait_until, TempDir,
};
use serde_json::Value;

/// Builds the image with `cargo xtask image` (cargo skips what is built).
fn build_image(image: &str) {
    let cargo = option_env!("CARGO").unwrap_or("cargo");
    let output = Command::new(cargo)
        .args(["xtask", "image"])
        .current_dir(repo_root())
        .env("CARGO_INCREMENTAL", "0")
        .output()
        .expect("cargo xtask image starts");
    let text = output_text(&output);
    assert!(output.status.success(), "cargo xtask image failed:\n{text}");
    assert!(
        text.contains(&format!("built image {image}")),
        "cargo xtask image did not build {image}, the DaemonSet's image:\n{text}"
    );
    let exists = podman(&["image", "exists", image]);
    assert!(exists.status.success(), "podman has no image {image}");
}

/// `cat`s a fake cloud credential file under `dir`: a secret read the
/// default pack alerts on. Returns the reader's pid.
fn read_a_secret(dir: &Path) -> u64 {
    let secret = dir.join("home/.aws/credentials");
    std::fs::create_dir_all(secret.parent().expect("a parent")).expect("a secret's folder");
    std::fs::write(&secret, "[default]\n").expect("a secret");
    let mut reader = Command::new("/bin/cat")
        .arg(&secret)
        .stdout(Stdio::null())
        .spawn()
        .expect("cat runs");
    let pid = u64::from(reader.id());
    assert!(reader.wait().expect("cat exits").success());
    pid
}

/// The image the DaemonSet names, built once per test run.
fn daemonset_image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let daemonset = yaml("deploy/kubernetes/daemonset.yaml");
        let image = daemonset["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .expect("an image")
            .to_owned();
        build_image(&image);
        image
    })
}

/// The image and the DaemonSet container's arguments, as `podman run`
/// takes them.
fn image_and_args(image: &str, container: &Value) -> Vec<String> {
    let mut run = vec![image.to_owned()];
    run.extend(
        container["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|arg| arg.as_str().expect("a string argument").to_owned()),
    );
    run
}

#[test]
fn the_image_runs_as_the_daemonset_and_sees_host_processes() {
    let image = daemonset_image();
    let daemonset = yaml("deploy/kubernetes/daemonset.yaml");
    let container = &daemonset["spec"]["template"]["spec"]["containers"][0];
    let scratch = TempDir::new("image");
    let name = format!("aiwatch-image-test-{}", std::process::id());
    let pod = PodmanRun::from_daemonset(&name, scratch.path(), true);
    let mut run = image_and_args(image, container);
    // Every event, to read the marker's exec from.
    run.extend(["--events".into(), "/var/log/aiwatch/events.jsonl".into()]);
    let agent = pod.start(&name, &run);
    let listen = pod.listen();
    let log_dir = &pod.log_dir;
    // The ConfigMap's configuration is the one in use: its alert log.
    assert!(
        log_dir.join("alerts.jsonl").exists(),
        "no alerts.jsonl where the ConfigMap's configuration puts it"
    );

    // A process of this test, on the host: the agent sees it through the
    // host's PID namespace.
    let mut marker = Command::new("/bin/sh")
        .args(["-c", "exit 0", "aiwatch-image-marker"])
        .spawn()
        .expect("the marker runs");
    let marker_pid = u64::from(marker.id());
    assert!(marker.wait().expect("the marker exits").success());
    let events = log_dir.join("events.jsonl");
    let exec = wait_until("the marker's exec", event_timeout(), || {
        read_json_lines(&events)
            .into_iter()
            .find(|e| kind_of(e) == "exec" && pid_of(e) == marker_pid)
    })
    .unwrap_or_else(|| {
        panic!(
            "no exec event of the marker (pid {marker_pid}):\n{}",
            agent.logs()
        )
    });
    let argv = get(&exec, "process.argv")
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        argv.last(),
        Some(&Value::from("aiwatch-image-marker")),
        "{exec}"
    );
    assert_eq!(
        get(&exec, "process.ppid").as_u64(),
        Some(u64::from(std::process::id())),
        "{exec}"
    );

    // The DaemonSet's probes answer on the published port.
    for probe in ["livenessProbe", "readinessProbe"] {
        let path = container[probe]["httpGet"]["path"]
            .as_str()
            .expect("an HTTP probe");
        assert_eq!(http_get(&listen, path).0, 200, "{probe} {path}");
    }
    let (status, metrics) = http_get(&listen, "/metrics");
    assert_eq!(status, 200, "{metrics}");
    let version = format!("version=\"{}\"", image.rsplit_once(':').expect("a tag").1);
    assert!(
        metrics
            .lines()
            .any(|line| line.starts_with("aiwatch_build_info{") && line.contains(&version)),
        "no aiwatch_build_info with {version}:\n{metrics}"
    );
    assert!(metrics.lines().any(|line| line == "aiwatch_ready 1"));
    assert!(metrics.lines().any(|line| {
        line.starts_with("aiwatch_probe_attached{probe=\"sched_process_exec\"")
            && line.ends_with(" 1")
    }));
    let execs = metrics
        .lines()
        .find_map(|line| line.strip_prefix("aiwatch_events_total{kind=\"exec\"} "))
        .and_then(|value| value.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no exec count:\n{metrics}"));
    assert!(execs >= 1.0, "{execs} execs counted");

    // Not privileged: what the agent holds is within the DaemonSet's list
    // (the host's bounding set may lack some of it: podman leaves those out).
    let agent_pid = agent.host_pid();
    assert!(agent_pid > 1, "podman names the container's process");
    let bounding = capabilities(agent_pid, "CapBnd:");
    let added = &pod.added;
    assert!(
        bounding.is_subset(added),
        "the agent holds capabilities the DaemonSet does not list: {:?}",
        bounding.difference(added).collect::<Vec<_>>()
    );
    assert!(
        bounding.contains("BPF") && bounding.contains("PERFMON"),
        "{bounding:?}"
    );

    // The live stream, through the DaemonSet's /run/aiwatch, as
    // `kubectl exec ... aiwatch alerts --follow` reaches it.
    let mut follower = Command::new("podman")
        .args(["exec", &name, "/usr/bin/aiwatch", "alerts", "--follow"])
        .args([
            "--format",
            "json",
            "--rule",
            "ai.secret.read-by-unexpected-process",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("podman exec runs");
    let (lines, followed) = mpsc::channel();
    let stdout = follower.stdout.take().expect("the follower's output");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    // The follower connects at some point after it starts: read secrets
    // until one of the reads comes through the stream.
    let streamed = (0..10).find_map(|_| {
        let pid = read_a_secret(scratch.path());
        let deadline = Instant::now() + Duration::from_secs(3);
        while let Ok(line) =
            followed.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            let Ok(alert) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if get(&alert, "event.process.pid").as_u64() == Some(pid) {
                return Some(pid);
            }
        }
        None
    });
    let _ = follower.kill();
    let _ = follower.wait();
    let streamed = streamed.unwrap_or_else(|| {
        panic!(
            "`aiwatch alerts --follow` in the container streamed no alert of this test's secret reads:\n{}",
            agent.logs()
        )
    });
    println!(
        "image: {image} ran as the DaemonSet; the agent (host pid {agent_pid}) reported the \
         marker's exec (pid {marker_pid}) and {execs} execs on /metrics, and streamed the \
         alert of pid {streamed} to `aiwatch alerts --follow`; it keeps {bounding:?}"
    );
}

/// Under the shipped seccomp profile (`deploy/overlays/seccomp`), the agent
/// loads, attaches and reports a host process's exec, and the kernel holds
/// it to the filter: a system call of the profile's list is refused.
#[test]
fn the_image_runs_under_the_shipped_seccomp_profile() {
    let image = daemonset_image();
    let overlay = yaml("deploy/overlays/seccomp/kustomization.yaml");
    let patch = overlay["patches"][0]["patch"]
        .as_str()
        .expect("the overlay's patch");
    let profile_name = patch
        .lines()
        .find_map(|line| line.trim().strip_prefix("localhostProfile: "))
        .expect("the patch names a Localhost profile");
    let profile = repo_root()
        .join("deploy/kubernetes/seccomp")
        .join(profile_name);
    let daemonset = yaml("deploy/kubernetes/daemonset.yaml");
    let container = &daemonset["spec"]["template"]["spec"]["containers"][0];
    let scratch = TempDir::new("image-seccomp");
    let name = format!("aiwatch-image-seccomp-{}", std::process::id());
    let pod = PodmanRun::from_daemonset(&name, scratch.path(), true).with_seccomp_profile(&profile);
    let mut run = image_and_args(image, container);
    run.extend(["--events".into(), "/var/log/aiwatch/events.jsonl".into()]);
    let agent = pod.start(&name, &run);
    let agent_pid = agent.host_pid();
    let status =
        std::fs::read_to_string(format!("/proc/{agent_pid}/status")).expect("the agent's status");
    assert!(
        status.lines().any(|line| line == "Seccomp:\t2"),
        "the agent runs without a seccomp filter:\n{status}"
    );
    let mut marker = Command::new("/bin/sh")
        .args(["-c", "exit 0", "aiwatch-seccomp-marker"])
        .spawn()
        .expect("the marker runs");
    let marker_pid = u64::from(marker.id());
    assert!(marker.wait().expect("the marker exits").success());
    let events = pod.log_dir.join("events.jsonl");
    wait_until("the marker's exec", event_timeout(), || {
        read_json_lines(&events)
            .into_iter()
            .find(|e| kind_of(e) == "exec" && pid_of(e) == marker_pid)
    })
    .unwrap_or_else(|| panic!("no exec of the marker under seccomp:\n{}", agent.logs()));
    let (status, metrics) = http_get(&pod.listen(), "/metrics");
    assert_eq!(status, 200, "{metrics}");
    assert!(metrics.lines().any(|line| line == "aiwatch_ready 1"));

    // The profile refuses what it lists, even to a container that holds
    // the capability: busybox's mount with CAP_SYS_ADMIN works unconfined
    // and is refused under the profile.
    let busybox = format!("localhost/aiwatch-seccomp-busybox-{}", std::process::id());
    aiwatch_tests::images::import_busybox_into_podman(scratch.path(), &busybox, None);
    let mount = |seccomp: &str| {
        Command::new("podman")
            .args(["run", "--rm", "--cap-add=SYS_ADMIN"])
            .arg(format!("--security-opt=seccomp={seccomp}"))
            .args([
                &busybox,
                "/bin/busybox",
                "mount",
                "-t",
                "tmpfs",
                "none",
                "/tmp",
            ])
            .output()
            .expect("podman run")
    };
    let unconfined = mount("unconfined");
    let filtered = mount(&profile.display().to_string());
    let _ = podman(&["rmi", "-f", &busybox]);
    assert!(
        unconfined.status.success(),
        "mount failed unconfined: {}",
        output_text(&unconfined)
    );
    assert!(
        !filtered.status.success() && {
            // EPERM, in busybox's words ("permission denied (are you root?)").
            let said = output_text(&filtered).to_lowercase();
            said.contains("permission denied") || said.contains("not permitted")
        },
        "mount was not refused under the profile: {}",
        output_text(&filtered)
    );
    println!(
        "image: {image} ran under {}; the agent (host pid {agent_pid}) is filtered (Seccomp: 2) \
         and reported the marker's exec (pid {marker_pid}); busybox's mount was refused under it",
        profile.display()
    );
}

/// Without the ConfigMap, the image's own configuration and rule pack are
/// in use: a secret read by a process of this test on the host is an alert
/// on the container's standard output, its log.
#[test]
fn the_image_alone_alerts_to_its_log_with_its_own_configuration_and_rules() {
    let image = daemonset_image();
    let scratch = TempDir::new("image-alone");
    let name = format!("aiwatch-image-alone-test-{}", std::process::id());
    let pod = PodmanRun::from_daemonset(&name, scratch.path(), false);
    // The image's entrypoint and command, no arguments.
    let agent = pod.start(&name, &[image.to_owned()]);

    let reader_pid = read_a_secret(scratch.path());
    let alert = wait_until("the secret read's alert", event_timeout(), || {
        let logs = podman(&["logs", &agent.0]);
        String::from_utf8_lossy(&logs.stdout)
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .find(|alert| {
                alert["rule"] == "ai.secret.read-by-unexpected-process"
                    && get(alert, "event.process.pid").as_u64() == Some(reader_pid)
            })
    })
    .unwrap_or_else(|| {
        panic!(
            "no alert for the secret read by pid {reader_pid} in the container's log:\n{}",
            agent.logs()
        )
    });
    assert_eq!(alert["severity"], "high", "{alert}");
    // The image's policies are files identical to the embedded pack, which
    // they replace: no rule is loaded twice, and the pack is whole.
    let (status, metrics) = http_get(&pod.listen(), "/metrics");
    assert_eq!(status, 200);
    let rules: f64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("aiwatch_rules_loaded "))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no aiwatch_rules_loaded:\n{metrics}"));
    let check = Command::new(aiwatch_bin())
        .args(["policy", "check"])
        .output()
        .expect("aiwatch policy check runs");
    let pack: f64 = String::from_utf8_lossy(&check.stdout)
        .trim()
        .strip_prefix("ok: ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("`aiwatch policy check` printed {check:?}"));
    assert_eq!(rules, pack, "the image's rules against the embedded pack's");
    println!(
        "image alone: {rules} rules; alert {} for pid {reader_pid}",
        alert["rule"]
    );
}
