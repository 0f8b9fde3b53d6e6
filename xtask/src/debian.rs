//! Debian packages: which are installed (`dpkg-query`), installing the
//! missing ones with one `apt-get update` at most per xtask run, and stopping
//! the services a package's install script may have started.

use std::{collections::BTreeSet, path::Path, process::Command};

use crate::{
    privilege::as_root,
    workspace::{find_on_path, probe_output, run_step},
};

/// Packages the build needs: LLVM 22 for bpf-linker, and the libraries it
/// links; protoc, which the containerd and CRI client crates run at build
/// time to generate their gRPC code.
pub const BUILD_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "protobuf-compiler",
];

/// Packages the tests need: Prometheus (server and promtool), Redis and its
/// benchmark, a venv-capable Python, bpftool, ip netns, strace, and podman
/// with runc for real containers (busybox-static is their root file system),
/// systemd for `systemd-analyze verify` of the shipped unit, tmux to drive
/// the terminal commands as a person would, curl and wget, which the
/// attack suite's scenarios use, dnsmasq (the binary only: the `dnsmasq`
/// package would start a resolver on the host's port 53) as the DNS server
/// of the name tests' network namespaces, and openssl, whose command line
/// makes the TLS capture test's self-signed certificate (curl is its client
/// too). prometheus-alertmanager is the Alertmanager of the end-to-end
/// alert delivery test, iptables serves podman's bridge network and
/// published ports, the pod network of the image test, and containerd (with
/// `ctr` and its CRI plugin) serves the runtime identity tests, which start
/// their own daemon.
pub const TEST_PACKAGES: &[&str] = &[
    "prometheus",
    "prometheus-alertmanager",
    "redis-server",
    "redis-tools",
    "python3-venv",
    "bpftool",
    "iproute2",
    "strace",
    "podman",
    "runc",
    "iptables",
    "busybox-static",
    "systemd",
    "tmux",
    "curl",
    "wget",
    "dnsmasq-base",
    "openssl",
    "containerd",
];

/// Packages `cargo xtask image` needs: musl-gcc for the static build (ring
/// compiles C and assembly), podman and runc to build the image, and the CA
/// bundle the image carries for the webhook's TLS.
pub const IMAGE_PACKAGES: &[&str] = &["musl-tools", "podman", "runc", "ca-certificates"];

/// Makes apt wait for another apt's lock instead of failing at once: CI
/// fetches the guests' packages beside the tests (`cargo xtask vm
/// --prepare`).
const LOCK_WAIT: &[&str] = &["-o", "DPkg::Lock::Timeout=600"];

/// Packages `cargo xtask vm` needs: QEMU for the guests, debootstrap for
/// their Debian root, and cpio to pack it into an initramfs (without cpio
/// the archive is empty and the kernel finds no init). `dpkg-deb`, which
/// unpacks the kernel packages, is part of dpkg.
pub const VM_PACKAGES: &[&str] = &["qemu-system-x86", "debootstrap", "cpio"];

/// Services that a package's install script may start, with the pid file
/// their init script writes. Tests start their own instances on loopback, so
/// none may be left running after xtask installed them.
const SERVICES: &[Service] = &[
    Service {
        package: "redis-server",
        name: "redis-server",
        pid_file: "/run/redis/redis-server.pid",
    },
    Service {
        package: "prometheus",
        name: "prometheus",
        pid_file: "/run/prometheus/prometheus.pid",
    },
    Service {
        package: "prometheus-alertmanager",
        name: "prometheus-alertmanager",
        pid_file: "/run/prometheus/prometheus-alertmanager.pid",
    },
];

struct Service {
    package: &'static str,
    name: &'static str,
    pid_file: &'static str,
}

/// Installs Debian packages, updating the package lists once.
#[derive(Debug, Default)]
pub struct Apt {
    lists_updated: bool,
}

impl Apt {
    /// `apt-get update`, once per xtask run.
    pub fn update(&mut self) -> anyhow::Result<()> {
        if !self.lists_updated {
            let mut update = as_root("apt-get", "updating Debian's package lists")?;
            update.args(LOCK_WAIT).arg("update");
            run_step(&mut update, "apt-get update")?;
            self.lists_updated = true;
        }
        Ok(())
    }

    /// Installs `packages` and stops any service their install started.
    pub fn install(&mut self, packages: &[&str]) -> anyhow::Result<()> {
        self.update()?;
        let mut install = as_root("apt-get", "installing Debian packages")?;
        install
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(LOCK_WAIT)
            .args(["install", "-y", "--no-install-recommends"])
            .args(packages);
        run_step(
            &mut install,
            &format!("apt-get install {}", packages.join(" ")),
        )?;
        stop_services_started_by(packages);
        Ok(())
    }
}

/// Those of `packages` that dpkg does not report as installed.
pub fn missing<'a>(packages: &[&'a str]) -> Vec<&'a str> {
    let installed = installed(packages);
    packages
        .iter()
        .copied()
        .filter(|package| !installed.contains(*package))
        .collect()
}

/// The names among `packages` that are fully installed. One `dpkg-query`
/// for all of them: it prints a line per known package and exits non-zero
/// when any is unknown, so its output is read whatever the status.
fn installed(packages: &[&str]) -> BTreeSet<String> {
    let output = Command::new("dpkg-query")
        .args(["-W", "-f=${Package} ${Status}\n"])
        .args(packages)
        .stderr(std::process::Stdio::null())
        .output();
    let Ok(output) = output else {
        return BTreeSet::new();
    };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(_, status)| status.trim() == "install ok installed")
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// Stops, best effort, the services of just-installed `packages`: `service
/// NAME stop` first, then SIGTERM to the pid in the init script's pid file.
fn stop_services_started_by(packages: &[&str]) {
    for service in SERVICES.iter().filter(|s| packages.contains(&s.package)) {
        if running_pid(service.pid_file).is_none() && !process_named(service.name) {
            continue;
        }
        println!(
            "setup: stopping the {} service the package started",
            service.name
        );
        if find_on_path("service").is_some() {
            if let Ok(mut stop) = as_root("service", "stopping a service") {
                stop.args([service.name, "stop"]);
                // Best effort: the pid file check below covers a failure.
                let _ = probe_output(&mut stop);
            }
        }
        if let Some(pid) = running_pid(service.pid_file) {
            // SAFETY: kill has no memory preconditions; pid names the
            // service's process as its own init script recorded it.
            let result = unsafe { libc::kill(pid, libc::SIGTERM) };
            if result != 0 {
                eprintln!(
                    "setup: warning: could not stop {} (pid {pid})",
                    service.name
                );
            }
        }
        if process_named(service.name) {
            eprintln!(
                "setup: warning: a {} process is still running; tests start their own on loopback",
                service.name
            );
        }
    }
}

/// The pid in `pid_file` when that process is alive.
fn running_pid(pid_file: &str) -> Option<libc::pid_t> {
    let pid: libc::pid_t = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (pid > 0 && Path::new(&format!("/proc/{pid}")).exists()).then_some(pid)
}

/// Whether any process has `name` as its command name.
fn process_named(name: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        std::fs::read_to_string(entry.path().join("comm")).is_ok_and(|comm| comm.trim() == name)
    })
}
