//! Load-time globals, written by the agent with `EbpfLoader::set_global`
//! before the programs are verified. The verifier sees them as constants, so
//! a switched-off family costs one predictable branch.

use aiwatch_common::{KernelOffsets, OFFSET_UNKNOWN};

#[unsafe(no_mangle)]
pub(crate) static OFFSETS: KernelOffsets = KernelOffsets {
    task_pid: OFFSET_UNKNOWN,
    task_tgid: OFFSET_UNKNOWN,
    task_group_leader: OFFSET_UNKNOWN,
    task_real_parent: OFFSET_UNKNOWN,
    task_start_boottime: OFFSET_UNKNOWN,
    task_exit_code: OFFSET_UNKNOWN,
    task_signal: OFFSET_UNKNOWN,
    task_mm: OFFSET_UNKNOWN,
    task_fs: OFFSET_UNKNOWN,
    task_files: OFFSET_UNKNOWN,
    task_nsproxy: OFFSET_UNKNOWN,
    task_cred: OFFSET_UNKNOWN,
    signal_live: OFFSET_UNKNOWN,
    cred_euid: OFFSET_UNKNOWN,
    cred_egid: OFFSET_UNKNOWN,
    mm_arg_start: OFFSET_UNKNOWN,
    mm_arg_end: OFFSET_UNKNOWN,
    mm_exe_file: OFFSET_UNKNOWN,
    fs_pwd: OFFSET_UNKNOWN,
    files_fdt: OFFSET_UNKNOWN,
    fdt_max_fds: OFFSET_UNKNOWN,
    fdt_fd: OFFSET_UNKNOWN,
    file_f_path: OFFSET_UNKNOWN,
    file_f_inode: OFFSET_UNKNOWN,
    path_mnt: OFFSET_UNKNOWN,
    path_dentry: OFFSET_UNKNOWN,
    dentry_d_parent: OFFSET_UNKNOWN,
    dentry_d_name: OFFSET_UNKNOWN,
    dentry_d_inode: OFFSET_UNKNOWN,
    qstr_name: OFFSET_UNKNOWN,
    vfsmount_mnt_root: OFFSET_UNKNOWN,
    mount_mnt: OFFSET_UNKNOWN,
    mount_mnt_parent: OFFSET_UNKNOWN,
    mount_mnt_mountpoint: OFFSET_UNKNOWN,
    inode_i_mode: OFFSET_UNKNOWN,
    inode_i_rdev: OFFSET_UNKNOWN,
    inode_i_nlink: OFFSET_UNKNOWN,
    nsproxy_mnt_ns: OFFSET_UNKNOWN,
    nsproxy_pid_ns: OFFSET_UNKNOWN,
    mnt_ns_inum: OFFSET_UNKNOWN,
    pid_ns_inum: OFFSET_UNKNOWN,
    tcp_bytes_acked: OFFSET_UNKNOWN,
    tcp_bytes_received: OFFSET_UNKNOWN,
    file_private_data: OFFSET_UNKNOWN,
    socket_sk: OFFSET_UNKNOWN,
    socket_type: OFFSET_UNKNOWN,
    sk_daddr: OFFSET_UNKNOWN,
    sk_rcv_saddr: OFFSET_UNKNOWN,
    sk_dport: OFFSET_UNKNOWN,
    sk_num: OFFSET_UNKNOWN,
    sk_family: OFFSET_UNKNOWN,
    sk_v6_daddr: OFFSET_UNKNOWN,
    sk_v6_rcv_saddr: OFFSET_UNKNOWN,
    sk_shutdown: OFFSET_UNKNOWN,
    tcp_snd_una: OFFSET_UNKNOWN,
    tcp_write_seq: OFFSET_UNKNOWN,
    inode_i_size: OFFSET_UNKNOWN,
    inode_i_ino: OFFSET_UNKNOWN,
    inode_i_sb: OFFSET_UNKNOWN,
    super_block_s_dev: OFFSET_UNKNOWN,
    nsproxy_net_ns: OFFSET_UNKNOWN,
    net_ns_inum: OFFSET_UNKNOWN,
    task_comm: OFFSET_UNKNOWN,
    cred_uid: OFFSET_UNKNOWN,
    cred_gid: OFFSET_UNKNOWN,
    linux_binprm_file: OFFSET_UNKNOWN,
    linux_binprm_filename: OFFSET_UNKNOWN,
    file_f_flags: OFFSET_UNKNOWN,
    files_fdtab: OFFSET_UNKNOWN,
    files_fd_array: OFFSET_UNKNOWN,
    qstr_len: OFFSET_UNKNOWN,
    dentry_d_iname: OFFSET_UNKNOWN,
};

/// The agent's own process id: the agent never traces itself.
#[unsafe(no_mangle)]
static AGENT_PID: u32 = 0;

/// `FAMILY_*` bits of the event families that are on.
#[unsafe(no_mangle)]
static FAMILIES: u32 = 0;

/// Reads one field of [`OFFSETS`] as a `usize`.
macro_rules! offset {
    ($field:ident) => {{
        // SAFETY: an aligned read of an immutable static that nothing
        // writes while the program runs (the loader patches it before
        // verification). Volatile so that the compiler does not fold the
        // initialiser into the code.
        #[allow(unused_unsafe)]
        let value = unsafe { core::ptr::read_volatile(&raw const $crate::globals::OFFSETS.$field) };
        value as usize
    }};
}
pub(crate) use offset;

#[inline(always)]
pub fn agent_pid() -> u32 {
    // SAFETY: as in `offset!`: an aligned read of an immutable static.
    unsafe { core::ptr::read_volatile(&raw const AGENT_PID) }
}

#[inline(always)]
pub fn family_on(family: u32) -> bool {
    // SAFETY: as in `offset!`: an aligned read of an immutable static.
    unsafe { core::ptr::read_volatile(&raw const FAMILIES) & family != 0 }
}

/// Non-zero: every program returns at once. The benchmark's "floor": the
/// same hooks attached, with programs the verifier reduces to `return 0`.
#[unsafe(no_mangle)]
static FLOOR: u32 = 0;

/// Whether the programs run as the benchmark floor (`aiwatch run
/// --bench-floor`); every program tests it first.
#[inline(always)]
pub fn floor() -> bool {
    // SAFETY: as in `offset!`: an aligned read of an immutable static.
    unsafe { core::ptr::read_volatile(&raw const FLOOR) != 0 }
}
