//! Real AI software for the workload and anomaly tests: the ONNX inference
//! server of `tests/workloads/onnx_server.py`, run by the test virtualenv's
//! Python.
//!
//! Tests run in parallel on one kernel, and every agent sees every test's
//! servers. A workload's name comes from its script, so each server runs
//! its script through a symlink with a name of its own
//! (`onnx_server_<label>_<test pid>.py`): its workload and anomaly profile
//! are then its test's alone.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{get, http_get, kind_of, pid_of, repo_root, venv_python, Agent, TempDir};

/// The Hugging Face token the server reads from its `$HOME`.
pub const HF_TOKEN: &str = "hf_aiwatchTestTokenNotARealOne";

/// A running `onnx_server.py`; stopped with SIGTERM on drop.
pub struct OnnxServer {
    child: Child,
    pub pid: u64,
    pub port: u16,
    /// The workload name the server should be discovered under.
    pub name: String,
    /// `<root>/models/tiny.onnx` and `tiny.safetensors` live here.
    pub root: PathBuf,
    /// `$HOME` of the server; holds `.cache/huggingface/token`.
    pub home: PathBuf,
    _dir: TempDir,
}

impl OnnxServer {
    /// Starts a server whose workload is named `onnx_server_<label>_<pid>`,
    /// and waits until it serves.
    pub fn start(label: &str) -> OnnxServer {
        let dir = TempDir::new(&format!("onnx-{label}"));
        let root = std::fs::canonicalize(dir.path()).expect("canonical temp dir");
        let home = root.join("home");
        let token = home.join(".cache/huggingface/token");
        std::fs::create_dir_all(token.parent().expect("parent")).expect("create HF cache");
        std::fs::write(&token, HF_TOKEN).expect("write token");
        let name = format!("onnx_server_{label}_{}", std::process::id());
        let script = root.join(format!("{name}.py"));
        std::os::unix::fs::symlink(repo_root().join("tests/workloads/onnx_server.py"), &script)
            .expect("link the server script");
        let mut child = Command::new(venv_python())
            .arg(&script)
            .arg(&root)
            .arg("0")
            .env("HOME", &home)
            .current_dir(&root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start onnx_server.py");
        let pid = child.id() as u64;
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("read the server's first line");
        let port = line
            .trim()
            .strip_prefix("READY ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("onnx_server.py did not get ready: {line:?}"));
        OnnxServer {
            child,
            pid,
            port,
            name,
            root,
            home,
            _dir: dir,
        }
    }

    /// GETs a path on the server; panics unless it answers 200.
    pub fn get(&self, path: &str) -> Value {
        let (status, body) = http_get(&format!("127.0.0.1:{}", self.port), path);
        assert_eq!(status, 200, "GET {path} on the server: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    pub fn model_path(&self, file: &str) -> String {
        self.root.join("models").join(file).display().to_string()
    }

    pub fn token_path(&self) -> String {
        self.home
            .join(".cache/huggingface/token")
            .display()
            .to_string()
    }

    /// Stops the server with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OnnxServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until the agent puts `server` in a workload; returns the workload.
pub fn discovered(agent: &Agent, server: &OnnxServer) -> Value {
    let event = agent.wait_event("an event of the server in its workload", |e| {
        pid_of(e) == server.pid && !get(e, "workload").is_null()
    });
    get(&event, "workload").clone()
}

/// A loopback TCP listener that accepts and drains connections in the
/// background, so a workload has somewhere new to connect to.
pub fn sink_listener() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut stream = stream;
            let _ = std::io::copy(&mut stream, &mut std::io::sink());
        }
    });
    port
}

/// The events of one pid, in order.
pub fn events_of(agent: &Agent, pid: u64) -> Vec<Value> {
    agent
        .events()
        .into_iter()
        .filter(|e| pid_of(e) == pid)
        .collect()
}

/// The alerts whose event belongs to one of `pids`.
pub fn alerts_of(agent: &Agent, pids: &[u64]) -> Vec<Value> {
    agent
        .alerts()
        .into_iter()
        .filter(|a| pids.contains(&get(a, "event.process.pid").as_u64().unwrap_or(0)))
        .collect()
}

/// The pid of the first exec of `exe_suffix` whose parent is `ppid`.
pub fn child_exec(agent: &Agent, ppid: u64, exe_suffix: &str) -> Value {
    agent.wait_event(&format!("exec of {exe_suffix} by {ppid}"), |e| {
        kind_of(e) == "exec"
            && get(e, "process.ppid").as_u64() == Some(ppid)
            && get(e, "process.exe")
                .as_str()
                .is_some_and(|exe| exe.ends_with(exe_suffix))
    })
}

/// True when `path` exists and is not empty.
pub fn non_empty(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() > 0)
}
