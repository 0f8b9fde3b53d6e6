//! Body framing of an HTTP/1.1 message: content length, chunked transfer
//! coding with its trailers, or until the connection closes.

use super::{Head, Message, StartLine, StreamError, MAX_HEAD_BYTES};

#[derive(Debug)]
pub(super) enum Framing {
    /// `remaining` body bytes to come.
    Length { remaining: u64 },
    /// Chunked transfer coding.
    Chunked(Chunk),
    /// Until the connection closes (a response without a length).
    UntilClose,
}

#[derive(Debug)]
pub(super) enum Chunk {
    /// Waiting for a chunk-size line.
    Size,
    /// Inside a chunk's data.
    Data { remaining: u64 },
    /// The CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines up to an empty one.
    Trailers,
}

pub(super) fn framing(head: &Head) -> Framing {
    let chunked = head
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        return Framing::Chunked(Chunk::Size);
    }
    if let Some(length) = head
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        return Framing::Length { remaining: length };
    }
    match head.start {
        // A request without either has no body.
        StartLine::Request { .. } => Framing::Length { remaining: 0 },
        // 1xx, 204 and 304 have none; other responses run to the close.
        StartLine::Response { status } if status < 200 || status == 204 || status == 304 => {
            Framing::Length { remaining: 0 }
        }
        StartLine::Response { .. } => Framing::UntilClose,
    }
}

/// Keeps body bytes up to the limit, marking the rest as cut.
fn keep(message: &mut Message, limit: usize, bytes: &[u8]) {
    let room = limit.saturating_sub(message.body.len());
    if bytes.len() > room {
        message.truncated = true;
    }
    message
        .body
        .extend_from_slice(&bytes[..bytes.len().min(room)]);
}

/// Consumes body bytes from `input`: how many it used, and whether the
/// message is complete. A partial chunk-size line goes to `pending`.
pub(super) fn body_step(
    message: &mut Message,
    framing: &mut Framing,
    limit: usize,
    input: &[u8],
    pending: &mut Vec<u8>,
) -> Result<(usize, bool), StreamError> {
    match framing {
        Framing::Length { remaining } => {
            let take = (*remaining).min(input.len() as u64) as usize;
            keep(message, limit, &input[..take]);
            *remaining -= take as u64;
            Ok((take, *remaining == 0))
        }
        Framing::UntilClose => {
            keep(message, limit, input);
            Ok((input.len(), false))
        }
        Framing::Chunked(chunk) => match chunk {
            Chunk::Size => match httparse::parse_chunk_size(input) {
                Ok(httparse::Status::Complete((used, 0))) => {
                    *chunk = Chunk::Trailers;
                    Ok((used, false))
                }
                Ok(httparse::Status::Complete((used, size))) => {
                    *chunk = Chunk::Data { remaining: size };
                    Ok((used, false))
                }
                Ok(httparse::Status::Partial) => {
                    pending.extend_from_slice(input);
                    Ok((input.len(), false))
                }
                Err(_) => Err(StreamError::Gap),
            },
            Chunk::Data { remaining } => {
                let take = (*remaining).min(input.len() as u64) as usize;
                keep(message, limit, &input[..take]);
                *remaining -= take as u64;
                if *remaining == 0 {
                    *chunk = Chunk::DataEnd;
                }
                Ok((take, false))
            }
            Chunk::DataEnd => line_end(input, pending).map(|used| {
                if used > 0 {
                    *chunk = Chunk::Size;
                }
                (used.max(pending_all(input, used)), false)
            }),
            Chunk::Trailers => match line_end(input, pending)? {
                0 => Ok((input.len(), false)),
                used => {
                    // An empty line ends the trailers and the message.
                    let empty = used == 2 || (used == 1 && input[0] == b'\n');
                    Ok((used, empty))
                }
            },
        },
    }
}

/// The length of the line ending at the start of `input` (CRLF included),
/// or 0 with the bytes kept in `pending` when it is not complete.
fn line_end(input: &[u8], pending: &mut Vec<u8>) -> Result<usize, StreamError> {
    match input.iter().position(|&b| b == b'\n') {
        Some(at) => Ok(at + 1),
        None if input.len() > MAX_HEAD_BYTES => Err(StreamError::Gap),
        None => {
            pending.extend_from_slice(input);
            Ok(0)
        }
    }
}

/// When a line is incomplete, all of `input` went to `pending`.
fn pending_all(input: &[u8], used: usize) -> usize {
    if used == 0 {
        input.len()
    } else {
        used
    }
}
