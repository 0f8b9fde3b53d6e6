//! aiwatch: an eBPF security monitor for AI workloads.
//!
//! The pipeline is kernel → ring buffer → [`reader`] → [`decode`] →
//! [`process`] table (enrichment) → rules and detectors → sinks. See
//! `docs/ARCHITECTURE.md` for the code map and its invariants.

pub mod alert;
pub mod event;
pub mod policy;
