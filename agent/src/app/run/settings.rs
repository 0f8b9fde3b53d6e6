//! The configuration `aiwatch run` starts with: the file (or the embedded
//! default), the command line's overrides, and the globs of the agent's own
//! files.

use std::path::Path;

use crate::app::config::{Config, ConfigError};

/// Command-line settings that override the configuration file.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub events: Option<String>,
    pub alerts: Option<String>,
    pub listen: Option<std::net::SocketAddr>,
    /// Load the kernel programs as the benchmark floor (`--bench-floor`).
    pub bench_floor: bool,
}

pub fn resolve_config(
    config_path: Option<&Path>,
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let mut config = match config_path {
        Some(path) => Config::load(path)?,
        None => Config::embedded(),
    };
    if let Some(events) = &overrides.events {
        config.events = Some(events.clone());
    }
    if let Some(alerts) = &overrides.alerts {
        config.alerts = alerts.clone();
    }
    if let Some(listen) = overrides.listen {
        config.listen = listen;
    }
    config.bench_floor = overrides.bench_floor;
    config.assets.agent_files = agent_files(config_path, &config);
    config.assets.agent_pid = Some(std::process::id());
    Ok(config)
}

/// Globs of the files that make this agent what it is: its executable, its
/// configuration, its policies and its state. Writes to them by anything
/// but the agent are an attempt on it (`policies/self.yaml`).
fn agent_files(config_path: Option<&Path>, config: &Config) -> Vec<String> {
    let absolute = |path: &Path| std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let literal = |path: &Path| globset::escape(&absolute(path).to_string_lossy());
    let tree = |path: &Path| format!("{}/**", literal(path).trim_end_matches('/'));
    let mut globs = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        globs.push(literal(&exe));
    }
    if let Some(path) = config_path {
        globs.push(literal(path));
    }
    for policy in &config.policies {
        globs.push(literal(policy));
        if policy.is_dir() {
            globs.push(tree(policy));
        }
    }
    globs.push(tree(&config.state_dir));
    globs
}
