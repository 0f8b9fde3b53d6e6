//! Keeps the agent's tracepoints registered while the tests run.
//!
//! When the last perf event leaves a tracepoint the kernel unregisters it
//! and waits for grace periods, under one mutex for the whole kernel: an
//! agent's exit waited about 3 seconds for its fifty-odd tracepoints on a
//! quiet host, and every integration test starts and stops its own agent.
//! One disabled perf event per tracepoint, held by xtask for the whole run,
//! keeps each one registered, so the agents' exits skip that wait. A
//! disabled event is never added to the tracepoint's list of active events:
//! it costs the traced syscalls nothing beyond what the agents' own
//! events already cost.
//!
//! The tracepoints are read from the agent's probe table, compiled in, so
//! that the guest's init (this binary) holds them too.

use std::{
    fs,
    os::fd::{FromRawFd as _, OwnedFd},
    path::Path,
};

/// The agent's probe table, whose `Tracepoint("category", "name")`,
/// `syscall("name", …)` and `file_exit("name", …)` entries name the
/// tracepoints to hold.
const PROBE_TABLE: &str = include_str!("../../agent/src/kernel/probe_table.rs");

/// Where tracefs is mounted, on the host and in the guests.
const TRACEFS: &str = "/sys/kernel/tracing";

/// The perf events that hold the tracepoints; closed on drop.
#[derive(Debug)]
pub struct TracepointHold {
    _events: Vec<OwnedFd>,
}

impl TracepointHold {
    /// Opens one disabled perf event on each tracepoint of the probe table
    /// that this kernel has. Prints one line saying how many it holds, or
    /// why it holds none; a test run goes on either way, only slower.
    pub fn open() -> Self {
        let mut events = Vec::new();
        let mut refused = None;
        for (category, name) in probe_table_tracepoints() {
            let id_path = Path::new(TRACEFS)
                .join("events")
                .join(category)
                .join(name)
                .join("id");
            // A tracepoint this kernel lacks is one the agent skips too.
            let Some(id) = fs::read_to_string(&id_path)
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
            else {
                continue;
            };
            match open_disabled_tracepoint_event(id) {
                Ok(fd) => events.push(fd),
                Err(err) => {
                    refused = Some(format!("{category}:{name}: {err}"));
                    break;
                }
            }
        }
        match refused {
            Some(why) => {
                println!(
                    "xtask: the agents' tracepoints are not held ({why}): each agent's exit waits for the kernel to unregister them"
                );
                Self {
                    _events: Vec::new(),
                }
            }
            None => {
                println!(
                    "xtask: holding {} tracepoints registered so that the agents' exits need not wait for the kernel",
                    events.len()
                );
                Self { _events: events }
            }
        }
    }
}

/// The (category, name) of every tracepoint in the probe table.
fn probe_table_tracepoints() -> Vec<(&'static str, &'static str)> {
    let mut found = Vec::new();
    for (marker, category) in [
        ("Tracepoint(", None),
        ("syscall(", Some("syscalls")),
        ("file_exit(", Some("syscalls")),
    ] {
        let mut rest = PROBE_TABLE;
        while let Some(at) = rest.find(marker) {
            rest = &rest[at + marker.len()..];
            let mut strings = quoted_strings(rest);
            let entry = match category {
                Some(category) => strings.next().map(|name| (category, name)),
                None => strings.next().zip(strings.next()),
            };
            if let Some(entry) = entry {
                found.push(entry);
            }
        }
    }
    found.sort_unstable();
    found.dedup();
    found
}

/// The string literals at the start of `text`, up to its first `)`.
fn quoted_strings(text: &str) -> impl Iterator<Item = &str> {
    let call = &text[..text.find(')').unwrap_or(text.len())];
    call.split('"').skip(1).step_by(2)
}

/// `perf_event_open` of a disabled counting event on tracepoint `id`, on
/// CPU 0 for every process: it registers the tracepoint and never runs.
fn open_disabled_tracepoint_event(id: u64) -> std::io::Result<OwnedFd> {
    /// `PERF_TYPE_TRACEPOINT`.
    const TYPE_TRACEPOINT: u32 = 2;
    /// `PERF_ATTR_SIZE_VER5`: every field up to here is ours to set.
    const ATTR_SIZE: u32 = 112;
    /// The first bit of the flags word: `disabled`.
    const DISABLED: u64 = 1;
    /// `PERF_FLAG_FD_CLOEXEC`: the tests' processes must not inherit it.
    const FD_CLOEXEC: libc::c_ulong = 1 << 3;
    // struct perf_event_attr up to VER5, as 14 u64 words: type and size
    // share the first, config is the second, the flags are the sixth.
    let mut attr = [0u64; ATTR_SIZE as usize / 8];
    attr[0] = u64::from(TYPE_TRACEPOINT) | (u64::from(ATTR_SIZE) << 32);
    attr[1] = id;
    attr[5] = DISABLED;
    // SAFETY: `attr` is a perf_event_attr of the size it declares, alive
    // for the call; the kernel only reads it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            attr.as_ptr(),
            -1 as libc::pid_t,
            0 as libc::c_int,
            -1 as libc::c_int,
            FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_tables_tracepoints_are_found() {
        let found = probe_table_tracepoints();
        for expected in [
            ("sched", "sched_process_exec"),
            ("sched", "sched_process_exit"),
            ("sock", "inet_sock_set_state"),
            ("syscalls", "sys_enter_connect"),
            ("syscalls", "sys_exit_openat"),
            ("syscalls", "sys_enter_ioctl"),
        ] {
            assert!(found.contains(&expected), "{expected:?} not in {found:?}");
        }
        // The parser reads `syscall(` calls, not the helper's definition.
        assert!(found.iter().all(|(category, name)| !category.is_empty()
            && !name.is_empty()
            && !name.contains(' ')));
        // Every entry once; the helpers' own bodies,
        // `Tracepoint("syscalls", name)`, name none.
        assert_eq!(
            found.len(),
            PROBE_TABLE.matches("Tracepoint(\"").count()
                - PROBE_TABLE
                    .matches("Tracepoint(\"syscalls\", name)")
                    .count()
                - PROBE_TABLE
                    .matches("Tracepoint(\"syscalls\", tracepoint)")
                    .count()
                + PROBE_TABLE.matches("syscall(\"").count()
                + PROBE_TABLE.matches("file_exit(\"").count(),
        );
    }
}
