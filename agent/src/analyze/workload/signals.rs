//! Signals: the evidence that a process is an AI workload, each with a
//! weight and the kind it suggests, kept so a verdict can say why.

use serde::{Deserialize, Serialize};

pub use crate::event::WorkloadKind;

/// Where a signal came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalSource {
    /// Executable, script, Python module or argv of the process.
    Exec,
    /// A shared library mapped into the process.
    Library,
    /// A GPU device node opened.
    GpuDevice,
    /// A model file opened for reading.
    ModelRead,
    /// A model file opened for writing (a checkpoint).
    ModelWrite,
    /// A data set file opened.
    DatasetRead,
    /// A listening socket.
    Listen,
    /// A declaration in the configuration.
    Declared,
    /// A model named on the command line (`--model org/name`).
    CommandLine,
    /// A request to an LLM API (`llm_request`).
    LlmApi,
}

/// One piece of evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    pub source: SignalSource,
    /// What was recognised: a tool (`vllm`), a library family
    /// (`onnxruntime`), an asset class. Signals are unique per source and key.
    pub key: String,
    /// The concrete thing seen: the library or model path, the command.
    pub detail: String,
    pub weight: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggests: Option<WorkloadKind>,
    /// The signal names the tool outright: its kind wins over sums.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub decisive: bool,
}

impl Signal {
    /// One human phrase: `library onnxruntime (/…/libonnxruntime.so)`.
    pub fn reason(&self) -> String {
        let source = match self.source {
            SignalSource::Exec => "runs",
            SignalSource::Library => "maps library",
            SignalSource::GpuDevice => "opened GPU device",
            SignalSource::ModelRead => "read model",
            SignalSource::ModelWrite => "wrote model",
            SignalSource::DatasetRead => "read data set",
            SignalSource::Listen => "listens on",
            SignalSource::Declared => "declared as",
            SignalSource::CommandLine => "names a model on its command line",
            SignalSource::LlmApi => "calls LLM API",
        };
        if self.detail.is_empty() || self.detail == self.key {
            format!("{source} {}", self.key)
        } else {
            format!("{source} {} ({})", self.key, self.detail)
        }
    }
}

/// Signals most evidence lists keep; more are counted, not stored.
pub const MAX_SIGNALS: usize = 24;

/// The deduplicated signals of a process or a workload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub signals: Vec<Signal>,
    /// Signals dropped because the list was full.
    #[serde(skip_serializing_if = "is_zero")]
    pub dropped: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Evidence {
    /// Whether every signal is something a process can claim about itself
    /// (its name, its command line, a device it opened, a port it listens
    /// on), with nothing it had to load or read (libraries, models, data)
    /// and no declaration.
    pub fn claims_only(&self) -> bool {
        self.signals.iter().all(|s| {
            matches!(
                s.source,
                SignalSource::Exec
                    | SignalSource::CommandLine
                    | SignalSource::GpuDevice
                    | SignalSource::Listen
            )
        })
    }

    /// Adds a signal unless one with the same source and key is there;
    /// returns whether the evidence changed (so a verdict is worth redoing).
    pub fn add(&mut self, signal: Signal) -> bool {
        if let Some(existing) = self
            .signals
            .iter_mut()
            .find(|s| s.source == signal.source && s.key == signal.key)
        {
            if signal.weight > existing.weight {
                *existing = signal;
                return true;
            }
            return false;
        }
        if self.signals.len() >= MAX_SIGNALS {
            self.dropped = self.dropped.saturating_add(1);
            return false;
        }
        self.signals.push(signal);
        true
    }

    /// Adds every signal of `other`; returns whether anything changed.
    pub fn merge(&mut self, other: &Evidence) -> bool {
        let mut changed = false;
        for signal in &other.signals {
            changed |= self.add(signal.clone());
        }
        changed
    }

    pub fn score(&self) -> u32 {
        self.signals.iter().map(|s| s.weight).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.signals.is_empty()
    }

    /// The kind the signals point to, if their score reaches `threshold`.
    ///
    /// A decisive signal (a known tool) settles the kind. Otherwise the kind
    /// whose suggesting signals weigh most wins (ties: notebook, training,
    /// inference, agent, pipeline); signals that suggest nothing only add to
    /// the score, and a workload with none suggesting is `unknown-ai`.
    pub fn verdict(&self, threshold: u32) -> Option<WorkloadKind> {
        if let Some(decisive) = self
            .signals
            .iter()
            .filter(|s| s.decisive)
            .max_by_key(|s| s.weight)
        {
            return Some(decisive.suggests.unwrap_or(WorkloadKind::UnknownAi));
        }
        if self.score() < threshold {
            return None;
        }
        let order = [
            WorkloadKind::Notebook,
            WorkloadKind::Training,
            WorkloadKind::Inference,
            WorkloadKind::Agent,
            WorkloadKind::Pipeline,
        ];
        let mut best = (0u32, WorkloadKind::UnknownAi);
        for kind in order {
            let weight: u32 = self
                .signals
                .iter()
                .filter(|s| s.suggests == Some(kind))
                .map(|s| s.weight)
                .sum();
            if weight > best.0 {
                best = (weight, kind);
            }
        }
        Some(best.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(key: &str, weight: u32, suggests: Option<WorkloadKind>) -> Signal {
        Signal {
            source: SignalSource::Library,
            key: key.into(),
            detail: String::new(),
            weight,
            suggests,
            decisive: false,
        }
    }

    #[test]
    fn duplicates_do_not_add_up() {
        let mut evidence = Evidence::default();
        assert!(evidence.add(signal("torch", 6, None)));
        assert!(!evidence.add(signal("torch", 6, None)));
        assert_eq!(evidence.score(), 6);
        assert_eq!(evidence.verdict(10), None);
    }

    #[test]
    fn heaviest_kind_wins_and_no_kind_is_unknown() {
        let mut evidence = Evidence::default();
        evidence.add(signal("torch", 6, None));
        evidence.add(signal("cuda", 4, None));
        assert_eq!(evidence.verdict(10), Some(WorkloadKind::UnknownAi));
        evidence.add(signal("ckpt", 7, Some(WorkloadKind::Training)));
        evidence.add(signal("model", 6, Some(WorkloadKind::Inference)));
        assert_eq!(evidence.verdict(10), Some(WorkloadKind::Training));
    }

    #[test]
    fn decisive_signal_settles_the_kind() {
        let mut evidence = Evidence::default();
        evidence.add(signal("onnxruntime", 6, Some(WorkloadKind::Inference)));
        evidence.add(signal("model", 6, Some(WorkloadKind::Inference)));
        let mut kernel = signal("ipykernel", 10, Some(WorkloadKind::Notebook));
        kernel.decisive = true;
        evidence.add(kernel);
        assert_eq!(evidence.verdict(10), Some(WorkloadKind::Notebook));
    }

    #[test]
    fn evidence_is_bounded() {
        let mut evidence = Evidence::default();
        for i in 0..(MAX_SIGNALS + 5) {
            evidence.add(signal(&format!("lib{i}"), 1, None));
        }
        assert_eq!(evidence.signals.len(), MAX_SIGNALS);
        assert_eq!(evidence.dropped, 5);
    }

    #[test]
    fn kinds_round_trip() {
        for kind in WorkloadKind::ALL {
            assert_eq!(WorkloadKind::parse(kind.as_str()), Some(kind));
            let json = serde_json::to_string(&kind).expect("serialises");
            assert_eq!(json, format!("\"{kind}\""));
        }
    }
}
