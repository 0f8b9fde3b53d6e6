//! Wires the live stream into the listener for remote readers
//! (`observe::http::remote_stream`): reads the token, refuses a clear-text
//! stream off loopback, and feeds each reader from the stream hub.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::{
    app::config::RemoteStreamConfig,
    observe::http::remote_stream::{RemoteStream, RemoteTopic, StreamOpener},
    sink::stream::{StreamHub, Topic},
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
    let open: StreamOpener = Arc::new(move |topic, permit| {
        let topic = match topic {
            RemoteTopic::Alerts => Topic::Alerts,
            RemoteTopic::Events => Topic::Events,
        };
        let mut subscription = hub.subscribe(topic);
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
}
