//! The live stream through the listener: `GET /stream/alerts` and
//! `GET /stream/events`, for `aiwatch alerts|events --follow --remote`
//! (`?recent` sends the agent's latest alerts first, as the socket's
//! `alerts recent` does).
//!
//! The stream carries argv and paths, and any local user can reach a
//! loopback port, so it is off unless `remote_stream` is configured, and
//! then every request must carry its bearer token. The lines are the local
//! socket's: redacted as every sink's, one bounded queue per reader whose
//! losses are counted and told (`sink::stream::Subscription`, wired in by
//! the app through [`StreamOpener`]), and at most `max_readers` at once so
//! that streams cannot take the listener's general slots.

use std::{
    convert::Infallible,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{
    body::{Body, Frame},
    header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE},
    HeaderMap, Response, StatusCode,
};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::metrics::{Metrics, StreamRefusal};

use super::{text, HttpResponse, STREAM_TYPE};

/// The topic a remote reader asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteTopic {
    Alerts,
    Events,
}

/// What a remote reader asks for: `GET /stream/alerts`, `GET
/// /stream/events`, and `?recent` for the agent's latest alerts first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteRequest {
    pub topic: RemoteTopic,
    pub recent: bool,
}

impl RemoteRequest {
    /// The request of a listener path and query, if the path is a stream's.
    pub fn of(path: &str, query: Option<&str>) -> Option<RemoteRequest> {
        let topic = match path {
            "/stream/alerts" => RemoteTopic::Alerts,
            "/stream/events" => RemoteTopic::Events,
            _ => return None,
        };
        let recent = query
            .into_iter()
            .flat_map(|query| query.split('&'))
            .any(|pair| pair == "recent" || pair == "recent=1" || pair == "recent=true");
        Some(RemoteRequest { topic, recent })
    }
}

/// Starts a reader of what it asks for: returns the receiving end of its
/// lines. The permit is the reader's slot; it must live as long as the
/// reader, which ends when the receiver is dropped (the client went away).
pub type StreamOpener =
    Arc<dyn Fn(RemoteRequest, OwnedSemaphorePermit) -> mpsc::Receiver<Bytes> + Send + Sync>;

/// A response body of lines from a channel. Unlike http-body-util's
/// `Channel`, its sender can wait for the client to go away
/// (`mpsc::Sender::closed`), so a reader of a quiet topic is let go at once.
struct LinesBody(mpsc::Receiver<Bytes>);

impl Body for LinesBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|line| line.map(|line| Ok(Frame::data(line))))
    }
}

/// The remote stream's access rules and its readers.
pub struct RemoteStream {
    /// SHA-256 of the bearer token. Digests are compared, never the token
    /// itself: how long a comparison of digests takes tells a guesser
    /// nothing about the token.
    token_digest: [u8; 32],
    readers: Arc<Semaphore>,
    open: StreamOpener,
}

impl RemoteStream {
    pub fn new(token: &str, max_readers: usize, open: StreamOpener) -> RemoteStream {
        RemoteStream {
            token_digest: Sha256::digest(token.as_bytes()).into(),
            readers: Arc::new(Semaphore::new(max_readers.max(1))),
            open,
        }
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let presented = headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        presented.is_some_and(|token| {
            let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
            digest == self.token_digest
        })
    }
}

/// Answers a stream request.
pub fn respond(
    remote: Option<&RemoteStream>,
    metrics: &Metrics,
    request: RemoteRequest,
    headers: &HeaderMap,
) -> HttpResponse {
    let Some(remote) = remote else {
        metrics.stream_refused(StreamRefusal::Off);
        return text(
            StatusCode::NOT_FOUND,
            "the remote stream is off: set remote_stream in the agent's configuration\n",
        );
    };
    if !remote.authorized(headers) {
        metrics.stream_refused(StreamRefusal::Unauthorized);
        let mut response = text(
            StatusCode::UNAUTHORIZED,
            "the remote stream needs the agent's bearer token (remote_stream.token_file)\n",
        );
        response
            .headers_mut()
            .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    let Ok(permit) = remote.readers.clone().try_acquire_owned() else {
        metrics.stream_refused(StreamRefusal::Busy);
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "every remote stream slot is taken (remote_stream.max_readers)\n",
        );
    };
    let lines = (remote.open)(request, permit);
    let mut response = Response::new(LinesBody(lines).boxed());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(STREAM_TYPE));
    response
}
