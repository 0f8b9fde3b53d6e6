//! Every kernel program aiwatch attaches, and where: the table the loader
//! walks in order. A program of the object that is not in this table is
//! never attached.

use aiwatch_common::{FAMILY_FILE, FAMILY_GPU, FAMILY_NET, FAMILY_PRIVILEGE, FAMILY_PROCESS};
use aya::programs::CgroupSkbAttachType;

#[derive(Clone, Copy, Debug)]
pub enum Attach {
    /// `tracepoint/<category>/<name>`.
    Tracepoint(&'static str, &'static str),
    /// A raw tracepoint by name.
    Raw(&'static str),
    /// A `cgroup/<hook>` program on the root of the cgroup v2 hierarchy
    /// (enforcement: every process of the host passes through it).
    CgroupRoot,
    /// The `cgroup/dev` program, on the same root.
    CgroupDeviceRoot,
    /// A `cgroup_skb` program on the cgroup2 root, linked next to any
    /// other program there, so it sees every socket.
    CgroupSkb(CgroupSkbAttachType),
    /// A BPF LSM program on the named hook; tried only where the kernel
    /// loads LSM programs (`features::KernelFeatures::lsm`).
    Lsm(&'static str),
}

/// One program and where it attaches.
#[derive(Clone, Copy, Debug)]
pub struct Probe {
    /// The program's function name in the object.
    pub program: &'static str,
    pub attach: Attach,
    /// The `FAMILY_*` bit it belongs to; 0 for enforcement programs, which
    /// belong to no event family and are always attached.
    pub family: u32,
    /// The agent refuses to run without it.
    pub required: bool,
}

impl Probe {
    /// The probe's name in logs and metrics (`aiwatch_probe_attached`):
    /// the tracepoint's for a tracepoint, whose program may serve several,
    /// the program's otherwise.
    pub const fn name(&self) -> &'static str {
        match self.attach {
            Attach::Tracepoint(_, name) => name,
            _ => self.program,
        }
    }
}

/// Every probe aiwatch knows, in attach order.
pub const PROBES: &[Probe] = &[
    Probe {
        program: "sched_process_exec",
        attach: Attach::Tracepoint("sched", "sched_process_exec"),
        family: FAMILY_PROCESS,
        required: true,
    },
    Probe {
        program: "sched_process_fork",
        attach: Attach::Raw("sched_process_fork"),
        family: FAMILY_PROCESS,
        required: true,
    },
    Probe {
        program: "sched_process_exit",
        attach: Attach::Tracepoint("sched", "sched_process_exit"),
        family: FAMILY_PROCESS,
        required: true,
    },
    // Network (probes/net.rs).
    Probe {
        program: "sys_enter_connect",
        attach: Attach::Tracepoint("syscalls", "sys_enter_connect"),
        family: FAMILY_NET,
        required: false,
    },
    Probe {
        program: "sys_exit_connect",
        attach: Attach::Tracepoint("syscalls", "sys_exit_connect"),
        family: FAMILY_NET,
        required: false,
    },
    Probe {
        program: "sys_enter_accept",
        attach: Attach::Tracepoint("syscalls", "sys_enter_accept"),
        family: FAMILY_NET,
        required: false,
    },
    Probe {
        program: "sys_exit_accept",
        attach: Attach::Tracepoint("syscalls", "sys_exit_accept"),
        family: FAMILY_NET,
        required: false,
    },
    Probe {
        program: "sys_enter_accept4",
        attach: Attach::Tracepoint("syscalls", "sys_enter_accept4"),
        family: FAMILY_NET,
        required: false,
    },
    Probe {
        program: "sys_exit_accept4",
        attach: Attach::Tracepoint("syscalls", "sys_exit_accept4"),
        family: FAMILY_NET,
        required: false,
    },
    Probe {
        program: "sys_enter_bind",
        attach: Attach::Tracepoint("syscalls", "sys_enter_bind"),
        family: FAMILY_NET,
        required: false,
    },
    Probe {
        program: "sys_exit_bind",
        attach: Attach::Tracepoint("syscalls", "sys_exit_bind"),
        family: FAMILY_NET,
        required: false,
    },
    Probe {
        program: "sys_enter_listen",
        attach: Attach::Tracepoint("syscalls", "sys_enter_listen"),
        family: FAMILY_NET,
        required: false,
    },
    Probe {
        program: "sys_exit_listen",
        attach: Attach::Tracepoint("syscalls", "sys_exit_listen"),
        family: FAMILY_NET,
        required: false,
    },
    Probe {
        program: "sys_enter_sendto",
        attach: Attach::Tracepoint("syscalls", "sys_enter_sendto"),
        family: FAMILY_NET,
        required: false,
    },
    Probe {
        program: "sys_enter_sendmsg",
        attach: Attach::Tracepoint("syscalls", "sys_enter_sendmsg"),
        family: FAMILY_NET,
        required: false,
    },
    Probe {
        program: "inet_sock_set_state",
        attach: Attach::Tracepoint("sock", "inet_sock_set_state"),
        family: FAMILY_NET,
        required: false,
    },
    // Names on the wire (probes/names.rs): DNS queries and answers.
    Probe {
        program: "names_egress",
        attach: Attach::CgroupSkb(CgroupSkbAttachType::Egress),
        family: FAMILY_NET,
        required: false,
    },
    Probe {
        program: "names_ingress",
        attach: Attach::CgroupSkb(CgroupSkbAttachType::Ingress),
        family: FAMILY_NET,
        required: false,
    },
    // Privilege and tampering (probes/privilege.rs).
    Probe {
        program: "sys_enter_setuid",
        attach: Attach::Tracepoint("syscalls", "sys_enter_setuid"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_exit_setuid",
        attach: Attach::Tracepoint("syscalls", "sys_exit_setuid"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_enter_setreuid",
        attach: Attach::Tracepoint("syscalls", "sys_enter_setreuid"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_exit_setreuid",
        attach: Attach::Tracepoint("syscalls", "sys_exit_setreuid"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_enter_setresuid",
        attach: Attach::Tracepoint("syscalls", "sys_enter_setresuid"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_exit_setresuid",
        attach: Attach::Tracepoint("syscalls", "sys_exit_setresuid"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_enter_setgid",
        attach: Attach::Tracepoint("syscalls", "sys_enter_setgid"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_exit_setgid",
        attach: Attach::Tracepoint("syscalls", "sys_exit_setgid"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_enter_setregid",
        attach: Attach::Tracepoint("syscalls", "sys_enter_setregid"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_exit_setregid",
        attach: Attach::Tracepoint("syscalls", "sys_exit_setregid"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_enter_setresgid",
        attach: Attach::Tracepoint("syscalls", "sys_enter_setresgid"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_exit_setresgid",
        attach: Attach::Tracepoint("syscalls", "sys_exit_setresgid"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_enter_capset",
        attach: Attach::Tracepoint("syscalls", "sys_enter_capset"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_exit_capset",
        attach: Attach::Tracepoint("syscalls", "sys_exit_capset"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_enter_ptrace",
        attach: Attach::Tracepoint("syscalls", "sys_enter_ptrace"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_exit_ptrace",
        attach: Attach::Tracepoint("syscalls", "sys_exit_ptrace"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_enter_process_vm_writev",
        attach: Attach::Tracepoint("syscalls", "sys_enter_process_vm_writev"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_exit_process_vm_writev",
        attach: Attach::Tracepoint("syscalls", "sys_exit_process_vm_writev"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_enter_pidfd_getfd",
        attach: Attach::Tracepoint("syscalls", "sys_enter_pidfd_getfd"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_exit_pidfd_getfd",
        attach: Attach::Tracepoint("syscalls", "sys_exit_pidfd_getfd"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    // Signals aimed at the agent (not a syscall: see probes/privilege.rs).
    Probe {
        program: "signal_generate",
        attach: Attach::Raw("signal_generate"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_enter_init_module",
        attach: Attach::Tracepoint("syscalls", "sys_enter_init_module"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_exit_init_module",
        attach: Attach::Tracepoint("syscalls", "sys_exit_init_module"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_enter_finit_module",
        attach: Attach::Tracepoint("syscalls", "sys_enter_finit_module"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_exit_finit_module",
        attach: Attach::Tracepoint("syscalls", "sys_exit_finit_module"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_enter_bpf",
        attach: Attach::Tracepoint("syscalls", "sys_enter_bpf"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_exit_bpf",
        attach: Attach::Tracepoint("syscalls", "sys_exit_bpf"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_enter_memfd_create",
        attach: Attach::Tracepoint("syscalls", "sys_enter_memfd_create"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_exit_memfd_create",
        attach: Attach::Tracepoint("syscalls", "sys_exit_memfd_create"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_enter_mmap",
        attach: Attach::Tracepoint("syscalls", "sys_enter_mmap"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_exit_mmap",
        attach: Attach::Tracepoint("syscalls", "sys_exit_mmap"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_enter_mprotect",
        attach: Attach::Tracepoint("syscalls", "sys_enter_mprotect"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    Probe {
        program: "sys_exit_mprotect",
        attach: Attach::Tracepoint("syscalls", "sys_exit_mprotect"),
        family: FAMILY_PRIVILEGE,
        required: false,
    },
    // Files: entry and exit of each path syscall (`open`, `rename` and
    // `chmod` do not exist on every architecture).
    syscall("sys_enter_open", FAMILY_FILE),
    file_exit("sys_exit_open", "exit_open"),
    syscall("sys_enter_openat", FAMILY_FILE),
    file_exit("sys_exit_openat", "exit_open"),
    syscall("sys_enter_openat2", FAMILY_FILE),
    file_exit("sys_exit_openat2", "exit_open"),
    syscall("sys_enter_unlink", FAMILY_FILE),
    file_exit("sys_exit_unlink", "exit_unlink"),
    syscall("sys_enter_unlinkat", FAMILY_FILE),
    file_exit("sys_exit_unlinkat", "exit_unlink"),
    syscall("sys_enter_rename", FAMILY_FILE),
    file_exit("sys_exit_rename", "exit_rename"),
    syscall("sys_enter_renameat", FAMILY_FILE),
    file_exit("sys_exit_renameat", "exit_rename"),
    syscall("sys_enter_renameat2", FAMILY_FILE),
    file_exit("sys_exit_renameat2", "exit_rename"),
    syscall("sys_enter_link", FAMILY_FILE),
    file_exit("sys_exit_link", "exit_link"),
    syscall("sys_enter_linkat", FAMILY_FILE),
    file_exit("sys_exit_linkat", "exit_link"),
    syscall("sys_enter_symlink", FAMILY_FILE),
    file_exit("sys_exit_symlink", "exit_link"),
    syscall("sys_enter_symlinkat", FAMILY_FILE),
    file_exit("sys_exit_symlinkat", "exit_link"),
    syscall("sys_enter_chmod", FAMILY_FILE),
    file_exit("sys_exit_chmod", "exit_chmod"),
    syscall("sys_enter_fchmodat", FAMILY_FILE),
    file_exit("sys_exit_fchmodat", "exit_chmod"),
    syscall("sys_enter_fchmodat2", FAMILY_FILE),
    file_exit("sys_exit_fchmodat2", "exit_chmod"),
    syscall("sys_enter_truncate", FAMILY_FILE),
    file_exit("sys_exit_truncate", "exit_truncate"),
    // Accelerators: ioctl counting on GPU fds (which the file family finds).
    // `close` is deliberately not hooked (see ebpf/src/probes/gpu.rs).
    syscall("sys_enter_ioctl", FAMILY_GPU),
    // Enforcement: egress allowlists (probes/egress.rs).
    cgroup_root("egress_connect4"),
    cgroup_root("egress_connect6"),
    cgroup_root("egress_sendmsg4"),
    cgroup_root("egress_sendmsg6"),
    // Enforcement: accelerator deny (probes/accel.rs).
    Probe {
        program: "accel_device",
        attach: Attach::CgroupDeviceRoot,
        family: 0,
        required: false,
    },
    // Enforcement in the BPF LSM, where the kernel offers it (probes/lsm.rs).
    Probe {
        program: "lsm_file_open",
        attach: Attach::Lsm("file_open"),
        family: 0,
        required: false,
    },
    Probe {
        program: "lsm_bprm_check_security",
        attach: Attach::Lsm("bprm_check_security"),
        family: 0,
        required: false,
    },
];

/// An optional enforcement program on the cgroup v2 root.
const fn cgroup_root(program: &'static str) -> Probe {
    Probe {
        program,
        attach: Attach::CgroupRoot,
        family: 0,
        required: false,
    }
}

/// The optional `syscalls:<tracepoint>` exit of a file syscall, attached to
/// `program`: one program per kind of call serves all its syscalls' exits
/// (`ebpf/src/probes/file.rs`), so the kernel verifies it once.
const fn file_exit(tracepoint: &'static str, program: &'static str) -> Probe {
    Probe {
        program,
        attach: Attach::Tracepoint("syscalls", tracepoint),
        family: FAMILY_FILE,
        required: false,
    }
}

/// An optional `syscalls:<name>` tracepoint whose program has the same name.
const fn syscall(name: &'static str, family: u32) -> Probe {
    Probe {
        program: name,
        attach: Attach::Tracepoint("syscalls", name),
        family,
        required: false,
    }
}
