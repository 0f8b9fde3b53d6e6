//! The pipeline task: enrich each decoded record, attribute and analyse the
//! event, and hand events and alerts to the sinks.
//!
//! It owns all mutable analysis state (process table, workload table,
//! inventory, profiles, rules); the HTTP listener reads the snapshots it
//! publishes once a second, and serialises them itself.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::{
    alert::Alert,
    analyze::workload::WorkloadChange,
    analyze::{inventory, Analyzer},
    app::detectors::Detectors,
    clock::now_boot_ns,
    enforce::Enforcer,
    enrich::Enricher,
    event::{Access, AssetClass, DirectoryKey, Event, FileInfo, Kind, WallTime},
    ingest::{
        decode::{Payload, Record},
        queue::RecordReceiver,
    },
    llm::LlmStage,
    metrics::pipeline_stats::PipelineStats,
    metrics::{EgressTotals, EvictionTable, Metrics},
    observe::http::Readiness,
    policy::{PolicyReloader, ReloadOutcome},
    sink::{stream::StreamHub, SinkSender},
};

mod hold;
mod identity;
mod maps;

pub use hold::HeldEvents;
use hold::Release;
pub use identity::IdentityAnswers;
use identity::{next_answer, HOLD_CHECK};
pub use maps::MapsAnswers;

/// How often the pipeline publishes snapshots and runs periodic work.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// How often learned profiles are saved.
const PROFILE_SAVE_EVERY: u32 = 60;

/// How long the per-workload series of an ended workload are kept: long
/// enough for Prometheus to scrape its last alerts and for alerting rules
/// over 5-minute windows to see them.
const ENDED_WORKLOAD_SERIES_KEPT_NS: u64 = 10 * 60 * 1_000_000_000;

/// Where workload membership changes are sent.
pub type ChangeHandler = Box<dyn FnMut(&[WorkloadChange]) + Send>;

/// Where TLS libraries found by the library scans are sent (the uprobes).
pub type TlsHandler = Box<dyn FnMut(Vec<crate::kernel::tls::Target>) + Send>;

/// Where directories whose plain reads the kernel may fold are offered
/// (the `FILE_ACCESS` poller): a tracked process's key of the directory and
/// its path.
pub type FoldHandler = Box<dyn FnMut(DirectoryKey, &str) + Send>;

/// The latest inventory, for the HTTP listener, which serialises it on
/// request: the pipeline only swaps in a new typed snapshot.
pub type InventorySnapshot = Arc<Mutex<Arc<inventory::InventorySnapshot>>>;

/// The stages the pipeline runs, in order.
pub struct Stages {
    pub enricher: Enricher,
    pub analyzer: Analyzer,
    pub detectors: Detectors,
    /// Carries out kill and deny actions; applied to the policy set already.
    pub enforcer: Enforcer,
    /// Clear text into LLM events, and the causes of actions.
    pub llm: LlmStage,
}

/// Where the pipeline's results go.
pub struct Outlets {
    pub events: Option<SinkSender<Arc<Event>>>,
    /// Every alert goes to each of these (JSON lines, webhook, syslog).
    pub alerts: Vec<SinkSender<Arc<Alert>>>,
    /// The live stream's readers.
    pub stream: Arc<StreamHub>,
    pub stats: Arc<PipelineStats>,
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    /// The latest inventory, for the listener.
    pub inventory: InventorySnapshot,
    /// Where workload changes go (the kernel's tracking maps).
    pub on_changes: ChangeHandler,
    /// Where newly found TLS libraries go (the kernel's uprobes).
    pub on_tls: TlsHandler,
    /// Where foldable directories go (the kernel's read counters).
    pub on_fold: FoldHandler,
    /// The container runtimes' answers, and the events that wait for them.
    pub identities: Option<IdentityAnswers>,
    /// The maps reader's answers, and the events that wait for them.
    pub maps: Option<MapsAnswers>,
}

pub struct Pipeline {
    enricher: Enricher,
    analyzer: Analyzer,
    detectors: Detectors,
    enforcer: Enforcer,
    llm: LlmStage,
    event_sink: Option<SinkSender<Arc<Event>>>,
    alert_sinks: Vec<SinkSender<Arc<Alert>>>,
    stream: Arc<StreamHub>,
    stats: Arc<PipelineStats>,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
    inventory: InventorySnapshot,
    on_changes: ChangeHandler,
    on_tls: TlsHandler,
    on_fold: FoldHandler,
    identities: Option<IdentityAnswers>,
    maps: Option<MapsAnswers>,
    /// Policy reloads (SIGHUP, changed files), when policies are watched.
    policy_reloads: Option<PolicyReloader>,
    /// Bytes already counted as egress per open connection.
    egress: EgressTotals,
    /// Workloads with metric series that ended, and when (boot-clock ns).
    ended_workloads: HashMap<String, u64>,
}

impl Pipeline {
    pub fn new(
        stages: Stages,
        outlets: Outlets,
        policy_reloads: Option<PolicyReloader>,
    ) -> Pipeline {
        Pipeline {
            enricher: stages.enricher,
            analyzer: stages.analyzer,
            detectors: stages.detectors,
            enforcer: stages.enforcer,
            llm: stages.llm,
            event_sink: outlets.events,
            alert_sinks: outlets.alerts,
            stream: outlets.stream,
            stats: outlets.stats,
            metrics: outlets.metrics,
            readiness: outlets.readiness,
            inventory: outlets.inventory,
            on_changes: outlets.on_changes,
            on_tls: outlets.on_tls,
            on_fold: outlets.on_fold,
            identities: outlets.identities,
            maps: outlets.maps,
            policy_reloads,
            egress: EgressTotals::default(),
            ended_workloads: HashMap::new(),
        }
    }
}

impl Pipeline {
    /// Runs until the queue closes (the reader stopped), then saves state.
    pub async fn run(mut self, mut queue: RecordReceiver) {
        let mut batch = Vec::with_capacity(256);
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut ticks = 0u32;
        let mut reloads = self.policy_reloads.take();
        let mut answers = self.identities.as_mut().and_then(|i| i.answers.take());
        let mut name_lookups = self.enforcer.take_lookups();
        let mut maps_answers = self.maps.as_mut().and_then(|m| m.answers.take());
        let mut hold_check = tokio::time::interval(HOLD_CHECK);
        hold_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                Some(resolved) = next_answer(&mut answers) => self.identity_resolved(resolved),
                Some(resolved) = next_answer(&mut name_lookups) => self.name_resolved(resolved),
                Some(read) = next_answer(&mut maps_answers) => self.maps_answered(read),
                _ = hold_check.tick(), if self.holds_events() || self.holds_for_maps() => {
                    self.release_expired_maps();
                    self.release_expired();
                }
                outcome = next_reload(&mut reloads) => match outcome {
                    Some(outcome) => self.reloaded(outcome, reloads.as_ref()),
                    // The reloader stopped: nothing more will come.
                    None => reloads = None,
                },
                received = queue.recv_many(&mut batch, 256) => {
                    if received == 0 {
                        break;
                    }
                    for record in batch.drain(..) {
                        self.handle(record);
                    }
                    self.readiness.heartbeat();
                }
                _ = housekeeping.tick() => {
                    ticks = ticks.wrapping_add(1);
                    self.housekeeping(ticks.is_multiple_of(PROFILE_SAVE_EVERY));
                }
            }
        }
        // Nothing more arrives: what waits goes out as it is.
        if let Some(maps) = self.maps.as_mut() {
            for (_, events) in maps.held.drain() {
                self.release_from_maps(events, Release::Expired);
            }
        }
        if let Some(identities) = self.identities.as_mut() {
            for (_, events) in identities.held.drain() {
                self.release(events, Release::Expired);
            }
        }
        self.housekeeping(true);
    }

    pub fn handle(&mut self, record: Record) {
        let Record { common, payload } = record;
        if let Payload::ClearText(text) = payload {
            self.handle_clear_text(common, *text);
            return;
        }
        let event = self.enricher.enrich(Record { common, payload });
        self.deliver(event);
    }

    /// Clear text is not an event: the process it came from is filled in,
    /// then `llm` turns it into the LLM events it completes.
    fn handle_clear_text(
        &mut self,
        common: crate::ingest::decode::Common,
        mut text: crate::ingest::decode::clear_text::ClearText,
    ) {
        let data = std::mem::take(&mut text.data);
        let from = self.enricher.enrich(Record {
            common,
            payload: Payload::ClearText(Box::new(text.clone())),
        });
        text.data = data;
        self.stats.events.add(Some(from.kind), 1);
        self.metrics.event(from.kind);
        for event in self.llm.observe(&from, &text) {
            self.deliver(event);
        }
    }

    /// Attributes, correlates, counts, writes and checks one event.
    fn deliver(&mut self, mut event: Event) {
        if event
            .file
            .as_ref()
            .is_some_and(FileInfo::is_uninteresting_relative)
        {
            self.stats.relative_filtered.add(Some(event.kind), 1);
            return;
        }
        let changes = self.analyzer.attribute(&mut event);
        if !changes.is_empty() {
            (self.on_changes)(&changes);
        }
        self.learn_allowed_name(&event);
        if let Some(file) = event.file.as_ref() {
            if let (Some(key), Some(directory)) = (
                file.fold_candidate,
                std::path::Path::new(&file.path).parent(),
            ) {
                (self.on_fold)(key, &directory.to_string_lossy());
            }
        }
        let Some(event) = self.hold_for_maps(event) else {
            return;
        };
        let Some(event) = self.hold_for_identity(event) else {
            return;
        };
        self.finish(event);
    }

    /// Writes and checks an attributed event.
    fn finish(&mut self, mut event: Event) {
        self.llm.correlate(&mut event);
        self.count(&event);
        let event = Arc::new(event);
        if let Some(sink) = &self.event_sink {
            sink.send(event.clone(), Some(event.kind));
        }
        self.stream.publish_event(&event);
        let sample = self.metrics.sample_rule_eval();
        let started = sample.then(std::time::Instant::now);
        let alerts = self.detectors.detect(&event);
        if let Some(started) = started {
            self.metrics.observe_rule_eval(started.elapsed());
        }
        for alert in alerts {
            self.raise(alert);
        }
        if let Some(alert) = self.enforcer.kernel_alert(&event) {
            self.raise(alert);
        }
    }

    /// A verified DNS answer for a name of an egress allowlist: the kernel
    /// allows its addresses before the event goes on, so a workload that
    /// asked can connect as soon as its answer went through here.
    fn learn_allowed_name(&mut self, event: &Event) {
        let Some(dns) = event.dns.as_ref() else {
            return;
        };
        if event.kind != Kind::DnsAnswer || dns.verified != Some(true) || dns.answers.is_empty() {
            return;
        }
        if let Some(name) = crate::policy::kernel_plan::dns_name(&dns.name) {
            self.enforcer.learn_name(&name, &dns.answers, &self.metrics);
        }
    }

    /// The agent's own lookup of an allowlisted name: the kernel allows
    /// its addresses, and they name connections to them.
    fn name_resolved(&mut self, resolved: crate::enforce::Resolved) {
        self.enforcer.name_resolved(&resolved, &self.metrics);
        if resolved.error.is_none() {
            self.enricher.name_resolved_by_agent(
                &resolved.name,
                &resolved.addresses,
                crate::enforce::egress_names::ADDRESS_LIFE.as_secs(),
            );
        }
    }

    fn count(&mut self, event: &Event) {
        self.stats.events.add(Some(event.kind), 1);
        self.metrics.event(event.kind);
        if matches!(event.kind, Kind::LlmRequest | Kind::LlmResponse) {
            self.count_llm(event);
        }
        let Some(workload) = &event.workload else {
            return;
        };
        match event.kind {
            Kind::TcpSummary | Kind::UdpSend => {
                let bytes = self.egress.new_bytes(event);
                if bytes > 0 {
                    self.metrics.workload_egress(workload, bytes);
                }
            }
            Kind::Open => {
                let file = event.file.as_ref();
                let model = file.and_then(|f| f.class).is_some_and(AssetClass::is_model);
                let read = file.and_then(|f| f.access) != Some(Access::Write);
                if let (true, true, Some(size)) = (model, read, file.and_then(|f| f.size)) {
                    self.metrics.workload_model_read(workload, size);
                }
            }
            _ => {}
        }
    }

    /// The LLM series: requests, tokens, durations.
    fn count_llm(&self, event: &Event) {
        let Some(llm) = &event.llm else {
            return;
        };
        let workload = event.workload.as_ref();
        if event.kind == Kind::LlmRequest {
            let model = if llm.model.is_empty() {
                "unknown"
            } else {
                &llm.model
            };
            self.metrics.llm_request(workload, &llm.provider, model);
        } else {
            self.metrics.llm_response(
                workload,
                &llm.provider,
                llm.input_tokens,
                llm.output_tokens,
                llm.latency_ms.map(Duration::from_millis),
            );
        }
    }

    /// Carries out the alert's action, counts it and writes it.
    fn raise(&mut self, mut alert: Alert) {
        let enricher = &self.enricher;
        let budget_spent = self.enforcer.carry_out(&mut alert, |pid, start_time| {
            same_process(pid, start_time, enricher)
        });
        self.metrics.alert(&alert);
        if let Some(workload) = &alert.event.workload {
            self.analyzer.inventory.note_alert(workload);
        }
        if alert.event.ktime_ns > 0 {
            self.metrics
                .observe_event_latency_since(alert.event.ktime_ns);
        }
        self.stream.publish_alert(&alert);
        let alert = Arc::new(alert);
        for sink in &self.alert_sinks {
            sink.send(alert.clone(), None);
        }
        if let Some(critical) = budget_spent {
            self.raise(critical);
        }
    }

    /// Swaps in a reloaded policy set, or keeps the last good one.
    fn reloaded(&mut self, outcome: ReloadOutcome, reloader: Option<&PolicyReloader>) {
        match outcome {
            ReloadOutcome::Loaded { rules } => {
                if let Some(reloader) = reloader {
                    let policies = reloader.current.borrow().clone();
                    // SIGHUP lands here too: the enforcer re-reads the switch.
                    self.enforcer.apply(&policies, &self.metrics);
                    self.detectors.swap_policies(policies);
                }
                self.metrics.policy_reload_succeeded(rules);
                log::info!("policies reloaded: {rules} rules");
            }
            ReloadOutcome::Failed(errors) => {
                self.metrics.policy_reload_failed();
                log::error!("policy reload failed; the previous rules stay in force:\n{errors}");
            }
        }
    }

    fn housekeeping(&mut self, save_profiles: bool) {
        self.readiness.heartbeat();
        let now = now_boot_ns();
        let mut changes = self.analyzer.scan_due(now);
        let departures = self.analyzer.depart_gone(now, |pid| {
            std::path::Path::new(&format!("/proc/{pid}")).exists()
        });
        for &pid in &departures.pids {
            self.enricher.table.exit(pid, now);
        }
        self.metrics.exits_inferred(departures.pids.len());
        changes.extend(departures.changes);
        if !changes.is_empty() {
            (self.on_changes)(&changes);
        }
        for event in self.llm.tick(now) {
            self.deliver(event);
        }
        // Libraries found by this second's scans, here or in `handle`.
        let tls = self.analyzer.take_tls_candidates();
        if !tls.is_empty() {
            (self.on_tls)(tls);
        }
        for alert in self.detectors.tick(now) {
            self.raise(alert);
        }
        let counts = self.analyzer.workload_counts();
        self.metrics
            .set_workload_counts(counts.iter().map(|(k, n)| (k.as_str(), *n)));
        self.sync_workload_series(now);
        self.metrics.name_cache(self.enricher.name_stats());
        self.enforcer.expire_names(&self.metrics);
        self.metrics
            .maps_reads("skipped", self.analyzer.take_maps_skipped());
        self.detectors.report_profiles(&self.metrics, save_profiles);
        self.detectors.report_rules(&self.metrics);
        self.metrics.observe_stream_dropped_total(
            self.stream
                .dropped
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        self.metrics.observe_evictions_total(
            EvictionTable::Process,
            self.enricher.table.stats().live_evicted,
        );
        let (identities_evicted, lookups_skipped) = self.analyzer.identity_stats();
        self.metrics
            .observe_evictions_total(EvictionTable::ContainerIdentity, identities_evicted);
        self.metrics
            .observe_runtime_lookups_skipped_total(lookups_skipped);
        let snapshot = Arc::new(self.analyzer.inventory_snapshot());
        if let Ok(mut slot) = self.inventory.lock() {
            *slot = snapshot;
        }
    }
}

impl Pipeline {
    /// Gives every live workload its series and GPU process count, and drops
    /// the series of workloads that ended a while ago.
    fn sync_workload_series(&mut self, now: u64) {
        let gpu: HashMap<String, usize> = self
            .analyzer
            .gpu_process_counts()
            .map(|(id, n)| (id.to_string(), n))
            .collect();
        let mut live = HashSet::new();
        for info in self.analyzer.workloads.workloads() {
            if info.pids.is_empty() {
                continue;
            }
            let processes = gpu.get(&info.workload.id).copied().unwrap_or(0);
            self.metrics.workload_live(&info.workload, processes as u64);
            let pods = self.analyzer.inventory.pods_of(&info.workload.id);
            if !pods.is_empty() {
                self.metrics.workload_pods(
                    &info.workload,
                    pods.iter().map(|p| (p.namespace.as_str(), p.pod.as_str())),
                );
            }
            live.insert(info.workload.id);
        }
        for id in self.metrics.workloads_with_series() {
            if live.contains(&id) {
                self.ended_workloads.remove(&id);
                continue;
            }
            let ended = *self.ended_workloads.entry(id.clone()).or_insert_with(|| {
                self.metrics.workload_ended(&id);
                now
            });
            if now.saturating_sub(ended) >= ENDED_WORKLOAD_SERIES_KEPT_NS {
                self.metrics.forget_workload(&id);
                self.ended_workloads.remove(&id);
            }
        }
    }
}

/// The next reload outcome; never resolves when nothing is watched.
async fn next_reload(reloader: &mut Option<PolicyReloader>) -> Option<ReloadOutcome> {
    match reloader {
        Some(reloader) => reloader.outcomes.recv().await,
        None => std::future::pending().await,
    }
}

/// Whether `pid` is still the process that started at `start_time`: a kill
/// must never reach a reused pid.
fn same_process(pid: u32, start_time: Option<WallTime>, enricher: &Enricher) -> bool {
    enricher.table.get(pid).is_some_and(|p| {
        start_time.is_none_or(|start_time| enricher.clock().wall_time(p.start_ns) == start_time)
    })
}
