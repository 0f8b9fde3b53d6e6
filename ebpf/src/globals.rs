//! Load-time globals, written by the agent with `EbpfLoader::set_global`
//! before the programs are verified. The verifier sees them as constants, so
//! a switched-off family costs one predictable branch.

use aiwatch_common::KernelOffsets;

#[unsafe(no_mangle)]
pub(crate) static OFFSETS: KernelOffsets = KernelOffsets {
    task_pid: 0,
    task_tgid: 0,
    task_group_leader: 0,
    task_real_parent: 0,
    task_start_boottime: 0,
    task_exit_code: 0,
    task_signal: 0,
    task_mm: 0,
    task_fs: 0,
    task_files: 0,
    task_nsproxy: 0,
    task_cred: 0,
    signal_live: 0,
    cred_euid: 0,
    cred_egid: 0,
    mm_arg_start: 0,
    mm_arg_end: 0,
    mm_exe_file: 0,
    fs_pwd: 0,
    files_fdt: 0,
    fdt_max_fds: 0,
    fdt_fd: 0,
    file_f_path: 0,
    file_f_inode: 0,
    path_mnt: 0,
    path_dentry: 0,
    dentry_d_parent: 0,
    dentry_d_name: 0,
    qstr_name: 0,
    vfsmount_mnt_root: 0,
    mount_mnt: 0,
    mount_mnt_parent: 0,
    mount_mnt_mountpoint: 0,
    inode_i_mode: 0,
    inode_i_rdev: 0,
    inode_i_nlink: 0,
    nsproxy_mnt_ns: 0,
    nsproxy_pid_ns: 0,
    mnt_ns_inum: 0,
    pid_ns_inum: 0,
    tcp_bytes_acked: 0,
    tcp_bytes_received: 0,
    file_private_data: 0,
    socket_sk: 0,
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
        // SAFETY: reading a static; volatile so that the compiler does
        // not fold the zero initialiser, which the loader replaces.
        #[allow(unused_unsafe)]
        let value = unsafe { core::ptr::read_volatile(&raw const $crate::globals::OFFSETS.$field) };
        value as usize
    }};
}
pub(crate) use offset;

#[inline(always)]
pub fn agent_pid() -> u32 {
    // SAFETY: see `offset!`.
    unsafe { core::ptr::read_volatile(&raw const AGENT_PID) }
}

#[inline(always)]
pub fn family_on(family: u32) -> bool {
    // SAFETY: see `offset!`.
    unsafe { core::ptr::read_volatile(&raw const FAMILIES) & family != 0 }
}
