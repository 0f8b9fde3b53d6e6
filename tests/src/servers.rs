//! What the suites that run operations servers beside the agent share
//! (Prometheus, Alertmanager): a child stopped on drop, a Prometheus that
//! scrapes the agent with the shipped rules, PromQL queries in URLs, and
//! the critical alert they raise.

use std::{
    net::TcpStream,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

/// A child stopped with SIGTERM (then SIGKILL) on drop.
pub struct Stopped(pub Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child, which has not been reaped.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        for _ in 0..50 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Percent-encodes a PromQL query for a URL.
pub fn encode_query(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A real Prometheus scraping one agent every second, with the shipped
/// alerting rules (`deploy/prometheus/aiwatch-alerts.yaml`); stopped on
/// drop.
pub struct Prometheus {
    pub addr: String,
    _child: Stopped,
}

impl Prometheus {
    /// Starts Prometheus in `dir` against the agent at `agent_listen`,
    /// sending alerts to the Alertmanager at `alertmanager` if given, and
    /// waits until it is ready and has scraped the agent (`up == 1`).
    pub fn start(dir: &Path, agent_listen: &str, alertmanager: Option<&str>) -> Prometheus {
        let addr = format!("127.0.0.1:{}", crate::free_port());
        let rules = crate::repo_root().join("deploy/prometheus/aiwatch-alerts.yaml");
        let alerting = alertmanager.map_or(String::new(), |am| {
            format!(
                "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"{am}\"]\n"
            )
        });
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n{alerting}\
                 scrape_configs:\n  - job_name: aiwatch\n    scrape_timeout: 1s\n    \
                 static_configs:\n      - targets: [\"{agent_listen}\"]\n",
                rules.display()
            ),
        )
        .expect("writes prometheus.yml");
        let child = start_server(
            "/usr/bin/prometheus",
            &[
                format!("--config.file={}", config.display()),
                format!("--storage.tsdb.path={}", dir.join("prom-data").display()),
                format!("--web.listen-address={addr}"),
            ],
        );
        let prometheus = Prometheus {
            addr,
            _child: child,
        };
        let up = format!(
            "/api/v1/query?query={}",
            encode_query("up{job=\"aiwatch\"}")
        );
        crate::wait_until(
            "Prometheus scrapes the agent",
            Duration::from_secs(60),
            || {
                if !ready(&prometheus.addr, "/-/ready") {
                    return None;
                }
                let (_, body) = crate::http_get(&prometheus.addr, &up);
                let answer: Value = serde_json::from_str(&body).ok()?;
                (answer["data"]["result"][0]["value"][1] == "1").then_some(())
            },
        )
        .expect("Prometheus never scraped the agent (up == 1)");
        prometheus
    }

    /// GETs an API path; panics unless Prometheus answers 200 with JSON.
    pub fn api(&self, path: &str) -> Value {
        let (status, body) = crate::http_get(&self.addr, path);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).expect("Prometheus answers JSON")
    }
}

/// Starts a server program with its output discarded.
pub fn start_server(program: &str, args: &[String]) -> Stopped {
    Stopped(
        Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start {program} (`cargo xtask test` provisions it): {error}")
            }),
    )
}

/// Whether a server on `addr` answers `path` with 200.
pub fn ready(addr: &str, path: &str) -> bool {
    TcpStream::connect(addr).is_ok() && crate::http_get(addr, path).0 == 200
}

/// A pickle whose load runs a shell: the critical alert
/// (`ai.model.pickle-load-exec`) the operations suites raise.
const PICKLE_BOMB: &str = r#"
import os, pickle, sys

class Payload:
    def __reduce__(self):
        return (os.system, ("/bin/sh -c true",))

path = sys.argv[2]
if sys.argv[1] == "make":
    with open(path, "wb") as f:
        pickle.dump(Payload(), f)
else:
    with open(path, "rb") as f:
        pickle.load(f)
print(os.getpid(), flush=True)
"#;

/// Runs the pickle script in `mode` (`make` or `load`) on `model`; returns
/// its pid.
pub fn pickle(mode: &str, model: &Path) -> u64 {
    let output = Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(PICKLE_BOMB)
        .arg(mode)
        .arg(model)
        .output()
        .expect("python3");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("pid")
}
