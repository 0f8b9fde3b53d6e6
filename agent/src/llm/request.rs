//! What a request body says: model, stream flag, conversation size, tools
//! offered, the prompt's size and hash, and whether it carries fetched
//! content back to the model.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::api::Api;

/// The facts of one request body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestFacts {
    pub model: String,
    pub stream: bool,
    pub messages: u32,
    pub tools: Vec<String>,
    /// The prompt text: messages, system prompt, input, in order.
    pub prompt: String,
    /// A tool result in the conversation holds a URL or HTML.
    pub fetched_content: bool,
    /// The body was not JSON (or was cut before its end).
    pub unparsed: bool,
}

/// Tools kept per request.
const MAX_TOOLS: usize = 64;

impl RequestFacts {
    /// Reads a request body of `api`. A body that is not JSON gives facts
    /// with `unparsed` set, never an error: the request still happened.
    pub fn parse(api: Api, body: &[u8]) -> RequestFacts {
        let Ok(json) = serde_json::from_slice::<Value>(body) else {
            return RequestFacts {
                unparsed: true,
                ..RequestFacts::default()
            };
        };
        let mut facts = RequestFacts {
            model: json["model"].as_str().unwrap_or("").to_owned(),
            stream: json["stream"].as_bool().unwrap_or(false),
            ..RequestFacts::default()
        };
        let mut prompt = Vec::new();
        match api {
            Api::ChatCompletions | Api::OllamaChat => {
                let messages = json["messages"].as_array().map_or(&[][..], Vec::as_slice);
                facts.messages = messages.len() as u32;
                for message in messages {
                    let text = content_text(&message["content"]);
                    if message["role"] == "tool" && looks_fetched(&text) {
                        facts.fetched_content = true;
                    }
                    prompt.push(text);
                }
            }
            Api::Messages => {
                let messages = json["messages"].as_array().map_or(&[][..], Vec::as_slice);
                facts.messages = messages.len() as u32;
                prompt.push(content_text(&json["system"]));
                for message in messages {
                    for block in message["content"].as_array().map_or(&[][..], Vec::as_slice) {
                        if block["type"] == "tool_result"
                            && looks_fetched(&content_text(&block["content"]))
                        {
                            facts.fetched_content = true;
                        }
                    }
                    prompt.push(content_text(&message["content"]));
                }
            }
            Api::Responses => {
                prompt.push(content_text(&json["instructions"]));
                match &json["input"] {
                    Value::Array(items) => {
                        facts.messages = items.len() as u32;
                        for item in items {
                            let text = if item["type"] == "function_call_output" {
                                let output = content_text(&item["output"]);
                                if looks_fetched(&output) {
                                    facts.fetched_content = true;
                                }
                                output
                            } else {
                                content_text(&item["content"])
                            };
                            prompt.push(text);
                        }
                    }
                    other => {
                        facts.messages = u32::from(!other.is_null());
                        prompt.push(content_text(other));
                    }
                }
            }
            Api::Completions | Api::OllamaGenerate | Api::Embeddings => {
                prompt.push(content_text(&json["system"]));
                let input = if api == Api::Embeddings {
                    &json["input"]
                } else {
                    &json["prompt"]
                };
                facts.messages = match input {
                    Value::Array(items) => items.len() as u32,
                    Value::Null => 0,
                    _ => 1,
                };
                prompt.push(content_text(input));
            }
        }
        facts.prompt = prompt
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        facts.tools = tool_names(&json["tools"]);
        facts
    }

    /// SHA-256 of the prompt, hex, first 16 bytes: enough to tell prompts
    /// apart and group repeats without keeping them.
    pub fn prompt_hash(&self) -> String {
        let digest = Sha256::digest(self.prompt.as_bytes());
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Tool names, from any of the formats: `{type: function, function: {name}}`
/// (OpenAI chat, Ollama), `{name}` (Anthropic, OpenAI responses).
fn tool_names(tools: &Value) -> Vec<String> {
    tools
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(|tool| {
            tool["function"]["name"]
                .as_str()
                .or_else(|| tool["name"].as_str())
                .or_else(|| tool["type"].as_str())
        })
        .take(MAX_TOOLS)
        .map(str::to_owned)
        .collect()
}

/// The text of a content value: a string, a list of parts with `text`
/// (or nested `content`), or nothing.
pub fn content_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .map(|part| match part {
                Value::String(s) => s.clone(),
                _ => {
                    let text = content_text(&part["text"]);
                    if text.is_empty() {
                        content_text(&part["content"])
                    } else {
                        text
                    }
                }
            })
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Whether a tool result looks like content fetched from outside: it holds
/// a URL or an HTML document.
fn looks_fetched(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.contains("http://")
        || lower.contains("https://")
        || lower.contains("<html")
        || lower.contains("<!doctype")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_completions_requests() {
        let body = br#"{"model":"gpt-4o","stream":true,"messages":[
            {"role":"system","content":"be brief"},
            {"role":"user","content":[{"type":"text","text":"hi"}]},
            {"role":"tool","tool_call_id":"1","content":"<html>fetched from https://x.example</html>"}],
            "tools":[{"type":"function","function":{"name":"run_shell","parameters":{}}}]}"#;
        let facts = RequestFacts::parse(Api::ChatCompletions, body);
        assert_eq!(facts.model, "gpt-4o");
        assert!(facts.stream);
        assert_eq!(facts.messages, 3);
        assert_eq!(facts.tools, vec!["run_shell"]);
        assert!(facts.prompt.starts_with("be brief\nhi\n<html>"));
        assert!(facts.fetched_content);
        assert_eq!(facts.prompt_hash().len(), 32);
    }

    #[test]
    fn anthropic_requests() {
        let body = br#"{"model":"claude-x","max_tokens":10,"system":"sys","messages":[
            {"role":"user","content":"list files"},
            {"role":"assistant","content":[{"type":"tool_use","id":"t","name":"bash","input":{}}]},
            {"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"a.txt b.txt"}]}],
            "tools":[{"name":"bash","input_schema":{}}]}"#;
        let facts = RequestFacts::parse(Api::Messages, body);
        assert_eq!(facts.model, "claude-x");
        assert!(!facts.stream);
        assert_eq!(facts.messages, 3);
        assert_eq!(facts.tools, vec!["bash"]);
        assert!(facts.prompt.contains("sys\nlist files"));
        assert!(!facts.fetched_content, "a local listing is not fetched");
    }

    #[test]
    fn ollama_generate_and_responses_and_embeddings() {
        let facts = RequestFacts::parse(
            Api::OllamaGenerate,
            br#"{"model":"llama3","prompt":"why is the sky blue"}"#,
        );
        assert_eq!((facts.model.as_str(), facts.messages), ("llama3", 1));
        assert_eq!(facts.prompt, "why is the sky blue");
        let facts = RequestFacts::parse(
            Api::Responses,
            br#"{"model":"gpt-5","instructions":"x","input":[{"role":"user","content":"y"},
                {"type":"function_call_output","call_id":"c","output":"see https://evil.example/p"}]}"#,
        );
        assert_eq!(facts.messages, 2);
        assert!(facts.fetched_content);
        let facts =
            RequestFacts::parse(Api::Embeddings, br#"{"model":"emb","input":["a","b","c"]}"#);
        assert_eq!(facts.messages, 3);
    }

    #[test]
    fn garbage_bodies_are_unparsed_not_errors() {
        for body in [&b""[..], b"{", b"\xff\xfe", b"[1,2", b"null"] {
            let facts = RequestFacts::parse(Api::ChatCompletions, body);
            assert!(facts.model.is_empty());
            assert_eq!(facts.messages, 0);
        }
        assert!(RequestFacts::parse(Api::Messages, b"{\"model\":").unparsed);
    }
}
