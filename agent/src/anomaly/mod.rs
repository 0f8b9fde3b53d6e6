//! Anomaly detection: per-workload behaviour profiles that learn what a
//! workload normally does, then flag departures with a plain explanation.
//!
//! A profile is keyed by workload kind and name, so every run of the same
//! workload shares it. It learns for a window of event time, then enforces
//! (flags what it never saw) or drifts (flags once, then learns). What it
//! learns is generalised ([`generalize`]) and capped, so a profile has a hard
//! size bound. Time comes only from the events (`ktime_ns`), so replaying
//! recorded events behaves like the live run. See `docs/anomaly.md`.
//!
//! Entry points: [`AnomalyEngine`] for the pipeline, [`cli`] for the
//! `aiwatch profile` commands, [`export`] for `profile export --as-policy`.

use std::path::PathBuf;

pub mod cli;
pub mod config;
pub mod detect;
mod engine;
pub mod explain;
pub mod export;
pub mod generalize;
pub mod lock;
pub mod profile;
pub mod rates;
pub mod store;
mod workload;

#[cfg(test)]
mod tests;

pub use config::{AnomalyConfig, Detector, DetectorTuning, WorkloadTuning};
pub use engine::{AnomalyEngine, EngineStats, ProfileStates, SaveReport};
pub use profile::{Mode, Profile, WorkloadKey};

#[derive(Debug, thiserror::Error)]
pub enum AnomalyError {
    #[error("anomaly configuration: {0}")]
    Config(String),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot serialise profile: {0}")]
    Serialize(String),
}
