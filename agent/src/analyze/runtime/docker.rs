//! The Docker-compatible API (`GET /containers/{id}/json`) that Docker and
//! podman's system service (`podman system service`) serve on a unix socket:
//! the container's name and image.

use std::{collections::HashMap, path::Path};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{header, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use super::{
    k8s_from_labels,
    resolver::{Answer, LookupError},
    RuntimeIdentity,
};

/// An inspect answer is a few KiB; anything past this is not one.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// The part of `GET /containers/{id}/json` aiwatch reads.
#[derive(Debug, Deserialize)]
struct Inspect {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "Config", default)]
    config: Option<InspectConfig>,
}

#[derive(Debug, Default, Deserialize)]
struct InspectConfig {
    #[serde(rename = "Image", default)]
    image: String,
    #[serde(rename = "Labels", default)]
    labels: Option<HashMap<String, String>>,
}

/// Asks the API on `socket` about container `id`.
pub(super) async fn lookup(socket: &Path, id: &str) -> Result<Answer, LookupError> {
    // Only hex ids reach here (`workload::container`); the check keeps any
    // other text out of the request line.
    if !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(Answer::NotFound);
    }
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|source| LookupError::Connect {
            socket: socket.display().to_string(),
            source,
        })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| LookupError::Http(err.to_string()))?;
    let connection = tokio::spawn(connection);
    let request = Request::get(format!("/containers/{id}/json"))
        .header(header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .map_err(|err| LookupError::Http(err.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|err| LookupError::Http(err.to_string()))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|err| LookupError::Http(err.to_string()))?
        .to_bytes();
    connection.abort();
    if status == StatusCode::NOT_FOUND {
        return Ok(Answer::NotFound);
    }
    if !status.is_success() {
        return Err(LookupError::Http(format!("status {status}")));
    }
    parse(&body, runtime_of(socket)).map(|identity| Answer::Found(Box::new(identity)))
}

/// podman's socket says podman; anything else is taken for Docker.
fn runtime_of(socket: &Path) -> &'static str {
    if socket.to_string_lossy().contains("podman") {
        "podman"
    } else {
        "docker"
    }
}

fn parse(body: &[u8], runtime: &str) -> Result<RuntimeIdentity, LookupError> {
    let inspect: Inspect =
        serde_json::from_slice(body).map_err(|err| LookupError::Malformed(err.to_string()))?;
    let config = inspect.config.unwrap_or_default();
    let labels = config.labels.unwrap_or_default();
    let name = inspect.name.trim_start_matches('/');
    Ok(RuntimeIdentity {
        runtime: runtime.to_string(),
        name: (!name.is_empty()).then(|| name.to_string()),
        image: (!config.image.is_empty()).then_some(config.image),
        k8s: k8s_from_labels(|key| labels.get(key).map(String::as_str)),
        declaration: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inspect_answer_gives_name_image_and_kubelet_labels() {
        let body = br#"{"Id":"abc","Name":"/web-1","Config":{"Image":"localhost/bb:1",
            "Labels":{"io.kubernetes.pod.namespace":"ml","io.kubernetes.pod.name":"p"}}}"#;
        let identity = parse(body, "podman").expect("parses");
        assert_eq!(identity.name.as_deref(), Some("web-1"));
        assert_eq!(identity.image.as_deref(), Some("localhost/bb:1"));
        let k8s = identity.k8s.expect("labels");
        assert_eq!(k8s.namespace.as_deref(), Some("ml"));
        assert_eq!(k8s.container, None);
        // No labels at all (podman gives null).
        let bare = parse(
            br#"{"Name":"x","Config":{"Image":"i","Labels":null}}"#,
            "docker",
        )
        .expect("parses");
        assert_eq!(bare.k8s, None);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(
            parse(b"<html>", "docker"),
            Err(LookupError::Malformed(_))
        ));
        assert!(matches!(
            parse(br#"{"Name": 5}"#, "docker"),
            Err(LookupError::Malformed(_))
        ));
    }
}
