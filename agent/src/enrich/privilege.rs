//! Privilege and tampering records as the event's `syscall` field, and
//! whether a call was aimed at the running agent itself.

use std::collections::HashSet;

use crate::{event::SyscallInfo, ingest::decode::privilege::Syscall};
use aiwatch_common::sys;

const BPF_PROG_LOAD: u64 = 5;
const BPF_PROG_GET_FD_BY_ID: u64 = 13;
const BPF_MAP_GET_FD_BY_ID: u64 = 14;
const BPF_LINK_GET_FD_BY_ID: u64 = 30;

/// The running agent as a target: its threads, and the BPF programs, maps
/// and links it holds. Recognised by pid and by object id, never by name:
/// any binary can be called aiwatch.
pub struct AgentSelf {
    /// 0 when nothing is the agent (replay).
    pid: u32,
    /// The agent's executable, as `/proc/self/exe` names it.
    exe: Option<String>,
    /// `(kind, id)` of the BPF objects behind the agent's descriptors, read
    /// from `/proc/self/fdinfo`; refreshed when an unknown id is asked
    /// about, since uprobes and enforcement programs attach later.
    bpf_objects: HashSet<(BpfObject, u32)>,
    /// When `bpf_objects` was last read: at most once a second, so that a
    /// flood of lookups by unknown ids cannot make the pipeline read
    /// `/proc` for each.
    scanned: Option<std::time::Instant>,
}

/// The shortest time between two readings of the agent's BPF objects.
const RESCAN_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum BpfObject {
    Program,
    Map,
    Link,
}

impl AgentSelf {
    pub fn current() -> Self {
        Self {
            pid: std::process::id(),
            exe: std::env::current_exe()
                .ok()
                .map(|exe| exe.to_string_lossy().into_owned()),
            bpf_objects: HashSet::new(),
            scanned: None,
        }
    }

    /// Recognises nothing: replayed events were not aimed at this process.
    pub fn nobody() -> Self {
        Self {
            pid: 0,
            exe: None,
            bpf_objects: HashSet::new(),
            scanned: None,
        }
    }

    /// `exe` is the agent's own executable: an `aiwatch` command run by an
    /// operator, recognised by path, not by name.
    pub fn is_agent_binary(&self, exe: &str) -> bool {
        self.exe.as_deref() == Some(exe)
    }

    /// `pid` is the agent or one of its threads.
    fn is_agent(&self, pid: u32) -> bool {
        self.pid != 0
            && pid != 0
            && (pid == self.pid || std::path::Path::new(&format!("/proc/self/task/{pid}")).exists())
    }

    fn owns(&mut self, object: BpfObject, id: u32) -> bool {
        if self.pid == 0 {
            return false;
        }
        if self.bpf_objects.contains(&(object, id)) {
            return true;
        }
        if self
            .scanned
            .is_some_and(|scanned| scanned.elapsed() < RESCAN_EVERY)
        {
            return false;
        }
        self.scanned = Some(std::time::Instant::now());
        self.bpf_objects = own_bpf_objects();
        self.bpf_objects.contains(&(object, id))
    }
}

/// The BPF objects behind this process's descriptors (`prog_id:`,
/// `map_id:` and `link_id:` lines of `/proc/self/fdinfo/*`).
fn own_bpf_objects() -> HashSet<(BpfObject, u32)> {
    let mut objects = HashSet::new();
    let Ok(entries) = std::fs::read_dir("/proc/self/fdinfo") else {
        return objects;
    };
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let object = match key {
                "prog_id" => BpfObject::Program,
                "map_id" => BpfObject::Map,
                "link_id" => BpfObject::Link,
                _ => continue,
            };
            if let Ok(id) = value.trim().parse() {
                objects.insert((object, id));
            }
        }
    }
    objects
}

/// The pid a pidfd of `holder` refers to (`Pid:` in its fdinfo), while the
/// holder still has it open.
fn pidfd_target(holder: u32, fd: u64) -> Option<u32> {
    let text = std::fs::read_to_string(format!("/proc/{holder}/fdinfo/{fd}")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("Pid:"))
        .and_then(|pid| pid.trim().parse::<i64>().ok())
        .and_then(|pid| u32::try_from(pid).ok())
}

/// `-1` ("leave unchanged") in the set*id family is no requested id.
fn id(raw: u64) -> Option<u32> {
    let id = raw as u32;
    (id != u32::MAX).then_some(id)
}

/// The event's `syscall` field for a call made by `caller`.
pub fn syscall_info(s: &Syscall, caller: u32, agent: &mut AgentSelf) -> SyscallInfo {
    let mut info = call_info(s, caller);
    info.target_agent = match s.number {
        sys::BPF if s.user_read => match s.args[0] {
            BPF_PROG_GET_FD_BY_ID => agent.owns(BpfObject::Program, s.args[3] as u32),
            BPF_MAP_GET_FD_BY_ID => agent.owns(BpfObject::Map, s.args[3] as u32),
            BPF_LINK_GET_FD_BY_ID => agent.owns(BpfObject::Link, s.args[3] as u32),
            _ => false,
        },
        _ => info.target_pid.is_some_and(|pid| agent.is_agent(pid)),
    };
    info
}

fn call_info(s: &Syscall, caller: u32) -> SyscallInfo {
    let a = s.args;
    let mut info = SyscallInfo {
        syscall: s.name.to_owned(),
        result: s.result,
        ..Default::default()
    };
    match s.number {
        sys::SETUID => info.uid = id(a[0]),
        sys::SETREUID | sys::SETRESUID => {
            info.uid = id(a[0]);
            info.euid = id(a[1]);
        }
        sys::SETGID => info.gid = id(a[0]),
        sys::SETREGID | sys::SETRESGID => {
            info.gid = id(a[0]);
            info.egid = id(a[1]);
        }
        sys::CAPSET if s.user_read => {
            info.cap_effective = Some(a[2]);
            info.cap_permitted = Some(a[3]);
        }
        sys::PTRACE => {
            info.request = Some(ptrace_request(a[0]));
            info.target_pid = Some(a[1] as u32).filter(|&pid| pid != 0);
        }
        sys::PROCESS_VM_WRITEV => info.target_pid = Some(a[0] as u32).filter(|&pid| pid != 0),
        sys::PIDFD_GETFD => info.target_pid = pidfd_target(caller, a[0]),
        sys::SIGNAL => {
            info.signal = Some(signal_name(a[0]));
            info.target_pid = Some(a[1] as u32);
        }
        sys::BPF => {
            info.bpf_cmd = Some(bpf_cmd(a[0]));
            match a[0] {
                BPF_PROG_LOAD if s.user_read => info.bpf_prog_type = Some(a[3] as u32),
                BPF_PROG_GET_FD_BY_ID | BPF_MAP_GET_FD_BY_ID | BPF_LINK_GET_FD_BY_ID
                    if s.user_read =>
                {
                    info.bpf_id = Some(a[3] as u32)
                }
                _ => {}
            }
        }
        sys::MEMFD_CREATE => {
            info.name = s.text.clone();
            info.flags = Some(a[1]);
        }
        sys::INIT_MODULE => {
            info.name = s.text.clone();
            info.len = Some(a[1]);
        }
        sys::FINIT_MODULE => {
            info.name = s.text.clone();
            info.path = s.path.as_ref().map(|p| p.path.clone());
            info.flags = Some(a[2]);
        }
        sys::MMAP => {
            // The address actually mapped, when the call succeeded.
            info.addr = Some(if s.result >= 0 { s.result as u64 } else { a[0] });
            info.len = Some(a[1]);
            info.prot = Some(a[2]);
            info.flags = Some(a[3]);
        }
        sys::MPROTECT => {
            info.addr = Some(a[0]);
            info.len = Some(a[1]);
            info.prot = Some(a[2]);
        }
        _ => {}
    }
    info
}

/// `SIGTERM`, `SIGKILL`, ...; real-time and unknown signals by number.
pub fn signal_name(signal: u64) -> String {
    const NAMES: [&str; 31] = [
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    usize::try_from(signal)
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| NAMES.get(i))
        .map_or_else(|| signal.to_string(), |name| (*name).to_owned())
}

pub fn ptrace_request(request: u64) -> String {
    let name = match request {
        0 => "PTRACE_TRACEME",
        1 => "PTRACE_PEEKTEXT",
        2 => "PTRACE_PEEKDATA",
        3 => "PTRACE_PEEKUSER",
        4 => "PTRACE_POKETEXT",
        5 => "PTRACE_POKEDATA",
        6 => "PTRACE_POKEUSER",
        7 => "PTRACE_CONT",
        8 => "PTRACE_KILL",
        9 => "PTRACE_SINGLESTEP",
        12 => "PTRACE_GETREGS",
        13 => "PTRACE_SETREGS",
        14 => "PTRACE_GETFPREGS",
        15 => "PTRACE_SETFPREGS",
        16 => "PTRACE_ATTACH",
        17 => "PTRACE_DETACH",
        24 => "PTRACE_SYSCALL",
        0x4200 => "PTRACE_SETOPTIONS",
        0x4201 => "PTRACE_GETEVENTMSG",
        0x4202 => "PTRACE_GETSIGINFO",
        0x4203 => "PTRACE_SETSIGINFO",
        0x4204 => "PTRACE_GETREGSET",
        0x4205 => "PTRACE_SETREGSET",
        0x4206 => "PTRACE_SEIZE",
        0x4207 => "PTRACE_INTERRUPT",
        0x4208 => "PTRACE_LISTEN",
        0x4209 => "PTRACE_PEEKSIGINFO",
        other => return other.to_string(),
    };
    name.to_owned()
}

pub fn bpf_cmd(cmd: u64) -> String {
    const NAMES: [&str; 37] = [
        "BPF_MAP_CREATE",
        "BPF_MAP_LOOKUP_ELEM",
        "BPF_MAP_UPDATE_ELEM",
        "BPF_MAP_DELETE_ELEM",
        "BPF_MAP_GET_NEXT_KEY",
        "BPF_PROG_LOAD",
        "BPF_OBJ_PIN",
        "BPF_OBJ_GET",
        "BPF_PROG_ATTACH",
        "BPF_PROG_DETACH",
        "BPF_PROG_TEST_RUN",
        "BPF_PROG_GET_NEXT_ID",
        "BPF_MAP_GET_NEXT_ID",
        "BPF_PROG_GET_FD_BY_ID",
        "BPF_MAP_GET_FD_BY_ID",
        "BPF_OBJ_GET_INFO_BY_FD",
        "BPF_PROG_QUERY",
        "BPF_RAW_TRACEPOINT_OPEN",
        "BPF_BTF_LOAD",
        "BPF_BTF_GET_FD_BY_ID",
        "BPF_TASK_FD_QUERY",
        "BPF_MAP_LOOKUP_AND_DELETE_ELEM",
        "BPF_MAP_FREEZE",
        "BPF_BTF_GET_NEXT_ID",
        "BPF_MAP_LOOKUP_BATCH",
        "BPF_MAP_LOOKUP_AND_DELETE_BATCH",
        "BPF_MAP_UPDATE_BATCH",
        "BPF_MAP_DELETE_BATCH",
        "BPF_LINK_CREATE",
        "BPF_LINK_UPDATE",
        "BPF_LINK_GET_FD_BY_ID",
        "BPF_LINK_GET_NEXT_ID",
        "BPF_ENABLE_STATS",
        "BPF_ITER_CREATE",
        "BPF_LINK_DETACH",
        "BPF_PROG_BIND_MAP",
        "BPF_TOKEN_CREATE",
    ];
    usize::try_from(cmd)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map(|name| (*name).to_owned())
        .unwrap_or_else(|| cmd.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(number: u16, args: [u64; 6], result: i64) -> Syscall {
        Syscall {
            name: crate::ingest::decode::privilege::syscall_name(number),
            number,
            args,
            result,
            user_read: true,
            tracked: false,
            text: None,
            path: None,
        }
    }

    #[test]
    fn set_id_calls_keep_requested_ids_and_drop_minus_one() {
        let info = call_info(&call(sys::SETUID, [65534, 0, 0, 0, 0, 0], 0), 0);
        assert_eq!(
            (info.syscall.as_str(), info.uid, info.result),
            ("setuid", Some(65534), 0)
        );
        let info = call_info(
            &call(sys::SETRESUID, [u64::MAX, 0, u64::MAX, 0, 0, 0], -1),
            0,
        );
        assert_eq!((info.uid, info.euid, info.result), (None, Some(0), -1));
        let info = call_info(&call(sys::SETREGID, [0xffff_ffff, 5, 0, 0, 0, 0], 0), 0);
        assert_eq!((info.gid, info.egid), (None, Some(5)));
    }

    #[test]
    fn ptrace_bpf_capset_and_memory() {
        let info = call_info(&call(sys::PTRACE, [16, 4242, 0, 0, 0, 0], 0), 0);
        assert_eq!(info.request.as_deref(), Some("PTRACE_ATTACH"));
        assert_eq!(info.target_pid, Some(4242));
        assert_eq!(ptrace_request(0x9999), "39321");

        let info = call_info(&call(sys::BPF, [5, 0x7fff_0000, 144, 2, 0, 0], 7), 0);
        assert_eq!(
            (info.bpf_cmd.as_deref(), info.bpf_prog_type),
            (Some("BPF_PROG_LOAD"), Some(2))
        );
        let info = call_info(&call(sys::BPF, [11, 0, 0, 0, 0, 0], 0), 0);
        assert_eq!(
            (info.bpf_cmd.as_deref(), info.bpf_prog_type),
            (Some("BPF_PROG_GET_NEXT_ID"), None)
        );
        assert_eq!(bpf_cmd(1000), "1000");

        let info = call_info(&call(sys::CAPSET, [0, 0, 0x20, 0x30, 0, 0], 0), 0);
        assert_eq!(
            (info.cap_effective, info.cap_permitted),
            (Some(0x20), Some(0x30))
        );

        let info = call_info(
            &call(sys::MMAP, [0, 4096, 7, 0x22, u64::MAX, 0], 0x7f00_0000),
            0,
        );
        assert_eq!(
            (info.addr, info.len, info.prot, info.flags),
            (Some(0x7f00_0000), Some(4096), Some(7), Some(0x22))
        );
        let info = call_info(&call(sys::MMAP, [0x1000, 4096, 7, 0x22, 0, 0], -12), 0);
        assert_eq!(info.addr, Some(0x1000));
    }

    #[test]
    fn signals_are_named_and_calls_at_the_agent_are_recognised() {
        assert_eq!(signal_name(15), "SIGTERM");
        assert_eq!(signal_name(9), "SIGKILL");
        assert_eq!(signal_name(40), "40");
        assert_eq!(signal_name(0), "0");

        let me = std::process::id();
        let mut agent = AgentSelf::current();
        let info = syscall_info(
            &call(sys::SIGNAL, [15, me.into(), me.into(), 1, 0, 0], 0),
            4242,
            &mut agent,
        );
        assert_eq!(info.signal.as_deref(), Some("SIGTERM"));
        assert!(info.target_agent);
        // Another live thread of the agent is the agent too.
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tid_tx.send(unsafe { libc::gettid() } as u64).unwrap();
            let _ = done_rx.recv();
        });
        let tid = tid_rx.recv().unwrap();
        assert_ne!(tid, u64::from(me));
        let info = syscall_info(
            &call(sys::PROCESS_VM_WRITEV, [tid, 0, 0, 0, 0, 0], 0),
            4242,
            &mut agent,
        );
        assert!(info.target_agent);
        done_tx.send(()).unwrap();
        thread.join().unwrap();
        // pid 1, a plain other process, and replay recognise nothing.
        let info = syscall_info(&call(sys::PTRACE, [16, 1, 0, 0, 0, 0], 0), 4242, &mut agent);
        assert!(!info.target_agent);
        let info = syscall_info(
            &call(sys::SIGNAL, [15, me.into(), me.into(), 1, 0, 0], 0),
            4242,
            &mut AgentSelf::nobody(),
        );
        assert!(!info.target_agent);
        // An id the agent does not hold.
        let info = syscall_info(
            &call(sys::BPF, [13, 0, 0, u64::from(u32::MAX), 0, 0], 3),
            4242,
            &mut agent,
        );
        assert_eq!(info.bpf_id, Some(u32::MAX));
        assert!(!info.target_agent);
    }
}
