//! Throttling: at most `max` alerts per rule and key in each `window`,
//! measured on the events' own `ktime_ns`. Suppressed alerts are counted.

use std::hash::{Hash, Hasher};

use rustc_hash::{FxHashMap, FxHasher};

use super::field::Val;
use super::set::ThrottleSpec;
use crate::event::Event;

/// Throttle windows kept at once; past this, expired ones are dropped and,
/// if still too many, the oldest sixteenth is forgotten (and counted). Never
/// all: a flood of distinct keys must not reset the windows of the keys
/// that matter, which are the recent ones.
pub const MAX_WINDOWS: usize = 65_536;

#[derive(Debug, Clone, Copy)]
struct Window {
    started_ns: u64,
    window_ns: u64,
    count: u32,
}

#[derive(Debug, Default)]
pub struct ThrottleState {
    windows: FxHashMap<(u64, u64), Window>,
    pub throttled: u64,
    pub evicted: u64,
}

fn key_hash(value: &Val<'_>) -> u64 {
    let mut hasher = FxHasher::default();
    match value {
        Val::Missing => 0u8.hash(&mut hasher),
        Val::Num(n) => format!("{n:?}").hash(&mut hasher),
        Val::Bool(b) => b.hash(&mut hasher),
        Val::Present => 1u8.hash(&mut hasher),
        other => {
            // Strings and lists: every element, in order.
            other.any_str(|s| {
                s.hash(&mut hasher);
                false
            });
            other.any_num(|n| {
                format!("{n:?}").hash(&mut hasher);
                false
            });
        }
    }
    hasher.finish()
}

impl ThrottleState {
    /// Whether an alert of the rule identified by `rule_key` may go out now.
    pub fn allow(&mut self, rule_key: u64, spec: &ThrottleSpec, ev: &Event) -> bool {
        let value_key = spec.key.map_or(0, |field| key_hash(&field.get(ev)));
        let now = ev.ktime_ns;
        if self.windows.len() >= MAX_WINDOWS && !self.windows.contains_key(&(rule_key, value_key)) {
            self.windows
                .retain(|_, w| now.saturating_sub(w.started_ns) < w.window_ns);
            if self.windows.len() >= MAX_WINDOWS {
                self.evict_oldest(MAX_WINDOWS / 16);
            }
        }
        let window = self.windows.entry((rule_key, value_key)).or_insert(Window {
            started_ns: now,
            window_ns: spec.window_ns,
            count: 0,
        });
        if now.saturating_sub(window.started_ns) >= spec.window_ns {
            window.started_ns = now;
            window.count = 0;
        }
        window.window_ns = spec.window_ns;
        if window.count < spec.max {
            window.count += 1;
            true
        } else {
            self.throttled += 1;
            false
        }
    }

    /// Forgets the `count` windows that started first.
    fn evict_oldest(&mut self, count: usize) {
        let mut starts: Vec<u64> = self.windows.values().map(|w| w.started_ns).collect();
        let Some(index) = count.checked_sub(1).filter(|&i| i < starts.len()) else {
            return;
        };
        let (_, cutoff, _) = starts.select_nth_unstable(index);
        let cutoff = *cutoff;
        let before = self.windows.len();
        self.windows.retain(|_, w| w.started_ns > cutoff);
        self.evicted += (before - self.windows.len()) as u64;
    }

    pub fn window_count(&self) -> usize {
        self.windows.len()
    }
}

impl ThrottleState {
    /// Keeps only the windows of the given rules (after a reload).
    pub fn retain_rules(&mut self, rule_keys: &[u64]) {
        self.windows.retain(|(rule, _), _| rule_keys.contains(rule));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::field::Field;

    fn event(pid: u32, ktime_ns: u64) -> Event {
        let mut event = Event {
            ktime_ns,
            ..Event::default()
        };
        event.process.pid = pid;
        event
    }

    #[test]
    fn a_flood_of_keys_evicts_the_oldest_windows_not_the_recent_ones() {
        let spec = ThrottleSpec {
            key: Some(Field::Pid),
            window_ns: u64::MAX / 2,
            max: 1,
        };
        let mut state = ThrottleState::default();
        // A key that alerted early, and one that alerted just now.
        assert!(state.allow(1, &spec, &event(1, 0)));
        // The flood: every pid its own window, all live.
        for pid in 10..(10 + MAX_WINDOWS as u32) {
            state.allow(1, &spec, &event(pid, 1 + u64::from(pid)));
        }
        let recent = 10 + MAX_WINDOWS as u32 - 1;
        assert!(state.window_count() <= MAX_WINDOWS);
        assert!(state.evicted > 0 && state.evicted <= (MAX_WINDOWS / 16 + 1) as u64);
        // The recent key's window survived: it is still throttled.
        assert!(!state.allow(1, &spec, &event(recent, u64::MAX / 4)));
        // The oldest went: its key may alert again.
        assert!(state.allow(1, &spec, &event(1, u64::MAX / 4)));
    }
}
