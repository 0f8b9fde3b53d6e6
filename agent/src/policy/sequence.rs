//! Sequence state: partial matches of sequence rules, bounded in number and
//! expired by the rule's `within`, measured on the events' own `ktime_ns`.

use std::hash::{Hash, Hasher};

use rustc_hash::{FxHashMap, FxHasher};

use super::set::{SequenceBy, SequenceSpec};
use crate::event::{Event, WallTime};

/// Partial matches kept for one key of one rule; the oldest goes first.
pub const MAX_PARTIALS_PER_KEY: usize = 8;
/// Partial matches kept for one rule across all keys.
pub const MAX_PARTIALS_PER_RULE: usize = 4096;

/// What a partial match is attached to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    Process { pid: u32, start: Option<WallTime> },
    Tree { pid: u32 },
    Workload { id: u64 },
}

#[derive(Debug)]
struct Partial {
    /// Index of the next step to match.
    next: usize,
    started_ns: u64,
    events: Vec<Event>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SequenceCounters {
    pub started: u64,
    pub completed: u64,
    pub expired: u64,
    pub evicted: u64,
}

/// The state of one sequence rule.
#[derive(Debug, Default)]
pub struct SequenceState {
    partials: FxHashMap<Key, Vec<Partial>>,
    count: usize,
    last_sweep_ns: u64,
    pub counters: SequenceCounters,
}

fn hash_str(s: &str) -> u64 {
    let mut hasher = FxHasher::default();
    s.hash(&mut hasher);
    hasher.finish()
}

impl SequenceState {
    pub fn partial_count(&self) -> usize {
        self.count
    }

    /// Feeds one event; returns the events of every step when it completes
    /// the sequence.
    pub fn advance(&mut self, spec: &SequenceSpec, ev: &Event) -> Option<Vec<Event>> {
        let mut matched = 0u32;
        for (index, step) in spec.steps.iter().enumerate() {
            if step.kinds.contains(ev.kind) && step.cond.matches(ev) {
                matched |= 1 << index;
            }
        }
        if matched == 0 {
            return None;
        }
        let now = ev.ktime_ns;
        if now.saturating_sub(self.last_sweep_ns) >= spec.within_ns {
            self.sweep(spec.within_ns, now);
        }
        let own = match spec.by {
            SequenceBy::Process => Some(Key::Process {
                pid: ev.process.pid,
                start: ev.process.start_time,
            }),
            SequenceBy::Tree => Some(Key::Tree {
                pid: ev.process.pid,
            }),
            SequenceBy::Workload => ev.workload.as_ref().map(|w| Key::Workload {
                id: hash_str(&w.id),
            }),
        };
        let own = own?;

        // Later steps: the event's own key, and for trees every ancestor.
        if matched & !1 != 0 {
            let mut keys = [own; 11];
            let mut count = 1;
            if spec.by == SequenceBy::Tree {
                let mut add = |pid: u32| {
                    let key = Key::Tree { pid };
                    if pid != 0 && !keys[..count].contains(&key) && count < keys.len() {
                        keys[count] = key;
                        count += 1;
                    }
                };
                add(ev.process.ppid);
                if let Some(parent) = &ev.parent {
                    add(parent.pid);
                }
                for ancestor in &ev.process.ancestors {
                    add(ancestor.pid);
                }
            }
            for key in &keys[..count] {
                if let Some(done) = self.advance_key(spec, *key, ev, matched) {
                    return Some(done);
                }
            }
        }

        if matched & 1 != 0 {
            self.start(spec, own, ev);
        }
        None
    }

    fn advance_key(
        &mut self,
        spec: &SequenceSpec,
        key: Key,
        ev: &Event,
        matched: u32,
    ) -> Option<Vec<Event>> {
        let partials = self.partials.get_mut(&key)?;
        let before = partials.len();
        partials.retain(|p| ev.ktime_ns.saturating_sub(p.started_ns) <= spec.within_ns);
        let expired = before - partials.len();
        self.count -= expired;
        self.counters.expired += expired as u64;

        let mut completed = None;
        for (index, partial) in partials.iter_mut().enumerate() {
            if partial.next >= 1
                && matched & (1 << partial.next) != 0
                && spec.steps[partial.next]
                    .relations
                    .iter()
                    .all(|relation| relation.holds(ev, &partial.events))
            {
                partial.events.push(ev.clone());
                partial.next += 1;
                if partial.next == spec.steps.len() {
                    completed = Some(index);
                    break;
                }
            }
        }
        let result = completed.map(|index| {
            self.count -= 1;
            self.counters.completed += 1;
            partials.remove(index).events
        });
        if partials.is_empty() {
            self.partials.remove(&key);
        }
        result
    }

    fn start(&mut self, spec: &SequenceSpec, key: Key, ev: &Event) {
        let partials = self.partials.entry(key).or_default();
        // A repeated first step refreshes the waiting match rather than
        // stacking copies: a loader opening many pickle files is one match.
        if let Some(waiting) = partials.iter_mut().find(|p| p.next == 1) {
            waiting.started_ns = ev.ktime_ns;
            waiting.events.clear();
            waiting.events.push(ev.clone());
            return;
        }
        if partials.len() >= MAX_PARTIALS_PER_KEY {
            partials.remove(0);
            self.count -= 1;
            self.counters.evicted += 1;
        }
        partials.push(Partial {
            next: 1,
            started_ns: ev.ktime_ns,
            events: vec![ev.clone()],
        });
        self.count += 1;
        self.counters.started += 1;
        if self.count > MAX_PARTIALS_PER_RULE {
            self.sweep(spec.within_ns, ev.ktime_ns);
            if self.count > MAX_PARTIALS_PER_RULE {
                self.evict_oldest();
            }
        }
    }

    /// Drops every expired partial match.
    fn sweep(&mut self, within_ns: u64, now: u64) {
        self.last_sweep_ns = now;
        let mut expired = 0usize;
        self.partials.retain(|_, partials| {
            let before = partials.len();
            partials.retain(|p| now.saturating_sub(p.started_ns) <= within_ns);
            expired += before - partials.len();
            !partials.is_empty()
        });
        self.count -= expired;
        self.counters.expired += expired as u64;
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .partials
            .iter()
            .filter_map(|(key, partials)| partials.first().map(|p| (*key, p.started_ns)))
            .min_by_key(|(_, started)| *started);
        if let Some((key, _)) = oldest {
            if let Some(partials) = self.partials.get_mut(&key) {
                partials.remove(0);
                if partials.is_empty() {
                    self.partials.remove(&key);
                }
                self.count -= 1;
                self.counters.evicted += 1;
            }
        }
    }
}
