//! Converting the kernel's boot-clock timestamps to wall-clock time.
//!
//! Records carry `bpf_ktime_get_boot_ns` (monotonic, counts suspend). The
//! offset to the realtime clock is taken once at start-up; a wall-clock step
//! afterwards shifts later times, as it would for any log.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug)]
pub struct BootClock {
    /// Realtime minus boottime, in nanoseconds since the epoch.
    offset_ns: i128,
}

impl BootClock {
    pub fn new() -> Self {
        let boot = now_boot_ns();
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        Self {
            offset_ns: real - boot as i128,
        }
    }

    /// A clock with a fixed offset, for tests and replays.
    pub fn with_offset_ns(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    pub fn to_system_time(&self, boot_ns: u64) -> SystemTime {
        let ns = (self.offset_ns + boot_ns as i128).max(0) as u128;
        UNIX_EPOCH + Duration::new((ns / 1_000_000_000) as u64, (ns % 1_000_000_000) as u32)
    }

    /// RFC 3339 in UTC with nanoseconds.
    pub fn rfc3339(&self, boot_ns: u64) -> String {
        rfc3339(self.to_system_time(boot_ns))
    }
}

impl Default for BootClock {
    fn default() -> Self {
        Self::new()
    }
}

pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_nanos(time).to_string()
}

/// `CLOCK_BOOTTIME` now, in nanoseconds: the clock the kernel stamps with.
pub fn now_boot_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_time_maps_to_now() {
        let clock = BootClock::new();
        let then = clock.to_system_time(now_boot_ns());
        let drift = SystemTime::now().duration_since(then).unwrap_or_default();
        assert!(drift < Duration::from_secs(1), "{drift:?}");
    }

    #[test]
    fn formats_rfc3339() {
        let clock = BootClock::with_offset_ns(1_700_000_000_000_000_000);
        assert_eq!(clock.rfc3339(5), "2023-11-14T22:13:20.000000005Z");
    }
}
