//! AI workload awareness end to end: a real ONNX inference server, a real
//! Jupyter kernel and a real container are discovered, their events carry
//! their workload, the inventory lists what they touched, and ordinary
//! processes stay out of it.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use aiwatch_tests::{
    ai::{alerts_of, child_exec, discovered, events_of, OnnxServer},
    aiwatch_bin, event_timeout, get,
    images::run_ok,
    kind_of, pid_of, venv_python, wait_until, Agent, AgentOptions, TempDir,
};
use serde_json::Value;

/// The inventory's entry for workload `id`, once it satisfies `complete`.
fn inventory_entry(inventory: &Value, id: &str) -> Option<Value> {
    inventory["workloads"]
        .as_array()?
        .iter()
        .find(|w| w["id"] == id)
        .cloned()
}

fn find<'a>(list: &'a Value, key: &str, value: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|item| item[key] == value)
}

/// What the inventory must say about the server: its process, both model
/// files with the bytes read, the token it read, its listening socket and
/// why it is an inference workload. Returns the first thing missing.
fn inventory_gap(entry: &Value, server: &OnnxServer) -> Option<String> {
    let has_pid = entry["processes"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["pid"].as_u64() == Some(server.pid)));
    if !has_pid {
        return Some(format!("process {} not listed", server.pid));
    }
    for file in ["tiny.onnx", "tiny.safetensors"] {
        let path = server.model_path(file);
        let Some(model) = find(&entry["models"], "path", &path) else {
            return Some(format!("model {path} not listed"));
        };
        if model["class"] != "model" || model["bytes_read"].as_u64().unwrap_or(0) == 0 {
            return Some(format!("model {path} without bytes read: {model}"));
        }
    }
    let token = server.token_path();
    match find(&entry["secrets"], "path", &token) {
        Some(secret) if secret["class"] == "secret" && secret["opens"].as_u64() >= Some(1) => {}
        _ => return Some(format!("secret {token} not listed")),
    }
    let listening = entry["listening"].as_array().is_some_and(|ls| {
        ls.iter()
            .any(|l| l["port"].as_u64() == Some(server.port as u64) && l["ip"] == "127.0.0.1")
    });
    if !listening {
        return Some(format!("listening port {} not listed", server.port));
    }
    let signals = entry["signals"].as_array().cloned().unwrap_or_default();
    let has_signal = |source: &str, key: &str| {
        signals
            .iter()
            .any(|s| s["source"] == source && (key.is_empty() || s["key"] == key))
    };
    for (source, key) in [
        ("library", "onnxruntime"),
        ("model_read", ""),
        ("listen", ""),
    ] {
        if !has_signal(source, key) {
            return Some(format!("no {source} {key} signal in {signals:?}"));
        }
    }
    let reasons = entry["reasons"].to_string();
    for phrase in ["maps library onnxruntime", "read model", "listens on"] {
        if !reasons.contains(phrase) {
            return Some(format!("no reason {phrase:?} in {reasons}"));
        }
    }
    None
}

/// The anomaly learning window of the benign server test, in event time.
const LEARNING_SECS: u64 = 8;

#[test]
fn onnx_server_is_an_inference_workload_with_its_inventory() {
    // The default configuration, with a learning window short enough that
    // the server's profile enforces before the test ends.
    let agent = Agent::start_with(AgentOptions {
        config: format!(
            "anomaly: {{learning_window_secs: {LEARNING_SECS}, learning_min_events: 1}}\n"
        ),
        ..Default::default()
    });
    let server = OnnxServer::start("inventory");
    let started = std::time::Instant::now();
    let workload = discovered(&agent, &server);
    assert_eq!(workload["kind"], "inference", "{workload}");
    assert_eq!(workload["name"], server.name.as_str(), "{workload}");
    let id = workload["id"].as_str().expect("workload id").to_owned();
    assert!(id.starts_with("wl-") && id.len() == 19, "{id}");
    for x in ["1,2,3", "4,5,6", "0.5"] {
        let reply = server.get(&format!("/predict?x={x}"));
        assert!(reply["y"].is_array(), "{reply}");
    }

    // The events that made it a workload carry it, with the asset classes.
    let onnx = server.model_path("tiny.onnx");
    let model_read = agent.wait_event("the server reading tiny.onnx", |e| {
        kind_of(e) == "open"
            && pid_of(e) == server.pid
            && get(e, "file.path") == onnx.as_str()
            && get(e, "file.access") == "read"
    });
    assert_eq!(get(&model_read, "file.class"), "model");
    assert_eq!(get(&model_read, "workload"), &workload);
    assert!(get(&model_read, "file.size").as_u64().unwrap_or(0) > 0);
    let token = server.token_path();
    let secret = agent.wait_event("the server reading its HF token", |e| {
        kind_of(e) == "open" && pid_of(e) == server.pid && get(e, "file.path") == token.as_str()
    });
    assert_eq!(get(&secret, "file.class"), "secret");
    assert_eq!(get(&secret, "workload"), &workload);
    let listen = agent.wait_event("the server's listen", |e| {
        kind_of(e) == "listen" && pid_of(e) == server.pid
    });
    assert_eq!(
        get(&listen, "net.src.port").as_u64(),
        Some(server.port as u64)
    );
    assert_eq!(get(&listen, "workload"), &workload);

    // /inventory on the HTTP listener.
    let entry = wait_until("the inventory", Duration::from_secs(20), || {
        let (status, body) = agent.http_get("/inventory");
        assert_eq!(status, 200);
        let inventory: Value = serde_json::from_str(&body).expect("inventory JSON");
        inventory_entry(&inventory, &id).filter(|e| inventory_gap(e, &server).is_none())
    })
    .unwrap_or_else(|| {
        let (_, body) = agent.http_get("/inventory");
        let inventory: Value = serde_json::from_str(&body).unwrap_or_default();
        let gap = inventory_entry(&inventory, &id)
            .map(|e| inventory_gap(&e, &server).unwrap_or_default())
            .unwrap_or_else(|| "no entry".into());
        panic!("/inventory of {id} is incomplete: {gap}\n{body}")
    });
    assert_eq!(entry["kind"], "inference");
    assert!(entry["score"].as_u64().unwrap_or(0) >= 10, "{entry}");
    // The per-file view names the server as a reader of its model.
    let (_, body) = agent.http_get("/inventory");
    let inventory: Value = serde_json::from_str(&body).expect("inventory JSON");
    let file = find(&inventory["models"], "path", &onnx).expect("tiny.onnx in the file view");
    assert!(find(&file["readers"], "workload", &id).is_some(), "{file}");
    assert!(file["size"].as_u64().unwrap_or(0) > 0, "{file}");

    // `aiwatch inventory --listen ADDR` prints the same document.
    let output = Command::new(aiwatch_bin())
        .args(["inventory", "--listen", &agent.listen])
        .output()
        .expect("run aiwatch inventory");
    assert!(
        output.status.success(),
        "aiwatch inventory failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: Value = serde_json::from_slice(&output.stdout).expect("inventory JSON on stdout");
    let entry = inventory_entry(&printed, &id).expect("the workload in `aiwatch inventory`");
    assert_eq!(inventory_gap(&entry, &server), None, "{entry}");

    // Serving and predicting is what an inference server does: neither the
    // default rule pack nor its learned profile raises anything about it.
    std::thread::sleep(Duration::from_secs(LEARNING_SECS + 1).saturating_sub(started.elapsed()));
    server.get("/health");
    agent.wait_for_log(
        &format!(
            "anomaly profile inference/{} finished learning",
            server.name
        ),
        Duration::from_secs(60),
    );
    for x in ["7,8,9", "1"] {
        server.get(&format!("/predict?x={x}"));
    }
    // onnxruntime looks up its telemetry host through the resolver about ten
    // seconds after it starts: after learning, here.
    let lookup = wait_until("the telemetry lookup", Duration::from_secs(20), || {
        agent.events().into_iter().find(|e| {
            pid_of(e) == server.pid
                && (kind_of(e) == "dns" || get(e, "net.dst.port").as_u64() == Some(53))
        })
    });
    if lookup.is_none() {
        println!("note: onnxruntime made no telemetry lookup in this run");
    }
    agent.wait_event("the server's last request", |e| {
        kind_of(e) == "tcp_summary" && pid_of(e) == server.pid
    });
    agent.sentinel();
    let rules: Vec<String> = alerts_of(&agent, &[server.pid])
        .iter()
        .filter_map(|a| a["rule"].as_str().map(str::to_owned))
        .collect();
    assert!(
        rules.is_empty(),
        "the benign server raised {rules:?}:\n{:#?}",
        alerts_of(&agent, &[server.pid])
    );
}

#[test]
fn children_of_the_server_inherit_its_workload() {
    let agent = Agent::start();
    let server = OnnxServer::start("spawn");
    let workload = discovered(&agent, &server);
    let reply = server.get("/spawn");
    assert_eq!(reply["exit"], 0, "{reply}");
    let exec = child_exec(&agent, server.pid, "sh");
    assert_eq!(get(&exec, "workload"), &workload, "{exec}");
    assert_eq!(get(&exec, "workload.kind"), "inference");
    assert_eq!(get(&exec, "parent.pid").as_u64(), Some(server.pid));
    let child = pid_of(&exec);
    let exit = agent.wait_event("the shell's exit", |e| {
        kind_of(e) == "exit" && pid_of(e) == child
    });
    assert_eq!(get(&exit, "workload.id"), get(&workload, "id"));
}

#[test]
fn a_plain_python_one_liner_is_not_an_ai_workload() {
    let agent = Agent::start();
    let output = Command::new("/usr/bin/python3")
        .args(["-c", "print(1)"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start python3");
    let pid = output.id() as u64;
    let output = output.wait_with_output().expect("wait");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "1");
    agent.wait_event("the one-liner's exit", |e| {
        kind_of(e) == "exit" && pid_of(e) == pid
    });
    let events = events_of(&agent, pid);
    assert!(events.iter().any(|e| kind_of(e) == "exec"), "{events:#?}");
    let in_workload: Vec<&Value> = events
        .iter()
        .filter(|e| !get(e, "workload").is_null())
        .collect();
    assert!(in_workload.is_empty(), "{in_workload:#?}");
}

#[test]
fn a_jupyter_kernel_is_a_notebook() {
    let agent = Agent::start();
    let dir = TempDir::new("notebook");
    let mut launcher = Stopper(
        Command::new(venv_python())
            .arg(aiwatch_tests::repo_root().join("tests/workloads/notebook_kernel.py"))
            .arg(dir.path())
            .arg("--hold")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start notebook_kernel.py"),
    );
    let mut kernel_pid = 0u64;
    let mut result = String::new();
    let stdout = launcher.0.stdout.take().expect("stdout");
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if let Some(value) = line.strip_prefix("RESULT ") {
            result = value.to_owned();
        }
        if let Some(pid) = line.strip_prefix("KERNEL ") {
            kernel_pid = pid.parse().expect("kernel pid");
            break;
        }
    }
    assert_eq!(result, "45", "the cell ran in the kernel");
    assert!(kernel_pid > 0, "notebook_kernel.py printed no kernel pid");
    let exec = agent.wait_event("the kernel's exec", |e| {
        kind_of(e) == "exec" && pid_of(e) == kernel_pid
    });
    let argv = get(&exec, "process.argv").to_string();
    assert!(argv.contains("ipykernel_launcher"), "{argv}");
    assert_eq!(get(&exec, "workload.kind"), "notebook", "{exec}");
    assert_eq!(get(&exec, "workload.name"), "ipykernel_launcher");
    // Everything the kernel does afterwards is the notebook's too.
    let exec_ns = get(&exec, "ktime_ns").as_u64().unwrap_or(0);
    let later = agent.wait_event("a later event of the kernel", |e| {
        pid_of(e) == kernel_pid && get(e, "ktime_ns").as_u64().unwrap_or(0) > exec_ns
    });
    assert_eq!(get(&later, "workload"), get(&exec, "workload"));
    // The launcher that started it is not a notebook.
    let launcher_pid = launcher.0.id() as u64;
    let status = launcher.stop();
    assert!(status.success(), "notebook_kernel.py: {status:?}");
    let launcher_exec = agent.wait_event("the launcher's exec", |e| {
        kind_of(e) == "exec" && pid_of(e) == launcher_pid
    });
    assert!(
        get(&launcher_exec, "workload").is_null(),
        "{launcher_exec:#}"
    );
    let launcher_events = events_of(&agent, launcher_pid);
    assert!(
        launcher_events.iter().all(|e| get(e, "workload").is_null()),
        "{launcher_events:#?}"
    );
}

#[test]
fn opens_carry_their_asset_class() {
    let agent = Agent::start();
    let tmp = TempDir::new("classes");
    let dir = std::fs::canonicalize(tmp.path()).expect("canonical");
    let script = r#"
import os, pickle, sys
root = sys.argv[1]
os.makedirs(os.path.join(root, "data"))
os.makedirs(os.path.join(root, "home/.cache/huggingface"))
files = {
    "weights.pt": b"torch", "clf.pkl": pickle.dumps([1, 2]),
    "data/train.npy": b"\x93NUMPY", "tiny.onnx": b"onnx",
    "home/.cache/huggingface/token": b"hf_x",
}
for name, content in files.items():
    with open(os.path.join(root, name), "wb") as f:
        f.write(content)
for name in files:
    with open(os.path.join(root, name), "rb") as f:
        f.read()
"#;
    let child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .arg(&dir)
        .spawn()
        .expect("start python3");
    let pid = child.id() as u64;
    let status = child.wait_with_output().expect("wait").status;
    assert!(status.success());
    for (name, class) in [
        ("weights.pt", "pickle-model"),
        ("clf.pkl", "pickle-model"),
        ("data/train.npy", "dataset"),
        ("tiny.onnx", "model"),
        ("home/.cache/huggingface/token", "secret"),
    ] {
        let path = dir.join(name).display().to_string();
        let open = agent.wait_event(&format!("the read of {name}"), |e| {
            kind_of(e) == "open"
                && pid_of(e) == pid
                && get(e, "file.path") == path.as_str()
                && get(e, "file.access") == "read"
        });
        assert_eq!(get(&open, "file.class"), class, "{open}");
    }
}

#[test]
fn a_podman_container_is_attributed_from_its_cgroup() {
    let agent = Agent::start();
    let tmp = TempDir::new("container");
    let image = busybox_image(&tmp);
    let _image = Cleanup(vec![
        "podman".into(),
        "rmi".into(),
        "-f".into(),
        image.clone(),
    ]);
    let id = run_ok(Command::new("podman").args([
        "run",
        "-d",
        "--runtime",
        "/usr/sbin/runc",
        "--cgroup-manager=cgroupfs",
        &image,
        "/bin/busybox",
        "sh",
        "-c",
        "/bin/busybox sleep 3",
    ]));
    let id = id.trim().to_owned();
    let _container = Cleanup(vec!["podman".into(), "rm".into(), "-f".into(), id.clone()]);
    assert_eq!(id.len(), 64, "podman run -d printed {id:?}");
    // runc's own `runc init` runs in the container's cgroup first; then
    // it executes the container's command.
    let exec = agent.wait_event("busybox's exec inside the container", |e| {
        kind_of(e) == "exec"
            && get(e, "container.id") == id.as_str()
            && get(e, "process.exe")
                .as_str()
                .is_some_and(|exe| exe.ends_with("busybox"))
    });
    assert_eq!(get(&exec, "container.runtime"), "podman", "{exec}");
    let cgroup = get(&exec, "container.cgroup").as_str().unwrap_or("");
    assert!(cgroup.contains(&format!("libpod-{id}")), "{cgroup}");
    assert_eq!(exec["process"]["argv"][0], "/bin/busybox", "{exec}");
    run_ok(Command::new("podman").args(["wait", &id]));
    // Every process of the container that exited names a real executable,
    // or none (docs/events.md): never a folder such as `/`.
    let busybox_exit = agent.wait_event("busybox's exit", |e| {
        kind_of(e) == "exit" && pid_of(e) == pid_of(&exec)
    });
    assert_eq!(get(&busybox_exit, "process.exe"), get(&exec, "process.exe"));
    let bad: Vec<Value> = agent
        .events()
        .into_iter()
        .filter(|e| get(e, "container.id") == id.as_str())
        .filter(|e| {
            get(e, "process.exe")
                .as_str()
                .is_some_and(|exe| exe.ends_with('/'))
        })
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
}

/// A declared container workload's cgroup is tracked as a whole
/// (`TRACKED_CGROUPS`): a process entering the container with `podman exec`
/// descends from no tracked process, yet its very first file operations,
/// on a path nobody else would be reported for, arrive.
#[test]
fn a_declared_container_is_tracked_as_a_whole_cgroup() {
    let busybox = std::path::Path::new("/bin/busybox");
    assert!(
        busybox.exists(),
        "no /bin/busybox (Debian busybox-static): run `cargo xtask setup --tests`"
    );
    // The container's cgroup parent is this test's own, so the declaration
    // matches no other test's containers.
    let parent = format!("/aiwatch-test-{}", std::process::id());
    let agent = Agent::start_with(AgentOptions {
        config: format!(
            "workloads:\n  declared:\n    - name: boxed-model\n      kind: inference\n      match: {{cgroup: \"{parent}/**\"}}\n"
        ),
        ..Default::default()
    });
    let tmp = TempDir::new("container-cgroup");
    let image = busybox_image(&tmp);
    let _image = Cleanup(vec![
        "podman".into(),
        "rmi".into(),
        "-f".into(),
        image.clone(),
    ]);
    let id = run_ok(Command::new("podman").args([
        "run",
        "-d",
        "--runtime",
        "/usr/sbin/runc",
        "--cgroup-manager=cgroupfs",
        "--cgroup-parent",
        &parent,
        &image,
        "/bin/busybox",
        "sleep",
        "60",
    ]));
    let id = id.trim().to_owned();
    // Dropped in reverse: the container goes before its cgroup parent,
    // which cannot be removed while the container's cgroup is in it.
    let _cgroups = CgroupParentCleanup(parent.clone());
    let _container = Cleanup(vec!["podman".into(), "rm".into(), "-f".into(), id.clone()]);
    agent.wait_event("the container's sleep, in the declared workload", |e| {
        kind_of(e) == "exec"
            && get(e, "container.id") == id.as_str()
            && get(e, "workload.name") == "boxed-model"
    });
    // A new process in the container writes a file under /tmp: no path of
    // interest, and no tracked parent.
    let marker = format!("aiwatch-cgroup-{}.txt", std::process::id());
    run_ok(Command::new("podman").args([
        "exec",
        &id,
        "/bin/busybox",
        "sh",
        "-c",
        &format!("echo x > /tmp/{marker}"),
    ]));
    let is_the_write = |e: &Value| {
        kind_of(e) == "open"
            && get(e, "container.id") == id.as_str()
            && get(e, "file.path")
                .as_str()
                .is_some_and(|path| path.ends_with(&marker))
    };
    let Some(open) = wait_until("the exec'd shell's write", event_timeout(), || {
        agent.events().into_iter().find(is_the_write)
    }) else {
        // What the agent did see of the container and of the file tells a
        // lost kernel record from a wrong attribution.
        let seen: Vec<String> = agent
            .events()
            .into_iter()
            .filter(|e| get(e, "container.id") == id.as_str() || e.to_string().contains(&marker))
            .map(|e| e.to_string())
            .collect();
        panic!(
            "no event the exec'd shell's write, reported by cgroup; the container's events and the file's:\n{}\nlog:\n{}",
            seen.join("\n"),
            agent.log()
        );
    };
    assert_eq!(get(&open, "file.access"), "write", "{open}");
    assert_eq!(get(&open, "workload.name"), "boxed-model", "{open}");
}

/// A busybox image of this test's own; returns its name.
fn busybox_image(tmp: &TempDir) -> String {
    let image = format!(
        "localhost/aiwatch-test-busybox:{}-{}",
        std::process::id(),
        tmp.path().file_name().unwrap().to_string_lossy()
    );
    aiwatch_tests::images::import_busybox_into_podman(tmp.path(), &image, None);
    image
}

/// Removes the folders a `--cgroup-parent` left in every cgroup hierarchy.
struct CgroupParentCleanup(String);

impl Drop for CgroupParentCleanup {
    fn drop(&mut self) {
        let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
            return;
        };
        for hierarchy in hierarchies.flatten() {
            let dir = hierarchy.path().join(self.0.trim_start_matches('/'));
            // Child folders first (podman removes its own, usually).
            if let Ok(children) = std::fs::read_dir(&dir) {
                for child in children.flatten() {
                    if child.path().is_dir() {
                        let _ = std::fs::remove_dir(child.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

/// Runs a clean-up command on drop, ignoring failures.
struct Cleanup(Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some((program, args)) = self.0.split_first() {
            let _ = Command::new(program)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A child process stopped with SIGTERM (then SIGKILL) when the test ends,
/// passed or not: it must not outlive the test holding its output pipes.
struct Stopper(std::process::Child);

impl Stopper {
    fn stop(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        for _ in 0..200 {
            if let Ok(Some(status)) = self.0.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        self.0.wait().expect("wait")
    }
}

impl Drop for Stopper {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.stop();
        }
    }
}
