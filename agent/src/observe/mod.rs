//! The agent's own observability on top of the pipeline: the HTTP listener
//! (`/metrics`, `/healthz`, `/readyz`, `/inventory`), readiness, the
//! supervisor that watches every task, and the telemetry task that copies
//! loss counters into the metrics registry.

pub mod http;
pub mod readiness;
pub mod sd_notify;
pub mod supervise;
pub mod telemetry;
