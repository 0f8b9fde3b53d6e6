//! The LLM part of a workload's inventory: the providers, hosts and models
//! it called, the tools it offered and the tools the models asked it to
//! run, with request and token counts.

use serde::{Deserialize, Serialize};

use crate::event::{Event, Kind, WallTime};

/// Providers (with host) and tools kept per workload; more are counted.
pub(super) const MAX_PROVIDERS: usize = 32;
pub(super) const MAX_MODELS: usize = 32;
pub(super) const MAX_TOOLS: usize = 128;

/// One provider host a workload called.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LlmProviderUse {
    pub provider: String,
    pub host: String,
    pub models: Vec<String>,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    #[serde(default, with = "crate::event::time_or_empty")]
    pub last_seen: Option<WallTime>,
}

/// What a workload did with LLM APIs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LlmUse {
    pub providers: Vec<LlmProviderUse>,
    /// Tools offered to the models in requests.
    pub tools_offered: Vec<String>,
    /// Tools the models asked to run.
    pub tools_called: Vec<String>,
    /// Providers, models or tools that did not fit.
    pub overflow: u64,
}

impl LlmUse {
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }

    /// Takes an `llm_request` or `llm_response` into account.
    pub fn observe(&mut self, event: &Event) {
        let Some(llm) = &event.llm else {
            return;
        };
        let index = match self
            .providers
            .iter()
            .position(|p| p.provider == llm.provider && p.host == llm.host)
        {
            Some(index) => index,
            None if self.providers.len() < MAX_PROVIDERS => {
                self.providers.push(LlmProviderUse {
                    provider: llm.provider.clone(),
                    host: llm.host.clone(),
                    ..LlmProviderUse::default()
                });
                self.providers.len() - 1
            }
            None => {
                self.overflow += 1;
                return;
            }
        };
        let overflow = &mut self.overflow;
        let entry = &mut self.providers[index];
        entry.last_seen = event.time;
        if !llm.model.is_empty() {
            add(&mut entry.models, &llm.model, MAX_MODELS, overflow);
        }
        match event.kind {
            Kind::LlmRequest => {
                entry.requests += 1;
                for tool in &llm.tools {
                    add(&mut self.tools_offered, tool, MAX_TOOLS, overflow);
                }
            }
            Kind::LlmResponse => {
                entry.input_tokens += llm.input_tokens.unwrap_or(0);
                entry.output_tokens += llm.output_tokens.unwrap_or(0);
                for call in &llm.tool_calls {
                    add(&mut self.tools_called, &call.name, MAX_TOOLS, overflow);
                }
            }
            _ => {}
        }
    }
}

fn add(list: &mut Vec<String>, value: &str, cap: usize, overflow: &mut u64) {
    if list.iter().any(|v| v == value) {
        return;
    }
    if list.len() >= cap {
        *overflow += 1;
        return;
    }
    list.push(value.to_owned());
}
