//! Kernel struct offsets, resolved from the running kernel's BTF.
//!
//! The kernel programs read `task_struct`, `mm_struct`, `dentry`, ... at
//! these offsets. Resolving them here, at load time, is what lets one
//! compiled object run on any kernel that has BTF. A field this kernel lacks
//! is left at zero; the programs then treat it as unknown.

use std::path::Path;

use aiwatch_common::{KernelOffsets, FD_ARRAY_LEN, INLINE_NAME_LOADED, OFFSET_UNKNOWN};
use btf_rs::{Btf, Type};

/// Where the kernel exposes its own BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, thiserror::Error)]
pub enum OffsetError {
    #[error(
        "this kernel exposes no BTF at {VMLINUX_BTF}; aiwatch needs a kernel built with \
         CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoBtf,
    #[error("cannot parse the kernel BTF at {path}: {reason}")]
    BadBtf { path: String, reason: String },
    #[error("the kernel BTF lacks {0}, which aiwatch cannot work without")]
    Required(&'static str),
}

/// The offsets, and the names of the optional ones this kernel lacks.
#[derive(Debug)]
pub struct ResolvedOffsets {
    pub offsets: KernelOffsets,
    pub missing: Vec<&'static str>,
}

/// Fields the process pipeline cannot do without.
const REQUIRED: &[&str] = &[
    "task_struct.tgid",
    "task_struct.pid",
    "task_struct.real_parent",
];

pub fn resolve(btf_path: &Path) -> Result<ResolvedOffsets, OffsetError> {
    if !btf_path.exists() {
        return Err(OffsetError::NoBtf);
    }
    let btf = Btf::from_file(btf_path).map_err(|err| OffsetError::BadBtf {
        path: btf_path.display().to_string(),
        reason: err.to_string(),
    })?;
    let mut resolver = Resolver {
        btf: &btf,
        missing: Vec::new(),
    };
    let r = &mut resolver;
    let offsets = KernelOffsets {
        task_pid: r.get("task_struct.pid", "task_struct", &["pid"]),
        task_tgid: r.get("task_struct.tgid", "task_struct", &["tgid"]),
        task_group_leader: r.get("task_struct.group_leader", "task_struct", &["group_leader"]),
        task_real_parent: r.get("task_struct.real_parent", "task_struct", &["real_parent"]),
        task_start_boottime: r.get(
            "task_struct.start_boottime",
            "task_struct",
            &["start_boottime"],
        ),
        task_exit_code: r.get("task_struct.exit_code", "task_struct", &["exit_code"]),
        task_signal: r.get("task_struct.signal", "task_struct", &["signal"]),
        task_mm: r.get("task_struct.mm", "task_struct", &["mm"]),
        task_fs: r.get("task_struct.fs", "task_struct", &["fs"]),
        task_files: r.get("task_struct.files", "task_struct", &["files"]),
        task_nsproxy: r.get("task_struct.nsproxy", "task_struct", &["nsproxy"]),
        task_cred: r.get("task_struct.cred", "task_struct", &["cred"]),
        signal_live: r.get("signal_struct.live", "signal_struct", &["live"]),
        cred_euid: r.get("cred.euid", "cred", &["euid"]),
        cred_egid: r.get("cred.egid", "cred", &["egid"]),
        mm_arg_start: r.get("mm_struct.arg_start", "mm_struct", &["arg_start"]),
        mm_arg_end: r.get("mm_struct.arg_end", "mm_struct", &["arg_end"]),
        mm_exe_file: r.get("mm_struct.exe_file", "mm_struct", &["exe_file"]),
        fs_pwd: r.get("fs_struct.pwd", "fs_struct", &["pwd"]),
        files_fdt: r.get("files_struct.fdt", "files_struct", &["fdt"]),
        fdt_max_fds: r.get("fdtable.max_fds", "fdtable", &["max_fds"]),
        fdt_fd: r.get("fdtable.fd", "fdtable", &["fd"]),
        file_f_path: r.get("file.f_path", "file", &["f_path"]),
        file_f_inode: r.get("file.f_inode", "file", &["f_inode"]),
        file_private_data: r.get("file.private_data", "file", &["private_data"]),
        path_mnt: r.get("path.mnt", "path", &["mnt"]),
        path_dentry: r.get("path.dentry", "path", &["dentry"]),
        dentry_d_parent: r.get("dentry.d_parent", "dentry", &["d_parent"]),
        dentry_d_name: r.get("dentry.d_name", "dentry", &["d_name"]),
        dentry_d_inode: r.get("dentry.d_inode", "dentry", &["d_inode"]),
        qstr_name: r.get("qstr.name", "qstr", &["name"]),
        vfsmount_mnt_root: r.get("vfsmount.mnt_root", "vfsmount", &["mnt_root"]),
        mount_mnt: r.get("mount.mnt", "mount", &["mnt"]),
        mount_mnt_parent: r.get("mount.mnt_parent", "mount", &["mnt_parent"]),
        mount_mnt_mountpoint: r.get("mount.mnt_mountpoint", "mount", &["mnt_mountpoint"]),
        inode_i_mode: r.get("inode.i_mode", "inode", &["i_mode"]),
        inode_i_rdev: r.get("inode.i_rdev", "inode", &["i_rdev"]),
        inode_i_nlink: r.get("inode.i_nlink", "inode", &["i_nlink"]),
        nsproxy_mnt_ns: r.get("nsproxy.mnt_ns", "nsproxy", &["mnt_ns"]),
        nsproxy_pid_ns: r.get(
            "nsproxy.pid_ns_for_children",
            "nsproxy",
            &["pid_ns_for_children"],
        ),
        mnt_ns_inum: r.get("mnt_namespace.ns.inum", "mnt_namespace", &["ns", "inum"]),
        pid_ns_inum: r.get("pid_namespace.ns.inum", "pid_namespace", &["ns", "inum"]),
        tcp_bytes_acked: r.get("tcp_sock.bytes_acked", "tcp_sock", &["bytes_acked"]),
        tcp_bytes_received: r.get("tcp_sock.bytes_received", "tcp_sock", &["bytes_received"]),
        tcp_snd_una: r.get("tcp_sock.snd_una", "tcp_sock", &["snd_una"]),
        tcp_write_seq: r.get("tcp_sock.write_seq", "tcp_sock", &["write_seq"]),
        sk_shutdown: r.get("sock.sk_shutdown", "sock", &["sk_shutdown"]),
        socket_sk: r.get("socket.sk", "socket", &["sk"]),
        socket_type: r.get("socket.type", "socket", &["type"]),
        sk_daddr: r.get("sock.skc_daddr", "sock", &["__sk_common", "skc_daddr"]),
        sk_rcv_saddr: r.get(
            "sock.skc_rcv_saddr",
            "sock",
            &["__sk_common", "skc_rcv_saddr"],
        ),
        sk_dport: r.get("sock.skc_dport", "sock", &["__sk_common", "skc_dport"]),
        sk_num: r.get("sock.skc_num", "sock", &["__sk_common", "skc_num"]),
        sk_family: r.get("sock.skc_family", "sock", &["__sk_common", "skc_family"]),
        sk_v6_daddr: r.get(
            "sock.skc_v6_daddr",
            "sock",
            &["__sk_common", "skc_v6_daddr"],
        ),
        sk_v6_rcv_saddr: r.get(
            "sock.skc_v6_rcv_saddr",
            "sock",
            &["__sk_common", "skc_v6_rcv_saddr"],
        ),
        inode_i_size: r.get("inode.i_size", "inode", &["i_size"]),
        inode_i_ino: r.get("inode.i_ino", "inode", &["i_ino"]),
        inode_i_sb: r.get("inode.i_sb", "inode", &["i_sb"]),
        super_block_s_dev: r.get("super_block.s_dev", "super_block", &["s_dev"]),
        nsproxy_net_ns: r.get("nsproxy.net_ns", "nsproxy", &["net_ns"]),
        net_ns_inum: r.get("net.ns.inum", "net", &["ns", "inum"]),
        task_comm: r.get("task_struct.comm", "task_struct", &["comm"]),
        cred_uid: r.get("cred.uid", "cred", &["uid"]),
        cred_gid: r.get("cred.gid", "cred", &["gid"]),
        linux_binprm_file: r.get("linux_binprm.file", "linux_binprm", &["file"]),
        linux_binprm_filename: r.get("linux_binprm.filename", "linux_binprm", &["filename"]),
        file_f_flags: r.get("file.f_flags", "file", &["f_flags"]),
        files_fdtab: r.get("files_struct.fdtab", "files_struct", &["fdtab"]),
        files_fd_array: r.get_array(
            "files_struct.fd_array",
            "files_struct",
            &["fd_array"],
            FD_ARRAY_LEN as usize,
        ),
        qstr_len: r.get("qstr.len", "qstr", &["len"]),
        dentry_d_iname: r.get_inline_name(),
    };
    for required in REQUIRED {
        if resolver.missing.contains(required) {
            return Err(OffsetError::Required(required));
        }
    }
    Ok(ResolvedOffsets {
        offsets,
        missing: resolver.missing,
    })
}

struct Resolver<'a> {
    btf: &'a Btf,
    missing: Vec<&'static str>,
}

impl Resolver<'_> {
    /// The byte offset of `path` inside `struct name`, or `OFFSET_UNKNOWN`
    /// (recorded as missing) when this kernel has no such field.
    fn get(&mut self, label: &'static str, name: &str, path: &[&str]) -> u32 {
        self.find(name, path).unwrap_or_else(|| {
            self.missing.push(label);
            OFFSET_UNKNOWN
        })
    }

    /// As [`Resolver::get`], for an array field the programs index: known
    /// only when it has exactly `len` elements.
    fn get_array(&mut self, label: &'static str, name: &str, path: &[&str], len: usize) -> u32 {
        match self.find_typed(name, path) {
            Some((offset, Type::Array(array))) if array.len() == len => offset,
            _ => {
                self.missing.push(label);
                OFFSET_UNKNOWN
            }
        }
    }

    /// The dentry's inline name buffer: `d_iname` (a byte array) before
    /// 6.14, `d_shortname` (a union of bytes and words) since; known only
    /// when it holds the bytes the programs load.
    fn get_inline_name(&mut self) -> u32 {
        let loaded = INLINE_NAME_LOADED as usize;
        let found = match self.find_typed("dentry", &["d_iname"]) {
            Some((offset, Type::Array(array))) if array.len() >= loaded => Some(offset),
            _ => match self.find_typed("dentry", &["d_shortname"]) {
                Some((offset, Type::Union(union))) if union.size() >= loaded => Some(offset),
                _ => None,
            },
        };
        found.unwrap_or_else(|| {
            self.missing.push("dentry.d_iname");
            OFFSET_UNKNOWN
        })
    }

    fn find(&self, name: &str, path: &[&str]) -> Option<u32> {
        self.find_typed(name, path).map(|(offset, _)| offset)
    }

    /// The byte offset of `path` inside `struct name`, and the field's type.
    fn find_typed(&self, name: &str, path: &[&str]) -> Option<(u32, Type)> {
        let ty = self
            .btf
            .resolve_types_by_name(name)
            .ok()?
            .into_iter()
            .find(|ty| matches!(ty, Type::Struct(s) if !s.members.is_empty()))?;
        let mut bits = 0u32;
        let mut current = ty;
        for field in path {
            let (member_bits, member_ty) = self.member(&current, field)?;
            bits += member_bits;
            current = member_ty;
        }
        bits.is_multiple_of(8).then_some((bits / 8, current))
    }

    /// Finds `field` in a struct or union, looking through anonymous members.
    fn member(&self, ty: &Type, field: &str) -> Option<(u32, Type)> {
        let members = match ty {
            Type::Struct(s) | Type::Union(s) => &s.members,
            _ => return None,
        };
        for member in members {
            let member_name = self.btf.resolve_name(member).unwrap_or_default();
            let member_ty = self.strip(self.btf.resolve_chained_type(member).ok()?);
            if member_name == field {
                return Some((member.bit_offset(), member_ty));
            }
            if member_name.is_empty() {
                if let Some((inner_bits, inner_ty)) = self.member(&member_ty, field) {
                    return Some((member.bit_offset() + inner_bits, inner_ty));
                }
            }
        }
        None
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn strip(&self, mut ty: Type) -> Type {
        for _ in 0..16 {
            let next = match &ty {
                Type::Typedef(t) => self.btf.resolve_chained_type(t),
                Type::Const(t) => self.btf.resolve_chained_type(t),
                Type::Volatile(t) => self.btf.resolve_chained_type(t),
                Type::Restrict(t) => self.btf.resolve_chained_type(t),
                Type::TypeTag(t) => self.btf.resolve_chained_type(t),
                _ => return ty,
            };
            match next {
                Ok(next) => ty = next,
                Err(_) => return ty,
            }
        }
        ty
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads this machine's own BTF: the offsets the programs depend on must
    /// all be found, and land inside their structs.
    #[test]
    fn resolves_this_kernels_offsets() {
        let path = Path::new(VMLINUX_BTF);
        if !path.exists() {
            panic!("{VMLINUX_BTF} is missing: these tests need a kernel with BTF");
        }
        let resolved = resolve(path).expect("resolve offsets");
        assert!(
            resolved.missing.is_empty(),
            "missing: {:?}",
            resolved.missing
        );
        let o = resolved.offsets;
        assert!(o.task_tgid > 0 && o.task_pid > 0 && o.task_tgid != o.task_pid);
        // `struct path` starts with its vfsmount: zero is a real offset.
        assert_eq!(o.path_mnt, 0);
        assert_eq!(o.vfsmount_mnt_root, 0);
        assert!(o.mm_arg_end > o.mm_arg_start);
        // dentry.d_name is a struct qstr whose name pointer follows its hash/len.
        assert!(o.qstr_name >= 8);
        // Its length is the upper half of `hash_len` on a little-endian
        // machine.
        assert_eq!(o.qstr_len, 4);
        // The embedded descriptor table comes before its 64 slots.
        assert!(o.files_fd_array > o.files_fdtab);
        // The inline name buffer follows the name's qstr.
        assert!(o.dentry_d_iname > o.dentry_d_name, "{o:?}");
    }

    #[test]
    fn missing_btf_is_one_clear_error() {
        let err = resolve(Path::new("/nonexistent/btf")).unwrap_err();
        assert!(err.to_string().contains("CONFIG_DEBUG_INFO_BTF"), "{err}");
    }

    #[test]
    fn garbage_btf_is_reported_not_panicked() {
        let dir = std::env::temp_dir().join(format!("aiwatch-btf-{}", std::process::id()));
        std::fs::write(&dir, b"not btf at all").unwrap();
        let err = resolve(&dir).unwrap_err();
        std::fs::remove_file(&dir).ok();
        assert!(matches!(err, OffsetError::BadBtf { .. }), "{err}");
    }
}
