//! aiwatch: an eBPF security monitor for AI workloads.
//!
//! The pipeline is kernel → ring buffer → [`reader`] → [`decode`] →
//! [`enrich`] (with the [`process`] table) → rules and detectors → [`sink`]s.
//! See `docs/ARCHITECTURE.md` for the code map and its invariants.

pub mod alert;
pub mod analyze;
pub mod anomaly;
pub mod assets;
pub mod cli;
pub mod clock;
pub mod config;
pub mod decode;
pub mod enrich;
pub mod event;
pub mod features;
pub mod gpu_ioctl;
pub mod http;
pub mod interest;
pub mod inventory;
pub mod kernel_stats;
pub mod loader;
pub mod metrics;
pub mod offsets;
pub mod pipeline;
pub mod policy;
pub mod process;
pub mod procfs_seed;
pub mod reader;
pub mod replay;
pub mod ringbuf_usage;
pub mod run;
pub mod sink;
pub mod stats;
pub mod tcp_summary;
pub mod telemetry;
pub mod workload;
