//! Talking to a running agent's listener, for `aiwatch inventory`.

use std::{net::SocketAddr, time::Duration};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the aiwatch agent at {addr} (is `aiwatch run` running and listening there?): {reason}")]
    Unreachable { addr: SocketAddr, reason: String },
    #[error("the agent at {addr} answered {path} with HTTP {status}")]
    Status {
        addr: SocketAddr,
        path: String,
        status: u16,
    },
    #[error("the agent at {addr} sent a body that is not JSON: {reason}")]
    NotJson { addr: SocketAddr, reason: String },
}

/// GETs `path` and returns the JSON body, pretty-printed.
pub fn get_json(addr: SocketAddr, path: &str) -> Result<String, ClientError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .get(&format!("http://{addr}{path}"))
        .call()
        .map_err(|err| ClientError::Unreachable {
            addr,
            reason: err.to_string(),
        })?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(ClientError::Status {
            addr,
            path: path.to_owned(),
            status,
        });
    }
    let body: serde_json::Value =
        response
            .body_mut()
            .read_json()
            .map_err(|err| ClientError::NotJson {
                addr,
                reason: err.to_string(),
            })?;
    serde_json::to_string_pretty(&body).map_err(|err| ClientError::NotJson {
        addr,
        reason: err.to_string(),
    })
}
