//! `cargo xtask test`: provisions everything the tests use, builds the whole
//! workspace (so the `aiwatch` binary exists before any integration test
//! starts), then runs `cargo test` with the environment the tests read:
//!
//! - `AIWATCH_BIN`: the debug `aiwatch` binary;
//! - `AIWATCH_PYTHON` / `AIWATCH_VENV`: the tests' Python and its virtualenv;
//! - `AIWATCH_REPO`: the workspace root.
//!
//! Privileged tests need root: when xtask is not root, cargo runs the test
//! executables through `sudo -E` (a cargo `runner`), while cargo itself and
//! the build stay with the user.

use std::process::{Command, ExitCode};

use anyhow::Context as _;

use crate::{
    privilege::root_prefix,
    provision::{self, Scope},
    python::Venv,
    workspace::{Profile, Workspace},
};

/// The eBPF crate builds for the BPF target through the agent's build
/// script; built for the host it would not link.
pub const EBPF_PACKAGE: &str = "aiwatch-ebpf";

/// Runs setup, the build and the tests; the exit code is the first failing
/// step's.
pub fn test(workspace: &Workspace, args: &[String]) -> anyhow::Result<ExitCode> {
    provision::setup(workspace, Scope::Tests)?;
    let venv = Venv::of(workspace);

    let mut build = workspace.cargo();
    build.args([
        "build",
        "--workspace",
        "--exclude",
        EBPF_PACKAGE,
        "--all-targets",
    ]);
    if let Some(code) = run_numbered(
        1,
        "cargo build --workspace --exclude aiwatch-ebpf --all-targets",
        &mut build,
    )? {
        return Ok(code);
    }
    let agent = workspace.agent_binary(Profile::Debug);
    anyhow::ensure!(
        agent.exists(),
        "the build succeeded but left no agent binary at {}",
        agent.display()
    );
    crate::manuals::write(&agent)?;
    // A whole run includes the image test, which needs the static release
    // agent: minutes of building. It is built from here, beside the tests,
    // at the lowest CPU priority: the privileged tests leave the CPUs idle
    // much of the time while they wait for events, and the image test then
    // finds it built instead of building it alone.
    let static_build = if args.is_empty() {
        let (child, log) = crate::image::spawn_static_build(workspace)?;
        println!(
            "xtask: building the static agent beside the tests (output in {})",
            log.display()
        );
        Some((child, log))
    } else {
        None
    };

    let mut tests = workspace.cargo();
    tests.arg("test");
    let cargo_args = args.split(|arg| arg == "--").next().unwrap_or_default();
    if !selects_packages(cargo_args) {
        tests.args(["--workspace", "--exclude", EBPF_PACKAGE]);
    }
    if !cargo_args.iter().any(|arg| arg == "--no-fail-fast") {
        // Run every test executable: one failing crate must not hide another's results.
        tests.arg("--no-fail-fast");
    }
    let runner = root_prefix("the privileged tests")?;
    if !runner.is_empty() {
        let runner_toml = serde_json::to_string(&runner).context("quoting the test runner")?;
        tests
            .arg("--config")
            .arg(format!("target.'cfg(unix)'.runner = {runner_toml}"));
    }
    tests
        .args(args)
        .env("AIWATCH_BIN", &agent)
        .env("AIWATCH_PYTHON", venv.python())
        .env("AIWATCH_VENV", &venv.dir)
        .env("AIWATCH_REPO", &workspace.root);
    let hold = crate::tracepoint_hold::TracepointHold::open();
    let tested = run_numbered(2, "cargo test", &mut tests);
    drop(hold);
    if let Some((mut child, log)) = static_build {
        // The image test waited for it; a run that stopped early did not.
        match child.try_wait() {
            Ok(Some(status)) if !status.success() => {
                eprintln!(
                    "xtask: the static agent's build failed ({status}); its output is in {}",
                    log.display()
                );
            }
            Ok(Some(_)) => {}
            _ => {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
    if let Some(code) = tested? {
        return Ok(code);
    }
    println!("xtask: build and tests passed");
    Ok(ExitCode::SUCCESS)
}

/// Whether the cargo arguments pick packages themselves, so `--workspace`
/// must not be added.
fn selects_packages(cargo_args: &[String]) -> bool {
    cargo_args.iter().any(|arg| {
        arg == "-p"
            || arg.starts_with("--package")
            || arg.starts_with("--manifest-path")
            || (arg.starts_with("-p") && !arg.starts_with("--"))
    })
}

/// Runs step `number`; `Some(exit code)` when it failed, after saying which.
fn run_numbered(number: u8, what: &str, command: &mut Command) -> anyhow::Result<Option<ExitCode>> {
    println!("xtask: step {number}/2: {what}");
    let status = command
        .status()
        .with_context(|| format!("cannot start {what}"))?;
    if status.success() {
        return Ok(None);
    }
    eprintln!("xtask: step {number}/2 failed: {what} ({status})");
    let code = status
        .code()
        .and_then(|code| u8::try_from(code).ok())
        .filter(|code| *code != 0)
        .unwrap_or(1);
    Ok(Some(ExitCode::from(code)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|arg| (*arg).to_owned()).collect()
    }

    #[test]
    fn package_flags_in_every_spelling_select_packages() {
        for args in [
            &["-p", "aiwatch"][..],
            &["-paiwatch"],
            &["--package", "aiwatch"],
            &["--package=aiwatch"],
            &["--manifest-path", "agent/Cargo.toml"],
        ] {
            assert!(selects_packages(&strings(args)), "{args:?}");
        }
    }

    #[test]
    fn filters_and_other_flags_do_not_select_packages() {
        assert!(!selects_packages(&strings(&[
            "deploy",
            "--lib",
            "--no-fail-fast"
        ])));
    }
}
