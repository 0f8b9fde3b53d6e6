//! The shell completions and man pages of a built `aiwatch`, written next
//! to it: `completions/aiwatch.bash`, `completions/_aiwatch` (zsh),
//! `completions/aiwatch.fish`, and `man/aiwatch.1` with one page per
//! subcommand. They come from the binary itself (`aiwatch completions`,
//! `aiwatch man --dir`), so they always match its command line.

use std::{path::Path, process::Command};

use anyhow::{bail, Context as _};

use crate::workspace::run_step;

/// Each shell, and the file name its completion loader looks for.
const COMPLETIONS: [(&str, &str); 3] = [
    ("bash", "aiwatch.bash"),
    ("zsh", "_aiwatch"),
    ("fish", "aiwatch.fish"),
];

pub fn write(binary: &Path) -> anyhow::Result<()> {
    let folder = binary
        .parent()
        .with_context(|| format!("{} has no folder", binary.display()))?;
    let completions = folder.join("completions");
    std::fs::create_dir_all(&completions)
        .with_context(|| format!("cannot create {}", completions.display()))?;
    for (shell, file) in COMPLETIONS {
        let output = Command::new(binary)
            .args(["completions", shell])
            .output()
            .with_context(|| format!("cannot run {}", binary.display()))?;
        if !output.status.success() {
            bail!(
                "`aiwatch completions {shell}` failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        let path = completions.join(file);
        std::fs::write(&path, &output.stdout)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let man = folder.join("man");
    run_step(
        Command::new(binary).args(["man", "--dir"]).arg(&man),
        "writing the man pages",
    )?;
    println!(
        "build: completions in {}, man pages in {}",
        completions.display(),
        man.display()
    );
    Ok(())
}
