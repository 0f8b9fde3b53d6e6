//! What an event contributes to a profile: the set items it shows (an
//! executable, a process pair, a path pattern, a peer, a listening port, a
//! GPU device) and the rates it adds to.

use std::net::IpAddr;

use crate::event::{Access, AssetClass, Event, Kind, Protocol};

use super::config::{Caps, Detector};
use super::generalize::{
    generalize_exe, generalize_file_path, generalize_peer, listen_port_item, truncate_item,
};
use super::profile::{BoundedSet, Profile};
use super::rates::RateMetric;

/// Where DNS queries go.
const DNS_PORT: u16 = 53;

/// One learned-set item shown by an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    pub detector: Detector,
    /// Asset class, for file paths.
    pub class: Option<String>,
    /// The learned forms; the first is the primary one (alerts and dedupe).
    /// The observation is known when any form is known.
    pub items: Vec<String>,
    /// The concrete thing seen, for the explanation.
    pub seen: String,
}

impl Observation {
    pub(super) fn new(detector: Detector, item: String, seen: String) -> Self {
        Observation {
            detector,
            class: None,
            items: vec![item],
            seen,
        }
    }

    /// Key under which an alert on this observation is remembered.
    pub fn alert_key(&self) -> String {
        let primary = self.items.first().map(String::as_str).unwrap_or("");
        match &self.class {
            Some(class) => format!("{} {class} {primary}", self.detector.name()),
            None => format!("{} {primary}", self.detector.name()),
        }
    }
}

/// The profile set an observation belongs to.
pub fn set_for<'a>(profile: &'a Profile, observation: &Observation) -> Option<&'a BoundedSet> {
    match observation.detector {
        Detector::NewExecutable => Some(&profile.executables),
        Detector::NewProcessPair => Some(&profile.process_pairs),
        Detector::NewPeer => Some(&profile.peers),
        Detector::NewListenPort => Some(&profile.listen_ports),
        Detector::NewGpuDevice => Some(&profile.gpu_devices),
        Detector::NewFileClassPath => observation
            .class
            .as_deref()
            .and_then(|class| profile.paths.get(class)),
        _ => None,
    }
}

/// Mutable access, creating the per-class path set; with the cap that applies.
pub fn set_for_mut<'a>(
    profile: &'a mut Profile,
    observation: &Observation,
    caps: &Caps,
) -> Option<(&'a mut BoundedSet, usize)> {
    match observation.detector {
        Detector::NewExecutable => Some((&mut profile.executables, caps.executables)),
        Detector::NewProcessPair => Some((&mut profile.process_pairs, caps.process_pairs)),
        Detector::NewPeer => Some((&mut profile.peers, caps.peers)),
        Detector::NewListenPort => Some((&mut profile.listen_ports, caps.listen_ports)),
        Detector::NewGpuDevice => Some((&mut profile.gpu_devices, caps.gpu_devices)),
        Detector::NewFileClassPath => {
            let class = observation.class.clone()?;
            Some((
                profile.paths.entry(class).or_default(),
                caps.paths_per_class,
            ))
        }
        _ => None,
    }
}

pub fn is_known(profile: &Profile, observation: &Observation) -> bool {
    set_for(profile, observation)
        .is_some_and(|set| observation.items.iter().any(|item| set.contains(item)))
}

/// The set items an event shows.
pub fn observations(event: &Event, caps: &Caps, resolvers: &[IpAddr]) -> Vec<Observation> {
    let mut out = Vec::new();
    match event.kind {
        Kind::Exec if !event.process.exe.is_empty() => {
            let exe = generalize_exe(&event.process.exe, caps.item_bytes);
            let parent_exe = event
                .parent
                .as_ref()
                .map(|p| p.exe.as_str())
                .or_else(|| event.process.ancestors.first().map(|a| a.exe.as_str()))
                .filter(|p| !p.is_empty());
            let seen = match parent_exe {
                Some(parent) => format!("{} (started by {parent})", event.process.exe),
                None => event.process.exe.to_string(),
            };
            out.push(Observation::new(Detector::NewExecutable, exe.clone(), seen));
            if let Some(parent_exe) = parent_exe {
                let parent = generalize_exe(parent_exe, caps.item_bytes);
                out.push(Observation::new(
                    Detector::NewProcessPair,
                    format!("{parent} -> {exe}"),
                    format!("{parent_exe} -> {}", event.process.exe),
                ));
            }
        }
        Kind::Open => {
            if let Some(file) = &event.file {
                if let Some(class) = file.class {
                    let item = generalize_file_path(&file.path, class.as_str(), caps.item_bytes);
                    if class != AssetClass::GpuDevice {
                        let mut observation =
                            Observation::new(Detector::NewFileClassPath, item, file.path.clone());
                        observation.class = Some(class.as_str().to_string());
                        out.push(observation);
                    } else {
                        out.push(Observation::new(
                            Detector::NewGpuDevice,
                            item,
                            file.path.clone(),
                        ));
                    }
                }
            }
        }
        Kind::Connect | Kind::UdpSend => {
            // A lookup through the host's resolver is plumbing every program
            // shares (onnxruntime's telemetry, for one), not a peer.
            let dst = event.net.as_ref().and_then(|n| n.dst.as_ref());
            let via_resolver = dst.is_some_and(|d| d.port == DNS_PORT && resolvers.contains(&d.ip));
            if let Some(dst) = dst.filter(|_| !via_resolver) {
                let name = event.net.as_ref().and_then(|n| n.dst_name.as_deref());
                if let Some(forms) = generalize_peer(dst.ip, dst.port, name) {
                    let mut items = Vec::with_capacity(2);
                    // The name is the more telling form when it is known.
                    if let Some(name) = forms.name {
                        items.push(truncate_item(name, caps.item_bytes));
                    }
                    items.push(forms.network);
                    let seen = match name {
                        Some(name) => format!("{name} ({}):{}", dst.ip, dst.port),
                        None => format_endpoint(dst.ip, dst.port),
                    };
                    out.push(Observation {
                        detector: Detector::NewPeer,
                        class: None,
                        items,
                        seen,
                    });
                }
            }
        }
        Kind::Listen | Kind::Bind => {
            if let Some(net) = &event.net {
                let is_server_socket = event.kind == Kind::Listen || net.protocol == Protocol::Udp;
                if let Some(src) = net.src.as_ref().filter(|s| s.port != 0 && is_server_socket) {
                    let protocol = match net.protocol {
                        Protocol::Unknown => "tcp",
                        known => known.as_str(),
                    };
                    out.push(Observation::new(
                        Detector::NewListenPort,
                        listen_port_item(protocol, src.port),
                        format!("{protocol} port {}", src.port),
                    ));
                }
            }
        }
        Kind::GpuIoctl => {
            if let Some(gpu) = &event.gpu {
                let family = gpu.device.accelerator.as_deref().unwrap_or("gpu");
                let item = format!("{family} {}:{}", gpu.device.major, gpu.device.minor);
                out.push(Observation::new(Detector::NewGpuDevice, item.clone(), item));
            }
        }
        _ => {}
    }
    out
}

/// `ip:port`, with brackets for IPv6.
pub fn format_endpoint(ip: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(ip, port).to_string()
}

/// What an event adds to the minute's rates.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RateContribution {
    pub amounts: Vec<(RateMetric, f64)>,
    /// Concrete `ip:port` contacted, for the distinct peer count.
    pub peer: Option<String>,
}

pub fn rate_contribution(event: &Event) -> RateContribution {
    let mut contribution = RateContribution::default();
    match event.kind {
        Kind::Exec => contribution.amounts.push((RateMetric::Spawns, 1.0)),
        Kind::Open => {
            if let Some(file) = &event.file {
                let is_model = file.class.is_some_and(AssetClass::is_model);
                if is_model && opened_for_reading(file.access, file.flags) {
                    if let Some(size) = file.size {
                        contribution
                            .amounts
                            .push((RateMetric::ModelReadBytes, size as f64));
                    }
                }
            }
        }
        Kind::GpuIoctl => {
            if let Some(gpu) = &event.gpu {
                contribution
                    .amounts
                    .push((RateMetric::GpuIoctls, gpu.ioctls as f64));
            }
        }
        _ => {}
    }
    if let Some(net) = &event.net {
        let dst = net.dst.as_ref();
        let remote = dst.is_some_and(|d| !is_local_address(d.ip));
        if matches!(event.kind, Kind::Connect | Kind::UdpSend | Kind::TcpSummary) && remote {
            if let Some(bytes) = net.bytes_sent.filter(|b| *b > 0) {
                contribution
                    .amounts
                    .push((RateMetric::EgressBytes, bytes as f64));
            }
        }
        if matches!(event.kind, Kind::Connect | Kind::UdpSend) {
            contribution.peer = dst.map(|d| format_endpoint(d.ip, d.port));
        }
    }
    contribution
}

fn opened_for_reading(access: Option<Access>, flags: u32) -> bool {
    const O_ACCMODE: u32 = 0o3;
    const O_WRONLY: u32 = 0o1;
    match access {
        Some(access) => access.reads(),
        None => flags & O_ACCMODE != O_WRONLY,
    }
}

/// Loopback and unspecified addresses do not count as egress.
fn is_local_address(ip: IpAddr) -> bool {
    ip.is_loopback() || ip.is_unspecified()
}
