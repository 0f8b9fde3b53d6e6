//! The evaluator: runs each event through the rules indexed for its kind,
//! keeps sequence and throttle state, and raises alerts.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHasher};

use super::sequence::SequenceState;
use super::set::{PolicySet, Rule, RuleBody};
use super::summary::summarize;
use super::throttle::ThrottleState;
use crate::alert::{Action, Alert};
use crate::event::Event;

/// Counters of one engine, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub events: u64,
    pub alerts: u64,
    /// Matches suppressed by a rule's exceptions.
    pub excepted: u64,
    /// Matches suppressed by a rule's throttle.
    pub throttled: u64,
    /// Throttle windows forgotten because too many were open.
    pub throttle_evictions: u64,
    pub sequences_started: u64,
    pub sequences_completed: u64,
    pub sequences_expired: u64,
    /// Partial matches dropped because a cap was reached.
    pub sequence_evictions: u64,
    /// Partial matches held now.
    pub sequence_partials: u64,
    pub swaps: u64,
    /// Throttle windows held now.
    pub throttle_windows: u64,
}

/// Identity of a rule's state: its id and definition. A reload keeps the
/// state of rules whose definition did not change.
fn state_key(rule: &Rule) -> u64 {
    let mut hasher = FxHasher::default();
    rule.id.hash(&mut hasher);
    rule.fingerprint.hash(&mut hasher);
    hasher.finish()
}

pub struct PolicyEngine {
    set: Arc<PolicySet>,
    /// `state_key` of each rule, by rule index.
    rule_keys: Vec<u64>,
    sequences: FxHashMap<u64, SequenceState>,
    throttle: ThrottleState,
    stats: EngineStats,
    /// Reused buffer of candidate rule indices.
    candidates: Vec<usize>,
}

impl PolicyEngine {
    pub fn new(set: Arc<PolicySet>) -> PolicyEngine {
        let rule_keys = set.rules.iter().map(state_key).collect();
        PolicyEngine {
            set,
            rule_keys,
            sequences: FxHashMap::default(),
            throttle: ThrottleState::default(),
            stats: EngineStats::default(),
            candidates: Vec::new(),
        }
    }

    pub fn policy(&self) -> &Arc<PolicySet> {
        &self.set
    }

    /// Replaces the rules. Sequence state of unchanged sequence rules and
    /// throttle windows of unchanged rules are kept; the rest is dropped.
    pub fn swap(&mut self, set: Arc<PolicySet>) {
        let rule_keys: Vec<u64> = set.rules.iter().map(state_key).collect();
        self.sequences.retain(|key, _| rule_keys.contains(key));
        self.throttle.retain_rules(&rule_keys);
        self.rule_keys = rule_keys;
        self.set = set;
        self.stats.swaps += 1;
    }

    pub fn stats(&self) -> EngineStats {
        let mut stats = self.stats;
        stats.throttled = self.throttle.throttled;
        stats.throttle_evictions = self.throttle.evicted;
        stats.throttle_windows = self.throttle.window_count() as u64;
        for state in self.sequences.values() {
            stats.sequences_started += state.counters.started;
            stats.sequences_completed += state.counters.completed;
            stats.sequences_expired += state.counters.expired;
            stats.sequence_evictions += state.counters.evicted;
            stats.sequence_partials += state.partial_count() as u64;
        }
        stats
    }

    /// Runs one event through the rules; returns the alerts it raises, in
    /// rule order.
    pub fn evaluate(&mut self, ev: &Event) -> Vec<Alert> {
        self.stats.events += 1;
        let mut alerts = Vec::new();
        let set = &self.set;
        let Some(kind_index) = set.index.get(ev.kind.index()) else {
            return alerts;
        };
        let mut candidates = std::mem::take(&mut self.candidates);
        kind_index.candidates(ev, &mut candidates);
        for &index in &candidates {
            let rule = &set.rules[index];
            let steps = match &rule.body {
                RuleBody::When(cond) => {
                    if !cond.matches(ev) {
                        continue;
                    }
                    Vec::new()
                }
                RuleBody::Sequence(spec) => {
                    let state = self.sequences.entry(self.rule_keys[index]).or_default();
                    match state.advance(spec, ev) {
                        Some(steps) => steps,
                        None => continue,
                    }
                }
            };
            if rule.exceptions.iter().any(|e| e.cond.matches(ev)) {
                self.stats.excepted += 1;
                continue;
            }
            if let Some(spec) = &rule.throttle {
                if !self.throttle.allow(self.rule_keys[index], spec, ev) {
                    continue;
                }
            }
            alerts.push(make_alert(rule, ev, steps));
        }
        self.candidates = candidates;
        self.stats.alerts += alerts.len() as u64;
        alerts
    }
}

fn make_alert(rule: &Rule, ev: &Event, steps: Vec<Event>) -> Alert {
    Alert {
        time: ev.time,
        rule: rule.id.clone(),
        severity: rule.severity,
        summary: summarize(&rule.description, &rule.id, ev, &steps),
        tags: rule.tags.clone(),
        action: rule.action,
        // A kill or deny is carried out (and these fields set) by the
        // runtime's enforcer.
        action_taken: rule.action == Action::Alert,
        enforcement: None,
        workload: ev.workload.clone(),
        event: ev.clone(),
        steps,
    }
}
