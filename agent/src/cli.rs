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
    /// Print the running agent's inventory of workloads, models, GPUs and secrets.
    Inventory(InventoryArgs),
    /// Inspect and manage learned behaviour profiles.
    Profile(ProfileArgs),
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

#[derive(Debug, clap::Args)]
pub struct InventoryArgs {
    /// The running agent's HTTP listener.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    pub listen: SocketAddr,
}

#[derive(Debug, clap::Args)]
pub struct ProfileArgs {
    /// The agent's state directory (profiles live in its `profiles/`).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/aiwatch")]
    pub state_dir: PathBuf,
    #[command(subcommand)]
    pub action: ProfileAction,
}

#[derive(Debug, Subcommand)]
pub enum ProfileAction {
    /// List the learned profiles and their states.
    List,
    /// Show one profile: what it learned and its rates.
    Show {
        workload: String,
    },
    /// Forget a profile: the workload learns again.
    Reset {
        workload: String,
    },
    /// Write a profile as JSON, or as a policy that allowlists what it learned.
    Export {
        workload: String,
        #[arg(long)]
        as_policy: bool,
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Load a profile exported from another host.
    Import {
        file: PathBuf,
    },
    /// Stop a profile from learning or changing state.
    Freeze {
        workload: String,
    },
    Unfreeze {
        workload: String,
    },
    /// Set a profile's mode: learning, enforcing or drifting.
    Mode {
        workload: String,
        mode: String,
    },
}
