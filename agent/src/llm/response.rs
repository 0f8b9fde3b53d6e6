//! What an answer says: model, finish reason, token counts, text and tool
//! calls, from a JSON body or a stream (server-sent events, NDJSON) of any
//! of the recognised APIs.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{api::Api, request::content_text, sse};

/// The facts of one answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseFacts {
    pub model: String,
    pub finish_reason: Option<String>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// The answer's text.
    pub text: String,
    /// (name, arguments as JSON text), in order.
    pub tool_calls: Vec<(String, String)>,
    /// Nothing in the body could be read.
    pub unparsed: bool,
}

/// Tool calls kept per answer.
const MAX_TOOL_CALLS: usize = 32;

impl ResponseFacts {
    /// Reads an answer body of `api` with the response's content type.
    pub fn parse(api: Api, content_type: &str, body: &[u8]) -> ResponseFacts {
        let text = String::from_utf8_lossy(body);
        let mut facts = if content_type.contains("text/event-stream") {
            let mut stream = StreamFacts::default();
            for event in sse::events(&text) {
                if event.data == "[DONE]" {
                    continue;
                }
                if let Ok(json) = serde_json::from_str::<Value>(&event.data) {
                    stream.add(api, event.event.as_deref(), &json);
                }
            }
            stream.finish()
        } else if content_type.contains("ndjson") {
            let mut stream = StreamFacts::default();
            for line in sse::json_lines(&text) {
                if let Ok(json) = serde_json::from_str::<Value>(line) {
                    stream.add(api, None, &json);
                }
            }
            stream.finish()
        } else {
            match serde_json::from_slice::<Value>(body) {
                Ok(json) => whole(api, &json),
                Err(_) => ResponseFacts {
                    unparsed: true,
                    ..ResponseFacts::default()
                },
            }
        };
        facts.tool_calls.truncate(MAX_TOOL_CALLS);
        facts
    }
}

fn str_of(value: &Value) -> Option<String> {
    value.as_str().map(str::to_owned)
}

/// A tool call's arguments as JSON text, whether the API sends a string
/// (OpenAI) or an object (Anthropic, Ollama).
fn arguments_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A non-streamed answer.
fn whole(api: Api, json: &Value) -> ResponseFacts {
    let mut facts = ResponseFacts {
        model: json["model"].as_str().unwrap_or("").to_owned(),
        ..ResponseFacts::default()
    };
    let usage = &json["usage"];
    match api {
        Api::ChatCompletions | Api::Completions | Api::Embeddings => {
            let choice = &json["choices"][0];
            facts.finish_reason = str_of(&choice["finish_reason"]);
            facts.text = if api == Api::Completions {
                content_text(&choice["text"])
            } else {
                content_text(&choice["message"]["content"])
            };
            for call in choice["message"]["tool_calls"]
                .as_array()
                .map_or(&[][..], Vec::as_slice)
            {
                facts.tool_calls.push((
                    call["function"]["name"].as_str().unwrap_or("").to_owned(),
                    arguments_text(&call["function"]["arguments"]),
                ));
            }
            facts.input_tokens = usage["prompt_tokens"].as_u64();
            facts.output_tokens = usage["completion_tokens"].as_u64();
        }
        Api::Responses => responses_output(json, &mut facts),
        Api::Messages => {
            facts.finish_reason = str_of(&json["stop_reason"]);
            for block in json["content"].as_array().map_or(&[][..], Vec::as_slice) {
                match block["type"].as_str() {
                    Some("text") => push_text(&mut facts.text, &content_text(&block["text"])),
                    Some("tool_use") => facts.tool_calls.push((
                        block["name"].as_str().unwrap_or("").to_owned(),
                        arguments_text(&block["input"]),
                    )),
                    _ => {}
                }
            }
            facts.input_tokens = usage["input_tokens"].as_u64();
            facts.output_tokens = usage["output_tokens"].as_u64();
        }
        Api::OllamaChat | Api::OllamaGenerate => {
            let mut stream = StreamFacts::default();
            stream.add(api, None, json);
            return stream.finish();
        }
    }
    facts
}

/// An OpenAI responses-API `response` object.
fn responses_output(response: &Value, facts: &mut ResponseFacts) {
    if facts.model.is_empty() {
        facts.model = response["model"].as_str().unwrap_or("").to_owned();
    }
    facts.finish_reason = str_of(&response["status"]);
    for item in response["output"].as_array().map_or(&[][..], Vec::as_slice) {
        match item["type"].as_str() {
            Some("message") => push_text(&mut facts.text, &content_text(&item["content"])),
            Some("function_call") => facts.tool_calls.push((
                item["name"].as_str().unwrap_or("").to_owned(),
                arguments_text(&item["arguments"]),
            )),
            _ => {}
        }
    }
    let usage = &response["usage"];
    facts.input_tokens = usage["input_tokens"].as_u64();
    facts.output_tokens = usage["output_tokens"].as_u64();
}

fn push_text(text: &mut String, more: &str) {
    if !more.is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(more);
    }
}

/// An answer put together from its stream's pieces.
#[derive(Default)]
struct StreamFacts {
    facts: ResponseFacts,
    /// Tool calls by their index in the stream: name, arguments so far.
    calls: BTreeMap<u64, (String, String)>,
    pieces: usize,
}

impl StreamFacts {
    fn add(&mut self, api: Api, event: Option<&str>, json: &Value) {
        self.pieces += 1;
        let facts = &mut self.facts;
        if let Some(model) = json["model"].as_str().filter(|m| !m.is_empty()) {
            facts.model = model.to_owned();
        }
        match api {
            Api::ChatCompletions | Api::Completions | Api::Embeddings => {
                let choice = &json["choices"][0];
                if let Some(reason) = str_of(&choice["finish_reason"]) {
                    facts.finish_reason = Some(reason);
                }
                facts
                    .text
                    .push_str(choice["delta"]["content"].as_str().unwrap_or(""));
                facts.text.push_str(choice["text"].as_str().unwrap_or(""));
                for call in choice["delta"]["tool_calls"]
                    .as_array()
                    .map_or(&[][..], Vec::as_slice)
                {
                    let index = call["index"].as_u64().unwrap_or(0);
                    let entry = self.calls.entry(index).or_default();
                    entry
                        .0
                        .push_str(call["function"]["name"].as_str().unwrap_or(""));
                    entry
                        .1
                        .push_str(call["function"]["arguments"].as_str().unwrap_or(""));
                }
                if let Some(n) = json["usage"]["prompt_tokens"].as_u64() {
                    facts.input_tokens = Some(n);
                }
                if let Some(n) = json["usage"]["completion_tokens"].as_u64() {
                    facts.output_tokens = Some(n);
                }
            }
            Api::Responses => {
                let kind = event.or(json["type"].as_str());
                if kind == Some("response.completed") || kind == Some("response.incomplete") {
                    responses_output(&json["response"], facts);
                }
            }
            Api::Messages => match json["type"].as_str().or(event) {
                Some("message_start") => {
                    let message = &json["message"];
                    if let Some(model) = message["model"].as_str() {
                        facts.model = model.to_owned();
                    }
                    facts.input_tokens = message["usage"]["input_tokens"].as_u64();
                }
                Some("content_block_start") => {
                    let block = &json["content_block"];
                    if block["type"] == "tool_use" {
                        let index = json["index"].as_u64().unwrap_or(0);
                        let entry = self.calls.entry(index).or_default();
                        entry.0 = block["name"].as_str().unwrap_or("").to_owned();
                    }
                }
                Some("content_block_delta") => {
                    let delta = &json["delta"];
                    match delta["type"].as_str() {
                        Some("text_delta") => {
                            facts.text.push_str(delta["text"].as_str().unwrap_or(""))
                        }
                        Some("input_json_delta") => {
                            let index = json["index"].as_u64().unwrap_or(0);
                            let entry = self.calls.entry(index).or_default();
                            entry
                                .1
                                .push_str(delta["partial_json"].as_str().unwrap_or(""));
                        }
                        _ => {}
                    }
                }
                Some("message_delta") => {
                    if let Some(reason) = str_of(&json["delta"]["stop_reason"]) {
                        facts.finish_reason = Some(reason);
                    }
                    if let Some(n) = json["usage"]["output_tokens"].as_u64() {
                        facts.output_tokens = Some(n);
                    }
                }
                _ => {}
            },
            Api::OllamaChat | Api::OllamaGenerate => {
                facts
                    .text
                    .push_str(json["message"]["content"].as_str().unwrap_or(""));
                facts.text.push_str(json["response"].as_str().unwrap_or(""));
                for call in json["message"]["tool_calls"]
                    .as_array()
                    .map_or(&[][..], Vec::as_slice)
                {
                    let index = self.calls.len() as u64;
                    self.calls.insert(
                        index,
                        (
                            call["function"]["name"].as_str().unwrap_or("").to_owned(),
                            arguments_text(&call["function"]["arguments"]),
                        ),
                    );
                }
                if json["done"].as_bool() == Some(true) {
                    facts.finish_reason = str_of(&json["done_reason"]).or(Some("stop".into()));
                    facts.input_tokens = json["prompt_eval_count"].as_u64();
                    facts.output_tokens = json["eval_count"].as_u64();
                }
            }
        }
    }

    fn finish(mut self) -> ResponseFacts {
        self.facts.unparsed = self.pieces == 0;
        self.facts.tool_calls.extend(
            self.calls
                .into_values()
                .filter(|(name, _)| !name.is_empty()),
        );
        self.facts
    }
}

#[cfg(test)]
#[path = "response_tests.rs"]
mod tests;
