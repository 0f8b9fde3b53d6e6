//! Reading a field from an event: one `match` arm per field.

use super::{basename, Field, Num, Val};
use crate::{
    enrich::assets::secret_kind,
    event::{Access, AssetClass, Cause, DeviceInfo, Endpoint, Event, LlmInfo, WallTime},
};

fn num<T: Into<i128>>(value: T) -> Val<'static> {
    Val::Num(Num::Int(value.into()))
}

fn opt_num<T: Into<i128> + Copy>(value: Option<T>) -> Val<'static> {
    value.map_or(Val::Missing, num)
}

fn opt_str<S: AsRef<str> + ?Sized>(value: Option<&S>) -> Val<'_> {
    value.map_or(Val::Missing, |s| Val::Str(s.as_ref()))
}

fn opt_time(value: Option<WallTime>) -> Val<'static> {
    value.map_or(Val::Missing, |time| Val::Owned(time.to_string()))
}

fn opt_static(value: Option<&'static str>) -> Val<'static> {
    value.map_or(Val::Missing, Val::Str)
}

fn present<T>(value: Option<&T>) -> Val<'static> {
    if value.is_some() {
        Val::Present
    } else {
        Val::Missing
    }
}

impl Field {
    /// Reads this field from an event.
    pub fn get<'a>(self, ev: &'a Event) -> Val<'a> {
        use Field as F;
        let p = &ev.process;
        match self {
            F::Kind => Val::Str(ev.kind.as_str()),
            F::Time => opt_time(ev.time),
            F::KtimeNs => num(ev.ktime_ns),
            F::Pid => num(p.pid),
            F::Tid => num(p.tid),
            F::Ppid => num(p.ppid),
            F::Uid => num(p.uid),
            F::Gid => num(p.gid),
            F::Euid => num(p.euid),
            F::Exe => Val::Str(&p.exe),
            F::ProcessName => Val::Str(basename(&p.exe)),
            F::Argv => Val::Strs(&p.argv),
            F::Cmdline => Val::Owned(p.argv.join(" ")),
            F::ArgvTruncated => Val::Bool(p.argv_truncated),
            F::Comm => Val::Str(&p.comm),
            F::CgroupId => num(p.cgroup_id),
            F::StartTime => opt_time(p.start_time),
            F::MntNs => opt_num(p.mnt_ns),
            F::PidNs => opt_num(p.pid_ns),
            F::ExeFileless => Val::Bool(p.exe_fileless),
            F::StdioSocket => Val::Bool(p.stdio_socket),
            F::AgentBinary => Val::Bool(p.agent_binary),
            F::AncestorExe => Val::AncestorExes(&p.ancestors),
            F::AncestorName => Val::AncestorNames(&p.ancestors),
            F::AncestorComm => Val::AncestorComms(&p.ancestors),
            F::AncestorPid => Val::AncestorPids(&p.ancestors),
            F::Parent => present(ev.parent.as_ref()),
            F::ParentPid => opt_num(ev.parent.as_ref().map(|x| x.pid)),
            F::ParentExe => opt_str(ev.parent.as_ref().map(|x| &x.exe)),
            F::ParentName => ev
                .parent
                .as_ref()
                .map_or(Val::Missing, |x| Val::Str(basename(&x.exe))),
            F::ParentArgv => ev
                .parent
                .as_ref()
                .map_or(Val::Missing, |x| Val::Strs(&x.argv)),
            F::ParentComm => opt_str(ev.parent.as_ref().map(|x| &x.comm)),
            F::Container => present(ev.container.as_ref()),
            F::ContainerCgroup => opt_str(ev.container.as_ref().map(|x| &x.cgroup)),
            F::ContainerId => opt_str(ev.container.as_ref().and_then(|x| x.id.as_ref())),
            F::ContainerRuntime => opt_str(ev.container.as_ref().and_then(|x| x.runtime.as_ref())),
            F::ContainerPodUid => opt_str(ev.container.as_ref().and_then(|x| x.pod_uid.as_ref())),
            F::ContainerName => opt_str(ev.container.as_ref().and_then(|x| x.name.as_ref())),
            F::ContainerImage => opt_str(ev.container.as_ref().and_then(|x| x.image.as_ref())),
            F::K8s => present(ev.k8s.as_ref()),
            F::K8sNamespace => opt_str(ev.k8s.as_ref().and_then(|x| x.namespace.as_ref())),
            F::K8sPod => opt_str(ev.k8s.as_ref().and_then(|x| x.pod.as_ref())),
            F::K8sPodUid => opt_str(ev.k8s.as_ref().and_then(|x| x.pod_uid.as_ref())),
            F::K8sContainer => opt_str(ev.k8s.as_ref().and_then(|x| x.container.as_ref())),
            F::Workload => present(ev.workload.as_ref()),
            F::WorkloadId => opt_str(ev.workload.as_ref().map(|x| &x.id)),
            F::WorkloadKind => opt_static(ev.workload.as_ref().map(|x| x.kind.as_str())),
            F::WorkloadName => opt_str(ev.workload.as_ref().map(|x| &x.name)),
            F::WorkloadClaimed => ev
                .workload
                .as_ref()
                .map_or(Val::Missing, |x| Val::Bool(x.claimed)),
            F::Exit => present(ev.exit.as_ref()),
            F::ExitCode => opt_num(ev.exit.as_ref().and_then(|x| x.code)),
            F::ExitSignal => opt_num(ev.exit.as_ref().and_then(|x| x.signal)),
            F::ExitCoreDumped => ev
                .exit
                .as_ref()
                .map_or(Val::Missing, |x| Val::Bool(x.core_dumped)),
            F::ExitLifetimeMs => opt_num(ev.exit.as_ref().map(|x| x.lifetime_ms)),
            F::Fork => present(ev.fork.as_ref()),
            F::ForkChildPid => opt_num(ev.fork.as_ref().map(|x| x.child_pid)),
            F::File => present(ev.file.as_ref()),
            F::FilePath => opt_str(ev.file.as_ref().map(|x| &x.path)),
            F::FileName => ev
                .file
                .as_ref()
                .map_or(Val::Missing, |x| Val::Str(basename(&x.path))),
            F::FileTarget => opt_str(ev.file.as_ref().and_then(|x| x.target.as_ref())),
            F::FileFlags => opt_num(ev.file.as_ref().map(|x| x.flags)),
            F::FileAccess => {
                opt_static(ev.file.as_ref().and_then(|x| x.access).map(Access::as_str))
            }
            F::FileMode => opt_num(ev.file.as_ref().and_then(|x| x.mode)),
            F::FileResult => opt_num(ev.file.as_ref().map(|x| x.result)),
            F::FileClass => opt_static(
                ev.file
                    .as_ref()
                    .and_then(|x| x.class)
                    .map(AssetClass::as_str),
            ),
            F::FileDevice => present(ev.file.as_ref().and_then(|x| x.device.as_ref())),
            F::FileDeviceKind
            | F::FileDeviceMajor
            | F::FileDeviceMinor
            | F::FileDeviceAccelerator => {
                device_field(self, ev.file.as_ref().and_then(|x| x.device.as_ref()))
            }
            F::FileSize => opt_num(ev.file.as_ref().and_then(|x| x.size)),
            F::FilePathIncomplete => ev
                .file
                .as_ref()
                .map_or(Val::Missing, |x| Val::Bool(x.path_incomplete)),
            F::FileModelInUse => ev
                .file
                .as_ref()
                .map_or(Val::Missing, |x| Val::Bool(x.model_in_use)),
            F::FileSecretKind => ev
                .file
                .as_ref()
                .filter(|x| x.class == Some(AssetClass::Secret))
                .map_or(Val::Missing, |x| Val::Str(secret_kind(&x.path))),
            F::Net => present(ev.net.as_ref()),
            F::NetFamily => opt_static(ev.net.as_ref().map(|x| x.family.as_str())),
            F::NetProtocol => opt_static(ev.net.as_ref().map(|x| x.protocol.as_str())),
            F::NetSrc => present(ev.net.as_ref().and_then(|x| x.src.as_ref())),
            F::NetSrcIp | F::NetSrcPort => {
                endpoint_field(self, ev.net.as_ref().and_then(|x| x.src.as_ref()))
            }
            F::NetDst => present(ev.net.as_ref().and_then(|x| x.dst.as_ref())),
            F::NetDstIp | F::NetDstPort => {
                endpoint_field(self, ev.net.as_ref().and_then(|x| x.dst.as_ref()))
            }
            F::NetUnixPath => opt_str(ev.net.as_ref().and_then(|x| x.unix_path.as_ref())),
            F::NetResult => opt_num(ev.net.as_ref().and_then(|x| x.result)),
            F::NetBytesSent => opt_num(ev.net.as_ref().and_then(|x| x.bytes_sent)),
            F::NetBytesReceived => opt_num(ev.net.as_ref().and_then(|x| x.bytes_received)),
            F::NetClosed => ev
                .net
                .as_ref()
                .and_then(|x| x.closed)
                .map_or(Val::Missing, Val::Bool),
            F::NetDstExternal => ev
                .net
                .as_ref()
                .map_or(Val::Missing, |x| Val::Bool(x.dst_external)),
            F::NetDstName => opt_str(ev.net.as_ref().and_then(|x| x.dst_name.as_ref())),
            F::NetTlsServerName => {
                opt_str(ev.net.as_ref().and_then(|x| x.tls_server_name.as_ref()))
            }
            F::NetHttpHost => opt_str(ev.net.as_ref().and_then(|x| x.http_host.as_ref())),
            F::NetDstNameVerified => ev
                .net
                .as_ref()
                .map_or(Val::Missing, |x| Val::Bool(x.dst_name_verified)),
            F::Dns => present(ev.dns.as_ref()),
            F::DnsName => opt_str(ev.dns.as_ref().map(|x| &x.name)),
            F::DnsQtype => opt_str(ev.dns.as_ref().map(|x| &x.qtype)),
            F::DnsServerIp | F::DnsServerPort => {
                endpoint_field(self, ev.dns.as_ref().and_then(|x| x.server.as_ref()))
            }
            F::Syscall => present(ev.syscall.as_ref()),
            F::SyscallResult => opt_num(ev.syscall.as_ref().map(|x| x.result)),
            F::SyscallUid => opt_num(ev.syscall.as_ref().and_then(|x| x.uid)),
            F::SyscallEuid => opt_num(ev.syscall.as_ref().and_then(|x| x.euid)),
            F::SyscallGid => opt_num(ev.syscall.as_ref().and_then(|x| x.gid)),
            F::SyscallRequest => opt_str(ev.syscall.as_ref().and_then(|x| x.request.as_ref())),
            F::SyscallTargetPid => opt_num(ev.syscall.as_ref().and_then(|x| x.target_pid)),
            F::SyscallTargetAgent => Val::Bool(ev.syscall.as_ref().is_some_and(|x| x.target_agent)),
            F::SyscallSignal => opt_str(ev.syscall.as_ref().and_then(|x| x.signal.as_ref())),
            F::SyscallBpfId => opt_num(ev.syscall.as_ref().and_then(|x| x.bpf_id)),
            F::SyscallTargetWorkload => {
                present(ev.syscall.as_ref().and_then(|x| x.target_workload.as_ref()))
            }
            F::SyscallTargetWorkloadId => opt_str(
                ev.syscall
                    .as_ref()
                    .and_then(|x| x.target_workload.as_ref())
                    .map(|w| &w.id),
            ),
            F::SyscallTargetWorkloadKind => opt_static(
                ev.syscall
                    .as_ref()
                    .and_then(|x| x.target_workload.as_ref())
                    .map(|w| w.kind.as_str()),
            ),
            F::SyscallTargetWorkloadName => opt_str(
                ev.syscall
                    .as_ref()
                    .and_then(|x| x.target_workload.as_ref())
                    .map(|w| &w.name),
            ),
            F::SyscallCapEffective => opt_num(ev.syscall.as_ref().and_then(|x| x.cap_effective)),
            F::SyscallBpfCmd => opt_str(ev.syscall.as_ref().and_then(|x| x.bpf_cmd.as_ref())),
            F::SyscallBpfProgType => opt_num(ev.syscall.as_ref().and_then(|x| x.bpf_prog_type)),
            F::SyscallName => opt_str(ev.syscall.as_ref().and_then(|x| x.name.as_ref())),
            F::SyscallProt => opt_num(ev.syscall.as_ref().and_then(|x| x.prot)),
            F::SyscallAddr => opt_num(ev.syscall.as_ref().and_then(|x| x.addr)),
            F::SyscallLen => opt_num(ev.syscall.as_ref().and_then(|x| x.len)),
            F::Gpu => present(ev.gpu.as_ref()),
            F::GpuIoctls => opt_num(ev.gpu.as_ref().map(|x| x.ioctls)),
            F::GpuIntervalS => ev
                .gpu
                .as_ref()
                .map_or(Val::Missing, |x| Val::Num(Num::Float(x.interval_s))),
            F::GpuDeviceKind | F::GpuDeviceMajor | F::GpuDeviceMinor | F::GpuDeviceAccelerator => {
                device_field(self, ev.gpu.as_ref().map(|x| &x.device))
            }
            F::Llm => present(ev.llm.as_ref()),
            F::Cause => present(ev.cause.as_ref()),
            F::LlmRequestId
            | F::LlmProvider
            | F::LlmApi
            | F::LlmHost
            | F::LlmModel
            | F::LlmStream
            | F::LlmMessages
            | F::LlmTools
            | F::LlmTool
            | F::LlmPromptBytes
            | F::LlmPromptHash
            | F::LlmFetchedContent
            | F::LlmKeyProvider
            | F::LlmKeyForeignHost
            | F::LlmStatus
            | F::LlmFinishReason
            | F::LlmInputTokens
            | F::LlmOutputTokens
            | F::LlmLatencyMs => ev
                .llm
                .as_deref()
                .map_or(Val::Missing, |llm| llm_field(self, llm)),
            F::CauseLlmRequestId
            | F::CauseProvider
            | F::CauseModel
            | F::CauseTool
            | F::CauseMatched
            | F::CauseWhat
            | F::CauseHostFirstSeen
            | F::CauseFetchedContent => ev
                .cause
                .as_deref()
                .map_or(Val::Missing, |cause| cause_field(self, cause)),
        }
    }
}

fn llm_field(field: Field, llm: &LlmInfo) -> Val<'_> {
    use Field as F;
    match field {
        F::LlmRequestId => Val::Str(&llm.request_id),
        F::LlmProvider => Val::Str(&llm.provider),
        F::LlmApi => Val::Str(&llm.api),
        F::LlmHost => Val::Str(&llm.host),
        F::LlmModel => Val::Str(&llm.model),
        F::LlmStream => Val::Bool(llm.stream),
        F::LlmMessages => opt_num(llm.messages),
        F::LlmTools => Val::Strs(&llm.tools),
        F::LlmTool => Val::ToolNames(&llm.tool_calls),
        F::LlmPromptBytes => opt_num(llm.prompt_bytes),
        F::LlmPromptHash => Val::Str(&llm.prompt_hash),
        F::LlmFetchedContent => Val::Bool(llm.fetched_content),
        F::LlmKeyProvider => opt_str(llm.key_provider.as_ref()),
        F::LlmKeyForeignHost => Val::Bool(llm.key_foreign_host),
        F::LlmStatus => opt_num(llm.status),
        F::LlmFinishReason => opt_str(llm.finish_reason.as_ref()),
        F::LlmInputTokens => opt_num(llm.input_tokens),
        F::LlmOutputTokens => opt_num(llm.output_tokens),
        F::LlmLatencyMs => opt_num(llm.latency_ms),
        _ => Val::Missing,
    }
}

fn cause_field(field: Field, cause: &Cause) -> Val<'_> {
    use Field as F;
    match field {
        F::CauseLlmRequestId => Val::Str(&cause.llm_request_id),
        F::CauseProvider => Val::Str(&cause.provider),
        F::CauseModel => Val::Str(&cause.model),
        F::CauseTool => opt_str(cause.tool.as_ref()),
        F::CauseMatched => Val::Str(&cause.matched),
        F::CauseWhat => Val::Str(&cause.what),
        F::CauseHostFirstSeen => Val::Bool(cause.host_first_seen),
        F::CauseFetchedContent => Val::Bool(cause.fetched_content),
        _ => Val::Missing,
    }
}

fn endpoint_field(field: Field, endpoint: Option<&Endpoint>) -> Val<'_> {
    let Some(endpoint) = endpoint else {
        return Val::Missing;
    };
    match field {
        Field::NetSrcIp | Field::NetDstIp | Field::DnsServerIp => Val::Ip(endpoint.ip),
        _ => num(endpoint.port),
    }
}

fn device_field(field: Field, device: Option<&DeviceInfo>) -> Val<'_> {
    let Some(device) = device else {
        return Val::Missing;
    };
    match field {
        Field::FileDeviceKind | Field::GpuDeviceKind => Val::Str(device.kind.as_str()),
        Field::FileDeviceMajor | Field::GpuDeviceMajor => num(device.major),
        Field::FileDeviceMinor | Field::GpuDeviceMinor => num(device.minor),
        _ => opt_str(device.accelerator.as_ref()),
    }
}
