//! aiwatch: an eBPF security monitor for AI workloads.
//!
//! The folders follow the pipeline: [`kernel`] (load, configure and read the
//! programs) → [`ingest`] (ring buffer reader and decoder) → [`enrich`]
//! (process table, paths, asset classes) → [`analyze`] (workloads,
//! inventory), [`policy`] and [`anomaly`] (detection) → [`enforce`] (rule
//! actions, the kernel's enforcement maps) → [`sink`]s, with
//! [`observe`] (listener, telemetry) beside them and [`app`] wiring it all
//! together. [`event`], [`alert`], [`clock`] and [`metrics`] are leaves any
//! stage may use. See `docs/ARCHITECTURE.md` for the code map and its
//! invariants.

pub mod alert;
pub mod analyze;
pub mod anomaly;
pub mod app;
pub mod clock;
pub mod enforce;
pub mod enrich;
pub mod event;
pub mod ingest;
pub mod kernel;
pub mod llm;
pub mod metrics;
pub mod observe;
pub mod policy;
pub mod sink;
