//! Alerts: what rules and anomaly detectors raise, and what alert sinks write.
//!
//! One JSON object per line (`docs/policy.md` documents the fields).

use serde::{Deserialize, Serialize};

use crate::event::{Event, WorkloadRef};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];
}

impl std::str::FromStr for Severity {
    type Err = String;

    fn from_str(name: &str) -> Result<Severity, String> {
        Severity::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .ok_or_else(|| {
                format!("{name:?} is not a severity: info, low, medium, high or critical")
            })
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Alert,
    Kill,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Alert => "alert",
            Action::Kill => "kill",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// RFC 3339 time of the triggering (last) event.
    pub time: String,
    /// Rule id, or `anomaly.<detector>` for anomaly alerts.
    pub rule: String,
    pub severity: Severity,
    /// One human sentence naming the process and the object.
    pub summary: String,
    #[serde(default)]
    pub tags: Vec<String>,
    pub action: Action,
    /// Whether the action was carried out (always true for `alert`).
    pub action_taken: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadRef>,
    /// The triggering event (the last step for sequences).
    pub event: Event,
    /// For sequences: the events of each step, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Event>,
}
