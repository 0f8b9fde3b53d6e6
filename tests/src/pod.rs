//! The aiwatch image run as the Kubernetes DaemonSet runs it: a `podman
//! run` derived from deploy/kubernetes/daemonset.yaml's pod spec (host PID
//! namespace, volumes, capabilities, security settings, limits), so that a
//! change to the DaemonSet is a change to what the image test runs.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use serde_json::Value;

use crate::{free_port, http_get, ready_timeout, repo_root, wait_until};

/// The flags every podman call here takes: crun refuses this host's hybrid
/// cgroup layout, and systemd is not the init.
pub const RUNTIME_FLAGS: [&str; 3] = ["--runtime", "/usr/sbin/runc", "--cgroup-manager=cgroupfs"];

/// A YAML file of the repository, as JSON values.
pub fn yaml(relative: &str) -> Value {
    let path = repo_root().join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {relative}: {error}"));
    serde_saphyr::from_str(&text).unwrap_or_else(|error| panic!("{relative}: {error}"))
}

/// A command's standard output and error, for failure messages.
pub fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs podman to completion.
pub fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(args)
        .output()
        .expect("podman runs: `cargo xtask test` provisions it")
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

/// A container removed on drop.
pub struct Container(pub String);

impl Container {
    /// The container's standard output and error.
    pub fn logs(&self) -> String {
        output_text(&podman(&["logs", &self.0]))
    }

    /// The host pid of the container's first process.
    pub fn host_pid(&self) -> u32 {
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

/// The capability names of a `/proc/<pid>/status` mask line (`CapBnd:`,
/// `CapEff:`, ...), as the DaemonSet spells them (`BPF`, `SYS_ADMIN`, ...).
pub fn capabilities(pid: u32, line: &str) -> BTreeSet<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("a status file");
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix(line))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or_else(|| panic!("no {line} in /proc/{pid}/status"));
    caps::all()
        .into_iter()
        .filter(|cap| mask & cap.bitmask() != 0)
        .map(|cap| cap.to_string().trim_start_matches("CAP_").to_owned())
        .collect()
}

/// A `podman run` of the image as the DaemonSet's pod spec describes it.
pub struct PodmanRun {
    pub args: Vec<String>,
    /// The DaemonSet's capabilities.
    pub added: BTreeSet<String>,
    /// What stands in for the host's /var/log/aiwatch.
    pub log_dir: PathBuf,
    /// The loopback port the agent's 9464 is published on.
    pub port: u16,
}

impl PodmanRun {
    /// Everything but the image and its arguments. `with_config_map`:
    /// mount the ConfigMap at /etc/aiwatch as the DaemonSet does, else keep
    /// the image's own configuration.
    pub fn from_daemonset(name: &str, scratch: &Path, with_config_map: bool) -> PodmanRun {
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
    /// Runs under the seccomp profile at `profile` (a Kubernetes `Localhost`
    /// profile) instead of the DaemonSet's `Unconfined`.
    pub fn with_seccomp_profile(mut self, profile: &Path) -> PodmanRun {
        let unconfined = "--security-opt=seccomp=unconfined";
        let at = self
            .args
            .iter()
            .position(|arg| arg == unconfined)
            .expect("the DaemonSet's seccomp setting");
        self.args[at] = format!("--security-opt=seccomp={}", profile.display());
        self
    }

    pub fn start(&self, name: &str, image_and_args: &[String]) -> Container {
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

    /// The published address of the agent's listener.
    pub fn listen(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}
