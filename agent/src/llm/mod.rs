//! LLM traffic: clear text in, `llm_request` and `llm_response` events out,
//! and the `cause` of the actions an answer asked for.
//!
//! [`LlmStage::observe`] takes each clear-text call (ingest's
//! [`ClearText`], with the process already filled in by the enricher) and
//! reassembles HTTP/1.1 per process, connection and direction
//! ([`http`]). A request to a recognised API ([`api`]) becomes an
//! `llm_request` ([`request`]); its answer, JSON or a stream, an
//! `llm_response` ([`response`]). Everything else is counted in
//! `aiwatch_llm_unparsed_total{reason}` and dropped.
//!
//! [`LlmStage::correlate`] runs on every exec, open and connect: when one
//! carries out an action a recent answer to the same process tree named
//! ([`candidates`]), the event gets `cause`.
//!
//! Memory is bounded: connections (evicting the least recently used, which
//! is counted), bytes kept per message, answers remembered for
//! correlation, candidates per answer.

pub mod api;
pub mod candidates;
mod connection;
pub mod http;
pub mod request;
pub mod response;
pub mod sse;

use std::{collections::BTreeSet, collections::VecDeque, sync::Arc, time::Duration};

use serde::Deserialize;

use crate::{
    enrich::redact::Redactor,
    event::{Cause, Event},
    ingest::decode::clear_text::ClearText,
    metrics::{LlmUnparsed, Metrics},
};

use candidates::Candidate;
use connection::Connections;

/// `llm:` in the configuration.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// Keep prompt and answer text in the events (redacted, bounded).
    /// Off by default: prompts hold what users and documents say.
    pub capture_content: bool,
    /// Bytes of prompt or answer text kept with `capture_content`.
    pub content_max_bytes: usize,
    /// Bytes of one tool call's arguments kept in `llm.tool_calls`.
    pub tool_arguments_max_bytes: usize,
    /// Connections reassembled at once; the least recently used is dropped
    /// (and counted as `evicted`) to make room.
    pub max_connections: usize,
    /// Body bytes kept per message; the rest is counted, not kept.
    pub max_body_bytes: usize,
    /// How long after an answer an action can be its effect, in seconds.
    pub correlation_window_s: u64,
    /// Answers remembered for correlation; the oldest go first.
    pub max_answers: usize,
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            capture_content: false,
            // Enough for a prompt's gist; prompts with documents run to
            // megabytes.
            content_max_bytes: 4096,
            tool_arguments_max_bytes: 1024,
            // An agent host runs a few dozen model connections at most.
            max_connections: 1024,
            // A long conversation or streamed answer; larger is cut.
            max_body_bytes: 1024 * 1024,
            // Agents run a tool call within seconds; a minute covers slow
            // planners without tying unrelated later actions to the answer.
            correlation_window_s: 60,
            max_answers: 256,
        }
    }
}

/// An answer remembered for correlation.
#[derive(Debug)]
struct Answer {
    pid: u32,
    ktime_ns: u64,
    request_id: String,
    provider: String,
    model: String,
    candidates: Vec<Candidate>,
    /// Hosts the request named: a host the answer names beyond these is
    /// new to the conversation.
    request_hosts: BTreeSet<String>,
    fetched_content: bool,
}

/// The LLM stage. The pipeline task owns it.
pub struct LlmStage {
    config: LlmConfig,
    redactor: Redactor,
    metrics: Arc<Metrics>,
    connections: Connections,
    answers: VecDeque<Answer>,
}

impl LlmStage {
    pub fn new(config: LlmConfig, redactor: Redactor, metrics: Arc<Metrics>) -> LlmStage {
        LlmStage {
            connections: Connections::new(config.max_connections),
            config,
            redactor,
            metrics,
            answers: VecDeque::new(),
        }
    }

    /// One clear-text call of the process `from` describes (an enriched
    /// event, kind `clear_text`): the LLM events it completes.
    pub fn observe(&mut self, from: &Event, text: &ClearText) -> Vec<Event> {
        let mut out = Vec::new();
        let evicted = self
            .connections
            .feed(from, text, &self.config, &mut |done| out.push(done));
        for _ in 0..evicted {
            self.metrics.llm_unparsed(LlmUnparsed::Evicted);
        }
        self.finish(out)
    }

    /// Messages whose end only a close would show, idle for a while, and
    /// connections idle for long: the events they complete.
    pub fn tick(&mut self, now_ns: u64) -> Vec<Event> {
        let mut out = Vec::new();
        self.connections.tick(now_ns, &mut |done| out.push(done));
        let window = self.window_ns();
        while self
            .answers
            .front()
            .is_some_and(|a| now_ns.saturating_sub(a.ktime_ns) > window)
        {
            self.answers.pop_front();
        }
        self.finish(out)
    }

    fn window_ns(&self) -> u64 {
        Duration::from_secs(self.config.correlation_window_s).as_nanos() as u64
    }

    /// Turns reassembled exchanges into events, counting what is not one.
    fn finish(&mut self, done: Vec<connection::Done>) -> Vec<Event> {
        let mut events = Vec::new();
        for item in done {
            match item {
                connection::Done::Unparsed(reason) => self.metrics.llm_unparsed(reason),
                connection::Done::Request(exchange) => {
                    events.push(exchange.request_event(&self.config, &self.redactor));
                }
                connection::Done::Response(exchange) => {
                    let (event, candidates) = exchange.response_event(&self.config, &self.redactor);
                    if exchange.response_unparsed() {
                        self.metrics.llm_unparsed(LlmUnparsed::BadBody);
                    }
                    if !candidates.is_empty() {
                        self.remember(&event, candidates, &exchange);
                    }
                    events.push(event);
                }
            }
        }
        events
    }

    fn remember(
        &mut self,
        event: &Event,
        candidates: Vec<Candidate>,
        exchange: &connection::Exchange,
    ) {
        let Some(llm) = &event.llm else {
            return;
        };
        if self.answers.len() >= self.config.max_answers.max(1) {
            self.answers.pop_front();
        }
        self.answers.push_back(Answer {
            pid: event.process.pid,
            ktime_ns: event.ktime_ns,
            request_id: llm.request_id.clone(),
            provider: llm.provider.clone(),
            model: llm.model.clone(),
            candidates,
            request_hosts: exchange.request_hosts.clone(),
            fetched_content: llm.fetched_content,
        });
    }

    /// Sets `cause` on an exec, open or connect that carries out an action
    /// a recent answer to its process (or an ancestor) named.
    pub fn correlate(&self, event: &mut Event) {
        use crate::event::Kind;
        if self.answers.is_empty() || !matches!(event.kind, Kind::Exec | Kind::Open | Kind::Connect)
        {
            return;
        }
        let window = self.window_ns();
        let process = &event.process;
        let in_tree = |pid: u32| {
            process.pid == pid
                || process.ppid == pid
                || process.ancestors.iter().any(|a| a.pid == pid)
        };
        // The newest answer first: it is the one an agent acts on.
        let cause = self.answers.iter().rev().find_map(|answer| {
            let age = event.ktime_ns.checked_sub(answer.ktime_ns)?;
            if age > window || !in_tree(answer.pid) {
                return None;
            }
            let found = candidates::matching(event, &answer.candidates)?;
            let named_hosts = match found.what {
                candidates::What::Host => BTreeSet::from([found.text.clone()]),
                _ => candidates::hosts_in(&found.text),
            };
            let host_first_seen = named_hosts
                .iter()
                .any(|host| !answer.request_hosts.contains(host));
            Some(Cause {
                llm_request_id: answer.request_id.clone(),
                provider: answer.provider.clone(),
                model: answer.model.clone(),
                tool: found.tool.clone(),
                matched: self.redactor.redact_str(&found.text),
                what: found.what.as_str().to_owned(),
                host_first_seen,
                fetched_content: answer.fetched_content,
            })
        });
        if let Some(cause) = cause {
            event.cause = Some(Box::new(cause));
        }
    }
}

/// Cuts a text to at most `max` bytes on a character boundary; says
/// whether it cut.
pub(crate) fn truncate(text: &mut String, max: usize) -> bool {
    if text.len() <= max {
        return false;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    true
}

#[cfg(test)]
mod tests;
