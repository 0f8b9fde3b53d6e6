//! The command line: `aiwatch run` and the offline tools.
//!
//! Parsing is clap's job; `run` resolves the parsed flags with the
//! configuration file into the runtime [`crate::config::Config`].

use std::{net::SocketAddr, path::PathBuf};

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "aiwatch",
    version,
    about = "eBPF security monitor for AI workloads"
)]
pub struct Cli {
    /// Log verbosity: error, warn, info, debug or trace.
    #[arg(long, global = true, default_value = "info", env = "AIWATCH_LOG")]
    pub log_level: log::LevelFilter,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the kernel programs and monitor this host (needs root).
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Configuration file (YAML); without it the embedded default is used.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Write every event as JSON lines to PATH, or `-` for standard output.
    #[arg(long, value_name = "PATH|-")]
    pub events: Option<String>,
    /// Write alerts as JSON lines to PATH, or `-` for standard output (the default).
    #[arg(long, value_name = "PATH|-")]
    pub alerts: Option<String>,
    /// Address of the HTTP listener (/metrics, /healthz, /readyz, /inventory).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}
