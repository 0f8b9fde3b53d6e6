//! Container identity from the container runtimes' APIs, with real
//! runtimes: a containerd of the test's own (its containers API, and its CRI
//! plugin for pods), podman's Docker-compatible API, and no runtime at all.
//! Each test asserts only on the containers it started.

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
