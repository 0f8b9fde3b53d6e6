//! Compile-time checks of the ABI: record layouts, event-kind numbering
//! and the `STATS` slot table. A change that breaks one of these fails the
//! build of both sides, instead of decoding garbage at run time.
//!
//! - Every record is exactly the sum of its fields: no padding, whose bytes
//!   the kernel would leave uninitialised and the agent would read. The
//!   kernel side's plain-data reads (`ebpf/src/plain.rs`) rely on it too.
//! - Every record starts with its [`EventHeader`] and is a multiple of 8
//!   bytes, the ring buffer's alignment: the agent's decoder borrows
//!   records in place when they are aligned, and checks `header.size`
//!   against `size_of` of the record its kind names.
//! - Event kind numbers fall in their family's range of 100, at most
//!   [`KIND_SLOTS`]` / FAMILIES` per family, so each has its own slot in
//!   per-kind counter arrays and in `STATS`.

use core::mem::{offset_of, size_of};

use crate::{
    config::{
        EgressKey, ExeKey, ExecAllowKey, KernelOffsets, OpenAllowKey, Stat, SuffixKey,
        EGRESS_KEY_FIXED_BITS, STATS_LEN,
    },
    event::*,
    FAMILY_ALL, FAMILY_FILE, FAMILY_GPU, FAMILY_LLM, FAMILY_NET, FAMILY_PRIVILEGE, FAMILY_PROCESS,
    PREFIX_KEY_LEN, SUFFIX_KEY_LEN,
};

const HEADER: usize = size_of::<EventHeader>();
const SOCKADDR: usize = size_of::<SockAddr>();
const PATH: usize = size_of::<KernelPath>();

/// Asserts that `$record` is `$size` bytes, starts with its header and is a
/// multiple of 8 bytes.
macro_rules! record {
    ($record:ty, $size:expr) => {
        const _: () = assert!(size_of::<$record>() == $size);
        const _: () = assert!(offset_of!($record, header) == 0);
        const _: () = assert!(size_of::<$record>().is_multiple_of(8));
        const _: () = assert!(size_of::<$record>() <= u32::MAX as usize);
    };
}

// kind, flags, size, ktime_ns, pid, tid, uid, gid, cgroup_id, comm.
const _: () = assert!(HEADER == 2 + 2 + 4 + 8 + 4 * 4 + 8 + COMM_LEN);
const _: () = assert!(PATH == 4 * 2 + PATH_BUF_LEN);
const _: () = assert!(SOCKADDR == 2 + 2 + 4 + 16);

record!(
    ExecRecord,
    HEADER + 6 * 4 + 8 + 2 + 2 + 4 + NAME_LEN + PATH + ARGS_LEN
);
record!(ForkRecord, HEADER + 4 + 4 + 8);
record!(ExitRecord, HEADER + 4 + 4 + 8);
record!(
    FileRecord,
    HEADER + 4 * 8 + 4 * 4 + 2 + 2 + 4 + 2 * NAME_LEN + 2 * PATH
);
record!(
    NetRecord,
    HEADER + 8 + 4 + 2 + 2 + 2 * SOCKADDR + UNIX_PATH_LEN + 4 + 4 + 4
);
record!(TcpSummaryRecord, HEADER + 2 * SOCKADDR + 3 * 8 + 4 + 4);
record!(
    DnsRecord,
    HEADER + 2 * SOCKADDR + 8 + 4 + 2 + 2 + DNS_PAYLOAD_LEN
);
record!(
    SyscallRecord,
    HEADER + 6 * 8 + 8 + 2 + 2 + 4 + NAME_LEN + PATH
);
record!(GpuIoctlRecord, HEADER + 8 + 4 + 4 + 8);
record!(FileAccessRecord, HEADER + 5 * 8);
record!(
    ClearTextRecord,
    HEADER + 8 + 4 + 4 + 2 + 2 + 4 + SOCKADDR + CLEAR_TEXT_MAX
);

// Map values and keys the agent writes or reads byte for byte.
const _: () = assert!(size_of::<TcpOwner>() == 4 * 4 + 8 + COMM_LEN + 4 * 8 + 2 * SOCKADDR + 4 + 4);
const _: () = assert!(size_of::<FileAccessKey>() == 4 + 4 + 8);
const _: () = assert!(
    size_of::<FileAccessSlot>() == size_of::<FileAccessKey>() + size_of::<FileAccessRecord>()
);
const _: () = assert!(size_of::<DnsOwner>() == 4 * 4 + 8 + COMM_LEN + 4 + 4);
const _: () = assert!(size_of::<KernelOffsets>().is_multiple_of(size_of::<u32>()));
const _: () = assert!(size_of::<EgressKey>() * 8 == EGRESS_KEY_FIXED_BITS as usize + 128);
const _: () = assert!(size_of::<OpenAllowKey>() == 8 + size_of::<ExeKey>());
const _: () = assert!(size_of::<ExecAllowKey>() == 8 + size_of::<ExeKey>());
const _: () = assert!(size_of::<SuffixKey>() == 1 + SUFFIX_KEY_LEN);
const _: () = assert!(PREFIX_KEY_LEN <= NAME_LEN);

// The kernel side indexes these buffers with `& (LEN - 1)` masks, which
// keep an index in bounds only for powers of two.
const _: () = assert!(NAME_LEN.is_power_of_two());
const _: () = assert!(DNS_PAYLOAD_LEN.is_power_of_two());
const _: () = assert!(CLEAR_TEXT_MAX.is_power_of_two());
const _: () = assert!(LLM_PATH_KEY_LEN.is_power_of_two());
const _: () = assert!(CLEAR_TEXT_MAX <= u32::MAX as usize);
// The path walk leaves room for one whole component, and the lengths fit
// the u16 fields that carry them.
const _: () = assert!(PATH_COMPONENT_MAX < PATH_BUF_LEN);
const _: () = assert!(PATH_BUF_LEN <= u16::MAX as usize);
const _: () = assert!(ARGS_LEN <= u16::MAX as usize);
const _: () = assert!(SUFFIX_KEY_LEN < NAME_LEN);

/// The event families, in the order of their kind ranges (100, 200, ...).
const FAMILIES: [u32; 6] = [
    FAMILY_PROCESS,
    FAMILY_FILE,
    FAMILY_NET,
    FAMILY_PRIVILEGE,
    FAMILY_GPU,
    FAMILY_LLM,
];
const _: () = {
    let mut all = 0;
    let mut i = 0;
    while i < FAMILIES.len() {
        assert!(FAMILIES[i] == 1 << i);
        all |= FAMILIES[i];
        i += 1;
    }
    assert!(all == FAMILY_ALL);
};

/// Kinds per family that have a slot of their own.
const SLOTS_PER_FAMILY: u32 = KIND_SLOTS / FAMILIES.len() as u32;
const _: () = assert!(KIND_SLOTS.is_multiple_of(FAMILIES.len() as u32));

const _: () = {
    let mut i = 0;
    while i < EventKind::ALL.len() {
        let kind = EventKind::ALL[i];
        let raw = kind as u16 as u32;
        // In a family's range, within its slots.
        assert!(raw / 100 >= 1 && raw / 100 <= FAMILIES.len() as u32);
        assert!(raw % 100 < SLOTS_PER_FAMILY);
        assert!(kind.slot() < KIND_SLOTS);
        // Round-trips through its number.
        assert!(matches!(EventKind::from_u16(raw as u16), Some(k) if k as u16 == raw as u16));
        // In ABI order, hence each slot used once.
        if i > 0 {
            assert!((EventKind::ALL[i - 1] as u16) < kind as u16);
        }
        i += 1;
    }
};

// Every (counter, kind) pair has its own `STATS` entry.
const _: () = assert!(STATS_LEN == Stat::COUNT * KIND_SLOTS);
const _: () = assert!(Stat::TrackLost as u32 == Stat::COUNT - 1);
const _: () = assert!(Stat::TrackLost.index(KIND_SLOTS - 1) == STATS_LEN - 1);
