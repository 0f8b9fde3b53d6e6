//! `cargo xtask vm`: the kernel matrix. The same `aiwatch` binary, byte for
//! byte, and the privileged test suites run on Debian's 6.1 and 6.12 kernels
//! in QEMU guests (TCG: there is no usable KVM), beside the host's kernel.
//!
//! One run per kernel:
//! 1. `kernel`: the Debian cloud kernel, downloaded once with `apt-get
//!    download` and unpacked under `<target>/vm/kernels`;
//! 2. `root`: a Debian root made once by `debootstrap` (python3, bpftool,
//!    iproute2, dnsmasq, openssl, curl), kept as a cpio archive under `<target>/vm`;
//! 3. `payload`: the agent, the test executables, this xtask binary (the
//!    guest's init) and the kernel's test module, appended to the root
//!    archive as a second cpio archive;
//! 4. `qemu`: boots the guest, streams its console, kills it past its time
//!    budget, and reads the verdict from `isa-debug-exit`;
//! 5. `guest`: inside the guest, mounts the kernel filesystems, records the
//!    agent's start-up feature lines, runs the suites, prints one verdict
//!    line and leaves through `isa-debug-exit`;
//! 6. `report`: every kernel's outcome is kept as JSON under
//!    `<target>/vm/results`; `--report` regenerates `docs/kernels.md`.
//!
//! This module owns the command line, the kernel and suite tables, and the
//! order of those steps.

mod guest;
mod host;
mod kernel;
mod payload;
mod qemu;
mod report;
mod root;

use std::{
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use crate::{
    debian::Apt,
    provision::{self, Scope},
    workspace::Workspace,
};

pub use guest::guest_init;

/// The kernels `cargo xtask vm` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KernelChoice {
    /// Debian 12's kernel, Linux 6.1 (cgroup2 only).
    #[value(name = "6.1")]
    Linux61,
    /// Debian 12's backported Linux 6.12 (hybrid cgroups, like this host).
    #[value(name = "6.12")]
    Linux612,
    /// Both guests.
    All,
    /// No guest: the start-up feature lines of the running kernel (loads
    /// the programs on this host: needs root).
    Host,
}

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Which kernel to run the suites on: 6.1 when not given, none when
    /// only `--report` is.
    #[arg(long, value_enum)]
    kernel: Option<KernelChoice>,
    /// Regenerate the matrix in docs/kernels.md from the recorded results.
    #[arg(long)]
    report: bool,
    /// Only suites whose name is listed (comma-separated); mandatory suites
    /// left out make the verdict fail.
    #[arg(long, value_delimiter = ',')]
    suites: Vec<String>,
    /// Only the mandatory suites (the families, the module probes, the exec
    /// storm and enforcement): what CI runs, inside its hour under TCG.
    #[arg(long, conflicts_with = "suites")]
    core: bool,
    /// Only fetch what the guests need (QEMU and debootstrap, the Debian
    /// root, the kernels), without building or booting: CI runs it beside
    /// the tests, so the guest step later finds them ready.
    #[arg(long, conflicts_with_all = ["report", "suites", "core"])]
    prepare: bool,
}

/// How the guest mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupLayout {
    /// cgroup2 alone at /sys/fs/cgroup, v1 disabled (`cgroup_no_v1=all`).
    Unified,
    /// v1 controllers under /sys/fs/cgroup, cgroup2 at /sys/fs/cgroup/unified.
    Hybrid,
}

impl CgroupLayout {
    pub fn name(self) -> &'static str {
        match self {
            CgroupLayout::Unified => "unified",
            CgroupLayout::Hybrid => "hybrid",
        }
    }
}

/// A guest kernel: the Debian package series it comes from.
#[derive(Debug, Clone, Copy)]
pub struct GuestKernel {
    /// What `--kernel` calls it.
    pub label: &'static str,
    /// Matches the package names of the series (`apt-cache search` regex).
    pub package_regex: &'static str,
    pub cgroups: CgroupLayout,
}

pub const GUESTS: &[GuestKernel] = &[
    GuestKernel {
        label: "6.1",
        package_regex: r"^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$",
        cgroups: CgroupLayout::Unified,
    },
    GuestKernel {
        label: "6.12",
        package_regex: r"^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64-unsigned$",
        cgroups: CgroupLayout::Hybrid,
    },
];

/// A test executable of the `aiwatch-tests` crate, as the guest runs it.
#[derive(Debug, Clone, Copy)]
pub struct Suite {
    /// The integration test's name (`tests/tests/<name>.rs`).
    pub name: &'static str,
    /// The column of docs/kernels.md it proves.
    pub family: &'static str,
    /// A mandatory suite that does not run and pass fails the verdict.
    pub mandatory: bool,
    /// Its time budget under TCG, after which the guest stops it.
    pub budget: Duration,
}

const fn suite(name: &'static str, family: &'static str, mandatory: bool, secs: u64) -> Suite {
    Suite {
        name,
        family,
        mandatory,
        budget: Duration::from_secs(secs),
    }
}

/// The suites the guests run, in order. Budgets are 2 to 3 times the
/// slowest run measured on a busy 2-core machine (docs/development.md), so
/// that a hung guest is stopped well inside CI's hour.
pub const SUITES: &[Suite] = &[
    suite("process", "process", true, 480),
    suite("files", "files", true, 300),
    suite("net", "network", true, 480),
    suite("privilege", "privilege", true, 480),
    suite("modules", "kernel modules", true, 180),
    suite("storm", "exec storm", true, 720),
    suite("persistence", "persistence writes", false, 180),
    suite("gpu", "accelerators", false, 180),
    suite("cli", "command line", false, 120),
    suite("enforce", "enforcement: exec kill", true, 300),
    suite("enforce_open", "enforcement: open kill", true, 240),
    suite("enforce_egress", "enforcement: egress deny", true, 240),
    suite("enforce_accel", "enforcement: accelerator deny", true, 240),
    suite("self_protection", "self-protection", false, 240),
    suite("privileges", "capabilities kept", false, 180),
    suite("redaction", "redaction", false, 180),
    suite("supervision", "task supervision", false, 180),
    suite("stream_backpressure", "live stream", false, 480),
    suite("file_access", "folded reads", false, 180),
    suite("names", "names on the wire", false, 300),
    suite("tls_capture", "TLS clear text", false, 300),
];

/// Suites no guest runs, and what they need that a guest cannot have.
pub const SKIPPED: &[(&str, &str)] = &[
    ("workloads", "ONNX Runtime wheels and podman"),
    ("anomaly", "ONNX Runtime wheels"),
    ("prometheus", "ONNX Runtime wheels and a Prometheus server"),
    ("policy", "ONNX Runtime wheels"),
    // Not a need no guest could meet: tmux is not in the guests' root yet.
    // The suite drives the command line's output and touches no probe.
    ("terminal", "tmux; kernel-independent, run on the host"),
    (
        "llm",
        "the test virtualenv's LLM clients (openai, anthropic, ollama); new, not yet run in a guest",
    ),
    (
        "attacks",
        "the test virtualenv's packages (ONNX Runtime wheels among them)",
    ),
    (
        "image",
        "podman, runc and the image's musl build, not in the guests' root",
    ),
    (
        "alertmanager",
        "Prometheus and Alertmanager, not in the guests' root",
    ),
    (
        "runtimes",
        "containerd and podman in the guests' root; the runtimes' APIs are kernel-independent",
    ),
];

/// Boot, unpacking and the agent's feature probe, before the first suite.
const BOOT_BUDGET: Duration = Duration::from_secs(240);

pub fn vm(workspace: &Workspace, options: &Options) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let kernel = match (options.kernel, options.report) {
        (Some(kernel), _) => kernel,
        (None, false) => KernelChoice::Linux61,
        (None, true) => {
            let path = report::write(workspace)?;
            println!("vm: wrote {}", path.display());
            return Ok(ExitCode::SUCCESS);
        }
    };
    let guests: Vec<GuestKernel> = match kernel {
        KernelChoice::Linux61 => vec![GUESTS[0]],
        KernelChoice::Linux612 => vec![GUESTS[1]],
        KernelChoice::All => GUESTS.to_vec(),
        KernelChoice::Host => Vec::new(),
    };
    if options.prepare {
        prepare(workspace, &guests)?;
        println!("vm: prepared in {:.0}s", started.elapsed().as_secs_f64());
        return Ok(ExitCode::SUCCESS);
    }
    let suites = selected_suites(&options.suites, options.core)?;
    provision::setup(workspace, Scope::Build)?;
    let mut apt = Apt::default();
    provision::vm_packages(&mut apt)?;
    let built = payload::build(workspace)?;
    println!(
        "vm: agent {} sha256 {}",
        built.agent.display(),
        built.agent_sha256
    );
    let mut failed = Vec::new();
    if kernel == KernelChoice::Host {
        host::record(workspace, &built)?;
    }
    if !guests.is_empty() {
        let root = root::prepare(workspace)?;
        for guest in &guests {
            let kernel = kernel::fetch(workspace, &mut apt, guest)?;
            let initrd = payload::initrd(workspace, &built, &root, &kernel, guest, &suites)?;
            let budget = BOOT_BUDGET + suites.iter().map(|s| s.budget).sum::<Duration>();
            let outcome = qemu::boot(workspace, &kernel, guest, &initrd, budget)
                .with_context(|| format!("running the {} guest", guest.label))?;
            let result = report::GuestResult::from_console(guest, &kernel, &built, &outcome);
            result.save(workspace)?;
            println!("vm: {}", result.summary());
            if !result.passed() {
                failed.push(guest.label);
            }
        }
    }
    if options.report {
        let path = report::write(workspace)?;
        println!("vm: wrote {}", path.display());
    }
    println!("vm: done in {:.0}s", started.elapsed().as_secs_f64());
    if failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("vm: failed on {}", failed.join(", "));
        Ok(ExitCode::FAILURE)
    }
}

/// What `--prepare` fetches: the packages, the root and `guests`' kernels.
/// Each step is skipped when its result is already there, as in a full run.
fn prepare(workspace: &Workspace, guests: &[GuestKernel]) -> anyhow::Result<()> {
    let mut apt = Apt::default();
    provision::vm_packages(&mut apt)?;
    if !guests.is_empty() {
        root::prepare(workspace)?;
    }
    for guest in guests {
        kernel::fetch(workspace, &mut apt, guest)?;
    }
    Ok(())
}

/// The suites `--suites` names, the mandatory ones with `--core`, or all
/// of them.
fn selected_suites(names: &[String], core: bool) -> anyhow::Result<Vec<Suite>> {
    if core {
        return Ok(SUITES.iter().filter(|s| s.mandatory).copied().collect());
    }
    if names.is_empty() {
        return Ok(SUITES.to_vec());
    }
    names
        .iter()
        .map(|name| {
            SUITES
                .iter()
                .find(|s| s.name == name)
                .copied()
                .with_context(|| {
                    let known: Vec<&str> = SUITES.iter().map(|s| s.name).collect();
                    format!("no suite {name:?}; the suites are {}", known.join(", "))
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_suite_has_a_test_file_and_no_name_is_both_run_and_skipped() {
        let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/tests");
        for name in SUITES
            .iter()
            .map(|s| s.name)
            .chain(SKIPPED.iter().map(|s| s.0))
        {
            assert!(tests.join(format!("{name}.rs")).exists(), "{name}");
        }
        for (skipped, _) in SKIPPED {
            assert!(!SUITES.iter().any(|s| s.name == *skipped), "{skipped}");
        }
    }

    #[test]
    fn every_test_file_is_run_or_skipped_by_name() {
        let tests = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/tests");
        for entry in std::fs::read_dir(tests).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            assert!(
                SUITES.iter().any(|s| s.name == name) || SKIPPED.iter().any(|s| s.0 == name),
                "tests/tests/{name}.rs is neither run in the guests nor skipped by name"
            );
        }
    }

    #[test]
    fn unknown_suite_names_are_refused_with_the_known_ones() {
        let error = selected_suites(&["nope".into()], false)
            .unwrap_err()
            .to_string();
        assert!(error.contains("process"), "{error}");
        assert_eq!(selected_suites(&["storm".into()], false).unwrap().len(), 1);
        let core = selected_suites(&[], true).unwrap();
        assert!(core.iter().all(|s| s.mandatory));
        assert!(core.iter().any(|s| s.name == "enforce_egress"));
    }
}
