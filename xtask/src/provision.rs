//! `cargo xtask setup`: brings the machine to what building, running and
//! testing aiwatch need. Each step checks first and acts only when something
//! is missing, printing one line: `ok`, or what it installs.
//!
//! The steps: Debian packages, the `nightly` toolchain with `rust-src` (the
//! eBPF crate builds with `-Z build-std`), bpf-linker built against LLVM 22,
//! the tracefs and bpffs mounts, and for the tests their packages, kubectl,
//! the podman configuration, the image's tools (`image_tools`) and the
//! Python environment (`python`).

use std::{path::Path, process::Command, time::Instant};

use anyhow::Context as _;

use crate::{
    debian::{self, Apt, BUILD_PACKAGES, IMAGE_PACKAGES, TEST_PACKAGES, VM_PACKAGES},
    image::MUSL_TARGET,
    privilege::as_root,
    python,
    workspace::{cargo, cargo_bin_dir, find_on_path, probe_output, run_step, Workspace},
};

/// The bpf-linker release that supports LLVM 22, rustc's LLVM; newer ones may drop it.
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Where Debian's `llvm-22-dev` lives.
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
/// The toolchain aya-build compiles the eBPF crate with.
const NIGHTLY: &str = "nightly";

/// Kernel filesystems the agent and the tests use: (type, mount point).
const KERNEL_MOUNTS: &[(&str, &str)] =
    &[("tracefs", "/sys/kernel/tracing"), ("bpf", "/sys/fs/bpf")];

/// Podman's configuration for this machine kind: without CAP_SYS_RESOURCE
/// the default rlimits and pids limit make every container fail to start.
const CONTAINERS_CONF: &str = "/etc/containers/containers.conf";
const CONTAINERS_CONF_BODY: &str = "\
# Written by `cargo xtask setup --tests`: the machine lacks CAP_SYS_RESOURCE,
# so containers must not ask for rlimits or a pids limit.
[containers]
default_ulimits = []
pids_limit = 0
";

/// How much of the machine a command needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Tools to build the agent and its kernel programs.
    Build,
    /// Also the kernel mounts the running agent needs.
    Run,
    /// Also the tests' packages, kubectl, podman configuration, the image's
    /// tools (the image test builds it) and the Python environment.
    Tests,
}

/// Provisions what `scope` needs, skipping what is already there.
pub fn setup(workspace: &Workspace, scope: Scope) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut apt = Apt::default();
    debian_packages(&mut apt, "debian packages (build)", BUILD_PACKAGES)?;
    if scope >= Scope::Tests {
        debian_packages(&mut apt, "debian packages (tests)", TEST_PACKAGES)?;
    }
    nightly_toolchain()?;
    bpf_linker()?;
    if scope >= Scope::Run {
        for (fs_type, mount_point) in KERNEL_MOUNTS {
            kernel_mount(fs_type, mount_point)?;
        }
    }
    if scope >= Scope::Tests {
        kubectl(&mut apt)?;
        image_tools(&mut apt)?;
        python::virtualenv(workspace)?;
    }
    println!("setup: done in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The Debian packages `cargo xtask vm` needs, beside the build's.
pub fn vm_packages(apt: &mut Apt) -> anyhow::Result<()> {
    debian_packages(apt, "debian packages (vm)", VM_PACKAGES)
}

/// What `cargo xtask image` needs beside the build's tools: its Debian
/// packages, the Rust standard library for the musl target, and podman's
/// configuration.
pub fn image_tools(apt: &mut Apt) -> anyhow::Result<()> {
    debian_packages(apt, "debian packages (image)", IMAGE_PACKAGES)?;
    rust_target(MUSL_TARGET)?;
    podman_config()
}

/// Prints the one line a step reports.
pub fn report(step: &str, state: &str) {
    println!("setup: {step:<32} {state}");
}

fn debian_packages(apt: &mut Apt, step: &str, packages: &[&str]) -> anyhow::Result<()> {
    let missing = debian::missing(packages);
    if missing.is_empty() {
        report(step, "ok");
        return Ok(());
    }
    report(step, &format!("installing {}", missing.join(" ")));
    apt.install(&missing)
}

/// The `nightly` toolchain and its `rust-src` component.
fn nightly_toolchain() -> anyhow::Result<()> {
    let toolchains = probe_output(Command::new("rustup").args(["toolchain", "list"]))
        .context("`rustup toolchain list` failed: is rustup installed?")?;
    if toolchains.lines().any(is_plain_nightly) {
        report("nightly toolchain", "ok");
    } else {
        report("nightly toolchain", "installing nightly (minimal profile)");
        run_step(
            Command::new("rustup").args(["toolchain", "install", NIGHTLY, "--profile", "minimal"]),
            "installing the nightly toolchain",
        )?;
    }
    let components = probe_output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        NIGHTLY,
        "--installed",
    ]))
    .unwrap_or_default();
    if components.lines().any(|line| line.starts_with("rust-src")) {
        report("nightly rust-src", "ok");
    } else {
        report("nightly rust-src", "installing rust-src");
        run_step(
            Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]),
            "adding rust-src to the nightly toolchain",
        )?;
    }
    Ok(())
}

/// Whether a `rustup toolchain list` line is the moving `nightly` toolchain
/// (`nightly-<host>`), not a dated one like `nightly-2025-01-01-<host>`.
fn is_plain_nightly(line: &str) -> bool {
    let name = line.split_whitespace().next().unwrap_or_default();
    name == NIGHTLY
        || name
            .strip_prefix("nightly-")
            .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()))
}

/// The standard library for `target`, for the active toolchain.
fn rust_target(target: &str) -> anyhow::Result<()> {
    let step = format!("rust target {target}");
    let installed = probe_output(Command::new("rustup").args(["target", "list", "--installed"]))
        .context("`rustup target list` failed: is rustup installed?")?;
    if installed.lines().any(|line| line.trim() == target) {
        report(&step, "ok");
        return Ok(());
    }
    report(&step, "installing");
    run_step(
        Command::new("rustup").args(["target", "add", target]),
        &format!("adding the {target} target"),
    )
}

/// kubectl, whose built-in kustomize renders deploy/kubernetes in the
/// manifest tests. Any kubectl on `PATH` will do (another package may
/// own /usr/bin/kubectl, and Debian's `kubernetes-client` would then
/// refuse to install over it); without one, Debian's is installed.
fn kubectl(apt: &mut Apt) -> anyhow::Result<()> {
    let step = "kubectl (kustomize)";
    if find_on_path("kubectl").is_some() {
        report(step, "ok");
        return Ok(());
    }
    report(step, "installing kubernetes-client");
    apt.install(&["kubernetes-client"])
}

/// bpf-linker, pinned and built against Debian's LLVM 22.
fn bpf_linker() -> anyhow::Result<()> {
    let step = "bpf-linker";
    if installed_bpf_linker_version().is_some_and(|v| v.contains(BPF_LINKER_VERSION)) {
        report(step, "ok");
        return Ok(());
    }
    report(
        step,
        &format!("installing bpf-linker {BPF_LINKER_VERSION} for LLVM 22 (about 5 minutes)"),
    );
    let mut install = cargo();
    install
        .env("LLVM_PREFIX", LLVM_PREFIX)
        // A temporary target directory: the linker's build is not the workspace's.
        .env_remove("CARGO_TARGET_DIR")
        .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
        .args([
            "--no-default-features",
            "--features",
            "llvm-22",
            "--locked",
            "--force",
        ]);
    run_step(&mut install, "installing bpf-linker")
}

/// `bpf-linker --version` from `PATH` (cargo's bin folder is on it).
fn installed_bpf_linker_version() -> Option<String> {
    probe_output(Command::new("bpf-linker").arg("--version")).or_else(|| {
        let in_cargo_bin = cargo_bin_dir()?.join("bpf-linker");
        probe_output(Command::new(in_cargo_bin).arg("--version"))
    })
}

/// Mounts `fs_type` at `mount_point` unless /proc/mounts shows it there.
fn kernel_mount(fs_type: &str, mount_point: &str) -> anyhow::Result<()> {
    let step = format!("{fs_type} at {mount_point}");
    let mounts = std::fs::read_to_string("/proc/mounts").context("cannot read /proc/mounts")?;
    let mounted = mounts.lines().any(|line| {
        let mut fields = line.split_whitespace().skip(1);
        fields.next() == Some(mount_point) && fields.next() == Some(fs_type)
    });
    if mounted {
        report(&step, "ok");
        return Ok(());
    }
    report(&step, "mounting");
    let mut mount = as_root("mount", "mounting kernel filesystems")?;
    mount.args(["-t", fs_type, fs_type, mount_point]);
    run_step(&mut mount, &format!("mounting {fs_type} at {mount_point}"))
}

/// Writes podman's containers.conf when there is none; an existing one is
/// left alone, with a warning when it lacks the settings this machine needs.
fn podman_config() -> anyhow::Result<()> {
    let step = "podman containers.conf";
    let path = Path::new(CONTAINERS_CONF);
    match std::fs::read_to_string(path) {
        Ok(existing) => {
            if existing.contains("default_ulimits") && existing.contains("pids_limit") {
                report(step, "ok");
            } else {
                report(
                    step,
                    "present, but without default_ulimits/pids_limit: left as is",
                );
            }
            Ok(())
        }
        Err(_) => {
            report(step, &format!("writing {CONTAINERS_CONF}"));
            write_as_root(path, CONTAINERS_CONF_BODY)
        }
    }
}

/// Writes a system file, creating its folder: directly as root, else
/// through `sudo sh` with the body on standard input.
fn write_as_root(path: &Path, body: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    if crate::privilege::is_root() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        return std::fs::write(path, body).with_context(|| format!("writing {}", path.display()));
    }
    let mut command = as_root("sh", "writing a system file")?;
    command
        .args(["-c", r#"mkdir -p "$(dirname "$1")" && cat > "$1""#, "sh"])
        .arg(path)
        .stdin(std::process::Stdio::piped());
    let mut child = command.spawn().context("cannot start sudo sh")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(body.as_bytes())
            .context("writing the file's contents")?;
    }
    let status = child.wait().context("waiting for the write")?;
    anyhow::ensure!(
        status.success(),
        "writing {} failed ({status})",
        path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_moving_nightly_is_recognised_and_dated_ones_are_not() {
        assert!(is_plain_nightly("nightly-x86_64-unknown-linux-gnu"));
        assert!(is_plain_nightly(
            "nightly-x86_64-unknown-linux-gnu (default)"
        ));
        assert!(!is_plain_nightly(
            "nightly-2025-01-01-x86_64-unknown-linux-gnu"
        ));
        assert!(!is_plain_nightly(
            "stable-x86_64-unknown-linux-gnu (active, default)"
        ));
    }
}
