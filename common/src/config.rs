//! Configuration the agent hands to the kernel programs: struct offsets and
//! switches as load-time globals, interest sets as maps.

/// Byte offsets of the kernel struct fields the programs read.
///
/// The agent resolves them from the running kernel's BTF at load time, so the
/// same object loads on any kernel with BTF. [`OFFSET_UNKNOWN`] means "not
/// found": a program that needs a missing offset skips that field.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KernelOffsets {
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_group_leader: u32,
    pub task_real_parent: u32,
    pub task_start_boottime: u32,
    pub task_exit_code: u32,
    pub task_signal: u32,
    pub task_mm: u32,
    pub task_fs: u32,
    pub task_files: u32,
    pub task_nsproxy: u32,
    pub task_cred: u32,
    pub signal_live: u32,
    pub cred_euid: u32,
    pub cred_egid: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub mm_exe_file: u32,
    pub fs_pwd: u32,
    pub files_fdt: u32,
    pub fdt_max_fds: u32,
    pub fdt_fd: u32,
    pub file_f_path: u32,
    pub file_f_inode: u32,
    pub path_mnt: u32,
    pub path_dentry: u32,
    pub dentry_d_parent: u32,
    pub dentry_d_name: u32,
    pub dentry_d_inode: u32,
    pub qstr_name: u32,
    pub vfsmount_mnt_root: u32,
    /// Offset of `struct vfsmount mnt` inside `struct mount`.
    pub mount_mnt: u32,
    pub mount_mnt_parent: u32,
    pub mount_mnt_mountpoint: u32,
    pub inode_i_mode: u32,
    pub inode_i_rdev: u32,
    pub inode_i_nlink: u32,
    pub nsproxy_mnt_ns: u32,
    pub nsproxy_pid_ns: u32,
    /// Offset of `ns.inum` inside `struct mnt_namespace`.
    pub mnt_ns_inum: u32,
    /// Offset of `ns.inum` inside `struct pid_namespace`.
    pub pid_ns_inum: u32,
    pub tcp_bytes_acked: u32,
    pub tcp_bytes_received: u32,
    /// `file->private_data`: the `struct socket *` of a socket file.
    pub file_private_data: u32,
    pub socket_sk: u32,
    /// `socket->type`: `SOCK_STREAM`, `SOCK_DGRAM`, ...
    pub socket_type: u32,
    /// `sock->__sk_common` fields: addresses and ports of a socket.
    pub sk_daddr: u32,
    pub sk_rcv_saddr: u32,
    pub sk_dport: u32,
    pub sk_num: u32,
    pub sk_family: u32,
    pub sk_v6_daddr: u32,
    pub sk_v6_rcv_saddr: u32,
    /// `sock->sk_shutdown`: RCV_SHUTDOWN (1) once the peer's FIN arrived,
    /// SEND_SHUTDOWN (2) once ours is queued.
    pub sk_shutdown: u32,
    pub tcp_snd_una: u32,
    pub tcp_write_seq: u32,
    pub inode_i_size: u32,
    pub inode_i_ino: u32,
    pub inode_i_sb: u32,
    pub super_block_s_dev: u32,
    pub nsproxy_net_ns: u32,
    /// Offset of `ns.inum` inside `struct net`.
    pub net_ns_inum: u32,
    pub task_comm: u32,
    pub cred_uid: u32,
    pub cred_gid: u32,
    pub linux_binprm_file: u32,
    pub linux_binprm_filename: u32,
    pub file_f_flags: u32,
    /// `files_struct.fdtab`, the descriptor table embedded in it.
    pub files_fdtab: u32,
    /// `files_struct.fd_array`, known only when it has
    /// `FD_ARRAY_LEN` slots.
    pub files_fd_array: u32,
    /// `qstr.len`, the length of a dentry's name.
    pub qstr_len: u32,
    /// The dentry's inline name buffer (`d_iname`, `d_shortname` since
    /// 6.14), known only when it holds at least `INLINE_NAME_LOADED` bytes.
    pub dentry_d_iname: u32,
}

/// Bytes of a dentry's inline name the kernel programs load: a name shorter
/// than this, stored inline, is read without a helper call.
pub const INLINE_NAME_LOADED: u32 = 32;

/// Slots of `files_struct.fd_array` (`NR_OPEN_DEFAULT`, `BITS_PER_LONG`):
/// the kernel programs index it only below this.
pub const FD_ARRAY_LEN: u32 = 64;

/// An offset this kernel's BTF does not have. (Zero is a real offset: the
/// first field of a struct.)
pub const OFFSET_UNKNOWN: u32 = u32::MAX;

/// Event families that can be switched on and off (`FAMILIES` global).
pub const FAMILY_PROCESS: u32 = 1;
pub const FAMILY_FILE: u32 = 2;
pub const FAMILY_NET: u32 = 4;
pub const FAMILY_PRIVILEGE: u32 = 8;
pub const FAMILY_GPU: u32 = 16;
/// Clear text of TLS library calls and plain HTTP to model servers.
pub const FAMILY_LLM: u32 = 32;
pub const FAMILY_ALL: u32 = 63;

/// Values of the `TRACKED_PIDS` and `TRACKED_CGROUPS` maps: bits saying why
/// the process or cgroup is tracked. `TRACKED_CGROUPS` is the one per-cgroup
/// map: later uses of a cgroup (enforcement, Kubernetes identity) add their
/// own bits to the same entry, and each reader tests only its own bit.
///
/// Report every event of it (file, network, privilege), whatever the path.
pub const TRACK_FULL: u32 = 1;
/// May open accelerator devices while accelerator deny is on (a declared
/// workload's processes and cgroups; `probes/accel.rs`).
pub const TRACK_ACCEL_ALLOWED: u32 = 2;
/// The purpose bits of a tracking value; the bits above them hold the
/// process's or cgroup's enforcement scope ([`track_scope`]).
pub const TRACK_PURPOSE_MASK: u32 = 0xffff;
/// Shift of the enforcement scope in a tracking value.
pub const TRACK_SCOPE_SHIFT: u32 = 16;

/// A tracking value: purpose bits and the enforcement scope of the
/// workload the process or cgroup belongs to (0: none). The kernel copies
/// a tracked parent's value to its children at fork, scope included.
pub const fn track_value(purposes: u32, scope: u16) -> u32 {
    (purposes & TRACK_PURPOSE_MASK) | ((scope as u32) << TRACK_SCOPE_SHIFT)
}

/// The enforcement scope in a tracking value (0: none).
pub const fn track_scope(value: u32) -> u16 {
    (value >> TRACK_SCOPE_SHIFT) as u16
}

/// Key of the `PATH_PREFIXES` LPM trie: path bytes, `prefix_len` in bits.
pub const PREFIX_KEY_LEN: usize = 64;

/// Key of the `PATH_SUFFIXES` map: the last [`SUFFIX_KEY_LEN`] bytes of a
/// file name's extension (lower case) or of its base name, stored last byte
/// first and NUL-padded: `"model.onnx"` has the extension key `"xnno"` and
/// the base name key `"xnno.ledom"`. Reversed, because the kernel builds
/// the key while scanning the name backwards from its end.
pub const SUFFIX_KEY_LEN: usize = 16;

/// Kinds of interest for path suffix entries.
pub const SUFFIX_EXTENSION: u8 = 1;
pub const SUFFIX_BASENAME: u8 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SuffixKey {
    pub kind: u8,
    pub bytes: [u8; SUFFIX_KEY_LEN],
}

/// The interest prefilters `SUFFIX_FILTER` and `PREFIX_FILTER`: bitmaps of
/// 65,536 bits (in `FILTER_WORDS` u64 words) indexed by two bytes, tested
/// before the exact lookups so that nearly every path costs two array reads
/// instead of an LPM and two hash lookups. A set bit only means "look it up".
///
/// - `SUFFIX_FILTER`: the first two bytes of a [`SuffixKey`] (the last two
///   characters of an extension or base name, last first), for both kinds.
/// - `PREFIX_FILTER`: the two bytes after the leading `/` of an absolute
///   name (0 past the end of a shorter name); a prefix shorter than that
///   sets every bit it could stand for.
pub const FILTER_WORDS: u32 = 1024;

/// The word and the bit of the filter entry for bytes `first`, `second`.
pub const fn filter_bit(first: u8, second: u8) -> (u32, u64) {
    let index = first as u32 | (second as u32) << 8;
    (index >> 6, 1u64 << (index & 63))
}

/// Slots of the `TRACKING` array: non-zero while `TRACKED_PIDS` (or
/// `TRACKED_CGROUPS`) may hold entries. The agent sets a slot before its
/// first insert and clears it once the map is empty, so a host that tracks
/// nothing pays no hash lookup to learn it.
pub const TRACKING_PIDS: u32 = 0;
pub const TRACKING_CGROUPS: u32 = 1;
/// Slot of `TRACKING` the agent bumps after any write that may stop a
/// process from being tracked (an untracked pid, a cgroup removed or its
/// purposes changed): it ends every thread's memo of being tracked (the
/// file entries remember a tracked thread, so that its calls skip the
/// hash lookups).
pub const TRACKING_EPOCH: u32 = 2;
/// Slots of the `TRACKING` array.
pub const TRACKING_LEN: u32 = 3;

/// An executable's identity for the enforcement maps: the kernel's
/// `sb->s_dev` (`MAJOR << 20 | MINOR`) and the inode number of
/// `mm->exe_file`. Names are never matched: a copy of `/bin/sh` to
/// `/tmp/python3` keeps the identity of a new file, not of a name.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExeKey {
    pub dev: u32,
    pub _pad: u32,
    pub ino: u64,
}

/// Set in an `EXEC_DENY` or `PROTECTED_FILES` value: the rule's action is
/// `deny`, which only the BPF LSM carries out (EPERM at `bprm_check_security`
/// or `file_open`, no kill); the signal paths leave such entries alone. The
/// agent sets it only where the LSM programs attached. The other bits are
/// the rule's slot ([`enforce_slot`]).
pub const ENFORCE_REFUSE_ONLY: u32 = 1 << 31;

/// The rule slot of an `EXEC_DENY` or `PROTECTED_FILES` value.
pub const fn enforce_slot(value: u32) -> u32 {
    value & !ENFORCE_REFUSE_ONLY
}

/// Key of `EXEC_ALLOW`: an executable a workload's exec allowlist lets run
/// (`scope`: the workload's enforcement scope, see [`track_scope`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExecAllowKey {
    pub scope: u32,
    pub _pad: u32,
    pub exe: ExeKey,
}

/// Key of `OPEN_ALLOW`: an executable allowed to open the files a rule
/// protects (`slot`: the rule's slot, the value of its `PROTECTED_FILES`
/// entries).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OpenAllowKey {
    pub slot: u32,
    pub _pad: u32,
    pub exe: ExeKey,
}

/// Slots of the `ENFORCE_CONTROL` array, written by the agent.
/// Non-zero while the kernel may kill (the global kill switch clears it).
pub const ENFORCE_ON: u32 = 0;
/// Kills allowed per cgroup in each window before it falls back to
/// alerting only; 0 means no limit.
pub const ENFORCE_KILL_BUDGET: u32 = 1;
/// The kill-budget window in nanoseconds.
pub const ENFORCE_KILL_WINDOW_NS: u32 = 2;
/// Accelerator deny: [`ACCEL_OFF`], [`ACCEL_AUDIT`] or [`ACCEL_ENFORCE`].
pub const ENFORCE_ACCEL: u32 = 3;
/// Non-zero whenever `PROTECTED_FILES` may hold an entry: raised before the
/// first file is protected, lowered only once none is. While it is 0 a
/// folded read skips the protected-file lookup.
pub const ENFORCE_PROTECTED: u32 = 4;
pub const ENFORCE_CONTROL_LEN: u32 = 5;

/// Values of `ENFORCE_CONTROL[ENFORCE_ACCEL]`: accelerator opens outside
/// the allowlist are let through unmarked, marked "would deny", or refused.
pub const ACCEL_OFF: u64 = 0;
pub const ACCEL_AUDIT: u64 = 1;
pub const ACCEL_ENFORCE: u64 = 2;

/// Key of the `EGRESS_ALLOW` LPM trie: a destination a scope may reach.
/// `prefix_len` (in the trie's key) counts bits from `scope`: 64 for the
/// scope and port, plus the prefix of the address. Addresses are IPv6;
/// IPv4 is stored IPv4-mapped (`::ffff:a.b.c.d`, a /n network as /96+n), so
/// `connect4` and a mapped address in `connect6` hit the same entry.
/// `port` 0 means any port: the kernel looks up the real port, then 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EgressKey {
    /// The enforcement scope (big-endian, so the trie's prefix starts
    /// with it whatever the host order).
    pub scope: [u8; 4],
    /// Destination port, big-endian; 0: any.
    pub port: [u8; 2],
    pub _pad: [u8; 2],
    pub addr: [u8; 16],
}

/// Bits of an [`EgressKey`] before the address.
pub const EGRESS_KEY_FIXED_BITS: u32 = 64;

/// Values of the `EGRESS_SCOPES` map, per enforcement scope: the scope's
/// egress allowlist is enforced (connects and sends elsewhere get EPERM).
pub const EGRESS_ENFORCED: u32 = 1;

/// Per-cgroup kill accounting for the rate limit (`KILL_BUDGETS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct KillBudget {
    pub window_start_ns: u64,
    pub kills: u64,
}

/// Counters of the `STATS` per-CPU array, indexed by [`Stat::index`] plus
/// an [`crate::EventKind::slot`].
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    /// Records the ring buffer had no room for.
    RingbufLost = 0,
    /// Events the kernel dropped because nothing was interested.
    Filtered = 1,
    /// Events whose pending entry could not be stored (map full), or whose
    /// syscall exit was never seen (an entry found by another call's exit).
    PendingLost = 2,
    /// Children of tracked processes that could not be added to
    /// `TRACKED_PIDS` (map full): their events are filtered as untracked.
    /// Counted on the `fork` slot.
    TrackLost = 3,
}

impl Stat {
    pub const COUNT: u32 = 4;
    pub const fn index(self, kind_slot: u32) -> u32 {
        self as u32 * crate::KIND_SLOTS + kind_slot
    }
}

/// Entries of the `STATS` array.
pub const STATS_LEN: u32 = Stat::COUNT * crate::KIND_SLOTS;

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: `repr(C)`, `Copy` and all `u32` fields: any bytes are valid
    // and there is no padding.
    unsafe impl aya::Pod for KernelOffsets {}
    // SAFETY: `repr(C)`, `Copy`, a `u8` and a byte array: alignment 1, no
    // padding, any bytes valid.
    unsafe impl aya::Pod for SuffixKey {}
    // SAFETY: `repr(C)`, `Copy`, integers only with the padding spelled out
    // as a field (`_pad`): any bytes are valid.
    unsafe impl aya::Pod for ExeKey {}
    // SAFETY: `repr(C)`, `Copy`, two `u64`s: no padding, any bytes valid.
    unsafe impl aya::Pod for KillBudget {}
    // SAFETY: `repr(C)`, `Copy`, byte arrays only (alignment 1, no
    // padding): any bytes are valid.
    unsafe impl aya::Pod for EgressKey {}
    // SAFETY: `repr(C)`, `Copy`, integers and an `ExeKey` with the padding
    // spelled out as fields: any bytes are valid.
    unsafe impl aya::Pod for OpenAllowKey {}
    // SAFETY: as for `OpenAllowKey`.
    unsafe impl aya::Pod for ExecAllowKey {}
}
