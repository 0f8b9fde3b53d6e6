//! Who gets served: per-client limits and a reserved slot for monitoring.
//!
//! A flood of slow clients must not starve `/healthz`, `/readyz` or
//! `/metrics`: a kubelet that cannot probe restarts a healthy agent, and a
//! Prometheus that cannot scrape sees nothing. So:
//! - each client address holds at most `per_client` of the general slots,
//!   which serve every path with the normal timeouts;
//! - a connection that finds no general slot, or whose address is over its
//!   share, is still accepted, without waiting behind anyone, as a
//!   *monitoring* connection: it serves only the monitoring paths and is
//!   cut if its request is not in within a second. A probe or a scrape
//!   sends its request at once and is answered; a slow client is gone in a
//!   second and never holds a general slot;
//! - past a hard cap on open connections, new ones are closed at once, so
//!   the flood costs file descriptors only up to that cap.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Limits on the listener's connections.
#[derive(Clone, Debug)]
pub struct AdmissionLimits {
    /// General slots, shared by every path.
    pub general: usize,
    /// General slots one client address may hold at once.
    pub per_client: usize,
    /// Time a monitoring connection has to send its request headers.
    pub monitoring_header_timeout: Duration,
    /// Open connections at most, waiting ones included.
    pub max_open: usize,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        Self {
            general: 32,
            per_client: 8,
            monitoring_header_timeout: Duration::from_secs(1),
            max_open: 1024,
        }
    }
}

/// The slot a connection got.
pub enum Slot {
    /// Any path, the normal timeouts.
    General {
        _permit: OwnedSemaphorePermit,
        _client: ClientShare,
    },
    /// Monitoring paths only, a short header timeout.
    Monitoring,
}

impl Slot {
    pub fn monitoring_only(&self) -> bool {
        matches!(self, Slot::Monitoring)
    }
}

/// Shared admission state.
pub struct Admission {
    limits: AdmissionLimits,
    general: Arc<Semaphore>,
    per_client: Arc<Mutex<HashMap<IpAddr, usize>>>,
    open: Arc<AtomicUsize>,
}

/// One open connection, counted until dropped.
pub struct OpenConnection(Arc<AtomicUsize>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A client's hold on one of its general slots.
pub struct ClientShare {
    ip: IpAddr,
    table: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for ClientShare {
    fn drop(&mut self) {
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = table.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                table.remove(&self.ip);
            }
        }
    }
}

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Self {
        Self {
            general: Arc::new(Semaphore::new(limits.general.max(1))),
            per_client: Arc::default(),
            open: Arc::default(),
            limits,
        }
    }

    pub fn limits(&self) -> &AdmissionLimits {
        &self.limits
    }

    /// Counts a just-accepted connection; `None` past the hard cap (close it).
    pub fn open(&self) -> Option<OpenConnection> {
        let before = self.open.fetch_add(1, Ordering::Relaxed);
        let connection = OpenConnection(self.open.clone());
        (before < self.limits.max_open).then_some(connection)
    }

    /// The slot for a connection from `ip`; never waits.
    pub fn admit(&self, ip: IpAddr) -> Slot {
        if let Some(share) = self.client_share(ip) {
            if let Ok(permit) = self.general.clone().try_acquire_owned() {
                return Slot::General {
                    _permit: permit,
                    _client: share,
                };
            }
        }
        Slot::Monitoring
    }

    fn client_share(&self, ip: IpAddr) -> Option<ClientShare> {
        let mut table = self.per_client.lock().unwrap_or_else(|e| e.into_inner());
        let count = table.entry(ip).or_insert(0);
        if *count >= self.limits.per_client {
            return None;
        }
        *count += 1;
        Some(ClientShare {
            ip,
            table: self.per_client.clone(),
        })
    }
}
