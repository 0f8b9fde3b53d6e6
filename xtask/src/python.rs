//! The tests' Python environment: a virtualenv at `<target>/venv` made with
//! the system's `/usr/bin/python3` (not a pyenv shim, whose Python may lack
//! the packages' wheels), holding `tests/requirements.txt`.
//!
//! A stamp file in the venv records the SHA-256 of the requirements it was
//! filled from; when it matches, nothing runs.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};

use crate::{
    provision::report,
    workspace::{run_step, Workspace},
};

/// The interpreter the venv is made from.
const SYSTEM_PYTHON: &str = "/usr/bin/python3";
/// The requirements file, relative to the workspace root.
const REQUIREMENTS: &str = "tests/requirements.txt";
/// The stamp file, inside the venv.
const STAMP: &str = ".aiwatch-requirements.sha256";

/// Paths of the tests' virtualenv.
#[derive(Debug, Clone)]
pub struct Venv {
    pub dir: PathBuf,
}

impl Venv {
    pub fn of(workspace: &Workspace) -> Self {
        Venv {
            dir: workspace.target_dir.join("venv"),
        }
    }

    /// The venv's interpreter.
    pub fn python(&self) -> PathBuf {
        self.dir.join("bin").join("python")
    }
}

/// Creates or refreshes the venv unless its stamp matches the requirements.
pub fn virtualenv(workspace: &Workspace) -> anyhow::Result<Venv> {
    let step = "python venv";
    let venv = Venv::of(workspace);
    let requirements = workspace.root.join(REQUIREMENTS);
    let wanted = requirements_hash(&requirements)?;
    let stamp = venv.dir.join(STAMP);
    let python_present = venv.python().exists();
    if python_present && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == wanted) {
        report(step, "ok");
        return Ok(venv);
    }
    if !python_present {
        report(
            step,
            &format!(
                "creating {} and installing {REQUIREMENTS}",
                venv.dir.display()
            ),
        );
        run_step(
            Command::new(SYSTEM_PYTHON)
                .args(["-m", "venv"])
                .arg(&venv.dir),
            "creating the Python virtualenv",
        )?;
    } else {
        report(step, &format!("installing {REQUIREMENTS} (it changed)"));
    }
    // A stale stamp must not survive a failed install.
    let _ = std::fs::remove_file(&stamp);
    run_step(
        Command::new(venv.python())
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements),
        "installing the tests' Python packages",
    )?;
    std::fs::write(&stamp, format!("{wanted}\n"))
        .with_context(|| format!("writing {}", stamp.display()))?;
    Ok(venv)
}

/// Hex SHA-256 of the requirements file.
fn requirements_hash(path: &Path) -> anyhow::Result<String> {
    let contents = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Sha256::digest(&contents)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}
