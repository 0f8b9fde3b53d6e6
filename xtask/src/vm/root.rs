//! The guests' userland: a Debian root made once by `debootstrap` (minbase
//! plus what the suites run: python3, bpftool, iproute2, dnsmasq, openssl
//! and curl), of the host's release so that the host-built test executables find the same glibc.
//! It is kept as an uncompressed cpio archive (decompressing under TCG
//! costs more than reading) in `<target>/vm`, with a stamp naming what it
//! was made from; a changed package list makes it again.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _};

use crate::{
    privilege::as_root,
    workspace::{run_step, Workspace},
};

/// What the suites exec beyond a minimal Debian: `/usr/bin/python3` (most
/// suites), `bpftool` (privilege), `ip` (loopback set-up).
const PACKAGES: &[&str] = &[
    "python3",
    "bpftool",
    "iproute2",
    // names: a resolver in a network namespace; tls_capture: a TLS server
    // and client.
    "dnsmasq-base",
    "openssl",
    "curl",
];
const MIRROR: &str = "http://deb.debian.org/debian";
/// Folders no suite reads; left out, the archive is a third smaller.
const PRUNED: &[&str] = &[
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/cache/apt",
    "var/lib/apt/lists",
];

/// The root's cpio archive.
#[derive(Debug, Clone)]
pub struct Root {
    pub archive: PathBuf,
}

/// The cached root archive, made first when missing or stale.
pub fn prepare(workspace: &Workspace) -> anyhow::Result<Root> {
    let dir = workspace.target_dir.join("vm");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let suite = host_codename()?;
    let recipe = format!("{suite} minbase {}\n", PACKAGES.join(","));
    let archive = dir.join(format!("root-{suite}.cpio"));
    let stamp = dir.join(format!("root-{suite}.stamp"));
    if archive.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == recipe) {
        println!("vm: debian root {} ok", archive.display());
        return Ok(Root { archive });
    }
    let tree = dir.join(format!("root-{suite}"));
    println!(
        "vm: making a Debian {suite} root with {} (about 2 minutes)",
        PACKAGES.join(", ")
    );
    remove_as_root(&tree)?;
    let mut debootstrap = as_root("debootstrap", "making the guests' Debian root")?;
    debootstrap
        .args(["--variant=minbase"])
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg(&suite)
        .arg(&tree)
        .arg(MIRROR);
    run_step(&mut debootstrap, "debootstrap")?;
    for pruned in PRUNED {
        let path = tree.join(pruned);
        remove_as_root(&path)?;
    }
    pack(&tree, &archive)?;
    remove_as_root(&tree)?;
    std::fs::write(&stamp, recipe).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(Root { archive })
}

/// The host's Debian release (`VERSION_CODENAME` of /etc/os-release).
fn host_codename() -> anyhow::Result<String> {
    let text = std::fs::read_to_string("/etc/os-release").context("reading /etc/os-release")?;
    let codename = text
        .lines()
        .find_map(|line| line.strip_prefix("VERSION_CODENAME="))
        .map(|value| value.trim_matches('"').to_owned())
        .filter(|value| !value.is_empty());
    match codename {
        Some(codename) => Ok(codename),
        None => bail!("/etc/os-release names no VERSION_CODENAME: the guests need a Debian host"),
    }
}

/// Packs `tree` into a newc cpio archive at `archive`. As root: the root
/// holds files only root may read.
fn pack(tree: &Path, archive: &Path) -> anyhow::Result<()> {
    let partial = archive.with_extension("partial");
    let mut cpio = as_root("sh", "packing the guests' Debian root")?;
    cpio.args([
        "-c",
        r#"cd "$1" && find . -print0 | LC_ALL=C sort -z | cpio --null --create --format=newc --quiet > "$2""#,
        "sh",
    ])
    .arg(tree)
    .arg(&partial);
    run_step(&mut cpio, "packing the Debian root with cpio")?;
    std::fs::rename(&partial, archive)
        .with_context(|| format!("renaming to {}", archive.display()))?;
    Ok(())
}

/// `rm -rf` as root: debootstrap's files belong to root.
fn remove_as_root(path: &Path) -> anyhow::Result<()> {
    if !path.exists() && path.symlink_metadata().is_err() {
        return Ok(());
    }
    let mut rm = as_root("rm", "removing the guests' Debian root")?;
    rm.arg("-rf").arg("--one-file-system").arg(path);
    run_step(&mut rm, &format!("removing {}", path.display()))
}

/// Packs a folder the user owns into a newc cpio archive (the payload).
pub fn pack_owned(tree: &Path, archive: &Path) -> anyhow::Result<()> {
    let mut cpio = Command::new("sh");
    cpio.args([
        "-c",
        r#"cd "$1" && find . -mindepth 1 -print0 | LC_ALL=C sort -z | cpio --null --create --format=newc --quiet --owner=0:0 > "$2""#,
        "sh",
    ])
    .arg(tree)
    .arg(archive);
    run_step(&mut cpio, "packing the guest payload with cpio")
}
