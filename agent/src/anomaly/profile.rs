//! The behaviour profile of one workload: its mode, learning progress, the
//! bounded sets of what it was seen doing and its rate baselines. This is
//! exactly what is saved to disk (see `store`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

pub use super::config::Mode;
use super::rates::RateBaselines;
use crate::event::WallTime;

/// Version of the saved profile format; files of another version are moved aside.
pub const PROFILE_VERSION: u32 = 1;

/// Asset classes whose paths are learned (`file.class`).
pub const ASSET_CLASSES: [&str; 5] = ["model", "pickle-model", "dataset", "secret", "gpu-device"];

/// Profiles are shared by every run of a workload of the same kind and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WorkloadKey {
    pub kind: String,
    pub name: String,
}

impl std::fmt::Display for WorkloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)
    }
}

/// Outcome of offering an item to a bounded set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insert {
    Added,
    Known,
    /// The set is at its cap; the item was not learned.
    Full,
}

/// A sorted set of learned items with a cap.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BoundedSet {
    items: BTreeSet<String>,
}

impl BoundedSet {
    pub fn contains(&self, item: &str) -> bool {
        self.items.contains(item)
    }

    pub fn insert(&mut self, item: &str, cap: usize) -> Insert {
        if self.items.contains(item) {
            Insert::Known
        } else if self.items.len() >= cap {
            Insert::Full
        } else {
            self.items.insert(item.to_string());
            Insert::Added
        }
    }

    /// Inserts, evicting the first item when at the cap (for memories whose
    /// loss only costs a repeated alert).
    pub fn insert_evicting(&mut self, item: &str, cap: usize) {
        if cap == 0 || self.items.contains(item) {
            return;
        }
        if self.items.len() >= cap {
            self.items.pop_first();
        }
        self.items.insert(item.to_string());
    }

    pub fn remove(&mut self, item: &str) -> bool {
        self.items.remove(item)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.items.iter().map(String::as_str)
    }

    /// Bytes held by the items (for the memory bound).
    pub fn item_bytes(&self) -> usize {
        self.items.iter().map(|s| s.len()).sum()
    }
}

/// How far learning has come.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LearningProgress {
    /// Event time spent learning, in nanoseconds (survives restarts).
    pub learned_ns: u64,
    /// Events of this workload seen while learning.
    pub events: u64,
}

/// One workload's profile, as saved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub version: u32,
    pub workload: WorkloadKey,
    pub mode: Mode,
    /// A frozen profile learns nothing at all (sets and rate baselines).
    #[serde(default)]
    pub frozen: bool,
    #[serde(default)]
    pub learning: LearningProgress,
    /// RFC 3339 time of the first and last event seen.
    #[serde(default, with = "crate::event::time_or_empty")]
    pub first_seen: Option<WallTime>,
    #[serde(default, with = "crate::event::time_or_empty")]
    pub last_seen: Option<WallTime>,
    #[serde(default)]
    pub executables: BoundedSet,
    /// `parent -> child` executable pairs.
    #[serde(default)]
    pub process_pairs: BoundedSet,
    /// Generalised path patterns per asset class.
    #[serde(default)]
    pub paths: BTreeMap<String, BoundedSet>,
    /// `<cidr>:<port>`, `loopback:<port>` or `<dns name>:<port>`.
    #[serde(default)]
    pub peers: BoundedSet,
    /// `tcp/8000`, `tcp/ephemeral`.
    #[serde(default)]
    pub listen_ports: BoundedSet,
    /// `<family> <major>:<minor>` or a device path pattern.
    #[serde(default)]
    pub gpu_devices: BoundedSet,
    #[serde(default)]
    pub rates: RateBaselines,
    /// `<detector> <item>` of novel items already alerted on.
    #[serde(default)]
    pub alerted: BoundedSet,
    /// Items not learned because their set was full.
    #[serde(default)]
    pub dropped_at_cap: u64,
}

impl Profile {
    pub fn new(workload: WorkloadKey) -> Self {
        Profile {
            version: PROFILE_VERSION,
            workload,
            mode: Mode::Learning,
            frozen: false,
            learning: LearningProgress::default(),
            first_seen: None,
            last_seen: None,
            executables: BoundedSet::default(),
            process_pairs: BoundedSet::default(),
            paths: BTreeMap::new(),
            peers: BoundedSet::default(),
            listen_ports: BoundedSet::default(),
            gpu_devices: BoundedSet::default(),
            rates: RateBaselines::default(),
            alerted: BoundedSet::default(),
            dropped_at_cap: 0,
        }
    }

    /// Whether this profile takes in new behaviour right now.
    pub fn learns(&self) -> bool {
        !self.frozen && matches!(self.mode, Mode::Learning | Mode::Drifting)
    }

    /// Whether departures are flagged right now.
    pub fn flags(&self) -> bool {
        matches!(self.mode, Mode::Enforcing | Mode::Drifting)
    }

    /// Approximate heap bytes held by the learned items.
    pub fn item_bytes(&self) -> usize {
        self.executables.item_bytes()
            + self.process_pairs.item_bytes()
            + self
                .paths
                .values()
                .map(BoundedSet::item_bytes)
                .sum::<usize>()
            + self.peers.item_bytes()
            + self.listen_ports.item_bytes()
            + self.gpu_devices.item_bytes()
            + self.alerted.item_bytes()
    }

    /// Changes the mode; back to `learning` restarts the learning window
    /// (what was learned is kept).
    pub fn set_mode(&mut self, mode: Mode) {
        if mode == Mode::Learning && self.mode != Mode::Learning {
            self.learning = LearningProgress::default();
        }
        self.mode = mode;
    }

    /// Back to learning from scratch, keeping only the identity and mode flags.
    pub fn clear_learning(&mut self) {
        let workload = self.workload.clone();
        let frozen = self.frozen;
        *self = Profile::new(workload);
        self.frozen = frozen;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_to_learning_restarts_the_window_but_keeps_items() {
        let mut profile = Profile::new(WorkloadKey {
            kind: "inference".into(),
            name: "x".into(),
        });
        profile.set_mode(Mode::Enforcing);
        profile.learning.learned_ns = 42;
        profile.executables.insert("/bin/a", 8);
        profile.set_mode(Mode::Drifting);
        assert_eq!(profile.learning.learned_ns, 42);
        profile.set_mode(Mode::Learning);
        assert_eq!(profile.learning, LearningProgress::default());
        assert!(profile.executables.contains("/bin/a"));
    }

    #[test]
    fn bounded_set_respects_cap() {
        let mut set = BoundedSet::default();
        assert_eq!(set.insert("a", 2), Insert::Added);
        assert_eq!(set.insert("a", 2), Insert::Known);
        assert_eq!(set.insert("b", 2), Insert::Added);
        assert_eq!(set.insert("c", 2), Insert::Full);
        assert_eq!(set.len(), 2);
        set.insert_evicting("c", 2);
        assert_eq!(set.len(), 2);
        assert!(set.contains("c"));
        assert!(!set.contains("a"));
    }
}
