//! Privilege and tampering records as the event's `syscall` field.

use crate::{event::SyscallInfo, ingest::decode::privilege::Syscall};
use aiwatch_common::sys;

/// `-1` ("leave unchanged") in the set*id family is no requested id.
fn id(raw: u64) -> Option<u32> {
    let id = raw as u32;
    (id != u32::MAX).then_some(id)
}

pub fn syscall_info(s: &Syscall) -> SyscallInfo {
    let a = s.args;
    let mut info = SyscallInfo {
        syscall: s.name.to_owned(),
        result: s.result,
        ..Default::default()
    };
    match s.number {
        sys::SETUID => info.uid = id(a[0]),
        sys::SETREUID | sys::SETRESUID => {
            info.uid = id(a[0]);
            info.euid = id(a[1]);
        }
        sys::SETGID => info.gid = id(a[0]),
        sys::SETREGID | sys::SETRESGID => {
            info.gid = id(a[0]);
            info.egid = id(a[1]);
        }
        sys::CAPSET if s.user_read => {
            info.cap_effective = Some(a[2]);
            info.cap_permitted = Some(a[3]);
        }
        sys::PTRACE => {
            info.request = Some(ptrace_request(a[0]));
            info.target_pid = Some(a[1] as u32).filter(|&pid| pid != 0);
        }
        sys::BPF => {
            info.bpf_cmd = Some(bpf_cmd(a[0]));
            if a[0] == 5 && s.user_read {
                info.bpf_prog_type = Some(a[3] as u32);
            }
        }
        sys::MEMFD_CREATE => {
            info.name = s.text.clone();
            info.flags = Some(a[1]);
        }
        sys::INIT_MODULE => {
            info.name = s.text.clone();
            info.len = Some(a[1]);
        }
        sys::FINIT_MODULE => {
            info.name = s.text.clone();
            info.path = s.path.as_ref().map(|p| p.path.clone());
            info.flags = Some(a[2]);
        }
        sys::MMAP => {
            // The address actually mapped, when the call succeeded.
            info.addr = Some(if s.result >= 0 { s.result as u64 } else { a[0] });
            info.len = Some(a[1]);
            info.prot = Some(a[2]);
            info.flags = Some(a[3]);
        }
        sys::MPROTECT => {
            info.addr = Some(a[0]);
            info.len = Some(a[1]);
            info.prot = Some(a[2]);
        }
        _ => {}
    }
    info
}

pub fn ptrace_request(request: u64) -> String {
    let name = match request {
        0 => "PTRACE_TRACEME",
        1 => "PTRACE_PEEKTEXT",
        2 => "PTRACE_PEEKDATA",
        3 => "PTRACE_PEEKUSER",
        4 => "PTRACE_POKETEXT",
        5 => "PTRACE_POKEDATA",
        6 => "PTRACE_POKEUSER",
        7 => "PTRACE_CONT",
        8 => "PTRACE_KILL",
        9 => "PTRACE_SINGLESTEP",
        12 => "PTRACE_GETREGS",
        13 => "PTRACE_SETREGS",
        14 => "PTRACE_GETFPREGS",
        15 => "PTRACE_SETFPREGS",
        16 => "PTRACE_ATTACH",
        17 => "PTRACE_DETACH",
        24 => "PTRACE_SYSCALL",
        0x4200 => "PTRACE_SETOPTIONS",
        0x4201 => "PTRACE_GETEVENTMSG",
        0x4202 => "PTRACE_GETSIGINFO",
        0x4203 => "PTRACE_SETSIGINFO",
        0x4204 => "PTRACE_GETREGSET",
        0x4205 => "PTRACE_SETREGSET",
        0x4206 => "PTRACE_SEIZE",
        0x4207 => "PTRACE_INTERRUPT",
        0x4208 => "PTRACE_LISTEN",
        0x4209 => "PTRACE_PEEKSIGINFO",
        other => return other.to_string(),
    };
    name.to_owned()
}

pub fn bpf_cmd(cmd: u64) -> String {
    const NAMES: [&str; 37] = [
        "BPF_MAP_CREATE",
        "BPF_MAP_LOOKUP_ELEM",
        "BPF_MAP_UPDATE_ELEM",
        "BPF_MAP_DELETE_ELEM",
        "BPF_MAP_GET_NEXT_KEY",
        "BPF_PROG_LOAD",
        "BPF_OBJ_PIN",
        "BPF_OBJ_GET",
        "BPF_PROG_ATTACH",
        "BPF_PROG_DETACH",
        "BPF_PROG_TEST_RUN",
        "BPF_PROG_GET_NEXT_ID",
        "BPF_MAP_GET_NEXT_ID",
        "BPF_PROG_GET_FD_BY_ID",
        "BPF_MAP_GET_FD_BY_ID",
        "BPF_OBJ_GET_INFO_BY_FD",
        "BPF_PROG_QUERY",
        "BPF_RAW_TRACEPOINT_OPEN",
        "BPF_BTF_LOAD",
        "BPF_BTF_GET_FD_BY_ID",
        "BPF_TASK_FD_QUERY",
        "BPF_MAP_LOOKUP_AND_DELETE_ELEM",
        "BPF_MAP_FREEZE",
        "BPF_BTF_GET_NEXT_ID",
        "BPF_MAP_LOOKUP_BATCH",
        "BPF_MAP_LOOKUP_AND_DELETE_BATCH",
        "BPF_MAP_UPDATE_BATCH",
        "BPF_MAP_DELETE_BATCH",
        "BPF_LINK_CREATE",
        "BPF_LINK_UPDATE",
        "BPF_LINK_GET_FD_BY_ID",
        "BPF_LINK_GET_NEXT_ID",
        "BPF_ENABLE_STATS",
        "BPF_ITER_CREATE",
        "BPF_LINK_DETACH",
        "BPF_PROG_BIND_MAP",
        "BPF_TOKEN_CREATE",
    ];
    usize::try_from(cmd)
        .ok()
        .and_then(|i| NAMES.get(i))
        .map(|name| (*name).to_owned())
        .unwrap_or_else(|| cmd.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(number: u16, args: [u64; 6], result: i64) -> Syscall {
        Syscall {
            name: crate::ingest::decode::privilege::syscall_name(number),
            number,
            args,
            result,
            user_read: true,
            tracked: false,
            text: None,
            path: None,
        }
    }

    #[test]
    fn set_id_calls_keep_requested_ids_and_drop_minus_one() {
        let info = syscall_info(&call(sys::SETUID, [65534, 0, 0, 0, 0, 0], 0));
        assert_eq!(
            (info.syscall.as_str(), info.uid, info.result),
            ("setuid", Some(65534), 0)
        );
        let info = syscall_info(&call(sys::SETRESUID, [u64::MAX, 0, u64::MAX, 0, 0, 0], -1));
        assert_eq!((info.uid, info.euid, info.result), (None, Some(0), -1));
        let info = syscall_info(&call(sys::SETREGID, [0xffff_ffff, 5, 0, 0, 0, 0], 0));
        assert_eq!((info.gid, info.egid), (None, Some(5)));
    }

    #[test]
    fn ptrace_bpf_capset_and_memory() {
        let info = syscall_info(&call(sys::PTRACE, [16, 4242, 0, 0, 0, 0], 0));
        assert_eq!(info.request.as_deref(), Some("PTRACE_ATTACH"));
        assert_eq!(info.target_pid, Some(4242));
        assert_eq!(ptrace_request(0x9999), "39321");

        let info = syscall_info(&call(sys::BPF, [5, 0x7fff_0000, 144, 2, 0, 0], 7));
        assert_eq!(
            (info.bpf_cmd.as_deref(), info.bpf_prog_type),
            (Some("BPF_PROG_LOAD"), Some(2))
        );
        let info = syscall_info(&call(sys::BPF, [11, 0, 0, 0, 0, 0], 0));
        assert_eq!(
            (info.bpf_cmd.as_deref(), info.bpf_prog_type),
            (Some("BPF_PROG_GET_NEXT_ID"), None)
        );
        assert_eq!(bpf_cmd(1000), "1000");

        let info = syscall_info(&call(sys::CAPSET, [0, 0, 0x20, 0x30, 0, 0], 0));
        assert_eq!(
            (info.cap_effective, info.cap_permitted),
            (Some(0x20), Some(0x30))
        );

        let info = syscall_info(&call(
            sys::MMAP,
            [0, 4096, 7, 0x22, u64::MAX, 0],
            0x7f00_0000,
        ));
        assert_eq!(
            (info.addr, info.len, info.prot, info.flags),
            (Some(0x7f00_0000), Some(4096), Some(7), Some(0x22))
        );
        let info = syscall_info(&call(sys::MMAP, [0x1000, 4096, 7, 0x22, 0, 0], -12));
        assert_eq!(info.addr, Some(0x1000));
    }
}
