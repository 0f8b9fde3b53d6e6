//! The policy engine end to end: the default rule pack against real
//! processes on the real kernel, hot reload of custom rules, a refused
//! broken file, and `action: kill`.
//!
//! Every assertion is on alerts whose pids this test started.

use std::{
    collections::HashSet,
    ffi::CString,
    io::{BufRead, BufReader},
    net::{TcpListener, TcpStream},
    os::unix::{fs::PermissionsExt, process::ExitStatusExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use aiwatch_tests::{
    event_timeout, free_port, get, kind_of, pid_of, venv_python, wait_until, Agent, AgentOptions,
    TempDir,
};
use serde_json::Value;

const PYTHON: &str = "/usr/bin/python3";

fn alert_pid(alert: &Value) -> u64 {
    get(alert, "event.process.pid").as_u64().unwrap_or(0)
}

/// Waits for an alert of `rule` about process `pid`.
fn wait_rule(agent: &Agent, rule: &str, pid: u64) -> Value {
    agent.wait_alert(&format!("{rule} for pid {pid}"), |a| {
        a["rule"] == rule && alert_pid(a) == pid
    })
}

/// Copies `from` to `dir/name` as an executable: a program whose name is
/// what a rule looks for.
fn program_copy(from: &str, dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::copy(from, &to).expect("copy program");
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    to
}

/// Starts a program copied by [`program_copy`]. The tests of this file run
/// side by side: a child another test forks while the copy is still open
/// for writing holds the file until its own exec, and an exec of the copy
/// meanwhile fails with ETXTBSY. Retried for a moment, then a failure.
fn spawn(command: &mut Command) -> std::process::Child {
    for _ in 0..100 {
        match command.spawn() {
            Err(err) if err.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            started => {
                return started.unwrap_or_else(|e| panic!("start {command:?}: {e}"));
            }
        }
    }
    panic!("start {command:?}: the copy stayed busy (ETXTBSY) for a second");
}

/// Writes `text` to `dir/name` the way careful tools do: a temporary file
/// renamed over the target, so the watcher never sees half a file.
fn write_atomically(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).expect("write policy");
    std::fs::rename(&tmp, dir.join(name)).expect("rename policy");
}

/// A rule alerting on the exec of a program called `marker`.
fn marker_rule(id: &str, marker: &str, action: &str) -> String {
    format!(
        "rules:\n  - id: {id}\n    description: The test marker {marker} ran\n    severity: high\n    action: {action}\n    when:\n      kind: exec\n      process.name: {marker}\n"
    )
}

/// The value of the sample of `name` whose labels include `labels`
/// (`result="success"` or `""`), whatever order the exposition writes them in.
fn metric(agent: &Agent, name: &str, labels: &str) -> Option<f64> {
    let (status, body) = agent.http_get("/metrics");
    assert_eq!(status, 200, "/metrics answered {status}");
    let wanted: Vec<&str> = labels.split(',').filter(|l| !l.is_empty()).collect();
    body.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, series_labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let have: Vec<&str> = series_labels.split(',').collect();
        (series_name == name && wanted.iter().all(|w| have.contains(w)))
            .then(|| value.parse().ok())
            .flatten()
    })
}

fn wait_metric_at_least(agent: &Agent, name: &str, labels: &str, at_least: f64) -> f64 {
    wait_until(name, event_timeout(), || {
        metric(agent, name, labels).filter(|v| *v >= at_least)
    })
    .unwrap_or_else(|| {
        panic!(
            "{name}{{{labels}}} never reached {at_least} (now {:?}); log:\n{}",
            metric(agent, name, labels),
            agent.log()
        )
    })
}

const RELOADS: &str = "aiwatch_policy_reloads_total";
const SUCCESS: &str = "result=\"success\"";

/// Runs a program to completion and returns its pid.
fn run(program: &Path, args: &[&str]) -> u64 {
    let mut child = spawn(Command::new(program).args(args));
    let pid = child.id() as u64;
    child.wait().expect("wait");
    pid
}

/// The executable `/bin/sh` resolves to (events carry resolved paths).
fn sh_exe() -> String {
    std::fs::canonicalize("/bin/sh")
        .expect("/bin/sh")
        .display()
        .to_string()
}

const PICKLE_BOMB: &str = r#"
import os, pickle, sys

class Payload:
    def __reduce__(self):
        return (os.system, ("/bin/sh -c true",))

path = sys.argv[1]
with open(path, "wb") as f:
    pickle.dump(Payload(), f)
with open(path, "rb") as f:
    pickle.load(f)
print(os.getpid(), flush=True)
"#;

#[test]
fn pickle_model_load_that_spawns_a_shell_alerts() {
    let agent = Agent::start();
    let dir = TempDir::new("pickle");
    for name in ["model.pkl", "model.pt"] {
        let model = dir.path().join(name);
        let output = Command::new(venv_python())
            .arg("-c")
            .arg(PICKLE_BOMB)
            .arg(&model)
            .output()
            .expect("run python");
        assert!(
            output.status.success(),
            "python failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let loader: u64 = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("python prints its pid");

        let alert = agent.wait_alert(&format!("pickle-load-exec of {name}"), |a| {
            a["rule"] == "ai.model.pickle-load-exec"
                && get(a, "steps")
                    .as_array()
                    .and_then(|s| s.first())
                    .is_some_and(|first| pid_of(first) == loader)
        });
        assert_eq!(alert["severity"], "critical");
        let steps = alert["steps"].as_array().expect("steps");
        assert_eq!(steps.len(), 2, "{alert:#}");
        let (open, exec) = (&steps[0], &steps[1]);
        assert_eq!(kind_of(open), "open");
        assert_eq!(get(open, "file.path"), model.display().to_string().as_str());
        assert_eq!(get(open, "file.class"), "pickle-model");
        assert_eq!(get(open, "file.access"), "read");
        assert_eq!(kind_of(exec), "exec");
        assert_eq!(get(exec, "process.exe"), sh_exe().as_str());
        assert_eq!(get(exec, "process.ppid").as_u64(), Some(loader));
        assert_eq!(get(exec, "parent.pid").as_u64(), Some(loader));
        // The alert's event is the step that completed the sequence.
        assert_eq!(pid_of(&alert["event"]), pid_of(exec));
        let summary = alert["summary"].as_str().unwrap_or("");
        assert!(
            summary.contains(&format!("(pid {loader})")) && summary.contains(name),
            "the summary names the loader and the file: {summary}"
        );
        assert!(summary.contains(&sh_exe()), "{summary}");
    }
}

/// Every pid descending from `roots`, as the agent saw them.
fn tree_pids(agent: &Agent, roots: &[u64]) -> HashSet<u64> {
    let roots: HashSet<u64> = roots.iter().copied().collect();
    let mut pids = roots.clone();
    for event in agent.events() {
        let ancestors = get(&event, "process.ancestors")
            .as_array()
            .cloned()
            .unwrap_or_default();
        let descends = ancestors
            .iter()
            .filter_map(|a| a["pid"].as_u64())
            .chain(get(&event, "process.ppid").as_u64())
            .any(|p| roots.contains(&p));
        if descends {
            pids.insert(pid_of(&event));
        }
    }
    pids
}

fn workload(script: &str) -> PathBuf {
    aiwatch_tests::repo_root()
        .join("tests/workloads")
        .join(script)
}

fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("read");
    line.trim().to_owned()
}

#[test]
fn benign_ai_workloads_raise_nothing() {
    // The default configuration: anomaly detection on (still learning).
    let agent = Agent::start();
    let home = TempDir::new("benign-home");
    let token = home.path().join(".cache/huggingface/token");
    std::fs::create_dir_all(token.parent().unwrap()).unwrap();
    std::fs::write(&token, "hf_test").unwrap();
    let python = venv_python();
    let mut roots = Vec::new();

    // pip list during set-up.
    let pip = python.with_file_name("pip");
    let out = Command::new(&pip)
        .arg("list")
        .env("HOME", home.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("pip");
    roots.push(out.id() as u64);
    let status = { out }.wait().expect("wait pip");
    assert!(status.success());

    // An ONNX inference server answering a few requests.
    let serve_dir = TempDir::new("benign-onnx");
    let port = free_port();
    let mut server = Command::new(&python)
        .arg(workload("onnx_server.py"))
        .arg(serve_dir.path())
        .arg(port.to_string())
        .env("HOME", home.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("onnx server");
    roots.push(server.id() as u64);
    assert_eq!(first_line(&mut server), format!("READY {port}"));
    for x in 1..=5 {
        let (status, body) =
            aiwatch_tests::http_get(&format!("127.0.0.1:{port}"), &format!("/predict?x={x}"));
        assert_eq!(status, 200, "{body}");
    }

    // A training loop writing checkpoints.
    let train_dir = TempDir::new("benign-train");
    let train = Command::new(&python)
        .arg(workload("train_loop.py"))
        .arg(train_dir.path())
        .args(["60", "20"])
        .env("HOME", home.path())
        .stdout(Stdio::piped())
        .output_from_spawn();
    roots.push(train.0);
    assert!(train.1.contains("DONE"), "train_loop: {}", train.1);

    // A notebook kernel doing numpy work.
    let nb_dir = TempDir::new("benign-notebook");
    let notebook = Command::new(&python)
        .arg(workload("notebook_kernel.py"))
        .arg(nb_dir.path())
        .env("HOME", home.path())
        .stdout(Stdio::piped())
        .output_from_spawn();
    roots.push(notebook.0);
    assert!(notebook.1.contains("RESULT 45"), "notebook: {}", notebook.1);

    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    server.wait().expect("wait server");
    let server_pid = roots[1];
    agent.wait_event("the server's exit", |e| {
        kind_of(e) == "exit" && pid_of(e) == server_pid
    });
    // The workloads were seen as what they are.
    for (root, kind) in [(roots[1], "inference"), (roots[2], "training")] {
        agent.wait_event(&format!("a {kind} event of pid {root}"), |e| {
            pid_of(e) == root && get(e, "workload.kind") == kind
        });
    }
    agent.wait_event("the notebook kernel's events", |e| {
        get(e, "workload.kind") == "notebook"
            && get(e, "process.ancestors")
                .as_array()
                .is_some_and(|a| a.iter().any(|p| p["pid"].as_u64() == Some(roots[3])))
    });
    // Once the agent has caught up, nothing of ours may have alerted.
    agent.sentinel();
    let ours = tree_pids(&agent, &roots);
    let alerts: Vec<Value> = agent
        .alerts()
        .into_iter()
        .filter(|a| ours.contains(&alert_pid(a)))
        .collect();
    assert!(
        alerts.is_empty(),
        "benign workloads raised alerts:\n{}",
        alerts
            .iter()
            .map(|a| format!("{} {}", a["rule"], a["summary"]))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Spawns with a piped stdout, waits, and returns (pid, stdout).
trait OutputFromSpawn {
    fn output_from_spawn(&mut self) -> (u64, String);
}

impl OutputFromSpawn for Command {
    fn output_from_spawn(&mut self) -> (u64, String) {
        let child = self.spawn().expect("spawn");
        let pid = child.id() as u64;
        let output = child.wait_with_output().expect("wait");
        assert!(output.status.success(), "{:?} failed", self.get_program());
        (pid, String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

fn policy_agent(policies: &Path, extra: &str) -> Agent {
    Agent::start_with(AgentOptions {
        config: format!(
            "anomaly: {{enabled: false}}\npolicies: [{}]\n{extra}",
            policies.display()
        ),
        ..Default::default()
    })
}

#[test]
fn a_new_rule_is_hot_reloaded_on_change_and_on_sighup() {
    let me = std::process::id();
    let policies = TempDir::new("reload-policies");
    let bin = TempDir::new("reload-bin");
    let first = format!("aiwatch-reload-first-{me}");
    let added = format!("aiwatch-reload-marker-{me}");
    write_atomically(
        policies.path(),
        "10-first.yaml",
        &marker_rule("test.reload.first", &first, "alert"),
    );
    let agent = policy_agent(policies.path(), "");
    let first_bin = program_copy("/bin/true", bin.path(), &first);
    let pid = run(&first_bin, &[]);
    wait_rule(&agent, "test.reload.first", pid);
    let rules_before = metric(&agent, "aiwatch_rules_loaded", "").expect("rules_loaded");
    assert_eq!(metric(&agent, RELOADS, SUCCESS), Some(0.0));

    // A new file in the watched folder.
    let added_bin = program_copy("/bin/true", bin.path(), &added);
    let pid = run(&added_bin, &[]);
    write_atomically(
        policies.path(),
        "20-added.yaml",
        &marker_rule("test.reload.added", &added, "alert"),
    );
    agent.wait_for_log("policies reloaded", event_timeout());
    wait_metric_at_least(&agent, RELOADS, SUCCESS, 1.0);
    assert_eq!(
        metric(&agent, "aiwatch_rules_loaded", ""),
        Some(rules_before + 1.0)
    );
    assert_eq!(
        metric(&agent, "aiwatch_policy_last_reload_successful", ""),
        Some(1.0)
    );
    // The exec before the reload did not alert; the one after does.
    let pid_after = run(&added_bin, &[]);
    wait_rule(&agent, "test.reload.added", pid_after);
    assert!(
        !agent
            .alerts()
            .iter()
            .any(|a| a["rule"] == "test.reload.added" && alert_pid(a) == pid),
        "a rule loaded later fired on an earlier exec"
    );

    // SIGHUP reloads the set too, with no file changed.
    let successes = metric(&agent, RELOADS, SUCCESS).unwrap();
    agent.signal(libc::SIGHUP);
    wait_metric_at_least(&agent, RELOADS, SUCCESS, successes + 1.0);
    assert_eq!(
        metric(&agent, "aiwatch_rules_loaded", ""),
        Some(rules_before + 1.0)
    );
    // Sequence and throttle state aside, the rules still work after it.
    let pid = run(&added_bin, &[]);
    wait_rule(&agent, "test.reload.added", pid);
}

#[test]
fn a_broken_policy_is_refused_and_the_old_rules_keep_alerting() {
    let me = std::process::id();
    let policies = TempDir::new("broken-policies");
    let bin = TempDir::new("broken-bin");
    let marker = format!("aiwatch-broken-marker-{me}");
    write_atomically(
        policies.path(),
        "10-custom.yaml",
        &marker_rule("test.broken.custom", &marker, "alert"),
    );
    let agent = policy_agent(policies.path(), "");
    let marker_bin = program_copy("/bin/true", bin.path(), &marker);
    let pid = run(&marker_bin, &[]);
    wait_rule(&agent, "test.broken.custom", pid);
    let rules = metric(&agent, "aiwatch_rules_loaded", "").expect("rules_loaded");

    // An unknown operator on line 6, column 22.
    write_atomically(
        policies.path(),
        "20-broken.yaml",
        "rules:\n  - id: test.broken.bad\n    severity: high\n    when:\n      kind: exec\n      process.name: {sounds_like: sh}\n",
    );
    let line = agent.wait_for_log("policy reload failed", event_timeout());
    wait_metric_at_least(&agent, RELOADS, "result=\"failure\"", 1.0);
    assert_eq!(
        metric(&agent, "aiwatch_policy_last_reload_successful", ""),
        Some(0.0)
    );
    assert_eq!(metric(&agent, "aiwatch_rules_loaded", ""), Some(rules));
    let log = agent.log();
    let broken = policies.path().join("20-broken.yaml").display().to_string();
    let position = log
        .lines()
        .find(|l| l.contains(&broken))
        .unwrap_or_else(|| panic!("no error naming {broken} after {line:?}; log:\n{log}"));
    assert!(
        position.contains(&format!("{broken}:6:")),
        "the error gives file:line:column: {position}"
    );

    // The rule loaded before still alerts.
    let pid = run(&marker_bin, &[]);
    wait_rule(&agent, "test.broken.custom", pid);
}

#[test]
fn a_kill_rule_kills_the_process() {
    let me = std::process::id();
    let policies = TempDir::new("kill-policies");
    let bin = TempDir::new("kill-bin");
    let marker = format!("aiwatch-kill-marker-{me}");
    // A rule on a name is killed from user space, and only in enforce mode.
    write_atomically(
        policies.path(),
        "kill.yaml",
        &format!(
            "enforcement: enforce\n{}",
            marker_rule("test.kill.marker", &marker, "kill")
        ),
    );
    let agent = policy_agent(policies.path(), "");
    let marker_bin = program_copy("/bin/sleep", bin.path(), &marker);
    let started = Instant::now();
    let mut child = spawn(Command::new(&marker_bin).arg("30"));
    let pid = child.id() as u64;
    let status = child.wait().expect("wait");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(25));
    let alert = wait_rule(&agent, "test.kill.marker", pid);
    assert_eq!(alert["action"], "kill");
    assert_eq!(alert["action_taken"], true);
    assert_eq!(alert["enforcement"]["outcome"], "killed");
    assert_eq!(alert["enforcement"]["hook"], "user_space");
    wait_metric_at_least(
        &agent,
        "aiwatch_alerts_total",
        "rule=\"test.kill.marker\",severity=\"high\",workload_kind=\"none\",action=\"kill\"",
        1.0,
    );
}

// ---------------------------------------------------------------------------
// Attack scenarios with the default pack.

#[test]
fn a_miner_binary_alerts() {
    let agent = Agent::start();
    let bin = TempDir::new("miner");
    let xmrig = program_copy("/bin/sleep", bin.path(), "xmrig");
    let pid = run(&xmrig, &["0.1"]);
    let alert = wait_rule(&agent, "ai.miner.known-binary", pid);
    assert_eq!(alert["severity"], "critical");
    assert!(alert["summary"]
        .as_str()
        .unwrap_or("")
        .contains(&xmrig.display().to_string()));
}

#[test]
fn a_reverse_shell_alerts() {
    let agent = Agent::start();
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let socket = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (_peer, _) = listener.accept().expect("accept");
    let stdin = socket.try_clone().expect("dup");
    let mut shell = Command::new("/bin/sh")
        .args(["-c", "exit 0"])
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(stdin)))
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(socket)))
        .spawn()
        .expect("sh");
    let pid = shell.id() as u64;
    shell.wait().expect("wait sh");
    let alert = wait_rule(&agent, "host.reverse-shell", pid);
    assert_eq!(get(&alert, "event.process.stdio_socket"), true);
    assert_eq!(get(&alert, "event.process.exe"), sh_exe().as_str());
}

#[test]
fn a_program_run_from_memory_alerts() {
    let agent = Agent::start();
    let output = Command::new(PYTHON)
        .arg("-c")
        .arg(
            "import os\n\
             fd = os.memfd_create('payload', 0)\n\
             os.write(fd, open('/bin/true', 'rb').read())\n\
             print(os.getpid(), flush=True)\n\
             os.execve(fd, ['payload'], {})\n",
        )
        .output()
        .expect("python");
    assert!(output.status.success(), "{output:?}");
    let pid: u64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("pid");
    let alert = wait_rule(&agent, "host.fileless-exec", pid);
    assert_eq!(alert["severity"], "high");
    assert!(
        get(&alert, "event.process.exe_fileless") == true
            || get(&alert, "event.process.exe")
                .as_str()
                .is_some_and(|e| e.starts_with("/memfd:")),
        "{alert:#}"
    );
}

/// A character device node, removed on drop.
struct Node(PathBuf);

impl Node {
    fn new(path: PathBuf, major: u32, minor: u32) -> Node {
        let c_path = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        let _ = std::fs::remove_file(&path);
        // SAFETY: a valid C string; mknod copies it.
        let rc = unsafe {
            libc::mknod(
                c_path.as_ptr(),
                libc::S_IFCHR | 0o666,
                libc::makedev(major, minor),
            )
        };
        assert_eq!(rc, 0, "mknod: {}", std::io::Error::last_os_error());
        Node(path)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_gpu_opened_outside_workloads_alerts() {
    let agent = Agent::start();
    let node = Node::new(
        PathBuf::from(format!("/dev/nvidia-aiwatch-{}", std::process::id())),
        195,
        251,
    );
    let bin = TempDir::new("gpu-bin");
    // A program of its own: the rule is throttled per executable.
    let opener = program_copy("/bin/dd", bin.path(), "gpu-prober");
    let mut child = spawn(
        Command::new(&opener)
            .arg(format!("if={}", node.0.display()))
            .args(["of=/dev/null", "count=0"])
            .stderr(Stdio::null()),
    );
    let pid = child.id() as u64;
    child.wait().expect("wait");
    let alert = wait_rule(&agent, "ai.gpu.open-outside-workload", pid);
    assert_eq!(
        get(&alert, "event.file.path"),
        node.0.display().to_string().as_str()
    );
    assert_eq!(get(&alert, "event.file.device.major").as_u64(), Some(195));
}

#[test]
fn a_secret_read_by_cat_alerts() {
    let agent = Agent::start();
    let home = TempDir::new("secret-home");
    let credentials = home.path().join(".aws/credentials");
    std::fs::create_dir_all(credentials.parent().unwrap()).unwrap();
    std::fs::write(&credentials, "[default]\naws_access_key_id = AKIAEXAMPLE\n").unwrap();
    let mut cat = Command::new("/bin/cat")
        .arg(&credentials)
        .env("HOME", home.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("cat");
    let pid = cat.id() as u64;
    cat.wait().expect("wait");
    let alert = wait_rule(&agent, "ai.secret.read-by-unexpected-process", pid);
    assert_eq!(get(&alert, "event.file.class"), "secret");
    assert!(alert["summary"]
        .as_str()
        .unwrap_or("")
        .contains(&credentials.display().to_string()));
}

#[test]
fn a_model_renamed_or_deleted_outside_workloads_is_a_low_audit_alert() {
    let agent = Agent::start();
    let dir = TempDir::new("tamper");
    let model = dir.path().join("model.safetensors");
    std::fs::write(&model, b"not really weights").unwrap();
    let moved = dir.path().join("model.safetensors.bak");
    let mv = run(
        Path::new("/bin/mv"),
        &[model.to_str().unwrap(), moved.to_str().unwrap()],
    );
    // Nobody loaded it: a clean-up or a deployment, not tampering (a model in
    // use swapped under its server is in the attack suite).
    let rename = wait_rule(&agent, "ai.model.write-outside-workload", mv);
    assert_eq!(kind_of(&rename["event"]), "rename");
    assert_eq!(rename["severity"], "low");
    let doomed = dir.path().join("classifier.onnx");
    std::fs::write(&doomed, b"not really a graph").unwrap();
    let rm = run(Path::new("/bin/rm"), &[doomed.to_str().unwrap()]);
    let unlink = wait_rule(&agent, "ai.model.write-outside-workload", rm);
    assert_eq!(kind_of(&unlink["event"]), "unlink");
    assert_eq!(
        get(&unlink, "event.file.path"),
        doomed.display().to_string().as_str()
    );
    assert_eq!(get(&unlink, "event.file.class"), "model");
}
