//! Container identity from the container runtime: name, image and the
//! Kubernetes pod a container belongs to, and the workload its pod's
//! annotations declare.
//!
//! The cgroup path gives a container id (`workload::container`); this module
//! asks the runtime that owns the id what it is. The questions go to a task
//! of their own ([`Resolver`]), never the pipeline's: the pipeline asks once
//! per new container id through a bounded channel and reads the answers from
//! another, and keeps them in a bounded cache ([`IdentityCache`]). The
//! runtimes asked, in order, depend on what the cgroup path says:
//!
//! - containerd (`containerd.rs`): its containers API, in the namespaces
//!   configured (`k8s.io`, where the kubelet's containers live, and
//!   `default`); the kubelet's labels give the pod and the container name.
//! - the CRI (`cri.rs`), containerd's CRI plugin on the same socket: the pod
//!   sandbox's annotations `aiwatch.io/workload` and `aiwatch.io/kind`
//!   declare the workload, as a declaration in the configuration does.
//! - the Docker-compatible API (`docker.rs`) that podman and Docker serve.
//!
//! A runtime that is not there costs one log line, and events keep the
//! cgroup-derived id. Events of a container whose identity is pending are
//! held for a bounded time (`hold.rs`), so that rules on `k8s.*` fields see
//! the first exec in a new container.

mod cache;
mod containerd;
mod cri;
mod docker;
mod resolver;

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use crate::{analyze::workload::DeclaredWorkload, event::K8s};

pub use cache::{IdentityCache, IdentityState};
pub use resolver::{Lookup, Resolved, Resolver};

/// The longest Kubernetes name (a DNS subdomain).
const MAX_K8S_NAME: usize = 253;

/// Pod annotation naming the workload a pod's containers belong to.
pub const WORKLOAD_ANNOTATION: &str = "aiwatch.io/workload";
/// Pod annotation giving that workload's kind.
pub const KIND_ANNOTATION: &str = "aiwatch.io/kind";

/// The `container_runtimes:` section of the configuration.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Ask the runtimes at all; off, events carry the cgroup-derived id only.
    pub enabled: bool,
    /// containerd's API socket; its CRI plugin answers on the same one.
    pub containerd_socket: PathBuf,
    /// containerd namespaces searched for a container id, in order.
    pub containerd_namespaces: Vec<String>,
    /// The CRI socket (pod annotations); usually containerd's.
    pub cri_socket: PathBuf,
    /// Docker-compatible API sockets (podman, Docker), tried in order.
    pub docker_sockets: Vec<PathBuf>,
    /// How long one runtime may take to answer, in milliseconds.
    pub lookup_timeout_ms: u64,
    /// Container identities kept; past it the least recently used goes.
    pub max_containers: usize,
    /// How long a container's events wait for its identity, in milliseconds.
    pub hold_ms: u64,
    /// Events held at most, all containers together; past it the oldest
    /// goes on without its identity.
    pub hold_max_events: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            enabled: true,
            containerd_socket: PathBuf::from("/run/containerd/containerd.sock"),
            containerd_namespaces: vec!["k8s.io".into(), "default".into()],
            cri_socket: PathBuf::from("/run/containerd/containerd.sock"),
            // podman's system service, then Docker's.
            docker_sockets: vec![
                PathBuf::from("/run/podman/podman.sock"),
                PathBuf::from("/var/run/docker.sock"),
            ],
            // A local runtime answers in milliseconds; a hung one must not
            // hold events for long.
            lookup_timeout_ms: 1_000,
            max_containers: 4_096,
            // Long enough for a loaded runtime to answer, short enough that
            // a held alert is still news.
            hold_ms: 2_000,
            hold_max_events: 4_096,
        }
    }
}

impl RuntimeConfig {
    pub fn lookup_timeout(&self) -> Duration {
        Duration::from_millis(self.lookup_timeout_ms.max(1))
    }

    pub fn hold(&self) -> Duration {
        Duration::from_millis(self.hold_ms)
    }
}

/// What a runtime said about a container.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuntimeIdentity {
    /// `containerd`, `podman` or `docker`: the runtime that answered.
    pub runtime: String,
    pub name: Option<String>,
    pub image: Option<String>,
    /// From the kubelet's labels, when the container is a pod's.
    pub k8s: Option<K8s>,
    /// The workload the pod's annotations declare.
    pub declaration: Option<DeclaredWorkload>,
}

/// The Kubernetes identity in a kubelet's container labels (or a CRI
/// container's), if they carry any.
pub fn k8s_from_labels<'a>(label: impl Fn(&str) -> Option<&'a str>) -> Option<K8s> {
    // Kubernetes names and uids are at most 253 bytes; a longer value is not
    // the kubelet's (anyone can label a container) and would only bloat
    // events and the pod series.
    let owned = |key: &str| {
        label(key)
            .filter(|v| !v.is_empty() && v.len() <= MAX_K8S_NAME)
            .map(str::to_string)
    };
    let k8s = K8s {
        namespace: owned("io.kubernetes.pod.namespace"),
        pod: owned("io.kubernetes.pod.name"),
        pod_uid: owned("io.kubernetes.pod.uid"),
        container: owned("io.kubernetes.container.name"),
    };
    (k8s != K8s::default()).then_some(k8s)
}

#[cfg(test)]
mod tests;
