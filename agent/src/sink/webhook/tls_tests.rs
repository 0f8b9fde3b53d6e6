//! The webhook against a real local HTTPS receiver whose CA, server and
//! client certificates are generated here.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
    RootCertStore, ServerConfig, ServerConnection, StreamOwned,
};

use super::*;
use crate::alert::Severity;

fn alert(rule: &str) -> Arc<Alert> {
    Arc::new(Alert::sample(rule, Severity::High))
}

/// PEM files of a fresh CA, a server certificate for 127.0.0.1 and a
/// client certificate, all signed by the CA.
struct Pki {
    dir: tempfile::TempDir,
    ca: String,
    server_cert: String,
    server_key: String,
}

impl Pki {
    fn new() -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf = |name: &str| {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(vec![name.to_owned()])
                .unwrap()
                .signed_by(&key, &ca)
                .unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf("127.0.0.1");
        let (client_cert, client_key) = leaf("aiwatch-agent");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.path().join("client.pem"), client_cert).unwrap();
        std::fs::write(dir.path().join("client.key"), client_key).unwrap();
        Pki {
            dir,
            ca: ca.pem(),
            server_cert,
            server_key,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// One request as the receiver saw it.
#[derive(Debug, Default)]
struct Seen {
    headers: Vec<String>,
    body: String,
}

/// An HTTPS receiver that requires a client certificate signed by the CA,
/// answers 200 and records each request.
fn https_receiver(pki: &Pki) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client_roots = RootCertStore::empty();
    client_roots
        .add(CertificateDer::from_pem_slice(pki.ca.as_bytes()).unwrap())
        .unwrap();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(client_roots), provider.clone())
            .build()
            .unwrap();
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(pki.server_cert.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(pki.server_key.as_bytes()).unwrap(),
        )
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/hook", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let connection = ServerConnection::new(config.clone()).unwrap();
            let mut tls = StreamOwned::new(connection, stream);
            let mut reader = BufReader::new(&mut tls);
            let mut request = Seen::default();
            let mut length = 0;
            loop {
                let mut line = String::new();
                // A failed handshake (the client refused us) ends here.
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                request.headers.push(line.trim_end().to_owned());
            }
            if request.headers.is_empty() {
                continue;
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            request.body = String::from_utf8_lossy(&body).into_owned();
            record.lock().unwrap().push(request);
            let _ = write!(
                tls,
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
            let _ = tls.flush();
        }
    });
    (url, seen)
}

fn tls_config(pki: &Pki, url: String) -> WebhookConfig {
    std::fs::write(pki.path("token"), "Bearer s3cr3t-token\n").unwrap();
    WebhookConfig {
        url,
        flush_ms: 50,
        attempts: 1,
        ca_file: Some(pki.path("ca.pem")),
        client_cert: Some(pki.path("client.pem")),
        client_key: Some(pki.path("client.key")),
        authorization_file: Some(pki.path("token")),
        headers: [("X-Aiwatch-Node".to_owned(), "node-7".to_owned())].into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_over_tls_with_a_client_certificate_and_headers() {
    let pki = Pki::new();
    let (url, seen) = https_receiver(&pki);
    let stats = Arc::new(PipelineStats::new());
    let (tx, task) = spawn(tls_config(&pki, url), stats.clone()).unwrap();
    tx.send(alert("tls.one"), None);
    drop(tx);
    task.await.unwrap();
    assert_eq!(
        stats
            .alerts_dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let headers: Vec<String> = seen[0].headers.iter().map(|h| h.to_lowercase()).collect();
    assert!(
        headers.contains(&"authorization: bearer s3cr3t-token".to_owned()),
        "{headers:?}"
    );
    assert!(
        headers.contains(&"x-aiwatch-node: node-7".to_owned()),
        "{headers:?}"
    );
    assert!(seen[0].body.contains("tls.one"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_ca_is_refused_and_the_loss_counted() {
    let pki = Pki::new();
    let (url, seen) = https_receiver(&pki);
    let stats = Arc::new(PipelineStats::new());
    let config = WebhookConfig {
        ca_file: None,
        ..tls_config(&pki, url)
    };
    let (tx, task) = spawn(config, stats.clone()).unwrap();
    tx.send(alert("tls.untrusted"), None);
    drop(tx);
    task.await.unwrap();
    assert_eq!(
        stats
            .alerts_dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert!(seen.lock().unwrap().is_empty());
}

fn start_error(config: WebhookConfig) -> String {
    match WebhookClient::new(&config) {
        Ok(_) => panic!("{config:?} was accepted"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn clear_text_to_a_remote_host_is_refused_unless_insecure() {
    let remote = |insecure| WebhookConfig {
        url: "http://alerts.example:8080/hook".into(),
        insecure,
        ..Default::default()
    };
    let err = start_error(remote(false));
    assert!(
        err.contains("alerts.example") && err.contains("insecure"),
        "{err}"
    );
    assert!(WebhookClient::new(&remote(true)).is_ok());
    for local in [
        "http://127.0.0.1:9/h",
        "http://localhost/h",
        "http://[::1]:9/h",
    ] {
        let config = WebhookConfig {
            url: local.into(),
            ..Default::default()
        };
        assert!(WebhookClient::new(&config).is_ok(), "{local}");
    }
    let err = start_error(WebhookConfig {
        url: "ftp://alerts.example/".into(),
        ..Default::default()
    });
    assert!(err.contains("not an http"), "{err}");
}

#[test]
fn bad_files_and_headers_are_one_sentence() {
    let pki = Pki::new();
    let base = || tls_config(&pki, "https://127.0.0.1:9/h".into());
    let missing = Path::new("/nonexistent/token");
    let cases = [
        WebhookConfig {
            authorization_file: Some(missing.into()),
            ..base()
        },
        WebhookConfig {
            ca_file: Some(pki.path("client.key")),
            ..base()
        },
        WebhookConfig {
            client_key: None,
            ..base()
        },
        WebhookConfig {
            headers: [("Authorization".to_owned(), "Bearer x".to_owned())].into(),
            ..base()
        },
    ];
    for config in cases {
        let err = start_error(config);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("webhook"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
    }
}
