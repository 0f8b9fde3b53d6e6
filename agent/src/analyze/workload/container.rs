//! Container identity from cgroup paths: container id, runtime and
//! Kubernetes pod uid.
//!
//! Understands the layouts docker, containerd (plain and CRI), cri-o, podman
//! and LXC leave behind, with the cgroupfs and the systemd cgroup drivers,
//! on cgroup v1, v2 and hybrid hosts. The innermost container wins, so a
//! container nested in another (kind, docker-in-docker) reports itself.

use procfs::ProcessCGroups;
use serde::{Deserialize, Serialize};

use crate::event::Container;

/// What a cgroup path says about the container a process runs in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerIdentity {
    /// Full container id (64 hex characters for OCI runtimes).
    pub id: Option<String>,
    /// `docker`, `containerd`, `cri-o`, `podman` or `lxc`.
    pub runtime: Option<String>,
    /// Kubernetes pod uid, with dashes.
    pub pod_uid: Option<String>,
    /// The process is the runtime's monitor for the container (`conmon`),
    /// not a process inside it.
    pub monitor: bool,
}

impl ContainerIdentity {
    /// The first 12 characters of the id, as `docker ps` shows it.
    pub fn short_id(&self) -> Option<&str> {
        self.id.as_deref().map(|id| id.get(..12).unwrap_or(id))
    }

    /// The event form, with the cgroup path it was parsed from.
    pub fn to_event(&self, cgroup: &str) -> Container {
        Container {
            cgroup: cgroup.to_string(),
            id: self.id.clone(),
            runtime: self.runtime.clone(),
            pod_uid: self.pod_uid.clone(),
            // The runtime's API fills these in (`analyze::runtime`).
            name: None,
            image: None,
        }
    }
}

fn is_hex_id(text: &str, min_len: usize) -> bool {
    text.len() >= min_len && text.len() <= 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Scope units named `<prefix><id>.scope` and what they mean.
const SCOPE_PREFIXES: &[(&str, &str, bool)] = &[
    ("docker-", "docker", false),
    ("cri-containerd-", "containerd", false),
    ("nerdctl-", "containerd", false),
    ("crio-conmon-", "cri-o", true),
    ("crio-", "cri-o", false),
    ("libpod-conmon-", "podman", true),
    ("libpod-", "podman", false),
];

/// Parses one cgroup path (`/kubepods/burstable/pod<uid>/<id>`, ...).
pub fn parse_cgroup_path(path: &str) -> ContainerIdentity {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let mut identity = ContainerIdentity::default();
    let mut container_at = None;
    for (index, component) in components.iter().enumerate().rev() {
        if let Some((id, runtime, monitor)) = container_component(component, &components[..index]) {
            identity.id = Some(id);
            identity.runtime = runtime.map(str::to_string);
            identity.monitor = monitor;
            container_at = Some(index);
            break;
        }
    }
    // The pod is an ancestor of the container (or of the pod's own cgroup).
    let pod_search_end = container_at.unwrap_or(components.len());
    identity.pod_uid = components[..pod_search_end]
        .iter()
        .rev()
        .find_map(|c| pod_uid(c));
    if identity.pod_uid.is_some() && identity.id.is_some() && identity.runtime.is_none() {
        // A bare id under kubepods: CRI runtimes other than containerd name
        // their scopes, so a bare id is containerd with cgroupfs.
        identity.runtime = Some("containerd".to_string());
    }
    identity
}

/// Recognises a container component; `ancestors` are the components above it.
fn container_component(
    component: &str,
    ancestors: &[&str],
) -> Option<(String, Option<&'static str>, bool)> {
    if let Some(unit) = component.strip_suffix(".scope") {
        for (prefix, runtime, monitor) in SCOPE_PREFIXES {
            if let Some(id) = unit.strip_prefix(prefix) {
                if is_hex_id(id, 12) {
                    return Some((id.to_string(), Some(runtime), *monitor));
                }
            }
        }
        return None;
    }
    if let Some(name) = component.strip_prefix("lxc.payload.") {
        return (!name.is_empty()).then(|| (name.to_string(), Some("lxc"), false));
    }
    if let Some(id) = component.strip_prefix("libpod-") {
        if is_hex_id(id, 12) {
            return Some((id.to_string(), Some("podman"), false));
        }
    }
    if is_hex_id(component, 64) {
        let parent = ancestors.last().copied().unwrap_or("");
        // Under kubepods the runtime is settled by the caller (see above).
        let runtime = match parent {
            "docker" => Some("docker"),
            "libpod_parent" => Some("podman"),
            _ => None,
        };
        return Some((component.to_string(), runtime, false));
    }
    None
}

/// `pod<uid>` (cgroupfs) or `kubepods-<qos>-pod<uid_with_underscores>.slice`.
fn pod_uid(component: &str) -> Option<String> {
    let raw = if let Some(slice) = component.strip_suffix(".slice") {
        let (_, uid) = slice.rsplit_once("-pod")?;
        if !slice.starts_with("kubepods") {
            return None;
        }
        uid
    } else {
        component.strip_prefix("pod")?
    };
    let uid = raw.replace('_', "-");
    let well_formed = uid.len() >= 32 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    well_formed.then_some(uid)
}

/// Parses the text of `/proc/<pid>/cgroup` into the process's cgroup path
/// and its container identity.
///
/// The unified (`0::`) line gives the path. On hybrid hosts whose unified
/// path says nothing about a container, the v1 lines are searched too
/// (`name=systemd`, `memory`, `cpu`, ... all carry the same container id).
/// Returns `None` when no line parses.
pub fn parse_proc_cgroup(groups: &ProcessCGroups) -> Option<(String, ContainerIdentity)> {
    let mut unified: Option<&str> = None;
    let mut legacy: Vec<&str> = Vec::new();
    for group in groups {
        if group.hierarchy == 0 && group.controllers.is_empty() {
            unified = Some(&group.pathname);
        } else {
            legacy.push(&group.pathname);
        }
    }
    if let Some(path) = unified {
        let identity = parse_cgroup_path(path);
        if identity.id.is_some() || legacy.is_empty() {
            return Some((path.to_string(), identity));
        }
    }
    for path in &legacy {
        let identity = parse_cgroup_path(path);
        if identity.id.is_some() {
            return Some((path.to_string(), identity));
        }
    }
    let path = unified.or_else(|| legacy.first().copied())?;
    Some((path.to_string(), parse_cgroup_path(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1c2a3b5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7a8";
    const POD: &str = "8d2b7c3e-9f41-4a6b-b1e2-0c3d4e5f6a7b";

    fn check(path: &str, runtime: Option<&str>, pod: Option<&str>) {
        let identity = parse_cgroup_path(path);
        assert_eq!(identity.id.as_deref(), Some(ID), "{path}");
        assert_eq!(identity.runtime.as_deref(), runtime, "{path}");
        assert_eq!(identity.pod_uid.as_deref(), pod, "{path}");
    }

    #[test]
    fn docker_cgroupfs_and_systemd() {
        check(&format!("/docker/{ID}"), Some("docker"), None);
        check(
            &format!("/system.slice/docker-{ID}.scope"),
            Some("docker"),
            None,
        );
        check(
            &format!("/system.slice/docker-{ID}.scope/init.scope"),
            Some("docker"),
            None,
        );
    }

    #[test]
    fn kubernetes_cgroupfs_driver() {
        check(
            &format!("/kubepods/burstable/pod{POD}/{ID}"),
            Some("containerd"),
            Some(POD),
        );
        check(
            &format!("/kubepods/besteffort/pod{POD}/{ID}"),
            Some("containerd"),
            Some(POD),
        );
        // Guaranteed pods sit directly under kubepods.
        check(
            &format!("/kubepods/pod{POD}/{ID}"),
            Some("containerd"),
            Some(POD),
        );
    }

    #[test]
    fn kubernetes_systemd_driver() {
        let pod_underscored = POD.replace('-', "_");
        check(
            &format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{pod_underscored}.slice/cri-containerd-{ID}.scope"
            ),
            Some("containerd"),
            Some(POD),
        );
        check(
            &format!(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{pod_underscored}.slice/crio-{ID}.scope"
            ),
            Some("cri-o"),
            Some(POD),
        );
        check(
            &format!("/kubepods.slice/kubepods-pod{pod_underscored}.slice/docker-{ID}.scope"),
            Some("docker"),
            Some(POD),
        );
    }

    #[test]
    fn cri_o_monitor_is_flagged() {
        let identity = parse_cgroup_path(&format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/crio-conmon-{ID}.scope",
            POD.replace('-', "_")
        ));
        assert_eq!(identity.id.as_deref(), Some(ID));
        assert_eq!(identity.runtime.as_deref(), Some("cri-o"));
        assert!(identity.monitor);
    }

    #[test]
    fn podman_layouts() {
        check(
            &format!("/machine.slice/libpod-{ID}.scope"),
            Some("podman"),
            None,
        );
        check(
            &format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"),
            Some("podman"),
            None,
        );
        check(&format!("/libpod_parent/libpod-{ID}"), Some("podman"), None);
        let conmon = parse_cgroup_path(&format!("/machine.slice/libpod-conmon-{ID}.scope"));
        assert!(conmon.monitor);
    }

    #[test]
    fn nested_container_reports_the_innermost() {
        let outer = "a".repeat(64);
        check(
            &format!("/docker/{outer}/kubepods/besteffort/pod{POD}/{ID}"),
            Some("containerd"),
            Some(POD),
        );
    }

    #[test]
    fn host_processes_have_no_container() {
        for path in [
            "/",
            "/user.slice/user-1000.slice/session-3.scope",
            "/system.slice/sshd.service",
            "/system.slice/containerd.service",
            "/init.scope",
        ] {
            assert_eq!(
                parse_cgroup_path(path),
                ContainerIdentity::default(),
                "{path}"
            );
        }
        // A pod's own cgroup (the pause container's parent) has a pod but no container.
        let pod_only = parse_cgroup_path(&format!("/kubepods/burstable/pod{POD}"));
        assert_eq!(pod_only.pod_uid.as_deref(), Some(POD));
        assert_eq!(pod_only.id, None);
    }

    /// `/proc/<pid>/cgroup` text as procfs parses it.
    fn cgroups(text: &str) -> ProcessCGroups {
        use procfs::FromRead;
        ProcessCGroups::from_read(text.as_bytes()).expect("procfs parses it")
    }

    #[test]
    fn proc_cgroup_v2() {
        let text = format!("0::/system.slice/docker-{ID}.scope\n");
        let (path, identity) = parse_proc_cgroup(&cgroups(&text)).expect("parses");
        assert_eq!(path, format!("/system.slice/docker-{ID}.scope"));
        assert_eq!(identity.id.as_deref(), Some(ID));
        assert_eq!(identity.short_id(), Some(&ID[..12]));
    }

    #[test]
    fn proc_cgroup_v1_and_hybrid() {
        let v1 =
            format!("12:pids:/docker/{ID}\n11:memory:/docker/{ID}\n1:name=systemd:/docker/{ID}\n");
        let (path, identity) = parse_proc_cgroup(&cgroups(&v1)).expect("parses");
        assert_eq!(path, format!("/docker/{ID}"));
        assert_eq!(identity.runtime.as_deref(), Some("docker"));

        // Hybrid: the unified hierarchy is not used by the runtime.
        let hybrid = format!(
            "11:memory:/kubepods/burstable/pod{POD}/{ID}\n1:name=systemd:/kubepods/burstable/pod{POD}/{ID}\n0::/\n"
        );
        let (path, identity) = parse_proc_cgroup(&cgroups(&hybrid)).expect("parses");
        assert_eq!(path, format!("/kubepods/burstable/pod{POD}/{ID}"));
        assert_eq!(identity.pod_uid.as_deref(), Some(POD));

        let host = "0::/user.slice/user-0.slice/session-1.scope\n";
        let (path, identity) = parse_proc_cgroup(&cgroups(host)).expect("parses");
        assert_eq!(path, "/user.slice/user-0.slice/session-1.scope");
        assert_eq!(identity.id, None);
        assert_eq!(parse_proc_cgroup(&ProcessCGroups(Vec::new())), None);
    }

    #[test]
    fn private_cgroup_namespace_paths_keep_their_tail() {
        // An agent in its own cgroup namespace (a pod on a cgroup v2 host)
        // reads other processes' paths relative to its own cgroup.
        check(
            &format!("/../../besteffort/pod{POD}/{ID}"),
            Some("containerd"),
            Some(POD),
        );
        check(&format!("/../../k8s.io/{ID}"), None, None);
        check(
            &format!(
                "/../../../kubepods-besteffort-pod{}.slice/cri-containerd-{ID}.scope",
                POD.replace('-', "_")
            ),
            Some("containerd"),
            Some(POD),
        );
        let text = format!("0::/../../libpod_parent/libpod-{ID}\n");
        let (path, identity) = parse_proc_cgroup(&cgroups(&text)).expect("parses");
        assert_eq!(path, format!("/../../libpod_parent/libpod-{ID}"));
        assert_eq!(identity.id.as_deref(), Some(ID));
        assert_eq!(identity.runtime.as_deref(), Some("podman"));
    }

    #[test]
    fn event_form_keeps_the_cgroup() {
        let path = format!("/docker/{ID}");
        let event = parse_cgroup_path(&path).to_event(&path);
        assert_eq!(event.cgroup, path);
        assert_eq!(event.runtime.as_deref(), Some("docker"));
    }
}
