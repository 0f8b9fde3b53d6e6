//! Accelerator deny in the kernel: the `cgroup/dev` program on the cgroup
//! v2 root refuses opens of GPU devices (major 195 here) to processes
//! outside the accelerator allowlist with EPERM.
//!
//! There is no GPU driver here: the node is made with mknod, and an open
//! that gets past the cgroup check fails with ENXIO (no driver). EPERM and
//! ENXIO tell the two apart. Each opener is a Python process of the test
//! that opens when told and prints the errno's name: an outsider (the
//! system Python, in no workload), a copy of Python listed in
//! `allow_executables` (its own inode), and a process in a cgroup of the
//! test's own that a declared workload names.

use std::{
    ffi::CString,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    sync::Mutex,
    time::Duration,
};

use aiwatch_tests::{get, wait_until, Agent, AgentOptions, TempDir};
use serde_json::Value;

const PYTHON: &str = "/usr/bin/python3";
const NVIDIA_MAJOR: u32 = 195;

/// Opens the paths it reads, one per line, and answers `ok` or the errno.
const OPENER: &str = r#"
import errno, os, sys
print("ready", flush=True)
for line in sys.stdin:
    try:
        os.close(os.open(line.strip(), os.O_RDWR))
        print("ok", flush=True)
    except OSError as e:
        print(errno.errorcode.get(e.errno, str(e.errno)), flush=True)
"#;

/// A character device node under `/dev` (whose `nvidia` prefix the kernel
/// reports opens of), removed on drop.
struct Node(PathBuf);

impl Node {
    fn new(minor: u32) -> Node {
        let path = PathBuf::from(format!(
            "/dev/nvidia-aiwatch-accel-{}-{minor}",
            std::process::id()
        ));
        let c_path = CString::new(path.as_os_str().as_encoded_bytes()).expect("a C path");
        let _ = std::fs::remove_file(&path);
        // SAFETY: a valid C string; mknod copies it.
        let rc = unsafe {
            libc::mknod(
                c_path.as_ptr(),
                libc::S_IFCHR | 0o666,
                libc::makedev(NVIDIA_MAJOR, minor),
            )
        };
        assert_eq!(
            rc,
            0,
            "mknod {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        Node(path)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The cgroup2 mount (`/sys/fs/cgroup/unified` on hybrid hosts).
fn cgroup2_root() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/mounts").expect("read /proc/mounts");
    mounts
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.get(2) == Some(&"cgroup2"))
        .map(|fields| PathBuf::from(fields[1]))
        .expect("a cgroup2 mount")
}

/// A cgroup of the test, killed and removed on drop.
struct Cgroup {
    path: PathBuf,
    name: String,
}

impl Cgroup {
    fn create(label: &str) -> Cgroup {
        let name = format!("aiwatch-accel-{label}-{}", std::process::id());
        let path = cgroup2_root().join(&name);
        let _ = std::fs::remove_dir(&path);
        std::fs::create_dir(&path)
            .unwrap_or_else(|e| panic!("create cgroup {}: {e}", path.display()));
        Cgroup {
            path,
            name: format!("/{name}"),
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.path.join("cgroup.kill"), "1");
        let _ = wait_until("cgroup empty", Duration::from_secs(10), || {
            std::fs::read_to_string(self.path.join("cgroup.procs"))
                .ok()
                .filter(|procs| procs.trim().is_empty())
        });
        let _ = std::fs::remove_dir(&self.path);
    }
}

struct Opener {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Opener {
    /// Runs `python` on the opener script, moved into `cgroup` first when
    /// one is given.
    fn start(python: &Path, cgroup: Option<&Cgroup>, dir: &Path) -> Opener {
        let script = dir.join("opener.py");
        std::fs::write(&script, OPENER).expect("write the opener");
        let enter = cgroup.map_or(String::new(), |c| {
            format!("echo $$ > {}/cgroup.procs && ", c.path.display())
        });
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "{enter}exec {} {}",
                python.display(),
                script.display()
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the opener");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("the opener's first line");
        assert_eq!(line.trim(), "ready");
        Opener {
            child,
            stdin,
            stdout,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn open(&mut self, node: &Node) -> String {
        writeln!(self.stdin, "{}", node.0.display()).expect("tell the opener");
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("the opener's answer");
        line.trim().to_string()
    }
}

impl Drop for Opener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Setup {
    agent: Agent,
    cgroup: Cgroup,
    workload: String,
    allowed_python: PathBuf,
    dir: TempDir,
}

/// One agent with accelerator deny at a time: its program refuses every
/// outsider on the host, the other test's included.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn start(mode: &str) -> Setup {
    let dir = TempDir::new("accel");
    let cgroup = Cgroup::create(mode);
    let workload = format!("accel-test-{}", std::process::id());
    // A copy has its own inode: only it is allowed, not the system Python.
    let allowed_python = dir.path().join("python3-allowed");
    std::fs::copy(PYTHON, &allowed_python).expect("copy python");
    let agent = Agent::start_with(AgentOptions {
        config: format!(
            "anomaly: {{enabled: false}}\ndefault_policies: false\nenforcement:\n  mode: {mode}\n  accelerators:\n    deny: true\n    allow_executables: [{}]\nworkloads:\n  declared:\n    - name: {workload}\n      kind: training\n      match:\n        cgroup: \"{}\"\n",
            allowed_python.display(),
            cgroup.name,
        ),
        ..Default::default()
    });
    agent.wait_for_log(
        &format!("kernel accelerator deny: {mode}, 1 executable(s) allowed"),
        aiwatch_tests::event_timeout(),
    );
    Setup {
        agent,
        cgroup,
        workload,
        allowed_python,
        dir,
    }
}

fn alert_for(agent: &Agent, pid: u32) -> Value {
    agent.wait_alert(&format!("accelerator alert for pid {pid}"), |a| {
        a["rule"] == "enforcement.accelerator-denied"
            && get(a, "event.process.pid").as_u64() == Some(u64::from(pid))
    })
}

#[test]
fn accelerator_deny_refuses_outsiders_and_lets_the_allowlist_through() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let setup = start("enforce");
    let node = Node::new(240);
    let (_, body) = setup.agent.http_get("/readyz");
    let ready: Value = serde_json::from_str(&body).expect("/readyz is JSON");
    assert_eq!(ready["enforcement_hooks"]["cgroup_device"], true, "{body}");

    let mut outsider = Opener::start(Path::new(PYTHON), None, setup.dir.path());
    assert_eq!(outsider.open(&node), "EPERM", "outside the allowlist");
    let mut by_exe = Opener::start(&setup.allowed_python, None, setup.dir.path());
    assert_eq!(by_exe.open(&node), "ENXIO", "an allowed executable");

    let mut declared = Opener::start(Path::new(PYTHON), Some(&setup.cgroup), setup.dir.path());
    let pid = u64::from(declared.pid());
    // The pipeline writes the tracking maps before it writes this event.
    setup.agent.wait_event("the declared opener's exec", |e| {
        e["kind"] == "exec"
            && get(e, "process.pid").as_u64() == Some(pid)
            && get(e, "workload.name") == setup.workload.as_str()
    });
    assert_eq!(declared.open(&node), "ENXIO", "a declared workload");

    let alert = alert_for(&setup.agent, outsider.pid());
    assert_eq!(alert["severity"], "high");
    assert_eq!(alert["action"], "deny");
    assert_eq!(alert["action_taken"], true);
    assert_eq!(alert["enforcement"]["outcome"], "denied");
    assert_eq!(alert["enforcement"]["hook"], "cgroup_device");
    assert_eq!(get(&alert, "event.kernel_action"), "denied");
    assert_eq!(
        get(&alert, "event.file.result").as_i64(),
        Some(-i64::from(libc::EPERM))
    );
    assert_eq!(get(&alert, "event.file.device.major").as_u64(), Some(195));
    // The allowed openers raised nothing. The outsider opens once more, last:
    // alerts are written in the kernel's order, so once its second alert is
    // there every earlier one is too.
    assert_eq!(outsider.open(&node), "EPERM");
    let outsider_pid = u64::from(outsider.pid());
    let outsider_alerts = wait_until(
        "the outsider's second alert",
        aiwatch_tests::event_timeout(),
        || {
            let count = setup
                .agent
                .alerts()
                .iter()
                .filter(|a| get(a, "event.process.pid").as_u64() == Some(outsider_pid))
                .count();
            (count >= 2).then_some(count)
        },
    );
    assert_eq!(outsider_alerts, Some(2));
    let allowed = [u64::from(by_exe.pid()), pid];
    let stray: Vec<Value> = setup
        .agent
        .alerts()
        .into_iter()
        .filter(|a| {
            get(a, "event.process.pid")
                .as_u64()
                .is_some_and(|p| allowed.contains(&p))
        })
        .collect();
    assert!(stray.is_empty(), "alerts for allowed openers: {stray:?}");
}

#[test]
fn accelerator_deny_in_audit_mode_reports_would_deny_and_opens() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let setup = start("audit");
    let node = Node::new(241);
    let mut outsider = Opener::start(Path::new(PYTHON), None, setup.dir.path());
    assert_eq!(outsider.open(&node), "ENXIO", "audit mode refuses nothing");
    let alert = alert_for(&setup.agent, outsider.pid());
    assert_eq!(alert["action_taken"], false);
    assert_eq!(alert["enforcement"]["outcome"], "would-deny");
    assert_eq!(alert["enforcement"]["hook"], "cgroup_device");
    assert_eq!(get(&alert, "event.kernel_action"), "would_deny");
}
