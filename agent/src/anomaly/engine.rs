//! The anomaly engine: routes events to workload profiles, drives the
//! shared event clock, counts profiles by state and keeps the profiles in
//! step with their files.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use crate::alert::Alert;
use crate::event::Event;

use super::config::{AnomalyConfig, CompiledConfig};
use super::profile::{Mode, Profile, WorkloadKey};
use super::store::{self, ProfileStore};
use super::workload::{Entry, CLOCK_RESET_NS, NS_PER_MINUTE};
use super::AnomalyError;

/// Counters for metrics and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Profile files moved aside as corrupt or of another version.
    pub corrupt_profiles: u64,
    /// Events of workloads beyond `max_profiles`, not profiled (only when
    /// every profile in memory is frozen, so none can be evicted).
    pub unprofiled_events: u64,
    /// Profiles moved out of memory, least recently seen first, to make
    /// room for a new workload under `max_profiles`. With a state
    /// directory they are saved first and read back when their workload
    /// returns.
    pub evicted_profiles: u64,
    /// Alerts dropped by `max_alerts_per_minute`.
    pub suppressed_alerts: u64,
    /// Profile files that failed to save.
    pub save_errors: u64,
}

/// Profiles by state, for `aiwatch_anomaly_profiles{state}`. `frozen`
/// counts frozen profiles, which are also counted under their mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProfileStates {
    pub learning: usize,
    pub enforcing: usize,
    pub drifting: usize,
    pub frozen: usize,
}

impl ProfileStates {
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, usize)> {
        [
            ("learning", self.learning),
            ("enforcing", self.enforcing),
            ("drifting", self.drifting),
            ("frozen", self.frozen),
        ]
        .into_iter()
    }
}

/// What a `save` did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SaveReport {
    pub written: usize,
    /// Profiles replaced by a version changed on disk (`aiwatch profile ...`).
    pub reloaded: usize,
    /// Profiles whose file was deleted (`profile reset`): learning restarts.
    pub reset: usize,
}

/// Behaviour profiles of all workloads.
pub struct AnomalyEngine {
    config: CompiledConfig,
    store: Option<ProfileStore>,
    /// Boxed: an entry is over a kilobyte, and the table keeps spare slots
    /// (a thousand workloads' table has 2,048), each the size of its value.
    profiles: HashMap<WorkloadKey, Box<Entry>>,
    clock_minute: Option<u64>,
    stats: EngineStats,
}

impl AnomalyEngine {
    /// Builds the engine and loads the profiles saved in `state_dir` (the
    /// profile directory itself, e.g. `/var/lib/aiwatch/profiles`). Bad files
    /// are moved aside and counted; only an unusable directory or
    /// configuration is an error.
    pub fn new(config: AnomalyConfig, state_dir: Option<PathBuf>) -> Result<Self, AnomalyError> {
        let config = CompiledConfig::new(config)?;
        let store = state_dir.map(ProfileStore::open).transpose()?;
        let mut engine = AnomalyEngine {
            config,
            store,
            profiles: HashMap::new(),
            clock_minute: None,
            stats: EngineStats::default(),
        };
        if let Some(store) = &engine.store {
            let loaded = store.load_all()?;
            engine.stats.corrupt_profiles += loaded.corrupt;
            // Up to the cap; the others are read when their workload shows up.
            let cap = engine.config.config.max_profiles;
            for (profile, stamp) in loaded.profiles.into_iter().take(cap) {
                let entry = Entry::new(profile, &engine.config, Some(stamp));
                engine
                    .profiles
                    .insert(entry.profile.workload.clone(), Box::new(entry));
            }
        }
        Ok(engine)
    }

    /// Takes one event; returns the alerts it (or the minutes it closed) raised.
    pub fn observe(&mut self, event: &Event) -> Vec<Alert> {
        let mut out = Vec::new();
        if !self.config.config.enabled {
            return out;
        }
        // Every event moves the clock, not only those of workloads.
        self.advance_clock(event.ktime_ns, &mut out);
        let Some(workload) = &event.workload else {
            return out;
        };
        let key = WorkloadKey {
            kind: workload.kind.to_string(),
            name: workload.name.clone(),
        };
        // One hash on the common path: the workload's profile is in memory.
        let entry = match self.profiles.get_mut(&key) {
            Some(entry) => entry,
            None => {
                if self.profiles.len() >= self.config.config.max_profiles
                    && !self.evict_least_recent()
                {
                    if self.stats.unprofiled_events == 0 {
                        log::warn!(
                            "anomaly profiles are at their limit of {} and all frozen; workload {key} and later new workloads are not profiled",
                            self.config.config.max_profiles
                        );
                    }
                    self.stats.unprofiled_events += 1;
                    return out;
                }
                let entry = self
                    .saved_entry(&key)
                    .unwrap_or_else(|| Entry::new(Profile::new(key.clone()), &self.config, None));
                self.profiles.entry(key).or_insert(Box::new(entry))
            }
        };
        entry.advance(event.ktime_ns, &self.config, &mut out);
        entry.observe(event, &self.config, &mut out);
        out
    }

    /// Makes room for one profile: the least recently seen one that is not
    /// frozen leaves memory, saved first when there is a state directory. A
    /// flood of short-lived workloads thus cycles through the cache instead
    /// of filling it for good; frozen profiles (an operator's decision) stay.
    fn evict_least_recent(&mut self) -> bool {
        let Some(victim) = self
            .profiles
            .iter()
            .filter(|(_, entry)| !entry.profile.frozen)
            .min_by_key(|(_, entry)| entry.clock_ns.unwrap_or(0))
            .map(|(key, _)| key.clone())
        else {
            return false;
        };
        let Some(entry) = self.profiles.remove(&victim) else {
            return false;
        };
        if let (Some(store), true) = (&self.store, entry.dirty) {
            if let Err(error) = store.write(&entry.profile) {
                self.stats.save_errors += 1;
                log::warn!(
                    "anomaly profile {victim} could not be saved before leaving memory: {error}"
                );
            }
        }
        self.stats.evicted_profiles += 1;
        true
    }

    /// The saved profile of a workload that comes back after leaving memory.
    fn saved_entry(&mut self, key: &WorkloadKey) -> Option<Entry> {
        let store = self.store.as_ref()?;
        let path = store.path_for(key);
        let stamp = store::stamp(&path)?;
        match ProfileStore::read(&path) {
            Ok(profile) if &profile.workload == key => {
                Some(Entry::new(profile, &self.config, Some(stamp)))
            }
            Ok(_) => None,
            Err(error) => {
                self.stats.corrupt_profiles += 1;
                store.quarantine(&path, &error);
                None
            }
        }
    }

    /// Moves the event clock without an event (the pipeline calls this with
    /// the latest `ktime_ns` when idle), closing minutes that ended.
    pub fn tick(&mut self, ktime_ns: u64) -> Vec<Alert> {
        let mut out = Vec::new();
        if self.config.config.enabled {
            self.advance_clock(ktime_ns, &mut out);
        }
        out
    }

    /// When the clock enters a new minute, every profile closes its minutes,
    /// so idle workloads are evaluated too.
    fn advance_clock(&mut self, now: u64, out: &mut Vec<Alert>) {
        let minute = now / NS_PER_MINUTE;
        match self.clock_minute {
            Some(current) if minute > current => {
                self.clock_minute = Some(minute);
                for entry in self.profiles.values_mut() {
                    entry.advance(now, &self.config, out);
                }
            }
            Some(current) if current.saturating_sub(minute) * NS_PER_MINUTE > CLOCK_RESET_NS => {
                self.clock_minute = Some(minute);
            }
            Some(_) => {}
            None => self.clock_minute = Some(minute),
        }
    }

    /// Saves changed profiles. A file changed or deleted since this engine
    /// last wrote it (by `aiwatch profile ...`) wins: it is loaded instead,
    /// or, if deleted, the profile starts learning again.
    pub fn save(&mut self) -> Result<SaveReport, AnomalyError> {
        let mut report = self.reload()?;
        let Some(store) = &self.store else {
            return Ok(report);
        };
        let mut first_error = None;
        for entry in self.profiles.values_mut().filter(|e| e.dirty) {
            match store.write(&entry.profile) {
                Ok(stamp) => {
                    entry.stamp = Some(stamp);
                    entry.dirty = false;
                    report.written += 1;
                }
                Err(error) => {
                    self.stats.save_errors += 1;
                    log::warn!(
                        "anomaly profile {} could not be saved: {error}",
                        entry.profile.workload
                    );
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(report),
        }
    }

    /// Picks up profile files changed, added or deleted on disk; `save`
    /// calls it first.
    pub fn reload(&mut self) -> Result<SaveReport, AnomalyError> {
        let mut report = SaveReport::default();
        let Some(store) = &self.store else {
            return Ok(report);
        };
        for entry in self.profiles.values_mut() {
            let path = store.path_for(&entry.profile.workload);
            let on_disk = store::stamp(&path);
            if on_disk == entry.stamp {
                continue;
            }
            match on_disk {
                None => {
                    // Deleted by `profile reset`: learn again from scratch.
                    entry.profile.clear_learning();
                    entry.excursions = Default::default();
                    entry.stamp = None;
                    entry.dirty = true;
                    report.reset += 1;
                }
                Some(stamp) => match ProfileStore::read(&path) {
                    Ok(profile) if profile.workload == entry.profile.workload => {
                        entry.profile = profile;
                        entry.excursions = Default::default();
                        entry.stamp = Some(stamp);
                        entry.dirty = false;
                        report.reloaded += 1;
                    }
                    Ok(_) => {
                        log::warn!(
                            "anomaly profile {} holds another workload; keeping the one in memory",
                            path.display()
                        );
                        entry.stamp = None;
                        entry.dirty = true;
                    }
                    Err(error) => {
                        self.stats.corrupt_profiles += 1;
                        store.quarantine(&path, &error);
                        entry.stamp = None;
                        entry.dirty = true;
                    }
                },
            }
        }
        // Files of workloads not in memory yet (`profile import`), while
        // there is room: the others are read when their workload returns.
        let known: HashSet<PathBuf> = self.profiles.keys().map(|k| store.path_for(k)).collect();
        for path in store.files()? {
            if known.contains(&path) || self.profiles.len() >= self.config.config.max_profiles {
                continue;
            }
            match ProfileStore::read(&path) {
                Ok(profile) if !self.profiles.contains_key(&profile.workload) => {
                    let entry = Entry::new(profile, &self.config, store::stamp(&path));
                    self.profiles
                        .insert(entry.profile.workload.clone(), Box::new(entry));
                    report.reloaded += 1;
                }
                Ok(_) => {}
                Err(error) => {
                    self.stats.corrupt_profiles += 1;
                    store.quarantine(&path, &error);
                }
            }
        }
        Ok(report)
    }

    /// Profile counts by state.
    pub fn profile_states(&self) -> ProfileStates {
        let mut states = ProfileStates::default();
        for entry in self.profiles.values() {
            match entry.profile.mode {
                Mode::Learning => states.learning += 1,
                Mode::Enforcing => states.enforcing += 1,
                Mode::Drifting => states.drifting += 1,
            }
            if entry.profile.frozen {
                states.frozen += 1;
            }
        }
        states
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            suppressed_alerts: self.profiles.values().map(|e| e.suppressed).sum(),
            ..self.stats
        }
    }

    pub fn profile(&self, key: &WorkloadKey) -> Option<&Profile> {
        self.profiles.get(key).map(|e| &e.profile)
    }

    pub fn profiles(&self) -> impl Iterator<Item = &Profile> {
        self.profiles.values().map(|e| &e.profile)
    }

    /// Sets a profile's mode in memory (the CLI changes files instead).
    pub fn set_mode(&mut self, key: &WorkloadKey, mode: Mode) -> bool {
        match self.profiles.get_mut(key) {
            Some(entry) => {
                entry.profile.set_mode(mode);
                entry.dirty = true;
                true
            }
            None => false,
        }
    }

    /// Freezes or unfreezes a profile in memory.
    pub fn set_frozen(&mut self, key: &WorkloadKey, frozen: bool) -> bool {
        match self.profiles.get_mut(key) {
            Some(entry) => {
                entry.profile.frozen = frozen;
                entry.dirty = true;
                true
            }
            None => false,
        }
    }
}
