//! Field paths: the names rules use for parts of an [`Event`], resolved once
//! at load time to a [`Field`] whose accessor is a plain `match` (no string
//! lookups while evaluating).
//!
//! This file is the table of paths and their types; `value.rs` holds the
//! values a field reads ([`Val`], [`Num`]) and `read.rs` reads each field
//! from an event ([`Field::get`]).

mod read;
mod value;

pub use value::{basename, Num, Val};

/// What a field holds, which decides the operators it accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    Kind,
    Str,
    /// An IP address as text; accepts `cidr` as well as string operators.
    Ip,
    /// Several strings; an operator holds if it holds for any element.
    StrList,
    Num,
    NumList,
    Bool,
    /// A whole object (`workload`, `net.dst`, ...): only `exists`.
    Section,
}

impl FieldType {
    pub fn describe(self) -> &'static str {
        match self {
            FieldType::Kind => "an event kind",
            FieldType::Str => "a string",
            FieldType::Ip => "an IP address",
            FieldType::StrList => "a list of strings",
            FieldType::Num => "a number",
            FieldType::NumList => "a list of numbers",
            FieldType::Bool => "a boolean",
            FieldType::Section => "an object",
        }
    }
}

macro_rules! fields {
    ($( $variant:ident = $path:literal : $ty:ident ),* $(,)?) => {
        /// Every field path a condition may name.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Field { $($variant),* }

        /// Path, field and type, in the order `docs/policy.md` lists them.
        pub const FIELDS: &[(&str, Field, FieldType)] = &[ $(($path, Field::$variant, FieldType::$ty)),* ];
    };
}

fields! {
    Kind = "kind": Kind,
    Time = "time": Str,
    KtimeNs = "ktime_ns": Num,
    Pid = "process.pid": Num,
    Tid = "process.tid": Num,
    Ppid = "process.ppid": Num,
    Uid = "process.uid": Num,
    Gid = "process.gid": Num,
    Euid = "process.euid": Num,
    Exe = "process.exe": Str,
    ProcessName = "process.name": Str,
    Argv = "process.argv": StrList,
    Cmdline = "process.cmdline": Str,
    ArgvTruncated = "process.argv_truncated": Bool,
    Comm = "process.comm": Str,
    CgroupId = "process.cgroup_id": Num,
    StartTime = "process.start_time": Str,
    MntNs = "process.mnt_ns": Num,
    PidNs = "process.pid_ns": Num,
    ExeFileless = "process.exe_fileless": Bool,
    StdioSocket = "process.stdio_socket": Bool,
    AgentBinary = "process.agent_binary": Bool,
    AncestorExe = "process.ancestors[*].exe": StrList,
    AncestorName = "process.ancestors[*].name": StrList,
    AncestorComm = "process.ancestors[*].comm": StrList,
    AncestorPid = "process.ancestors[*].pid": NumList,
    Parent = "parent": Section,
    ParentPid = "parent.pid": Num,
    ParentExe = "parent.exe": Str,
    ParentName = "parent.name": Str,
    ParentArgv = "parent.argv": StrList,
    ParentComm = "parent.comm": Str,
    Container = "container": Section,
    ContainerCgroup = "container.cgroup": Str,
    ContainerId = "container.id": Str,
    ContainerRuntime = "container.runtime": Str,
    ContainerPodUid = "container.pod_uid": Str,
    ContainerName = "container.name": Str,
    ContainerImage = "container.image": Str,
    K8s = "k8s": Section,
    K8sNamespace = "k8s.namespace": Str,
    K8sPod = "k8s.pod": Str,
    K8sPodUid = "k8s.pod_uid": Str,
    K8sContainer = "k8s.container": Str,
    Workload = "workload": Section,
    WorkloadId = "workload.id": Str,
    WorkloadKind = "workload.kind": Str,
    WorkloadName = "workload.name": Str,
    WorkloadClaimed = "workload.claimed": Bool,
    Exit = "exit": Section,
    ExitCode = "exit.code": Num,
    ExitSignal = "exit.signal": Num,
    ExitCoreDumped = "exit.core_dumped": Bool,
    ExitLifetimeMs = "exit.lifetime_ms": Num,
    Fork = "fork": Section,
    ForkChildPid = "fork.child_pid": Num,
    File = "file": Section,
    FilePath = "file.path": Str,
    FileName = "file.name": Str,
    FileTarget = "file.target": Str,
    FileFlags = "file.flags": Num,
    FileAccess = "file.access": Str,
    FileMode = "file.mode": Num,
    FileResult = "file.result": Num,
    FileClass = "file.class": Str,
    FileDevice = "file.device": Section,
    FileDeviceKind = "file.device.kind": Str,
    FileDeviceMajor = "file.device.major": Num,
    FileDeviceMinor = "file.device.minor": Num,
    FileDeviceAccelerator = "file.device.accelerator": Str,
    FileSize = "file.size": Num,
    FilePathIncomplete = "file.path_incomplete": Bool,
    FileModelInUse = "file.model_in_use": Bool,
    FileSecretKind = "file.secret_kind": Str,
    Net = "net": Section,
    NetFamily = "net.family": Str,
    NetProtocol = "net.protocol": Str,
    NetSrc = "net.src": Section,
    NetSrcIp = "net.src.ip": Ip,
    NetSrcPort = "net.src.port": Num,
    NetDst = "net.dst": Section,
    NetDstIp = "net.dst.ip": Ip,
    NetDstPort = "net.dst.port": Num,
    NetUnixPath = "net.unix_path": Str,
    NetResult = "net.result": Num,
    NetBytesSent = "net.bytes_sent": Num,
    NetBytesReceived = "net.bytes_received": Num,
    NetClosed = "net.closed": Bool,
    NetDstExternal = "net.dst_external": Bool,
    NetDstName = "net.dst_name": Str,
    NetDstNameVerified = "net.dst_name_verified": Bool,
    NetTlsServerName = "net.tls_server_name": Str,
    NetHttpHost = "net.http_host": Str,
    Dns = "dns": Section,
    DnsName = "dns.name": Str,
    DnsQtype = "dns.qtype": Str,
    DnsServerIp = "dns.server.ip": Ip,
    DnsServerPort = "dns.server.port": Num,
    Syscall = "syscall": Section,
    SyscallResult = "syscall.result": Num,
    SyscallUid = "syscall.uid": Num,
    SyscallEuid = "syscall.euid": Num,
    SyscallGid = "syscall.gid": Num,
    SyscallRequest = "syscall.request": Str,
    SyscallTargetPid = "syscall.target_pid": Num,
    SyscallTargetAgent = "syscall.target_agent": Bool,
    SyscallSignal = "syscall.signal": Str,
    SyscallBpfId = "syscall.bpf_id": Num,
    SyscallTargetWorkload = "syscall.target_workload": Section,
    SyscallTargetWorkloadId = "syscall.target_workload.id": Str,
    SyscallTargetWorkloadKind = "syscall.target_workload.kind": Str,
    SyscallTargetWorkloadName = "syscall.target_workload.name": Str,
    SyscallCapEffective = "syscall.cap_effective": Num,
    SyscallBpfCmd = "syscall.bpf_cmd": Str,
    SyscallBpfProgType = "syscall.bpf_prog_type": Num,
    SyscallName = "syscall.name": Str,
    SyscallProt = "syscall.prot": Num,
    SyscallAddr = "syscall.addr": Num,
    SyscallLen = "syscall.len": Num,
    Gpu = "gpu": Section,
    GpuIoctls = "gpu.ioctls": Num,
    GpuIntervalS = "gpu.interval_s": Num,
    GpuDeviceKind = "gpu.device.kind": Str,
    GpuDeviceMajor = "gpu.device.major": Num,
    GpuDeviceMinor = "gpu.device.minor": Num,
    GpuDeviceAccelerator = "gpu.device.accelerator": Str,
    Llm = "llm": Section,
    LlmRequestId = "llm.request_id": Str,
    LlmProvider = "llm.provider": Str,
    LlmApi = "llm.api": Str,
    LlmHost = "llm.host": Str,
    LlmModel = "llm.model": Str,
    LlmStream = "llm.stream": Bool,
    LlmMessages = "llm.messages": Num,
    LlmTools = "llm.tools": StrList,
    LlmTool = "llm.tool": StrList,
    LlmPromptBytes = "llm.prompt_bytes": Num,
    LlmPromptHash = "llm.prompt_hash": Str,
    LlmFetchedContent = "llm.fetched_content": Bool,
    LlmKeyProvider = "llm.key_provider": Str,
    LlmKeyForeignHost = "llm.key_foreign_host": Bool,
    LlmStatus = "llm.status": Num,
    LlmFinishReason = "llm.finish_reason": Str,
    LlmInputTokens = "llm.input_tokens": Num,
    LlmOutputTokens = "llm.output_tokens": Num,
    LlmLatencyMs = "llm.latency_ms": Num,
    Cause = "cause": Section,
    CauseLlmRequestId = "cause.llm_request_id": Str,
    CauseProvider = "cause.provider": Str,
    CauseModel = "cause.model": Str,
    CauseTool = "cause.tool": Str,
    CauseMatched = "cause.matched": Str,
    CauseWhat = "cause.what": Str,
    CauseHostFirstSeen = "cause.host_first_seen": Bool,
    CauseFetchedContent = "cause.fetched_content": Bool,
}

impl Field {
    /// Resolves a field path. `process.ancestors.exe` is accepted for
    /// `process.ancestors[*].exe` (brackets need quoting in flow YAML).
    pub fn lookup(path: &str) -> Option<(Field, FieldType)> {
        let find = |wanted: &str| {
            FIELDS
                .iter()
                .find(|(name, _, _)| *name == wanted)
                .map(|(_, field, ty)| (*field, *ty))
        };
        find(path).or_else(|| {
            path.strip_prefix("process.ancestors.")
                .and_then(|rest| find(&format!("process.ancestors[*].{rest}")))
        })
    }

    pub fn path(self) -> &'static str {
        FIELDS
            .iter()
            .find(|(_, field, _)| *field == self)
            .map_or("?", |(name, _, _)| name)
    }
}
