//! The webhook's HTTP client, checked and built once at start-up.
//!
//! Alerts name processes, files and peers of the host, so they travel over
//! TLS: rustls, trusting the system's roots plus an optional CA file, with an
//! optional client certificate. Clear `http://` is accepted only to a
//! loopback address (a local relay), or anywhere with `insecure: true`.
//! Extra headers are configured; the `Authorization` value is read from a
//! file so that it stays out of the configuration, the process list and the
//! logs. Every problem here stops start-up with one sentence.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// `https://` URL the batches are POSTed to (`http://` only to loopback,
    /// unless `insecure`).
    pub url: String,
    /// Alerts per POST at most.
    pub batch_max: usize,
    /// A partial batch is sent after this many milliseconds.
    pub flush_ms: u64,
    /// Alerts waiting at most; more are dropped and counted.
    pub queue: usize,
    /// Attempts per batch, the first included.
    pub attempts: u32,
    /// Delay before the first retry; doubles each time.
    pub backoff_ms: u64,
    /// Per-request timeout.
    pub timeout_ms: u64,
    /// PEM file of CA certificates trusted on top of the system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain presented to the server (with `client_key`).
    pub client_cert: Option<PathBuf>,
    /// PEM private key of `client_cert`.
    pub client_key: Option<PathBuf>,
    /// Extra request headers (`Authorization` goes in `authorization_file`).
    pub headers: BTreeMap<String, String>,
    /// A file whose content (trimmed) is the `Authorization` header,
    /// e.g. `Bearer <token>`. Read at start-up.
    pub authorization_file: Option<PathBuf>,
    /// Allow `http://` to a host that is not loopback.
    pub insecure: bool,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            batch_max: 100,
            flush_ms: 1_000,
            queue: 10_000,
            attempts: 5,
            backoff_ms: 500,
            timeout_ms: 5_000,
            ca_file: None,
            client_cert: None,
            client_key: None,
            headers: BTreeMap::new(),
            authorization_file: None,
            insecure: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook.url `{0}` is not an http:// or https:// URL")]
    Url(String),
    #[error("webhook.url sends alerts in clear text to {0}, which is not loopback: use https://, or set webhook.insecure: true")]
    ClearText(String),
    #[error("webhook: cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("webhook: {what} {path} holds no {expected}")]
    Pem {
        what: &'static str,
        path: String,
        expected: &'static str,
    },
    #[error("webhook: client_cert and client_key go together")]
    ClientPair,
    #[error("webhook.headers: `{0}` is not a valid header; put Authorization in webhook.authorization_file")]
    Header(String),
}

/// A checked webhook: the agent and the headers of every POST.
pub struct WebhookClient {
    pub agent: ureq::Agent,
    pub headers: Vec<(String, String)>,
}

impl WebhookClient {
    pub fn new(config: &WebhookConfig) -> Result<WebhookClient, WebhookError> {
        check_url(config)?;
        let mut headers = Vec::new();
        for (name, value) in &config.headers {
            let valid = ureq::http::HeaderName::try_from(name.as_str()).is_ok()
                && ureq::http::HeaderValue::try_from(value.as_str()).is_ok();
            if !valid || name.eq_ignore_ascii_case("authorization") {
                return Err(WebhookError::Header(name.clone()));
            }
            headers.push((name.clone(), value.clone()));
        }
        if let Some(path) = &config.authorization_file {
            let value = read(path, "the authorization file")?;
            let value = String::from_utf8_lossy(&value).trim().to_owned();
            if value.is_empty() || ureq::http::HeaderValue::try_from(value.as_str()).is_err() {
                return Err(WebhookError::Pem {
                    what: "the authorization file",
                    path: path.display().to_string(),
                    expected: "header value on one line",
                });
            }
            headers.push(("authorization".into(), value));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(config.timeout_ms)))
            .http_status_as_error(true)
            .tls_config(tls_config(config)?)
            .build()
            .into();
        Ok(WebhookClient { agent, headers })
    }
}

/// `https://` anywhere; `http://` to loopback, or with `insecure`.
fn check_url(config: &WebhookConfig) -> Result<(), WebhookError> {
    let uri: ureq::http::Uri = config
        .url
        .parse()
        .map_err(|_| WebhookError::Url(config.url.clone()))?;
    let host = uri
        .host()
        .ok_or_else(|| WebhookError::Url(config.url.clone()))?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if config.insecure || is_loopback(host) => Ok(()),
        Some("http") => Err(WebhookError::ClearText(host.to_owned())),
        _ => Err(WebhookError::Url(config.url.clone())),
    }
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

fn tls_config(config: &WebhookConfig) -> Result<TlsConfig, WebhookError> {
    let mut roots: Vec<Certificate<'static>> = Vec::new();
    let system = rustls_native_certs::load_native_certs();
    roots.extend(
        system
            .certs
            .into_iter()
            .map(|der| Certificate::from_der(der.as_ref()).to_owned()),
    );
    if let Some(path) = &config.ca_file {
        let extra = certificates(path, "webhook.ca_file")?;
        roots.extend(extra);
    }
    if roots.is_empty() && config.url.starts_with("https") {
        log::warn!(
            "webhook: no system CA certificates found and no ca_file: every TLS handshake will fail"
        );
    }
    let client_cert = match (&config.client_cert, &config.client_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => {
            let chain = certificates(cert, "webhook.client_cert")?;
            Some(ClientCert::new_with_certs(&chain, private_key(key)?))
        }
        _ => return Err(WebhookError::ClientPair),
    };
    Ok(TlsConfig::builder()
        .root_certs(RootCerts::new_with_certs(&roots))
        .client_cert(client_cert)
        .build())
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, WebhookError> {
    std::fs::read(path).map_err(|source| WebhookError::Read {
        what,
        path: path.display().to_string(),
        source,
    })
}

fn certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<Certificate<'static>>, WebhookError> {
    let pem = read(path, what)?;
    let certs: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(cert)) => Some(cert.to_owned()),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(WebhookError::Pem {
            what,
            path: path.display().to_string(),
            expected: "PEM certificate",
        });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKey<'static>, WebhookError> {
    let pem = read(path, "webhook.client_key")?;
    let key = ureq::tls::parse_pem(&pem).find_map(|item| match item {
        Ok(PemItem::PrivateKey(key)) => Some(key.to_owned()),
        _ => None,
    });
    key.ok_or_else(|| WebhookError::Pem {
        what: "webhook.client_key",
        path: path.display().to_string(),
        expected: "PEM private key",
    })
}
