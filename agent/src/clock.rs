//! Converting the kernel's boot-clock timestamps to wall-clock time, and the
//! typed wall-clock instant the agent passes around: RFC 3339 text (UTC,
//! nanoseconds) only where an event, an alert or a state file is written or
//! read.
//!
//! Records carry `bpf_ktime_get_boot_ns` (monotonic, counts suspend). The
//! offset to the realtime clock is taken once at start-up; a wall-clock step
//! afterwards shifts later times, as it would for any log.

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

    /// The wall-clock time of a kernel stamp.
    pub fn wall_time(&self, boot_ns: u64) -> WallTime {
        WallTime::new(self.to_system_time(boot_ns))
    }
}

impl Default for BootClock {
    fn default() -> Self {
        Self::new()
    }
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

/// An instant on the wall clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WallTime(SystemTime);

impl WallTime {
    pub fn new(time: SystemTime) -> Self {
        Self(time)
    }

    /// `nanos` after the Unix epoch.
    pub fn from_unix_nanos(nanos: u128) -> Self {
        let seconds = u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX);
        let subsec = (nanos % 1_000_000_000) as u32;
        Self(UNIX_EPOCH + Duration::new(seconds, subsec))
    }

    /// Nanoseconds since the Unix epoch; `None` before it or past `u64`.
    pub fn unix_nanos(self) -> Option<u64> {
        let since_epoch = self.0.duration_since(UNIX_EPOCH).ok()?;
        u64::try_from(since_epoch.as_nanos()).ok()
    }

    /// RFC 3339 in UTC (`2026-11-29T12:03:44.120456789Z`); a space for the
    /// `T` and a missing `Z` are accepted, offsets are not.
    pub fn parse(text: &str) -> Result<Self, humantime::TimestampError> {
        humantime::parse_rfc3339_weak(text).map(Self)
    }
}

impl fmt::Display for WallTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_rfc3339_nanos(self.0))
    }
}

/// A possibly unknown time as a table or a sentence shows it: `-` when
/// unknown.
pub fn or_dash(time: Option<WallTime>) -> String {
    time.map_or_else(|| "-".to_string(), |time| time.to_string())
}

impl Serialize for WallTime {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for WallTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        WallTime::parse(&text).map_err(|error| {
            serde::de::Error::custom(format_args!(
                "{text:?} is not an RFC 3339 time in UTC: {error}"
            ))
        })
    }
}

/// Serde for an `Option<WallTime>` that the schema has always written as a
/// string: an unknown time is `""`, as it was before times were typed.
pub mod or_empty {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::WallTime;

    pub fn serialize<S: Serializer>(
        time: &Option<WallTime>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match time {
            Some(time) => serializer.collect_str(time),
            None => serializer.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<WallTime>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        if text.is_empty() {
            return Ok(None);
        }
        WallTime::parse(&text).map(Some).map_err(|error| {
            serde::de::Error::custom(format_args!(
                "{text:?} is not an RFC 3339 time in UTC: {error}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Stamped {
        #[serde(default, with = "or_empty")]
        time: Option<WallTime>,
    }

    #[test]
    fn round_trips_as_rfc3339_with_nanoseconds() {
        let time = WallTime::from_unix_nanos(1_700_000_000_000_000_005);
        assert_eq!(time.to_string(), "2023-11-14T22:13:20.000000005Z");
        assert_eq!(WallTime::parse(&time.to_string()), Ok(time));
        assert_eq!(time.unix_nanos(), Some(1_700_000_000_000_000_005));
        let json = serde_json::to_string(&Stamped { time: Some(time) }).unwrap();
        assert_eq!(json, r#"{"time":"2023-11-14T22:13:20.000000005Z"}"#);
        assert_eq!(
            serde_json::from_str::<Stamped>(&json).unwrap().time,
            Some(time)
        );
    }

    #[test]
    fn an_unknown_time_is_an_empty_string_and_a_bad_one_an_error() {
        assert_eq!(
            serde_json::to_string(&Stamped { time: None }).unwrap(),
            r#"{"time":""}"#
        );
        assert_eq!(serde_json::from_str::<Stamped>("{}").unwrap().time, None);
        assert_eq!(
            serde_json::from_str::<Stamped>(r#"{"time":""}"#)
                .unwrap()
                .time,
            None
        );
        let error = serde_json::from_str::<Stamped>(r#"{"time":"yesterday"}"#).unwrap_err();
        assert!(
            error.to_string().contains("not an RFC 3339 time"),
            "{error}"
        );
        assert!(WallTime::parse("2026-01-01T00:00:00Z").is_ok());
    }

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
        assert_eq!(
            clock.wall_time(5).to_string(),
            "2023-11-14T22:13:20.000000005Z"
        );
    }
}
