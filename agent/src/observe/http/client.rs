//! Talking to a running agent's listener, for `aiwatch inventory` and
//! `aiwatch top`.

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
    #[error("the agent at {addr} sent a body that cannot be read: {reason}")]
    Body { addr: SocketAddr, reason: String },
}

/// GETs `path` and returns the body as text.
pub fn get_text(addr: SocketAddr, path: &str, timeout: Duration) -> Result<String, ClientError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
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
    response
        .body_mut()
        .with_config()
        // The inventory of a busy node is large; the agent bounds it.
        .limit(64 * 1024 * 1024)
        .read_to_string()
        .map_err(|err| ClientError::Body {
            addr,
            reason: err.to_string(),
        })
}

/// GETs `path` and returns the JSON body, pretty-printed.
pub fn get_json(addr: SocketAddr, path: &str) -> Result<String, ClientError> {
    let body = get_text(addr, path, Duration::from_secs(10))?;
    let not_json = |err: serde_json::Error| ClientError::NotJson {
        addr,
        reason: err.to_string(),
    };
    let body: serde_json::Value = serde_json::from_str(&body).map_err(not_json)?;
    serde_json::to_string_pretty(&body).map_err(not_json)
}
