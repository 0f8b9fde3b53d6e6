//! `cargo xtask`: the developer entry point of aiwatch.
//!
//! `cargo xtask run` and `cargo xtask test` are the two commands a developer
//! (and CI) needs: each provisions what is missing on the machine first
//! (`provision`, `python`), then builds and runs. Every provisioning step is
//! checked before it acts, so a warm machine pays a few hundred milliseconds.
//!
//! This module owns the command line and the dispatch; each subcommand lives
//! in its own module.

mod bench;
mod debian;
mod fuzz;
mod image;
mod manuals;
mod privilege;
mod provision;
mod python;
mod run;
mod soak;
mod test;
mod tracepoint_hold;
mod vm;
mod workspace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::provision::Scope;
use crate::workspace::{Profile, Workspace};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Developer tasks for aiwatch: provision the machine, build, run and test"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what is missing to build (and with --tests, to test) aiwatch.
    Setup {
        /// Also provision the tests' packages and Python environment.
        #[arg(long)]
        tests: bool,
    },
    /// Provision the build tools, then build the aiwatch agent.
    Build {
        #[arg(long)]
        release: bool,
    },
    /// Build the agent (release by default) and run `aiwatch run ARGS...` as root.
    Run {
        /// Build and run the release binary (the default).
        #[arg(long, conflicts_with = "debug")]
        release: bool,
        /// Build and run the debug binary.
        #[arg(long)]
        debug: bool,
        /// Arguments for `aiwatch run`, after `--`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Provision everything, build the workspace and run its tests.
    Test {
        /// Arguments for `cargo test` (a test name filter, `-p CRATE`, `-- --nocapture`, ...).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build the agent's OCI image (static musl binary, FROM scratch) with podman.
    Image,
    /// Run the attack suite (tests/attacks/) against the agent and print its scoreboard.
    Attacks,
    /// Measure what the agent costs (no agent / floor / agent), write docs/benchmarks.md.
    Bench(bench::Options),
    /// Run the agent under storms and AI workloads for N minutes; judge its RSS, fds and losses.
    Soak(soak::Options),
    /// Run the fuzz targets of fuzz/ (the agent's parsers) for a fixed time each.
    Fuzz(fuzz::Options),
    /// Run the agent and the privileged suites on Debian's 6.1 and 6.12 kernels in QEMU guests.
    Vm(vm::Options),
    /// Inside a `cargo xtask vm` guest: the guest's init.
    #[command(hide = true)]
    VmGuestInit,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.task) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(task: Task) -> anyhow::Result<ExitCode> {
    match task {
        Task::Bench(options) => bench::bench(&Workspace::prepare()?, &options),
        Task::Soak(options) => soak::soak(&Workspace::prepare()?, &options),
        Task::Setup { tests } => {
            let workspace = Workspace::prepare()?;
            let scope = if tests { Scope::Tests } else { Scope::Run };
            provision::setup(&workspace, scope)?;
            Ok(ExitCode::SUCCESS)
        }
        Task::Build { release } => {
            let workspace = Workspace::prepare()?;
            provision::setup(&workspace, Scope::Build)?;
            let profile = Profile::from_release_flag(release);
            workspace.build_agent(profile)?;
            manuals::write(&workspace.agent_binary(profile))?;
            Ok(ExitCode::SUCCESS)
        }
        Task::Run { debug, args, .. } => {
            let workspace = Workspace::prepare()?;
            run::run(&workspace, Profile::from_release_flag(!debug), &args)
        }
        Task::Test { args } => test::test(&Workspace::prepare()?, &args),
        Task::Vm(options) => vm::vm(&Workspace::prepare()?, &options),
        Task::Fuzz(options) => {
            let workspace = Workspace::prepare()?;
            provision::setup(&workspace, Scope::Build)?;
            fuzz::fuzz(&workspace, &options)
        }
        Task::VmGuestInit => vm::guest_init(),
        Task::Image => {
            image::image(&Workspace::prepare()?)?;
            Ok(ExitCode::SUCCESS)
        }
        Task::Attacks => {
            let args = [
                "-p",
                "aiwatch-tests",
                "--test",
                "attacks",
                "--",
                "--nocapture",
            ];
            let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
            test::test(&Workspace::prepare()?, &args)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Task {
        let argv = std::iter::once("xtask").chain(args.iter().copied());
        Cli::try_parse_from(argv)
            .expect("the command line parses")
            .task
    }

    #[test]
    fn test_arguments_keep_a_second_separator_for_the_test_executables() {
        let Task::Test { args } = parse(&["test", "--", "deploy", "--", "--nocapture"]) else {
            panic!("not the test task");
        };
        assert_eq!(args, ["deploy", "--", "--nocapture"]);
    }

    #[test]
    fn test_arguments_may_start_with_a_cargo_flag() {
        let Task::Test { args } = parse(&["test", "--", "-p", "aiwatch-tests"]) else {
            panic!("not the test task");
        };
        assert_eq!(args, ["-p", "aiwatch-tests"]);
    }

    #[test]
    fn run_passes_agent_flags_through_and_defaults_to_release() {
        let Task::Run { debug, args, .. } = parse(&["run", "--", "--events", "-"]) else {
            panic!("not the run task");
        };
        assert!(!debug);
        assert_eq!(args, ["--events", "-"]);
    }

    #[test]
    fn attacks_takes_no_arguments() {
        assert!(matches!(parse(&["attacks"]), Task::Attacks));
        assert!(Cli::try_parse_from(["xtask", "attacks", "extra"]).is_err());
    }

    #[test]
    fn run_refuses_release_and_debug_together() {
        let argv = ["xtask", "run", "--release", "--debug"];
        assert!(Cli::try_parse_from(argv).is_err());
    }
}
