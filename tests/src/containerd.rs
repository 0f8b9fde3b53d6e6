//! A containerd of a test's own: its own root, state and socket, its CRI
//! plugin configured for pods without CNI (host networking), and a busybox
//! image imported into the kubelet's namespace (`k8s.io`). Nothing of it is
//! shared with another test's daemon, or with a containerd the host runs.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::TempDir;

/// The kubelet's containerd namespace.
pub const K8S_NAMESPACE: &str = "k8s.io";

/// A running containerd, stopped (its containers first) on drop.
pub struct Containerd {
    child: Child,
    pub dir: TempDir,
    pub socket: PathBuf,
    /// Containers started with [`Containerd::run`], removed on drop.
    containers: Vec<String>,
}

impl Containerd {
    /// Starts a containerd whose CRI plugin uses `sandbox_image` as the pod
    /// sandbox ("pause") image.
    pub fn start(label: &str, sandbox_image: &str) -> Containerd {
        let dir = TempDir::new(label);
        let socket = dir.path().join("containerd.sock");
        let config = dir.path().join("config.toml");
        let root = dir.path().join("root");
        let state = dir.path().join("state");
        std::fs::write(
            &config,
            format!(
                r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox_image}"
  # The machine lacks CAP_SYS_RESOURCE: a pod sandbox's oom_score_adj of
  # -998 would fail runc.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{dir}/cni-bin"
    conf_dir = "{dir}/cni-conf"
"#,
                root = root.display(),
                state = state.display(),
                socket = socket.display(),
                dir = dir.path().display(),
            ),
        )
        .expect("write containerd's config");
        let log = std::fs::File::create(dir.path().join("containerd.log")).expect("log file");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect(
                "start containerd (Debian package containerd: run `cargo xtask setup --tests`)",
            );
        let containerd = Containerd {
            child,
            dir,
            socket,
            containers: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !containerd.ctr(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "containerd did not answer on {} within 30 s; its log:\n{}",
                containerd.socket.display(),
                containerd.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        containerd
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// `ctr --address <socket> -n k8s.io <args>`.
    pub fn ctr(&self, args: &[&str]) -> std::process::Output {
        Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["-n", K8S_NAMESPACE])
            .args(args)
            .output()
            .expect("run ctr")
    }

    fn ctr_ok(&self, args: &[&str]) -> String {
        let output = self.ctr(args);
        assert!(
            output.status.success(),
            "ctr {args:?} failed: {}\ncontainerd's log:\n{}",
            String::from_utf8_lossy(&output.stderr),
            self.log()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Builds a busybox image whose command sleeps (so it serves as a pod
    /// sandbox image too) with podman, and imports it into `k8s.io`.
    pub fn import_busybox(&self, image: &str) {
        crate::images::import_busybox_into_podman(
            self.dir.path(),
            image,
            Some(r#"CMD ["/bin/busybox", "sleep", "100000"]"#),
        );
        let archive = self.dir.path().join("image.tar");
        let saved = Command::new("podman")
            .args(["save", "-q", "--format", "oci-archive", "-o"])
            .arg(&archive)
            .arg(image)
            .output()
            .expect("podman save");
        let _ = Command::new("podman").args(["rmi", "-f", image]).output();
        assert!(
            saved.status.success(),
            "podman save: {}",
            String::from_utf8_lossy(&saved.stderr)
        );
        let base = image.rsplit_once(':').map_or(image, |(base, _)| base);
        let archive = archive.display().to_string();
        self.ctr_ok(&[
            "image",
            "import",
            "--base-name",
            base,
            "--digests",
            &archive,
        ]);
    }

    /// `ctr run -d` in `k8s.io` with host networking and the given labels.
    pub fn run(&mut self, image: &str, id: &str, labels: &[(&str, &str)], command: &[&str]) {
        let mut args = vec!["run", "-d", "--net-host"];
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        for label in &labels {
            args.extend(["--label", label.as_str()]);
        }
        args.extend([image, id]);
        args.extend(command);
        self.ctr_ok(&args);
        self.containers.push(id.to_string());
    }

    /// `ctr task exec` in a running container.
    pub fn exec(&self, id: &str, exec_id: &str, command: &[&str]) {
        let mut args = vec!["task", "exec", "--exec-id", exec_id, id];
        args.extend(command);
        self.ctr_ok(&args);
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for id in &self.containers {
            let _ = self.ctr(&["task", "kill", "-s", "SIGKILL", id]);
            let deadline = Instant::now() + Duration::from_secs(5);
            while !self.ctr(&["task", "delete", id]).status.success() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.ctr(&["container", "delete", id]);
        }
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        // Snapshots stay mounted until containerd unmounts them; a mount
        // left behind keeps the folder, never another test's.
        unmount_below(self.dir.path());
    }
}

/// Unmounts whatever is still mounted under `dir`, deepest first.
fn unmount_below(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let prefix = dir.display().to_string();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|line| line.split_whitespace().nth(1))
        .filter(|point| point.starts_with(&prefix))
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.len()));
    for point in points {
        let _ = Command::new("umount").arg("-l").arg(point).status();
    }
}

/// A container id as the kubelet's runtimes make them: 64 hex characters,
/// which is what the agent recognises in a cgroup path. Unique per test
/// process and tag.
pub fn container_id(tag: &str) -> String {
    use std::hash::{Hash, Hasher};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    (0..4u8)
        .map(|round| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            (tag, std::process::id(), nanos, round).hash(&mut hasher);
            format!("{:016x}", hasher.finish())
        })
        .collect()
}
