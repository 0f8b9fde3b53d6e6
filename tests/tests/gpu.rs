//! GPU and accelerator devices end to end: device opens with device info
//! and the `gpu-device` class, and the periodic per-process ioctl counts.
//!
//! There are no real accelerators here: the tests make character device
//! nodes with mknod. Opening a node whose driver is absent fails with ENXIO,
//! and the attempt must still be reported.

use std::{
    ffi::CString,
    path::{Path, PathBuf},
    process::Command,
};

use aiwatch_tests::{get, kind_of, pid_of, Agent, AgentOptions, TempDir};
use serde_json::Value;

const PYTHON: &str = "/usr/bin/python3";

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
        assert_eq!(
            rc,
            0,
            "mknod {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        Node(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn python(script: &str, args: &[&Path]) -> u64 {
    let output = Command::new(PYTHON)
        .arg("-c")
        .arg(script)
        .args(args)
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

fn open_of(agent: &Agent, pid: u64, path: &Path) -> Value {
    let path = path.display().to_string();
    agent.wait_event(&format!("open of {path}"), |e| {
        kind_of(e) == "open" && pid_of(e) == pid && get(e, "file.path") == path.as_str()
    })
}

/// A failed open of a device node names the device the kernel checked,
/// not what the agent would find at that path: the node exists only in the
/// opener's private mount namespace (a tmpfs over its `/dev`), where the
/// agent's namespace has nothing, and the agent never stats paths.
#[test]
fn a_device_node_of_a_private_mount_namespace_is_named_by_the_kernel() {
    let agent = Agent::start();
    let node = format!("/dev/nvidia-aiwatch-private-{}", std::process::id());
    assert!(!Path::new(&node).exists(), "{node} is the test's own");
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs aiwatch-test /dev && mknod -m 666 {node} c 195 251 && exec {PYTHON} -c \"
import os, sys
try:
    os.close(os.open(sys.argv[1], os.O_RDWR))
except OSError as e:
    print(e.errno, file=sys.stderr)
print(os.getpid())
\" {node}"
        ))
        .output()
        .expect("run unshare");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        libc::ENXIO.to_string(),
        "no driver behind 195:251"
    );
    let pid: u64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("the script prints its pid");
    let open = open_of(&agent, pid, Path::new(&node));
    assert_eq!(
        get(&open, "file.result").as_i64(),
        Some(-i64::from(libc::ENXIO))
    );
    assert_eq!(get(&open, "file.device.kind"), "char", "{open}");
    assert_eq!(
        get(&open, "file.device.major").as_u64(),
        Some(195),
        "{open}"
    );
    assert_eq!(
        get(&open, "file.device.minor").as_u64(),
        Some(251),
        "{open}"
    );
    assert_eq!(get(&open, "file.device.accelerator"), "nvidia", "{open}");
    assert_eq!(get(&open, "file.class"), "gpu-device", "{open}");
}

#[test]
fn gpu_device_opens_are_reported_with_device_info() {
    // Default configuration: these paths pass the kernel's prefix filter.
    let agent = Agent::start();
    let me = std::process::id();
    let nvidia = Node::new(
        PathBuf::from(format!("/dev/nvidia-aiwatch-test-{me}")),
        195,
        250,
    );
    let dri_dir = Path::new("/dev/dri");
    let made_dri = !dri_dir.exists();
    if made_dri {
        std::fs::create_dir(dri_dir).unwrap();
    }
    let render = Node::new(dri_dir.join(format!("renderD-aiwatch-{me}")), 226, 250);
    let pid = python(
        "import os, sys\n\
         for p in sys.argv[1:]:\n\
         \x20   try:\n\
         \x20       os.close(os.open(p, os.O_RDWR))\n\
         \x20   except OSError:\n\
         \x20       pass\n\
         print(os.getpid())\n",
        &[nvidia.path(), render.path()],
    );
    let first = open_of(&agent, pid, nvidia.path());
    let second = open_of(&agent, pid, render.path());
    drop(render);
    if made_dri {
        let _ = std::fs::remove_dir(dri_dir);
    }
    for (event, major, family) in [(&first, 195, "nvidia"), (&second, 226, "dri")] {
        assert_eq!(
            get(event, "file.result").as_i64(),
            Some(-libc::ENXIO as i64)
        );
        assert_eq!(get(event, "file.class"), "gpu-device");
        assert_eq!(get(event, "file.access"), "read_write");
        assert_eq!(get(event, "file.device.kind"), "char");
        assert_eq!(get(event, "file.device.major").as_u64(), Some(major));
        assert_eq!(get(event, "file.device.minor").as_u64(), Some(250));
        assert_eq!(get(event, "file.device.accelerator"), family);
    }
}

#[test]
fn ioctls_on_gpu_fds_are_counted_per_process() {
    // Major 1 (mem: /dev/null) counts as a GPU for this agent; the node is
    // in a private folder, so all files are traced to see its open.
    let agent = Agent::start_with(AgentOptions {
        config:
            "trace_all_files: true\nassets: {gpu_majors: [195, 1]}\ngpu_ioctl_interval_secs: 1\n"
                .into(),
        ..AgentOptions::default()
    });
    let tmp = TempDir::new("gpu-ioctl");
    let node = Node::new(tmp.path().join("fake-gpu"), 1, 3);
    let pid = python(
        "import fcntl, os, sys, termios, time\n\
         fd = os.open(sys.argv[1], os.O_RDWR)\n\
         for _ in range(1000):\n\
         \x20   try:\n\
         \x20       fcntl.ioctl(fd, termios.TIOCGWINSZ, b'\\0' * 8)\n\
         \x20   except OSError:\n\
         \x20       pass\n\
         # ioctls on other fds are not counted\n\
         for _ in range(50):\n\
         \x20   try:\n\
         \x20       fcntl.ioctl(1, termios.TIOCGWINSZ, b'\\0' * 8)\n\
         \x20   except OSError:\n\
         \x20       pass\n\
         time.sleep(1.5)\n\
         os.close(fd)\n\
         print(os.getpid())\n",
        &[node.path()],
    );
    let open = open_of(&agent, pid, node.path());
    assert_eq!(get(&open, "file.class"), "gpu-device");
    assert_eq!(get(&open, "file.device.major").as_u64(), Some(1));
    let first = agent.wait_event("gpu_ioctl report", |e| {
        kind_of(e) == "gpu_ioctl" && pid_of(e) == pid
    });
    assert_eq!(get(&first, "gpu.device.major").as_u64(), Some(1));
    assert_eq!(get(&first, "gpu.device.minor").as_u64(), Some(3));
    assert!(get(&first, "gpu.interval_s").as_f64().unwrap() > 0.0);
    // The count may be split across reports; together they are exact.
    let total = aiwatch_tests::wait_until(
        "all ioctls reported",
        std::time::Duration::from_secs(10),
        || {
            let total: u64 = agent
                .events()
                .iter()
                .filter(|e| kind_of(e) == "gpu_ioctl" && pid_of(e) == pid)
                .map(|e| get(e, "gpu.ioctls").as_u64().unwrap_or(0))
                .sum();
            (total >= 1000).then_some(total)
        },
    );
    // Close the reporting window: a marker process's ioctls are reported in
    // a round that starts after ours ended, and the sentinel then makes sure
    // everything queued before is written.
    let marker = python(
        "import fcntl, os, sys, termios, time\n\
         fd = os.open(sys.argv[1], os.O_RDWR)\n\
         try:\n\
         \x20   fcntl.ioctl(fd, termios.TIOCGWINSZ, b'\\0' * 8)\n\
         except OSError:\n\
         \x20   pass\n\
         time.sleep(1.5)\n\
         os.close(fd)\n\
         print(os.getpid())\n",
        &[node.path()],
    );
    agent.wait_event("the marker's gpu_ioctl report", |e| {
        kind_of(e) == "gpu_ioctl" && pid_of(e) == marker
    });
    agent.sentinel();
    let settled: u64 = agent
        .events()
        .iter()
        .filter(|e| kind_of(e) == "gpu_ioctl" && pid_of(e) == pid)
        .map(|e| get(e, "gpu.ioctls").as_u64().unwrap_or(0))
        .sum();
    assert_eq!(total, Some(1000), "log:\n{}", agent.log());
    assert_eq!(settled, 1000, "later reports added ioctls");
}
