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

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{mpsc, OnceLock},
    time::{Duration, Instant},
};

use aiwatch_tests::{
    aiwatch_bin, free_port, get, http_get, kind_of, pid_of, read_json_lines, ready_timeout,
    repo_root, wait_until, TempDir, EVENT_TIMEOUT,
};
use serde_json::Value;

/// The flags every podman call here takes: crun refuses this host's hybrid
/// cgroup layout, and systemd is not the init.
const RUNTIME_FLAGS: [&str; 3] = ["--runtime", "/usr/sbin/runc", "--cgroup-manager=cgroupfs"];

fn yaml(relative: &str) -> Value {
    let path = repo_root().join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {relative}: {error}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|error| panic!("{relative}: {error}"))
}

fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(args)
        .output()
        .expect("podman runs: `cargo xtask test` provisions it")
}

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

/// Writes the ConfigMap's keys where the DaemonSet's `items` put them.
fn render_config_map(volume: &Value, dir: &Path) {
    let name = volume["configMap"]["name"]
        .as_str()
        .expect("a ConfigMap name");
    let map = yaml("deploy/kubernetes/configmap.yaml");
    assert_eq!(map["metadata"]["name"], name);
    for item in volume["configMap"]["items"].as_array().expect("items") {
        let key = item["key"].as_str().expect("an item key");
        let path = dir.join(item["path"].as_str().expect("an item path"));
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("config folder");
        let text = map["data"][key].as_str().expect("the key in the ConfigMap");
        std::fs::write(&path, text).expect("writes a ConfigMap key");
    }
}

/// Kubernetes quantities as podman takes them: `512Mi` is `512m`.
fn memory_for_podman(quantity: &str) -> String {
    let (number, unit) = quantity.split_at(quantity.trim_end_matches(char::is_alphabetic).len());
    let unit = match unit {
        "Ki" => "k",
        "Mi" => "m",
        "Gi" => "g",
        "" => "b",
        other => panic!("a memory unit this test does not convert: {other}"),
    };
    format!("{number}{unit}")
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

/// A container removed on drop.
struct Container(String);

impl Container {
    fn logs(&self) -> String {
        output_text(&podman(&["logs", &self.0]))
    }

    fn host_pid(&self) -> u32 {
        let output = podman(&["inspect", "--format", "{{.State.Pid}}", &self.0]);
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time", "10", &self.0]);
    }
}

/// The capability names of a `/proc/<pid>/status` mask line, as the
/// DaemonSet spells them (`BPF`, `SYS_ADMIN`, ...).
fn capabilities(pid: u32, line: &str) -> BTreeSet<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("a status file");
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix(line))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no {line} in /proc/{pid}/status"));
    CAPABILITY_NAMES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1 << bit) != 0)
        .map(|(_, name)| (*name).to_owned())
        .collect()
}

/// Linux capability numbers 0 to 40, in order (linux/capability.h).
const CAPABILITY_NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

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

/// A `podman run` of the image as the DaemonSet's pod spec describes it.
struct PodmanRun {
    args: Vec<String>,
    /// The DaemonSet's capabilities.
    added: BTreeSet<String>,
    /// What stands in for the host's /var/log/aiwatch.
    log_dir: PathBuf,
    /// The loopback port the agent's 9464 is published on.
    port: u16,
}

impl PodmanRun {
    /// Everything but the image and its arguments. `with_config_map`:
    /// mount the ConfigMap at /etc/aiwatch as the DaemonSet does, else keep
    /// the image's own configuration.
    fn from_daemonset(name: &str, scratch: &Path, with_config_map: bool) -> PodmanRun {
        let daemonset = yaml("deploy/kubernetes/daemonset.yaml");
        let pod = &daemonset["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let port = free_port();
        let mut run: Vec<String> = ["run", "--detach", "--name", name]
            .iter()
            .map(|arg| (*arg).to_owned())
            .collect();
        run.extend(RUNTIME_FLAGS.iter().map(|flag| (*flag).to_owned()));
        assert_eq!(pod["hostPID"], true);
        run.push("--pid=host".into());
        // The pod network: a namespace of its own, its port published on loopback.
        run.push(format!("--publish=127.0.0.1:{port}:9464"));

        let security = &container["securityContext"];
        assert_eq!(security["privileged"], false);
        run.push(format!(
            "--user={}",
            security["runAsUser"].as_u64().expect("runAsUser")
        ));
        let dropped: Vec<&str> = security["capabilities"]["drop"]
            .as_array()
            .expect("dropped capabilities")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(dropped, ["ALL"]);
        run.push("--cap-drop=ALL".into());
        let added: BTreeSet<String> = security["capabilities"]["add"]
            .as_array()
            .expect("added capabilities")
            .iter()
            .filter_map(|cap| cap.as_str().map(str::to_owned))
            .collect();
        run.push(format!(
            "--cap-add={}",
            added.iter().cloned().collect::<Vec<_>>().join(",")
        ));
        if security["allowPrivilegeEscalation"] == false {
            run.push("--security-opt=no-new-privileges".into());
        }
        assert_eq!(security["seccompProfile"]["type"], "Unconfined");
        run.push("--security-opt=seccomp=unconfined".into());
        assert_eq!(security["appArmorProfile"]["type"], "Unconfined");
        run.push("--security-opt=apparmor=unconfined".into());
        if security["readOnlyRootFilesystem"] == true {
            // Kubernetes gives a read-only root no writable /run or /tmp.
            run.extend(["--read-only".into(), "--read-only-tmpfs=false".into()]);
        }
        let limits = &container["resources"]["limits"];
        run.push(format!(
            "--memory={}",
            memory_for_podman(limits["memory"].as_str().expect("a memory limit"))
        ));
        run.push(format!(
            "--cpus={}",
            limits["cpu"].as_str().expect("a CPU limit")
        ));

        // The DaemonSet's volumes. Host paths under /var are the agent's own
        // data (state, alert log): the test's scratch folders stand in for them.
        let volumes = pod["volumes"].as_array().expect("volumes");
        let mut log_dir = None;
        for mount in container["volumeMounts"].as_array().expect("volume mounts") {
            let target = mount["mountPath"].as_str().expect("a mount path");
            let volume = volumes
                .iter()
                .find(|volume| volume["name"] == mount["name"])
                .unwrap_or_else(|| panic!("no volume for the mount of {target}"));
            let read_only = if mount["readOnly"] == true { ",ro" } else { "" };
            let source = if volume["configMap"].is_object() {
                if !with_config_map {
                    continue;
                }
                let dir = scratch.join("configmap");
                render_config_map(volume, &dir);
                dir
            } else if volume["emptyDir"].is_object() {
                run.push(format!("--tmpfs={target}"));
                continue;
            } else {
                let host = volume["hostPath"]["path"].as_str().expect("a host path");
                let kind = volume["hostPath"]["type"].as_str().unwrap_or_default();
                let stand_in = scratch.join(host.trim_start_matches('/'));
                if host.starts_with("/var/") {
                    std::fs::create_dir_all(&stand_in).expect("a data folder");
                    if target == "/var/log/aiwatch" {
                        log_dir = Some(stand_in.clone());
                    }
                    stand_in
                } else if Path::new(host).exists() {
                    PathBuf::from(host)
                } else if ["", "DirectoryOrCreate"].contains(&kind) {
                    // What the kubelet would create (a runtime's socket
                    // folder on a host without that runtime): an empty one.
                    std::fs::create_dir_all(&stand_in).expect("a stand-in folder");
                    stand_in
                } else {
                    panic!("the DaemonSet mounts {host} ({kind}), which this host lacks");
                }
            };
            run.push(format!(
                "--volume={}:{target}:rbind{read_only}",
                source.display()
            ));
        }
        PodmanRun {
            args: run,
            added,
            log_dir: log_dir.expect("the DaemonSet mounts /var/log/aiwatch"),
            port,
        }
    }

    /// Starts the container and waits until the agent in it is ready.
    fn start(&self, name: &str, image_and_args: &[String]) -> Container {
        let mut run: Vec<&str> = self.args.iter().map(String::as_str).collect();
        run.extend(image_and_args.iter().map(String::as_str));
        let started = podman(&run);
        assert!(
            started.status.success(),
            "podman run {}:\n{}",
            run.join(" "),
            output_text(&started)
        );
        let agent = Container(name.to_owned());
        let listen = self.listen();
        let ready = wait_until("the agent in the image is ready", ready_timeout(), || {
            let state = podman(&["inspect", "--format", "{{.State.Running}}", &agent.0]);
            if String::from_utf8_lossy(&state.stdout).trim() != "true" {
                panic!("the container stopped:\n{}", agent.logs());
            }
            std::net::TcpStream::connect(&listen).ok()?;
            (http_get(&listen, "/readyz").0 == 200).then_some(())
        });
        assert!(
            ready.is_some(),
            "the agent in the image never became ready:\n{}",
            agent.logs()
        );
        agent
    }

    fn listen(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

#[test]
fn the_image_runs_as_the_daemonset_and_sees_host_processes() {
    let image = daemonset_image();
    let daemonset = yaml("deploy/kubernetes/daemonset.yaml");
    let container = &daemonset["spec"]["template"]["spec"]["containers"][0];
    let scratch = TempDir::new("image");
    let name = format!("aiwatch-image-test-{}", std::process::id());
    let pod = PodmanRun::from_daemonset(&name, scratch.path(), true);
    let mut run = vec![image.to_owned()];
    run.extend(
        container["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|arg| arg.as_str().expect("a string argument").to_owned()),
    );
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
    let exec = wait_until("the marker's exec", EVENT_TIMEOUT, || {
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
    let alert = wait_until("the secret read's alert", EVENT_TIMEOUT, || {
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
