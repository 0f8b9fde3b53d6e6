//! Periodic summaries of long-lived TCP connections.
//!
//! The kernel reports a connection's byte totals when it closes. For
//! connections that stay open, every `tcp_summary_interval_secs` this task
//! runs the `iter/tcp` program once over the TCP sockets of the agent's
//! network namespace: it copies `bytes_acked`, `bytes_received` and the
//! endpoints into the socket's `TCP_OWNERS` entry. The task then walks that
//! map and sends one `tcp_summary` with `closed: false` per refreshed entry
//! into the pipeline's queue, attributed to the stored owner.
//!
//! Why an iterator: it costs nothing between reports (no probe per send or
//! receive), reads the live counters instead of the ones seen at the last
//! state change, and one run visits every socket in one pass. Its limit:
//! it walks the agent's own network namespace only; connections of other
//! namespaces are reported at close, not periodically.
//!
//! Each round attaches the program (a link), turns the link into the
//! iterator's file and reads it to the end: aya's `IterLink::into_file`
//! consumes the link, so the program is reached through the shared `Ebpf`
//! object every round (the TLS capture attaches uprobes through the same
//! object after start-up).

use std::{
    io::Read,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use aiwatch_common::{EventKind, TcpOwner};
use aya::{
    maps::{HashMap, MapData},
    programs::{links::LinkError, Iter, ProgramError},
    Btf, Ebpf,
};
use tokio::sync::watch;

use crate::{
    clock::now_boot_ns,
    ingest::{
        decode::{self, net::open_connection, Common, Payload, Record},
        queue::RecordSender,
    },
};

/// The names the kernel object gives them (`ebpf/src/probes/net.rs`).
const ITER_PROGRAM: &str = "tcp_owners_refresh";
const OWNERS_MAP: &str = "TCP_OWNERS";

#[derive(Debug, thiserror::Error)]
pub enum SummaryError {
    #[error("the kernel programs lack {0}")]
    Missing(&'static str),
    #[error("cannot load the TCP iterator: {0}")]
    Program(#[from] ProgramError),
    #[error("cannot read the kernel BTF for the TCP iterator: {0}")]
    Btf(#[from] aya::BtfError),
    #[error("the TCP owner map has an unexpected type: {0}")]
    Map(#[from] aya::maps::MapError),
    #[error("cannot create the TCP iterator: {0}")]
    Link(#[from] LinkError),
    #[error("cannot read the TCP iterator: {0}")]
    Io(#[from] std::io::Error),
}

/// What the periodic task owns: the owner map, and a share of the `Ebpf`
/// object that holds the iterator program.
pub struct PeriodicSummaries {
    ebpf: Arc<Mutex<Ebpf>>,
    owners: HashMap<MapData, u64, TcpOwner>,
    interval: Duration,
}

impl PeriodicSummaries {
    /// Loads the iterator program and takes the owner map out of `ebpf`.
    pub fn setup(ebpf: Arc<Mutex<Ebpf>>, interval: Duration) -> Result<Self, SummaryError> {
        let owners = {
            let mut guard = ebpf.lock().unwrap_or_else(PoisonError::into_inner);
            let program: &mut Iter = guard
                .program_mut(ITER_PROGRAM)
                .ok_or(SummaryError::Missing(ITER_PROGRAM))?
                .try_into()?;
            program.load("tcp", &Btf::from_sys_fs()?)?;
            let map = guard
                .take_map(OWNERS_MAP)
                .ok_or(SummaryError::Missing(OWNERS_MAP))?;
            HashMap::try_from(map)?
        };
        Ok(Self {
            ebpf,
            owners,
            interval,
        })
    }

    /// Reports open connections every interval until `shutdown`.
    pub async fn run(
        self,
        queue: RecordSender,
        stats: std::sync::Arc<crate::metrics::pipeline_stats::PipelineStats>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            match self.report(&queue, &stats) {
                Ok(sent) => log::debug!("periodic TCP summaries: {sent} open connections"),
                Err(err) => log::warn!("periodic TCP summaries skipped: {err}"),
            }
        }
    }

    /// One round: refresh the counters, then send a summary per connection
    /// the iterator saw in this round.
    /// A summary the full queue has no room for is dropped and counted.
    pub fn report(
        &self,
        queue: &RecordSender,
        stats: &crate::metrics::pipeline_stats::PipelineStats,
    ) -> Result<usize, SummaryError> {
        let round_start = now_boot_ns();
        self.refresh()?;
        let mut sent = 0;
        for entry in self.owners.iter() {
            let Ok((_, owner)) = entry else {
                // The entry was removed (closed) while walking: skip it.
                continue;
            };
            if owner.refreshed_ktime_ns < round_start {
                continue;
            }
            if queue.send_or_count(summary_record(&owner, now_boot_ns()), stats) {
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// Runs the iterator program once over every TCP socket.
    fn refresh(&self) -> Result<(), SummaryError> {
        let link = {
            let mut ebpf = self.ebpf.lock().unwrap_or_else(PoisonError::into_inner);
            let program: &mut Iter = ebpf
                .program_mut(ITER_PROGRAM)
                .ok_or(SummaryError::Missing(ITER_PROGRAM))?
                .try_into()?;
            let id = program.attach()?;
            program.take_link(id)?
        };
        let mut file = link.into_file()?;
        // The program writes nothing; reading to the end runs it.
        let mut sink = Vec::new();
        file.read_to_end(&mut sink)?;
        Ok(())
    }
}

/// The record the pipeline sees for one open connection.
pub fn summary_record(owner: &TcpOwner, now_ns: u64) -> Record {
    Record {
        common: Common {
            kind: EventKind::TcpSummary,
            flags: 0,
            ktime_ns: now_ns,
            pid: owner.pid,
            tid: owner.pid,
            uid: owner.uid,
            gid: owner.gid,
            cgroup_id: owner.cgroup_id,
            comm: decode::c_string(&owner.comm),
        },
        payload: Payload::TcpSummary(open_connection(owner)),
    }
}

#[cfg(test)]
mod tests {
    use aiwatch_common::{SockAddr, TCP_OWNER_ACTIVE};

    use super::*;

    #[test]
    fn open_connections_become_records_of_their_owner() {
        let mut comm = [0u8; 16];
        comm[..6].copy_from_slice(b"python");
        let mut remote = SockAddr {
            family: 2,
            port: 443,
            _pad: 0,
            addr: [0; 16],
        };
        remote.addr[..4].copy_from_slice(&[10, 1, 2, 3]);
        let owner = TcpOwner {
            pid: 4242,
            uid: 1000,
            gid: 1000,
            flags: TCP_OWNER_ACTIVE,
            cgroup_id: 9,
            comm,
            opened_ktime_ns: 5,
            refreshed_ktime_ns: 6,
            // The active opener's SYN is in the kernel's total.
            bytes_sent: 3001,
            bytes_received: 700,
            local: SockAddr {
                family: 2,
                port: 50000,
                _pad: 0,
                addr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            },
            remote,
            netns: 4026531840,
            _pad: 0,
        };
        let record = summary_record(&owner, 77);
        assert_eq!(record.common.kind, EventKind::TcpSummary);
        assert_eq!(
            (record.common.pid, record.common.comm.as_str()),
            (4242, "python")
        );
        assert_eq!(record.common.ktime_ns, 77);
        let Payload::TcpSummary(summary) = record.payload else {
            panic!("not a summary");
        };
        assert!(!summary.closed);
        assert_eq!((summary.bytes_sent, summary.bytes_received), (3000, 700));
        assert_eq!(summary.remote, Some("10.1.2.3:443".parse().unwrap()));
    }
}
