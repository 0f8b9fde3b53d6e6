//! Fuzzes LLM traffic reassembly and extraction: any bytes, cut into calls
//! anywhere and sent either way, must give events or counted losses, never
//! a panic; so must request and answer bodies of every API and stream
//! format, and the candidate actions of any answer.
#![no_main]

use std::sync::{Arc, OnceLock};

use aiwatch::enrich::redact::Redactor;
use aiwatch::event::{Event, Kind};
use aiwatch::ingest::decode::clear_text::{ClearText, Direction, TextSource};
use aiwatch::llm::{
    api::Api, candidates, request::RequestFacts, response::ResponseFacts, LlmConfig, LlmStage,
};
use aiwatch::metrics::{Metrics, MetricsConfig};
use libfuzzer_sys::fuzz_target;

const APIS: [Api; 7] = [
    Api::ChatCompletions,
    Api::Responses,
    Api::Completions,
    Api::Embeddings,
    Api::Messages,
    Api::OllamaChat,
    Api::OllamaGenerate,
];

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    // One registry for every run: building one per input costs more than
    // the run itself.
    static METRICS: OnceLock<Arc<Metrics>> = OnceLock::new();
    let metrics = METRICS
        .get_or_init(|| Arc::new(Metrics::new(MetricsConfig::default()).expect("metrics")))
        .clone();
    let config = LlmConfig {
        capture_content: control & 1 == 1,
        max_connections: 2,
        max_body_bytes: 4096,
        ..LlmConfig::default()
    };
    // Compiling the redactor's expressions once, too.
    static REDACTOR: OnceLock<Redactor> = OnceLock::new();
    let redactor = REDACTOR.get_or_init(Redactor::default).clone();
    let mut stage = LlmStage::new(config, redactor, metrics);
    // Calls end at every 0xff byte; the byte after says the direction,
    // the connection and how many bytes the kernel did not copy.
    let mut at = 0u64;
    // Plain segments' TCP sequence numbers, per connection and direction.
    let mut next_seq = [u32::MAX - 64; 8];
    for piece in rest.split(|&b| b == 0xff) {
        let (meta, bytes) = piece.split_first().map_or((0, piece), |(m, b)| (*m, b));
        at += 1_000_000;
        let from = Event {
            kind: Kind::ClearText,
            ktime_ns: at,
            ..Event::default()
        };
        // Bit 3: a plain segment, with a sequence number that follows the
        // last one, or (bit 4) rewinds over part of it as a retransmission.
        let len = bytes.len() as u32 + u32::from(meta >> 5);
        let plain = meta & 8 != 0;
        let seq = plain.then(|| {
            let slot = &mut next_seq[usize::from(meta & 7)];
            let seq = if meta & 16 != 0 {
                slot.wrapping_sub(len / 2)
            } else {
                *slot
            };
            *slot = seq.wrapping_add(len);
            seq
        });
        let text = ClearText {
            connection: u64::from(meta & 3),
            direction: if meta & 4 == 0 {
                Direction::Sent
            } else {
                Direction::Received
            },
            source: if plain {
                TextSource::Plain
            } else {
                TextSource::Tls
            },
            peer: None,
            len,
            data: bytes.to_vec(),
            truncated: meta >> 5 != 0,
            seq,
        };
        for mut event in stage.observe(&from, &text) {
            event.kind = Kind::Exec;
            stage.correlate(&mut event);
        }
    }
    stage.tick(u64::MAX / 4);
    let api = APIS[usize::from(control >> 1) % APIS.len()];
    let _ = RequestFacts::parse(api, rest);
    for content_type in ["application/json", "text/event-stream", "application/x-ndjson"] {
        let facts = ResponseFacts::parse(api, content_type, rest);
        let _ = candidates::extract(&facts.tool_calls, &facts.text);
    }
    let text = String::from_utf8_lossy(rest);
    let _ = candidates::extract(&[("t".into(), text.clone().into_owned())], &text);
});
