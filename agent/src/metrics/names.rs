//! The name cache's counters (`aiwatch_name_cache_*`, `aiwatch_dns_answers_total`).
//!
//! The cache lives in the pipeline task and counts in plain integers; the
//! housekeeping tick hands its totals here, and only the growth since the
//! last tick is added to the counters.

use prometheus::IntCounter;

use super::{MetricsError, Registrar};

/// What the name cache has done since start-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NameTotals {
    /// Connection events whose destination had a cached name.
    pub hits: u64,
    /// ... and those whose destination had none.
    pub misses: u64,
    /// Names and pending queries dropped to stay within the bounds.
    pub evictions: u64,
    pub answers_verified: u64,
    pub answers_unverified: u64,
    /// Answers that could not be parsed (cut, truncated, malformed, loops).
    pub answers_malformed: u64,
}

pub(super) struct NameCounters {
    lookups_hit: IntCounter,
    lookups_miss: IntCounter,
    evictions: IntCounter,
    verified: IntCounter,
    unverified: IntCounter,
    malformed: IntCounter,
}

impl NameCounters {
    pub(super) fn register(reg: &mut Registrar<'_>) -> Result<Self, MetricsError> {
        let lookups = reg.counter_vec(
            "aiwatch_name_cache_lookups_total",
            "Destinations looked up in the DNS name cache, by result (hit or miss).",
            &["result"],
        )?;
        let evictions = reg.counter(
            "aiwatch_name_cache_evictions_total",
            "Cached names and pending DNS queries dropped to keep the name cache within its bounds.",
        )?;
        let answers = reg.counter_vec(
            "aiwatch_dns_answers_total",
            "DNS answers seen, by verdict: verified (matched its query), unverified, or malformed.",
            &["verdict"],
        )?;
        Ok(Self {
            lookups_hit: lookups.with_label_values(&["hit"]),
            lookups_miss: lookups.with_label_values(&["miss"]),
            evictions,
            verified: answers.with_label_values(&["verified"]),
            unverified: answers.with_label_values(&["unverified"]),
            malformed: answers.with_label_values(&["malformed"]),
        })
    }

    /// Adds what grew between `before` and `now`.
    pub(super) fn add(&self, before: NameTotals, now: NameTotals) {
        let grow = |counter: &IntCounter, old: u64, new: u64| {
            counter.inc_by(new.saturating_sub(old));
        };
        grow(&self.lookups_hit, before.hits, now.hits);
        grow(&self.lookups_miss, before.misses, now.misses);
        grow(&self.evictions, before.evictions, now.evictions);
        grow(
            &self.verified,
            before.answers_verified,
            now.answers_verified,
        );
        grow(
            &self.unverified,
            before.answers_unverified,
            now.answers_unverified,
        );
        grow(
            &self.malformed,
            before.answers_malformed,
            now.answers_malformed,
        );
    }
}
