//! Guest kernels: the newest Debian cloud kernel package of a series, found
//! with `apt-cache`, fetched with `apt-get download` and unpacked with
//! `dpkg-deb -x` under `<target>/vm/kernels/<package>`. An unpacked package
//! is reused, so only the first run downloads.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};

use super::GuestKernel;
use crate::{
    debian::Apt,
    workspace::{probe_output, run_step, Workspace},
};

/// An unpacked kernel package.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub package: String,
    /// `uname -r` of the kernel: the name of its modules folder.
    pub release: String,
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>` of the package.
    pub modules: PathBuf,
}

/// Finds, downloads when needed, and unpacks the newest kernel of `guest`'s series.
pub fn fetch(workspace: &Workspace, apt: &mut Apt, guest: &GuestKernel) -> anyhow::Result<Kernel> {
    let package = match newest_package(guest.package_regex)? {
        Some(package) => package,
        None => {
            apt.update()?;
            newest_package(guest.package_regex)?.with_context(|| {
                format!(
                    "the Debian archive offers no package matching {}",
                    guest.package_regex
                )
            })?
        }
    };
    let dir = workspace.target_dir.join("vm/kernels");
    let unpacked = dir.join(&package);
    if !unpacked.join("boot").is_dir() {
        println!("vm: downloading {package}");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        unpack(&dir, &package, &unpacked)?;
    }
    let kernel = locate(&package, &unpacked)?;
    println!("vm: kernel {} ({})", kernel.release, kernel.package);
    Ok(kernel)
}

/// The highest version among the packages whose name matches `regex`.
fn newest_package(regex: &str) -> anyhow::Result<Option<String>> {
    let output = probe_output(Command::new("apt-cache").args(["search", "--names-only", regex]))
        .context("`apt-cache search` failed: is this a Debian machine?")?;
    let names = output
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned);
    Ok(names.max_by(|a, b| version_key(a).cmp(&version_key(b))))
}

/// The numbers in a package name, in order: `linux-image-6.1.0-57-...`
/// sorts after `...-6.1.0-9-...`.
fn version_key(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit())
        .filter_map(|part| part.parse().ok())
        .collect()
}

/// Downloads the package into `dir` and unpacks it into `into`.
fn unpack(dir: &Path, package: &str, into: &Path) -> anyhow::Result<()> {
    let mut download = Command::new("apt-get");
    download.current_dir(dir).args(["download", package]);
    run_step(&mut download, &format!("apt-get download {package}"))?;
    let deb = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| {
            path.extension().is_some_and(|ext| ext == "deb")
                && path
                    .file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| name.starts_with(&format!("{package}_")))
        })
        .with_context(|| format!("apt-get download left no {package}_*.deb"))?;
    let partial = into.with_extension("partial");
    let _ = std::fs::remove_dir_all(&partial);
    run_step(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&partial),
        &format!("unpacking {}", deb.display()),
    )?;
    std::fs::rename(&partial, into).with_context(|| format!("renaming to {}", into.display()))?;
    // The unpacked folder is the cache; the archive is not needed again.
    let _ = std::fs::remove_file(&deb);
    Ok(())
}

/// The kernel image and modules folder of an unpacked package.
fn locate(package: &str, unpacked: &Path) -> anyhow::Result<Kernel> {
    let boot = unpacked.join("boot");
    let vmlinuz = std::fs::read_dir(&boot)
        .with_context(|| format!("listing {}", boot.display()))?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("vmlinuz-"))
        });
    let Some(vmlinuz) = vmlinuz else {
        bail!("{} holds no vmlinuz-*", boot.display());
    };
    let release = vmlinuz
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| name.strip_prefix("vmlinuz-"))
        .context("an unreadable kernel file name")?
        .to_owned();
    // Debian's merged /usr: modules may be under lib/ or usr/lib/.
    let modules = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|dir| unpacked.join(dir).join(&release))
        .find(|dir| dir.is_dir())
        .with_context(|| format!("{package} has no modules folder for {release}"))?;
    Ok(Kernel {
        package: package.to_owned(),
        release,
        vmlinuz,
        modules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_versions_compare_by_number_not_by_text() {
        let newer = "linux-image-6.1.0-57-cloud-amd64-unsigned";
        let older = "linux-image-6.1.0-9-cloud-amd64-unsigned";
        assert!(version_key(newer) > version_key(older));
        let newer = "linux-image-6.12.117+deb12-cloud-amd64-unsigned";
        let older = "linux-image-6.12.43+deb12-cloud-amd64-unsigned";
        assert!(version_key(newer) > version_key(older));
    }
}
