//! `cargo xtask run`: provisions the build and the kernel mounts, builds the
//! agent (release by default) and replaces xtask with `aiwatch run ARGS...`
//! as root. Because of the `exec`, signals reach the agent directly and its
//! exit status is the command's.

use std::{os::unix::process::CommandExt as _, process::ExitCode};

use anyhow::Context as _;

use crate::{
    privilege::as_root,
    provision::{self, Scope},
    workspace::{Profile, Workspace},
};

/// Builds and execs the agent; returns only on failure.
pub fn run(workspace: &Workspace, profile: Profile, args: &[String]) -> anyhow::Result<ExitCode> {
    provision::setup(workspace, Scope::Run)?;
    workspace.build_agent(profile)?;
    let binary = workspace.agent_binary(profile);
    let mut agent = as_root(&binary, "`aiwatch run` (it loads eBPF programs)")?;
    agent.arg("run").args(args);
    println!("xtask: running {} run {}", binary.display(), args.join(" "));
    let error = agent.exec();
    Err(error).with_context(|| format!("cannot start {}", binary.display()))
}
