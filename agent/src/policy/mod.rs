//! The policy engine: YAML rules (see `docs/policy.md`) compiled once and
//! evaluated against every enriched [`Event`](crate::event::Event).
//!
//! - [`PolicySet`]: loads and checks policy files and the embedded default
//!   pack; every problem is reported as `file:line:column: sentence`.
//! - [`PolicyEngine`]: evaluates events, keeping sequence and throttle state
//!   on the events' own clock, so replay is deterministic.
//! - [`reload`]: watches policy files and SIGHUP, rebuilding the set.
//! - [`kernel_plan`]: which rules' kill or deny the kernel can carry out.
//! - [`cli`]: `policy check`, `policy test` and `replay`.

pub mod cli;
mod compile;
pub mod cond;
pub mod engine;
pub mod error;
pub mod field;
mod index;
pub mod kernel_plan;
mod relation;
pub mod reload;
mod rules;
mod sequence;
pub mod set;
mod summary;
pub mod testing;
mod throttle;
pub mod yaml;

#[cfg(test)]
mod benign_tests;
#[cfg(test)]
mod unit_tests;

pub use cli::{check_command, replay, replay_command, test_command, ReplayStats};
pub use engine::{EngineStats, PolicyEngine};
pub use error::{PolicyError, PolicyErrors, Pos};
pub use reload::{spawn_reloader, PolicyReloader, ReloadCounters, ReloadOutcome};
pub use set::{PolicySet, Rule, RuleTest, Source, DEFAULT_PACK};
pub use summary::{human_bytes, what_happened};
pub use testing::{run_tests, TestOutcome};
