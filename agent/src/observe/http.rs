//! The HTTP listener (`--listen`, default `127.0.0.1:9464`): `/metrics`,
//! `/healthz`, `/readyz`, `/inventory`, and the remote stream
//! (`/stream/alerts`, `/stream/events`: [`remote_stream`]).
//!
//! It must never slow the event pipeline down. Handlers only read shared
//! state: atomics in [`Readiness`], the metrics registry, and an inventory
//! snapshot from a caller-supplied provider. Every connection has a header
//! read timeout and an overall deadline, and the number of open connections
//! is bounded, so a stuck or hostile scraper costs a timeout, not events.
//! Each client address gets a share of the general slots, and monitoring
//! requests are served even when those are taken ([`admission`]), so a
//! flood of slow clients cannot starve the probes or the scrape.

pub mod admission;
pub mod client;
pub mod remote_stream;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::metrics::Metrics;
pub use crate::observe::readiness::{NotReady, Readiness, DEFAULT_MAX_SILENCE};
use remote_stream::{RemoteRequest, RemoteStream};

/// Default listen address: loopback only; expose it deliberately.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

/// Supplies the `/inventory` document. It runs on the listener's task, so it
/// must return a snapshot quickly (clone from a `watch` channel or a value
/// behind a short lock), never wait on the pipeline.
pub type InventoryProvider = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot read the listening address: {0}")]
    LocalAddr(std::io::Error),
}

/// Connection limits.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Time a client has to send its request headers.
    pub header_read_timeout: Duration,
    /// Deadline for a whole connection, whatever it is doing.
    pub connection_timeout: Duration,
    /// Connections served at once, per-client shares and the monitoring
    /// slots.
    pub admission: admission::AdmissionLimits,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            header_read_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(15),
            admission: admission::AdmissionLimits::default(),
        }
    }
}

/// What the handlers read.
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub readiness: Arc<Readiness>,
    pub inventory: InventoryProvider,
    /// The remote stream; `None` when it is off.
    pub remote_stream: Option<RemoteStream>,
}

/// A bound listener, ready to serve.
pub struct HttpServer {
    listener: TcpListener,
    state: Arc<HttpState>,
    options: HttpOptions,
}

impl HttpServer {
    pub async fn bind(
        addr: SocketAddr,
        state: HttpState,
        options: HttpOptions,
    ) -> Result<HttpServer, HttpError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| HttpError::Bind { addr, source })?;
        Ok(HttpServer {
            listener,
            state: Arc::new(state),
            options,
        })
    }

    /// The bound address (useful when binding port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, HttpError> {
        self.listener.local_addr().map_err(HttpError::LocalAddr)
    }

    /// Serves until `shutdown` completes. Connections in flight finish on
    /// their own, bounded by the connection deadline.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) {
        let admission = Arc::new(admission::Admission::new(self.options.admission.clone()));
        let builder = |header_timeout| {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                // One request per connection: scrapes are seconds apart, and an
                // idle kept-alive connection would hold a slot for nothing.
                .keep_alive(false);
            Arc::new(builder)
        };
        let general = builder(self.options.header_read_timeout);
        let monitoring = builder(admission.limits().monitoring_header_timeout);
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                () = &mut shutdown => return,
                accepted = self.listener.accept() => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off rather
                    // than spin, and keep serving once it clears.
                    log::warn!("metrics listener cannot accept a connection: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Some(open) = admission.open() else {
                continue; // past the hard cap: closed at once
            };
            let state = Arc::clone(&self.state);
            let admission = Arc::clone(&admission);
            let (general, monitoring) = (Arc::clone(&general), Arc::clone(&monitoring));
            let deadline = self.options.connection_timeout;
            tokio::spawn(async move {
                let _open = open;
                let slot = admission.admit(peer.ip());
                let monitoring_only = slot.monitoring_only();
                // A remote stream runs past the deadline: it is bounded by
                // its own reader slots instead.
                let streaming = Arc::new(AtomicBool::new(false));
                let service = hyper::service::service_fn({
                    let streaming = Arc::clone(&streaming);
                    move |request| {
                        let response = respond(&state, &request, monitoring_only);
                        if response.headers().get(CONTENT_TYPE)
                            == Some(&HeaderValue::from_static(STREAM_TYPE))
                        {
                            streaming.store(true, Ordering::Relaxed);
                        }
                        async move { Ok::<_, std::convert::Infallible>(response) }
                    }
                });
                let builder = if monitoring_only { monitoring } else { general };
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                tokio::pin!(connection);
                let ended = tokio::select! {
                    ended = &mut connection => Some(ended),
                    () = tokio::time::sleep(deadline) => None,
                };
                let ended = match ended {
                    Some(ended) => Some(ended),
                    None if streaming.load(Ordering::Relaxed) => Some(connection.await),
                    None => None,
                };
                match ended {
                    Some(Ok(())) => {}
                    Some(Err(error)) => log::debug!("metrics connection ended: {error}"),
                    None => log::debug!("metrics connection timed out"),
                }
                drop(slot);
            });
        }
    }
}

type HttpResponse = Response<BoxBody<Bytes, std::convert::Infallible>>;

/// The content type of the remote stream's JSON lines.
const STREAM_TYPE: &str = "application/x-ndjson";

fn respond(state: &HttpState, request: &Request<Incoming>, monitoring_only: bool) -> HttpResponse {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let path = request.uri().path();
    if let Some(stream_request) = RemoteRequest::of(path, request.uri().query()) {
        if monitoring_only {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy: only /metrics, /healthz and /readyz are served right now\n",
            );
        }
        return remote_stream::respond(
            state.remote_stream.as_ref(),
            &state.metrics,
            stream_request,
            request.headers(),
        );
    }
    if monitoring_only && !matches!(path, "/metrics" | "/healthz" | "/readyz") {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy: only /metrics, /healthz and /readyz are served right now\n",
        );
    }
    match path {
        "/metrics" => metrics(state),
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => readyz(state),
        "/inventory" => json(StatusCode::OK, &(state.inventory)()),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn metrics(state: &HttpState) -> HttpResponse {
    state.metrics.set_ready(state.readiness.check().is_ok());
    match state.metrics.encode_text() {
        Ok(body) => with_type(StatusCode::OK, body, prometheus::TEXT_FORMAT),
        Err(error) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot encode metrics: {error}\n"),
        ),
    }
}

fn readyz(state: &HttpState) -> HttpResponse {
    // Detail: where the kernel enforces on this host (`enforcement_mode`).
    let hooks: serde_json::Map<String, serde_json::Value> = state
        .readiness
        .enforcement_hooks()
        .into_iter()
        .map(|(hook, usable)| (hook.to_string(), serde_json::Value::Bool(usable)))
        .collect();
    match state.readiness.check() {
        Ok(()) => json(
            StatusCode::OK,
            &serde_json::json!({ "ready": true, "enforcement_hooks": hooks }),
        ),
        Err(reason) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({
                "ready": false,
                "reason": reason.to_string(),
                "enforcement_hooks": hooks,
            }),
        ),
    }
}

fn text(status: StatusCode, body: &str) -> HttpResponse {
    with_type(status, body.to_string(), "text/plain; charset=utf-8")
}

fn json(status: StatusCode, value: &serde_json::Value) -> HttpResponse {
    let mut body = value.to_string();
    body.push('\n');
    with_type(status, body, "application/json")
}

fn with_type(status: StatusCode, body: String, content_type: &'static str) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(body)).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests;
