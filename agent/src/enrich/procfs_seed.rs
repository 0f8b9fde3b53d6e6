//! Reading a process's identity from `/proc`.
//!
//! Used to seed the process table with processes that were running before
//! the agent started, and to fill in a process the table first meets through
//! a later event (its exec happened before the programs were attached).

use std::path::Path;

use crate::enrich::process::ProcessEntry;

/// Reads what `/proc/<pid>` tells about a process. `None` when it is gone.
pub fn read_process(pid: u32) -> Option<ProcessEntry> {
    let process = procfs::process::Process::new(pid as i32).ok()?;
    let stat = process.stat().ok()?;
    let ticks = procfs::ticks_per_second().max(1);
    let start_ns = stat.starttime.saturating_mul(1_000_000_000) / ticks;
    let status = process.status().ok();
    let argv = process.cmdline().unwrap_or_default();
    let exe = process
        .exe()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let exe_fileless = exe.ends_with(" (deleted)") || exe.starts_with("/memfd:");
    Some(ProcessEntry {
        pid,
        ppid: stat.ppid.max(0) as u32,
        start_ns,
        parent_start_ns: 0,
        uid: status.as_ref().map(|s| s.ruid).unwrap_or(0),
        gid: status.as_ref().map(|s| s.rgid).unwrap_or(0),
        euid: status.as_ref().map(|s| s.euid).unwrap_or(0),
        exe: exe.into(),
        argv_truncated: argv.len() > aiwatch_common::ARGS_MAX,
        argv: argv.into_iter().take(aiwatch_common::ARGS_MAX).collect(),
        comm: stat.comm.into(),
        cgroup_id: cgroup_id(pid).unwrap_or(0),
        mnt_ns: ns_inode(pid, "mnt"),
        pid_ns: ns_inode(pid, "pid"),
        exe_fileless,
        stdio_socket: false,
        exited_ns: None,
    })
}

/// Every process on the host, for seeding.
pub fn all_processes() -> Vec<ProcessEntry> {
    let Ok(all) = procfs::process::all_processes() else {
        return Vec::new();
    };
    all.filter_map(|p| p.ok())
        .filter_map(|p| read_process(p.pid as u32))
        .collect()
}

/// The cgroup v2 path of a process (`0::<path>` in `/proc/<pid>/cgroup`).
pub fn cgroup_path(pid: u32) -> Option<String> {
    let groups = procfs::process::Process::new(pid as i32)
        .and_then(|process| process.cgroups())
        .ok()?;
    groups
        .into_iter()
        .find(|group| group.hierarchy == 0 && group.controllers.is_empty())
        .map(|group| group.pathname)
}

/// The cgroup v2 id (the inode of its folder), as `bpf_get_current_cgroup_id`
/// reports it.
pub fn cgroup_id(pid: u32) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let path = cgroup_path(pid)?;
    let root = cgroup2_root()?;
    let dir = root.join(path.trim_start_matches('/'));
    std::fs::metadata(dir).ok().map(|m| m.ino())
}

/// Where cgroup v2 is mounted: `/sys/fs/cgroup` on unified hosts,
/// `/sys/fs/cgroup/unified` on hybrid ones.
pub fn cgroup2_root() -> Option<&'static Path> {
    ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .into_iter()
        .map(Path::new)
        .find(|p| is_cgroup2(p))
}

fn is_cgroup2(path: &Path) -> bool {
    path.join("cgroup.controllers").exists()
}

fn ns_inode(pid: u32, ns: &str) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/ns/{ns}"))
        .ok()
        .map(|m| m.ino() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_test_process() {
        let me = read_process(std::process::id()).expect("own /proc entry");
        assert_eq!(me.pid, std::process::id());
        assert!(me.exe.contains("aiwatch"), "{}", me.exe);
        assert!(me.start_ns > 0);
        assert!(me.ppid > 0);
    }

    #[test]
    fn gone_process_is_none() {
        // pid_max is at most 2^22.
        assert!(read_process(u32::MAX - 1).is_none());
    }
}
