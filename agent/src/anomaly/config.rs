//! Configuration of the anomaly detectors: learning window, caps, rate bands,
//! default severities and per-workload tuning. Every field has a default
//! (`#[serde(default)]`), documented in `docs/anomaly.md`.

use std::{collections::BTreeMap, net::IpAddr, path::Path};

use globset::{Glob, GlobMatcher};
use serde::{Deserialize, Serialize};

use crate::alert::Severity;

use super::AnomalyError;

/// What a profile does with what it sees.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Everything seen is learned; nothing is flagged.
    #[default]
    Learning,
    /// Departures are flagged; nothing new is learned.
    Enforcing,
    /// Departures are flagged once and then learned, so the profile follows
    /// slow change.
    Drifting,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Learning, Mode::Enforcing, Mode::Drifting];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Learning => "learning",
            Mode::Enforcing => "enforcing",
            Mode::Drifting => "drifting",
        }
    }

    pub fn parse(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The detectors, by the name used in `anomaly.<name>` rule ids and in tuning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Detector {
    NewExecutable,
    NewProcessPair,
    NewPeer,
    NewListenPort,
    NewFileClassPath,
    NewGpuDevice,
    RateSpawns,
    RateEgressBytes,
    RateModelReadBytes,
    RateDistinctPeers,
    RateGpuIoctls,
}

impl Detector {
    pub const ALL: [Detector; 11] = [
        Detector::NewExecutable,
        Detector::NewProcessPair,
        Detector::NewPeer,
        Detector::NewListenPort,
        Detector::NewFileClassPath,
        Detector::NewGpuDevice,
        Detector::RateSpawns,
        Detector::RateEgressBytes,
        Detector::RateModelReadBytes,
        Detector::RateDistinctPeers,
        Detector::RateGpuIoctls,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Detector::NewExecutable => "new-executable",
            Detector::NewProcessPair => "new-process-pair",
            Detector::NewPeer => "new-peer",
            Detector::NewListenPort => "new-listen-port",
            Detector::NewFileClassPath => "new-file-class-path",
            Detector::NewGpuDevice => "new-gpu-device",
            Detector::RateSpawns => "rate.spawns",
            Detector::RateEgressBytes => "rate.egress-bytes",
            Detector::RateModelReadBytes => "rate.model-read-bytes",
            Detector::RateDistinctPeers => "rate.distinct-peers",
            Detector::RateGpuIoctls => "rate.gpu-ioctls",
        }
    }

    /// The alert rule id: `anomaly.<name>`.
    pub fn rule_id(self) -> String {
        format!("anomaly.{}", self.name())
    }

    pub fn parse(name: &str) -> Option<Detector> {
        let name = name.strip_prefix("anomaly.").unwrap_or(name);
        Detector::ALL.into_iter().find(|d| d.name() == name)
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn default_severity(self) -> Severity {
        match self {
            Detector::NewExecutable => Severity::High,
            Detector::NewProcessPair => Severity::Medium,
            Detector::NewPeer => Severity::Medium,
            Detector::NewListenPort => Severity::High,
            Detector::NewFileClassPath => Severity::Medium,
            Detector::NewGpuDevice => Severity::Low,
            Detector::RateSpawns => Severity::Medium,
            Detector::RateEgressBytes => Severity::High,
            Detector::RateModelReadBytes => Severity::Medium,
            Detector::RateDistinctPeers => Severity::Medium,
            Detector::RateGpuIoctls => Severity::Medium,
        }
    }

    /// `new-gpu-device` is off by default: a workload that starts using the
    /// GPU it was given is rarely a threat, and the GPU ioctl rate covers abuse.
    pub fn enabled_by_default(self) -> bool {
        !matches!(self, Detector::NewGpuDevice)
    }
}

/// Where the host names its DNS resolvers.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The nameservers of a resolv.conf. A missing or unreadable file means
/// none (one log line): every DNS query is then an ordinary peer.
pub fn host_resolvers(path: &Path) -> Vec<IpAddr> {
    let parsed = std::fs::read(path)
        .map_err(|err| err.to_string())
        .and_then(|bytes| resolv_conf::Config::parse(bytes).map_err(|err| err.to_string()));
    match parsed {
        Ok(config) => config.nameservers.into_iter().map(IpAddr::from).collect(),
        Err(err) => {
            log::warn!(
                "anomaly: cannot read the DNS resolvers of {}: {err}; lookups count as peers",
                path.display()
            );
            Vec::new()
        }
    }
}

/// Top-level anomaly configuration (the `anomaly:` section of the agent config).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnomalyConfig {
    /// Master switch.
    pub enabled: bool,
    /// Event time a new profile learns before it enforces (seconds).
    pub learning_window_secs: u64,
    /// Learning does not end on time alone before this many events were seen.
    pub learning_min_events: u64,
    /// When set, learning also ends after this many events, even before the window.
    pub learning_max_events: Option<u64>,
    /// Mode a profile enters when learning ends: `enforcing` or `drifting`.
    pub after_learning: Mode,
    /// Profiles kept at most; workloads beyond this are not profiled (counted).
    pub max_profiles: usize,
    /// Alerts one workload may raise per minute; the rest are counted and dropped.
    pub max_alerts_per_minute: u32,
    pub caps: Caps,
    pub rates: RateConfig,
    /// Tuning applied to every workload, keyed by detector name.
    pub detectors: BTreeMap<String, DetectorTuning>,
    /// Tuning for workloads whose name matches a glob; later entries win.
    pub workloads: Vec<WorkloadTuning>,
    /// DNS resolvers whose port 53 is the host's plumbing, not a peer: a
    /// workload's name lookups through them are never `new-peer`s (the
    /// `dns` event says what was looked up). Empty: the nameservers of
    /// `/etc/resolv.conf`, read when the engine starts.
    pub dns_resolvers: Vec<IpAddr>,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            enabled: true,
            learning_window_secs: 600,
            learning_min_events: 50,
            learning_max_events: None,
            after_learning: Mode::Enforcing,
            max_profiles: 4096,
            max_alerts_per_minute: 20,
            caps: Caps::default(),
            rates: RateConfig::default(),
            detectors: BTreeMap::new(),
            workloads: Vec::new(),
            dns_resolvers: Vec::new(),
        }
    }
}

/// Upper bounds on what one profile remembers; they bound its size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Caps {
    pub executables: usize,
    pub process_pairs: usize,
    /// Generalised path patterns per asset class.
    pub paths_per_class: usize,
    pub peers: usize,
    pub listen_ports: usize,
    pub gpu_devices: usize,
    /// Novel items remembered as already alerted.
    pub alerted: usize,
    /// Longest learned item in bytes; longer ones are cut and end in `*`.
    pub item_bytes: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            executables: 128,
            process_pairs: 256,
            paths_per_class: 64,
            peers: 256,
            listen_ports: 64,
            gpu_devices: 16,
            alerted: 256,
            item_bytes: 256,
        }
    }
}

impl Caps {
    /// Upper bound of a saved profile in bytes with these caps: every set
    /// full of items of maximal length, with JSON quoting and escaping
    /// (at most 2 bytes per item byte), plus a fixed allowance for the
    /// scalar fields and rate baselines.
    pub fn max_profile_bytes(&self, asset_classes: usize) -> usize {
        let items = self.executables
            + self.process_pairs * 2
            + self.paths_per_class * asset_classes
            + self.peers
            + self.listen_ports
            + self.gpu_devices
            + self.alerted * 2;
        items * (self.item_bytes * 2 + 8) + 16 * 1024
    }
}

/// Rate detectors: robust baseline and band.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateConfig {
    /// Weight of a new minute in the EWMA level and scale (0..1).
    pub ewma_alpha: f64,
    /// Band half-width in robust scale units (MAD-based).
    pub band_width: f64,
    /// Scale never below this fraction of the level, so a perfectly steady
    /// rate still tolerates ordinary jitter.
    pub min_relative_scale: f64,
    /// Consecutive minutes beyond the band before a rate alert.
    pub sustain_minutes: u32,
    /// Minutes of data needed before a rate baseline is used.
    pub min_baseline_minutes: u32,
    /// Absolute floors: a minute counts as an excursion only above these.
    pub floors: RateFloors,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            ewma_alpha: 0.05,
            band_width: 6.0,
            min_relative_scale: 0.25,
            sustain_minutes: 3,
            min_baseline_minutes: 5,
            floors: RateFloors::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateFloors {
    pub spawns_per_min: f64,
    pub egress_bytes_per_min: f64,
    pub model_read_bytes_per_min: f64,
    pub distinct_peers_per_min: f64,
    pub gpu_ioctls_per_min: f64,
}

impl Default for RateFloors {
    fn default() -> Self {
        RateFloors {
            spawns_per_min: 30.0,
            egress_bytes_per_min: 64.0 * 1024.0 * 1024.0,
            model_read_bytes_per_min: 1024.0 * 1024.0 * 1024.0,
            distinct_peers_per_min: 20.0,
            gpu_ioctls_per_min: 20_000.0,
        }
    }
}

/// Overrides for one detector; unset fields keep the defaults.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectorTuning {
    pub enabled: Option<bool>,
    pub severity: Option<Severity>,
    /// Rate detectors: band width in robust scale units.
    pub band_width: Option<f64>,
    /// Rate detectors: absolute floor per minute.
    pub floor: Option<f64>,
    /// Rate detectors: consecutive minutes beyond the band.
    pub sustain_minutes: Option<u32>,
}

/// Tuning for workloads whose name matches `name` (a glob), optionally of one kind.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkloadTuning {
    pub name: String,
    pub kind: Option<String>,
    pub detectors: BTreeMap<String, DetectorTuning>,
}

/// The effective settings of every detector for one workload.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedTuning {
    pub detectors: [ResolvedDetector; Detector::ALL.len()],
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ResolvedDetector {
    pub enabled: bool,
    pub severity: Severity,
    pub band_width: f64,
    pub floor: f64,
    pub sustain_minutes: u32,
}

impl ResolvedTuning {
    pub fn get(&self, detector: Detector) -> &ResolvedDetector {
        &self.detectors[detector.index()]
    }
}

/// The configuration with its globs compiled.
#[derive(Clone, Debug)]
pub struct CompiledConfig {
    pub config: AnomalyConfig,
    workload_matchers: Vec<(GlobMatcher, WorkloadTuning)>,
    /// `dns_resolvers`, or the host's when none are configured.
    pub resolvers: Vec<IpAddr>,
}

impl CompiledConfig {
    pub fn new(config: AnomalyConfig) -> Result<Self, AnomalyError> {
        for name in config
            .detectors
            .keys()
            .chain(config.workloads.iter().flat_map(|w| w.detectors.keys()))
        {
            if Detector::parse(name).is_none() {
                return Err(AnomalyError::Config(format!(
                    "unknown anomaly detector `{name}` in tuning"
                )));
            }
        }
        let mut workload_matchers = Vec::with_capacity(config.workloads.len());
        for tuning in &config.workloads {
            let glob = Glob::new(&tuning.name).map_err(|e| {
                AnomalyError::Config(format!("bad workload glob `{}`: {e}", tuning.name))
            })?;
            workload_matchers.push((glob.compile_matcher(), tuning.clone()));
        }
        let resolvers = if config.dns_resolvers.is_empty() {
            host_resolvers(Path::new(RESOLV_CONF))
        } else {
            config.dns_resolvers.clone()
        };
        Ok(CompiledConfig {
            config,
            workload_matchers,
            resolvers,
        })
    }

    fn floor_default(&self, detector: Detector) -> f64 {
        let floors = &self.config.rates.floors;
        match detector {
            Detector::RateSpawns => floors.spawns_per_min,
            Detector::RateEgressBytes => floors.egress_bytes_per_min,
            Detector::RateModelReadBytes => floors.model_read_bytes_per_min,
            Detector::RateDistinctPeers => floors.distinct_peers_per_min,
            Detector::RateGpuIoctls => floors.gpu_ioctls_per_min,
            _ => 0.0,
        }
    }

    /// Defaults, then global `detectors`, then each matching `workloads` entry in order.
    pub fn resolve(&self, kind: &str, name: &str) -> ResolvedTuning {
        let detectors = Detector::ALL.map(|detector| {
            let mut resolved = ResolvedDetector {
                enabled: detector.enabled_by_default(),
                severity: detector.default_severity(),
                band_width: self.config.rates.band_width,
                floor: self.floor_default(detector),
                sustain_minutes: self.config.rates.sustain_minutes,
            };
            let global = self.config.detectors.get(detector.name());
            let per_workload = self
                .workload_matchers
                .iter()
                .filter(|(glob, tuning)| {
                    glob.is_match(name) && tuning.kind.as_deref().is_none_or(|k| k == kind)
                })
                .filter_map(|(_, tuning)| tuning.detectors.get(detector.name()));
            for tuning in global.into_iter().chain(per_workload) {
                apply(&mut resolved, tuning);
            }
            resolved
        });
        ResolvedTuning { detectors }
    }
}

fn apply(resolved: &mut ResolvedDetector, tuning: &DetectorTuning) {
    if let Some(enabled) = tuning.enabled {
        resolved.enabled = enabled;
    }
    if let Some(severity) = tuning.severity {
        resolved.severity = severity;
    }
    if let Some(band_width) = tuning.band_width {
        resolved.band_width = band_width;
    }
    if let Some(floor) = tuning.floor {
        resolved.floor = floor;
    }
    if let Some(sustain) = tuning.sustain_minutes {
        resolved.sustain_minutes = sustain.max(1);
    }
}
