//! Clear text a process sent or received: the buffers of a TLS library's
//! `SSL_write`/`SSL_read` calls (uprobes), or the payload of a plain-HTTP
//! socket of a tracked process. The kernel copies a bounded prefix of each
//! call; `llm` reassembles them per connection and direction.

use std::net::SocketAddr;

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
}
