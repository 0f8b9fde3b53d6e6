//! Per-minute rates and their robust baselines.
//!
//! Each workload counts, per minute of event time, process spawns, egress
//! bytes, model-file read bytes, distinct peers and GPU ioctls. A baseline
//! starts as the median and median absolute deviation (MAD) of the first
//! minutes, then follows an EWMA of the level and of the absolute deviation;
//! updates are clipped to the band so one spike cannot drag it (a Huber-style
//! EWMA). A minute is an excursion when it is above `level + band_width ×
//! scale` and above an absolute floor; a rate alert needs `sustain_minutes`
//! consecutive excursions.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::event::Event;

use super::config::{Detector, RateConfig};

/// First minutes kept raw to seed a baseline with median and MAD.
const WARMUP_MINUTES_CAP: usize = 60;
/// Distinct peers counted per minute at most (the bucket's memory bound).
const DISTINCT_PEERS_CAP: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateMetric {
    Spawns,
    EgressBytes,
    ModelReadBytes,
    DistinctPeers,
    GpuIoctls,
}

impl RateMetric {
    pub const ALL: [RateMetric; 5] = [
        RateMetric::Spawns,
        RateMetric::EgressBytes,
        RateMetric::ModelReadBytes,
        RateMetric::DistinctPeers,
        RateMetric::GpuIoctls,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn detector(self) -> Detector {
        match self {
            RateMetric::Spawns => Detector::RateSpawns,
            RateMetric::EgressBytes => Detector::RateEgressBytes,
            RateMetric::ModelReadBytes => Detector::RateModelReadBytes,
            RateMetric::DistinctPeers => Detector::RateDistinctPeers,
            RateMetric::GpuIoctls => Detector::RateGpuIoctls,
        }
    }

    pub fn is_bytes(self) -> bool {
        matches!(self, RateMetric::EgressBytes | RateMetric::ModelReadBytes)
    }
}

/// The learned baseline of one rate, as saved.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RateBaseline {
    /// Raw minute values until the baseline is seeded.
    pub warmup: Vec<f64>,
    /// Typical value per minute; absent until seeded.
    pub level: Option<f64>,
    /// Typical absolute deviation from the level (MAD-like).
    pub scale: f64,
    /// Minutes that went into the baseline.
    pub minutes: u64,
}

impl RateBaseline {
    /// Takes one closed minute into the baseline.
    pub fn learn(&mut self, value: f64, config: &RateConfig) {
        self.minutes = self.minutes.saturating_add(1);
        match self.level {
            None => {
                self.warmup.push(value);
                if self.warmup.len() >= WARMUP_MINUTES_CAP {
                    self.seed(config);
                }
            }
            Some(level) => {
                let limit = config.band_width * self.effective_scale(config);
                let clipped = value.clamp(level - limit, level + limit).max(0.0);
                let alpha = config.ewma_alpha.clamp(0.0, 1.0);
                let deviation = (clipped - level).abs();
                self.level = Some(level + alpha * (clipped - level));
                self.scale += alpha * (deviation - self.scale);
            }
        }
    }

    /// Seeds level and scale from the warm-up minutes, if there are enough.
    pub fn seed(&mut self, config: &RateConfig) {
        if self.level.is_some() || self.warmup.len() < config.min_baseline_minutes.max(1) as usize {
            return;
        }
        let level = median(&mut self.warmup.clone());
        let mut deviations: Vec<f64> = self.warmup.iter().map(|v| (v - level).abs()).collect();
        self.scale = median(&mut deviations);
        self.level = Some(level);
        self.warmup = Vec::new();
    }

    fn effective_scale(&self, config: &RateConfig) -> f64 {
        let level = self.level.unwrap_or(0.0);
        self.scale.max(config.min_relative_scale * level)
    }

    /// The top of the band, once the baseline is seeded.
    pub fn upper(&self, band_width: f64, config: &RateConfig) -> Option<f64> {
        self.level
            .map(|level| level + band_width * self.effective_scale(config))
    }
}

/// Baselines of all rates of a profile.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RateBaselines {
    pub spawns: RateBaseline,
    pub egress_bytes: RateBaseline,
    pub model_read_bytes: RateBaseline,
    pub distinct_peers: RateBaseline,
    pub gpu_ioctls: RateBaseline,
}

impl RateBaselines {
    pub fn get(&self, metric: RateMetric) -> &RateBaseline {
        match metric {
            RateMetric::Spawns => &self.spawns,
            RateMetric::EgressBytes => &self.egress_bytes,
            RateMetric::ModelReadBytes => &self.model_read_bytes,
            RateMetric::DistinctPeers => &self.distinct_peers,
            RateMetric::GpuIoctls => &self.gpu_ioctls,
        }
    }

    pub fn get_mut(&mut self, metric: RateMetric) -> &mut RateBaseline {
        match metric {
            RateMetric::Spawns => &mut self.spawns,
            RateMetric::EgressBytes => &mut self.egress_bytes,
            RateMetric::ModelReadBytes => &mut self.model_read_bytes,
            RateMetric::DistinctPeers => &mut self.distinct_peers,
            RateMetric::GpuIoctls => &mut self.gpu_ioctls,
        }
    }
}

/// What one minute of one workload added up to (in memory only).
#[derive(Clone, Debug, Default)]
pub struct MinuteBucket {
    pub sums: [f64; RateMetric::ALL.len()],
    pub peers: HashSet<String>,
    /// The last event that contributed to each rate, for the alert. Boxed:
    /// an event is 1.6 KiB inline, and every workload has a bucket.
    pub last_events: [Option<Box<Event>>; RateMetric::ALL.len()],
}

impl MinuteBucket {
    pub fn add(&mut self, metric: RateMetric, amount: f64, event: &Event) {
        self.sums[metric.index()] += amount;
        self.last_events[metric.index()] = Some(Box::new(event.clone()));
    }

    pub fn add_peer(&mut self, peer: String, event: &Event) {
        if self.peers.len() < DISTINCT_PEERS_CAP {
            self.peers.insert(peer);
        }
        self.last_events[RateMetric::DistinctPeers.index()] = Some(Box::new(event.clone()));
    }

    pub fn value(&self, metric: RateMetric) -> f64 {
        match metric {
            RateMetric::DistinctPeers => self.peers.len() as f64,
            other => self.sums[other.index()],
        }
    }
}

/// Excursion tracking of one rate (in memory only).
#[derive(Clone, Copy, Debug, Default)]
pub struct ExcursionState {
    /// Consecutive minutes beyond the band.
    pub streak: u32,
    /// This excursion was already alerted on.
    pub alerted: bool,
    /// Last minute beyond the band, and its value.
    pub last_excursion: Option<(u64, f64)>,
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_seeds_from_median_and_resists_spikes() {
        let config = RateConfig::default();
        let mut baseline = RateBaseline::default();
        for v in [10.0, 12.0, 9.0, 11.0, 10.0] {
            baseline.learn(v, &config);
        }
        assert_eq!(baseline.level, None);
        baseline.seed(&config);
        assert_eq!(baseline.level, Some(10.0));
        assert_eq!(baseline.scale, 1.0);
        let upper_before = baseline.upper(6.0, &config).unwrap_or(0.0);
        // One huge minute moves the level by at most alpha × band.
        baseline.learn(1.0e9, &config);
        let level = baseline.level.unwrap_or(f64::MAX);
        assert!(level < 11.0, "level dragged to {level}");
        assert!(baseline.upper(6.0, &config).unwrap_or(f64::MAX) < upper_before * 1.2);
    }

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
    }
}
