//! `cargo xtask image`: the agent's OCI image, built with `podman build`.
//!
//! The image is `FROM scratch`: one statically linked (musl) release binary,
//! with the kernel programs embedded by the agent's build script as in every
//! build, the image's configuration and the default rule pack
//! (`deploy/image/`), and the host's CA bundle for the webhook's TLS. No base
//! image is pulled, so the build needs no registry.
//!
//! The musl build has a target triple of its own, so its output lives in
//! `<target>/x86_64-unknown-linux-musl/release` and never invalidates the
//! debug build the tests use. The build context is assembled in
//! `<target>/image/context`.
//!
//! The tag is the one the Kubernetes manifests name: [`IMAGE_REPOSITORY`] and
//! the agent's version (`docs/deploy.md` says how to push it).

use std::{
    fs::{self, File},
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use anyhow::Context as _;

use crate::{
    debian::Apt,
    privilege::as_root,
    provision::{self, Scope},
    workspace::{run_step, Workspace, AGENT_PACKAGE},
};

/// The target triple of the static build.
pub const MUSL_TARGET: &str = "x86_64-unknown-linux-musl";
/// The image repository the DaemonSet names (deploy/kubernetes/daemonset.yaml).
pub const IMAGE_REPOSITORY: &str = "ghcr.io/aiwatch/aiwatch";
/// The files of the image besides the binary, relative to the workspace root.
const IMAGE_SOURCES: &str = "deploy/image";
/// The default rule pack, copied into the image's /etc/aiwatch/policies.
const POLICIES: &str = "policies";
/// Debian's CA bundle (package ca-certificates), for the webhook's TLS.
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The C compiler for the musl target: ring's C and assembly need it.
const MUSL_CC: &str = "musl-gcc";

/// Provisions, builds the static agent and the image; prints the tag.
pub fn image(workspace: &Workspace) -> anyhow::Result<()> {
    provision::setup(workspace, Scope::Build)?;
    provision::image_tools(&mut Apt::default())?;
    let version = agent_version(workspace)?;
    let tag = format!("{IMAGE_REPOSITORY}:{version}");
    let binary = build_static_agent(workspace)?;
    let context = assemble_context(workspace, &binary)?;
    // Root's image store: the agent runs as root, and so does whatever runs
    // the image (the image test, a node's podman).
    let mut build = as_root("podman", "building the image")?;
    build
        .arg("build")
        // The same runtime flags as every podman call here: crun refuses
        // hybrid cgroup hosts (docs/deploy.md).
        .args(["--runtime", "/usr/sbin/runc", "--cgroup-manager=cgroupfs"])
        .args(["--tag", &tag])
        .args(["--build-arg", &format!("VERSION={version}")])
        .arg("--file")
        .arg(context.join("Containerfile"))
        .arg(&context);
    run_step(&mut build, "podman build")?;
    println!("xtask: built image {tag}");
    Ok(())
}

/// `cargo build --release -p aiwatch --target x86_64-unknown-linux-musl`.
fn static_build(workspace: &Workspace) -> Command {
    let mut build = workspace.cargo();
    build
        .args(["build", "--release", "--package", AGENT_PACKAGE])
        .args(["--target", MUSL_TARGET])
        .env(format!("CC_{}", MUSL_TARGET.replace('-', "_")), MUSL_CC);
    build
}

/// Starts the static agent's build in the background at the lowest CPU
/// priority, its output in `<target>/image/static-build.log`. It stays in
/// xtask's process group, so a Ctrl-C stops it with the tests. cargo locks
/// each target and profile's folder on its own, so the debug builds of the
/// tests never wait for it; `cargo xtask image` waits for it, then finds
/// the binary built.
pub fn spawn_static_build(workspace: &Workspace) -> anyhow::Result<(Child, PathBuf)> {
    let log_path = workspace.target_dir.join("image").join("static-build.log");
    if let Some(dir) = log_path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut build = static_build(workspace);
    build
        .stdin(Stdio::null())
        .stdout(
            log.try_clone()
                .context("duplicating the build log's descriptor")?,
        )
        .stderr(log);
    // SAFETY: the closure runs in the forked child before exec and only
    // calls setpriority(2), which is async-signal-safe.
    unsafe {
        build.pre_exec(|| {
            // rustc and the linker inherit the niceness.
            if libc::setpriority(libc::PRIO_PROCESS, 0, 19) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = build
        .spawn()
        .context("cannot start the static agent's build")?;
    Ok((child, log_path))
}

/// Builds the static agent; returns the binary.
fn build_static_agent(workspace: &Workspace) -> anyhow::Result<PathBuf> {
    run_step(
        &mut static_build(workspace),
        "building the static agent (musl, release)",
    )?;
    let binary = workspace
        .target_dir
        .join(MUSL_TARGET)
        .join("release")
        .join(AGENT_PACKAGE);
    anyhow::ensure!(
        binary.is_file(),
        "the static build succeeded but left no binary at {}",
        binary.display()
    );
    Ok(binary)
}

/// Fills `<target>/image/context` with what the Containerfile copies.
fn assemble_context(workspace: &Workspace, binary: &Path) -> anyhow::Result<PathBuf> {
    let context = workspace.target_dir.join("image").join("context");
    if context.exists() {
        fs::remove_dir_all(&context).with_context(|| format!("clearing {}", context.display()))?;
    }
    let policies = context.join("policies");
    fs::create_dir_all(&policies).with_context(|| format!("creating {}", policies.display()))?;
    copy(binary, &context.join("aiwatch"))?;
    for entry in read_dir(&workspace.root.join(IMAGE_SOURCES))? {
        copy(&entry, &context.join(file_name(&entry)?))?;
    }
    for entry in read_dir(&workspace.root.join(POLICIES))? {
        if entry.extension().is_some_and(|ext| ext == "yaml") {
            copy(&entry, &policies.join(file_name(&entry)?))?;
        }
    }
    copy(Path::new(CA_BUNDLE), &context.join("ca-certificates.crt"))?;
    Ok(context)
}

fn read_dir(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        if path.is_file() {
            paths.push(path);
        }
    }
    Ok(paths)
}

fn file_name(path: &Path) -> anyhow::Result<&std::ffi::OsStr> {
    path.file_name()
        .with_context(|| format!("{} has no file name", path.display()))
}

fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    fs::copy(from, to)
        .map(drop)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))
}

/// The agent package's version, which `cargo metadata` gave the workspace.
fn agent_version(workspace: &Workspace) -> anyhow::Result<String> {
    workspace
        .agent_version
        .clone()
        .with_context(|| format!("`cargo metadata` lists no {AGENT_PACKAGE} package"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace_file(relative: &str) -> String {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        fs::read_to_string(root.join(relative)).expect("reads a workspace file")
    }

    /// The DaemonSet runs the image this command tags: same repository, and
    /// the agent's version as the tag.
    #[test]
    fn the_daemonset_names_the_image_this_command_builds() {
        let daemonset = workspace_file("deploy/kubernetes/daemonset.yaml");
        let image = daemonset
            .lines()
            .find_map(|line| line.trim().strip_prefix("image: "))
            .expect("the DaemonSet names an image");
        let agent_manifest = workspace_file("agent/Cargo.toml");
        assert!(agent_manifest.contains("version.workspace = true"));
        let workspace_manifest = workspace_file("Cargo.toml");
        let version = workspace_manifest
            .lines()
            .find_map(|line| line.strip_prefix("version = \""))
            .and_then(|rest| rest.strip_suffix('"'))
            .expect("the workspace has a version");
        assert_eq!(image, format!("{IMAGE_REPOSITORY}:{version}"));
    }
}
