//! The live state of one workload's profile: its event clock, the open
//! minute bucket, excursion streaks and alert budget; and how one event or
//! one closed minute changes the profile and raises alerts.

use crate::alert::{Action, Alert, Severity};
use crate::event::{Event, Kind, WorkloadKind, WorkloadRef};

use super::config::{AnomalyConfig, CompiledConfig, Detector, ResolvedTuning};
use super::detect::{is_known, observations, rate_contribution, set_for_mut, Observation};
use super::explain::{self, ModelReadJump, RateExcursion};
use super::generalize::{exe_is_its_own_pattern, generalize_exe};
use super::profile::{Insert, Mode, Profile, WorkloadKey};
use super::rates::{ExcursionState, MinuteBucket, RateMetric};
use super::store::FileStamp;

pub(super) const NS_PER_MINUTE: u64 = 60_000_000_000;
/// A clock this far behind the last seen time is a new timeline (reboot, or
/// a replay of older events), not reordering between CPUs.
pub(super) const CLOCK_RESET_NS: u64 = 5 * NS_PER_MINUTE;
/// Idle minutes evaluated one by one after a gap; beyond this, more zero
/// minutes would change nothing (streaks are already broken).
const MAX_IDLE_MINUTES: u64 = 120;

pub(super) struct Entry {
    pub(super) profile: Profile,
    pub(super) tuning: ResolvedTuning,
    /// Last event time seen by this profile.
    pub(super) clock_ns: Option<u64>,
    pub(super) open_minute: u64,
    pub(super) bucket: MinuteBucket,
    pub(super) excursions: [ExcursionState; RateMetric::ALL.len()],
    pub(super) alert_minute: u64,
    pub(super) alerts_in_minute: u32,
    /// Alerts dropped over the per-minute budget.
    pub(super) suppressed: u64,
    pub(super) dirty: bool,
    /// The file as last written or read by this engine.
    pub(super) stamp: Option<FileStamp>,
}

impl Entry {
    pub(super) fn new(profile: Profile, config: &CompiledConfig, stamp: Option<FileStamp>) -> Self {
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
    pub(super) fn advance(&mut self, now: u64, config: &CompiledConfig, out: &mut Vec<Alert>) {
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
                .as_deref()
                .cloned()
                .unwrap_or_else(|| placeholder_event(&self.profile.workload));
            let alert = make_alert(detector, severity, summary, tags, event);
            self.emit(alert, minute, config, out);
        }
    }

    pub(super) fn observe(&mut self, event: &Event, config: &CompiledConfig, out: &mut Vec<Alert>) {
        let profile = &mut self.profile;
        if profile.first_seen.is_none() {
            profile.first_seen = event.time;
        }
        profile.last_seen = event.time;
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
        // The workload's own processes run known executables, even when
        // their exec came before they joined it (discovery classifies a
        // server after it started): learn the executable of every event.
        let item_bytes = config.config.caps.item_bytes;
        let known_as_is = |profile: &Profile, exe: &str| {
            exe_is_its_own_pattern(exe, item_bytes) && profile.executables.contains(exe)
        };
        if self.profile.learns()
            && event.kind != Kind::Exec
            && !event.process.exe.is_empty()
            && !known_as_is(&self.profile, &event.process.exe)
        {
            let exe = generalize_exe(&event.process.exe, item_bytes);
            let own = Observation::new(Detector::NewExecutable, exe, event.process.exe.to_string());
            if !is_known(&self.profile, &own) {
                self.learn(&own, config);
            }
        }
        for observation in observations(event, &config.config.caps, &config.resolvers) {
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
        time: event.time,
        rule: detector.rule_id(),
        severity,
        summary,
        tags,
        action: Action::Alert,
        action_taken: true,
        enforcement: None,
        workload: event.workload.clone(),
        event,
        steps: Vec::new(),
    }
}

fn placeholder_event(workload: &WorkloadKey) -> Event {
    Event {
        workload: Some(WorkloadRef {
            id: String::new(),
            kind: WorkloadKind::parse(&workload.kind).unwrap_or_default(),
            name: workload.name.clone(),
            claimed: false,
        }),
        ..Event::default()
    }
}
