//! systemd's notify protocol: `READY=1` once the agent sees, and
//! `WATCHDOG=1` for as long as it keeps seeing.
//!
//! A killed agent is restarted by `Restart=on-failure`; a frozen one
//! (SIGSTOP, the cgroup freezer) or one whose reader or pipeline stalls
//! sends no more pings, and systemd kills and restarts it after
//! `WatchdogSec`. Pings stop on a stall judged by the supervisor's watchdog
//! (`observe::supervise`), not on a degraded sink: a restart would not fix
//! a dead webhook endpoint. Without `NOTIFY_SOCKET` (not under systemd with
//! `Type=notify`) this does nothing.

use std::{
    os::unix::net::{SocketAddr, UnixDatagram},
    sync::Arc,
    time::Duration,
};

use tokio::{sync::watch, task::JoinHandle};

use crate::observe::{
    readiness::{NotReady, Readiness},
    supervise::{Criticality, Supervisor},
};

/// A connection to the service manager's notification socket.
pub struct Notifier {
    socket: UnixDatagram,
    address: SocketAddr,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` (a path, or `@name` for an abstract socket).
    pub fn from_env() -> Option<Notifier> {
        let target = std::env::var("NOTIFY_SOCKET").ok()?;
        let address = match target.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name.as_bytes()).ok()?
            }
            None => SocketAddr::from_pathname(&target).ok()?,
        };
        let socket = UnixDatagram::unbound().ok()?;
        socket.set_nonblocking(true).ok()?;
        Some(Notifier { socket, address })
    }

    pub fn send(&self, state: &str) {
        if let Err(err) = self.socket.send_to_addr(state.as_bytes(), &self.address) {
            log::debug!("sd_notify {state}: {err}");
        }
    }
}

/// The watchdog interval systemd asked for (`WATCHDOG_USEC`), if it is
/// meant for this process (`WATCHDOG_PID`, when set).
pub fn watchdog_interval() -> Option<Duration> {
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Whether the agent still sees: no stalled reader or pipeline. Failed
/// secondary tasks (a sink) do not stop the pings.
pub fn seeing(readiness: &Readiness) -> bool {
    !matches!(
        readiness.check(),
        Err(NotReady::TasksStalled { .. }) | Err(NotReady::Stalled { .. })
    )
}

/// Says `READY=1` and, when systemd wants a watchdog, pings at half its
/// interval while the agent sees. Says `STOPPING=1` at shutdown.
pub fn start(
    supervisor: &Supervisor,
    readiness: Arc<Readiness>,
    mut shutdown: watch::Receiver<bool>,
) -> Option<JoinHandle<Option<()>>> {
    let notifier = Notifier::from_env()?;
    notifier.send("READY=1");
    let interval = watchdog_interval();
    Some(
        supervisor.spawn("sd_notify", Criticality::Degrading, async move {
            let mut tick =
                tokio::time::interval(interval.map_or(Duration::from_secs(3600), |i| i / 2));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if interval.is_some() && seeing(&readiness) {
                            notifier.send("WATCHDOG=1");
                        }
                    }
                    _ = shutdown.changed() => break,
                }
            }
            notifier.send("STOPPING=1");
        }),
    )
}
