//! Server-sent events (`text/event-stream`) and newline-delimited JSON
//! (`application/x-ndjson`, Ollama's streams), split into their messages.

/// One server-sent event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, when there was one.
    pub event: Option<String>,
    /// The `data:` lines, joined with newlines.
    pub data: String,
}

/// The events of a stream's text. A last event without its blank line is
/// kept: a stream cut short still says what it said.
pub fn events(text: &str) -> Vec<SseEvent> {
    let mut out = Vec::new();
    let mut event = None;
    let mut data: Vec<&str> = Vec::new();
    let mut flush = |event: &mut Option<String>, data: &mut Vec<&str>| {
        if !data.is_empty() || event.is_some() {
            out.push(SseEvent {
                event: event.take(),
                data: data.join("\n"),
            });
            data.clear();
        }
    };
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            flush(&mut event, &mut data);
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => event = Some(value.to_owned()),
            "data" => data.push(value),
            _ => {}
        }
    }
    flush(&mut event, &mut data);
    out
}

/// Whether the last bytes of a streamed answer hold its final event:
/// `data: [DONE]` (OpenAI chat), `message_stop` (Anthropic),
/// `response.completed` (OpenAI responses), `"done":true` (Ollama). Clients
/// act on the answer once they read it, often before the final chunk of
/// the HTTP framing arrives.
pub fn stream_finished(content_type: &str, tail: &[u8]) -> bool {
    const SSE_ENDS: &[&[u8]] = &[
        b"data: [DONE]",
        b"\"message_stop\"",
        b"event: message_stop",
        b"\"response.completed\"",
        b"\"response.incomplete\"",
        b"\"response.failed\"",
    ];
    const NDJSON_ENDS: &[&[u8]] = &[b"\"done\":true", b"\"done\": true"];
    let ends = if content_type.contains("text/event-stream") {
        SSE_ENDS
    } else if content_type.contains("ndjson") {
        NDJSON_ENDS
    } else {
        return false;
    };
    ends.iter()
        .any(|end| tail.windows(end.len()).any(|w| w == *end))
}

/// The JSON lines of an NDJSON stream, blank lines skipped.
pub fn json_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines().map(str::trim).filter(|line| !line.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_split_on_blank_lines_and_data_lines_joined() {
        let text = "event: message_start\r\ndata: {\"a\":1}\r\n\r\n: comment\ndata: x\ndata: y\n\ndata: [DONE]";
        let got = events(text);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].event.as_deref(), Some("message_start"));
        assert_eq!(got[0].data, "{\"a\":1}");
        assert_eq!(got[1].data, "x\ny");
        assert_eq!(got[2].data, "[DONE]");
    }

    #[test]
    fn the_last_event_of_each_stream_format_is_recognised() {
        assert!(stream_finished(
            "text/event-stream",
            b"data: {}\n\ndata: [DONE]\n\n"
        ));
        assert!(stream_finished(
            "text/event-stream",
            b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"
        ));
        assert!(stream_finished(
            "application/x-ndjson",
            b"{\"done\":true,\"eval_count\":2}\n"
        ));
        assert!(!stream_finished(
            "text/event-stream",
            b"data: {\"choices\":[]}\n\n"
        ));
        assert!(!stream_finished(
            "application/x-ndjson",
            b"{\"done\":false}\n"
        ));
        assert!(!stream_finished("application/json", b"data: [DONE]"));
    }

    #[test]
    fn json_lines_skip_blank_lines() {
        let got: Vec<&str> = json_lines("{\"a\":1}\n\n {\"b\":2}\n").collect();
        assert_eq!(got, vec!["{\"a\":1}", "{\"b\":2}"]);
    }
}
