//! Processes that were running before the agent started. Their exec, model
//! opens and listens happened while nobody watched, so discovery learns
//! about them from `/proc`: their command line (as if just executed), the
//! libraries they map, and the TCP sockets they listen on. Without this, a
//! model server started before aiwatch (or running across an agent restart)
//! would never become a workload.

use std::collections::HashMap;

use procfs::net::TcpState;
use procfs::process::{FDTarget, Process};

use super::Analyzer;
use crate::{
    analyze::workload::{ProcessFacts, WorkloadChange},
    enrich::process::ProcessEntry,
};

/// Listening TCP sockets by socket inode → port, per network namespace.
type ListenersByNetns = HashMap<u64, HashMap<u64, u16>>;

impl Analyzer {
    /// Introduces already-running processes to workload discovery, parents
    /// first so children inherit. Returns the resulting changes, for the
    /// kernel's tracking maps.
    pub fn seed_running(&mut self, processes: &[ProcessEntry]) -> Vec<WorkloadChange> {
        let mut sorted: Vec<&ProcessEntry> = processes
            .iter()
            .filter(|p| !p.exe.is_empty() && p.exited_ns.is_none())
            .collect();
        sorted.sort_by_key(|p| (p.start_ns, p.pid));
        let mut listeners = ListenersByNetns::new();
        let mut changes = Vec::new();
        for process in sorted {
            let pid = process.pid;
            let (container, _) = self.container_of(process.cgroup_id, pid);
            let facts = ProcessFacts {
                exe: process.exe.to_string(),
                argv: process.argv.to_vec(),
                cgroup: container
                    .as_ref()
                    .map(|c| c.cgroup.clone())
                    .unwrap_or_default(),
                container_id: container.and_then(|c| c.id),
                ppid: Some(process.ppid),
            };
            changes.extend(self.workloads.on_exec(pid, facts));
            changes.extend(self.scan_now(pid, false));
            for port in listening_ports(pid, &mut listeners) {
                changes.extend(self.workloads.on_listen(pid, port));
            }
        }
        changes
    }
}

/// The TCP ports process `pid` listens on, read from its socket fds and
/// its network namespace's socket tables.
fn listening_ports(pid: u32, cache: &mut ListenersByNetns) -> Vec<u16> {
    let Ok(process) = Process::new(pid as i32) else {
        return Vec::new();
    };
    let Ok(fds) = process.fd() else {
        return Vec::new();
    };
    let sockets: Vec<u64> = fds
        .filter_map(Result::ok)
        .filter_map(|fd| match fd.target {
            FDTarget::Socket(inode) => Some(inode),
            _ => None,
        })
        .collect();
    if sockets.is_empty() {
        return Vec::new();
    }
    let netns = std::fs::metadata(format!("/proc/{pid}/ns/net"))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap_or(0);
    let table = cache.entry(netns).or_insert_with(|| {
        let mut table = HashMap::new();
        let entries = process
            .tcp()
            .unwrap_or_default()
            .into_iter()
            .chain(process.tcp6().unwrap_or_default());
        for entry in entries.filter(|e| e.state == TcpState::Listen) {
            table.insert(entry.inode, entry.local_address.port());
        }
        table
    });
    let mut ports: Vec<u16> = sockets
        .iter()
        .filter_map(|inode| table.get(inode).copied())
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::workload::{classify::LibraryRule, ClassifierConfig, WorkloadKind};
    use crate::analyze::WorkloadsConfig;

    #[test]
    fn a_running_process_is_discovered_from_its_maps_and_listening_sockets() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        // libc counts as an inference runtime here: 8, short of the
        // threshold of 10 until the listening socket (2) is found.
        let config = WorkloadsConfig {
            discovery: ClassifierConfig {
                libraries: vec![LibraryRule {
                    pattern: "**/libc.so*".into(),
                    family: "test-runtime".into(),
                    weight: 8,
                    kind: Some(WorkloadKind::Inference),
                }],
                ..ClassifierConfig::default()
            },
            declared: Vec::new(),
        };
        let mut analyzer = Analyzer::new(&config).expect("analyzer");
        let pid = std::process::id();
        let me = crate::enrich::procfs_seed::read_process(pid).expect("own /proc entry");
        let changes = analyzer.seed_running(&[me]);
        assert!(
            changes
                .iter()
                .any(|c| matches!(c, WorkloadChange::Joined { pid: p, .. } if *p == pid)),
            "{changes:?}"
        );
        let info = analyzer
            .workloads
            .workloads()
            .into_iter()
            .find(|w| w.pids.contains(&pid))
            .expect("a workload with this process");
        assert_eq!(info.workload.kind.as_str(), "inference");
        let reasons = info.reasons.join("; ");
        assert!(reasons.contains("maps library test-runtime"), "{reasons}");
        // Tests run in parallel in this process: its listening sockets
        // include other tests', and discovery names the first it finds.
        assert!(reasons.contains("listens on socket (port "), "{reasons}");
        drop(listener);
    }

    #[test]
    fn a_listening_socket_of_this_process_is_found() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let mut cache = ListenersByNetns::new();
        assert!(listening_ports(std::process::id(), &mut cache).contains(&port));
        drop(listener);
        // A process that does not exist has no ports.
        assert!(listening_ports(u32::MAX - 1, &mut cache).is_empty());
    }
}
