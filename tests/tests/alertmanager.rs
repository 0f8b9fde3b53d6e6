//! The operations path of an alert, end to end: the agent raises a critical
//! alert, a real Prometheus scraping it with the shipped rules
//! (deploy/prometheus/aiwatch-alerts.yaml) fires AiwatchWorkloadCriticalAlert,
//! a real Alertmanager (Debian's `prometheus-alertmanager`) routes it, and
//! the notification reaches a webhook receiver of this test's own, carrying
//! the labels the shipped rule produces.
//!
//! Everything listens on loopback ports of its own; Alertmanager's cluster
//! listener is off. The critical alert is a pickle that runs a shell, loaded
//! by a process of this test that the agent's configuration declares as a
//! workload matched by a token only this test's command lines carry.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    time::Duration,
};

use aiwatch_tests::{
    free_port,
    servers::{pickle, ready, start_server, Prometheus},
    wait_until, Agent, AgentOptions, TempDir,
};
use serde_json::Value;

/// Prometheus and Alertmanager: scrape, evaluation, group wait and group
/// interval are one second each, so the notification comes in seconds.
const INTERVAL: &str = "1s";

/// A webhook receiver: each POST's JSON body goes to the channel.
fn webhook_receiver() -> (String, mpsc::Receiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds the webhook receiver");
    let addr = listener.local_addr().expect("an address").to_string();
    let (sender, notifications) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            if let Some(body) = read_post(stream) {
                if sender.send(body).is_err() {
                    return;
                }
            }
        }
    });
    (addr, notifications)
}

/// Reads one HTTP request and answers 200; its body, when it is JSON.
fn read_post(stream: TcpStream) -> Option<Value> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream);
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let mut stream = reader.into_inner();
    stream
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .ok()?;
    serde_json::from_slice(&body).ok()
}

#[test]
fn a_critical_alert_reaches_an_alertmanager_webhook_with_the_shipped_rules_labels() {
    let dir = TempDir::new("alertmanager");
    // The workload: whatever runs with this test's scratch folder on its
    // command line (the pickle's path).
    let token = dir
        .path()
        .file_name()
        .expect("a folder name")
        .to_string_lossy()
        .into_owned();
    let workload = format!("am-e2e-{}", std::process::id());
    let agent = Agent::start_with(AgentOptions {
        config: format!(
            "workloads:\n  declared:\n    - name: {workload}\n      kind: inference\n      \
             match: {{argv: \"*{token}*\"}}\n"
        ),
        ..Default::default()
    });

    let (webhook, notifications) = webhook_receiver();
    let am_addr = format!("127.0.0.1:{}", free_port());
    let am_config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &am_config,
        format!(
            "route:\n  receiver: aiwatch-test\n  group_by: [alertname, workload]\n  \
             group_wait: {INTERVAL}\n  group_interval: {INTERVAL}\n  repeat_interval: 1h\n\
             receivers:\n  - name: aiwatch-test\n    webhook_configs:\n      \
             - url: http://{webhook}/alerts\n        send_resolved: false\n"
        ),
    )
    .expect("writes alertmanager.yml");
    let _alertmanager = start_server(
        "/usr/bin/prometheus-alertmanager",
        &[
            format!("--config.file={}", am_config.display()),
            format!("--storage.path={}", dir.path().join("am-data").display()),
            format!("--web.listen-address={am_addr}"),
            // No cluster listener (0.0.0.0:9094 by default): one instance.
            "--cluster.listen-address=".to_owned(),
        ],
    );

    let prometheus = Prometheus::start(dir.path(), &agent.listen, Some(&am_addr));
    assert!(
        wait_until("Alertmanager", Duration::from_secs(60), || ready(
            &am_addr, "/-/ready"
        )
        .then_some(()))
        .is_some(),
        "Alertmanager never became ready"
    );

    // The critical alert, in the declared workload.
    let model = dir.path().join("model.pkl");
    pickle("make", &model);
    let loader = pickle("load", &model);
    let alert = agent.wait_alert("the pickle alert", |a| {
        a["rule"] == "ai.model.pickle-load-exec"
            && a["steps"][0]["process"]["pid"].as_u64() == Some(loader)
    });
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["workload"]["name"], workload.as_str(), "{alert}");

    // The notification Alertmanager posts for it.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let mut seen = Vec::new();
    let (notification, firing) = loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let Ok(notification) = notifications.recv_timeout(left) else {
            panic!(
                "no AiwatchWorkloadCriticalAlert notification for {workload} within 90 s; \
                 notifications: {seen:?}; Prometheus alerts: {}",
                prometheus.api("/api/v1/alerts")
            );
        };
        let ours = notification["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| {
                a["labels"]["alertname"] == "AiwatchWorkloadCriticalAlert"
                    && a["labels"]["workload"] == workload.as_str()
            })
            .cloned();
        match ours {
            Some(firing) => break (notification, firing),
            None => seen.push(notification),
        }
    };
    assert_eq!(notification["receiver"], "aiwatch-test");
    assert_eq!(notification["status"], "firing");
    assert_eq!(notification["groupLabels"]["workload"], workload.as_str());
    let labels = &firing["labels"];
    assert_eq!(firing["status"], "firing");
    assert_eq!(labels["severity"], "critical", "{firing}");
    assert_eq!(labels["kind"], "inference", "{firing}");
    assert_eq!(labels["instance"], agent.listen.as_str(), "{firing}");
    let mut names: Vec<&str> = labels
        .as_object()
        .expect("labels")
        .keys()
        .map(String::as_str)
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["alertname", "instance", "kind", "severity", "workload"],
        "the shipped rule's labels, and no others"
    );
    let summary = firing["annotations"]["summary"]
        .as_str()
        .unwrap_or_default();
    assert!(summary.contains(&workload), "{firing}");
    println!("alertmanager: the webhook got {labels}: {summary}");
}
