//! Enrichment: decoded records plus the process table make [`Event`]s.
//!
//! The process table is updated here (exec, fork, exit), so every event sees
//! the table as it was when the event happened, in ring-buffer order.

pub mod assets;
pub mod names;
mod net;
mod privilege;
pub mod process;
pub mod procfs_seed;
pub mod redact;

pub use net::is_external;
mod file;

pub use file::{access, join, normalise};

use crate::{
    clock::BootClock,
    enrich::process::{ProcessEntry, ProcessTable},
    event::{Ancestor, Argv, Event, ExitInfo, ForkInfo, KernelAction, Kind, Parent, Process},
    ingest::decode::{self, Payload, Record},
};

/// Bounds of the process table; the `process_table:` section of the
/// configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TableLimits {
    pub max_live: usize,
    pub max_exited: usize,
}

impl Default for TableLimits {
    fn default() -> Self {
        Self {
            max_live: 65_536,
            max_exited: 8_192,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct EnrichStats {
    /// Processes first met through a non-exec event and read from `/proc`.
    pub proc_lookups: u64,
    /// ... of which `/proc` no longer had the process.
    pub proc_lookup_failures: u64,
}

pub struct Enricher {
    pub table: ProcessTable,
    clock: BootClock,
    /// Read `/proc` for processes the table does not know (off in replay).
    use_procfs: bool,
    stats: EnrichStats,
    /// File and GPU events: classifier and known accelerators.
    files: file::FileState,
    /// Applied to argv as a process enters the table.
    redactor: redact::Redactor,
    /// Recognises calls aimed at the agent itself (not in replay).
    agent: privilege::AgentSelf,
    /// Addresses named by DNS answers, per network namespace.
    names: names::NameCache,
}

impl Enricher {
    pub fn new(limits: TableLimits, clock: BootClock, use_procfs: bool) -> Self {
        Self {
            table: if use_procfs {
                ProcessTable::new(limits.max_live, limits.max_exited).with_procfs_checks()
            } else {
                ProcessTable::new(limits.max_live, limits.max_exited)
            },
            clock,
            use_procfs,
            stats: EnrichStats::default(),
            files: file::FileState::default(),
            redactor: redact::Redactor::default(),
            agent: if use_procfs {
                privilege::AgentSelf::current()
            } else {
                privilege::AgentSelf::nobody()
            },
            names: names::NameCache::new(names::NameLimits::default()),
        }
    }

    /// Replaces the name cache's default bounds (the configuration's `names:`).
    pub fn set_name_limits(&mut self, limits: names::NameLimits) {
        self.names = names::NameCache::new(limits);
    }

    /// Addresses the agent resolved for `name` itself (the names of egress
    /// allowlists), named for `life_s` seconds.
    pub fn name_resolved_by_agent(
        &mut self,
        name: &str,
        addresses: &[std::net::IpAddr],
        life_s: u64,
    ) {
        let now = crate::clock::now_boot_ns();
        self.names.resolved_by_agent(name, addresses, now, life_s);
    }

    /// What the name cache has done since start-up.
    pub fn name_stats(&self) -> names::NameStats {
        self.names.stats()
    }

    /// Replaces the built-in redactor (the configuration adds patterns).
    pub fn set_redactor(&mut self, redactor: redact::Redactor) {
        self.redactor = redactor;
    }

    /// Adds or replaces a process, its argv redacted: every event, alert and
    /// snapshot built from the table then carries the redacted values.
    fn remember(&mut self, mut entry: ProcessEntry) {
        self.redactor.redact_shared_argv(&mut entry.argv);
        self.table.upsert(entry);
    }

    pub fn stats(&self) -> EnrichStats {
        self.stats
    }

    /// Loads every running process from `/proc`: processes started before the
    /// agent then have their exe, argv and ancestry.
    pub fn seed_from_procfs(&mut self) -> usize {
        let all = procfs_seed::all_processes();
        let count = all.len();
        // Parents first, so that children record their parent's start time.
        let mut all = all;
        all.sort_by_key(|p| p.start_ns);
        for entry in all {
            self.remember(entry);
        }
        count
    }

    pub fn clock(&self) -> &BootClock {
        &self.clock
    }

    /// The executable of an exec: the path the kernel resolved, when it
    /// names a file. A binary run from a memfd (`runc init` re-executes a
    /// sealed copy of runc this way) resolves to the root of the memfd's
    /// internal mount, `/`, which names nothing: then `/proc/<pid>/exe`,
    /// else the file name passed to execve when it is an absolute path
    /// outside `/proc`, else nothing (an empty `process.exe`).
    fn executable(&self, pid: u32, exec: &crate::ingest::decode::Exec) -> String {
        let names_a_file = |path: &str| path.starts_with('/') && !path.ends_with('/');
        if let Some(resolved) = exec.exe.as_ref().filter(|r| names_a_file(&r.path)) {
            return resolved.path.clone();
        }
        let from_proc = self
            .use_procfs
            .then(|| {
                procfs::process::Process::new(pid as i32)
                    .and_then(|p| p.exe())
                    .ok()
            })
            .flatten()
            .map(|path| path.to_string_lossy().into_owned())
            .filter(|path| names_a_file(path));
        from_proc
            .or_else(|| {
                Some(exec.filename.clone())
                    .filter(|name| names_a_file(name) && !name.starts_with("/proc/"))
            })
            .unwrap_or_default()
    }

    /// Applies a record to the process table and returns its event.
    pub fn enrich(&mut self, record: Record) -> Event {
        let Record { common, payload } = record;
        let kind = Kind::from(common.kind);
        let mut event = Event {
            time: Some(self.clock.wall_time(common.ktime_ns)),
            ktime_ns: common.ktime_ns,
            kind,
            ..Default::default()
        };
        match payload {
            Payload::Exec(exec) if exec.lsm_denied => {
                // The caller keeps its image: the table is left as it was,
                // and the event names the executable it was refused.
                self.ensure_known(common.pid, &common);
                self.fill_process(&mut event, common.pid, common.tid);
                event.process.exe = exec
                    .exe
                    .as_ref()
                    .map(|resolved| resolved.path.clone())
                    .filter(|path| path.starts_with('/'))
                    .unwrap_or(exec.filename)
                    .into();
                event.process.argv = Argv::default();
                event.process.argv_truncated = false;
                event.kernel_action = Some(KernelAction::Refused);
            }
            Payload::Exec(exec) => {
                let exe = self.executable(common.pid, &exec);
                let previous = self.table.get(common.pid);
                let start_ns = match previous {
                    Some(p) if exec.start_boottime_ns == 0 => p.start_ns,
                    _ => exec.start_boottime_ns,
                };
                let entry = ProcessEntry {
                    pid: common.pid,
                    ppid: exec.ppid,
                    start_ns,
                    parent_start_ns: previous.map(|p| p.parent_start_ns).unwrap_or(0),
                    uid: common.uid,
                    gid: common.gid,
                    euid: exec.euid,
                    exe: exe.into(),
                    argv: exec.argv.into(),
                    argv_truncated: exec.argv_truncated,
                    comm: common.comm.as_str().into(),
                    cgroup_id: common.cgroup_id,
                    mnt_ns: Some(exec.mnt_ns).filter(|&n| n != 0),
                    pid_ns: Some(exec.pid_ns).filter(|&n| n != 0),
                    exe_fileless: exec.exe_memfd || exec.exe_unlinked,
                    stdio_socket: exec.stdio_socket,
                    exited_ns: None,
                };
                self.remember(entry);
                self.fill_process(&mut event, common.pid, common.tid);
                event.kernel_action = if exec.killed {
                    Some(KernelAction::Killed)
                } else if exec.kill_rate_limited {
                    Some(KernelAction::KillRateLimited)
                } else {
                    None
                };
            }
            Payload::Fork(fork) => {
                self.ensure_known(common.pid, &common);
                self.table
                    .fork(common.pid, fork.child_pid, fork.child_start_boottime_ns);
                // A fork is about the new process: its parent is the forker.
                self.fill_process(&mut event, fork.child_pid, fork.child_pid);
                event.fork = Some(ForkInfo {
                    child_pid: fork.child_pid,
                });
            }
            Payload::Exit(exit) => {
                self.ensure_known(common.pid, &common);
                self.fill_process(&mut event, common.pid, common.tid);
                let start_ns = self
                    .table
                    .get(common.pid)
                    .map(|p| p.start_ns)
                    .filter(|&s| s != 0)
                    .unwrap_or(exit.start_boottime_ns);
                event.exit = Some(exit_info(
                    exit.exit_code,
                    common.ktime_ns.saturating_sub(start_ns),
                ));
                self.table.exit(common.pid, common.ktime_ns);
            }
            Payload::Net(net) => {
                self.attribute(&mut event, &common);
                let mut info = net::net_info(common.kind, &net);
                self.name_destination(&mut info, net.netns, common.ktime_ns);
                event.net = Some(info);
                if net.denied {
                    event.kernel_action = Some(KernelAction::Denied);
                }
            }
            Payload::TcpSummary(summary) => {
                self.attribute_report(&mut event, &common);
                let mut info = net::summary_info(&summary);
                self.name_destination(&mut info, summary.netns, common.ktime_ns);
                event.net = Some(info);
            }
            Payload::Dns(query) => {
                self.attribute(&mut event, &common);
                self.names
                    .query(&query.wire, query.question.as_ref().ok(), common.ktime_ns);
                event.dns = Some(net::dns_info(&query));
            }
            Payload::DnsAnswer(reply) => {
                self.attribute(&mut event, &common);
                let verified = match &reply.answer {
                    Ok(answer) => self.names.answer(&reply.wire, answer, common.ktime_ns),
                    Err(_) => {
                        self.names.malformed();
                        false
                    }
                };
                event.dns = Some(net::dns_answer_info(&reply, verified));
            }
            Payload::TlsClientHello(hello) => {
                self.attribute(&mut event, &common);
                let mut info = net::client_hello_info(&hello);
                self.name_destination(&mut info, hello.wire.netns, common.ktime_ns);
                event.net = Some(info);
            }
            Payload::HttpRequest(request) => {
                self.attribute(&mut event, &common);
                let mut info = net::http_request_info(&request);
                self.name_destination(&mut info, request.wire.netns, common.ktime_ns);
                event.net = Some(info);
            }
            Payload::Syscall(call) => {
                self.attribute(&mut event, &common);
                event.syscall = Some(privilege::syscall_info(&call, common.pid, &mut self.agent));
            }
            Payload::File(op) => self.enrich_file(&mut event, &common, *op),
            Payload::GpuIoctl(gpu) => self.enrich_gpu(&mut event, &common, gpu),
            Payload::FileAccess(access) => self.enrich_file_access(&mut event, &common, *access),
            // Clear text is reassembled into LLM exchanges, never written as
            // it is; only the process it came from is filled here.
            Payload::ClearText(_) => self.attribute(&mut event, &common),
        }
        event
    }

    /// Names the destination of a connection from the name cache. Unix
    /// sockets, bind and listen have no remote address to name.
    fn name_destination(&mut self, info: &mut crate::event::NetInfo, netns: u32, now_ns: u64) {
        let Some(dst) = info.dst.as_ref() else {
            return;
        };
        if let Some(peer) = self.names.lookup(netns, dst.ip, now_ns) {
            info.dst_name = Some(peer.name);
            info.dst_name_verified = peer.verified;
        }
    }

    /// Fills the process fields of an event about `common.pid`.
    fn attribute(&mut self, event: &mut Event, common: &decode::Common) {
        self.ensure_known(common.pid, common);
        self.fill_process(event, common.pid, common.tid);
    }

    /// Fills the process fields of a periodic report (folded reads, GPU
    /// ioctls, TCP totals), which may come after its process exited: an
    /// exited process is described from the table's exited entries, and
    /// is never made a live entry again (no exit would ever end it).
    pub(super) fn attribute_report(&mut self, event: &mut Event, common: &decode::Common) {
        if self.table.get_any(common.pid).is_none() && self.use_procfs {
            self.stats.proc_lookups += 1;
            match procfs_seed::read_process(common.pid) {
                Some(entry) => self.remember(entry),
                None => self.stats.proc_lookup_failures += 1,
            }
        }
        self.fill_process(event, common.pid, common.tid);
    }

    /// Makes sure the table has an entry for `pid`, reading `/proc` or, when
    /// the process is gone, recording what the record itself says.
    fn ensure_known(&mut self, pid: u32, common: &decode::Common) {
        if self.table.get(pid).is_some() {
            return;
        }
        let from_proc = if self.use_procfs {
            self.stats.proc_lookups += 1;
            let found = procfs_seed::read_process(pid);
            if found.is_none() {
                self.stats.proc_lookup_failures += 1;
            }
            found
        } else {
            None
        };
        let entry = from_proc.unwrap_or_else(|| ProcessEntry {
            pid,
            uid: common.uid,
            gid: common.gid,
            comm: common.comm.as_str().into(),
            cgroup_id: common.cgroup_id,
            ..Default::default()
        });
        self.remember(entry);
    }

    /// Fills `event.process` and `event.parent` from the table.
    pub fn fill_process(&self, event: &mut Event, pid: u32, tid: u32) {
        let Some(entry) = self.table.get_any(pid) else {
            event.process.pid = pid;
            event.process.tid = tid;
            return;
        };
        let ancestors = self.table.ancestors(pid);
        event.parent = ancestors.first().map(|p| Parent {
            pid: p.pid,
            exe: p.exe.clone(),
            argv: p.argv.clone(),
            comm: p.comm.clone(),
        });
        event.process = Process {
            pid,
            tid,
            ppid: entry.ppid,
            uid: entry.uid,
            gid: entry.gid,
            euid: entry.euid,
            exe: entry.exe.clone(),
            argv: entry.argv.clone(),
            argv_truncated: entry.argv_truncated,
            comm: entry.comm.clone(),
            cgroup_id: entry.cgroup_id,
            start_time: (entry.start_ns != 0).then(|| self.clock.wall_time(entry.start_ns)),
            mnt_ns: entry.mnt_ns,
            pid_ns: entry.pid_ns,
            exe_fileless: entry.exe_fileless,
            stdio_socket: entry.stdio_socket,
            agent_binary: self.agent.is_agent_binary(&entry.exe),
            ancestors: ancestors
                .iter()
                .map(|a| Ancestor {
                    pid: a.pid,
                    exe: a.exe.clone(),
                    comm: a.comm.clone(),
                })
                .collect(),
        };
    }
}

/// Splits a kernel exit code: status in bits 8..16, signal in 0..7, core
/// dump flag 0x80.
pub fn exit_info(exit_code: u32, lifetime_ns: u64) -> ExitInfo {
    let signal = (exit_code & 0x7f) as i32;
    ExitInfo {
        code: (signal == 0).then_some(((exit_code >> 8) & 0xff) as i32),
        signal: (signal != 0).then_some(signal),
        core_dumped: exit_code & 0x80 != 0,
        lifetime_ms: lifetime_ns / 1_000_000,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An exec record of `filename` with `argv`, nothing else set.
    fn exec_of(filename: &str, argv: Vec<String>) -> crate::ingest::decode::Exec {
        crate::ingest::decode::Exec {
            ppid: 1,
            old_pid: 0,
            euid: 0,
            egid: 0,
            mnt_ns: 0,
            pid_ns: 0,
            start_boottime_ns: 0,
            filename: filename.into(),
            exe: None,
            argv,
            argv_truncated: false,
            exe_unlinked: false,
            exe_memfd: false,
            stdio_socket: false,
            lsm_denied: false,
            killed: false,
            kill_rate_limited: false,
        }
    }

    /// `runc init` runs a memfd copy of runc: the kernel's walk gives `/`
    /// and execve was passed `/proc/self/exe`. Neither names the program.
    #[test]
    fn an_exec_whose_path_names_no_file_has_an_empty_exe() {
        let enricher = Enricher::new(
            TableLimits {
                max_live: 16,
                max_exited: 16,
            },
            BootClock::new(),
            false,
        );
        let mut exec = exec_of("/proc/self/exe", vec!["runc".into(), "init".into()]);
        exec.exe = Some(crate::ingest::decode::ResolvedPath {
            path: "/".into(),
            truncated: false,
        });
        exec.exe_memfd = true;
        assert_eq!(enricher.executable(7, &exec), "");
        exec.filename = "/usr/sbin/runc".into();
        assert_eq!(enricher.executable(7, &exec), "/usr/sbin/runc");
        exec.exe = Some(crate::ingest::decode::ResolvedPath {
            path: "/usr/bin/python3.11".into(),
            truncated: false,
        });
        assert_eq!(enricher.executable(7, &exec), "/usr/bin/python3.11");
    }

    /// A folded-read report that comes after its process exited describes
    /// the exited process and leaves it exited: a live entry made from the
    /// report would never be ended by an exit.
    #[test]
    fn a_report_after_the_exit_leaves_the_process_exited() {
        use crate::ingest::decode::{Common, Exit, FileAccess, Payload, Record};
        use aiwatch_common::EventKind;
        let mut enricher = Enricher::new(
            TableLimits {
                max_live: 16,
                max_exited: 16,
            },
            BootClock::new(),
            false,
        );
        let common = |kind, ktime_ns| Common {
            kind,
            flags: 0,
            ktime_ns,
            pid: 4242,
            tid: 4242,
            uid: 0,
            gid: 0,
            cgroup_id: 0,
            comm: "loader".into(),
        };
        let mut exec = exec_of("/usr/bin/python3", vec!["python3".into()]);
        exec.start_boottime_ns = 1;
        enricher.enrich(Record {
            common: common(EventKind::Exec, 10),
            payload: Payload::Exec(Box::new(exec)),
        });
        enricher.enrich(Record {
            common: common(EventKind::Exit, 20),
            payload: Payload::Exit(Exit {
                exit_code: 0,
                ppid: 1,
                start_boottime_ns: 1,
            }),
        });
        assert!(enricher.table.get(4242).is_none(), "exited");
        let report = enricher.enrich(Record {
            common: common(EventKind::FileAccess, 30),
            payload: Payload::FileAccess(Box::new(FileAccess {
                count: 3,
                bytes: 300,
                first_ns: 11,
                last_ns: 19,
                directory: "/data".into(),
            })),
        });
        assert_eq!(report.process.exe, "/usr/bin/python3");
        assert!(enricher.table.get(4242).is_none(), "still exited");
        assert_eq!(enricher.table.live_count(), 0);
    }

    #[test]
    fn exit_codes_split_into_status_and_signal() {
        let normal = exit_info(3 << 8, 5_000_000);
        assert_eq!(
            (normal.code, normal.signal, normal.lifetime_ms),
            (Some(3), None, 5)
        );
        let killed = exit_info(9, 0);
        assert_eq!((killed.code, killed.signal), (None, Some(9)));
        let dumped = exit_info(0x80 | 11, 0);
        assert_eq!((dumped.signal, dumped.core_dumped), (Some(11), true));
    }
}
