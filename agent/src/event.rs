//! The enriched event: what the decoder and the enrichers produce, what the
//! policy engine and the anomaly detectors read, and what `--events` writes.
//!
//! This is the user-facing schema documented in `docs/events.md`. Fields are
//! only ever added, never renamed. `replay` reads the same JSON back, so every
//! type here round-trips through serde.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

macro_rules! define_kind {
    ($first:ident = $first_number:literal, $first_name:literal; $($variant:ident = $number:literal, $name:literal;)*) => {
        /// Kinds as they appear in JSON (`"kind": "exec"`), generated from the
        /// one list in `aiwatch_common::event_kinds!`.
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        pub enum Kind {
            #[default]
            #[serde(rename = $first_name)]
            $first,
            $(#[serde(rename = $name)] $variant,)*
        }

        impl Kind {
            pub const ALL: [Kind; aiwatch_common::EventKind::ALL.len()] =
                [Kind::$first, $(Kind::$variant),*];

            /// The name used in JSON, metrics labels and rule conditions.
            pub fn as_str(self) -> &'static str {
                self.abi().name()
            }

            /// The kernel's number for this kind.
            pub fn abi(self) -> aiwatch_common::EventKind {
                match self {
                    Kind::$first => aiwatch_common::EventKind::$first,
                    $(Kind::$variant => aiwatch_common::EventKind::$variant,)*
                }
            }
        }

        impl From<aiwatch_common::EventKind> for Kind {
            fn from(kind: aiwatch_common::EventKind) -> Kind {
                match kind {
                    aiwatch_common::EventKind::$first => Kind::$first,
                    $(aiwatch_common::EventKind::$variant => Kind::$variant,)*
                }
            }
        }
    };
}

aiwatch_common::event_kinds!(define_kind);

impl Kind {
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// Dense index, for per-kind arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod kind_tests {
    use super::Kind;

    /// The table of kinds in `docs/events.md`, as the list makes it.
    fn docs_table() -> String {
        let mut table = String::from("| kind | number | family |\n| --- | --- | --- |\n");
        for kind in Kind::ALL {
            let number = kind.abi() as u16;
            let family = match number / 100 {
                1 => "process",
                2 => "file",
                3 => "network",
                4 => "privilege",
                _ => "accelerator",
            };
            table += &format!("| `{kind}` | {number} | {family} |\n");
        }
        table
    }

    #[test]
    fn the_docs_list_every_kind_as_the_code_does() {
        let docs = include_str!("../../docs/events.md");
        let block = docs
            .split_once("<!-- kinds:begin -->\n")
            .and_then(|(_, rest)| rest.split_once("<!-- kinds:end -->"))
            .map(|(block, _)| block)
            .expect("docs/events.md has the kinds block");
        assert_eq!(
            block,
            docs_table(),
            "regenerate the kinds table in docs/events.md"
        );
    }

    #[test]
    fn kinds_round_trip_through_json_and_the_abi() {
        for kind in Kind::ALL {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(serde_json::from_str::<Kind>(&json).unwrap(), kind);
            assert_eq!(Kind::from(kind.abi()), kind);
            assert_eq!(Kind::parse(kind.as_str()), Some(kind));
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The class of an asset, as written in `file.class`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AssetClass {
    Dataset,
    Model,
    PickleModel,
    GpuDevice,
    Secret,
}

impl AssetClass {
    pub const ALL: [AssetClass; 5] = [
        AssetClass::Dataset,
        AssetClass::Model,
        AssetClass::PickleModel,
        AssetClass::GpuDevice,
        AssetClass::Secret,
    ];

    /// The name used in events, rules and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            AssetClass::Model => "model",
            AssetClass::PickleModel => "pickle-model",
            AssetClass::Dataset => "dataset",
            AssetClass::Secret => "secret",
            AssetClass::GpuDevice => "gpu-device",
        }
    }

    pub fn parse(name: &str) -> Option<AssetClass> {
        AssetClass::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// `model` or `pickle-model`.
    pub fn is_model(self) -> bool {
        matches!(self, AssetClass::Model | AssetClass::PickleModel)
    }

    /// Higher wins when several classes match one path (the declaration
    /// order of the enum).
    pub(crate) fn priority(self) -> u8 {
        self as u8
    }
}

impl std::fmt::Display for AssetClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a file was opened, from its `O_ACCMODE` bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    Read,
    Write,
    ReadWrite,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::ReadWrite => "read_write",
        }
    }

    /// The open may write to the file.
    pub fn writes(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }

    /// The open may read from the file.
    pub fn reads(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }
}

/// A device node's type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    #[default]
    Char,
    Block,
}

impl DeviceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Char => "char",
            DeviceKind::Block => "block",
        }
    }
}

/// A socket's address family; unknown ones are written as `""`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetFamily {
    #[default]
    #[serde(rename = "")]
    Unknown,
    Ipv4,
    Ipv6,
    Unix,
}

impl NetFamily {
    pub fn as_str(self) -> &'static str {
        match self {
            NetFamily::Unknown => "",
            NetFamily::Ipv4 => "ipv4",
            NetFamily::Ipv6 => "ipv6",
            NetFamily::Unix => "unix",
        }
    }
}

/// A socket's transport; unknown ones are left out of the JSON.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    #[serde(rename = "")]
    Unknown,
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Unknown => "",
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    pub fn is_unknown(&self) -> bool {
        *self == Protocol::Unknown
    }
}

/// Parsing the schema's names back, for hand-written events and tests.
macro_rules! from_schema_name {
    ($($ty:ident: [$($variant:ident),*];)*) => {$(
        impl std::str::FromStr for $ty {
            type Err = UnknownName;

            fn from_str(name: &str) -> Result<$ty, UnknownName> {
                [$($ty::$variant),*]
                    .into_iter()
                    .find(|v| v.as_str() == name)
                    .ok_or_else(|| UnknownName(name.to_string()))
            }
        }
    )*};
}

/// A name that is not one of the schema's values.
#[derive(Debug, thiserror::Error)]
#[error("unknown value {0:?}")]
pub struct UnknownName(pub String);

from_schema_name! {
    AssetClass: [Dataset, Model, PickleModel, GpuDevice, Secret];
    Access: [Read, Write, ReadWrite];
    DeviceKind: [Char, Block];
    NetFamily: [Unknown, Ipv4, Ipv6, Unix];
    Protocol: [Unknown, Tcp, Udp];
}

/// One event, enriched.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Wall-clock time, RFC 3339 with nanoseconds, UTC. May be left out of
    /// a hand-written event.
    #[serde(default)]
    pub time: String,
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
}

/// The process an event belongs to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Process {
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    /// Absolute path of the executable.
    pub exe: String,
    pub argv: Vec<String>,
    /// argv was cut: more than 16 arguments or 1 KiB.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub argv_truncated: bool,
    pub comm: String,
    pub cgroup_id: u64,
    /// RFC 3339 start time of the process.
    pub start_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mnt_ns: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid_ns: Option<u32>,
    /// Executable image is deleted or a memfd (fileless execution).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub exe_fileless: bool,
    /// fd 0 or 1 of the process is a socket, checked at exec.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stdio_socket: bool,
    /// Nearest first; bounded to 8 entries.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<Ancestor>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Parent {
    pub pid: u32,
    pub exe: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub comm: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ancestor {
    pub pid: u32,
    pub exe: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub comm: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Container {
    /// cgroup v2 path of the process (relative to the cgroup2 mount).
    pub cgroup: String,
    /// Container id parsed from the cgroup path (docker, containerd, cri-o, podman).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// Kubernetes pod uid, when the cgroup path carries one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
}

/// The AI workload a process belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkloadRef {
    pub id: String,
    /// `inference`, `training`, `notebook`, `agent`, `pipeline` or `unknown-ai`.
    pub kind: String,
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExitInfo {
    /// Exit status (0..255) when the process exited normally.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// Terminating signal number, when a signal ended it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub core_dumped: bool,
    /// Lifetime in milliseconds.
    pub lifetime_ms: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ForkInfo {
    pub child_pid: u32,
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
    /// ptrace: the request name and the target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_pid: Option<u32>,
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
