//! Connections being reassembled: per process and connection, the two
//! directions' HTTP streams and the requests waiting for their answers.

use std::collections::{BTreeSet, HashMap, VecDeque};

use super::{
    api::{self, Api},
    candidates::{self, Candidate},
    http::{Head, HttpStream, Message, StartLine, StreamError},
    request::RequestFacts,
    response::ResponseFacts,
    truncate, LlmConfig,
};
use crate::{
    enrich::redact::Redactor,
    event::{Event, Kind, LlmInfo, ToolCall},
    ingest::decode::clear_text::{ClearText, Direction},
    metrics::LlmUnparsed,
};

/// A body that only a close would end is taken as complete after this
/// long without a byte (the kernel reports no closes to this stage).
const IDLE_FLUSH_NS: u64 = 5_000_000_000;
/// A connection without a byte for this long is forgotten.
const IDLE_FORGET_NS: u64 = 600_000_000_000;

/// What reassembly completed.
pub(super) enum Done {
    Request(Box<Exchange>),
    Response(Box<Exchange>),
    Unparsed(LlmUnparsed),
}

/// A request to a recognised API, and its answer once it came.
#[derive(Clone, Debug)]
pub(super) struct Exchange {
    /// The process the exchange is of (an enriched event to copy).
    pub template: Event,
    pub api: Api,
    pub host: String,
    pub key_provider: Option<&'static str>,
    pub request: RequestFacts,
    pub request_truncated: bool,
    /// Hosts named anywhere in the request body.
    pub request_hosts: BTreeSet<String>,
    /// `<pid>-<sequence>`, unique within the agent's run.
    pub request_id: String,
    pub sent_ns: u64,
    pub response: Option<(Message, ResponseFacts)>,
}

impl Exchange {
    fn info(&self) -> LlmInfo {
        let provider = api::provider(self.api, &self.host);
        LlmInfo {
            request_id: self.request_id.clone(),
            provider,
            api: self.api.as_str().to_owned(),
            host: self.host.clone(),
            model: self.request.model.clone(),
            stream: self.request.stream,
            fetched_content: self.request.fetched_content,
            ..LlmInfo::default()
        }
    }

    /// The `llm_request` event.
    pub fn request_event(&self, config: &LlmConfig, redactor: &Redactor) -> Event {
        let mut event = self.template.clone();
        event.kind = Kind::LlmRequest;
        event.ktime_ns = self.sent_ns.max(event.ktime_ns);
        let mut info = self.info();
        info.messages = Some(self.request.messages);
        info.tools = self.request.tools.clone();
        info.prompt_bytes = Some(self.request.prompt.len() as u64);
        if !self.request.prompt.is_empty() {
            info.prompt_hash = self.request.prompt_hash();
        }
        info.key_provider = self.key_provider.map(str::to_owned);
        info.key_foreign_host = self
            .key_provider
            .is_some_and(|key| api::key_foreign_host(key, &self.host));
        info.truncated = self.request_truncated;
        if config.capture_content {
            let mut text = redactor.redact_str(&self.request.prompt);
            info.truncated |= truncate(&mut text, config.content_max_bytes);
            info.content = Some(text);
        }
        event.llm = Some(Box::new(info));
        event
    }

    /// The `llm_response` event and the answer's candidate actions.
    pub fn response_event(
        &self,
        config: &LlmConfig,
        redactor: &Redactor,
    ) -> (Event, Vec<Candidate>) {
        let mut event = self.template.clone();
        event.kind = Kind::LlmResponse;
        let mut info = self.info();
        let Some((message, facts)) = &self.response else {
            event.llm = Some(Box::new(info));
            return (event, Vec::new());
        };
        event.ktime_ns = message.last_ns.max(event.ktime_ns);
        if let StartLine::Response { status } = message.head.start {
            info.status = Some(status);
        }
        if !facts.model.is_empty() {
            info.model = facts.model.clone();
        }
        info.finish_reason = facts.finish_reason.clone();
        info.input_tokens = facts.input_tokens;
        info.output_tokens = facts.output_tokens;
        info.latency_ms = Some(message.last_ns.saturating_sub(self.sent_ns) / 1_000_000);
        info.tool_calls = facts
            .tool_calls
            .iter()
            .map(|(name, arguments)| {
                let mut arguments = redactor.redact_str(arguments);
                truncate(&mut arguments, config.tool_arguments_max_bytes);
                ToolCall {
                    name: name.clone(),
                    arguments,
                }
            })
            .collect();
        info.truncated = message.truncated || message.unterminated;
        if config.capture_content {
            let mut text = redactor.redact_str(&facts.text);
            info.truncated |= truncate(&mut text, config.content_max_bytes);
            info.content = Some(text);
        }
        event.llm = Some(Box::new(info));
        (event, candidates::extract(&facts.tool_calls, &facts.text))
    }

    /// The answer's body could not be read.
    pub fn response_unparsed(&self) -> bool {
        self.response
            .as_ref()
            .is_some_and(|(_, facts)| facts.unparsed)
    }
}

/// A request on a connection, waiting for its answer.
enum Pending {
    Llm(Box<Exchange>),
    /// Not an LLM call: its answer is framed and dropped.
    Other,
}

struct Connection {
    sent: HttpStream,
    received: HttpStream,
    pending: VecDeque<Pending>,
    /// The latest enriched event of the process, for the events to come.
    template: Event,
    last_ns: u64,
    /// Plain HTTP: the TCP sequence number each direction expects next.
    next_seq: [Option<u32>; 2],
}

/// Where a plain segment falls in its direction's byte stream, by TCP
/// sequence number.
#[derive(Debug, PartialEq, Eq)]
enum Placement {
    /// Every byte of it was seen already: a retransmission.
    Seen,
    /// New bytes after `skip` already seen ones, `gap` bytes after the last
    /// seen byte (lost from the capture, or sent before it began).
    New { skip: u32, gap: u32 },
}

/// Places a segment of `len` bytes at `seq` after the bytes up to `next`
/// (sequence numbers wrap).
fn place_segment(next: &mut Option<u32>, seq: u32, len: u32) -> Placement {
    let end = seq.wrapping_add(len);
    let Some(expected) = *next else {
        *next = Some(end);
        return Placement::New { skip: 0, gap: 0 };
    };
    let ahead = seq.wrapping_sub(expected) as i32;
    if ahead >= 0 {
        *next = Some(end);
        return Placement::New {
            skip: 0,
            gap: ahead as u32,
        };
    }
    let overlap = ahead.unsigned_abs();
    if overlap >= len {
        return Placement::Seen;
    }
    *next = Some(end);
    Placement::New {
        skip: overlap,
        gap: 0,
    }
}

/// Bytes at the end of a streamed body searched for its final event: the
/// last event of any format fits.
const STREAM_END_WINDOW: usize = 512;

/// Requests waiting per connection before the oldest is given up.
const MAX_PENDING: usize = 64;

/// Every connection being reassembled, bounded.
pub(super) struct Connections {
    by_key: HashMap<(u32, u64), Connection>,
    max: usize,
    /// The last request sequence number given.
    sequence: u64,
}

impl Connections {
    pub fn new(max: usize) -> Connections {
        Connections {
            by_key: HashMap::new(),
            max: max.max(1),
            sequence: 0,
        }
    }

    /// Feeds one call; returns how many connections were evicted for it.
    pub fn feed(
        &mut self,
        from: &Event,
        text: &ClearText,
        config: &LlmConfig,
        out: &mut dyn FnMut(Done),
    ) -> usize {
        let key = (from.process.pid, text.connection);
        let now = from.ktime_ns;
        let mut evicted = 0;
        if !self.by_key.contains_key(&key) && self.by_key.len() >= self.max {
            if let Some(oldest) = self
                .by_key
                .iter()
                .min_by_key(|(_, c)| c.last_ns)
                .map(|(k, _)| *k)
            {
                self.by_key.remove(&oldest);
                evicted += 1;
            }
        }
        let connection = self.by_key.entry(key).or_insert_with(|| Connection {
            sent: HttpStream::default(),
            received: HttpStream::default(),
            pending: VecDeque::new(),
            template: Event::default(),
            last_ns: now,
            next_seq: [None; 2],
        });
        connection.template = from.clone();
        connection.template.llm = None;
        connection.template.cause = None;
        connection.last_ns = now;
        // A new request while the answer before it was read only to its
        // final event: the client closed that connection, and this is a
        // new one under the same (reused) connection object.
        if text.direction == Direction::Sent
            && connection.received.awaits_abandoned_body()
            && super::http::starts_message(&text.data)
        {
            connection.received = HttpStream::default();
        }
        let mut data = text.data.as_slice();
        let mut len = text.len;
        let mut gap = 0;
        if let Some(seq) = text.seq {
            let next = &mut connection.next_seq[usize::from(text.direction == Direction::Received)];
            match place_segment(next, seq, text.len) {
                Placement::Seen => return evicted,
                Placement::New { skip, gap: lost } => {
                    data = data.get(skip as usize..).unwrap_or_default();
                    len -= skip;
                    gap = lost;
                }
            }
        }
        let missing = u64::from(len).saturating_sub(data.len() as u64);
        let mut messages = Vec::new();
        let Connection {
            sent,
            received,
            pending,
            ..
        } = connection;
        let stream = match text.direction {
            Direction::Sent => sent,
            Direction::Received => received,
        };
        let max_body = config.max_body_bytes;
        let mut limit = |head: &Head| body_limit(head, pending, max_body);
        let mut pushed = Ok(());
        if gap > 0 {
            pushed = stream.push(&[], u64::from(gap), now, &mut limit, &mut messages);
        }
        if pushed.is_ok() {
            pushed = stream.push(data, missing, now, &mut limit, &mut messages);
        }
        if let Err(error) = pushed {
            out(Done::Unparsed(match error {
                StreamError::Http2 => LlmUnparsed::Http2,
                StreamError::NotHttp => LlmUnparsed::NotHttp,
                StreamError::Gap => LlmUnparsed::Gap,
            }));
        }
        // A stream whose final event arrived is complete for the client,
        // which acts on it before the framing's last chunk comes.
        if text.direction == Direction::Received
            && matches!(connection.pending.front(), Some(Pending::Llm(_)))
        {
            let finished = connection
                .received
                .body_tail(STREAM_END_WINDOW)
                .is_some_and(|(head, tail)| {
                    let content_type = head
                        .header("content-type")
                        .unwrap_or("")
                        .to_ascii_lowercase();
                    super::sse::stream_finished(&content_type, tail)
                });
            if finished {
                messages.extend(connection.received.take_early());
            }
        }
        for message in messages {
            connection.on_message(message, text.direction, &mut self.sequence, out);
        }
        evicted
    }

    /// Flushes idle bodies and forgets idle connections.
    pub fn tick(&mut self, now_ns: u64, out: &mut dyn FnMut(Done)) {
        let sequence = &mut self.sequence;
        for connection in self.by_key.values_mut() {
            for direction in [Direction::Sent, Direction::Received] {
                let stream = match direction {
                    Direction::Sent => &mut connection.sent,
                    Direction::Received => &mut connection.received,
                };
                let idle = stream
                    .body_in_progress_since()
                    .is_some_and(|last| now_ns.saturating_sub(last) > IDLE_FLUSH_NS);
                if idle {
                    let mut messages = Vec::new();
                    stream.flush(&mut messages);
                    for message in messages {
                        connection.on_message(message, direction, sequence, out);
                    }
                }
            }
        }
        self.by_key.retain(|_, c| {
            now_ns.saturating_sub(c.last_ns) <= IDLE_FORGET_NS
                && !(c.sent.is_dead() && c.received.is_dead())
        });
    }
}

/// Body bytes to keep for a message with this head: requests of a
/// recognised API and answers to them, nothing for the rest.
fn body_limit(head: &Head, pending: &VecDeque<Pending>, max: usize) -> usize {
    match head.start {
        StartLine::Request { .. } => Api::of(head).map_or(0, |_| max),
        StartLine::Response { .. } => match pending.front() {
            Some(Pending::Llm(_)) => max,
            _ => 0,
        },
    }
}

impl Connection {
    fn on_message(
        &mut self,
        message: Message,
        direction: Direction,
        sequence: &mut u64,
        out: &mut dyn FnMut(Done),
    ) {
        match (&message.head.start, direction) {
            (StartLine::Request { .. }, Direction::Sent) => self.on_request(message, sequence, out),
            (StartLine::Request { .. }, Direction::Received) => {
                out(Done::Unparsed(LlmUnparsed::ServerSide))
            }
            (StartLine::Response { status }, Direction::Received) => {
                // An interim answer (100 Continue): the real one follows.
                if *status < 200 {
                    return;
                }
                match self.pending.pop_front() {
                    Some(Pending::Llm(mut exchange)) => {
                        let content_type = message
                            .head
                            .header("content-type")
                            .unwrap_or("")
                            .to_ascii_lowercase();
                        let facts =
                            ResponseFacts::parse(exchange.api, &content_type, &message.body);
                        exchange.template = self.template.clone();
                        exchange.response = Some((message, facts));
                        out(Done::Response(exchange));
                    }
                    Some(Pending::Other) => {}
                    None => out(Done::Unparsed(LlmUnparsed::NoRequest)),
                }
            }
            // Responses the process sent: it is a server.
            (StartLine::Response { .. }, Direction::Sent) => {}
        }
    }

    fn on_request(&mut self, message: Message, sequence: &mut u64, out: &mut dyn FnMut(Done)) {
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
        }
        let Some(api) = Api::of(&message.head) else {
            out(Done::Unparsed(LlmUnparsed::NonLlm));
            self.pending.push_back(Pending::Other);
            return;
        };
        let request = RequestFacts::parse(api, &message.body);
        if request.unparsed {
            out(Done::Unparsed(LlmUnparsed::BadBody));
        }
        let host = api::host_name(message.head.header("host").unwrap_or(""));
        let request_hosts = candidates::hosts_in(&String::from_utf8_lossy(&message.body));
        let exchange = Exchange {
            template: self.template.clone(),
            api,
            host,
            key_provider: api::key_provider(&message.head),
            request,
            request_truncated: message.truncated || message.unterminated,
            request_hosts,
            request_id: String::new(),
            sent_ns: message.last_ns,
            response: None,
        };
        *sequence += 1;
        let mut exchange = Box::new(Exchange {
            request_id: format!("{}-{sequence}", self.template.process.pid),
            ..exchange
        });
        // The answer needs the request's identity, not its prompt.
        let mut waiting = exchange.clone();
        waiting.request.prompt = String::new();
        self.pending.push_back(Pending::Llm(waiting));
        exchange.response = None;
        out(Done::Request(exchange));
    }
}
