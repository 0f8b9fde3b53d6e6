//! Clear text a process sent or received: the buffers of a TLS library's
//! `SSL_write`/`SSL_read` calls (uprobes), or the payload of a plain-HTTP
//! socket of a tracked process. The kernel copies a bounded prefix of each
//! call; `llm` reassembles them per connection and direction.

use std::net::SocketAddr;

use aiwatch_common::{
    ClearTextRecord, EventHeader, EventKind, CLEAR_TEXT_FLAG_LISTED, CLEAR_TEXT_FLAG_PROMOTED,
    CLEAR_TEXT_FLAG_TRUNCATED, CLEAR_TEXT_PLAIN, CLEAR_TEXT_RECEIVED, CLEAR_TEXT_SENT,
    CLEAR_TEXT_TLS,
};

use super::{checked, net::socket_addr, DecodeError, Payload};

/// Which way the bytes went, from the traced process's side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Written by the process (a request, for a client).
    Sent,
    /// Read by the process (a response, for a client).
    Received,
}

/// Where the clear text was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TextSource {
    /// A TLS library's read or write call, before encryption or after
    /// decryption.
    Tls,
    /// A plain (unencrypted) socket's send or receive.
    Plain,
}

/// One call's worth of clear text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClearText {
    /// Identifies the connection within the process: the TLS library's
    /// connection object (`SSL *`) for [`TextSource::Tls`], the socket
    /// cookie for [`TextSource::Plain`].
    pub connection: u64,
    pub direction: Direction,
    pub source: TextSource,
    /// The peer, when the kernel could tie the call to its socket.
    pub peer: Option<SocketAddr>,
    /// Bytes the call carried (its return value for reads).
    pub len: u32,
    /// The first bytes of the call, at most the configured capture size.
    pub data: Vec<u8>,
    /// `data` is shorter than `len`: the rest of this call was not copied,
    /// so a reassembled stream has a gap here.
    pub truncated: bool,
    /// [`TextSource::Plain`]: the TCP sequence number of the segment's first
    /// byte, which tells a retransmission from new data.
    pub seq: Option<u32>,
}

/// Why the kernel captured a call of a process (the record's flags).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureReason {
    /// This write matched an LLM API request line in the kernel, which
    /// tracked the process from it on.
    pub promoted: bool,
    /// The process is on the configured capture list, not tracked.
    pub listed: bool,
}

/// Decodes a `ClearTextRecord`. A direction or source the ABI does not
/// define is a garbage record, rejected like a bad size.
pub fn decode(header: &EventHeader, bytes: &[u8]) -> Result<Payload, DecodeError> {
    let kind = EventKind::ClearText;
    let r = checked::<ClearTextRecord>(kind, header, bytes)?;
    let direction = match r.direction {
        CLEAR_TEXT_SENT => Direction::Sent,
        CLEAR_TEXT_RECEIVED => Direction::Received,
        other => {
            return Err(DecodeError::BadField {
                kind,
                field: "direction",
                value: u64::from(other),
            })
        }
    };
    let source = match r.source {
        CLEAR_TEXT_TLS => TextSource::Tls,
        CLEAR_TEXT_PLAIN => TextSource::Plain,
        other => {
            return Err(DecodeError::BadField {
                kind,
                field: "source",
                value: u64::from(other),
            })
        }
    };
    let copied = (r.data_len as usize).min(r.data.len());
    let data = r.data[..copied].to_vec();
    Ok(Payload::ClearText(Box::new(ClearText {
        connection: r.connection,
        direction,
        source,
        peer: socket_addr(&r.peer),
        len: r.len,
        truncated: r.header.flags & CLEAR_TEXT_FLAG_TRUNCATED != 0 || data.len() < r.len as usize,
        data,
        seq: (source == TextSource::Plain).then_some(r.seq),
    })))
}

/// The capture reason a record's flags carry.
pub fn capture_reason(flags: u16) -> CaptureReason {
    CaptureReason {
        promoted: flags & CLEAR_TEXT_FLAG_PROMOTED != 0,
        listed: flags & CLEAR_TEXT_FLAG_LISTED != 0,
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use aiwatch_common::{SockAddr, CLEAR_TEXT_MAX};

    use super::*;
    use crate::ingest::decode::{
        decode,
        test_support::{bytes_of, header, zeroed},
    };

    fn record(data: &[u8], len: u32) -> Box<ClearTextRecord> {
        // Boxed: the record is 16 KiB.
        let mut r: Box<ClearTextRecord> = Box::new(zeroed());
        r.header = header(
            EventKind::ClearText,
            size_of::<ClearTextRecord>(),
            77,
            "python3",
        );
        r.connection = 0xdead_beef;
        r.len = len;
        r.data_len = data.len() as u32;
        r.data[..data.len()].copy_from_slice(data);
        r.direction = CLEAR_TEXT_SENT;
        r.source = CLEAR_TEXT_TLS;
        r
    }

    fn clear_text(bytes: &[u8]) -> Result<ClearText, DecodeError> {
        match decode(bytes)?.payload {
            Payload::ClearText(text) => Ok(*text),
            other => panic!("not clear text: {other:?}"),
        }
    }

    #[test]
    fn a_whole_write() {
        let line = b"POST /v1/chat/completions HTTP/1.1\r\n";
        let mut r = record(line, line.len() as u32);
        r.peer = SockAddr {
            family: 2,
            port: 443,
            _pad: 0,
            addr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        };
        r.header.flags = CLEAR_TEXT_FLAG_PROMOTED;
        let text = clear_text(&bytes_of(&*r)).unwrap();
        assert_eq!(text.data, line);
        assert_eq!(text.len, line.len() as u32);
        assert!(!text.truncated);
        assert_eq!(text.seq, None, "TLS calls have no sequence number");
        assert_eq!(text.connection, 0xdead_beef);
        assert_eq!(
            (text.direction, text.source),
            (Direction::Sent, TextSource::Tls)
        );
        assert_eq!(text.peer, Some("127.0.0.1:443".parse().unwrap()));
        assert!(capture_reason(r.header.flags).promoted);
        assert!(!capture_reason(r.header.flags).listed);
    }

    #[test]
    fn a_cut_read_is_truncated() {
        let mut r = record(&[b'x'; 100], 5000);
        r.direction = CLEAR_TEXT_RECEIVED;
        r.source = CLEAR_TEXT_PLAIN;
        r.header.flags = CLEAR_TEXT_FLAG_TRUNCATED;
        r.seq = 0xfffe_0001;
        let text = clear_text(&bytes_of(&*r)).unwrap();
        assert_eq!(text.seq, Some(0xfffe_0001), "a plain segment's place");
        assert_eq!(text.data.len(), 100);
        assert!(text.truncated);
        assert_eq!(text.peer, None);
        assert_eq!(
            (text.direction, text.source),
            (Direction::Received, TextSource::Plain)
        );
    }

    #[test]
    fn a_copied_length_past_the_buffer_is_clamped() {
        let mut r = record(b"", 1 << 20);
        r.data_len = u32::MAX;
        let text = clear_text(&bytes_of(&*r)).unwrap();
        assert_eq!(text.data.len(), CLEAR_TEXT_MAX);
        assert!(text.truncated, "fewer bytes than the call carried");
    }

    #[test]
    fn garbage_direction_source_and_size_are_errors() {
        let mut r = record(b"GET / HTTP/1.1", 14);
        r.direction = 9;
        assert!(matches!(
            decode(&bytes_of(&*r)),
            Err(DecodeError::BadField {
                field: "direction",
                value: 9,
                ..
            })
        ));
        let mut r = record(b"GET / HTTP/1.1", 14);
        r.source = 0;
        assert!(matches!(
            decode(&bytes_of(&*r)),
            Err(DecodeError::BadField {
                field: "source",
                ..
            })
        ));
        let r = record(b"GET", 3);
        let bytes = bytes_of(&*r);
        let err = decode(&bytes[..bytes.len() - 8]).unwrap_err();
        assert!(matches!(err, DecodeError::BadSize { .. }));
        assert_eq!(err.kind(), Some(EventKind::ClearText));
    }
}
