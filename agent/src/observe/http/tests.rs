//! Tests for the HTTP listener over a real loopback socket.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::*;
use crate::event::Kind;
use crate::metrics::MetricsConfig;

struct Running {
    addr: SocketAddr,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("server stops on shutdown")
            .expect("server task does not panic");
    }
}

async fn start(max_silence: Duration, options: HttpOptions) -> Running {
    start_with(max_silence, options, None).await
}

async fn start_with(
    max_silence: Duration,
    options: HttpOptions,
    remote_stream: Option<RemoteStream>,
) -> Running {
    let metrics = Arc::new(Metrics::new(MetricsConfig::default()).expect("metrics"));
    let readiness = Arc::new(Readiness::new(max_silence));
    let state = HttpState {
        metrics: Arc::clone(&metrics),
        readiness: Arc::clone(&readiness),
        inventory: Arc::new(|| serde_json::json!({ "workloads": [{ "name": "vllm" }] })),
        remote_stream,
    };
    let loopback: SocketAddr = "127.0.0.1:0".parse().expect("valid address");
    let server = HttpServer::bind(loopback, state, options)
        .await
        .expect("binds loopback");
    let addr = server.local_addr().expect("bound address");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));
    Running {
        addr,
        readiness,
        metrics,
        stop: Some(stop),
        task,
    }
}

/// Sends one raw request and returns (status code, headers, body).
async fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let raw = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(raw.as_bytes()).await.expect("writes");
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .expect("answers in time")
        .expect("reads");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("response has a header block");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status line has a code");
    (status, head.to_ascii_lowercase(), body.to_string())
}

#[tokio::test]
async fn healthz_and_unknown_paths() {
    let server = start(DEFAULT_MAX_SILENCE, HttpOptions::default()).await;
    let (status, _, body) = request(server.addr, "GET", "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _, _) = request(server.addr, "GET", "/nope").await;
    assert_eq!(status, 404);
    let (status, head, _) = request(server.addr, "POST", "/metrics").await;
    assert_eq!(status, 405);
    assert!(head.contains("allow: get, head"));
    server.stop().await;
}

#[tokio::test]
async fn readyz_follows_attachment_and_heartbeats() {
    let server = start(Duration::from_millis(200), HttpOptions::default()).await;

    let (status, head, body) = request(server.addr, "GET", "/readyz").await;
    assert_eq!(status, 503);
    assert!(head.contains("content-type: application/json"));
    let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(answer["ready"], false);
    assert_eq!(answer["reason"], "eBPF programs are not attached");

    server.readiness.set_probes_attached(true);
    let (status, _, body) = request(server.addr, "GET", "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("has not started"), "{body}");

    server.readiness.heartbeat();
    let (status, _, body) = request(server.addr, "GET", "/readyz").await;
    assert_eq!(status, 200, "{body}");

    tokio::time::sleep(Duration::from_millis(400)).await;
    let (status, _, body) = request(server.addr, "GET", "/readyz").await;
    assert_eq!(status, 503);
    assert!(body.contains("has not made progress"), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn metrics_are_served_in_text_format_with_readiness() {
    let server = start(DEFAULT_MAX_SILENCE, HttpOptions::default()).await;
    server.metrics.event(Kind::Connect);
    let (status, head, body) = request(server.addr, "GET", "/metrics").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/plain; version=0.0.4"));
    assert!(body.contains("aiwatch_events_total{kind=\"connect\"} 1"));
    assert!(body.contains("aiwatch_ready 0"));

    server.readiness.set_probes_attached(true);
    server.readiness.heartbeat();
    let (_, _, body) = request(server.addr, "GET", "/metrics").await;
    assert!(body.contains("aiwatch_ready 1"));
    server.stop().await;
}

#[tokio::test]
async fn inventory_comes_from_the_provider() {
    let server = start(DEFAULT_MAX_SILENCE, HttpOptions::default()).await;
    let (status, head, body) = request(server.addr, "GET", "/inventory").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: application/json"));
    let inventory: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(inventory["workloads"][0]["name"], "vllm");
    server.stop().await;
}

#[tokio::test]
async fn a_stuck_client_is_cut_off_and_does_not_block_others() {
    let options = HttpOptions {
        header_read_timeout: Duration::from_millis(200),
        connection_timeout: Duration::from_millis(500),
        admission: admission::AdmissionLimits {
            general: 2,
            ..Default::default()
        },
    };
    let server = start(DEFAULT_MAX_SILENCE, options).await;

    // Opens a connection and never sends a request.
    let mut stuck = TcpStream::connect(server.addr).await.expect("connects");
    // The other slot still serves.
    let (status, _, _) = request(server.addr, "GET", "/healthz").await;
    assert_eq!(status, 200);

    // The stuck client is disconnected once the header timeout passes.
    let mut buffer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), stuck.read_to_end(&mut buffer)).await;
    assert!(
        closed.is_ok(),
        "stuck connection was not closed by the server"
    );

    // Its slot is free again: with another silent client holding one slot,
    // a request still finds the second.
    let _silent = TcpStream::connect(server.addr).await.expect("connects");
    let (status, _, _) = request(server.addr, "GET", "/healthz").await;
    assert_eq!(status, 200);
    server.stop().await;
}

/// 200 clients connect and send half a request, then wait: the probes and
/// the scrape still answer, each within a couple of seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_slow_clients_do_not_starve_monitoring() {
    let server = start(DEFAULT_MAX_SILENCE, HttpOptions::default()).await;
    server.readiness.set_probes_attached(true);
    server.readiness.heartbeat();
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(server.addr).await.expect("connects");
        // Half a request: a slowloris client.
        let _ = stream
            .write_all(b"GET /inventory HTTP/1.1\r\nHost: x\r\n")
            .await;
        slow.push(stream);
    }
    for path in ["/healthz", "/readyz", "/metrics", "/healthz", "/metrics"] {
        let started = std::time::Instant::now();
        let (status, _, body) = request(server.addr, "GET", path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{path} took {:?}",
            started.elapsed()
        );
    }
    drop(slow);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitoring_slot_serves_only_monitoring_paths() {
    let options = HttpOptions {
        admission: admission::AdmissionLimits {
            general: 1,
            per_client: 1,
            ..Default::default()
        },
        ..HttpOptions::default()
    };
    let server = start(DEFAULT_MAX_SILENCE, options).await;
    // One silent client holds this address's only general slot.
    let _silent = TcpStream::connect(server.addr).await.expect("connects");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _, body) = request(server.addr, "GET", "/inventory").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("busy"), "{body}");
    let (status, _, _) = request(server.addr, "GET", "/healthz").await;
    assert_eq!(status, 200);
    // A slow client past its share is cut within about a second.
    let mut slow = TcpStream::connect(server.addr).await.expect("connects");
    let mut buffer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), slow.read_to_end(&mut buffer)).await;
    assert!(
        closed.is_ok(),
        "a slow client past its share kept its connection"
    );
    server.stop().await;
}

#[test]
fn readiness_reasons_are_sentences() {
    let readiness = Readiness::new(Duration::from_secs(1));
    assert_eq!(readiness.check(), Err(NotReady::ProbesNotAttached));
    readiness.set_probes_attached(true);
    assert_eq!(readiness.check(), Err(NotReady::NoHeartbeatYet));
    readiness.heartbeat();
    assert_eq!(readiness.check(), Ok(()));
    readiness.set_probes_attached(false);
    assert_eq!(readiness.check(), Err(NotReady::ProbesNotAttached));
}

/// Sends a GET with extra header lines and reads the answer's head and
/// whatever body arrives within `wait`.
async fn get_with(addr: SocketAddr, path: &str, headers: &str, wait: Duration) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    let raw = format!("GET {path} HTTP/1.1\r\nHost: test\r\n{headers}\r\n");
    stream.write_all(raw.as_bytes()).await.expect("writes");
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Ok(read)) = tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
        if read == 0 {
            break;
        }
        response.extend_from_slice(&buffer[..read]);
    }
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, response)
}

#[test]
fn stream_requests_name_their_topic_and_may_ask_for_recent_alerts() {
    use remote_stream::{RemoteRequest, RemoteTopic};
    let alerts = |recent| RemoteRequest {
        topic: RemoteTopic::Alerts,
        recent,
    };
    assert_eq!(
        RemoteRequest::of("/stream/alerts", None),
        Some(alerts(false))
    );
    assert_eq!(
        RemoteRequest::of("/stream/alerts", Some("recent")),
        Some(alerts(true))
    );
    assert_eq!(
        RemoteRequest::of("/stream/alerts", Some("x=1&recent=1")),
        Some(alerts(true))
    );
    assert_eq!(
        RemoteRequest::of("/stream/alerts", Some("recent=0")),
        Some(alerts(false))
    );
    assert_eq!(
        RemoteRequest::of("/stream/events", None).map(|r| r.topic),
        Some(RemoteTopic::Events)
    );
    assert_eq!(RemoteRequest::of("/stream/other", Some("recent")), None);
}

#[tokio::test]
async fn the_remote_stream_needs_its_token_and_has_bounded_readers() {
    // Each reader gets one line, then the stream stays open.
    let open: remote_stream::StreamOpener = Arc::new(|request, permit| {
        let (lines, receiver) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let _slot = permit;
            let line = format!("{{\"topic\":\"{:?}\"}}\n", request.topic);
            let _ = lines.send(Bytes::from(line)).await;
            lines.closed().await;
        });
        receiver
    });
    let remote = RemoteStream::new("s3cret", 1, open);
    let options = HttpOptions {
        connection_timeout: Duration::from_millis(300),
        ..HttpOptions::default()
    };
    let running = start_with(DEFAULT_MAX_SILENCE, options, Some(remote)).await;
    let wait = Duration::from_millis(500);
    let (status, head) = get_with(running.addr, "/stream/alerts", "", wait).await;
    assert_eq!(status, 401, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{head}"
    );
    let (status, _) = get_with(
        running.addr,
        "/stream/alerts",
        "Authorization: Bearer wrong\r\n",
        wait,
    )
    .await;
    assert_eq!(status, 401);

    // The right token: the line arrives, and the stream outlives the
    // connection deadline (300 ms here).
    let mut reader = TcpStream::connect(running.addr).await.unwrap();
    reader
        .write_all(
            b"GET /stream/events HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer s3cret\r\n\r\n",
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buffer = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("Events") {
        let read = tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buffer))
            .await
            .expect("the line in time")
            .unwrap();
        assert!(read > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buffer[..read]);
    }
    let head = String::from_utf8_lossy(&got).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("application/x-ndjson"), "{head}");
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Still open: the one slot is held, so a second reader is refused.
    let (status, head) = get_with(
        running.addr,
        "/stream/alerts",
        "Authorization: Bearer s3cret\r\n",
        wait,
    )
    .await;
    assert_eq!(status, 503, "{head}");
    drop(reader);
    let text = running.metrics.encode_text().unwrap();
    assert!(
        text.contains("aiwatch_stream_refused_total{reason=\"unauthorized\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("aiwatch_stream_refused_total{reason=\"busy\"} 1"),
        "{text}"
    );
    // The slot comes back once the reader is gone.
    let reopened = wait_for_slot(running.addr).await;
    assert_eq!(reopened, 200);
    running.stop().await;
}

async fn wait_for_slot(addr: SocketAddr) -> u16 {
    for _ in 0..50 {
        let (status, _) = get_with(
            addr,
            "/stream/alerts",
            "Authorization: Bearer s3cret\r\n",
            Duration::from_millis(200),
        )
        .await;
        if status != 503 {
            return status;
        }
    }
    503
}

#[tokio::test]
async fn the_remote_stream_is_off_unless_configured() {
    let running = start(DEFAULT_MAX_SILENCE, HttpOptions::default()).await;
    let (status, _, body) = request(running.addr, "GET", "/stream/alerts").await;
    assert_eq!(status, 404);
    assert!(body.contains("remote_stream"), "{body}");
    running.stop().await;
}
