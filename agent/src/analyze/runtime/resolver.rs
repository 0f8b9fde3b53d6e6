//! The task that asks the runtimes. It runs beside the pipeline: the
//! pipeline sends it a [`Lookup`] per new container id and reads the
//! [`Resolved`] answers, so a slow or hung runtime costs a lookup timeout
//! here, never a stalled event.

use std::{path::Path, sync::Arc};

use tokio::{
    sync::{mpsc, Semaphore},
    time::error::Elapsed,
};
use tonic::transport::Channel;

use super::{containerd, cri, docker, RuntimeConfig, RuntimeIdentity};
use crate::metrics::{Metrics, RuntimeApi, RuntimeLookupResult};

/// Lookups in flight at once: a burst of new containers at start-up must
/// not open hundreds of connections to the runtime.
const CONCURRENT_LOOKUPS: usize = 8;

/// A question: what is the container with this id?
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lookup {
    pub id: String,
    /// The runtime the cgroup path names, when it names one.
    pub runtime_hint: Option<String>,
}

/// The answer: the identity, or `None` when no runtime knew the id.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub id: String,
    pub identity: Option<Arc<RuntimeIdentity>>,
}

/// What one runtime said.
#[derive(Debug)]
pub(super) enum Answer {
    Found(Box<RuntimeIdentity>),
    NotFound,
}

impl Answer {
    fn found(self) -> Option<Box<RuntimeIdentity>> {
        match self {
            Answer::Found(identity) => Some(identity),
            Answer::NotFound => None,
        }
    }
}

/// Why a runtime did not answer.
#[derive(Debug, thiserror::Error)]
pub(super) enum LookupError {
    #[error("cannot reach {socket}: {source}")]
    Connect {
        socket: String,
        #[source]
        source: std::io::Error,
    },
    #[error("gRPC: {0}")]
    Grpc(#[from] tonic::Status),
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("malformed answer: {0}")]
    Malformed(String),
}

/// The runtimes' connections, shared by the lookups in flight.
pub struct Resolver {
    config: RuntimeConfig,
    metrics: Arc<Metrics>,
    containerd: tokio::sync::Mutex<Option<Channel>>,
    cri: tokio::sync::Mutex<Option<Channel>>,
}

impl Resolver {
    /// The channel the pipeline asks on, the one it reads answers from, and
    /// the task that serves them. Says once, at start, which runtimes are
    /// not there.
    pub fn start(
        config: RuntimeConfig,
        metrics: Arc<Metrics>,
    ) -> (
        mpsc::Sender<Lookup>,
        mpsc::Receiver<Resolved>,
        impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let (ask, mut questions) = mpsc::channel::<Lookup>(config.max_containers.clamp(16, 1_024));
        let (tell, answers) = mpsc::channel::<Resolved>(1_024);
        let mut present = Vec::new();
        let mut absent = Vec::new();
        for socket in config.sockets() {
            if is_socket(socket) {
                present.push(socket.display().to_string());
            } else {
                absent.push(socket.display().to_string());
            }
        }
        if present.is_empty() {
            log::info!(
                "no container runtime socket found ({}): containers are known by their cgroup-derived id until one appears",
                absent.join(", ")
            );
        } else {
            log::info!(
                "container identity from {}{}",
                present.join(", "),
                if absent.is_empty() {
                    String::new()
                } else {
                    format!(" (not there: {})", absent.join(", "))
                }
            );
        }
        let resolver = Arc::new(Resolver {
            config,
            metrics,
            containerd: tokio::sync::Mutex::new(None),
            cri: tokio::sync::Mutex::new(None),
        });
        let task = async move {
            let permits = Arc::new(Semaphore::new(CONCURRENT_LOOKUPS));
            while let Some(lookup) = questions.recv().await {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    break;
                };
                let resolver = resolver.clone();
                let tell = tell.clone();
                tokio::spawn(async move {
                    let identity = resolver.resolve(&lookup).await.map(Arc::new);
                    drop(permit);
                    // The pipeline stopped: nobody waits for the answer.
                    let _ = tell
                        .send(Resolved {
                            id: lookup.id,
                            identity,
                        })
                        .await;
                });
            }
        };
        (ask, answers, task)
    }

    /// Asks the runtimes the cgroup path suggests, in order, until one knows
    /// the id.
    async fn resolve(&self, lookup: &Lookup) -> Option<RuntimeIdentity> {
        let docker_first = matches!(lookup.runtime_hint.as_deref(), Some("podman" | "docker"));
        let order: &[RuntimeApi] = if docker_first {
            &[RuntimeApi::Docker, RuntimeApi::Containerd]
        } else {
            &[RuntimeApi::Containerd, RuntimeApi::Docker]
        };
        for api in order {
            if let Some(mut identity) = self.ask(*api, &lookup.id).await {
                if *api == RuntimeApi::Containerd {
                    // Pod annotations live on the sandbox, which only the
                    // CRI shows.
                    if let Some(declaration) = self.ask_cri(&lookup.id).await {
                        identity.declaration = Some(declaration);
                    }
                }
                return Some(identity);
            }
        }
        None
    }

    /// One runtime's answer, counted; `None` unless it found the id.
    async fn ask(&self, api: RuntimeApi, id: &str) -> Option<RuntimeIdentity> {
        let timeout = self.config.lookup_timeout();
        let outcome = match api {
            RuntimeApi::Containerd => {
                if !is_socket(&self.config.containerd_socket) {
                    return None;
                }
                let asked = async {
                    let channel = self
                        .channel(&self.containerd, &self.config.containerd_socket)
                        .await?;
                    containerd::lookup(channel, &self.config.containerd_namespaces, id).await
                };
                tokio::time::timeout(timeout, asked).await
            }
            RuntimeApi::Docker => {
                let asked = async {
                    let mut answer = Ok(Answer::NotFound);
                    for socket in self.config.docker_sockets.iter().filter(|s| is_socket(s)) {
                        answer = docker::lookup(socket, id).await;
                        if matches!(answer, Ok(Answer::Found(_))) {
                            break;
                        }
                    }
                    answer
                };
                if !self.config.docker_sockets.iter().any(|s| is_socket(s)) {
                    return None;
                }
                tokio::time::timeout(timeout, asked).await
            }
            // The CRI is asked by `ask_cri`, for annotations only.
            RuntimeApi::Cri => return None,
        };
        let timed_out = outcome.is_err();
        let found = self
            .settle(api, outcome.map(|asked| asked.map(Answer::found)))
            .await;
        if timed_out {
            log::debug!("{} lookup of {id} timed out", api.as_str());
        }
        found.map(|identity| *identity)
    }

    /// The workload a CRI pod's annotations declare, if the container is a
    /// CRI pod's and its pod declares one.
    async fn ask_cri(&self, id: &str) -> Option<super::DeclaredWorkload> {
        if !is_socket(&self.config.cri_socket) {
            return None;
        }
        let asked = async {
            let channel = self.channel(&self.cri, &self.config.cri_socket).await?;
            cri::pod_annotations(channel, id).await
        };
        let outcome = tokio::time::timeout(self.config.lookup_timeout(), asked).await;
        let annotations = self.settle(RuntimeApi::Cri, outcome).await?;
        match cri::declaration(id, &annotations) {
            Ok(declaration) => declaration,
            Err(err) => {
                self.metrics.runtime_annotation_invalid();
                log::warn!("container {id}: {err}; the pod declares no workload");
                None
            }
        }
    }

    /// Counts how one lookup of `api` ended (found, not found, failed, timed
    /// out), and drops the connection of a runtime that failed; what it
    /// found, if anything.
    async fn settle<T>(
        &self,
        api: RuntimeApi,
        outcome: Result<Result<Option<T>, LookupError>, Elapsed>,
    ) -> Option<T> {
        match outcome {
            Ok(Ok(Some(found))) => {
                self.metrics.runtime_lookup(api, RuntimeLookupResult::Found);
                Some(found)
            }
            Ok(Ok(None)) => {
                self.metrics
                    .runtime_lookup(api, RuntimeLookupResult::NotFound);
                None
            }
            Ok(Err(err)) => {
                self.failed(api, &err).await;
                None
            }
            Err(_) => {
                self.metrics
                    .runtime_lookup(api, RuntimeLookupResult::Timeout);
                None
            }
        }
    }

    /// Counts a failed lookup and drops the runtime's connection, so the next
    /// lookup connects again (the runtime may have restarted).
    async fn failed(&self, api: RuntimeApi, err: &LookupError) {
        self.metrics.runtime_lookup(api, RuntimeLookupResult::Error);
        log::debug!("{} lookup failed: {err}", api.as_str());
        match api {
            RuntimeApi::Containerd => *self.containerd.lock().await = None,
            RuntimeApi::Cri => *self.cri.lock().await = None,
            RuntimeApi::Docker => {}
        }
    }

    /// The gRPC channel to a socket, connected on first use.
    async fn channel(
        &self,
        slot: &tokio::sync::Mutex<Option<Channel>>,
        socket: &Path,
    ) -> Result<Channel, LookupError> {
        let mut slot = slot.lock().await;
        if let Some(channel) = slot.as_ref() {
            return Ok(channel.clone());
        }
        let channel = containerd_client::connect(socket).await?;
        *slot = Some(channel.clone());
        Ok(channel)
    }
}

/// Whether `path` is a unix socket: a runtime that is not installed may
/// leave an empty folder where a DaemonSet mounts its socket.
fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

impl RuntimeConfig {
    /// Every socket configured, each once.
    fn sockets(&self) -> Vec<&Path> {
        let mut sockets: Vec<&Path> = vec![&self.containerd_socket, &self.cri_socket];
        sockets.extend(self.docker_sockets.iter().map(|s| s.as_path()));
        let mut seen = std::collections::HashSet::new();
        sockets.retain(|s| seen.insert(*s));
        sockets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sockets_count_as_runtimes() {
        let dir = std::env::temp_dir().join(format!("aiwatch-is-socket-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("folder");
        // A folder where a socket should be (an unused DaemonSet mount).
        assert!(!is_socket(&dir));
        assert!(!is_socket(&dir.join("missing.sock")));
        let socket = dir.join("runtime.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind");
        assert!(is_socket(&socket));
        drop(listener);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
