//! Harness for aiwatch's privileged end-to-end tests.
//!
//! Each test starts its own `aiwatch run` (the real binary, loading the real
//! programs into the running kernel) with `--events` to a private file, runs
//! real processes, and asserts on the events whose pids it owns. Tests share
//! the kernel, so they must never assert on anything but their own pids.
//!
//! The binary comes from `AIWATCH_BIN` (set by `cargo xtask test`), or else
//! from the workspace's `target/debug/aiwatch`.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{
        atomic::{AtomicU16, Ordering},
        Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod ai;
pub mod containerd;
pub mod images;
pub mod pod;
pub mod servers;

/// How long a test waits for an event before failing: 20 s, or
/// `AIWATCH_EVENT_TIMEOUT_S` (the kernel guests raise it: under QEMU's TCG
/// a Python process's start alone can take seconds, and another test's
/// agent may be verifying its programs on the same two CPUs).
pub fn event_timeout() -> Duration {
    seconds_from_env("AIWATCH_EVENT_TIMEOUT_S", 20)
}

/// How long an agent may take to load its programs: 60 s, or
/// `AIWATCH_READY_TIMEOUT_S` (`cargo xtask vm` raises it: under QEMU's TCG
/// the verifier is 10 to 50 times slower, and two agents may load at once).
pub fn ready_timeout() -> Duration {
    seconds_from_env("AIWATCH_READY_TIMEOUT_S", 60)
}

/// The whole seconds in the environment variable `name`, or `default` when
/// it is unset or not a number.
fn seconds_from_env(name: &str, default: u64) -> Duration {
    let secs = std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default);
    Duration::from_secs(secs)
}

/// The aiwatch binary under test.
pub fn aiwatch_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("AIWATCH_BIN") {
        return PathBuf::from(bin);
    }
    let repo = repo_root();
    let bin = repo.join("target/debug/aiwatch");
    assert!(
        bin.exists(),
        "no aiwatch binary at {}: run the tests with `cargo xtask test`",
        bin.display()
    );
    bin
}

/// A copy of the aiwatch binary that any user can run, for tests that run it
/// as `nobody`: the checkout may live in a directory only root can enter
/// (a clone under `/root`, or any 0700 directory). The copy is a hard link
/// when it can be (same filesystem), else a copy, in a world-readable scratch
/// folder removed on drop.
pub struct UnprivilegedBin {
    dir: TempDir,
}

impl UnprivilegedBin {
    pub fn new() -> UnprivilegedBin {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new("bin");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("make the binary's folder world-readable");
        let source = aiwatch_bin();
        let copy = dir.path().join("aiwatch");
        if std::fs::hard_link(&source, &copy).is_err() {
            std::fs::copy(&source, &copy).expect("copy the aiwatch binary");
        }
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755))
            .expect("make the binary world-executable");
        UnprivilegedBin { dir }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("aiwatch")
    }
}

impl Default for UnprivilegedBin {
    fn default() -> Self {
        UnprivilegedBin::new()
    }
}

pub fn repo_root() -> PathBuf {
    match std::env::var_os("AIWATCH_REPO") {
        Some(repo) => PathBuf::from(repo),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("repo root")
            .to_owned(),
    }
}

/// The Python of the test virtualenv (onnxruntime, numpy, ...).
pub fn venv_python() -> PathBuf {
    match std::env::var_os("AIWATCH_PYTHON") {
        Some(python) => PathBuf::from(python),
        None => {
            let python = repo_root().join("target/venv/bin/python");
            assert!(
                python.exists(),
                "no test virtualenv: run the tests with `cargo xtask test`"
            );
            python
        }
    }
}

/// A private scratch folder, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static NEXT: AtomicU16 = AtomicU16::new(0);
        let dir = std::env::temp_dir().join(format!(
            "aiwatch-test-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether this kernel runs the `bpf` LSM (`/sys/kernel/security/lsm`),
/// where aiwatch refuses protected opens and denied execs in the LSM. An
/// agent on such a kernel must attach its LSM programs: the enforcement
/// tests hold it to that instead of trusting what it reports.
pub fn bpf_lsm_active() -> bool {
    std::fs::read_to_string("/sys/kernel/security/lsm")
        .is_ok_and(|active| active.split(',').any(|lsm| lsm.trim() == "bpf"))
}

/// A free loopback port for a listener.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A running agent.
pub struct Agent {
    child: Option<Child>,
    pub dir: TempDir,
    pub events_path: PathBuf,
    pub alerts_path: PathBuf,
    pub listen: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// Options for [`Agent::start_with`].
#[derive(Default)]
pub struct AgentOptions {
    /// Extra lines of configuration YAML.
    pub config: String,
    /// Extra command-line arguments after `run`.
    pub args: Vec<String>,
    /// A state directory to use instead of a fresh one, to keep learned
    /// profiles across a restart.
    pub state_dir: Option<PathBuf>,
    /// Extra environment variables for the agent.
    pub env: Vec<(String, String)>,
    /// Another `aiwatch` executable to run (a copy, with its own inode).
    pub binary: Option<PathBuf>,
}

impl Agent {
    pub fn start() -> Agent {
        Agent::start_with(AgentOptions::default())
    }

    /// Starts the agent and waits until it says it is ready.
    pub fn start_with(options: AgentOptions) -> Agent {
        let dir = TempDir::new("agent");
        let events_path = dir.path().join("events.jsonl");
        let alerts_path = dir.path().join("alerts.jsonl");
        let config_path = dir.path().join("config.yaml");
        let listen = format!("127.0.0.1:{}", free_port());
        // Each agent its own stream socket: the default path is one per
        // host, and tests run agents side by side.
        let config = format!(
            "listen: {listen}\nevents: {}\nalerts: {}\nstream_socket: {}\nstate_dir: {}\n{}\n",
            events_path.display(),
            alerts_path.display(),
            dir.path().join("stream.sock").display(),
            options
                .state_dir
                .clone()
                .unwrap_or_else(|| dir.path().join("state"))
                .display(),
            options.config
        );
        std::fs::write(&config_path, config).expect("write config");
        let mut command = Command::new(options.binary.clone().unwrap_or_else(aiwatch_bin));
        // SAFETY: the closure runs in the forked child before exec and
        // only calls prctl(2), which is async-signal-safe.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                // An agent whose test died (a panic that skipped Drop, a
                // test binary killed by another test's enforcement) must
                // not run on, enforcing and loading probes, for every
                // later test on the kernel: it goes with the test's thread.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .args(&options.args)
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start aiwatch");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let pipe = child.stderr.take().expect("stderr");
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                eprintln!("[aiwatch] {line}");
                lines.lock().unwrap().push(line);
            }
        });
        let agent = Agent {
            child: Some(child),
            dir,
            events_path,
            alerts_path,
            listen,
            stderr,
        };
        agent.wait_for_log("aiwatch ready", ready_timeout());
        agent
    }

    /// Waits for a stderr line containing `needle`; panics with the log on timeout.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self
                .stderr
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return line.clone();
            }
            if Instant::now() > deadline {
                panic!("aiwatch never logged {needle:?}; log:\n{}", self.log());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Every event written so far, rotated files included (a busy host can
    /// fill a file past its size limit during a test).
    pub fn events(&self) -> Vec<Value> {
        let mut events = Vec::new();
        for i in (1..=10).rev() {
            let mut rotated = self.events_path.clone().into_os_string();
            rotated.push(format!(".{i}"));
            events.extend(read_json_lines(Path::new(&rotated)));
        }
        events.extend(read_json_lines(&self.events_path));
        events
    }

    pub fn alerts(&self) -> Vec<Value> {
        read_json_lines(&self.alerts_path)
    }

    /// Waits until an event matches `pred`, and returns it.
    pub fn wait_event(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        wait_until(what, event_timeout(), || {
            self.events().into_iter().find(|e| pred(e))
        })
        .unwrap_or_else(|| panic!("no event {what}; log:\n{}", self.log()))
    }

    /// Waits until an alert matches `pred`, and returns it.
    pub fn wait_alert(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        wait_until(what, event_timeout(), || {
            self.alerts().into_iter().find(|e| pred(e))
        })
        .unwrap_or_else(|| panic!("no alert {what}; log:\n{}", self.log()))
    }

    /// Makes sure the agent has caught up with everything that happened
    /// before this call, so that a test can then assert that something did
    /// *not* happen. Runs a marker process (`cat` of a file classed as a
    /// secret, which the default rule pack alerts on) and waits until its
    /// exit event and its alert are written: events, and alerts, are written
    /// in the order the kernel produced them, so everything earlier is in
    /// the files by then. Needs the default rule pack.
    pub fn sentinel(&self) {
        static NEXT: AtomicU16 = AtomicU16::new(0);
        let home = self
            .dir
            .path()
            .join(format!("sentinel-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        let secret = home.join(".aws/credentials");
        std::fs::create_dir_all(secret.parent().expect("a parent")).expect("sentinel folder");
        std::fs::write(&secret, "[sentinel]\n").expect("sentinel file");
        let status_and_pid = Command::new("/bin/cat")
            .arg(&secret)
            .stdout(Stdio::null())
            .spawn()
            .and_then(|mut child| Ok((child.wait()?, child.id() as u64)))
            .expect("run the sentinel");
        let (status, pid) = status_and_pid;
        assert!(status.success(), "the sentinel cat failed: {status:?}");
        self.wait_event("the sentinel's exit", |e| {
            kind_of(e) == "exit" && pid_of(e) == pid
        });
        self.wait_alert("the sentinel's alert", |a| {
            a["rule"] == "ai.secret.read-by-unexpected-process"
                && get(a, "event.process.pid").as_u64() == Some(pid)
        });
    }

    /// GETs a path on the agent's HTTP listener: (status, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        http_get(&self.listen, path)
    }

    /// Sends a signal to the agent.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.pid() as i32, signal) };
    }

    /// Waits for the agent to exit on its own; panics with the log after
    /// `timeout`.
    pub fn wait_exit(self, timeout: Duration) -> (ExitStatus, String) {
        self.wait_for_exit(timeout, &format!("exit within {timeout:?}"))
    }

    /// Stops the agent with SIGTERM and returns its exit status.
    pub fn stop(self) -> (ExitStatus, String) {
        let child = self.child.as_ref().expect("running");
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        self.wait_for_exit(Duration::from_secs(30), "stop within 30 s of SIGTERM")
    }

    /// Waits up to `timeout` for the agent's exit; `what` names what it
    /// failed to do in the panic.
    fn wait_for_exit(mut self, timeout: Duration, what: &str) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("aiwatch did not {what}; log:\n{}", self.log());
            }
            thread::sleep(Duration::from_millis(20));
        };
        // Let the stderr thread take the last lines.
        thread::sleep(Duration::from_millis(100));
        (status, self.log())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            stop_agent(child);
        }
    }
}

/// How long a stopping agent gets before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// Stops an agent as systemd and the kubelet do: SIGTERM, then SIGKILL if
/// it outlives `STOP_GRACE`. SIGTERM lets the agent detach its programs
/// side by side, where a killed one detaches them one after the other
/// (each waits for a grace period of the kernel's). Either way it is
/// reaped before the test goes on: until then its programs stay attached,
/// and a killing one would kill the next test's processes, whose files can
/// reuse this test's inode numbers.
fn stop_agent(mut child: Child) {
    // SAFETY: kill(2) on the pid of a child not yet reaped, so the pid
    // cannot have been reused by another process.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return,
            Ok(None) => thread::sleep(Duration::from_millis(20)),
        }
    }
    eprintln!(
        "aiwatch (pid {}) still running {}s after SIGTERM: killed",
        child.id(),
        STOP_GRACE.as_secs()
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// The JSON lines of a file the agent writes. Only complete lines count: the
/// last one may be half-written while the agent runs, and is left for the
/// next read. A complete line that is not JSON is torn or garbled output,
/// which is a bug in the agent: it fails the test, naming the file and line.
pub fn read_json_lines(path: &Path) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let (lines, malformed) = parse_complete_json_lines(&text);
    if let Some((number, line)) = malformed.first() {
        panic!(
            "{}: {} malformed JSON line(s), the first is line {number}: {line:?}",
            path.display(),
            malformed.len()
        );
    }
    lines
}

/// Parses the newline-terminated lines of `text` as JSON. Returns the values
/// and the malformed lines (1-based number, text); an unterminated last line
/// is neither.
pub fn parse_complete_json_lines(text: &str) -> (Vec<Value>, Vec<(usize, String)>) {
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    let mut values = Vec::new();
    let mut malformed = Vec::new();
    for (index, line) in complete.split('\n').enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(value) => values.push(value),
            Err(_) => malformed.push((index + 1, line.to_owned())),
        }
    }
    (values, malformed)
}

/// Polls `probe` until it returns something or `timeout` passes.
pub fn wait_until<T>(
    _what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = probe() {
            return Some(found);
        }
        if Instant::now() > deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// A minimal HTTP/1.0 GET: enough for the agent's listener and Prometheus.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Field access by dotted path: `get(&e, "process.pid")`.
pub fn get<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(value, |v, key| &v[key])
}

pub fn pid_of(event: &Value) -> u64 {
    get(event, "process.pid").as_u64().unwrap_or(0)
}

pub fn kind_of(event: &Value) -> &str {
    event["kind"].as_str().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::parse_complete_json_lines;

    #[test]
    fn a_torn_line_is_malformed_and_a_half_written_last_line_waits() {
        let (values, malformed) =
            parse_complete_json_lines("{\"a\":1}\n{\"b\":\n{\"c\":3}\n{\"d\":");
        assert_eq!(values.len(), 2);
        assert_eq!(malformed, vec![(2, "{\"b\":".to_owned())]);
        let (values, malformed) = parse_complete_json_lines("{\"a\":1}");
        assert!(values.is_empty() && malformed.is_empty());
    }
}
