//! `cargo xtask fuzz`: runs the cargo-fuzz targets of `fuzz/` against the
//! agent's parsers (policy, kernel records, configuration, profiles, DNS),
//! each for a fixed time, as many at once as there are CPUs (each target's
//! output in `target/fuzz/logs/<target>.log`). `--smoke` is CI's short
//! run: every target for 60 seconds; `--build-only` builds them and runs
//! none. Provisions cargo-fuzz (pinned) on first use.
//!
//! A crash fails the command and leaves the input under
//! `fuzz/artifacts/<target>/`; `cargo fuzz run <target> <file>` replays it.

use std::{path::Path, process::Command, time::Instant};

use anyhow::{bail, Context as _};

use crate::{
    provision::report,
    workspace::{cargo, cargo_bin_dir, probe_output, run_step, Workspace},
};

/// The cargo-fuzz release the targets are built with.
const CARGO_FUZZ_VERSION: &str = "0.13.2";
/// Seconds per target for `--smoke`.
const SMOKE_SECONDS: u64 = 60;

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Every target for 60 seconds (what CI runs).
    #[arg(long, conflicts_with = "seconds")]
    pub smoke: bool,
    /// Seconds per target (default 600, the pre-release run).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Build the targets and run none (CI builds them before it runs the
    /// smoke run beside the soak: both last a fixed time).
    #[arg(long, conflicts_with_all = ["smoke", "seconds"])]
    pub build_only: bool,
    /// Only these targets (default: every target in fuzz/Cargo.toml).
    pub targets: Vec<String>,
}

pub fn fuzz(workspace: &Workspace, options: &Options) -> anyhow::Result<std::process::ExitCode> {
    cargo_fuzz()?;
    let fuzz_dir = workspace.root.join("fuzz");
    let targets = if options.targets.is_empty() {
        targets(&fuzz_dir)?
    } else {
        options.targets.clone()
    };
    let seconds = if options.smoke {
        SMOKE_SECONDS
    } else {
        options.seconds.unwrap_or(600)
    };
    // Built once, then run side by side, one per CPU: each target still
    // gets its whole time, and CI's smoke run takes half as long on two.
    let mut build = fuzz_command(workspace);
    build.arg("build");
    run_step(&mut build, "building the fuzz targets")?;
    if options.build_only {
        println!("fuzz: {} targets built", targets.len());
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let logs = workspace.target_dir.join("fuzz").join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
    let parallel = std::thread::available_parallelism().map_or(1, usize::from);
    let mut failed = Vec::new();
    for batch in targets.chunks(parallel) {
        let started = Instant::now();
        let mut running = Vec::new();
        for target in batch {
            println!("fuzz: {target} for {seconds} s");
            let log = logs.join(format!("{target}.log"));
            let file = std::fs::File::create(&log)
                .with_context(|| format!("cannot create {}", log.display()))?;
            let mut run = fuzz_command(workspace);
            run.args(["run", target, "--", &format!("-max_total_time={seconds}")])
                .arg("-print_final_stats=1")
                .stdout(file.try_clone()?)
                .stderr(file);
            let child = run
                .spawn()
                .with_context(|| format!("fuzzing {target}: cannot start cargo fuzz"))?;
            running.push((target, log, child));
        }
        for (target, log, mut child) in running {
            let status = child.wait()?;
            // libFuzzer's progress lines are many: keep the summary.
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = if status.success() { 12 } else { 60 };
            for line in &lines[lines.len().saturating_sub(tail)..] {
                println!("  {target}: {line}");
            }
            if status.success() {
                println!("fuzz: {target} done in {:.0?}", started.elapsed());
            } else {
                println!(
                    "fuzz: {target} FAILED ({status}); its whole output is in {}",
                    log.display()
                );
                failed.push(target.clone());
            }
        }
    }
    if failed.is_empty() {
        println!("fuzz: {} targets, no crash", targets.len());
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        bail!(
            "fuzz: {} failed (a crash leaves its input under fuzz/artifacts/<target>/)",
            failed.join(", ")
        )
    }
}

/// `cargo fuzz` with the nightly toolchain (libFuzzer's sanitizer flags
/// need it), in `fuzz/`, with a target directory of its own under the
/// workspace's: sanitizer builds share nothing with the others. Through
/// `rustup run`: the `cargo` that started xtask is a toolchain's own, which
/// knows no `+nightly`. No target loads kernel programs, so the agent's
/// build script leaves its eBPF object empty (`AYA_BUILD_SKIP`) rather than
/// building the kernel side a second time.
fn fuzz_command(workspace: &Workspace) -> Command {
    let mut command = Command::new("rustup");
    command
        .current_dir(workspace.root.join("fuzz"))
        .env("CARGO_TARGET_DIR", workspace.target_dir.join("fuzz"))
        .env("AYA_BUILD_SKIP", "1")
        .env_remove("RUSTC")
        .env_remove("RUSTDOC")
        .args(["run", "nightly", "cargo", "fuzz"]);
    command
}

/// The `[[bin]]` names of `fuzz/Cargo.toml`.
fn targets(fuzz_dir: &Path) -> anyhow::Result<Vec<String>> {
    let manifest = fuzz_dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    let names: Vec<String> = text
        .lines()
        .filter_map(|line| line.trim().strip_prefix("name = \""))
        .filter_map(|rest| rest.strip_suffix('"'))
        .filter(|name| *name != "aiwatch-fuzz")
        .map(str::to_owned)
        .collect();
    if names.is_empty() {
        bail!("{} names no fuzz target", manifest.display());
    }
    Ok(names)
}

/// cargo-fuzz, pinned, from crates.io.
fn cargo_fuzz() -> anyhow::Result<()> {
    let step = "cargo-fuzz";
    let installed = probe_output(Command::new("cargo-fuzz").arg("--version")).or_else(|| {
        let in_cargo_bin = cargo_bin_dir()?.join("cargo-fuzz");
        probe_output(Command::new(in_cargo_bin).arg("--version"))
    });
    if installed.is_some_and(|version| version.contains(CARGO_FUZZ_VERSION)) {
        report(step, "ok");
        return Ok(());
    }
    report(
        step,
        &format!("installing cargo-fuzz {CARGO_FUZZ_VERSION} (about 2 minutes)"),
    );
    let mut install = cargo();
    install.env_remove("CARGO_TARGET_DIR").args([
        "install",
        "cargo-fuzz",
        "--version",
        CARGO_FUZZ_VERSION,
        "--locked",
        "--force",
    ]);
    run_step(&mut install, "installing cargo-fuzz")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_of_the_manifest_is_found() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let found = targets(&root).expect("fuzz/Cargo.toml names targets");
        for name in [
            "policy_parser",
            "record_decoder",
            "config_loader",
            "profile_loader",
            "wire_messages",
        ] {
            assert!(
                found.iter().any(|t| t == name),
                "{name} missing from {found:?}"
            );
        }
        assert!(
            !found.iter().any(|t| t == "aiwatch-fuzz"),
            "the package is not a target"
        );
    }
}
