//! The LLM parts of an event: what a process asked a model and what it was
//! told (`llm_request`, `llm_response`), and the answer an action followed
//! (`cause`, on exec, open and connect events).

use serde::{Deserialize, Serialize};

/// One request to an LLM API or its answer. A response carries the
/// request's identity (`request_id`, `provider`, `host`, `api`) and model
/// again, so each event reads on its own.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LlmInfo {
    /// Unique within the agent's run; a response and the actions it caused
    /// name the request by it.
    pub request_id: String,
    /// `openai`, `anthropic`, `ollama`, `google`, `mistral`, ... by host;
    /// `openai-compatible` for an OpenAI-format API on any other host.
    pub provider: String,
    /// The API called: `chat_completions`, `responses`, `completions`,
    /// `embeddings`, `messages` (Anthropic), `ollama_chat`, `ollama_generate`.
    pub api: String,
    /// The `Host` header of the request.
    pub host: String,
    /// The model asked for (request) or that answered (response).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub model: String,
    /// The request asked for a streamed (server-sent events) answer.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    /// Requests: the messages of the conversation sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages: Option<u32>,
    /// Requests: names of the tools offered to the model.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// Requests: bytes of prompt text (messages, system prompt, input).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_bytes: Option<u64>,
    /// Requests: SHA-256 of the prompt text, hex, first 16 bytes.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub prompt_hash: String,
    /// Requests: the conversation holds tool results with content fetched
    /// from outside (URLs or HTML), the way indirect prompt injection
    /// arrives. Responses and caused actions carry it on.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fetched_content: bool,
    /// Requests: the provider whose key format the credential sent has
    /// (`openai`, `anthropic`, ...), when one is recognised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_provider: Option<String>,
    /// Requests: the credential belongs to a provider other than the host's.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub key_foreign_host: bool,
    /// Responses: the HTTP status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Responses: why the model stopped (`stop`, `tool_calls`, `end_turn`,
    /// `tool_use`, `length`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    /// Responses: milliseconds from the request's last byte to the
    /// response's last byte.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Responses: the tools the model asked to run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// The prompt (requests) or answer (responses) text, bounded and
    /// redacted; only with `llm.capture_content: true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// The text was cut at the capture bound, or the kernel's copy had gaps.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// A tool call in a model's answer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ToolCall {
    pub name: String,
    /// The arguments as the model wrote them (JSON text), truncated and
    /// with secrets redacted.
    pub arguments: String,
}

/// The model answer an action followed: set on an exec, open or connect
/// of the answered process or its descendants, within the window, that
/// matches one of the answer's candidate actions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cause {
    pub llm_request_id: String,
    pub provider: String,
    pub model: String,
    /// The tool call that named the action; absent when it came from the
    /// answer's text (a code block).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// The candidate that matched: a command, path, host or URL.
    pub matched: String,
    /// What the candidate was: `command`, `path` or `host`.
    pub what: String,
    /// A host or URL the answer named that the request never mentioned.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub host_first_seen: bool,
    /// The request that produced the answer carried fetched content.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fetched_content: bool,
}
