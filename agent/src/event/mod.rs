//! The enriched event: what the decoder and the enrichers produce, what the
//! policy engine and the anomaly detectors read, and what `--events` writes.
//!
//! This is the user-facing schema documented in `docs/events.md`. Fields are
//! only ever added, never renamed. `replay` reads the same JSON back, so every
//! type here round-trips through serde.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

mod kind;
mod llm;
mod process;
mod size;
mod values;

pub use crate::clock::{or_dash as time_or_dash, or_empty as time_or_empty, WallTime};
pub use kind::Kind;
pub use llm::{Cause, LlmInfo, ToolCall};
pub use process::{
    Ancestor, ArcStr, Argv, Container, ExitInfo, ForkInfo, K8s, Parent, Process, WorkloadKind,
    WorkloadRef,
};
pub use size::texts;
pub use values::{Access, AssetClass, DeviceKind, NetFamily, Protocol, UnknownName};

/// One event, enriched.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Wall-clock time, RFC 3339 with nanoseconds, UTC. May be left out of
    /// a hand-written event, and is then written as `""`.
    #[serde(default, with = "time_or_empty")]
    pub time: Option<WallTime>,
    /// Kernel boot-clock timestamp in nanoseconds; orders events and drives
    /// windows in `replay`. Internal: a hand-written event may leave it out,
    /// and `replay` derives it (`policy::cli::replay`).
    #[serde(default)]
    pub ktime_ns: u64,
    pub kind: Kind,
    #[serde(default)]
    pub process: Process,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Parent>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    /// Kubernetes identity of the container, from the container runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s: Option<K8s>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork: Option<ForkInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<NetInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscall: Option<SyscallInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuInfo>,
    /// What the kernel did about this event by itself (exec, connect and
    /// open events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_action: Option<KernelAction>,
    /// `llm_request` and `llm_response`: the exchange with a model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<Box<LlmInfo>>,
    /// exec, open, connect: the model answer that asked for this action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Box<Cause>>,
}

/// An action the kernel took at the hook, before the event reached the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelAction {
    /// SIGKILL at `sched_process_exec`: the new image never ran.
    Killed,
    /// The executable is on an enforced deny list, but the cgroup's kill
    /// budget was spent: the process was left running.
    KillRateLimited,
    /// EPERM at `cgroup/connect4`/`connect6`: the destination is outside
    /// the workload's enforced egress allowlist; no packet was sent. On
    /// `open`: EPERM from `cgroup/dev`, an accelerator device opened by a
    /// process outside the accelerator allowlist.
    Denied,
    /// `open` of an accelerator device outside the allowlist, let through
    /// because accelerator deny is in audit mode.
    WouldDeny,
    /// EPERM from the BPF LSM (`file_open` or `bprm_check_security`): the
    /// open or the exec never happened. A `kill` rule's opener is also
    /// killed, and then says `killed`.
    Refused,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FileInfo {
    /// Absolute, normalised path.
    pub path: String,
    /// Rename destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// open flags (O_*), as a number.
    pub flags: u32,
    /// Symbolic access: `read`, `write` or `read_write`; opens only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// Syscall result: fd or 0 on success, negative errno on failure.
    pub result: i64,
    /// Asset class: `model`, `pickle-model`, `dataset`, `secret`, `gpu-device`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<AssetClass>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceInfo>,
    /// Size of the file in bytes when it was opened, for regular files.
    /// aiwatch counts an open for reading of a model file as a read of this
    /// many bytes: model loaders read or map the whole file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The path could not be fully resolved (very deep, or cwd unknown).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub path_incomplete: bool,
    /// truncate: the new length in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub length: Option<i64>,
    /// A change (write, rename, truncate, unlink, chmod) to a model file an
    /// AI workload other than the writer's has read.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub model_in_use: bool,
    /// Reported only because a relative name could not be tested in the
    /// kernel: the pipeline drops the event unless the resolved path has a
    /// class. Never serialised.
    #[serde(skip)]
    pub unchecked: bool,
    /// `file_access`: plain reads of files in the directory `path`, counted
    /// in the kernel over the interval that ends at the event's time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// `file_access`: times of the first read counted in this directory
    /// (since the process's reads there began to be counted) and of the
    /// latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_time: Option<WallTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_time: Option<WallTime>,
    /// A tracked process's first plain read in this file's directory, which
    /// the kernel can fold from now on: the directory's kernel key. Never
    /// serialised.
    #[serde(skip)]
    pub fold_candidate: Option<DirectoryKey>,
}

/// A directory as the kernel identifies it, for one process: the key of the
/// kernel's per-directory read counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DirectoryKey {
    pub tgid: u32,
    /// Device, in the kernel's form.
    pub dev: u32,
    pub ino: u64,
}

impl FileInfo {
    /// A change through a relative name whose resolved path turned out to
    /// be of no interest: what the kernel would have filtered had it known.
    pub fn is_uninteresting_relative(&self) -> bool {
        self.unchecked && self.class.is_none()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// `char` or `block`.
    pub kind: DeviceKind,
    pub major: u32,
    pub minor: u32,
    /// Known device family: `nvidia`, `nvidia-uvm`, `nvidiactl`, `dri`, `kfd`, `accel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accelerator: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub ip: IpAddr,
    #[serde(default)]
    pub port: u16,
}

impl Default for Endpoint {
    fn default() -> Endpoint {
        Endpoint {
            ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 0,
        }
    }
}

/// An endpoint that may be unknown, written as `{"ip": "", "port": 0}` when
/// it is (the schema of `dns.server` predates the typed field).
mod endpoint_or_empty {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::Endpoint;

    #[derive(Serialize, Deserialize)]
    struct Raw {
        #[serde(default)]
        ip: String,
        #[serde(default)]
        port: u16,
    }

    pub fn serialize<S: Serializer>(value: &Option<Endpoint>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(endpoint) => endpoint.serialize(s),
            None => Raw {
                ip: String::new(),
                port: 0,
            }
            .serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Endpoint>, D::Error> {
        let raw = Raw::deserialize(d)?;
        if raw.ip.is_empty() {
            return Ok(None);
        }
        let ip = raw.ip.parse().map_err(serde::de::Error::custom)?;
        Ok(Some(Endpoint { ip, port: raw.port }))
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NetInfo {
    /// `ipv4`, `ipv6` or `unix`.
    pub family: NetFamily,
    /// `tcp`, `udp` or empty when unknown.
    #[serde(skip_serializing_if = "Protocol::is_unknown")]
    pub protocol: Protocol,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src: Option<Endpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst: Option<Endpoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unix_path: Option<String>,
    /// Syscall result; absent on summaries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_sent: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_received: Option<u64>,
    /// On summaries: the connection is closed (else a periodic report).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed: Option<bool>,
    /// The destination is not a loopback, link-local or unspecified address.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dst_external: bool,
    /// DNS name last resolved to the destination address, if seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_name: Option<String>,
    /// `dst_name` came from an answer that matched a query of the same
    /// socket (id, resolver and name): only such names satisfy allowlists.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dst_name_verified: bool,
    /// `tls_client_hello`: the server name (SNI) the client asked for.
    /// Chosen by the client: it never makes a destination trusted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    /// `http_request`: the host a plain HTTP request names (`Host`).
    /// Chosen by the client: it never makes a destination trusted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_host: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DnsInfo {
    /// Query name, without the trailing dot.
    pub name: String,
    /// Query type: `A`, `AAAA`, `TXT`, ... or the number.
    pub qtype: String,
    #[serde(with = "endpoint_or_empty")]
    pub server: Option<Endpoint>,
    /// `udp` or `tcp`.
    #[serde(skip_serializing_if = "Protocol::is_unknown")]
    pub protocol: Protocol,
    /// Answers: the response code (`NOERROR`, `NXDOMAIN`, ... or the number).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rcode: Option<String>,
    /// Answers: the CNAME chain from `name`, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cnames: Vec<String>,
    /// Answers: the addresses `name` resolves to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<IpAddr>,
    /// Answers: the smallest TTL along the chain, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    /// Answers: it matched a query sent on the same socket to the same
    /// resolver with the same id and name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// Answers that could not be read: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Privilege and tampering syscalls.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyscallInfo {
    /// The syscall: `setuid`, `setresuid`, `capset`, `ptrace`, `bpf`,
    /// `memfd_create`, `mmap`, `mprotect`, `finit_module`, ...
    #[serde(skip_serializing_if = "String::is_empty")]
    pub syscall: String,
    pub result: i64,
    /// setuid family: the requested ids (`-1` kept as 4294967295 is shown as null).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub euid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// setregid/setresgid: the requested effective gid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub egid: Option<u32>,
    /// ptrace: the request name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// ptrace, process_vm_writev, pidfd_getfd, signal: the target process.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_pid: Option<u32>,
    /// The call was aimed at the running agent: a signal to it, ptrace or
    /// memory access of one of its threads, or a bpf() command asking for
    /// one of its programs, maps or links by id.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub target_agent: bool,
    /// signal: the signal's name (`SIGTERM`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// ptrace: the AI workload the target process belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_workload: Option<WorkloadRef>,
    /// capset: effective capability bits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap_effective: Option<u64>,
    /// capset: permitted capability bits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap_permitted: Option<u64>,
    /// bpf: the command, and the program type for BPF_PROG_LOAD.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bpf_cmd: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bpf_prog_type: Option<u32>,
    /// bpf `BPF_*_GET_FD_BY_ID`: the object id asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bpf_id: Option<u32>,
    /// memfd_create name, module parameters, ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// mmap/mprotect: protection bits, address and length.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prot: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub len: Option<u64>,
    /// finit_module: the module file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// memfd_create, mmap, finit_module: the flags argument.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flags: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GpuInfo {
    pub ioctls: u64,
    /// Seconds the count covers.
    pub interval_s: f64,
    pub device: DeviceInfo,
}
