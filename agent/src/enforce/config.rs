//! The agent's `enforcement:` configuration section.

use std::{net::SocketAddr, path::PathBuf};

use serde::Deserialize;

use crate::alert::EnforcementMode;

/// File name, under `state_dir`, of the kill switch `aiwatch enforcement
/// off` sets: while it exists nothing is killed or denied.
pub const SWITCH_OFF_FILE: &str = "enforcement-off";

/// File name, under `state_dir`, of the running agent's pid: the agent
/// `aiwatch enforcement on|off` tells with SIGHUP.
pub const PID_FILE: &str = "aiwatch.pid";

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EnforcementConfig {
    /// The mode of policy files that do not set `enforcement:` themselves.
    pub mode: EnforcementMode,
    /// The global kill switch: false turns every kill and deny into a
    /// "would-kill"/"would-deny" report, whatever the files say.
    pub enabled: bool,
    /// Executables never killed, whatever a rule says (matched by device
    /// and inode, resolved at start-up and at each reload).
    pub never_touch: Vec<PathBuf>,
    /// Kills per cgroup within `kill_window_secs` before the kernel stops
    /// killing there and raises a critical alert instead; 0: no limit.
    pub kill_budget: u64,
    pub kill_window_secs: u64,
    /// Accelerator deny (`cgroup/dev`).
    pub accelerators: AcceleratorDeny,
    /// Workloads locked to their learned profile at start-up, as `aiwatch
    /// profile enforce` locks them (`kind/name` or `name`).
    pub lock_profiles: Vec<String>,
    /// The DNS servers (`address:port`) the agent resolves the names of
    /// egress allowlists through; empty: the host's (`/etc/resolv.conf`).
    pub egress_name_servers: Vec<SocketAddr>,
}

/// Who may open accelerator devices (the GPU majors of the asset table)
/// once `deny` is on: declared workloads' processes and containers, the
/// executables listed here, and nobody else. Discovery alone never grants.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AcceleratorDeny {
    /// Off by default: GPU opens outside the allowlist are then neither
    /// refused nor reported as would-deny.
    pub deny: bool,
    /// Executables allowed besides declared workloads (matched by device
    /// and inode, resolved at start-up and at each reload).
    pub allow_executables: Vec<PathBuf>,
}

impl Default for EnforcementConfig {
    fn default() -> Self {
        Self {
            // Nothing is killed out of the box: rules report what they
            // would have done until a file or this key says `enforce`.
            mode: EnforcementMode::Audit,
            enabled: true,
            never_touch: Vec::new(),
            lock_profiles: Vec::new(),
            // A runaway rule kills at most this many processes per cgroup
            // each minute.
            kill_budget: 20,
            kill_window_secs: 60,
            accelerators: AcceleratorDeny::default(),
            egress_name_servers: Vec::new(),
        }
    }
}
