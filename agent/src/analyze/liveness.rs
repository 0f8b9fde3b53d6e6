//! Workload members whose exit the agent never saw.
//!
//! An exit event can be lost like any other (a full ring buffer, a record
//! the reader dropped: `aiwatch_events_lost_total{kind="exit"}`). Without a
//! check, its process would stay a member of its workload, listed in the
//! inventory and tracked in the kernel, until its pid was reused. So the
//! members are checked against `/proc` in rotation, a bounded number per
//! call, and a member found gone leaves its workload as its exit would have
//! made it leave.
//!
//! A member is only suspected when first found gone: its last events may
//! still wait in the ring buffer or the queue, and they must find it in its
//! workload. It leaves once the pipeline has handled an event stamped after
//! the moment it was found gone (everything the process did is behind), or
//! after [`SUSPECT_FOR_NS`] on a host too quiet to send one. An exit event
//! that still comes later is attributed as the exit of a departed process.

use std::collections::HashMap;

use super::Analyzer;
use crate::analyze::workload::WorkloadChange;

/// Members checked against `/proc` per call: bounds the lookups a second of
/// housekeeping makes on a host with many members. A few hundred members
/// are all checked at every call.
pub(super) const CHECKS_PER_CALL: usize = 256;

/// How long a member found gone waits at most for the pipeline to handle a
/// later event.
pub(super) const SUSPECT_FOR_NS: u64 = 10_000_000_000;

/// The rotation and the suspects.
#[derive(Debug, Default)]
pub(super) struct Liveness {
    /// Members still to check in this round; refilled when it runs out.
    round: Vec<u32>,
    /// Members found gone, with when (boot-clock ns).
    suspects: HashMap<u32, u64>,
    /// The latest event time (`ktime_ns`) the pipeline handled.
    latest_event_ns: u64,
}

impl Liveness {
    /// The pipeline handled an event stamped `ktime_ns`.
    pub(super) fn saw(&mut self, ktime_ns: u64) {
        self.latest_event_ns = self.latest_event_ns.max(ktime_ns);
    }

    fn may_leave(&self, found_gone_ns: u64, now_ns: u64) -> bool {
        self.latest_event_ns > found_gone_ns
            || now_ns.saturating_sub(found_gone_ns) >= SUSPECT_FOR_NS
    }
}

/// What one call found.
#[derive(Debug, Default)]
pub struct Departures {
    /// The members that left, as their exits would have made them leave.
    pub pids: Vec<u32>,
    /// Their changes of membership, for the kernel's tracking maps.
    pub changes: Vec<WorkloadChange>,
}

impl Analyzer {
    /// Checks the next members of the rotation with `alive` (a pid's
    /// `/proc` entry, live) and lets the suspects that are still gone leave
    /// their workloads. `now_ns` is the boot clock.
    pub fn depart_gone(&mut self, now_ns: u64, alive: impl Fn(u32) -> bool) -> Departures {
        if self.liveness.round.is_empty() {
            self.liveness.round = self.workloads.member_pids();
        }
        let split = self.liveness.round.len().saturating_sub(CHECKS_PER_CALL);
        for pid in self.liveness.round.split_off(split) {
            if self.workloads.lookup(pid).is_some() && !alive(pid) {
                self.liveness.suspects.entry(pid).or_insert(now_ns);
            }
        }

        let mut departures = Departures::default();
        let suspects: Vec<(u32, u64)> = self
            .liveness
            .suspects
            .iter()
            .map(|(&p, &t)| (p, t))
            .collect();
        for (pid, found_gone_ns) in suspects {
            let Some(workload) = self.workloads.lookup(pid).cloned() else {
                // Its exit came after all, or a new process took the pid.
                self.liveness.suspects.remove(&pid);
                continue;
            };
            if alive(pid) {
                // A new process with the pid, whose fork was not seen
                // either: the member is gone, but the pid is no longer
                // evidence of it. Its exec or exit will settle it.
                self.liveness.suspects.remove(&pid);
                continue;
            }
            if !self.liveness.may_leave(found_gone_ns, now_ns) {
                continue;
            }
            self.liveness.suspects.remove(&pid);
            self.departed.remember(pid, workload.clone());
            self.inventory.process_exited(&workload, pid);
            departures.changes.extend(self.workloads.on_exit(pid));
            self.note_exit(pid);
            departures.pids.push(pid);
        }
        self.inventory.apply(&departures.changes);
        departures
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::WorkloadsConfig;
    use crate::event::{Event, FileInfo, Kind, Process};

    const SECOND: u64 = 1_000_000_000;

    fn event(kind: Kind, pid: u32, ktime_ns: u64) -> Event {
        Event {
            kind,
            ktime_ns,
            process: Process {
                pid,
                exe: "/usr/bin/python3.11".into(),
                argv: vec!["python3".into(), "serve.py".into()].into(),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// An analyzer where `pids` (which no process has) are members of one
    /// server workload, by a model open and a listen each.
    fn with_members(pids: &[u32]) -> Analyzer {
        let mut analyzer = Analyzer::new(&WorkloadsConfig::default()).expect("analyzer");
        for &pid in pids {
            analyzer.attribute(&mut event(Kind::Exec, pid, SECOND));
            let mut open = event(Kind::Open, pid, SECOND);
            open.file = Some(FileInfo {
                path: "/srv/models/resnet.onnx".into(),
                access: Some("read".parse().unwrap()),
                class: Some("model".parse().unwrap()),
                ..Default::default()
            });
            analyzer.attribute(&mut open);
            let mut listen = event(Kind::Listen, pid, SECOND);
            listen.net = Some(crate::event::NetInfo {
                src: Some(crate::event::Endpoint {
                    ip: "127.0.0.1".parse().unwrap(),
                    port: 8080,
                }),
                ..Default::default()
            });
            analyzer.attribute(&mut listen);
            assert!(
                analyzer.workloads.lookup(pid).is_some(),
                "{pid} is a member"
            );
        }
        analyzer
    }

    fn listed(analyzer: &Analyzer) -> Vec<u32> {
        let mut pids: Vec<u32> = analyzer
            .inventory
            .snapshot()
            .workloads
            .iter()
            .flat_map(|w| w.processes.iter().map(|p| p.pid))
            .collect();
        pids.sort_unstable();
        pids
    }

    #[test]
    fn a_member_whose_exit_was_lost_leaves_once_the_pipeline_is_past_it() {
        let (gone, alive) = (4_190_011, 4_190_012);
        let mut analyzer = with_members(&[gone, alive]);
        assert_eq!(listed(&analyzer), [gone, alive]);
        let is_alive = |pid| pid == alive;

        // Found gone at 2 s: suspected only, its last events may still come.
        let first = analyzer.depart_gone(2 * SECOND, is_alive);
        assert!(first.pids.is_empty(), "{first:?}");
        let mut late = event(Kind::Connect, gone, SECOND + 500);
        analyzer.attribute(&mut late);
        assert!(late.workload.is_some(), "a late event finds its workload");

        // An event stamped after 2 s was handled: the member leaves.
        analyzer.attribute(&mut event(Kind::Exec, 4_190_013, 3 * SECOND));
        let second = analyzer.depart_gone(3 * SECOND, is_alive);
        assert_eq!(second.pids, [gone]);
        assert!(
            matches!(second.changes.as_slice(), [WorkloadChange::Left { pid, .. }] if *pid == gone),
            "{:?}",
            second.changes
        );
        assert_eq!(listed(&analyzer), [alive]);
        let server = &analyzer.inventory.snapshot().workloads[0];
        assert_eq!(server.processes_exited, 1);

        // Its exit, late after all, is still its workload's, counted once.
        let mut exit = event(Kind::Exit, gone, 4 * SECOND);
        analyzer.attribute(&mut exit);
        assert!(exit.workload.is_some(), "the late exit is attributed");
        assert_eq!(
            analyzer.inventory.snapshot().workloads[0].processes_exited,
            1
        );
        assert!(analyzer.depart_gone(5 * SECOND, is_alive).pids.is_empty());
    }

    #[test]
    fn on_a_quiet_host_a_suspect_leaves_after_the_wait() {
        let gone = 4_190_021;
        let mut analyzer = with_members(&[gone]);
        assert!(analyzer.depart_gone(2 * SECOND, |_| false).pids.is_empty());
        assert!(analyzer
            .depart_gone(2 * SECOND + SUSPECT_FOR_NS - 1, |_| false)
            .pids
            .is_empty());
        let departed = analyzer.depart_gone(2 * SECOND + SUSPECT_FOR_NS, |_| false);
        assert_eq!(departed.pids, [gone]);
        assert!(listed(&analyzer).is_empty());
    }

    #[test]
    fn a_normal_exit_counts_once_and_leaves_nothing_to_depart() {
        let pid = 4_190_031;
        let mut analyzer = with_members(&[pid]);
        analyzer.attribute(&mut event(Kind::Exit, pid, 2 * SECOND));
        let server = &analyzer.inventory.snapshot().workloads[0];
        assert!(server.processes.is_empty());
        assert_eq!(server.processes_exited, 1);
        assert!(analyzer.depart_gone(3 * SECOND, |_| false).pids.is_empty());
        assert!(analyzer
            .depart_gone(3 * SECOND + SUSPECT_FOR_NS, |_| false)
            .pids
            .is_empty());
    }

    #[test]
    fn members_are_checked_a_bounded_number_at_a_time() {
        let pids: Vec<u32> = (0..CHECKS_PER_CALL as u32 + 10)
            .map(|i| 4_100_000 + i)
            .collect();
        let mut analyzer = with_members(&pids);
        let checked = std::cell::Cell::new(0usize);
        analyzer.depart_gone(2 * SECOND, |_| {
            checked.set(checked.get() + 1);
            true
        });
        assert_eq!(checked.get(), CHECKS_PER_CALL);
        checked.set(0);
        analyzer.depart_gone(3 * SECOND, |_| {
            checked.set(checked.get() + 1);
            true
        });
        assert_eq!(checked.get(), 10, "the rest of the round");
    }
}
