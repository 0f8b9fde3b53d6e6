use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    sync::Mutex,
};

use super::*;
use crate::alert::Severity;

fn alert(rule: &str) -> Arc<Alert> {
    Arc::new(Alert::sample(rule, Severity::High))
}

/// A one-thread HTTP server answering with the given statuses in turn,
/// recording each request body.
fn server(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    std::thread::spawn(move || {
        for (stream, status) in listener.incoming().zip(statuses) {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            seen.lock().unwrap().push(String::from_utf8(body).unwrap());
            write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            .unwrap();
        }
    });
    (url, bodies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_and_retries_after_a_server_error() {
    let (url, bodies) = server(vec![500, 200]);
    let stats = Arc::new(PipelineStats::new());
    let config = WebhookConfig {
        url,
        flush_ms: 200,
        backoff_ms: 10,
        ..Default::default()
    };
    let (tx, task) = spawn(config, stats.clone()).unwrap();
    tx.send(alert("a.one"), None);
    tx.send(alert("a.two"), None);
    drop(tx);
    task.await.unwrap();
    let bodies = bodies.lock().unwrap();
    assert_eq!(bodies.len(), 2, "one failed POST, one retry");
    assert_eq!(bodies[0], bodies[1]);
    let batch: Vec<serde_json::Value> = serde_json::from_str(&bodies[1]).unwrap();
    assert_eq!(batch.len(), 2);
    assert_eq!(batch[1]["rule"], "a.two");
    assert_eq!(
        stats
            .alerts_dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_drops_and_counts() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    drop(listener);
    let stats = Arc::new(PipelineStats::new());
    let config = WebhookConfig {
        url,
        flush_ms: 50,
        attempts: 2,
        backoff_ms: 1,
        ..Default::default()
    };
    let (tx, task) = spawn(config, stats.clone()).unwrap();
    tx.send(alert("a.one"), None);
    drop(tx);
    task.await.unwrap();
    assert_eq!(
        stats
            .alerts_dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}
