//! The agent's configuration: a YAML file over embedded defaults.
//!
//! Parsing is the cheap first stage (`Config`, plain data, every field
//! defaulted and documented in `config/default.yaml`); `run` resolves it with
//! the command line into what the runtime uses.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use aiwatch_common::{
    FAMILY_FILE, FAMILY_GPU, FAMILY_LLM, FAMILY_NET, FAMILY_PRIVILEGE, FAMILY_PROCESS,
};
use serde::Deserialize;

use crate::{
    analyze::{runtime::RuntimeConfig, WorkloadsConfig},
    anomaly::AnomalyConfig,
    enforce::EnforcementConfig,
    enrich::{assets::AssetConfig, names::NameLimits, redact::RedactConfig, TableLimits},
    kernel::tls::CaptureConfig,
    llm::LlmConfig,
    metrics::DEFAULT_MAX_WORKLOAD_SERIES,
    sink::{syslog::SyslogConfig, webhook::WebhookConfig},
};

/// The embedded defaults, also the documentation of every key.
pub const DEFAULT_CONFIG: &str = include_str!("../../config/default.yaml");

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    pub events: Option<String>,
    pub alerts: String,
    pub sink_max_bytes: u64,
    pub sink_keep_files: u32,
    /// Group that may read the events and alerts files (0640); unset, they
    /// are 0600.
    pub sink_group: Option<String>,
    pub families: Families,
    pub queue_capacity: usize,
    /// Bytes the records in that queue may hold, strings and captures
    /// included (default 64 MiB): see `ingest::queue`.
    pub queue_max_bytes: usize,
    pub process_table: TableLimits,
    /// Bounds of the DNS name cache (`docs/events.md`, "Names of peers").
    pub names: NameLimits,
    pub state_dir: PathBuf,
    /// The unix socket of `aiwatch alerts|events --follow` (root only);
    /// `null` turns the live stream off.
    pub stream_socket: Option<PathBuf>,
    /// The live stream through the listener (`/stream/alerts`,
    /// `/stream/events`), for `--follow --remote`; off when unset.
    pub remote_stream: Option<RemoteStreamConfig>,
    pub max_workload_series: usize,
    pub workloads: WorkloadsConfig,
    /// Container identity from the runtimes' APIs (docs/deploy.md,
    /// "Container runtimes and Kubernetes identity").
    pub container_runtimes: RuntimeConfig,
    pub assets: AssetConfig,
    pub anomaly: AnomalyConfig,
    /// Rule actions: audit or enforce, the kill switch and its rails
    /// (docs/enforcement.md).
    pub enforcement: EnforcementConfig,
    /// POST alerts to a webhook (off unless `url` is set).
    pub webhook: Option<WebhookConfig>,
    /// Send alerts to the local syslog (RFC 5424) when set.
    pub syslog: Option<SyslogConfig>,
    /// Policy files or folders loaded on top of the default rule pack.
    pub policies: Vec<PathBuf>,
    /// Load the embedded default AI rule pack.
    pub default_policies: bool,
    /// Seconds between summaries of open TCP connections; 0 turns them off.
    pub tcp_summary_interval_secs: u64,
    /// Report every process's file operations, not only tracked processes'
    /// and interesting paths (tests and debugging: costly on busy hosts).
    pub trace_all_files: bool,
    /// How often per-process GPU ioctl counts are reported, in seconds.
    pub gpu_ioctl_interval_secs: u64,
    /// Seconds between `file_access` reports of tracked processes' folded
    /// plain reads.
    pub file_access_interval_secs: u64,
    /// Extra patterns of secrets redacted from argv (docs/security.md).
    pub redact: RedactConfig,
    /// The kernel's capture of LLM traffic: clear text of TLS calls
    /// (docs/llm.md, "Capture").
    pub llm_capture: CaptureConfig,
    /// LLM traffic: content capture and reassembly bounds (docs/llm.md).
    pub llm: LlmConfig,
    /// The benchmark floor: the kernel programs are attached but return at
    /// once. Only the hidden `--bench-floor` flag sets it, never a file.
    #[serde(skip)]
    pub bench_floor: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            events: None,
            alerts: "-".into(),
            sink_max_bytes: 100 * 1024 * 1024,
            sink_keep_files: 5,
            sink_group: None,
            families: Families::default(),
            queue_capacity: 65_536,
            queue_max_bytes: 64 << 20,
            process_table: TableLimits::default(),
            names: NameLimits::default(),
            state_dir: PathBuf::from("/var/lib/aiwatch"),
            stream_socket: Some(PathBuf::from(crate::sink::stream::DEFAULT_SOCKET)),
            remote_stream: None,
            max_workload_series: DEFAULT_MAX_WORKLOAD_SERIES,
            workloads: WorkloadsConfig::default(),
            container_runtimes: RuntimeConfig::default(),
            assets: AssetConfig::default(),
            anomaly: AnomalyConfig::default(),
            enforcement: EnforcementConfig::default(),
            webhook: None,
            syslog: None,
            policies: Vec::new(),
            default_policies: true,
            tcp_summary_interval_secs: 60,
            trace_all_files: false,
            gpu_ioctl_interval_secs: 10,
            file_access_interval_secs: 10,
            redact: RedactConfig::default(),
            llm_capture: CaptureConfig::default(),
            llm: LlmConfig::default(),
            bench_floor: false,
        }
    }
}

/// Who may read the live stream through the listener (docs/security.md).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RemoteStreamConfig {
    /// File holding the bearer token readers present; read at start-up so
    /// that the token stays out of the configuration and the command line.
    pub token_file: PathBuf,
    /// Remote readers at once (default 4): each holds one of the listener's
    /// general connection slots for as long as it reads.
    #[serde(default = "RemoteStreamConfig::default_max_readers")]
    pub max_readers: usize,
    /// Serve the stream on a listener that is not on loopback, in clear
    /// text (default false: refused at start-up). Only behind something
    /// that protects the wire: a NetworkPolicy, a TLS-terminating proxy.
    #[serde(default)]
    pub insecure: bool,
}

impl RemoteStreamConfig {
    fn default_max_readers() -> usize {
        4
    }
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Families {
    pub process: bool,
    pub file: bool,
    pub network: bool,
    pub privilege: bool,
    pub gpu: bool,
    /// Clear text of TLS calls (uprobes on libssl), for LLM traffic.
    pub llm: bool,
}

impl Default for Families {
    fn default() -> Self {
        Self {
            process: true,
            file: true,
            network: true,
            privilege: true,
            gpu: true,
            llm: true,
        }
    }
}

impl Families {
    /// The `FAMILY_*` bits for the kernel side.
    pub fn bits(&self) -> u32 {
        [
            (self.process, FAMILY_PROCESS),
            (self.file, FAMILY_FILE),
            (self.network, FAMILY_NET),
            (self.privilege, FAMILY_PRIVILEGE),
            (self.gpu, FAMILY_GPU),
            (self.llm, FAMILY_LLM),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |bits, (_, bit)| bits | bit)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
}

impl Config {
    /// Where learned behaviour profiles are kept.
    pub fn profile_dir(&self) -> PathBuf {
        self.state_dir.join("profiles")
    }

    /// The policy files and folders the agent loads and watches: the
    /// configured ones, then the locked profiles' folder
    /// (`aiwatch profile enforce`).
    pub fn policy_paths(&self) -> Vec<PathBuf> {
        let mut paths = self.policies.clone();
        paths.push(
            self.state_dir
                .join(crate::anomaly::lock::LOCKED_PROFILES_DIR),
        );
        paths
    }

    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        serde_saphyr::from_str(text).map_err(|err| ConfigError::Parse {
            path: origin.to_owned(),
            message: first_line(&err.to_string()),
        })
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, &path.display().to_string())
    }

    pub fn embedded() -> Config {
        Config::parse(DEFAULT_CONFIG, "embedded default").unwrap_or_default()
    }
}

/// The parser's one-line diagnosis, without its source excerpt:
/// `error: line 2 column 18: invalid boolean` → `line 2 column 18: invalid boolean`.
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message).trim();
    line.strip_prefix("error: ").unwrap_or(line).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_file_matches_the_defaults() {
        let parsed = Config::parse(DEFAULT_CONFIG, "default.yaml").expect("embedded config parses");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn partial_files_override_only_what_they_set() {
        let c = Config::parse("alerts: /tmp/a.jsonl\nfamilies: {file: false}\n", "t").unwrap();
        assert_eq!(c.alerts, "/tmp/a.jsonl");
        assert!(!c.families.file && c.families.process);
        assert_eq!(c.families.bits() & FAMILY_FILE, 0);
        assert_eq!(c.listen, Config::default().listen);
    }

    #[test]
    fn unknown_keys_and_bad_types_are_errors_with_positions() {
        let err = Config::parse("listen: 127.0.0.1:9464\nfamilys: {}\n", "c.yaml").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("c.yaml:") && text.contains("familys"),
            "{text}"
        );
        let err = Config::parse("queue_capacity: lots\n", "c.yaml").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("c.yaml: line 1"), "{text}");
        assert_eq!(text.lines().count(), 1, "one line: {text}");
    }
}
