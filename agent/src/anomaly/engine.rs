//! The anomaly engine: routes events to workload profiles, drives the event
//! clock (minute buckets, learning windows), raises alerts and keeps the
//! profiles in step with their files.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use crate::alert::{Action, Alert, Severity};
use crate::event::{Event, WorkloadRef};

use super::config::{AnomalyConfig, CompiledConfig, Detector, ResolvedTuning};
use super::detect::{is_known, observations, rate_contribution, set_for_mut, Observation};
use super::explain::{self, ModelReadJump, RateExcursion};
use super::profile::{Insert, Mode, Profile, WorkloadKey};
use super::rates::{ExcursionState, MinuteBucket, RateMetric};
use super::store::{self, FileStamp, ProfileStore};
use super::AnomalyError;

const NS_PER_MINUTE: u64 = 60_000_000_000;
/// A clock this far behind the last seen time is a new timeline (reboot, or
/// a replay of older events), not reordering between CPUs.
const CLOCK_RESET_NS: u64 = 5 * NS_PER_MINUTE;
/// Idle minutes evaluated one by one after a gap; beyond this, more zero
/// minutes would change nothing (streaks are already broken).
const MAX_IDLE_MINUTES: u64 = 120;

/// Counters for metrics and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Profile files moved aside as corrupt or of another version.
    pub corrupt_profiles: u64,
    /// Events of workloads beyond `max_profiles`, not profiled.
    pub unprofiled_events: u64,
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

struct Entry {
    profile: Profile,
    tuning: ResolvedTuning,
    /// Last event time seen by this profile.
    clock_ns: Option<u64>,
    open_minute: u64,
    bucket: MinuteBucket,
    excursions: [ExcursionState; RateMetric::ALL.len()],
    alert_minute: u64,
    alerts_in_minute: u32,
    /// Alerts dropped over the per-minute budget.
    suppressed: u64,
    dirty: bool,
    /// The file as last written or read by this engine.
    stamp: Option<FileStamp>,
}

impl Entry {
    fn new(profile: Profile, config: &CompiledConfig, stamp: Option<FileStamp>) -> Self {
        let tuning = config.resolve(&profile.workload.kind, &profile.workload.name);
        Entry {
            profile,
            tuning,
            clock_ns: None,
            open_minute: 0,
            bucket: MinuteBucket::default(),
            excursions: Default::default(),
            alert_minute: 0,
            alerts_in_minute: 0,
            suppressed: 0,
            dirty: stamp.is_none(),
            stamp,
        }
    }

    /// Moves this profile's clock to `now`: accrues learning time, closes
    /// finished minutes and ends learning when due.
    fn advance(&mut self, now: u64, config: &CompiledConfig, out: &mut Vec<Alert>) {
        let minute = now / NS_PER_MINUTE;
        match self.clock_ns {
            None => {
                self.clock_ns = Some(now);
                self.open_minute = minute;
            }
            Some(clock) if now >= clock => {
                if self.profile.mode == Mode::Learning && !self.profile.frozen {
                    self.profile.learning.learned_ns += now - clock;
                }
                self.clock_ns = Some(now);
                if minute > self.open_minute {
                    self.close_minutes(minute, config, out);
                }
            }
            Some(clock) if clock - now > CLOCK_RESET_NS => {
                self.clock_ns = Some(now);
                self.open_minute = minute;
                self.bucket = MinuteBucket::default();
                self.excursions = Default::default();
            }
            // Slightly out of order: counted in the open minute.
            Some(_) => {}
        }
        self.finish_learning_if_due(&config.config);
    }

    fn finish_learning_if_due(&mut self, config: &AnomalyConfig) {
        let profile = &mut self.profile;
        if profile.mode != Mode::Learning || profile.frozen {
            return;
        }
        let window_done = profile.learning.learned_ns
            >= config.learning_window_secs.saturating_mul(1_000_000_000)
            && profile.learning.events >= config.learning_min_events;
        let count_done = config
            .learning_max_events
            .is_some_and(|max| profile.learning.events >= max);
        if window_done || count_done {
            profile.mode = config.after_learning;
            if profile.mode == Mode::Learning {
                profile.mode = Mode::Enforcing;
            }
            for metric in RateMetric::ALL {
                profile.rates.get_mut(metric).seed(&config.rates);
            }
            self.dirty = true;
            log::info!(
                "anomaly profile {} finished learning after {} and {} events; it is now {}",
                profile.workload,
                explain::duration(profile.learning.learned_ns),
                profile.learning.events,
                profile.mode
            );
        }
    }

    fn close_minutes(&mut self, up_to: u64, config: &CompiledConfig, out: &mut Vec<Alert>) {
        let bucket = std::mem::take(&mut self.bucket);
        self.evaluate_minute(self.open_minute, &bucket, config, out);
        let idle = (up_to - self.open_minute - 1).min(MAX_IDLE_MINUTES);
        let empty = MinuteBucket::default();
        for i in 0..idle {
            self.evaluate_minute(up_to - idle + i, &empty, config, out);
        }
        self.open_minute = up_to;
    }

    fn evaluate_minute(
        &mut self,
        minute: u64,
        bucket: &MinuteBucket,
        config: &CompiledConfig,
        out: &mut Vec<Alert>,
    ) {
        let rates = &config.config.rates;
        let learns = !self.profile.frozen;
        let mut firing: Vec<RateExcursion> = Vec::new();
        for metric in RateMetric::ALL {
            let value = bucket.value(metric);
            let tuning = *self.tuning.get(metric.detector());
            let baseline = self.profile.rates.get_mut(metric);
            if self.profile.mode == Mode::Learning {
                if learns {
                    baseline.learn(value, rates);
                    self.dirty = true;
                }
                continue;
            }
            let Some(upper) = baseline.upper(tuning.band_width, rates) else {
                // Not enough minutes for a baseline yet: keep collecting.
                if learns {
                    baseline.learn(value, rates);
                    baseline.seed(rates);
                    self.dirty = true;
                }
                continue;
            };
            let level = baseline.level.unwrap_or(0.0);
            let state = &mut self.excursions[metric.index()];
            if value > upper && value >= tuning.floor {
                state.streak += 1;
                state.last_excursion = Some((minute, value));
                // Drifting: once reported, a new level is slowly taken in
                // (updates are clipped to the band).
                if state.alerted && learns && self.profile.mode == Mode::Drifting {
                    baseline.learn(value, rates);
                    self.dirty = true;
                }
                if state.streak >= tuning.sustain_minutes && !state.alerted && tuning.enabled {
                    state.alerted = true;
                    firing.push(RateExcursion {
                        metric,
                        value,
                        level,
                        upper,
                        minutes: state.streak,
                    });
                }
            } else {
                state.streak = 0;
                state.alerted = false;
                if learns && self.profile.mode == Mode::Drifting {
                    baseline.learn(value, rates);
                    self.dirty = true;
                }
            }
        }
        self.raise_rate_alerts(minute, bucket, firing, config, out);
    }

    /// An egress excursion while model reads also jumped is one alert
    /// (possible exfiltration), not two.
    fn raise_rate_alerts(
        &mut self,
        minute: u64,
        bucket: &MinuteBucket,
        mut firing: Vec<RateExcursion>,
        config: &CompiledConfig,
        out: &mut Vec<Alert>,
    ) {
        let egress_fires = firing.iter().any(|f| f.metric == RateMetric::EgressBytes);
        let reads = self.excursions[RateMetric::ModelReadBytes.index()];
        let window = u64::from(self.tuning.get(Detector::RateEgressBytes).sustain_minutes) + 1;
        let model_jump = match reads.last_excursion {
            Some((read_minute, value))
                if egress_fires && minute - read_minute.min(minute) <= window =>
            {
                Some(ModelReadJump {
                    value,
                    level: self.profile.rates.model_read_bytes.level.unwrap_or(0.0),
                })
            }
            _ => None,
        };
        if model_jump.is_some() {
            firing.retain(|f| f.metric != RateMetric::ModelReadBytes);
            self.excursions[RateMetric::ModelReadBytes.index()].alerted = true;
        }
        for excursion in firing {
            let detector = excursion.metric.detector();
            let tuning = self.tuning.get(detector);
            let is_exfiltration =
                excursion.metric == RateMetric::EgressBytes && model_jump.is_some();
            let summary = explain::rate(
                &self.profile,
                &excursion,
                model_jump.as_ref().filter(|_| is_exfiltration),
            );
            let (severity, tags) = if is_exfiltration {
                (
                    tuning.severity.max(Severity::Critical),
                    vec![
                        "anomaly".into(),
                        "exfiltration".into(),
                        "mitre.T1041".into(),
                    ],
                )
            } else {
                (tuning.severity, vec!["anomaly".into()])
            };
            let event = bucket.last_events[excursion.metric.index()]
                .clone()
                .unwrap_or_else(|| placeholder_event(&self.profile.workload));
            let alert = make_alert(detector, severity, summary, tags, event);
            self.emit(alert, minute, config, out);
        }
    }

    fn observe(&mut self, event: &Event, config: &CompiledConfig, out: &mut Vec<Alert>) {
        let profile = &mut self.profile;
        if profile.first_seen.is_empty() {
            profile.first_seen = event.time.clone();
        }
        profile.last_seen = event.time.clone();
        if profile.mode == Mode::Learning && !profile.frozen {
            profile.learning.events += 1;
            self.dirty = true;
        }
        let contribution = rate_contribution(event);
        for (metric, amount) in contribution.amounts {
            self.bucket.add(metric, amount, event);
        }
        if let Some(peer) = contribution.peer {
            self.bucket.add_peer(peer, event);
        }
        // A new executable makes its parent → child pair new too; one alert
        // (on the executable, naming the parent) says it all.
        let mut new_executable = false;
        for observation in observations(event, &config.config.caps) {
            if is_known(&self.profile, &observation) {
                continue;
            }
            new_executable |= observation.detector == Detector::NewExecutable;
            if self.profile.mode == Mode::Learning {
                if !self.profile.frozen {
                    self.learn(&observation, config);
                }
                continue;
            }
            let key = observation.alert_key();
            let tuning = *self.tuning.get(observation.detector);
            let implied = observation.detector == Detector::NewProcessPair && new_executable;
            if implied {
                self.profile
                    .alerted
                    .insert_evicting(&key, config.config.caps.alerted);
            } else if tuning.enabled && !self.profile.alerted.contains(&key) {
                let summary = explain::novel_item(&self.profile, &observation);
                let alert = make_alert(
                    observation.detector,
                    tuning.severity,
                    summary,
                    vec!["anomaly".into()],
                    event.clone(),
                );
                let minute = self.open_minute;
                self.emit(alert, minute, config, out);
                self.profile
                    .alerted
                    .insert_evicting(&key, config.config.caps.alerted);
                self.dirty = true;
            }
            if self.profile.learns() {
                self.learn(&observation, config);
            }
        }
    }

    fn learn(&mut self, observation: &Observation, config: &CompiledConfig) {
        let Some((set, cap)) = set_for_mut(&mut self.profile, observation, &config.config.caps)
        else {
            return;
        };
        let mut dropped = 0;
        for item in &observation.items {
            match set.insert(item, cap) {
                Insert::Added => self.dirty = true,
                Insert::Known => {}
                Insert::Full => dropped += 1,
            }
        }
        self.profile.dropped_at_cap += dropped;
    }

    fn emit(&mut self, alert: Alert, minute: u64, config: &CompiledConfig, out: &mut Vec<Alert>) {
        if self.alert_minute != minute {
            self.alert_minute = minute;
            self.alerts_in_minute = 0;
        }
        if self.alerts_in_minute < config.config.max_alerts_per_minute {
            self.alerts_in_minute += 1;
            out.push(alert);
        } else {
            self.suppressed += 1;
        }
    }
}

fn make_alert(
    detector: Detector,
    severity: Severity,
    summary: String,
    tags: Vec<String>,
    event: Event,
) -> Alert {
    Alert {
        time: event.time.clone(),
        rule: detector.rule_id(),
        severity,
        summary,
        tags,
        action: Action::Alert,
        action_taken: true,
        workload: event.workload.clone(),
        event,
        steps: Vec::new(),
    }
}

fn placeholder_event(workload: &WorkloadKey) -> Event {
    Event {
        workload: Some(WorkloadRef {
            id: String::new(),
            kind: workload.kind.clone(),
            name: workload.name.clone(),
        }),
        ..Event::default()
    }
}

/// Behaviour profiles of all workloads.
pub struct AnomalyEngine {
    config: CompiledConfig,
    store: Option<ProfileStore>,
    profiles: HashMap<WorkloadKey, Entry>,
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
            for (profile, stamp) in loaded.profiles {
                let entry = Entry::new(profile, &engine.config, Some(stamp));
                engine
                    .profiles
                    .insert(entry.profile.workload.clone(), entry);
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
            kind: workload.kind.clone(),
            name: workload.name.clone(),
        };
        if !self.profiles.contains_key(&key) {
            if self.profiles.len() >= self.config.config.max_profiles {
                if self.stats.unprofiled_events == 0 {
                    log::warn!(
                        "anomaly profiles are at their limit of {}; workload {key} and later new workloads are not profiled",
                        self.config.config.max_profiles
                    );
                }
                self.stats.unprofiled_events += 1;
                return out;
            }
            let entry = Entry::new(Profile::new(key.clone()), &self.config, None);
            self.profiles.insert(key.clone(), entry);
        }
        if let Some(entry) = self.profiles.get_mut(&key) {
            entry.advance(event.ktime_ns, &self.config, &mut out);
            entry.observe(event, &self.config, &mut out);
        }
        out
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

    /// Picks up profile files changed, added or deleted on disk (for SIGHUP;
    /// `save` does it too).
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
        // Files of workloads not in memory yet (`profile import`).
        let known: HashSet<PathBuf> = self.profiles.keys().map(|k| store.path_for(k)).collect();
        for path in store.files()? {
            if known.contains(&path) {
                continue;
            }
            match ProfileStore::read(&path) {
                Ok(profile) if !self.profiles.contains_key(&profile.workload) => {
                    let entry = Entry::new(profile, &self.config, store::stamp(&path));
                    self.profiles.insert(entry.profile.workload.clone(), entry);
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
                entry.profile.mode = mode;
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
