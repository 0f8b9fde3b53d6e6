//! Who an event is about: the process, its ancestry, its container and
//! pod, its workload, and how it was forked or exited.

pub use arcstr::ArcStr;
use serde::{Deserialize, Serialize};

use super::WallTime;

/// A process's arguments, shared like its [`ArcStr`] paths and names: the
/// process table holds them once and every event about the process points
/// at them.
pub type Argv = std::sync::Arc<[String]>;

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
    pub exe: ArcStr,
    pub argv: Argv,
    /// argv was cut: more than 16 arguments or 1 KiB.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub argv_truncated: bool,
    pub comm: ArcStr,
    pub cgroup_id: u64,
    /// Start time of the process (RFC 3339); with `pid`, its identity.
    /// Unknown for a process that started before the agent and whose start
    /// the kernel could not give.
    #[serde(with = "super::time_or_empty")]
    pub start_time: Option<WallTime>,
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
    /// The process runs the running agent's own executable (the same
    /// path): an `aiwatch` command, such as `aiwatch profile freeze`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub agent_binary: bool,
    /// Nearest first; bounded to 8 entries.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<Ancestor>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Parent {
    pub pid: u32,
    pub exe: ArcStr,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub argv: Argv,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub comm: ArcStr,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ancestor {
    pub pid: u32,
    pub exe: ArcStr,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub comm: ArcStr,
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
    /// Container name, as the container runtime knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Image reference the container was created from, as the runtime
    /// knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// Where a container sits in Kubernetes: from the labels the kubelet puts on
/// the containers it creates, read through the container runtime.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct K8s {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// The container's name in the pod spec.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
}

/// The AI workload a process belongs to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WorkloadRef {
    pub id: String,
    pub kind: WorkloadKind,
    pub name: String,
    /// Known only from what its processes claim (names, command lines,
    /// devices, ports), with no library, model or data set evidence: rules
    /// never trust it more than a process outside any workload.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub claimed: bool,
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

/// What an AI workload does.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    Inference,
    Training,
    Notebook,
    Agent,
    Pipeline,
    #[default]
    UnknownAi,
}

impl WorkloadKind {
    pub const ALL: [WorkloadKind; 6] = [
        WorkloadKind::Inference,
        WorkloadKind::Training,
        WorkloadKind::Notebook,
        WorkloadKind::Agent,
        WorkloadKind::Pipeline,
        WorkloadKind::UnknownAi,
    ];

    /// The name used in `workload.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Inference => "inference",
            WorkloadKind::Training => "training",
            WorkloadKind::Notebook => "notebook",
            WorkloadKind::Agent => "agent",
            WorkloadKind::Pipeline => "pipeline",
            WorkloadKind::UnknownAi => "unknown-ai",
        }
    }

    pub fn parse(name: &str) -> Option<WorkloadKind> {
        WorkloadKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
