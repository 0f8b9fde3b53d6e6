//! Checks of the shipped operations files: the Prometheus alerting rules and
//! their promtool tests, the Grafana dashboard, `docs/metrics.md` against the
//! metrics registry, the Kubernetes manifests and the systemd unit.
//!
//! External tools: `promtool` (Debian package `prometheus`), a Python with
//! `kubernetes-validate` named by `AIWATCH_PYTHON`, `kubectl` (its built-in
//! kustomize; Debian package `kubernetes-client`) and `systemd-analyze`
//! (Debian package `systemd`). `cargo xtask test` provides them all.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use aiwatch::metrics::{Metrics, MetricsConfig};
use serde_json::Value;

/// Kubernetes version whose schemas the manifests are validated against.
const KUBERNETES_VERSION: &str = "1.30.0";

/// Manifests with core schemas; the other YAML files are CRD objects or kustomize input.
const CORE_MANIFESTS: [&str; 6] = [
    "namespace.yaml",
    "serviceaccount.yaml",
    "configmap.yaml",
    "service.yaml",
    "daemonset.yaml",
    "networkpolicy.yaml",
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the agent crate sits in the workspace")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("cannot read {relative}: {error}"))
}

fn yaml(relative: &str) -> Value {
    serde_saphyr::from_str(&read(relative))
        .unwrap_or_else(|error| panic!("{relative} is not valid YAML: {error}"))
}

/// Runs a command and fails the test with its output when it does not succeed.
fn run(command: &mut Command, what: &str) -> String {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {what}: {error}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    stdout
}

fn on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

fn promtool() -> PathBuf {
    on_path("promtool").unwrap_or_else(|| {
        panic!(
            "promtool is not installed: run `cargo xtask test`, which provisions it \
             (or `apt-get install prometheus`)"
        )
    })
}

/// Metric names in the tables of docs/metrics.md (rows starting with "| `name`").
fn documented_metrics() -> BTreeSet<String> {
    read("docs/metrics.md")
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(name, _)| name.to_string())
        .filter(|name| name.starts_with("aiwatch_") || name.starts_with("process_"))
        .collect()
}

/// Every `aiwatch_*` metric name mentioned in `text`, with histogram series
/// suffixes folded onto their documented family.
fn aiwatch_metrics_in(text: &str, documented: &BTreeSet<String>) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("aiwatch_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| documented.contains(*base))
            .unwrap_or(name);
        names.insert(family.to_string());
        rest = &tail[end..];
    }
    names
}

fn undocumented(used: &BTreeSet<String>, documented: &BTreeSet<String>) -> Vec<String> {
    used.difference(documented).cloned().collect()
}

// ---- Prometheus rules ----

#[test]
fn promtool_accepts_the_alerting_rules_and_the_example_config() {
    let promtool = promtool();
    let dir = repo_root().join("deploy/prometheus");
    run(
        Command::new(&promtool)
            .current_dir(&dir)
            .args(["check", "rules", "aiwatch-alerts.yaml"]),
        "promtool check rules",
    );
    run(
        Command::new(&promtool)
            .current_dir(&dir)
            .args(["check", "config", "prometheus.yml"]),
        "promtool check config",
    );
}

#[test]
fn promtool_unit_tests_of_the_alerting_rules_pass() {
    run(
        Command::new(promtool())
            .current_dir(repo_root().join("deploy/prometheus"))
            .args(["test", "rules", "aiwatch-alerts.test.yaml"]),
        "promtool test rules",
    );
}

fn alert_names(rules: &Value) -> BTreeSet<String> {
    rules["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|group| group["rules"].as_array().into_iter().flatten())
        .filter_map(|rule| rule["alert"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn every_alert_has_a_firing_and_a_silent_test_case() {
    let alerts = alert_names(&yaml("deploy/prometheus/aiwatch-alerts.yaml"));
    assert!(!alerts.is_empty(), "no alerting rules found");
    let tests = yaml("deploy/prometheus/aiwatch-alerts.test.yaml");
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|test| test["alert_rule_test"].as_array().into_iter().flatten())
        .collect();
    for alert in &alerts {
        let expectations: Vec<usize> = cases
            .iter()
            .filter(|case| case["alertname"].as_str() == Some(alert.as_str()))
            .map(|case| case["exp_alerts"].as_array().map_or(0, Vec::len))
            .collect();
        assert!(
            expectations.iter().any(|&count| count > 0),
            "{alert} has no test case where it fires"
        );
        assert!(
            expectations.contains(&0),
            "{alert} has no test case where it stays silent"
        );
    }
}

#[test]
fn alerting_rules_use_only_documented_metrics() {
    let documented = documented_metrics();
    let used = aiwatch_metrics_in(&read("deploy/prometheus/aiwatch-alerts.yaml"), &documented);
    assert!(used.contains("aiwatch_alerts_total"));
    assert_eq!(undocumented(&used, &documented), Vec::<String>::new());
}

// ---- docs/metrics.md against the registry ----

#[test]
fn docs_list_exactly_the_metrics_the_registry_exposes() {
    let metrics = Metrics::new(MetricsConfig::default()).expect("metrics register");
    let registered: BTreeSet<String> = metrics.metric_names().iter().cloned().collect();
    let gathered: BTreeSet<String> = metrics
        .registry()
        .gather()
        .iter()
        .map(|family| family.name().to_string())
        .collect();
    assert!(
        gathered.is_subset(&registered),
        "families gathered but not listed by metric_names(): {:?}",
        gathered.difference(&registered).collect::<Vec<_>>()
    );
    let documented = documented_metrics();
    let missing: Vec<_> = registered.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&registered).collect();
    assert!(
        missing.is_empty(),
        "metrics not documented in docs/metrics.md: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "docs/metrics.md documents metrics the agent does not export: {stale:?}"
    );
}

// ---- Grafana ----

fn collect_strings_under(value: &Value, key: &str, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (name, child) in map {
                match child {
                    Value::String(text) if name == key => found.push(text.clone()),
                    Value::Object(inner) if name == key => {
                        // Templating queries may be objects ({"query": "..."}).
                        if let Some(Value::String(text)) = inner.get("query") {
                            found.push(text.clone());
                        }
                    }
                    _ => collect_strings_under(child, key, found),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                collect_strings_under(item, key, found);
            }
        }
        _ => {}
    }
}

#[test]
fn dashboard_parses_and_queries_only_documented_metrics() {
    let dashboard: Value = serde_json::from_str(&read("deploy/grafana/aiwatch-dashboard.json"))
        .expect("the dashboard is valid JSON");
    let mut queries = Vec::new();
    collect_strings_under(&dashboard, "expr", &mut queries);
    collect_strings_under(&dashboard, "query", &mut queries);
    assert!(
        queries.len() >= 10,
        "expected panel queries, found {queries:?}"
    );

    let documented = documented_metrics();
    let used = aiwatch_metrics_in(&queries.join("\n"), &documented);
    for expected in [
        "aiwatch_events_total",
        "aiwatch_events_lost_total",
        "aiwatch_event_latency_seconds",
        "aiwatch_alerts_total",
        "aiwatch_workload_egress_bytes_total",
    ] {
        assert!(used.contains(expected), "no panel queries {expected}");
    }
    assert_eq!(undocumented(&used, &documented), Vec::<String>::new());

    let variables: BTreeSet<&str> = dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|variable| variable["name"].as_str())
        .collect();
    for variable in ["datasource", "workload"] {
        assert!(
            variables.contains(variable),
            "dashboard lacks the ${variable} variable"
        );
    }
}

// ---- Kubernetes ----

fn kubernetes(file: &str) -> Value {
    yaml(&format!("deploy/kubernetes/{file}"))
}

#[test]
fn prometheus_rule_embeds_the_same_groups_as_the_rules_file() {
    let rule = kubernetes("prometheusrule.yaml");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert_eq!(rule["metadata"]["namespace"], "aiwatch");
    let plain = yaml("deploy/prometheus/aiwatch-alerts.yaml");
    assert!(
        rule["spec"]["groups"] == plain["groups"],
        "deploy/kubernetes/prometheusrule.yaml differs from deploy/prometheus/aiwatch-alerts.yaml: \
         run deploy/kubernetes/sync-prometheusrule.sh"
    );

    // The embedded rules pass promtool on their own.
    let extracted = std::env::temp_dir().join(format!(
        "aiwatch-prometheusrule-{}.json",
        std::process::id()
    ));
    let groups = serde_json::json!({ "groups": rule["spec"]["groups"] });
    std::fs::write(&extracted, groups.to_string()).expect("writes a temporary file");
    let checked = Command::new(promtool())
        .arg("check")
        .arg("rules")
        .arg(&extracted)
        .output();
    let _ = std::fs::remove_file(&extracted);
    let checked = checked.expect("runs promtool");
    assert!(
        checked.status.success(),
        "promtool rejects the PrometheusRule's groups: {}",
        String::from_utf8_lossy(&checked.stdout)
    );
}

#[test]
fn service_monitor_scrapes_the_metrics_port_of_the_aiwatch_service() {
    let monitor = kubernetes("servicemonitor.yaml");
    let service = kubernetes("service.yaml");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["kind"], "ServiceMonitor");
    // The Service name is the job label the alerting rules select.
    assert_eq!(service["metadata"]["name"], "aiwatch");

    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("ServiceMonitor spec.selector.matchLabels is a mapping");
    for (label, value) in selector {
        assert_eq!(
            &service["metadata"]["labels"][label], value,
            "the Service does not carry the label {label} the ServiceMonitor selects"
        );
    }
    let namespaces = &monitor["spec"]["namespaceSelector"]["matchNames"];
    assert!(namespaces
        .as_array()
        .is_some_and(|names| names.contains(&service["metadata"]["namespace"])));

    let port_names: Vec<&Value> = service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|port| &port["name"])
        .collect();
    let endpoints = monitor["spec"]["endpoints"]
        .as_array()
        .expect("ServiceMonitor spec.endpoints is a list");
    assert!(!endpoints.is_empty());
    for endpoint in endpoints {
        assert!(
            port_names.contains(&&endpoint["port"]),
            "endpoint port {} is not a port of the Service",
            endpoint["port"]
        );
        assert_eq!(endpoint["path"], "/metrics");
    }
}

#[test]
fn daemonset_probes_and_service_match_the_listener() {
    let daemonset = kubernetes("daemonset.yaml");
    let pod = &daemonset["spec"]["template"]["spec"];
    assert_eq!(pod["hostPID"], true);
    let container = &pod["containers"][0];
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    let mounts: BTreeSet<&str> = container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|mount| mount["mountPath"].as_str())
        .collect();
    for needed in [
        "/sys/fs/bpf",
        "/sys/kernel/btf",
        "/sys/kernel/tracing",
        "/sys/kernel/debug",
        "/sys/fs/cgroup",
        "/var/lib/aiwatch",
        "/etc/aiwatch",
        // The stream socket's folder: the root is read-only.
        "/run/aiwatch",
    ] {
        assert!(
            mounts.contains(needed),
            "the DaemonSet does not mount {needed}"
        );
    }
    // Nothing the agent does not use: hostPID gives it /proc, and debugfs
    // is only read.
    assert!(
        !mounts.contains("/host/proc"),
        "the DaemonSet mounts /host/proc"
    );
    let debugfs = container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|mount| mount["mountPath"] == "/sys/kernel/debug")
        .expect("debugfs mount");
    assert_eq!(debugfs["readOnly"], true, "debugfs is mounted writable");
    let service = kubernetes("service.yaml");
    let selector = service["spec"]["selector"]
        .as_object()
        .expect("Service spec.selector is a mapping");
    for (label, value) in selector {
        assert_eq!(
            &daemonset["spec"]["template"]["metadata"]["labels"][label], value,
            "the Service selects label {label} that the agent pods do not carry"
        );
    }
}

/// `/inventory` is not open to every pod: a NetworkPolicy admits only
/// Prometheus to the agent's listener.
#[test]
fn only_prometheus_reaches_the_listener() {
    let policy = kubernetes("networkpolicy.yaml");
    let daemonset = kubernetes("daemonset.yaml");
    let pod_labels = &daemonset["spec"]["template"]["metadata"]["labels"];
    let selected = policy["spec"]["podSelector"]["matchLabels"]
        .as_object()
        .expect("the policy selects pods by label");
    assert!(!selected.is_empty());
    for (label, value) in selected {
        assert_eq!(
            &pod_labels[label], value,
            "the policy misses the agent pods"
        );
    }
    assert_eq!(
        policy["spec"]["policyTypes"],
        serde_json::json!(["Ingress"])
    );
    let ingress = policy["spec"]["ingress"].as_array().expect("ingress rules");
    assert_eq!(ingress.len(), 1, "one rule: Prometheus");
    let from = ingress[0]["from"].as_array().expect("a from list");
    assert!(!from.is_empty(), "an empty from admits everyone");
    for peer in from {
        assert!(
            peer["podSelector"]["matchLabels"].is_object()
                && peer["namespaceSelector"]["matchLabels"].is_object(),
            "every peer names Prometheus's namespace and pods: {peer}"
        );
    }
    assert_eq!(ingress[0]["ports"][0]["port"], "metrics");
}

#[test]
fn kustomization_lists_every_manifest() {
    let kustomization = kubernetes("kustomization.yaml");
    let listed: BTreeSet<String> = kustomization["resources"]
        .as_array()
        .expect("kustomization resources is a list")
        .iter()
        .filter_map(|resource| resource.as_str().map(str::to_string))
        .collect();
    let dir = repo_root().join("deploy/kubernetes");
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("reads deploy/kubernetes")
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") && name != "kustomization.yaml")
        .collect();
    assert_eq!(listed, on_disk);
}

#[test]
fn core_manifests_validate_against_the_kubernetes_schemas() {
    let python = std::env::var_os("AIWATCH_PYTHON").unwrap_or_else(|| {
        panic!(
            "AIWATCH_PYTHON is not set: run `cargo xtask test`, which creates a Python \
             environment with kubernetes-validate and points AIWATCH_PYTHON at it"
        )
    });
    let output = run(
        Command::new(python)
            .current_dir(repo_root().join("deploy/kubernetes"))
            .args([
                "-m",
                "kubernetes_validate",
                "--strict",
                "-k",
                KUBERNETES_VERSION,
            ])
            .args(CORE_MANIFESTS),
        "kubernetes-validate",
    );
    // A file the validator has no schema for only warns; every core manifest must pass.
    for manifest in CORE_MANIFESTS {
        assert!(
            output
                .lines()
                .any(|line| line.contains(manifest) && line.contains("passed")),
            "kubernetes-validate did not validate {manifest}:\n{output}"
        );
    }
}

// ---- kustomize ----

/// The image repository the DaemonSet names and `cargo xtask image` tags.
const IMAGE_REPOSITORY: &str = "ghcr.io/aiwatch/aiwatch";

fn kubectl() -> PathBuf {
    on_path("kubectl").unwrap_or_else(|| {
        panic!(
            "kubectl is not installed: run `cargo xtask test`, which provisions it \
             (or `apt-get install kubernetes-client`)"
        )
    })
}

/// `kubectl kustomize DIR`: the objects it renders.
fn kustomize(dir: &Path) -> Vec<Value> {
    let rendered = run(
        Command::new(kubectl()).arg("kustomize").arg(dir),
        &format!("kubectl kustomize {}", dir.display()),
    );
    let documents: Vec<Value> = serde_saphyr::from_multiple(&rendered)
        .unwrap_or_else(|error| panic!("kustomize printed invalid YAML: {error}\n{rendered}"));
    documents.into_iter().filter(|doc| !doc.is_null()).collect()
}

/// (kind, name) of each object.
fn object_ids<'a>(objects: impl IntoIterator<Item = &'a Value>) -> BTreeSet<(String, String)> {
    objects
        .into_iter()
        .map(|object| {
            let field = |value: &Value| value.as_str().unwrap_or_default().to_owned();
            (field(&object["kind"]), field(&object["metadata"]["name"]))
        })
        .collect()
}

/// The objects of the files the base kustomization lists.
fn base_objects() -> Vec<Value> {
    kubernetes("kustomization.yaml")["resources"]
        .as_array()
        .expect("kustomization resources is a list")
        .iter()
        .filter_map(Value::as_str)
        .map(kubernetes)
        .collect()
}

/// Every folder of deploy/overlays: each is rendered and validated.
fn overlays() -> Vec<PathBuf> {
    let dir = repo_root().join("deploy/overlays");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("reads deploy/overlays")
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .filter(|path| path.join("kustomization.yaml").is_file())
        .collect();
    found.sort();
    found
}

/// Validates rendered objects offline: every object of a core kind passes
/// kubernetes-validate, and the prometheus-operator objects (no schema
/// offline) carry the operator's API version.
fn validate_rendered(objects: &[Value], label: &str) {
    let python = std::env::var_os("AIWATCH_PYTHON").unwrap_or_else(|| {
        panic!("AIWATCH_PYTHON is not set: run `cargo xtask test`, which sets it")
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join(format!("{label}.yaml"));
    let documents: Vec<String> = objects.iter().map(Value::to_string).collect();
    // JSON documents are YAML documents.
    std::fs::write(&file, documents.join("\n---\n")).expect("writes the rendered objects");
    let output = run(
        Command::new(python)
            .args([
                "-m",
                "kubernetes_validate",
                "--strict",
                "-k",
                KUBERNETES_VERSION,
            ])
            .arg(&file),
        "kubernetes-validate",
    );
    for object in objects {
        let kind = object["kind"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        if object["apiVersion"] == "monitoring.coreos.com/v1" {
            assert!(
                ["ServiceMonitor", "PrometheusRule"].contains(&kind),
                "{label}: unexpected operator kind {kind}"
            );
            continue;
        }
        let passed = format!("passed for resource {}/{name} ", kind.to_lowercase());
        assert!(
            output.lines().any(|line| line.contains(&passed)),
            "{label}: kubernetes-validate did not pass {kind}/{name}:\n{output}"
        );
    }
}

fn daemonset_image(objects: &[Value]) -> String {
    let daemonset = objects
        .iter()
        .find(|object| object["kind"] == "DaemonSet")
        .expect("a DaemonSet");
    daemonset["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .expect("the agent container names an image")
        .to_owned()
}

/// The manifests name the image `cargo xtask image` builds: its repository
/// and the agent's version.
#[test]
fn manifests_name_the_image_xtask_builds() {
    let version = env!("CARGO_PKG_VERSION");
    let expected = format!("{IMAGE_REPOSITORY}:{version}");
    assert_eq!(daemonset_image(&[kubernetes("daemonset.yaml")]), expected);
    let images = &kubernetes("kustomization.yaml")["images"];
    assert_eq!(images[0]["name"], IMAGE_REPOSITORY);
    assert_eq!(images[0]["newTag"], version);
}

/// `kubectl kustomize` renders the base and every overlay into the objects
/// of the manifests, all in the aiwatch namespace, and what it renders
/// validates offline.
#[test]
fn kustomize_renders_the_base_and_every_overlay_into_valid_objects() {
    let expected = object_ids(&base_objects());
    assert!(expected.len() >= 8, "{expected:?}");
    let base = kustomize(&repo_root().join("deploy/kubernetes"));
    assert_eq!(object_ids(&base), expected);
    assert_eq!(
        daemonset_image(&base),
        daemonset_image(&[kubernetes("daemonset.yaml")])
    );
    validate_rendered(&base, "base");

    let overlays = overlays();
    assert!(!overlays.is_empty(), "no overlay in deploy/overlays");
    for overlay in overlays {
        let label = overlay
            .file_name()
            .expect("a folder name")
            .to_string_lossy()
            .into_owned();
        let objects = kustomize(&overlay);
        assert_eq!(object_ids(&objects), expected, "{label}");
        for object in &objects {
            if object["kind"] != "Namespace" {
                assert_eq!(
                    object["metadata"]["namespace"], "aiwatch",
                    "{label}: {object}"
                );
            }
        }
        // The overlay's image replacement reaches the DaemonSet.
        let kustomization = yaml(&format!("deploy/overlays/{label}/kustomization.yaml"));
        for image in kustomization["images"].as_array().into_iter().flatten() {
            assert_eq!(image["name"], IMAGE_REPOSITORY, "{label}");
            let name = image["newName"].as_str().unwrap_or(IMAGE_REPOSITORY);
            let tag = image["newTag"].as_str().expect("a newTag");
            assert_eq!(
                daemonset_image(&objects),
                format!("{name}:{tag}"),
                "{label}"
            );
        }
        validate_rendered(&objects, &label);
    }
}

/// The seccomp profile the seccomp overlay names exists, refuses the calls
/// an attacker in the agent would want, and none the agent makes.
#[test]
fn the_seccomp_profile_refuses_what_the_agent_never_calls() {
    let kustomization = yaml("deploy/overlays/seccomp/kustomization.yaml");
    let patch = kustomization["patches"][0]["patch"]
        .as_str()
        .expect("the overlay's patch");
    let name = patch
        .lines()
        .find_map(|line| line.trim().strip_prefix("localhostProfile: "))
        .expect("a Localhost profile");
    let profile: serde_json::Value =
        serde_json::from_str(&read(&format!("deploy/kubernetes/seccomp/{name}")))
            .expect("the profile is JSON");
    assert_eq!(profile["defaultAction"], "SCMP_ACT_ALLOW");
    let refused: BTreeSet<&str> = profile["syscalls"]
        .as_array()
        .expect("syscall rules")
        .iter()
        .filter(|rule| rule["action"] == "SCMP_ACT_ERRNO")
        .flat_map(|rule| rule["names"].as_array().into_iter().flatten())
        .filter_map(|name| name.as_str())
        .collect();
    for wanted in [
        "init_module",
        "finit_module",
        "kexec_load",
        "mount",
        "ptrace",
        "setns",
        "unshare",
        "open_by_handle_at",
        "process_vm_writev",
    ] {
        assert!(refused.contains(wanted), "{wanted} is not refused");
    }
    // What loading, attaching, capture and the sinks need.
    for needed in [
        "bpf",
        "perf_event_open",
        "openat",
        "openat2",
        "clone",
        "clone3",
        "mmap",
        "socket",
        "connect",
        "kill",
        "prctl",
        "capset",
        "ioctl",
    ] {
        assert!(!refused.contains(needed), "{needed} is refused");
    }
}

// ---- docs/deploy.md ----

/// The fenced code block of docs/deploy.md whose first line is `first_line`.
fn deploy_guide_block(first_line: &str) -> String {
    let guide = read("docs/deploy.md");
    guide
        .split("```")
        .skip(1)
        .step_by(2)
        .filter_map(|block| block.split_once('\n').map(|(_, body)| body))
        .find(|body| body.lines().next() == Some(first_line))
        .unwrap_or_else(|| panic!("docs/deploy.md has no code block starting with {first_line}"))
        .to_owned()
}

#[test]
fn the_deploy_guides_alertmanager_example_passes_amtool() {
    let amtool = on_path("amtool").unwrap_or_else(|| {
        panic!(
            "amtool is not installed: run `cargo xtask test`, which provisions it \
             (Debian package prometheus-alertmanager)"
        )
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(&config, deploy_guide_block("# alertmanager.yml")).expect("writes");
    run(
        Command::new(amtool).arg("check-config").arg(&config),
        "amtool check-config on docs/deploy.md's example",
    );
}

/// The guide's `podman run` adds exactly the DaemonSet's capabilities.
#[test]
fn the_deploy_guides_podman_command_adds_the_daemonsets_capabilities() {
    let daemonset = kubernetes("daemonset.yaml");
    let listed: BTreeSet<&str> = daemonset["spec"]["template"]["spec"]["containers"][0]
        ["securityContext"]["capabilities"]["add"]
        .as_array()
        .expect("added capabilities")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let command = deploy_guide_block("podman run --detach --name aiwatch-agent \\");
    let added: BTreeSet<&str> = command
        .split_whitespace()
        .find_map(|word| word.strip_prefix("--cap-add="))
        .expect("the guide's podman run adds capabilities")
        .split(',')
        .collect();
    assert_eq!(added, listed);
    assert!(command.contains("--cap-drop=ALL"));
    assert!(!command.contains("--privileged"));
}

// ---- systemd ----

#[test]
fn systemd_unit_verifies() {
    let systemd_analyze = on_path("systemd-analyze").expect(
        "systemd-analyze is not on PATH: install the Debian package systemd \
         (`cargo xtask setup --tests` does)",
    );
    let unit = read("deploy/systemd/aiwatch.service");
    assert!(unit.contains("ExecStart=/usr/local/bin/aiwatch "));
    // `verify` insists that ExecStart exists: point it at the binary this build made.
    let unit = unit.replace("/usr/local/bin/aiwatch", env!("CARGO_BIN_EXE_aiwatch"));
    let dir = std::env::temp_dir().join(format!("aiwatch-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creates a temporary directory");
    let path = dir.join("aiwatch.service");
    std::fs::write(&path, unit).expect("writes the unit");
    let output = Command::new(systemd_analyze)
        .arg("verify")
        .arg(&path)
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    let output = output.expect("runs systemd-analyze");
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Warnings about the host's other units are not ours; anything naming this unit is.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("aiwatch.service"))
        .collect();
    assert!(
        output.status.success() && ours.is_empty(),
        "systemd-analyze verify rejects deploy/systemd/aiwatch.service:\n{stderr}"
    );
}

/// The ConfigMap's agent configuration parses, and its site rules load on top
/// of the default pack and pass their own tests: what the DaemonSet mounts is
/// what the agent accepts.
#[test]
fn configmap_config_and_policies_are_accepted_by_the_agent() {
    let map = kubernetes("configmap.yaml");
    let data = map["data"].as_object().expect("ConfigMap data");
    let config = data
        .get("config.yaml")
        .and_then(Value::as_str)
        .expect("config.yaml in the ConfigMap");
    aiwatch::app::config::Config::parse(config, "configmap.yaml:config.yaml")
        .unwrap_or_else(|err| panic!("{err}"));
    let dir = tempfile::tempdir().expect("temp dir");
    for (key, value) in data {
        let Some(text) = value.as_str() else {
            continue;
        };
        let key = key.as_str();
        if key == "config.yaml" {
            continue;
        }
        let path = dir.path().join(key);
        std::fs::write(&path, text).expect("write policy");
        let bin = env!("CARGO_BIN_EXE_aiwatch");
        run(
            Command::new(bin).args(["policy", "check"]).arg(&path),
            "aiwatch policy check",
        );
        let out = run(
            Command::new(bin).args(["policy", "test"]).arg(&path),
            "aiwatch policy test",
        );
        let (passed, failed) = test_counts(&out);
        assert!(passed >= 1 && failed == 0, "{key}: {out}");
    }
}

/// The counts of `policy test`'s last line, `N passed, M failed`.
fn test_counts(out: &str) -> (u64, u64) {
    let last = out.lines().last().unwrap_or("");
    let counts = last
        .strip_suffix(" failed")
        .and_then(|rest| rest.split_once(" passed, "))
        .and_then(|(passed, failed)| Some((passed.parse().ok()?, failed.parse().ok()?)));
    counts.unwrap_or_else(|| panic!("no `N passed, M failed` line in:\n{out}"))
}

#[test]
fn test_counts_reads_the_summary_line_exactly() {
    assert_eq!(test_counts("ok a\n3 passed, 0 failed"), (3, 0));
    assert_eq!(test_counts("FAIL a\n0 passed, 10 failed"), (0, 10));
}
