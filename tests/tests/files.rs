//! File events end to end: absolute paths for relative names, the kernel's
//! interest filter for untracked processes, and unlink, rename, chmod and
//! truncate.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use aiwatch_tests::{get, kind_of, pid_of, Agent, AgentOptions, TempDir};
use serde_json::Value;

const PYTHON: &str = "/usr/bin/python3";

/// Runs a python script in `dir`; returns its pid once it has exited.
fn python_in(dir: &Path, script: &str) -> u64 {
    let output = Command::new(PYTHON)
        .args(["-c", script])
        .current_dir("/")
        .env("WORKDIR", dir)
        .output()
        .expect("run python");
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("the script prints its pid")
}

fn canonical(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir).expect("canonical temp dir")
}

fn file_event(agent: &Agent, what: &str, pid: u64, kind: &str, path: &str) -> Value {
    agent.wait_event(what, |e| {
        kind_of(e) == kind && pid_of(e) == pid && get(e, "file.path") == path
    })
}

fn trace_all() -> Agent {
    Agent::start_with(AgentOptions {
        config: "trace_all_files: true\n".into(),
        ..AgentOptions::default()
    })
}

#[test]
fn relative_opens_come_out_absolute() {
    let agent = trace_all();
    let tmp = TempDir::new("files-relative");
    let dir = canonical(tmp.path());
    std::fs::create_dir(dir.join("sub")).unwrap();
    // chdir, then open relative names: one that exists (resolved from the
    // new fd), one that does not (resolved from the cwd and joined).
    let pid = python_in(
        &dir,
        "import os\n\
         os.chdir(os.environ['WORKDIR'])\n\
         open('sub/../notes-relative.txt', 'w').close()\n\
         try:\n    open('sub/./missing/../nope.txt')\nexcept FileNotFoundError:\n    pass\n\
         print(os.getpid())\n",
    );
    let created = dir.join("notes-relative.txt").display().to_string();
    let open = file_event(&agent, "relative open", pid, "open", &created);
    assert!(get(&open, "file.result").as_i64().unwrap() >= 0);
    assert_eq!(get(&open, "file.access"), "write");
    // O_CREAT: the mode is reported.
    assert_eq!(get(&open, "file.mode").as_u64(), Some(0o666));
    assert!(get(&open, "file.path_incomplete").is_null());

    let missing = dir.join("sub/nope.txt").display().to_string();
    let failed = file_event(&agent, "failed relative open", pid, "open", &missing);
    assert_eq!(
        get(&failed, "file.result").as_i64(),
        Some(-libc::ENOENT as i64)
    );
    assert_eq!(get(&failed, "file.access"), "read");
}

#[test]
fn untracked_processes_are_filtered_by_path_interest() {
    // The default configuration: nothing is tracked, so only paths that
    // match the interest sets are reported.
    let agent = Agent::start();
    let tmp = TempDir::new("files-filter");
    let dir = canonical(tmp.path());
    let pid = python_in(
        &dir,
        "import os\n\
         os.chdir(os.environ['WORKDIR'])\n\
         open('notes.txt', 'w').close()\n\
         open('weights.safetensors', 'w').close()\n\
         open('notes.txt').close()\n\
         print(os.getpid())\n",
    );
    let model = dir.join("weights.safetensors").display().to_string();
    let event = file_event(&agent, "open of a model file", pid, "open", &model);
    assert_eq!(get(&event, "file.class"), "model");
    assert_eq!(get(&event, "file.size").as_u64(), Some(0));
    // Had either notes.txt open been reported, it would be in the file
    // once the sentinel is.
    agent.sentinel();
    let notes = agent
        .events()
        .into_iter()
        .filter(|e| pid_of(e) == pid && kind_of(e) == "open")
        .filter(|e| {
            get(e, "file.path")
                .as_str()
                .unwrap_or("")
                .contains("notes.txt")
        })
        .count();
    assert_eq!(notes, 0, "opens of notes.txt were not filtered");
    // Python's own start-up opens (libraries, site-packages) are filtered
    // too: the counter exported on /metrics grows.
    let filtered = aiwatch_tests::wait_until("filtered opens", Duration::from_secs(15), || {
        let (_, body) = agent.http_get("/metrics");
        body.lines()
            .find(|l| l.starts_with("aiwatch_kernel_events_filtered_total{kind=\"open\"}"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .filter(|v| *v > 0.0)
    });
    assert!(
        filtered.is_some(),
        "no filtered opens counted; log:\n{}",
        agent.log()
    );
}

#[test]
fn unlink_rename_chmod_and_truncate() {
    let agent = trace_all();
    let tmp = TempDir::new("files-ops");
    let dir = canonical(tmp.path());
    let pid = python_in(
        &dir,
        "import os\n\
         d = os.environ['WORKDIR']\n\
         os.chdir(d)\n\
         open('a.txt', 'w').write('0123456789')\n\
         os.rename('a.txt', 'b.txt')\n\
         os.chmod('b.txt', 0o600)\n\
         os.truncate(os.path.join(d, 'b.txt'), 5)\n\
         os.unlink(os.path.join(d, 'b.txt'))\n\
         print(os.getpid())\n",
    );
    let a = dir.join("a.txt").display().to_string();
    let b = dir.join("b.txt").display().to_string();

    let rename = file_event(&agent, "rename", pid, "rename", &a);
    assert_eq!(get(&rename, "file.target"), b.as_str());
    assert_eq!(get(&rename, "file.result").as_i64(), Some(0));

    let chmod = file_event(&agent, "chmod", pid, "chmod", &b);
    assert_eq!(
        get(&chmod, "file.mode").as_u64().map(|m| m & 0o7777),
        Some(0o600)
    );
    assert_eq!(get(&chmod, "file.result").as_i64(), Some(0));

    let truncate = file_event(&agent, "truncate", pid, "truncate", &b);
    assert_eq!(get(&truncate, "file.length").as_i64(), Some(5));
    assert_eq!(get(&truncate, "file.result").as_i64(), Some(0));

    let unlink = file_event(&agent, "unlink", pid, "unlink", &b);
    assert_eq!(get(&unlink, "file.result").as_i64(), Some(0));
    assert!(get(&unlink, "file.access").is_null());
}

#[test]
fn a_path_deeper_than_the_kernel_walk_is_flagged_and_logged() {
    let agent = trace_all();
    let tmp = TempDir::new("files-deep");
    let dir = canonical(tmp.path());
    // 40 levels: more than the walk's 24 components and 8 mount crossings.
    let deep = (0..40).fold(dir.clone(), |path, _| path.join("d"));
    std::fs::create_dir_all(&deep).expect("create the deep directory");
    // Three opens a little over a second apart: the kernel logs each
    // diagnostic at most once a second, and another process on the host
    // may have used this second's message.
    let pid = python_in(
        &deep,
        "import os, time\n\
         for _ in range(3):\n    open(os.path.join(os.environ['WORKDIR'], 'deep.txt'), 'w').close()\n    time.sleep(1.1)\n\
         print(os.getpid())\n",
    );
    let open = agent.wait_event("open of the deep file", |e| {
        kind_of(e) == "open"
            && pid_of(e) == pid
            && get(e, "file.path")
                .as_str()
                .is_some_and(|p| p.ends_with("/d/deep.txt"))
    });
    assert_eq!(
        get(&open, "file.path_incomplete"),
        true,
        "a walk cut at its limit must say the path is incomplete: {open}"
    );
    let line = agent.wait_for_log(
        &format!("kernel: the path walk for pid {pid} stopped at its limit"),
        Duration::from_secs(20),
    );
    assert!(line.contains("components"), "{line}");
}
