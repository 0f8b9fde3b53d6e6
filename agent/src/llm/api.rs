//! Which LLM API a request calls (from its method and path), which
//! provider serves it (from its host), and whose key it carries.

use super::http::{Head, StartLine};

/// The wire formats aiwatch reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Api {
    /// OpenAI-compatible `/v1/chat/completions`.
    ChatCompletions,
    /// OpenAI `/v1/responses`.
    Responses,
    /// OpenAI-compatible `/v1/completions` (legacy text completion).
    Completions,
    /// OpenAI-compatible `/v1/embeddings`.
    Embeddings,
    /// Anthropic `/v1/messages`.
    Messages,
    /// Ollama `/api/chat`.
    OllamaChat,
    /// Ollama `/api/generate`.
    OllamaGenerate,
}

/// The wire format family, for the provider name of unknown hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    OpenAi,
    Anthropic,
    Ollama,
}

impl Api {
    pub fn as_str(self) -> &'static str {
        match self {
            Api::ChatCompletions => "chat_completions",
            Api::Responses => "responses",
            Api::Completions => "completions",
            Api::Embeddings => "embeddings",
            Api::Messages => "messages",
            Api::OllamaChat => "ollama_chat",
            Api::OllamaGenerate => "ollama_generate",
        }
    }

    pub fn format(self) -> Format {
        match self {
            Api::ChatCompletions | Api::Responses | Api::Completions | Api::Embeddings => {
                Format::OpenAi
            }
            Api::Messages => Format::Anthropic,
            Api::OllamaChat | Api::OllamaGenerate => Format::Ollama,
        }
    }

    /// The API a request head calls, or `None` for anything else.
    pub fn of(head: &Head) -> Option<Api> {
        let StartLine::Request { method, path } = &head.start else {
            return None;
        };
        if method != "POST" {
            return None;
        }
        let path = path.split(['?', '#']).next().unwrap_or("");
        let path = path.trim_end_matches('/');
        // Suffixes, so that prefixes (`/openai/deployments/<name>`,
        // `/api/v1`, gateway routes) still match.
        const BY_SUFFIX: &[(&str, Api)] = &[
            ("/chat/completions", Api::ChatCompletions),
            ("/v1/responses", Api::Responses),
            ("/openai/responses", Api::Responses),
            ("/completions", Api::Completions),
            ("/embeddings", Api::Embeddings),
            ("/v1/messages", Api::Messages),
            ("/api/chat", Api::OllamaChat),
            ("/api/generate", Api::OllamaGenerate),
        ];
        BY_SUFFIX
            .iter()
            .find(|(suffix, _)| path.ends_with(suffix))
            .map(|(_, api)| *api)
    }
}

/// Public LLM API hosts and their providers. A host matches an entry
/// exactly or as a subdomain of it.
const PROVIDER_HOSTS: &[(&str, &str)] = &[
    ("api.openai.com", "openai"),
    ("openai.azure.com", "azure-openai"),
    ("api.anthropic.com", "anthropic"),
    ("generativelanguage.googleapis.com", "google"),
    ("aiplatform.googleapis.com", "google"),
    ("api.mistral.ai", "mistral"),
    ("api.groq.com", "groq"),
    ("api.together.xyz", "together"),
    ("api.deepseek.com", "deepseek"),
    ("openrouter.ai", "openrouter"),
    ("api.x.ai", "xai"),
    ("api.cohere.com", "cohere"),
    ("api.cohere.ai", "cohere"),
    ("api.fireworks.ai", "fireworks"),
    ("api.perplexity.ai", "perplexity"),
    ("router.huggingface.co", "huggingface"),
    ("api-inference.huggingface.co", "huggingface"),
];

/// The host without its port, lower-case.
pub fn host_name(host: &str) -> String {
    let host = host.trim();
    let bare = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else if host.matches(':').count() == 1 {
        host.split(':').next().unwrap_or(host)
    } else {
        host
    };
    bare.to_ascii_lowercase()
}

/// The provider a host belongs to, when it is a known public API.
pub fn provider_of_host(host: &str) -> Option<&'static str> {
    let name = host_name(host);
    PROVIDER_HOSTS
        .iter()
        .find(|(known, _)| {
            name == *known
                || name
                    .strip_suffix(known)
                    .is_some_and(|rest| rest.ends_with('.'))
        })
        .map(|(_, provider)| *provider)
}

/// The provider named in events: the host's when it is known, else the
/// format's (`ollama`, or `*-compatible` for a server speaking a public
/// provider's format).
pub fn provider(api: Api, host: &str) -> String {
    if let Some(known) = provider_of_host(host) {
        return known.to_owned();
    }
    match api.format() {
        Format::OpenAi => "openai-compatible",
        Format::Anthropic => "anthropic-compatible",
        Format::Ollama => "ollama",
    }
    .to_owned()
}

/// Key formats, longest prefix first: a key says whose it is.
const KEY_PREFIXES: &[(&str, &str)] = &[
    ("sk-ant-", "anthropic"),
    ("sk-or-", "openrouter"),
    ("sk-proj-", "openai"),
    ("sk-svcacct-", "openai"),
    ("sk-admin-", "openai"),
    ("sk-", "openai"),
    ("gsk_", "groq"),
    ("xai-", "xai"),
    ("AIza", "google"),
    ("hf_", "huggingface"),
];

/// The provider whose key the request's credential headers carry.
pub fn key_provider(head: &Head) -> Option<&'static str> {
    let key = head
        .header("authorization")
        .map(|v| {
            let v = v.trim();
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
                .unwrap_or(v)
        })
        .or_else(|| head.header("x-api-key"))
        .or_else(|| head.header("api-key"))
        .or_else(|| head.header("x-goog-api-key"))?
        .trim();
    // A real key is long; `sk-test` placeholders say nothing.
    if key.len() < 20 {
        return None;
    }
    KEY_PREFIXES
        .iter()
        .find(|(prefix, _)| key.starts_with(prefix))
        .map(|(_, provider)| *provider)
}

/// Whether a key of `key_provider` sent to `host` left its provider: the
/// host is not one of the provider's public API hosts.
pub fn key_foreign_host(key_provider: &str, host: &str) -> bool {
    let host_provider = provider_of_host(host);
    // Azure OpenAI takes OpenAI-format keys of its own, not `sk-` keys.
    host_provider != Some(key_provider)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(path: &str, headers: &[(&str, &str)]) -> Head {
        Head {
            start: StartLine::Request {
                method: "POST".into(),
                path: path.into(),
            },
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn apis_are_recognised_by_path_suffix() {
        let cases = [
            ("/v1/chat/completions", Some(Api::ChatCompletions)),
            (
                "/openai/deployments/gpt/chat/completions?api-version=2024-10-21",
                Some(Api::ChatCompletions),
            ),
            ("/v1/responses", Some(Api::Responses)),
            ("/v1/completions", Some(Api::Completions)),
            ("/v1/embeddings", Some(Api::Embeddings)),
            ("/v1/messages", Some(Api::Messages)),
            ("/api/chat", Some(Api::OllamaChat)),
            ("/api/generate", Some(Api::OllamaGenerate)),
            ("/v1/models", None),
            ("/upload", None),
            ("/v1/messages/count_tokens", None),
        ];
        for (path, want) in cases {
            assert_eq!(Api::of(&post(path, &[])), want, "{path}");
        }
        let get = Head {
            start: StartLine::Request {
                method: "GET".into(),
                path: "/v1/chat/completions".into(),
            },
            headers: vec![],
        };
        assert_eq!(Api::of(&get), None);
    }

    #[test]
    fn providers_come_from_the_host_or_the_format() {
        assert_eq!(provider(Api::ChatCompletions, "api.openai.com"), "openai");
        assert_eq!(
            provider(Api::ChatCompletions, "myres.openai.azure.com:443"),
            "azure-openai"
        );
        assert_eq!(provider(Api::Messages, "API.Anthropic.com"), "anthropic");
        assert_eq!(
            provider(Api::ChatCompletions, "127.0.0.1:8000"),
            "openai-compatible"
        );
        assert_eq!(provider(Api::Messages, "[::1]:9"), "anthropic-compatible");
        assert_eq!(provider(Api::OllamaChat, "localhost:11434"), "ollama");
        // A look-alike host is not the provider.
        assert_eq!(provider_of_host("api.openai.com.evil.example"), None);
        assert_eq!(provider_of_host("evilapi.openai.com"), None);
    }

    #[test]
    fn keys_name_their_provider() {
        let anthropic = "sk-ant-api03-aaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let head = post("/v1/messages", &[("x-api-key", anthropic)]);
        assert_eq!(key_provider(&head), Some("anthropic"));
        let bearer = format!("Bearer sk-proj-{}", "b".repeat(40));
        let head = post("/v1/chat/completions", &[("authorization", &bearer)]);
        assert_eq!(key_provider(&head), Some("openai"));
        let head = post("/v1/chat/completions", &[("authorization", "Bearer test")]);
        assert_eq!(key_provider(&head), None);
        assert!(!key_foreign_host("anthropic", "api.anthropic.com"));
        assert!(key_foreign_host("anthropic", "collector.example.net"));
        assert!(key_foreign_host("openai", "api.anthropic.com"));
    }
}
