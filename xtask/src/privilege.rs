//! Running things as root: directly when xtask already is root, through
//! `sudo -E` otherwise, and one clear sentence when neither is possible.

use std::{path::PathBuf, process::Command};

use anyhow::bail;

use crate::workspace::find_on_path;

/// Whether xtask runs with root's effective user id.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The `sudo` on `PATH`, if any.
fn sudo() -> Option<PathBuf> {
    find_on_path("sudo")
}

/// A command running `program` as root; `why` completes the sentence
/// "... needs root" in the error when that is impossible.
pub fn as_root(program: impl AsRef<std::ffi::OsStr>, why: &str) -> anyhow::Result<Command> {
    if is_root() {
        return Ok(Command::new(program));
    }
    let Some(sudo) = sudo() else {
        bail!("{why} needs root: run this as root or install sudo");
    };
    let mut command = Command::new(sudo);
    // -E keeps the environment xtask sets up (DEBIAN_FRONTEND, AIWATCH_*).
    command.arg("-E").arg(program);
    Ok(command)
}

/// The words that, put before a command line, run it as root with this
/// process's environment and `PATH` (sudo's `secure_path` would drop the
/// latter); empty when xtask already is root.
pub fn root_prefix(why: &str) -> anyhow::Result<Vec<String>> {
    if is_root() {
        return Ok(Vec::new());
    }
    let Some(sudo) = sudo() else {
        bail!("{why} needs root: run this as root or install sudo");
    };
    let path = std::env::var("PATH").unwrap_or_default();
    Ok(vec![
        sudo.to_string_lossy().into_owned(),
        "-E".to_owned(),
        "env".to_owned(),
        format!("PATH={path}"),
    ])
}
