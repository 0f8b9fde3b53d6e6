//! The attack suite: every scenario of `tests/attacks/attack/` must raise an
//! alert of medium or higher severity, and no workload of
//! `tests/attacks/benign/` may. Prints a scoreboard (`cargo xtask attacks`).
//!
//! Each scenario is a bash script run in a cgroup of its own; an alert
//! belongs to the scenario whose cgroup its event's process was in, so the
//! suite never counts another test's processes. "External" peers live in a
//! network namespace behind a veth pair (`10.213.K.2`, and the instance
//! metadata address `169.254.169.254`), served by `tests/attacks/lib/peer.py`.
//! A last scenario, the sentinel, reads an SSH key with `cat`: once its
//! alert is in, every earlier event has been through the rules, so a quiet
//! scenario is quiet for good.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    os::unix::{fs::MetadataExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use aiwatch_tests::{get, repo_root, venv_python, wait_until, Agent, TempDir};
use serde_json::Value;

/// A scenario longer than this is stopped and counted as broken.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(90);

const SEVERITIES: [&str; 5] = ["info", "low", "medium", "high", "critical"];

fn severity_rank(alert: &Value) -> usize {
    let severity = alert["severity"].as_str().unwrap_or("");
    SEVERITIES.iter().position(|s| *s == severity).unwrap_or(0)
}

fn run_ok(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The cgroup2 mount (`/sys/fs/cgroup/unified` on hybrid hosts).
fn cgroup2_root() -> PathBuf {
    for candidate in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        let path = Path::new(candidate);
        if path.join("cgroup.subtree_control").exists() {
            return path.to_owned();
        }
    }
    panic!("no cgroup2 hierarchy under /sys/fs/cgroup");
}

/// A network namespace holding the suite's external peer.
struct Peer {
    netns: String,
    host_if: String,
    ip: String,
    child: Child,
}

impl Peer {
    fn start() -> Peer {
        let pid = std::process::id();
        let netns = format!("aiwatch-atk-{pid}");
        let host_if = format!("awa{}", pid % 100_000);
        let peer_if = format!("awb{}", pid % 100_000);
        let subnet = 100 + pid % 100;
        let (host_ip, ip) = (format!("10.213.{subnet}.1"), format!("10.213.{subnet}.2"));
        run_ok("ip", &["netns", "add", &netns]);
        run_ok(
            "ip",
            &[
                "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if,
            ],
        );
        run_ok("ip", &["link", "set", &peer_if, "netns", &netns]);
        run_ok(
            "ip",
            &["addr", "add", &format!("{host_ip}/24"), "dev", &host_if],
        );
        run_ok("ip", &["link", "set", &host_if, "up"]);
        let in_ns = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &netns, "ip"];
            all.extend_from_slice(args);
            run_ok("ip", &all);
        };
        in_ns(&["addr", "add", &format!("{ip}/24"), "dev", &peer_if]);
        in_ns(&["addr", "add", "169.254.169.254/32", "dev", &peer_if]);
        in_ns(&["link", "set", &peer_if, "up"]);
        in_ns(&["link", "set", "lo", "up"]);
        in_ns(&["route", "add", "default", "via", &host_ip]);
        run_ok(
            "ip",
            &[
                "route",
                "replace",
                "169.254.169.254/32",
                "via",
                &ip,
                "dev",
                &host_if,
            ],
        );
        let script = repo_root().join("tests/attacks/lib/peer.py");
        let mut child = Command::new("ip")
            .args(["netns", "exec", &netns, "python3"])
            .arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the peer");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("read the peer's first line");
        assert_eq!(line.trim(), "READY", "peer.py did not start");
        Peer {
            netns,
            host_if,
            ip,
            child,
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("ip")
            .args(["route", "del", "169.254.169.254/32", "dev", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
    }
}

/// TCP connections of this host to `ip` that have not reached CLOSE or
/// TIME-WAIT, as `ss` lines.
fn open_connections(ip: &str) -> Vec<String> {
    let output = Command::new("ss")
        .args([
            "-Htn",
            "state",
            "connected",
            "exclude",
            "time-wait",
            "dst",
            ip,
        ])
        .output()
        .expect("run ss");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// A cgroup of the suite; its processes are killed and it is removed on drop.
struct Cgroup {
    path: PathBuf,
    id: u64,
}

impl Cgroup {
    fn create(parent: &Path, name: &str) -> Cgroup {
        let path = parent.join(name);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("create cgroup {}: {e}", path.display()));
        let id = std::fs::metadata(&path).expect("stat cgroup").ino();
        Cgroup { path, id }
    }

    fn kill_all(&self) {
        let _ = std::fs::write(self.path.join("cgroup.kill"), "1");
        let _ = wait_until("cgroup empty", Duration::from_secs(10), || {
            std::fs::read_to_string(self.path.join("cgroup.procs"))
                .ok()
                .filter(|procs| procs.trim().is_empty())
        });
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        self.kill_all();
        let _ = std::fs::remove_dir(&self.path);
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Expect {
    Attack,
    Benign,
}

struct Scenario {
    expect: Expect,
    name: String,
    script: PathBuf,
}

/// The scenarios whose name contains `AIWATCH_ATTACKS` (all when unset).
fn scenarios() -> Vec<Scenario> {
    let only = std::env::var("AIWATCH_ATTACKS").unwrap_or_default();
    let mut out = Vec::new();
    for (folder, expect) in [("attack", Expect::Attack), ("benign", Expect::Benign)] {
        let dir = repo_root().join("tests/attacks").join(folder);
        let mut scripts: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "sh"))
            .collect();
        scripts.sort();
        for script in scripts {
            let name = format!(
                "{folder}/{}",
                script.file_stem().unwrap_or_default().to_string_lossy()
            );
            if name.contains(&only) {
                out.push(Scenario {
                    expect,
                    name,
                    script,
                });
            }
        }
    }
    out
}

/// What one scenario's run left behind.
struct Ran {
    cgroup: Cgroup,
    status: Option<i32>,
    output: String,
    seconds: f64,
}

fn run_scenario(script: &Path, cgroup: Cgroup, peer: &Peer, label: &str) -> Ran {
    let work = TempDir::new(&format!("atk-{label}"));
    let work = std::fs::canonicalize(work.path())
        .map(|path| (work, path))
        .expect("canonical work dir");
    let home = work.1.join("home");
    std::fs::create_dir_all(&home).expect("create home");
    let procs = cgroup.path.join("cgroup.procs");
    let log = work.1.join("scenario.log");
    let log_file = std::fs::File::create(&log).expect("create log");
    let started = Instant::now();
    let mut command = Command::new("/bin/bash");
    command
        .arg(script)
        .env("WORK", &work.1)
        .env("HOME", &home)
        .env("LIB", repo_root().join("tests/attacks/lib"))
        .env("PY", venv_python())
        .env("PEER", &peer.ip)
        .env("IMDS", "169.254.169.254")
        .current_dir(&work.1)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log"))
        .stderr(log_file);
    let procs_c = std::ffi::CString::new(procs.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: only async-signal-safe calls between fork and exec: open,
    // write and close on a path built before the fork.
    unsafe {
        command.pre_exec(move || {
            let fd = libc::open(procs_c.as_ptr(), libc::O_WRONLY);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let written = libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
            if written != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", script.display()));
    let status = wait_until("scenario end", SCENARIO_TIMEOUT, || {
        child.try_wait().expect("wait")
    });
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    cgroup.kill_all();
    Ran {
        cgroup,
        status: status.and_then(|s| s.code()),
        output: std::fs::read_to_string(&log).unwrap_or_default(),
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// One event in a line, for the report of a missed or noisy scenario.
fn event_line(event: &Value) -> String {
    let mut line = format!(
        "{} pid {} {}",
        event["kind"].as_str().unwrap_or("?"),
        get(event, "process.pid"),
        get(event, "process.exe").as_str().unwrap_or("?")
    );
    for path in [
        "file.path",
        "file.target",
        "file.access",
        "file.class",
        "file.size",
        "net.dst.ip",
        "net.dst.port",
        "net.bytes_sent",
        "workload.kind",
    ] {
        let value = get(event, path);
        if !value.is_null() {
            line.push_str(&format!(" {path}={value}"));
        }
    }
    line
}

fn alert_line(alert: &Value) -> String {
    format!(
        "{} ({})",
        alert["rule"].as_str().unwrap_or("?"),
        alert["severity"].as_str().unwrap_or("?")
    )
}

#[test]
fn attack_suite_scoreboard() {
    let agent = Agent::start();
    let peer = Peer::start();
    let parent = cgroup2_root().join(format!("aiwatch-attacks-{}", std::process::id()));
    std::fs::create_dir_all(&parent).expect("create the suite's cgroup");

    let mut results = Vec::new();
    for (index, scenario) in scenarios().into_iter().enumerate() {
        let cgroup = Cgroup::create(&parent, &format!("s{index}"));
        eprintln!("attacks: running {}", scenario.name);
        let ran = run_scenario(
            &scenario.script,
            cgroup,
            &peer,
            &format!("{index}-{}", scenario.expect as u8),
        );
        results.push((scenario, ran));
    }

    // A TCP byte summary is reported when its socket reaches CLOSE, which can
    // come after the process that wrote the bytes has exited: wait until no
    // connection to the peer is short of TIME-WAIT (whose socket is closed).
    let open = wait_until("peer connections closed", Duration::from_secs(30), || {
        open_connections(&peer.ip).is_empty().then_some(())
    });
    assert!(
        open.is_some(),
        "connections to the peer stayed open: {:?}",
        open_connections(&peer.ip)
    );

    // The sentinel: `cat` of an SSH key raises ai.secret.read-by-unexpected-process.
    let sentinel = Cgroup::create(&parent, "sentinel");
    let sentinel_script = repo_root().join("tests/attacks/lib/sentinel.sh");
    let sentinel_id = sentinel.id;
    let sentinel_ran = run_scenario(&sentinel_script, sentinel, &peer, "sentinel");
    agent.wait_alert("the sentinel's alert", |a| {
        get(a, "event.process.cgroup_id").as_u64() == Some(sentinel_id)
    });
    drop(sentinel_ran);

    let mut events_by_cgroup: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for event in agent.events() {
        if let Some(id) = get(&event, "process.cgroup_id").as_u64() {
            events_by_cgroup
                .entry(id)
                .or_default()
                .push(event_line(&event));
        }
    }
    let mut by_cgroup: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    for alert in agent.alerts() {
        if let Some(id) = get(&alert, "event.process.cgroup_id").as_u64() {
            by_cgroup.entry(id).or_default().push(alert);
        }
    }

    let (mut detected, mut missed, mut quiet, mut false_positives, mut broken) = (0, 0, 0, 0, 0);
    println!("\n=== aiwatch attack suite ===");
    for (scenario, ran) in &results {
        let alerts = by_cgroup.remove(&ran.cgroup.id).unwrap_or_default();
        let serious: Vec<String> = alerts
            .iter()
            .filter(|a| severity_rank(a) >= 2)
            .map(alert_line)
            .collect();
        let minor: Vec<String> = alerts
            .iter()
            .filter(|a| severity_rank(a) < 2)
            .map(alert_line)
            .collect();
        let verdict = match (scenario.expect, serious.is_empty()) {
            (Expect::Attack, false) => {
                detected += 1;
                "DETECTED"
            }
            (Expect::Attack, true) => {
                missed += 1;
                "MISSED"
            }
            (Expect::Benign, true) => {
                quiet += 1;
                "quiet"
            }
            (Expect::Benign, false) => {
                false_positives += 1;
                "FALSE POSITIVE"
            }
        };
        let ok = ran.status == Some(0);
        if !ok {
            broken += 1;
        }
        let mut dedup = serious.clone();
        dedup.dedup();
        println!(
            "{verdict:<15} {:<45} {:>5.1}s  {}{}",
            scenario.name,
            ran.seconds,
            dedup.join(", "),
            if minor.is_empty() {
                String::new()
            } else {
                format!("  [below medium: {}]", minor.len())
            }
        );
        if !ok || verdict == "MISSED" || verdict == "FALSE POSITIVE" {
            println!(
                "    exit status {:?}; output:\n{}",
                ran.status,
                ran.output
                    .lines()
                    .map(|l| format!("      {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            println!(
                "    alerts: {}",
                alerts.iter().map(alert_line).collect::<Vec<_>>().join(", ")
            );
            println!("    events:");
            for line in events_by_cgroup.get(&ran.cgroup.id).into_iter().flatten() {
                println!("      {line}");
            }
        }
    }
    println!(
        "\nattacks: {detected} detected, {missed} missed; benign: {quiet} quiet, {false_positives} false positives; {broken} scenarios did not finish cleanly\n"
    );
    drop(results);
    let _ = std::fs::remove_dir(&parent);
    assert!(
        missed == 0 && false_positives == 0 && broken == 0,
        "the attack suite failed: {missed} missed, {false_positives} false positives, {broken} broken (scoreboard above)"
    );
    if std::env::var_os("AIWATCH_ATTACKS").is_none() {
        assert!(detected >= 20 && quiet >= 8, "the suite lost scenarios");
    }
}
