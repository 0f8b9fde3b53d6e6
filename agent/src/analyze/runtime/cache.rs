//! What the pipeline knows about each container id: pending, known, or
//! unknown to every runtime. Bounded (least recently used goes first, each
//! eviction counted); a container seen again after its eviction is asked
//! about again.

use std::{num::NonZeroUsize, sync::Arc, time::Duration, time::Instant};

use lru::LruCache;
use tokio::sync::mpsc;

use super::{Lookup, RuntimeIdentity};
use crate::event::{Container, K8s};

/// One container id's state.
#[derive(Clone, Debug)]
pub enum IdentityState {
    /// Asked at `since`; no answer yet.
    Pending {
        since: Instant,
    },
    Known(Arc<RuntimeIdentity>),
    /// No runtime knew it, or none could be asked: the cgroup-derived id is
    /// all there is.
    Unknown,
}

/// The bounded cache of container identities, and the way to ask for one.
#[derive(Debug)]
pub struct IdentityCache {
    entries: LruCache<String, IdentityState>,
    /// `None` when runtimes are not asked (`container_runtimes.enabled`).
    requests: Option<mpsc::Sender<Lookup>>,
    /// Past this, a pending id counts as unknown: its answer is overdue.
    hold: Duration,
    evicted: u64,
    /// Lookups not asked because the resolver's queue was full (each is
    /// asked again at the container's next event).
    unasked: u64,
}

impl IdentityCache {
    pub fn new(capacity: usize, hold: Duration, requests: Option<mpsc::Sender<Lookup>>) -> Self {
        IdentityCache {
            entries: LruCache::new(NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN)),
            requests,
            hold,
            evicted: 0,
            unasked: 0,
        }
    }

    /// A cache that never asks: every container stays cgroup-derived.
    pub fn disabled() -> Self {
        IdentityCache::new(1, Duration::ZERO, None)
    }

    /// Notes container `id`, asking the runtimes on first sight. When the
    /// resolver is behind (its queue is full) the id is left unknown to
    /// the cache, so that its next event asks again.
    pub fn observe(&mut self, id: &str, runtime_hint: Option<&str>) {
        if self.entries.get(id).is_some() {
            return;
        }
        let Some(requests) = &self.requests else {
            self.insert(id.to_string(), IdentityState::Unknown);
            return;
        };
        let lookup = Lookup {
            id: id.to_string(),
            runtime_hint: runtime_hint.map(str::to_string),
        };
        match requests.try_send(lookup) {
            Ok(()) => self.insert(
                id.to_string(),
                IdentityState::Pending {
                    since: Instant::now(),
                },
            ),
            Err(_) => self.unasked += 1,
        }
    }

    /// An answer arrived.
    pub fn resolved(&mut self, id: &str, identity: Option<Arc<RuntimeIdentity>>) {
        let state = match identity {
            Some(identity) => IdentityState::Known(identity),
            None => IdentityState::Unknown,
        };
        self.insert(id.to_string(), state);
    }

    /// Whether `id`'s identity was asked for and may still arrive in time.
    pub fn is_pending(&self, id: &str) -> bool {
        matches!(self.entries.peek(id), Some(IdentityState::Pending { since }) if since.elapsed() < self.hold)
    }

    pub fn known(&self, id: &str) -> Option<&Arc<RuntimeIdentity>> {
        match self.entries.peek(id) {
            Some(IdentityState::Known(identity)) => Some(identity),
            _ => None,
        }
    }

    /// Fills the runtime's answer into an event's container and `k8s`.
    pub fn fill(&self, container: &mut Container, k8s: &mut Option<K8s>) {
        let Some(identity) = container.id.as_deref().and_then(|id| self.known(id)) else {
            return;
        };
        container.runtime = Some(identity.runtime.clone());
        container.name.clone_from(&identity.name);
        container.image.clone_from(&identity.image);
        if let Some(found) = &identity.k8s {
            if container.pod_uid.is_none() {
                container.pod_uid.clone_from(&found.pod_uid);
            }
            *k8s = Some(found.clone());
        }
    }

    /// Identities evicted to stay within the bound, since start-up.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Lookups skipped because the resolver was behind, since start-up.
    pub fn unasked(&self) -> u64 {
        self.unasked
    }

    fn insert(&mut self, id: String, state: IdentityState) {
        if let Some((old, _)) = self.entries.push(id.clone(), state) {
            if old != id {
                self.evicted += 1;
            }
        }
    }
}
