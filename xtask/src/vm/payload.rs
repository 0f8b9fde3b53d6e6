//! What goes into a guest beside the Debian root: the debug `aiwatch` (the
//! very file the host's tests run, so the binary is the same byte for
//! byte), the test executables of `aiwatch-tests`, this xtask binary as the
//! guest's init, the guest's instructions (`guest.json`), and the test
//! module of the guest's kernel. They form a second cpio archive; the
//! kernel unpacks concatenated archives in order, so the initramfs is the
//! cached root archive followed by this one.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::Stdio,
};

use anyhow::{bail, Context as _};
use sha2::{Digest as _, Sha256};

use super::{kernel::Kernel, root::Root, GuestKernel, Suite, SKIPPED};
use crate::{
    test::EBPF_PACKAGE,
    workspace::{run_step, Profile, Workspace},
};

/// Where the payload sits inside the guest.
pub const GUEST_DIR: &str = "/aiwatch";
/// The test crate whose executables the guests run.
const TESTS_PACKAGE: &str = "aiwatch-tests";
/// The modules the guests get from their kernel's package: the one
/// `tests/tests/modules.rs` loads, and veth, which the guest's init loads
/// for the suites that link network namespaces (`enforce_egress`).
const GUEST_MODULES: &[&str] = &["kernel/drivers/net/dummy", "kernel/drivers/net/veth"];

/// The host-built files every guest gets.
#[derive(Debug)]
pub struct Built {
    pub agent: PathBuf,
    pub agent_sha256: String,
    /// Test name → executable.
    pub tests: BTreeMap<String, PathBuf>,
    pub xtask: PathBuf,
}

/// Builds the workspace as `cargo xtask test` does, so that the agent is
/// the very file the host's tests run, and lists the test executables.
pub fn build(workspace: &Workspace) -> anyhow::Result<Built> {
    let mut build = workspace.cargo();
    build.args([
        "build",
        "--workspace",
        "--exclude",
        EBPF_PACKAGE,
        "--all-targets",
    ]);
    run_step(&mut build, "building the workspace")?;
    let agent = workspace.agent_binary(Profile::Debug);
    let agent_sha256 = sha256_of(&agent)?;
    let tests = test_executables(workspace)?;
    // The running xtask, which the workspace build may just have replaced
    // on disk: /proc/self/exe still opens this one.
    let xtask = PathBuf::from("/proc/self/exe");
    Ok(Built {
        agent,
        agent_sha256,
        tests,
        xtask,
    })
}

/// `cargo test --no-run` with `cargo xtask test`'s package set (nothing is
/// rebuilt), reading the executables of `aiwatch-tests` from cargo's JSON
/// messages.
fn test_executables(workspace: &Workspace) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut cargo = workspace.cargo();
    cargo
        .args(["test", "--workspace", "--exclude", EBPF_PACKAGE, "--no-run"])
        .args(["--message-format", "json-render-diagnostics"])
        .stdout(Stdio::piped());
    let mut child = cargo.spawn().context("cannot start cargo test --no-run")?;
    let stdout = child.stdout.take().context("cargo's stdout")?;
    let mut tests = BTreeMap::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's messages")?;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let of_tests_package = message["package_id"]
            .as_str()
            .is_some_and(|id| id.contains(&format!("#{TESTS_PACKAGE}@")));
        let is_test = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|k| k == "test"));
        if let (true, true, Some(name), Some(executable)) = (
            of_tests_package,
            is_test,
            message["target"]["name"].as_str(),
            message["executable"].as_str(),
        ) {
            tests.insert(name.to_owned(), PathBuf::from(executable));
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!("building the test executables failed ({status})");
    }
    anyhow::ensure!(
        !tests.is_empty(),
        "cargo listed no test executables of {TESTS_PACKAGE}"
    );
    Ok(tests)
}

/// The SHA-256 of a file, in hex.
pub fn sha256_of(path: &Path) -> anyhow::Result<String> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).with_context(|| format!("reading {}", path.display()))?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// Assembles the guest's initramfs: the root archive, then the payload.
pub fn initrd(
    workspace: &Workspace,
    built: &Built,
    root: &Root,
    kernel: &Kernel,
    guest: &GuestKernel,
    suites: &[Suite],
) -> anyhow::Result<PathBuf> {
    let vm_dir = workspace.target_dir.join("vm");
    let tree = vm_dir.join(format!("payload-{}", guest.label));
    let _ = std::fs::remove_dir_all(&tree);
    let dir = tree.join(GUEST_DIR.trim_start_matches('/'));
    std::fs::create_dir_all(dir.join("tests"))
        .with_context(|| format!("creating {}", dir.display()))?;

    link_or_copy(&built.agent, &dir.join("aiwatch"))?;
    link_or_copy(&built.xtask, &dir.join("xtask"))?;
    for suite in suites {
        let executable = built
            .tests
            .get(suite.name)
            .with_context(|| format!("cargo built no test executable named {:?}", suite.name))?;
        link_or_copy(executable, &dir.join("tests").join(suite.name))?;
    }
    for module in GUEST_MODULES {
        copy_module(kernel, &tree, module)?;
    }
    // The shell stays pid 1 and reaps orphans; the init powers off itself,
    // so reaching the second line means it crashed.
    // exec: the guest init is pid 1 itself, as the enforcement suite's
    // pid-1 rail test needs (`guest::PID_1_OPENER`); it never returns (it
    // powers the guest off), and if it dies the kernel panics and, with
    // `panic=-1`, the guest ends at once.
    let init =
        "#!/bin/sh\nexport PATH=/usr/sbin:/usr/bin:/sbin:/bin\nexec /aiwatch/xtask vm-guest-init\n";
    write_executable(&tree.join("init"), init)?;
    let plan = super::guest::Plan {
        label: guest.label.to_owned(),
        cgroups: guest.cgroups.name().to_owned(),
        suites: suites
            .iter()
            .map(|s| super::guest::PlannedSuite {
                name: s.name.to_owned(),
                mandatory: s.mandatory,
                budget_secs: s.budget.as_secs(),
            })
            .collect(),
        not_selected: super::SUITES
            .iter()
            .filter(|s| s.mandatory && !suites.iter().any(|chosen| chosen.name == s.name))
            .map(|s| s.name.to_owned())
            .collect(),
        skipped: SKIPPED
            .iter()
            .map(|(name, why)| ((*name).to_owned(), (*why).to_owned()))
            .collect(),
    };
    std::fs::write(dir.join("guest.json"), plan.to_json())
        .with_context(|| format!("writing {}", dir.join("guest.json").display()))?;

    let payload = vm_dir.join(format!("payload-{}.cpio", guest.label));
    super::root::pack_owned(&tree, &payload)?;
    let initrd = vm_dir.join(format!("initrd-{}.cpio", guest.label));
    concatenate(&[&root.archive, &payload], &initrd)?;
    let _ = std::fs::remove_file(&payload);
    Ok(initrd)
}

/// A module of `kernel`, at its place under `usr/lib/modules` (the root's
/// `/lib` is a link to `usr/lib`: a `lib` folder in the payload would
/// replace it).
fn copy_module(kernel: &Kernel, tree: &Path, module: &str) -> anyhow::Result<()> {
    let found = ["ko", "ko.xz", "ko.gz"]
        .iter()
        .map(|ext| kernel.modules.join(format!("{module}.{ext}")))
        .find(|path| path.exists())
        .with_context(|| {
            format!(
                "the {} package has no {module}.ko*, which the guests' suites need",
                kernel.package
            )
        })?;
    let relative = found
        .strip_prefix(&kernel.modules)
        .context("the module is inside its folder")?;
    let target = tree
        .join("usr/lib/modules")
        .join(&kernel.release)
        .join(relative);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    link_or_copy(&found, &target)
}

/// A hard link when the file system allows one (the agent is 150 MB), else a copy.
fn link_or_copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to)
        .map(drop)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))
}

fn write_executable(path: &Path, body: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, body).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

fn concatenate(parts: &[&Path], into: &Path) -> anyhow::Result<()> {
    let mut out = File::create(into).with_context(|| format!("creating {}", into.display()))?;
    for part in parts {
        let mut input = File::open(part).with_context(|| format!("opening {}", part.display()))?;
        std::io::copy(&mut input, &mut out)
            .with_context(|| format!("appending {}", part.display()))?;
    }
    Ok(())
}
