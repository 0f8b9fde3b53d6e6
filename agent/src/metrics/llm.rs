//! LLM traffic: requests by workload, provider and model, tokens, request
//! duration, and the clear text that could not be read as an LLM exchange.
//!
//! `model` is open-ended (anyone can name a model), so it is capped like
//! `workload`: the first [`MAX_MODEL_SERIES`] distinct models get their own
//! value, later ones share `other`.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::*;

/// Distinct `model` label values before later models share `other`.
pub const MAX_MODEL_SERIES: usize = 100;

/// Buckets for `aiwatch_llm_request_duration_seconds`: 50 ms to 5 min.
const DURATION_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Why clear text gave no LLM event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LlmUnparsed {
    /// HTTP that is not a recognised LLM API call (a download, a web API).
    NonLlm,
    /// An HTTP/2 connection (its preface): not reassembled.
    Http2,
    /// Bytes that are not HTTP/1.x.
    NotHttp,
    /// Framing lost in a gap of the kernel's copy.
    Gap,
    /// A connection dropped to stay within the connection bound.
    Evicted,
    /// A recognised call whose body was not the API's JSON.
    BadBody,
    /// A response with no request seen before it on its connection.
    NoRequest,
    /// A request received rather than sent: the process is the server.
    ServerSide,
}

impl LlmUnparsed {
    pub const ALL: [LlmUnparsed; 8] = [
        LlmUnparsed::NonLlm,
        LlmUnparsed::Http2,
        LlmUnparsed::NotHttp,
        LlmUnparsed::Gap,
        LlmUnparsed::Evicted,
        LlmUnparsed::BadBody,
        LlmUnparsed::NoRequest,
        LlmUnparsed::ServerSide,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LlmUnparsed::NonLlm => "non_llm",
            LlmUnparsed::Http2 => "http2",
            LlmUnparsed::NotHttp => "not_http",
            LlmUnparsed::Gap => "gap",
            LlmUnparsed::Evicted => "evicted",
            LlmUnparsed::BadBody => "bad_body",
            LlmUnparsed::NoRequest => "no_request",
            LlmUnparsed::ServerSide => "server_side",
        }
    }
}

/// The LLM metric families and their label bookkeeping.
pub(super) struct LlmMetrics {
    requests: IntCounterVec,
    tokens: IntCounterVec,
    duration: Histogram,
    unparsed: Vec<IntCounter>,
    /// Admitted model labels.
    models: Mutex<BTreeSet<String>>,
    /// Series created per workload label, to drop with the workload.
    series: Mutex<HashMap<String, HashSet<(String, String)>>>,
}

impl LlmMetrics {
    pub(super) fn new(reg: &mut Registrar<'_>) -> Result<LlmMetrics, MetricsError> {
        let requests = reg.counter_vec(
            "aiwatch_llm_requests_total",
            "LLM API requests seen, by workload, provider and model (capped; later models are `other`).",
            &["workload", "provider", "model"],
        )?;
        let tokens = reg.counter_vec(
            "aiwatch_llm_tokens_total",
            "Tokens the LLM APIs reported, by workload, provider and direction (input or output).",
            &["workload", "provider", "direction"],
        )?;
        let duration = reg.histogram(
            "aiwatch_llm_request_duration_seconds",
            "Time from an LLM request's last byte to its answer's last byte.",
            &DURATION_BUCKETS,
        )?;
        let unparsed_vec = reg.counter_vec(
            "aiwatch_llm_unparsed_total",
            "Clear-text messages or connections that gave no LLM event, by reason.",
            &["reason"],
        )?;
        let unparsed = LlmUnparsed::ALL
            .into_iter()
            .map(|reason| unparsed_vec.with_label_values(&[reason.as_str()]))
            .collect();
        Ok(LlmMetrics {
            requests,
            tokens,
            duration,
            unparsed,
            models: Mutex::new(BTreeSet::new()),
            series: Mutex::new(HashMap::new()),
        })
    }

    fn model_label(&self, model: &str) -> String {
        let mut models = lock(&self.models);
        if models.contains(model) {
            return model.to_owned();
        }
        if models.len() < MAX_MODEL_SERIES {
            models.insert(model.to_owned());
            return model.to_owned();
        }
        OVERFLOW_LABEL.to_owned()
    }

    fn remember(&self, workload: &str, provider: &str, second: &str) {
        lock(&self.series)
            .entry(workload.to_owned())
            .or_default()
            .insert((provider.to_owned(), second.to_owned()));
    }
}

/// The `workload` label of an LLM series: the capped workload label, or
/// `none` outside any workload.
const NO_WORKLOAD: &str = "none";

impl Metrics {
    fn llm_workload_label(&self, workload: Option<&WorkloadRef>) -> String {
        match workload {
            Some(workload) => self.admit_workload(workload).workload,
            None => NO_WORKLOAD.to_owned(),
        }
    }

    /// One LLM request of `workload` (if any) to `provider` for `model`.
    pub fn llm_request(&self, workload: Option<&WorkloadRef>, provider: &str, model: &str) {
        let workload = self.llm_workload_label(workload);
        let model = self.llm.model_label(model);
        self.llm
            .requests
            .with_label_values(&[workload.as_str(), provider, model.as_str()])
            .inc();
        self.llm
            .remember(&workload, provider, &format!("model:{model}"));
    }

    /// The tokens and duration of one answer.
    pub fn llm_response(
        &self,
        workload: Option<&WorkloadRef>,
        provider: &str,
        input_tokens: Option<u64>,
        output_tokens: Option<u64>,
        duration: Option<Duration>,
    ) {
        let workload = self.llm_workload_label(workload);
        for (direction, tokens) in [("input", input_tokens), ("output", output_tokens)] {
            if let Some(tokens) = tokens {
                self.llm
                    .tokens
                    .with_label_values(&[workload.as_str(), provider, direction])
                    .inc_by(tokens);
                self.llm
                    .remember(&workload, provider, &format!("direction:{direction}"));
            }
        }
        if let Some(duration) = duration {
            self.llm.duration.observe(duration.as_secs_f64());
        }
    }

    /// Clear text that gave no LLM event.
    pub fn llm_unparsed(&self, reason: LlmUnparsed) {
        self.llm.unparsed[reason as usize].inc();
    }

    /// Drops the LLM series of a workload label that is gone.
    pub(super) fn forget_llm_series(&self, workload: &str) {
        let Some(series) = lock(&self.llm.series).remove(workload) else {
            return;
        };
        for (provider, second) in series {
            if let Some(model) = second.strip_prefix("model:") {
                let _ =
                    self.llm
                        .requests
                        .remove_label_values(&[workload, provider.as_str(), model]);
            } else if let Some(direction) = second.strip_prefix("direction:") {
                let _ =
                    self.llm
                        .tokens
                        .remove_label_values(&[workload, provider.as_str(), direction]);
            }
        }
    }
}
