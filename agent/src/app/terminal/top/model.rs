//! What `aiwatch top` shows, worked out from its readings: one row per
//! workload with its rates, the agent's health, the latest alerts, and the
//! operator's filters and sort order. Pure data, so that it is tested
//! without a terminal.

use std::{
    collections::{BTreeMap, VecDeque},
    time::Duration,
};

use crate::{alert::Alert, analyze::inventory::InventorySnapshot, metrics::WORKLOAD_KINDS};

use super::reading::{Reading, SeriesKey, WorkloadTotals};

/// How far back "in the last minute" looks.
pub const WINDOW: Duration = Duration::from_secs(60);
/// How far back a rate looks: long enough to smooth the periodic TCP
/// summaries that egress bytes arrive in.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);
/// Latest alerts kept for the alert pane.
pub const LATEST_ALERTS: usize = 100;

/// The order of the workload rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    Alerts,
    Egress,
    ModelReads,
    Name,
}

impl SortKey {
    pub fn next(self) -> SortKey {
        match self {
            SortKey::Alerts => SortKey::Egress,
            SortKey::Egress => SortKey::ModelReads,
            SortKey::ModelReads => SortKey::Name,
            SortKey::Name => SortKey::Alerts,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::Alerts => "alerts",
            SortKey::Egress => "egress",
            SortKey::ModelReads => "model reads",
            SortKey::Name => "name",
        }
    }
}

/// The rows and alerts shown: a workload name fragment and a kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Rows whose name contains this (empty: every row).
    pub workload: String,
    pub kind: Option<&'static str>,
}

impl Filter {
    /// The next kind in `WORKLOAD_KINDS`, then every kind again.
    pub fn next_kind(&mut self) {
        self.kind = match self.kind {
            None => WORKLOAD_KINDS.first().copied(),
            Some(kind) => {
                let at = WORKLOAD_KINDS.iter().position(|k| *k == kind);
                at.and_then(|i| WORKLOAD_KINDS.get(i + 1)).copied()
            }
        };
    }

    pub fn admits(&self, name: &str, kind: &str) -> bool {
        name.contains(self.workload.as_str()) && self.kind.is_none_or(|k| k == kind)
    }
}

/// One workload's line.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub name: String,
    pub kind: String,
    /// Live processes, from the inventory (`None`: not in it, e.g. the
    /// `other` series past the cap).
    pub processes: Option<usize>,
    pub gpu_processes: u64,
    pub egress_per_second: f64,
    pub model_read_bytes: f64,
    pub alerts: u64,
}

/// The agent's own health.
#[derive(Clone, Debug, PartialEq)]
pub struct Health {
    pub ready: bool,
    pub events_per_second: f64,
    pub lost: u64,
    pub lost_per_second: f64,
    /// The ring buffer's fill, 0 to 1 (`None`: size unknown).
    pub ringbuf_fill: Option<f64>,
    pub rules_loaded: u64,
    pub stream_dropped: u64,
}

/// Everything `top` knows.
#[derive(Default)]
pub struct TopModel {
    /// Readings of the last [`WINDOW`], oldest first.
    readings: VecDeque<Reading>,
    inventory: Option<InventorySnapshot>,
    alerts: VecDeque<Alert>,
    pub filter: Filter,
    pub sort: Option<SortKey>,
    /// Count model reads and alerts since the agent started rather than in
    /// the last minute (the one-shot table, which watches for a second).
    since_start: bool,
}

impl TopModel {
    /// A model whose model reads and alerts count since the agent started.
    pub fn counting_since_start() -> TopModel {
        TopModel {
            since_start: true,
            ..TopModel::default()
        }
    }

    pub fn push_reading(&mut self, reading: Reading) {
        // Keep one reading at or past the window's start, so that a minute's
        // difference spans a whole minute.
        while self.readings.len() > 1
            && self
                .readings
                .get(1)
                .is_some_and(|second| reading.at.duration_since(second.at) >= WINDOW)
        {
            self.readings.pop_front();
        }
        self.readings.push_back(reading);
    }

    pub fn set_inventory(&mut self, inventory: InventorySnapshot) {
        self.inventory = Some(inventory);
    }

    pub fn push_alert(&mut self, alert: Alert) {
        if self.alerts.len() == LATEST_ALERTS {
            self.alerts.pop_front();
        }
        self.alerts.push_back(alert);
    }

    pub fn sort_key(&self) -> SortKey {
        self.sort.unwrap_or(SortKey::Alerts)
    }

    /// The oldest reading within `span` of the latest, and the latest.
    fn span(&self, span: Duration) -> Option<(&Reading, &Reading)> {
        let latest = self.readings.back()?;
        let oldest = self
            .readings
            .iter()
            .find(|r| latest.at.duration_since(r.at) <= span)
            .unwrap_or(latest);
        Some((oldest, latest))
    }

    pub fn health(&self) -> Option<Health> {
        let (old, new) = self.span(RATE_WINDOW)?;
        let seconds = new.at.duration_since(old.at).as_secs_f64();
        Some(Health {
            ready: new.ready,
            events_per_second: rate(old.events, new.events, seconds),
            lost: count(new.lost),
            lost_per_second: rate(old.lost, new.lost, seconds),
            ringbuf_fill: (new.ringbuf_size_bytes > 0.0)
                .then(|| (new.ringbuf_used_bytes / new.ringbuf_size_bytes).clamp(0.0, 1.0)),
            rules_loaded: count(new.rules_loaded),
            stream_dropped: count(new.stream_dropped),
        })
    }

    /// The workload rows that pass the filter, in the chosen order.
    pub fn rows(&self) -> Vec<Row> {
        let mut keys: BTreeMap<SeriesKey, Option<usize>> = BTreeMap::new();
        for w in self.inventory.iter().flat_map(|i| &i.workloads) {
            let key = (w.workload.name.clone(), w.workload.kind.to_string());
            *keys.entry(key).or_default().get_or_insert(0) += w.processes.len();
        }
        if let Some(latest) = self.readings.back() {
            for key in latest.workloads.keys() {
                keys.entry(key.clone()).or_default();
            }
        }
        let none = WorkloadTotals::default();
        let minute = self.span(WINDOW);
        let recent = self.span(RATE_WINDOW);
        let totals = |reading: Option<&Reading>, key: &SeriesKey| -> WorkloadTotals {
            reading
                .and_then(|r| r.workloads.get(key))
                .unwrap_or(&none)
                .clone()
        };
        let mut rows: Vec<Row> = keys
            .into_iter()
            .filter(|((name, kind), _)| self.filter.admits(name, kind))
            .map(|(key, processes)| {
                let m_new = totals(minute.map(|s| s.1), &key);
                let m_old = if self.since_start {
                    WorkloadTotals::default()
                } else {
                    totals(minute.map(|s| s.0), &key)
                };
                let (r_old, r_new) = (
                    totals(recent.map(|s| s.0), &key),
                    totals(recent.map(|s| s.1), &key),
                );
                let seconds = recent
                    .map(|(old, new)| new.at.duration_since(old.at).as_secs_f64())
                    .unwrap_or(0.0);
                Row {
                    processes,
                    gpu_processes: count(m_new.gpu_processes),
                    egress_per_second: rate(r_old.egress_bytes, r_new.egress_bytes, seconds),
                    model_read_bytes: growth(m_old.model_read_bytes, m_new.model_read_bytes),
                    alerts: count(growth(m_old.alerts, m_new.alerts)),
                    name: key.0,
                    kind: key.1,
                }
            })
            .collect();
        match self.sort_key() {
            SortKey::Alerts => rows.sort_by_key(|row| std::cmp::Reverse(row.alerts)),
            SortKey::Egress => {
                rows.sort_by(|a, b| b.egress_per_second.total_cmp(&a.egress_per_second))
            }
            SortKey::ModelReads => {
                rows.sort_by(|a, b| b.model_read_bytes.total_cmp(&a.model_read_bytes))
            }
            SortKey::Name => {} // the map's order
        }
        rows
    }

    /// The latest alerts that pass the filter, newest first.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts
            .iter()
            .rev()
            .filter(|alert| match &alert.workload {
                Some(w) => self.filter.admits(&w.name, w.kind.as_str()),
                None => self.filter == Filter::default(),
            })
    }
}

/// A counter's growth; a restarted agent's counters start again from 0.
fn growth(old: f64, new: f64) -> f64 {
    if new >= old {
        new - old
    } else {
        new
    }
}

fn rate(old: f64, new: f64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        growth(old, new) / seconds
    } else {
        0.0
    }
}

/// A metric value as a count (they are integers sent as floats).
fn count(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        value.round() as u64
    } else {
        0
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
