//! The command line: `aiwatch run` and the offline tools.
//!
//! Parsing is clap's job; `run` resolves the parsed flags with the
//! configuration file into the runtime [`crate::app::config::Config`].

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
    /// Validate policies, and run the tests they carry.
    Policy(PolicyArgs),
    /// Evaluate recorded events (the `--events` format) offline: no root, no kernel.
    Replay(ReplayArgs),
    /// The global kill switch: `off` turns every kill and deny into a report.
    Enforcement(EnforcementArgs),
    /// Follow the running agent's alerts, one line each (needs root).
    Alerts(FollowArgs),
    /// Follow the running agent's events, one line each (needs root).
    Events(FollowArgs),
    /// A live view of the running agent: workloads, latest alerts, health.
    Top(TopArgs),
    /// Print a shell completion script: bash, zsh, fish, elvish or powershell.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff), or write one page per command into a folder.
    Man {
        /// Write `aiwatch.1` and a page for every subcommand
        /// (`aiwatch-inventory.1`, `aiwatch-profile-list.1`, ...) here.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// What `aiwatch alerts|events --follow` shows.
#[derive(Debug, clap::Args)]
pub struct FollowArgs {
    /// Keep reading from the running agent (the only mode: past alerts and
    /// events are in the agent's files).
    #[arg(long, short)]
    pub follow: bool,
    /// The agent's stream socket (`stream_socket` in the configuration).
    #[arg(long, value_name = "PATH", default_value = crate::sink::stream::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Read the stream through the agent's listener instead of the socket:
    /// `http://HOST:PORT` (the agent's `remote_stream` must be set).
    #[arg(long, value_name = "URL")]
    pub remote: Option<String>,
    /// The file holding the remote stream's bearer token (with `--remote`).
    #[arg(long, value_name = "PATH", requires = "remote")]
    pub token_file: Option<PathBuf>,
    /// Only this workload (name or id).
    #[arg(long, short)]
    pub workload: Option<String>,
    /// Only events of this kind (`exec`, `open`, ...).
    #[arg(long, short)]
    pub kind: Option<String>,
    /// Only alerts of this severity or higher.
    #[arg(long, short)]
    pub severity: Option<crate::alert::Severity>,
    /// Only this rule (alerts).
    #[arg(long, short)]
    pub rule: Option<String>,
    /// Only this process id.
    #[arg(long, short)]
    pub pid: Option<u32>,
    /// `text` (one readable line; the default on a terminal) or `json`
    /// (the default in a pipe).
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<LineFormat>,
    /// First print the latest N alerts that pass the filters, of the 64
    /// the agent keeps (default: 10 on a terminal, 0 in a pipe). Alerts
    /// only: past events are not kept.
    #[arg(long, short = 'n', value_name = "N")]
    pub last: Option<usize>,
}

/// What `aiwatch top` reads.
#[derive(Debug, clap::Args)]
pub struct TopArgs {
    /// The running agent's HTTP listener (metrics and inventory).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    pub listen: SocketAddr,
    /// The agent's stream socket, for the latest alerts (root only).
    #[arg(long, value_name = "PATH", default_value = crate::sink::stream::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Read the latest alerts through the listener's remote stream with the
    /// bearer token in this file, instead of the socket (no root needed).
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Print one table and exit (what happens anyway when stdout is not a
    /// terminal).
    #[arg(long)]
    pub once: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LineFormat {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct EnforcementArgs {
    /// The agent's state directory, where the switch is kept.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/aiwatch")]
    pub state_dir: PathBuf,
    /// `on`, `off` or `status`.
    #[arg(value_parser = ["on", "off", "status"])]
    pub switch: String,
}

#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub action: PolicyAction,
}

#[derive(Debug, Subcommand)]
pub enum PolicyAction {
    /// Validate policy files or folders; errors are reported as file:line:column.
    Check {
        paths: Vec<PathBuf>,
        /// Check the files alone, without the embedded default rule pack.
        #[arg(long)]
        no_default_pack: bool,
    },
    /// Run the `tests:` the policy files carry (all loaded files when none given).
    Test {
        paths: Vec<PathBuf>,
        #[arg(long)]
        no_default_pack: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Policy files or folders, on top of the default pack.
    #[arg(long = "policy", value_name = "PATH")]
    pub policies: Vec<PathBuf>,
    /// Leave the embedded default rule pack out.
    #[arg(long)]
    pub no_default_pack: bool,
    /// Also run anomaly detection, with the clock taken from the events.
    #[arg(long)]
    pub anomaly: bool,
    /// Configuration whose `anomaly:` section tunes the detectors.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Start from the profiles saved in this folder instead of learning afresh.
    #[arg(long, value_name = "DIR")]
    pub profiles: Option<PathBuf>,
    /// Recorded events, one JSON object per line; `-` or nothing for stdin.
    pub events: Option<PathBuf>,
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
    /// Benchmarks only: attach every probe with its program reduced to
    /// `return 0`, to measure the cost of the hooks alone.
    #[arg(long, hide = true)]
    pub bench_floor: bool,
}

#[derive(Debug, clap::Args)]
pub struct InventoryArgs {
    /// The running agent's HTTP listener.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    pub listen: SocketAddr,
    /// table, wide, json or yaml (default: table on a terminal, else json).
    #[arg(long, short)]
    pub output: Option<crate::app::terminal::OutputFormat>,
    /// Show one workload in detail (name or id).
    #[arg(long, short, value_name = "WORKLOAD")]
    pub workload: Option<String>,
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
    List {
        /// table, wide, json or yaml (default: table on a terminal, else json).
        #[arg(long, short)]
        output: Option<crate::app::terminal::OutputFormat>,
    },
    /// Show one profile: what it learned and its rates.
    Show {
        workload: String,
        /// table, wide, json or yaml (default: table on a terminal, else json).
        #[arg(long, short)]
        output: Option<crate::app::terminal::OutputFormat>,
    },
    /// Forget a profile: the workload learns again.
    Reset { workload: String },
    /// Write a profile as JSON, or as a policy that allowlists what it learned.
    Export {
        workload: String,
        #[arg(long)]
        as_policy: bool,
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Load a profile exported from another host.
    Import { file: PathBuf },
    /// Stop a profile from learning or changing state.
    Freeze { workload: String },
    /// Let a frozen profile learn and change state again.
    Unfreeze { workload: String },
    /// Set a profile's mode: learning, enforcing or drifting.
    Mode { workload: String, mode: String },
    /// Lock an enforcing profile: kill or deny, in the kernel where it can,
    /// what the workload never did while learning.
    Enforce {
        workload: String,
        /// Print the lock and where each part is enforced; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Remove the workload's lock.
        #[arg(long, conflicts_with = "dry_run")]
        remove: bool,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every subcommand, at every depth, has a help line in its parent's
    /// `--help`.
    #[test]
    fn every_subcommand_has_a_help_line() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for sub in command.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    missing.push(path.clone());
                }
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "aiwatch", &mut missing);
        assert!(missing.is_empty(), "no help line: {missing:?}");
    }
}
