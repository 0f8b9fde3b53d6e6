//! Container identity from the container runtimes' APIs, with real
//! runtimes: a containerd of the test's own (its containers API, and its CRI
//! plugin for pods), podman's Docker-compatible API, and no runtime at all.
//! Each test asserts only on the containers it started.

use std::time::Duration;

use aiwatch_tests::{
    containerd::{container_id, Containerd},
    get, kind_of, pid_of, Agent, AgentOptions, TempDir,
};
use serde_json::Value;

/// The agent's configuration for a containerd of the test's own.
fn runtimes_config(containerd: &Containerd, docker_sockets: &[&str]) -> String {
    format!(
        "container_runtimes:\n  containerd_socket: {socket}\n  cri_socket: {socket}\n  docker_sockets: [{docker}]\n",
        socket = containerd.socket.display(),
        docker = docker_sockets.join(", "),
    )
}

/// Whether `event` is an exec of busybox inside container `id` whose
/// arguments contain `marker`.
fn busybox_exec_in(event: &Value, id: &str, marker: &str) -> bool {
    kind_of(event) == "exec"
        && get(event, "container.id") == id
        && event["process"]["argv"].as_array().is_some_and(|argv| {
            argv.iter()
                .any(|a| a.as_str().is_some_and(|a| a.contains(marker)))
        })
}

fn assert_identity(event: &Value, expected: &[(&str, &str)]) {
    for (path, value) in expected {
        assert_eq!(get(event, path), *value, "{path} in {event:#}");
    }
}

/// A container started before the agent and one started after it both
/// carry the kubelet's labels as `k8s.*`, the image and the container name;
/// and a rule on `k8s.namespace` fires on the new container's very first
/// exec, which reaches the agent before the runtime has answered for it.
#[test]
fn containerd_containers_carry_their_pod_from_the_first_exec() {
    let image = format!("localhost/aiwatch-runtimes-bb:{}", std::process::id());
    let mut containerd = Containerd::start("containerd-ctr", &image);
    containerd.import_busybox(&image);
    let namespace = format!("team-{}", std::process::id());
    let labels = |pod: &str, container: &str| -> Vec<(String, String)> {
        vec![
            ("io.kubernetes.pod.namespace".into(), namespace.clone()),
            ("io.kubernetes.pod.name".into(), pod.into()),
            ("io.kubernetes.pod.uid".into(), format!("uid-{pod}")),
            ("io.kubernetes.container.name".into(), container.into()),
        ]
    };
    let borrowed = |labels: &[(String, String)]| -> Vec<(String, String)> { labels.to_vec() };
    let before = container_id("before");
    let before_labels = borrowed(&labels("server-0", "model"));
    let pairs: Vec<(&str, &str)> = before_labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    containerd.run(&image, &before, &pairs, &["/bin/busybox", "sleep", "120"]);

    let policies = TempDir::new("runtimes-policy");
    let policy = policies.path().join("k8s.yaml");
    std::fs::write(
        &policy,
        format!(
            "rules:\n  - id: test.k8s.namespace-exec\n    description: an exec in the test's namespace\n    severity: medium\n    when:\n      kind: exec\n      k8s.namespace: {namespace}\n"
        ),
    )
    .expect("write the policy");
    let agent = Agent::start_with(AgentOptions {
        config: format!(
            "{}anomaly: {{enabled: false}}\npolicies: [{}]\n",
            runtimes_config(&containerd, &[]),
            policy.display()
        ),
        ..Default::default()
    });

    // The container that was there first.
    containerd.exec(&before, "probe", &["/bin/busybox", "echo", "before-marker"]);
    let exec = agent.wait_event("the exec inside the container started first", |e| {
        busybox_exec_in(e, &before, "before-marker")
    });
    assert_identity(
        &exec,
        &[
            ("k8s.namespace", namespace.as_str()),
            ("k8s.pod", "server-0"),
            ("k8s.pod_uid", "uid-server-0"),
            ("k8s.container", "model"),
            ("container.name", "model"),
            ("container.image", image.as_str()),
            ("container.runtime", "containerd"),
        ],
    );

    // A new container: its command is its first exec.
    let after = container_id("after");
    let after_labels = borrowed(&labels("server-1", "sidecar"));
    let pairs: Vec<(&str, &str)> = after_labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    containerd.run(
        &image,
        &after,
        &pairs,
        &["/bin/busybox", "sh", "-c", "echo after-marker; sleep 120"],
    );
    let first = agent.wait_event("the new container's command", |e| {
        busybox_exec_in(e, &after, "after-marker")
    });
    assert_identity(
        &first,
        &[
            ("k8s.namespace", namespace.as_str()),
            ("k8s.pod", "server-1"),
            ("k8s.container", "sidecar"),
            ("container.image", image.as_str()),
        ],
    );
    // Every exec the container saw, the earliest included, carries the pod
    // and raised the rule's alert.
    let execs: Vec<Value> = agent
        .events()
        .into_iter()
        .filter(|e| kind_of(e) == "exec" && get(e, "container.id") == after.as_str())
        .collect();
    let earliest = execs
        .iter()
        .min_by_key(|e| e["ktime_ns"].as_u64().unwrap_or(u64::MAX))
        .expect("the container's execs");
    assert_eq!(
        get(earliest, "k8s.namespace"),
        namespace.as_str(),
        "{earliest:#}"
    );
    let ktime = earliest["ktime_ns"].as_u64();
    agent.wait_alert("the rule on the first exec", |a| {
        a["rule"] == "test.k8s.namespace-exec"
            && get(a, "event.process.pid").as_u64() == Some(pid_of(earliest))
            && get(a, "event.ktime_ns").as_u64() == ktime
    });
    let (_, metrics) = agent.http_get("/metrics");
    assert!(
        metrics.lines().any(|l| l
            .starts_with("aiwatch_runtime_lookups_total{result=\"found\",runtime=\"containerd\"}")
            && !l.ends_with(" 0")),
        "{metrics}"
    );
    // The new container's first events waited for its identity.
    assert!(
        metrics.lines().any(|l| l
            .starts_with("aiwatch_identity_held_events_total{outcome=\"resolved\"}")
            && !l.ends_with(" 0")),
        "{metrics}"
    );
}

/// An agent in a cgroup namespace of its own, rooted below the host's
/// root (as a pod's on a cgroup v2 host): other processes' cgroup paths
/// read `/../k8s.io/<id>`, and the container is still known by the path's
/// tail and named by its runtime.
#[test]
fn an_agent_in_a_private_cgroup_namespace_knows_containers() {
    let image = format!("localhost/aiwatch-runtimes-cgns:{}", std::process::id());
    let mut containerd = Containerd::start("containerd-cgns", &image);
    containerd.import_busybox(&image);
    // The agent moves into a cgroup of its own, then unshares its cgroup
    // namespace there, and becomes aiwatch (the same pid).
    let nsroot = format!("/aiwatch-test-cgns-{}", std::process::id());
    let _nsroot = CgroupParentCleanup(nsroot.clone());
    let unified = std::path::Path::new("/sys/fs/cgroup/unified");
    let cgroup2 = if unified.join("cgroup.procs").exists() {
        unified.to_path_buf()
    } else {
        std::path::PathBuf::from("/sys/fs/cgroup")
    };
    let scripts = TempDir::new("cgns-wrapper");
    let wrapper = scripts.path().join("aiwatch-in-cgroupns");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nset -e\nmkdir -p {dir}\necho $$ > {dir}/cgroup.procs\nexec unshare --cgroup {bin} \"$@\"\n",
            dir = cgroup2.join(nsroot.trim_start_matches('/')).display(),
            bin = aiwatch_tests::aiwatch_bin().display(),
        ),
    )
    .expect("write the wrapper");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
            .expect("make the wrapper executable");
    }
    let agent = Agent::start_with(AgentOptions {
        config: runtimes_config(&containerd, &[]),
        binary: Some(wrapper),
        ..Default::default()
    });
    // Seen from here: the agent sits in that cgroup, in another namespace.
    let own = std::fs::read_to_string(format!("/proc/{}/cgroup", agent.pid())).unwrap_or_default();
    assert!(
        own.lines().any(|l| l == format!("0::{nsroot}")),
        "the agent moved into {nsroot}: {own}"
    );
    let cgroupns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/cgroup")).ok();
    assert_ne!(
        cgroupns(&agent.pid().to_string()),
        cgroupns("self"),
        "the agent has a cgroup namespace of its own"
    );
    let id = container_id("cgns");
    let namespace = format!("cgns-{}", std::process::id());
    containerd.run(
        &image,
        &id,
        &[
            ("io.kubernetes.pod.namespace", namespace.as_str()),
            ("io.kubernetes.pod.name", "p"),
            ("io.kubernetes.container.name", "c"),
        ],
        &[
            "/bin/busybox",
            "sh",
            "-c",
            "echo cgns-marker; sleep 3; /bin/busybox echo cgns-again; sleep 60",
        ],
    );
    let mut exec = agent.wait_event("the container's command", |e| {
        busybox_exec_in(e, &id, "cgns-marker")
    });
    // The first exec is held up to 2 s for the runtime's answer; a fresh
    // containerd under a loaded machine can take longer. This test is about
    // the namespace-relative path and the runtime naming its container, so
    // a first exec released without identity is said, and the container's
    // next exec (3 s later, the identity cached by then) must carry it.
    if get(&exec, "k8s.namespace").is_null() {
        println!(
            "an_agent_in_a_private_cgroup_namespace_knows_containers: the first exec came \
             before the runtime's answer; checking the container's next exec"
        );
        exec = agent.wait_event("the container's second exec", |e| {
            busybox_exec_in(e, &id, "cgns-again")
        });
    }
    let cgroup = get(&exec, "container.cgroup").as_str().unwrap_or_default();
    assert!(
        cgroup.starts_with("/..") && cgroup.ends_with(&id),
        "a path relative to the agent's cgroup namespace: {exec:#}"
    );
    assert_identity(
        &exec,
        &[
            ("k8s.namespace", namespace.as_str()),
            ("k8s.pod", "p"),
            ("container.name", "c"),
            ("container.image", image.as_str()),
        ],
    );
}

/// A pod made through containerd's CRI plugin as a kubelet makes one
/// (RunPodSandbox, CreateContainer, StartContainer, with the kubelet's
/// labels), whose annotations declare the workload: the container's events
/// carry the declared workload, its pod and its image.
#[test]
fn cri_pod_annotations_declare_the_workload() {
    use k8s_cri::v1::{
        runtime_service_client::RuntimeServiceClient, ContainerConfig, ContainerMetadata,
        CreateContainerRequest, ImageSpec, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
        NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata,
        RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest,
        StopPodSandboxRequest,
    };
    use std::collections::HashMap;

    let image = format!("localhost/aiwatch-runtimes-pause:{}", std::process::id());
    let containerd = Containerd::start("containerd-cri", &image);
    containerd.import_busybox(&image);
    let agent = Agent::start_with(AgentOptions {
        config: runtimes_config(&containerd, &[]),
        ..Default::default()
    });
    let pid = std::process::id();
    let namespace = format!("ml-{pid}");
    let pod = format!("fraud-model-{pid}");
    // A uid as the API server makes them, so the cgroup path carries it too.
    let uid = format!("{:08x}-1111-4222-8333-{:012x}", pid, pid);
    let cgroup_parent = format!("/aiwatch-test-{pid}/pod{uid}");
    let _cgroups = CgroupParentCleanup(format!("/aiwatch-test-{pid}"));
    let workload = format!("fraud-{pid}");
    let logs = TempDir::new("cri-logs");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let pod_labels: HashMap<String, String> = [
        ("io.kubernetes.pod.name".to_string(), pod.clone()),
        ("io.kubernetes.pod.namespace".to_string(), namespace.clone()),
        ("io.kubernetes.pod.uid".to_string(), uid.clone()),
    ]
    .into();
    let sandbox_config = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: pod.clone(),
            uid: uid.clone(),
            namespace: namespace.clone(),
            attempt: 0,
        }),
        // No hostname: a host-network pod has no UTS namespace of its own.
        log_directory: logs.path().display().to_string(),
        labels: pod_labels.clone(),
        annotations: [
            ("aiwatch.io/workload".to_string(), workload.clone()),
            ("aiwatch.io/kind".to_string(), "inference".to_string()),
        ]
        .into(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent.clone(),
            security_context: Some(LinuxSandboxSecurityContext {
                // Host networking: no CNI needed.
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut container_labels = pod_labels.clone();
    container_labels.insert("io.kubernetes.container.name".into(), "server".into());
    let socket = containerd.socket.clone();
    let (sandbox_id, container_id) = runtime.block_on(async {
        let channel = containerd_client::connect(&socket)
            .await
            .expect("connect to containerd's CRI");
        let mut cri = RuntimeServiceClient::new(channel);
        let sandbox = cri
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(sandbox_config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_or_else(|status| {
                panic!(
                    "RunPodSandbox: {status}\ncontainerd's log:\n{}",
                    containerd.log()
                )
            })
            .into_inner()
            .pod_sandbox_id;
        let created = cri
            .create_container(CreateContainerRequest {
                pod_sandbox_id: sandbox.clone(),
                config: Some(ContainerConfig {
                    metadata: Some(ContainerMetadata {
                        name: "server".into(),
                        attempt: 0,
                    }),
                    image: Some(ImageSpec {
                        image: image.clone(),
                        ..Default::default()
                    }),
                    command: vec!["/bin/busybox".into()],
                    args: vec![
                        "sh".into(),
                        "-c".into(),
                        "echo cri-marker; sleep 120".into(),
                    ],
                    labels: container_labels,
                    log_path: "server.log".into(),
                    ..Default::default()
                }),
                sandbox_config: Some(sandbox_config.clone()),
            })
            .await
            .unwrap_or_else(|status| {
                panic!(
                    "CreateContainer: {status}\ncontainerd's log:\n{}",
                    containerd.log()
                )
            })
            .into_inner()
            .container_id;
        cri.start_container(StartContainerRequest {
            container_id: created.clone(),
        })
        .await
        .unwrap_or_else(|status| {
            panic!(
                "StartContainer: {status}\ncontainerd's log:\n{}",
                containerd.log()
            )
        });
        (sandbox, created)
    });
    // Stops and removes the pod (and its container) whatever happens next.
    struct Pod<'a> {
        runtime: &'a tokio::runtime::Runtime,
        socket: std::path::PathBuf,
        id: String,
    }
    impl Drop for Pod<'_> {
        fn drop(&mut self) {
            let socket = self.socket.clone();
            let id = self.id.clone();
            self.runtime.block_on(async move {
                if let Ok(channel) = containerd_client::connect(&socket).await {
                    let mut cri = RuntimeServiceClient::new(channel);
                    let _ = cri
                        .stop_pod_sandbox(StopPodSandboxRequest {
                            pod_sandbox_id: id.clone(),
                        })
                        .await;
                    let _ = cri
                        .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id })
                        .await;
                }
            });
        }
    }
    let _pod = Pod {
        runtime: &runtime,
        socket: containerd.socket.clone(),
        id: sandbox_id,
    };

    let exec = agent.wait_event("the pod container's command", |e| {
        busybox_exec_in(e, &container_id, "cri-marker")
    });
    assert_identity(
        &exec,
        &[
            ("workload.name", workload.as_str()),
            ("workload.kind", "inference"),
            ("k8s.namespace", namespace.as_str()),
            ("k8s.pod", pod.as_str()),
            ("k8s.pod_uid", uid.as_str()),
            ("k8s.container", "server"),
            ("container.name", "server"),
            ("container.image", image.as_str()),
            ("container.runtime", "containerd"),
        ],
    );
    // Declared, the pod's container is tracked as a whole cgroup: a process
    // entering it from outside (`kubectl exec`) is reported in full, its
    // write to a path of no interest included.
    let marker = format!("aiwatch-cri-{}.txt", std::process::id());
    containerd.exec(
        &container_id,
        "enter",
        &[
            "/bin/busybox",
            "sh",
            "-c",
            &format!("echo x > /tmp/{marker}"),
        ],
    );
    let open = agent.wait_event("the entering shell's write, reported by cgroup", |e| {
        kind_of(e) == "open"
            && get(e, "container.id") == container_id.as_str()
            && get(e, "file.path")
                .as_str()
                .is_some_and(|path| path.ends_with(&marker))
    });
    assert_identity(
        &open,
        &[
            ("workload.name", workload.as_str()),
            ("k8s.pod", pod.as_str()),
        ],
    );
    // The inventory lists the declared workload with its pod (it is
    // published once a second).
    let listed = aiwatch_tests::wait_until(
        "the workload in /inventory",
        Duration::from_secs(10),
        || {
            let (_, body) = agent.http_get("/inventory");
            let inventory: Value = serde_json::from_str(&body).ok()?;
            inventory["workloads"]
                .as_array()?
                .iter()
                .find(|w| w["name"] == workload.as_str())
                .cloned()
        },
    )
    .unwrap_or_else(|| {
        panic!(
            "no workload {workload} in /inventory; log:\n{}",
            agent.log()
        )
    });
    assert_eq!(listed["kind"], "inference", "{listed:#}");
    assert_eq!(
        listed["pods"][0]["namespace"],
        namespace.as_str(),
        "{listed:#}"
    );
    assert_eq!(listed["pods"][0]["pod"], pod.as_str(), "{listed:#}");
    // And the workload's pod series joins it to its namespace and pod.
    let labels = [
        "kind=\"inference\"".to_string(),
        format!("namespace=\"{namespace}\""),
        format!("pod=\"{pod}\""),
        format!("workload=\"{workload}\""),
    ];
    let is_the_series = |line: &str| {
        line.starts_with("aiwatch_workload_pod_info{")
            && line.ends_with(" 1")
            && labels.iter().all(|label| line.contains(label.as_str()))
    };
    aiwatch_tests::wait_until("the workload's pod series", Duration::from_secs(10), || {
        let (_, metrics) = agent.http_get("/metrics");
        metrics.lines().any(is_the_series).then_some(())
    })
    .unwrap_or_else(|| {
        let (_, metrics) = agent.http_get("/metrics");
        let pods: Vec<&str> = metrics
            .lines()
            .filter(|line| line.starts_with("aiwatch_workload_pod_info"))
            .collect();
        panic!("no pod series with {labels:?} in /metrics; pod series: {pods:?}")
    });
}

/// Removes the folders a pod's cgroup parent left in every hierarchy.
struct CgroupParentCleanup(String);

impl Drop for CgroupParentCleanup {
    fn drop(&mut self) {
        let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        for hierarchy in hierarchies.flatten() {
            remove_tree(&hierarchy.path().join(self.0.trim_start_matches('/')));
        }
    }
}

/// cgroup folders go deepest first; their files are not real files.
fn remove_tree(dir: &std::path::Path) {
    if let Ok(children) = std::fs::read_dir(dir) {
        for child in children.flatten() {
            if child.path().is_dir() {
                remove_tree(&child.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// podman's system service, on a socket of the test's own, serving the
/// Docker-compatible API; stopped on drop.
struct PodmanService {
    child: std::process::Child,
    socket: std::path::PathBuf,
    _dir: TempDir,
}

impl PodmanService {
    fn start() -> PodmanService {
        let dir = TempDir::new("podman-api");
        // "podman" in the path: the agent names the runtime after it.
        let socket = dir.path().join("podman.sock");
        let child = std::process::Command::new("podman")
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start podman system service");
        let service = PodmanService {
            child,
            socket,
            _dir: dir,
        };
        aiwatch_tests::wait_until("podman's API socket", Duration::from_secs(30), || {
            service.socket.exists().then_some(())
        })
        .expect("podman system service made no socket within 30 s");
        service
    }
}

impl Drop for PodmanService {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// A busybox image of the test's own, imported into podman; removed on drop.
struct PodmanImage(String);

impl PodmanImage {
    fn import(tag: &str) -> PodmanImage {
        let tmp = TempDir::new("podman-image");
        let image = format!("localhost/aiwatch-runtimes-{tag}:{}", std::process::id());
        aiwatch_tests::images::import_busybox_into_podman(tmp.path(), &image, None);
        PodmanImage(image)
    }

    /// `podman run -d --name NAME` of `command`; returns the container id.
    fn run(&self, name: &str, command: &str) -> String {
        let id = aiwatch_tests::images::run_ok(std::process::Command::new("podman").args([
            "run",
            "-d",
            "--runtime",
            "/usr/sbin/runc",
            "--cgroup-manager=cgroupfs",
            "--name",
            name,
            &self.0,
            "/bin/busybox",
            "sh",
            "-c",
            command,
        ]));
        id.trim().to_string()
    }
}

impl Drop for PodmanImage {
    fn drop(&mut self) {
        let _ = std::process::Command::new("podman")
            .args(["rmi", "-f", &self.0])
            .output();
    }
}

/// Removes a podman container on drop.
struct PodmanContainer(String);

impl Drop for PodmanContainer {
    fn drop(&mut self) {
        let _ = std::process::Command::new("podman")
            .args(["rm", "-f", &self.0])
            .output();
    }
}

/// Through podman's Docker-compatible API socket, a container's events
/// carry its name and image.
#[test]
fn podman_api_names_the_container_and_its_image() {
    let service = PodmanService::start();
    let socket = service.socket.display().to_string();
    let agent = Agent::start_with(AgentOptions {
        config: format!(
            "container_runtimes:\n  containerd_socket: /nonexistent/aiwatch-{pid}/containerd.sock\n  cri_socket: /nonexistent/aiwatch-{pid}/containerd.sock\n  docker_sockets: [{socket}]\n",
            pid = std::process::id()
        ),
        ..Default::default()
    });
    let image = PodmanImage::import("api");
    let name = format!("aiwatch-api-{}", std::process::id());
    let id = image.run(&name, "echo api-marker; sleep 30");
    let _container = PodmanContainer(id.clone());
    let exec = agent.wait_event("the container's command", |e| {
        busybox_exec_in(e, &id, "api-marker")
    });
    assert_identity(
        &exec,
        &[
            ("container.name", name.as_str()),
            ("container.image", image.0.as_str()),
            ("container.runtime", "podman"),
        ],
    );
    assert!(get(&exec, "k8s").is_null(), "not a pod's: {exec:#}");
}

/// With no runtime socket at all, the agent starts, says so once, and
/// events keep the container id the cgroup path gives.
#[test]
fn a_missing_runtime_socket_leaves_the_cgroup_derived_id() {
    let pid = std::process::id();
    let agent = Agent::start_with(AgentOptions {
        config: format!(
            "container_runtimes:\n  containerd_socket: /nonexistent/aiwatch-{pid}/containerd.sock\n  cri_socket: /nonexistent/aiwatch-{pid}/containerd.sock\n  docker_sockets: [/nonexistent/aiwatch-{pid}/podman.sock]\n"
        ),
        ..Default::default()
    });
    let said = agent
        .log()
        .lines()
        .filter(|l| l.contains("no container runtime socket found"))
        .count();
    assert_eq!(
        said,
        1,
        "one log line about the missing runtimes:\n{}",
        agent.log()
    );
    let image = PodmanImage::import("nosocket");
    let id = image.run(
        &format!("aiwatch-nosocket-{pid}"),
        "echo nosocket-marker; sleep 5",
    );
    let _container = PodmanContainer(id.clone());
    let exec = agent.wait_event("the container's command", |e| {
        busybox_exec_in(e, &id, "nosocket-marker")
    });
    assert_identity(&exec, &[("container.runtime", "podman")]);
    assert!(get(&exec, "container.name").is_null(), "{exec:#}");
    assert!(get(&exec, "container.image").is_null(), "{exec:#}");
    assert!(get(&exec, "k8s").is_null(), "{exec:#}");
}
