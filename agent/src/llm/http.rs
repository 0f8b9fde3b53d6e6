//! HTTP/1.1 message reassembly for one direction of one connection.
//!
//! The kernel hands over each TLS or socket call's bytes, a bounded prefix
//! of them. A message's head and body may span calls, and a call may hold
//! the end of one message and the start of the next (keep-alive). Heads are
//! parsed with `httparse`, chunk sizes with its chunk-size parser. A call
//! the kernel copied only in part leaves a gap: inside a content-length
//! body the missing bytes are skipped by count and the message is marked
//! truncated; anywhere else framing is lost, and the stream waits for a
//! call that starts a new message.

/// Headers kept per message; more make the head unparsable.
mod body;

use body::{body_step, framing, Chunk, Framing};

const MAX_HEADERS: usize = 64;
/// A head longer than this is not HTTP worth waiting for.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The first line of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartLine {
    Request { method: String, path: String },
    Response { status: u16 },
}

/// A parsed message head. Header names are lower-case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub start: StartLine,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A whole message, or as much of it as was kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub head: Head,
    /// The body, at most the limit given for it, de-chunked.
    pub body: Vec<u8>,
    /// Bytes are missing: past the limit, or in a gap of the kernel's copy.
    pub truncated: bool,
    /// The message ended without its framing saying so (idle flush).
    pub unterminated: bool,
    /// Boot-clock time of the first and the last byte seen.
    pub first_ns: u64,
    pub last_ns: u64,
}

/// Why bytes could not be read as HTTP/1.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// The HTTP/2 connection preface.
    Http2,
    /// Not an HTTP/1.x head.
    NotHttp,
    /// Framing was lost in a gap of the kernel's copy.
    Gap,
}

#[derive(Debug)]
enum State {
    /// Waiting for (more of) a head.
    Head,
    Body {
        message: Message,
        framing: Framing,
        limit: usize,
        /// The message was handed out before its framing ended (a stream
        /// whose last event came before its last chunk): the rest is
        /// framed and dropped.
        emitted: bool,
    },
    /// Framing lost: waits for a call that starts a message.
    Resync,
    /// Not HTTP/1.1 (or HTTP/2): everything is dropped.
    Dead,
}

/// One direction of a connection.
#[derive(Debug)]
pub struct HttpStream {
    /// Bytes not yet consumed (a partial head, a partial chunk line).
    pending: Vec<u8>,
    state: State,
}

impl Default for HttpStream {
    fn default() -> Self {
        HttpStream {
            pending: Vec::new(),
            state: State::Head,
        }
    }
}

impl HttpStream {
    /// The message in progress was handed out early and the rest of its
    /// framing has not come: a client that stops reading there closes the
    /// connection.
    pub fn awaits_abandoned_body(&self) -> bool {
        matches!(self.state, State::Body { emitted: true, .. })
    }

    /// Whether the stream gave up on this connection.
    pub fn is_dead(&self) -> bool {
        matches!(self.state, State::Dead)
    }

    /// Bytes held for this stream: the pending input and the body so far.
    pub fn held_bytes(&self) -> usize {
        let body = match &self.state {
            State::Body { message, .. } => message.body.len(),
            _ => 0,
        };
        self.pending.len() + body
    }

    /// Feeds one call's bytes. `missing` is how many bytes of the call the
    /// kernel did not copy (they followed `data`). `body_limit` says, for
    /// each new head, how many body bytes to keep (0: frame and drop).
    /// Completed messages are appended to `out`.
    pub fn push(
        &mut self,
        data: &[u8],
        missing: u64,
        now_ns: u64,
        body_limit: &mut dyn FnMut(&Head) -> usize,
        out: &mut Vec<Message>,
    ) -> Result<(), StreamError> {
        match self.state {
            // A call that starts a message revives the stream: TLS
            // libraries reuse the memory of a freed connection object, so a
            // new connection can arrive under an old one's identity.
            State::Dead | State::Resync => {
                if starts_message(data) {
                    self.state = State::Head;
                    self.pending.clear();
                } else {
                    return Ok(());
                }
            }
            _ => {}
        }
        if self.pending.is_empty() {
            self.feed(data, now_ns, body_limit, out)?;
        } else {
            let mut joined = std::mem::take(&mut self.pending);
            joined.extend_from_slice(data);
            self.feed(&joined, now_ns, body_limit, out)?;
        }
        if missing > 0 {
            self.skip_gap(missing, out);
        }
        Ok(())
    }

    /// Ends a body that only a close would end, or that stopped coming:
    /// the message so far, marked unterminated.
    pub fn flush(&mut self, out: &mut Vec<Message>) {
        if let State::Body {
            mut message,
            emitted: false,
            ..
        } = std::mem::replace(&mut self.state, State::Head)
        {
            message.unterminated = true;
            out.push(message);
        }
        self.pending.clear();
    }

    /// Hands out the message in progress before its framing ends: its
    /// content said it is complete (the last event of a stream). The rest
    /// of its framing is consumed and dropped.
    pub fn take_early(&mut self) -> Option<Message> {
        match &mut self.state {
            State::Body {
                message,
                limit,
                emitted: emitted @ false,
                ..
            } => {
                *emitted = true;
                *limit = 0;
                Some(Message {
                    head: message.head.clone(),
                    body: std::mem::take(&mut message.body),
                    ..*message
                })
            }
            _ => None,
        }
    }

    /// The head and the last `n` body bytes of a message in progress.
    pub fn body_tail(&self, n: usize) -> Option<(&Head, &[u8])> {
        match &self.state {
            State::Body {
                message,
                emitted: false,
                ..
            } => Some((
                &message.head,
                &message.body[message.body.len().saturating_sub(n)..],
            )),
            _ => None,
        }
    }

    /// The time of the last byte of a body in progress.
    pub fn body_in_progress_since(&self) -> Option<u64> {
        match &self.state {
            State::Body { message, .. } => Some(message.last_ns),
            _ => None,
        }
    }

    fn feed(
        &mut self,
        mut input: &[u8],
        now_ns: u64,
        body_limit: &mut dyn FnMut(&Head) -> usize,
        out: &mut Vec<Message>,
    ) -> Result<(), StreamError> {
        while !input.is_empty() {
            match &mut self.state {
                State::Dead | State::Resync => return Ok(()),
                State::Head => {
                    let Some((head, used)) = self.parse_head(input)? else {
                        if input.len() > MAX_HEAD_BYTES {
                            self.state = State::Dead;
                            return Err(StreamError::NotHttp);
                        }
                        self.pending = input.to_vec();
                        return Ok(());
                    };
                    input = &input[used..];
                    let framing = framing(&head);
                    let limit = body_limit(&head);
                    let message = Message {
                        head,
                        body: Vec::new(),
                        truncated: false,
                        unterminated: false,
                        first_ns: now_ns,
                        last_ns: now_ns,
                    };
                    match framing {
                        Framing::Length { remaining: 0 } => out.push(message),
                        framing => {
                            self.state = State::Body {
                                message,
                                framing,
                                limit,
                                emitted: false,
                            }
                        }
                    }
                }
                State::Body {
                    message,
                    framing,
                    limit,
                    ..
                } => {
                    message.last_ns = now_ns;
                    let (used, done) =
                        body_step(message, framing, *limit, input, &mut self.pending)?;
                    input = &input[used..];
                    if done {
                        if let State::Body {
                            message,
                            emitted: false,
                            ..
                        } = std::mem::replace(&mut self.state, State::Head)
                        {
                            out.push(message);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// A head from the start of `input`, and the bytes it used; `None`
    /// when more bytes are needed.
    fn parse_head(&mut self, input: &[u8]) -> Result<Option<(Head, usize)>, StreamError> {
        if input.starts_with(b"PRI * HTTP/2.0") {
            self.state = State::Dead;
            return Err(StreamError::Http2);
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        if input.starts_with(b"HTTP/") {
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(input) {
                Ok(httparse::Status::Complete(used)) => {
                    let start = StartLine::Response {
                        status: response.code.unwrap_or(0),
                    };
                    Ok(Some((head_of(start, response.headers), used)))
                }
                Ok(httparse::Status::Partial) => Ok(None),
                Err(_) => self.not_http(),
            }
        } else {
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(input) {
                Ok(httparse::Status::Complete(used)) => {
                    let start = StartLine::Request {
                        method: request.method.unwrap_or("").to_owned(),
                        path: request.path.unwrap_or("").to_owned(),
                    };
                    Ok(Some((head_of(start, request.headers), used)))
                }
                Ok(httparse::Status::Partial) => Ok(None),
                Err(_) => self.not_http(),
            }
        }
    }

    fn not_http<T>(&mut self) -> Result<T, StreamError> {
        self.state = State::Dead;
        self.pending.clear();
        Err(StreamError::NotHttp)
    }

    /// `missing` bytes the kernel did not copy followed what was fed.
    fn skip_gap(&mut self, missing: u64, out: &mut Vec<Message>) {
        match &mut self.state {
            State::Body {
                message,
                framing: Framing::Length { remaining },
                ..
            } if self.pending.is_empty() && missing <= *remaining => {
                *remaining -= missing;
                message.truncated = true;
                if *remaining == 0 {
                    if let State::Body {
                        message,
                        emitted: false,
                        ..
                    } = std::mem::replace(&mut self.state, State::Head)
                    {
                        out.push(message);
                    }
                }
            }
            State::Body {
                message,
                framing: Framing::Chunked(Chunk::Data { remaining }),
                ..
            } if self.pending.is_empty() && missing <= *remaining => {
                *remaining -= missing;
                message.truncated = true;
            }
            State::Body {
                message,
                framing: Framing::UntilClose,
                ..
            } => message.truncated = true,
            _ => {
                // The message in progress (if any) ends here, with a gap.
                if let State::Body {
                    mut message,
                    emitted: false,
                    ..
                } = std::mem::replace(&mut self.state, State::Resync)
                {
                    message.truncated = true;
                    message.unterminated = true;
                    out.push(message);
                }
                self.state = State::Resync;
                self.pending.clear();
            }
        }
    }
}

/// Whether a call's bytes look like the start of an HTTP/1.x message.
pub fn starts_message(data: &[u8]) -> bool {
    const METHODS: &[&[u8]] = &[
        b"GET ",
        b"POST ",
        b"PUT ",
        b"PATCH ",
        b"DELETE ",
        b"HEAD ",
        b"OPTIONS ",
    ];
    data.starts_with(b"HTTP/1.") || METHODS.iter().any(|m| data.starts_with(m))
}

fn head_of(start: StartLine, headers: &[httparse::Header<'_>]) -> Head {
    Head {
        start,
        headers: headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
    }
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
