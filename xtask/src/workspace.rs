//! Where the workspace and its build output live, and how xtask drives cargo.
//!
//! The target directory comes from `cargo metadata`, so `CARGO_TARGET_DIR`
//! and `build.target-dir` are honoured. Every child process xtask starts goes
//! through [`run_step`], which turns a failure into an error naming the step.

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};
use serde_json::Value;

/// The package of the agent binary.
pub const AGENT_PACKAGE: &str = "aiwatch";
/// The agent's executable name.
const AGENT_BINARY: &str = "aiwatch";

/// The aiwatch workspace on disk.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub root: PathBuf,
    pub target_dir: PathBuf,
    /// The agent package's version, as `cargo metadata` lists it.
    pub agent_version: Option<String>,
}

/// Cargo's build profile for the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    Debug,
    Release,
}

impl Profile {
    pub fn from_release_flag(release: bool) -> Self {
        if release {
            Profile::Release
        } else {
            Profile::Debug
        }
    }

    /// The folder under the target directory holding this profile's output.
    pub fn dir_name(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }
}

impl Workspace {
    /// Puts cargo's bin folder on `PATH` and finds the workspace.
    pub fn prepare() -> anyhow::Result<Self> {
        put_cargo_bin_on_path();
        Self::locate()
    }

    /// Asks `cargo metadata` for the workspace root, the target directory and
    /// the agent's version.
    fn locate() -> anyhow::Result<Self> {
        let output = cargo()
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .output()
            .context("cannot start `cargo metadata`")?;
        if !output.status.success() {
            bail!(
                "`cargo metadata` failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let metadata: Value = serde_json::from_slice(&output.stdout)
            .context("`cargo metadata` printed something that is not JSON")?;
        let path_field = |name: &str| {
            metadata[name]
                .as_str()
                .map(PathBuf::from)
                .with_context(|| format!("`cargo metadata` has no `{name}`"))
        };
        Ok(Workspace {
            root: path_field("workspace_root")?,
            target_dir: path_field("target_directory")?,
            agent_version: package_version(&metadata, AGENT_PACKAGE),
        })
    }

    /// A cargo command that runs in the workspace root.
    pub fn cargo(&self) -> Command {
        let mut command = cargo();
        command.current_dir(&self.root);
        command
    }

    /// `cargo build -p aiwatch [--release]`.
    pub fn build_agent(&self, profile: Profile) -> anyhow::Result<()> {
        let mut command = self.cargo();
        command.args(["build", "--package", AGENT_PACKAGE]);
        if profile == Profile::Release {
            command.arg("--release");
        }
        run_step(
            &mut command,
            &format!("building the agent ({})", profile.dir_name()),
        )
    }

    /// The agent executable a build with `profile` leaves.
    pub fn agent_binary(&self, profile: Profile) -> PathBuf {
        self.target_dir.join(profile.dir_name()).join(AGENT_BINARY)
    }
}

/// The version `cargo metadata` lists for `package`.
fn package_version(metadata: &Value, package: &str) -> Option<String> {
    metadata["packages"]
        .as_array()?
        .iter()
        .find(|candidate| candidate["name"] == package)?["version"]
        .as_str()
        .map(str::to_owned)
}

/// The cargo that started xtask (`CARGO`), or the one on `PATH`.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo")))
}

/// Cargo's bin folder: `$CARGO_HOME/bin`, by default `~/.cargo/bin`.
pub fn cargo_bin_dir() -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))?;
    Some(home.join("bin"))
}

/// Puts cargo's bin folder first on `PATH` when it is not on it, so that the
/// tools cargo installs (bpf-linker) are found by every build xtask starts.
fn put_cargo_bin_on_path() {
    let Some(bin) = cargo_bin_dir() else { return };
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|dir| dir == bin) {
        return;
    }
    let joined = std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&path)));
    if let Ok(joined) = joined {
        // xtask is single-threaded here: nothing else reads the environment.
        std::env::set_var("PATH", joined);
    }
}

/// Finds an executable by name on `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Runs `command` to completion; a failure names `what` and the exit status.
pub fn run_step(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("{what}: cannot start {:?}", command.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// Runs `command` and returns its standard output, or `None` when it cannot
/// start or fails: the callers use this to probe what is installed.
pub fn probe_output(command: &mut Command) -> Option<String> {
    let output = command.stderr(std::process::Stdio::null()).output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_package_version_is_read_from_metadata() {
        let metadata = serde_json::json!({
            "packages": [
                {"name": "xtask", "version": "0.0.0"},
                {"name": "aiwatch", "version": "1.2.3"},
            ]
        });
        assert_eq!(
            package_version(&metadata, "aiwatch").as_deref(),
            Some("1.2.3")
        );
        assert_eq!(package_version(&metadata, "missing"), None);
    }
}
