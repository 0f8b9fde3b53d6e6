//! The loops start with a descriptor table of normal size.
//!
//! The kernel sizes a child's descriptor table at fork by the highest
//! descriptor its parent has open, and exec keeps it. A bench started from
//! a shell or a job runner that leaks a high descriptor (CI runners and
//! terminal multiplexers often hold one past 200) would give every loop a
//! grown table, which no process started by systemd or a container runtime
//! has. That changes what is measured: the agent folds a tracked read with
//! direct loads through the 64 descriptors embedded in the kernel's
//! `files_struct`, and with checked reads through a grown table. So the
//! bench closes what it inherited at or past that boundary before it starts
//! anything; nothing of its own is open that high.

use std::os::fd::RawFd;

/// Descriptors embedded in a `files_struct` on 64-bit kernels
/// (`NR_OPEN_DEFAULT`): a table holding none past them is not grown.
pub const EMBEDDED: RawFd = 64;

/// Closes this process's descriptors numbered [`EMBEDDED`] or more and
/// returns them, so that every process it starts from now on has an
/// embedded table.
pub fn close_high() -> std::io::Result<Vec<RawFd>> {
    // Listed first, closed after: the listing holds a descriptor of its own.
    let high: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<RawFd>().ok())
        .filter(|&fd| fd >= EMBEDDED)
        .collect();
    for &fd in &high {
        // SAFETY: closes a descriptor this process inherited and no Rust
        // object owns (nothing the bench opens is numbered this high); a
        // descriptor already gone only makes `close` fail, which is
        // harmless here.
        unsafe { libc::close(fd) };
    }
    Ok(high)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `FDSize` of a child started now.
    fn child_table_size() -> u64 {
        let output = std::process::Command::new("grep")
            .args(["FDSize", "/proc/self/status"])
            .output()
            .expect("run grep");
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .trim_start_matches("FDSize:")
            .trim()
            .parse()
            .expect("FDSize")
    }

    #[test]
    fn a_child_started_after_the_close_has_an_embedded_table() {
        use std::os::fd::AsRawFd;
        // A leaked high descriptor, as a job runner may pass one.
        let null = std::fs::File::open("/dev/null").expect("open /dev/null");
        // SAFETY: duplicates an open descriptor onto a free one at or above
        // 200, which nothing owns until `close_high` closes it.
        let leaked = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD, 200) };
        assert!(leaked >= 200, "cannot duplicate a descriptor: {leaked}");
        assert!(child_table_size() > EMBEDDED as u64);
        let closed = close_high().expect("list /proc/self/fd");
        assert!(closed.contains(&leaked), "{closed:?}");
        assert_eq!(child_table_size(), EMBEDDED as u64);
    }
}
