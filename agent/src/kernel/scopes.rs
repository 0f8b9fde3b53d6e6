//! Enforcement scopes: the small numbers the kernel knows workloads by.
//!
//! A tracked process or cgroup carries its workload's scope in the upper
//! half of its `TRACKED_PIDS`/`TRACKED_CGROUPS` value
//! (`aiwatch_common::track_value`), and the enforcement maps are keyed by
//! scope (`EGRESS_SCOPES`, `EGRESS_ALLOW`). A workload name keeps its
//! scope for the agent's whole life, so a policy reload rewrites the
//! allowlists without touching the tracking entries of running processes,
//! and a rule added later applies to processes that joined before it.
//!
//! Both the tracking side (workload membership) and the enforcer assign
//! scopes, from the pipeline task only: [`SharedScopes`] is a lock nobody
//! else takes.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

/// Scopes are 16 bits; 0 means "none".
const MAX_SCOPES: usize = u16::MAX as usize;

#[derive(Debug, Default)]
pub struct EnforcementScopes {
    by_name: HashMap<String, u16>,
    /// Set once, when the scopes ran out, so the log says it once.
    exhausted: bool,
}

pub type SharedScopes = Arc<Mutex<EnforcementScopes>>;

impl EnforcementScopes {
    pub fn shared() -> SharedScopes {
        Arc::new(Mutex::new(EnforcementScopes::default()))
    }

    /// The scope of workload `name`, assigned on first use; 0 once all
    /// 65 535 are taken (its processes are then never enforced on, and the
    /// log says so once).
    pub fn scope(&mut self, name: &str) -> u16 {
        if let Some(scope) = self.by_name.get(name) {
            return *scope;
        }
        if self.by_name.len() >= MAX_SCOPES {
            if !self.exhausted {
                self.exhausted = true;
                log::error!(
                    "all {MAX_SCOPES} enforcement scopes are taken: workload {name} and later ones are not enforced on in the kernel"
                );
            }
            return 0;
        }
        let scope = (self.by_name.len() + 1) as u16;
        self.by_name.insert(name.to_string(), scope);
        scope
    }
}

/// Locks the shared scopes; a panic elsewhere while holding the lock
/// leaves a table that is still consistent (one insert at a time).
pub fn lock(scopes: &SharedScopes) -> std::sync::MutexGuard<'_, EnforcementScopes> {
    scopes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_keeps_its_scope_and_scopes_start_at_one() {
        let mut scopes = EnforcementScopes::default();
        assert_eq!(scopes.scope("a"), 1);
        assert_eq!(scopes.scope("b"), 2);
        assert_eq!(scopes.scope("a"), 1);
    }
}
