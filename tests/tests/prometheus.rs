//! Prometheus integration end to end: every metric family docs/metrics.md
//! lists is on /metrics with real values, and a real Prometheus scraping the
//! agent with the shipped alerting rules fires the critical-alert rule when
//! the agent raises a critical alert.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

use aiwatch_tests::{
    aiwatch_bin, free_port, get, http_get, repo_root,
    servers::{encode_query, pickle, Prometheus, Stopped},
    venv_python, wait_until, Agent, AgentOptions, TempDir,
};

/// One sample of the text exposition.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: HashMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text format (enough of it for aiwatch's output:
/// label values hold no `,` or `"`).
fn parse_exposition(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .filter_map(|pair| {
                    let (key, value) = pair.split_once('=')?;
                    Some((key.to_owned(), value.trim_matches('"').to_owned()))
                })
                .collect();
            Some(Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().ok()?,
            })
        })
        .collect()
}

fn scrape(agent: &Agent) -> Vec<Sample> {
    let (status, body) = agent.http_get("/metrics");
    assert_eq!(status, 200);
    parse_exposition(&body)
}

/// Samples of `name` whose labels include every pair of `labels`.
fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> f64 {
    let found = find(samples, name, labels);
    assert!(!found.is_empty(), "no sample {name} {labels:?}");
    found.iter().map(|s| s.value).sum()
}

/// The metric names of docs/metrics.md's tables under "## Metrics".
fn documented_metrics() -> Vec<String> {
    let doc =
        std::fs::read_to_string(repo_root().join("docs/metrics.md")).expect("docs/metrics.md");
    let section = doc
        .split("\n## ")
        .find(|s| s.starts_with("Metrics"))
        .expect("a Metrics section");
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`').map(|(name, _)| name.to_owned()))
        .filter(|name| name.starts_with("aiwatch_") || name.starts_with("process_"))
        .collect()
}

fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    line.trim().to_owned()
}

#[test]
fn every_documented_metric_is_exported_with_real_values() {
    // A rule with an action, in audit mode, so that the server's shell is a
    // real `would-kill` for aiwatch_enforcement_actions_total: the default
    // pack has no kill or deny rule.
    let policy_dir = TempDir::new("metrics-policy");
    let policy = policy_dir.path().join("audit-kill.yaml");
    std::fs::write(
        &policy,
        "enforcement: audit\nrules:\n  - id: test.server-shell-would-be-killed\n    \
         description: A shell under the test's model server\n    severity: low\n    \
         action: kill\n    when:\n      kind: exec\n      macro: is_shell\n      \
         all: [{macro: in_server_workload}]\n",
    )
    .unwrap();
    let agent = Agent::start_with(AgentOptions {
        config: format!("policies: [{}]\n", policy.display()),
        ..Default::default()
    });
    let documented = documented_metrics();
    assert!(documented.len() >= 25, "parsed {documented:?}");

    // An AI workload that loads a model and starts a shell (an alert about
    // the workload).
    let dir = TempDir::new("metrics-onnx");
    let port = free_port();
    let mut server = Stopped(
        Command::new(venv_python())
            .arg(repo_root().join("tests/workloads/onnx_server.py"))
            .arg(dir.path())
            .arg(port.to_string())
            .env("HOME", dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .expect("onnx server"),
    );
    let server_pid = server.0.id() as u64;
    assert_eq!(first_line(&mut server.0), format!("READY {port}"));
    let addr = format!("127.0.0.1:{port}");
    assert_eq!(http_get(&addr, "/predict?x=1,2,3").0, 200);
    assert_eq!(http_get(&addr, "/spawn").0, 200);
    let alert = agent.wait_alert("the server's shell", |a| {
        a["rule"] == "ai.workload.shell-spawn"
            && get(a, "event.parent.pid").as_u64() == Some(server_pid)
    });
    let workload = alert["workload"]["name"]
        .as_str()
        .expect("a workload")
        .to_owned();
    // Housekeeping (1 s) and telemetry (2 s) publish what they saw.
    let samples = wait_until("the workload's series", Duration::from_secs(20), || {
        let samples = scrape(&agent);
        (!find(
            &samples,
            "aiwatch_workload_gpu_processes",
            &[("workload", &workload)],
        )
        .is_empty()
            && !find(
                &samples,
                "aiwatch_alerts_total",
                &[("rule", "ai.workload.shell-spawn")],
            )
            .is_empty()
            && !find(
                &samples,
                "aiwatch_enforcement_actions_total",
                &[("outcome", "would-kill")],
            )
            .is_empty())
        .then_some(samples)
    })
    .expect("per-workload series appear");

    // Series that only LLM traffic creates (one per workload, provider and
    // model); tests/tests/llm.rs holds them to their values.
    const LLM_TRAFFIC_ONLY: [&str; 2] = ["aiwatch_llm_requests_total", "aiwatch_llm_tokens_total"];
    // A series per Kubernetes pod of a workload, which only pods create;
    // tests/tests/runtimes.rs holds it to its labels.
    const PODS_ONLY: [&str; 1] = ["aiwatch_workload_pod_info"];
    let mut missing = Vec::new();
    for name in documented.iter().filter(|name| {
        !LLM_TRAFFIC_ONLY.contains(&name.as_str()) && !PODS_ONLY.contains(&name.as_str())
    }) {
        let present = samples.iter().any(|s| {
            s.name == *name
                || s.name
                    .strip_prefix(name.as_str())
                    .is_some_and(|suffix| ["_bucket", "_sum", "_count"].contains(&suffix))
        });
        if !present {
            missing.push(name.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "documented but not exported: {missing:?}"
    );

    // Real values, not just names.
    assert!(value(&samples, "aiwatch_events_total", &[("kind", "exec")]) > 0.0);
    assert!(value(&samples, "aiwatch_events_total", &[("kind", "open")]) > 0.0);
    for probe in [
        "sched_process_exec",
        "sched_process_fork",
        "sched_process_exit",
    ] {
        assert_eq!(
            value(&samples, "aiwatch_probe_attached", &[("probe", probe)]),
            1.0,
            "{probe}"
        );
    }
    let build = find(&samples, "aiwatch_build_info", &[]);
    assert_eq!(build.len(), 1);
    assert_eq!(build[0].value, 1.0);
    let version = Command::new(aiwatch_bin())
        .arg("--version")
        .output()
        .expect("aiwatch --version");
    let version = String::from_utf8_lossy(&version.stdout);
    let version = version.trim().trim_start_matches("aiwatch ");
    assert_eq!(build[0].labels["version"], version);
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(build[0].labels["kernel"], release.trim());
    assert!(value(&samples, "aiwatch_rules_loaded", &[]) > 10.0);
    assert_eq!(
        value(&samples, "aiwatch_policy_last_reload_successful", &[]),
        1.0
    );
    assert!(
        value(
            &samples,
            "aiwatch_policy_last_reload_success_timestamp_seconds",
            &[]
        ) > 1.6e9
    );
    assert!(value(&samples, "aiwatch_workloads", &[("kind", "inference")]) >= 1.0);
    assert_eq!(
        find(&samples, "aiwatch_workloads", &[]).len(),
        6,
        "every kind, eagerly"
    );
    let kind = alert["workload"]["kind"].as_str().unwrap();
    for severity in ["info", "low", "medium", "high", "critical"] {
        assert_eq!(
            find(
                &samples,
                "aiwatch_alerts_total",
                &[("rule", ""), ("severity", severity)]
            )
            .len(),
            1,
            "every severity has a series from start-up"
        );
    }
    assert!(
        value(
            &samples,
            "aiwatch_alerts_total",
            &[
                ("rule", "ai.workload.shell-spawn"),
                ("severity", "high"),
                ("workload_kind", kind),
                ("action", "alert"),
            ]
        ) >= 1.0
    );
    let ours = [("workload", workload.as_str()), ("kind", kind)];
    assert!(
        value(
            &samples,
            "aiwatch_workload_alerts_total",
            &[ours[0], ours[1], ("severity", "high")]
        ) >= 1.0
    );
    assert_eq!(
        find(&samples, "aiwatch_workload_alerts_total", &ours).len(),
        5,
        "every severity from the workload's start"
    );
    // The server read tiny.onnx and tiny.safetensors as a workload.
    assert!(value(&samples, "aiwatch_workload_model_read_bytes_total", &ours) > 0.0);
    assert_eq!(
        value(&samples, "aiwatch_workload_egress_bytes_total", &ours),
        0.0
    );
    assert_eq!(
        value(&samples, "aiwatch_workload_gpu_processes", &ours),
        0.0
    );
    assert!(value(&samples, "aiwatch_event_latency_seconds_count", &[]) >= 1.0);
    assert!(value(&samples, "aiwatch_rule_eval_seconds_count", &[]) >= 1.0);
    assert_eq!(value(&samples, "aiwatch_ready", &[]), 1.0);
    assert!(value(&samples, "process_resident_memory_bytes", &[]) > 1e6);
    assert!(value(&samples, "process_open_fds", &[]) > 3.0);
    assert_eq!(find(&samples, "aiwatch_anomaly_profiles", &[]).len(), 4);
    // Every event kind, at 0 or more, from start-up: as many series as the
    // kinds table of docs/events.md (generated from the ABI's list) has rows.
    let events_doc =
        std::fs::read_to_string(repo_root().join("docs/events.md")).expect("docs/events.md");
    let kinds = events_doc
        .split("<!-- kinds:end -->")
        .next()
        .and_then(|head| head.rsplit("<!-- kinds:begin -->").next())
        .map(|table| table.lines().filter(|l| l.starts_with("| `")).count())
        .expect("the kinds table of docs/events.md");
    assert!(kinds > 25, "parsed {kinds} kinds from docs/events.md");
    assert_eq!(find(&samples, "aiwatch_events_total", &[]).len(), kinds);
    // The agent's own pid is what process_* describe.
    // Its thread count may move (tokio's blocking pool), so compare a scrape
    // with /proc read right after it, a few times, until they agree.
    let mut seen = Vec::new();
    let agreed = (0..10).any(|_| {
        let exported = value(&scrape(&agent), "process_threads", &[]);
        let status = std::fs::read_to_string(format!("/proc/{}/status", agent.pid())).unwrap();
        let threads: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix("Threads:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("a Threads: line in /proc/<pid>/status");
        seen.push((exported, threads));
        exported == threads
    });
    assert!(
        agreed,
        "process_threads never matched the agent's /proc/<pid>/status (exported, /proc): {seen:?}"
    );
}

#[test]
fn prometheus_scrapes_the_agent_and_fires_the_shipped_critical_rule() {
    let agent = Agent::start();
    let dir = TempDir::new("prometheus");
    let prometheus = Prometheus::start(dir.path(), &agent.listen, None);
    let groups = prometheus.api("/api/v1/rules");
    let loaded: Vec<&str> = groups["data"]["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(
        loaded.contains(&"AiwatchHostCriticalAlert"),
        "the shipped rules are loaded: {loaded:?}"
    );

    // A critical alert outside any workload: a pickle that runs a shell.
    let model = dir.path().join("model.pkl");
    // One process writes the pickle, another only loads it: the loader
    // is no AI workload, so the alert is a host alert.
    pickle("make", &model);
    let loader = pickle("load", &model);
    let alert = agent.wait_alert("the pickle alert", |a| {
        a["rule"] == "ai.model.pickle-load-exec"
            && a["steps"][0]["process"]["pid"].as_u64() == Some(loader)
    });
    assert_eq!(alert["severity"], "critical");
    assert!(alert["workload"].is_null(), "outside any workload: {alert}");

    let counter = format!(
        "/api/v1/query?query={}",
        encode_query("aiwatch_alerts_total{job=\"aiwatch\",rule=\"ai.model.pickle-load-exec\",severity=\"critical\",workload_kind=\"none\"}")
    );
    let counted = wait_until(
        "the alert counter in Prometheus",
        Duration::from_secs(30),
        || {
            let answer = prometheus.api(&counter);
            let value: f64 = answer["data"]["result"][0]["value"][1]
                .as_str()?
                .parse()
                .ok()?;
            (value >= 1.0).then_some(value)
        },
    );
    assert!(
        counted.is_some(),
        "aiwatch_alerts_total never reached Prometheus"
    );

    let firing = wait_until(
        "AiwatchHostCriticalAlert firing",
        Duration::from_secs(30),
        || {
            let answer = prometheus.api("/api/v1/alerts");
            answer["data"]["alerts"]
                .as_array()?
                .iter()
                .find(|a| {
                    a["labels"]["alertname"] == "AiwatchHostCriticalAlert"
                        && a["labels"]["rule"] == "ai.model.pickle-load-exec"
                        && a["state"] == "firing"
                })
                .cloned()
        },
    )
    .unwrap_or_else(|| {
        panic!(
            "the shipped critical rule never fired: {}",
            prometheus.api("/api/v1/alerts")
        )
    });
    assert_eq!(firing["labels"]["severity"], "critical");
    assert_eq!(firing["labels"]["instance"], agent.listen.as_str());
    assert!(firing["annotations"]["summary"]
        .as_str()
        .unwrap_or("")
        .contains("ai.model.pickle-load-exec"));
}
