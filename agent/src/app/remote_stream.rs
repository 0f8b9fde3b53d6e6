//! Wires the live stream into the listener for remote readers
//! (`observe::http::remote_stream`): reads the token, refuses a clear-text
//! stream off loopback, and feeds each reader from the stream hub.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::{
    app::config::RemoteStreamConfig,
    observe::http::remote_stream::{RemoteStream, RemoteTopic, StreamOpener},
    sink::stream::{Request, StreamHub, Topic},
};

/// Lines between a reader's subscription and its connection. The
/// subscription's own queue (`sink::stream::READER_QUEUE`) is where a slow
/// reader's losses are counted.
const CONNECTION_LINES: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum RemoteStreamSetupError {
    #[error("cannot read remote_stream.token_file {path}: {source}")]
    Token {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("remote_stream.token_file {0} holds no token")]
    EmptyToken(PathBuf),
    #[error("the listener {0} is not on loopback, and the remote stream would send its token, argv and paths in clear text there: keep the listener on loopback, or set remote_stream.insecure: true if something else protects the wire")]
    ClearText(SocketAddr),
}

/// The remote stream the configuration asks for, or `None`.
pub fn setup(
    config: Option<&RemoteStreamConfig>,
    listen: SocketAddr,
    hub: Arc<StreamHub>,
) -> Result<Option<RemoteStream>, RemoteStreamSetupError> {
    let Some(config) = config else {
        return Ok(None);
    };
    if !listen.ip().is_loopback() && !config.insecure {
        return Err(RemoteStreamSetupError::ClearText(listen));
    }
    let token = std::fs::read_to_string(&config.token_file).map_err(|source| {
        RemoteStreamSetupError::Token {
            path: config.token_file.clone(),
            source,
        }
    })?;
    let token = token.trim();
    if token.is_empty() {
        return Err(RemoteStreamSetupError::EmptyToken(
            config.token_file.clone(),
        ));
    }
    let open: StreamOpener = Arc::new(move |request, permit| {
        let topic = match request.topic {
            RemoteTopic::Alerts => Topic::Alerts,
            RemoteTopic::Events => Topic::Events,
        };
        let mut subscription = hub.subscribe(Request {
            topic,
            recent: request.recent,
        });
        let (lines, receiver) = mpsc::channel(CONNECTION_LINES);
        tokio::spawn(async move {
            let _slot = permit;
            loop {
                tokio::select! {
                    chunk = subscription.next() => {
                        let Some(chunk) = chunk else { break };
                        if lines.send(Bytes::from(chunk)).await.is_err() {
                            break;
                        }
                    }
                    () = lines.closed() => break,
                }
            }
        });
        receiver
    });
    Ok(Some(RemoteStream::new(token, config.max_readers, open)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(token_file: PathBuf, insecure: bool) -> RemoteStreamConfig {
        RemoteStreamConfig {
            token_file,
            max_readers: 2,
            insecure,
        }
    }

    #[test]
    fn the_stream_is_refused_where_it_would_leak_or_has_no_token() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t0ken\n").unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, " \n").unwrap();
        let hub = Arc::new(StreamHub::default());
        let loopback: SocketAddr = "127.0.0.1:9464".parse().unwrap();
        let pod_ip: SocketAddr = "10.1.2.3:9464".parse().unwrap();

        assert!(setup(None, pod_ip, hub.clone()).unwrap().is_none());
        let err = setup(Some(&config(token.clone(), false)), pod_ip, hub.clone())
            .err()
            .expect("refused");
        assert!(matches!(err, RemoteStreamSetupError::ClearText(_)), "{err}");
        assert!(err.to_string().contains("insecure: true"), "{err}");
        let err = setup(Some(&config(empty.clone(), false)), loopback, hub.clone())
            .err()
            .expect("refused");
        assert!(
            matches!(err, RemoteStreamSetupError::EmptyToken(_)),
            "{err}"
        );
        let missing = dir.path().join("missing");
        let err = setup(Some(&config(missing, false)), loopback, hub.clone())
            .err()
            .expect("refused");
        assert!(matches!(err, RemoteStreamSetupError::Token { .. }), "{err}");

        assert!(
            setup(Some(&config(token.clone(), false)), loopback, hub.clone())
                .unwrap()
                .is_some()
        );
        assert!(setup(Some(&config(token, true)), pod_ip, hub)
            .unwrap()
            .is_some());
    }

    /// A remote reader that stops reading while the agent publishes more
    /// than its queue holds: its lines are dropped, counted in the hub, and
    /// told to it in `{"dropped": N}` notices; nothing is lost untold.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stopped_remote_reader_is_told_what_it_lost() {
        use crate::{
            event::Event,
            metrics::{Metrics, MetricsConfig},
            observe::http::{HttpOptions, HttpServer, HttpState, Readiness},
            sink::stream::READER_QUEUE,
        };
        use std::{io::BufRead, sync::atomic::Ordering::Relaxed};

        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "t0ken").unwrap();
        let hub = Arc::new(StreamHub::default());
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let remote = setup(Some(&config(token, false)), loopback, hub.clone()).unwrap();
        let state = HttpState {
            metrics: Arc::new(Metrics::new(MetricsConfig::default()).unwrap()),
            readiness: Arc::new(Readiness::default()),
            inventory: Arc::new(|| serde_json::json!({})),
            remote_stream: remote,
        };
        let server = HttpServer::bind(loopback, state, HttpOptions::default())
            .await
            .unwrap();
        let addr = server.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));

        // The reader connects, then reads nothing until the burst is over.
        let url = format!("http://{addr}/stream/events");
        let body = tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .into();
            let response = agent
                .get(&url)
                .header("Authorization", "Bearer t0ken")
                .call()
                .unwrap();
            assert_eq!(response.status().as_u16(), 200);
            response.into_body().into_with_config().reader()
        })
        .await
        .unwrap();
        let total = READER_QUEUE as u64 * 8;
        let event = Event::default();
        for _ in 0..total {
            hub.publish_event(&event);
        }
        assert!(hub.dropped.load(Relaxed) > 0, "a stopped reader drops");

        let (received, told) = tokio::task::spawn_blocking(move || {
            let mut lines = std::io::BufReader::new(body).lines();
            let (mut received, mut told) = (0u64, 0u64);
            while received + told < total {
                let line = lines.next().expect("more lines").unwrap();
                match crate::app::follow::dropped_notice(&line) {
                    Some(dropped) => told += dropped,
                    None => {
                        serde_json::from_str::<Event>(&line).expect("an event");
                        received += 1;
                    }
                }
            }
            (received, told)
        })
        .await
        .unwrap();
        assert!(received > 0 && told > 0, "{received} received, {told} told");
        assert_eq!(received + told, total);
        assert_eq!(told, hub.dropped.load(Relaxed));
        let _ = stop.send(());
        serving.await.unwrap();
    }
}
