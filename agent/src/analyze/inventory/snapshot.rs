//! What `/inventory` serves: the snapshot of every workload's inventory and
//! of the model files, with the caps and what did not fit under them.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::LlmUse;
use crate::analyze::workload::Signal;
use crate::event::{AssetClass, Protocol, WallTime, WorkloadRef};

/// Caps of the inventory. Defaults in parentheses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct InventoryLimits {
    /// Workloads (1 024); past it the one idle longest is dropped.
    pub workloads: usize,
    /// Live processes listed per workload (256).
    pub processes: usize,
    /// Model files per workload (256), data sets per workload (256).
    pub models: usize,
    pub datasets: usize,
    /// GPU device nodes per workload (32).
    pub devices: usize,
    /// Secret files per workload (128).
    pub secrets: usize,
    /// Network peers per workload (512).
    pub peers: usize,
    /// Listening sockets per workload (64).
    pub listeners: usize,
    /// Model files in the per-file view (4 096).
    pub model_files: usize,
    /// Readers and writers listed per model file (64 each).
    pub actors: usize,
    /// Open TCP connections whose totals are remembered (16 384).
    pub connections: usize,
}

impl Default for InventoryLimits {
    fn default() -> Self {
        InventoryLimits {
            workloads: 1024,
            processes: 256,
            models: 256,
            datasets: 256,
            devices: 32,
            secrets: 128,
            peers: 512,
            listeners: 64,
            model_files: 4096,
            actors: 64,
            connections: 16_384,
        }
    }
}

/// Entries that did not fit, per list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Overflow {
    pub workloads: u64,
    pub processes: u64,
    pub models: u64,
    pub datasets: u64,
    pub devices: u64,
    pub secrets: u64,
    pub peers: u64,
    pub listeners: u64,
    pub model_files: u64,
    pub actors: u64,
    pub connections: u64,
    #[serde(default)]
    pub pods: u64,
}

/// A Kubernetes pod a workload's processes ran in (from the runtime).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PodEntry {
    pub namespace: String,
    pub pod: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessEntry {
    pub pid: u32,
    pub exe: String,
    #[serde(default, with = "crate::event::time_or_empty")]
    pub first_seen: Option<WallTime>,
}

/// A file a workload opened.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FileUse {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<AssetClass>,
    pub opens: u64,
    /// Opens for writing.
    pub writes: u64,
    /// Bytes read: the file size at each open for reading.
    pub bytes_read: u64,
    #[serde(default, with = "crate::event::time_or_empty")]
    pub first_seen: Option<WallTime>,
    #[serde(default, with = "crate::event::time_or_empty")]
    pub last_seen: Option<WallTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accelerator: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Peer {
    pub ip: IpAddr,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Protocol::is_unknown")]
    pub protocol: Protocol,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub external: bool,
    pub connections: u64,
    pub bytes_out: u64,
    pub bytes_in: u64,
    #[serde(default, with = "crate::event::time_or_empty")]
    pub first_seen: Option<WallTime>,
    #[serde(default, with = "crate::event::time_or_empty")]
    pub last_seen: Option<WallTime>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Listener {
    pub ip: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    #[serde(default, with = "crate::event::time_or_empty")]
    pub first_seen: Option<WallTime>,
}

/// One workload's inventory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkloadInventory {
    #[serde(flatten)]
    pub workload: WorkloadRef,
    #[serde(default, with = "crate::event::time_or_empty")]
    pub first_seen: Option<WallTime>,
    #[serde(default, with = "crate::event::time_or_empty")]
    pub last_seen: Option<WallTime>,
    pub processes: Vec<ProcessEntry>,
    pub processes_exited: u64,
    pub models: Vec<FileUse>,
    pub datasets: Vec<FileUse>,
    pub gpu_devices: Vec<FileUse>,
    pub secrets: Vec<FileUse>,
    pub peers: Vec<Peer>,
    pub listening: Vec<Listener>,
    /// The Kubernetes pods its processes ran in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<PodEntry>,
    /// The LLM APIs it called: providers, hosts, models, tools.
    #[serde(default, skip_serializing_if = "LlmUse::is_empty")]
    pub llm: LlmUse,
    /// Alerts raised about this workload's processes since it was first seen.
    #[serde(default)]
    pub alerts: u64,
    pub overflow: Overflow,
    /// Discovery score of the workload (declared workloads: the threshold).
    /// Filled from the workload table when the snapshot is published.
    #[serde(default)]
    pub score: u32,
    /// Why it is a workload, one phrase per signal:
    /// `maps library onnxruntime (…)`, `read model model (…/tiny.onnx)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// The signals behind `reasons`, with their source, key and weight.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signals: Vec<Signal>,
}

/// Who touched a model file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Actor {
    /// Workload id, when the process belonged to one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload_name: Option<String>,
    pub exe: String,
    pub opens: u64,
    #[serde(default, with = "crate::event::time_or_empty")]
    pub last_seen: Option<WallTime>,
}

/// One model file and everyone that read or wrote it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelFile {
    pub path: String,
    pub class: AssetClass,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    pub readers: Vec<Actor>,
    pub writers: Vec<Actor>,
    #[serde(default, with = "crate::event::time_or_empty")]
    pub first_seen: Option<WallTime>,
    #[serde(default, with = "crate::event::time_or_empty")]
    pub last_seen: Option<WallTime>,
}

/// What `/inventory` serves.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct InventorySnapshot {
    pub workloads: Vec<WorkloadInventory>,
    pub models: Vec<ModelFile>,
    pub overflow: Overflow,
    pub limits: InventoryLimits,
}
