//! `aiwatch profile enforce`: locks a workload to its learned profile.
//!
//! An enforcing profile becomes a policy file of three rules with actions,
//! written to the state directory's `locked-profiles/`, which the agent
//! always loads (and watches): the policy compiler then places each rule
//! where it can be carried out (`policy::kernel_plan`), as for any rule.
//!
//! - **exec**: `kill` any exec of the workload outside the executables it
//!   has run. With exact paths this is a kernel exec allowlist: the kill
//!   comes at `sched_process_exec`, before the new image runs.
//! - **connect**: `deny` connects and UDP sends outside the learned peers
//!   and the host's resolvers on port 53.
//!   Peers learned by address or exact name become the kernel's egress
//!   allowlist (`cgroup/connect*`, `cgroup/sendmsg*`; a name by the
//!   addresses the agent resolves for it); a peer learned as a name
//!   pattern (`cdn-*.example.com`) cannot be decided in the kernel, and the
//!   rule then only alerts would-deny.
//! - **open**: `kill` opens of asset classes the workload never opened
//!   (from user space, after the fact: the kernel does not classify files).
//!
//! What the kernel enforces is said by `--dry-run` and, at every load, by
//! the agent's log and `aiwatch policy check`.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use serde::Serialize;
use serde_json::{json, Map, Value};

use super::config::Mode;
use super::generalize::split_peer_item;
use super::profile::{Profile, ASSET_CLASSES};
use crate::event::time_or_dash;

/// Where the host's resolvers answer.
const DNS_PORT: u16 = 53;

/// Where locked profiles' policies live, under the state directory.
pub const LOCKED_PROFILES_DIR: &str = "locked-profiles";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "profile {0} is {1}: lock only a profile that has finished learning (`aiwatch profile mode {0} enforcing`)"
    )]
    NotEnforcing(String, Mode),
    #[error("profile {0} has learned no executable: locking it would kill everything it runs")]
    Empty(String),
    #[error("cannot render the policy: {0}")]
    Render(String),
}

#[derive(Debug, Serialize)]
struct LockFile {
    rules: Vec<LockRule>,
}

#[derive(Debug, Serialize)]
struct LockRule {
    id: String,
    description: String,
    severity: &'static str,
    action: &'static str,
    tags: Vec<&'static str>,
    when: Value,
}

/// The policy that locks `profile`, and one note per part that is not
/// decided in the kernel.
#[derive(Debug)]
pub struct Lock {
    pub policy: String,
    pub notes: Vec<String>,
}

/// The path of the policy file that locks workload `name`.
pub fn lock_path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir
        .join(LOCKED_PROFILES_DIR)
        .join(format!("{}.yaml", slug(name)))
}

/// The lock of an enforcing profile. `resolvers` are the host's DNS
/// resolvers: the anomaly engine never learns lookups through them as
/// peers (they are plumbing), so the egress allowlist names them on port 53
/// itself, or the locked workload could no longer resolve a name.
pub fn lock_for(profile: &Profile, resolvers: &[IpAddr]) -> Result<Lock, LockError> {
    let workload = &profile.workload;
    if profile.mode != Mode::Enforcing {
        return Err(LockError::NotEnforcing(workload.to_string(), profile.mode));
    }
    if profile.executables.is_empty() {
        return Err(LockError::Empty(workload.to_string()));
    }
    let name = &workload.name;
    let id_base = format!("profile-lock.{}", slug(name));
    let mut notes = Vec::new();
    let learned = |what: &str, count: usize| {
        format!(
            "{workload} {what} outside its locked profile ({count} learned, from {} to {})",
            time_or_dash(profile.first_seen),
            time_or_dash(profile.last_seen)
        )
    };
    let mut rules = Vec::new();

    let exes: Vec<&str> = profile.executables.iter().collect();
    if exes.iter().any(|exe| exe.contains('*')) {
        notes.push(format!(
            "exec: some learned executables are patterns ({}); the kill comes from user space, after the exec",
            exes.iter()
                .filter(|exe| exe.contains('*'))
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let allowed_exes = if exes.iter().any(|exe| exe.contains('*')) {
        json!({"any": exes.iter().map(|exe| exe_match(exe)).collect::<Vec<_>>()})
    } else {
        json!({"process.exe": exes})
    };
    rules.push(LockRule {
        id: format!("{id_base}.exec"),
        description: learned("ran an executable", exes.len()),
        severity: "high",
        action: "kill",
        tags: vec!["anomaly-profile", "profile-lock"],
        when: json!({"kind": "exec", "workload.name": name, "not": allowed_exes}),
    });

    let peers: Vec<(&str, u16)> = profile.peers.iter().filter_map(split_peer_item).collect();
    if peers.is_empty() {
        notes.push("connect: no peer was learned; egress is not locked".into());
    } else {
        let (patterns, names): (Vec<&str>, Vec<&str>) = peers
            .iter()
            .map(|(host, _)| *host)
            .filter(|host| *host != "loopback" && host.parse::<ipnet::IpNet>().is_err())
            .partition(|host| host.contains('*'));
        if !patterns.is_empty() {
            notes.push(format!(
                "connect: peers learned as name patterns ({}) are not decided in the kernel; egress outside the profile alerts would-deny",
                patterns.join(", ")
            ));
        } else if !names.is_empty() {
            notes.push(format!(
                "connect: peers learned by name ({}) are allowed by the addresses the agent resolves for them and learns from verified DNS answers",
                names.join(", ")
            ));
        }
        let mut destinations: Vec<Value> =
            peers.iter().map(|(host, port)| peer(host, *port)).collect();
        if !resolvers.is_empty() {
            let resolvers: Vec<String> = resolvers.iter().map(IpAddr::to_string).collect();
            destinations.push(json!({"net.dst.ip": resolvers, "net.dst.port": DNS_PORT}));
        }
        rules.push(LockRule {
            id: format!("{id_base}.connect"),
            description: learned("contacted a peer", peers.len()),
            severity: "high",
            action: "deny",
            tags: vec!["anomaly-profile", "profile-lock"],
            when: json!({
                "kind": ["connect", "udp_send"],
                "workload.name": name,
                "not": {"any": destinations},
            }),
        });
    }

    let unlearned: Vec<&str> = ASSET_CLASSES
        .iter()
        .copied()
        .filter(|class| profile.paths.get(*class).is_none_or(|set| set.is_empty()))
        .collect();
    if !unlearned.is_empty() {
        notes.push(format!(
            "open: opens of {} are killed from user space, after the open",
            unlearned.join(", ")
        ));
        rules.push(LockRule {
            id: format!("{id_base}.open"),
            description: format!(
                "{workload} opened an asset class it never opened while learning ({})",
                unlearned.join(", ")
            ),
            severity: "high",
            action: "kill",
            tags: vec!["anomaly-profile", "profile-lock"],
            when: json!({"kind": "open", "workload.name": name, "file.class": unlearned}),
        });
    }

    let header = format!(
        "# The locked profile of {workload}, written by `aiwatch profile enforce`.\n# Remove it with `aiwatch profile enforce {name} --remove`.\n"
    );
    let body = serde_saphyr::to_string(&LockFile { rules })
        .map_err(|error| LockError::Render(error.to_string()))?;
    Ok(Lock {
        policy: header + &body,
        notes,
    })
}

fn exe_match(exe: &str) -> Value {
    if exe.contains('*') {
        json!({"process.exe": {"glob": exe}})
    } else {
        json!({"process.exe": exe})
    }
}

/// One learned peer as an allowed destination.
fn peer(host: &str, port: u16) -> Value {
    let mut condition = Map::new();
    if host == "loopback" {
        condition.insert(
            "net.dst.ip".into(),
            json!({"cidr": ["127.0.0.0/8", "::1/128"]}),
        );
    } else if host.parse::<ipnet::IpNet>().is_ok() {
        condition.insert("net.dst.ip".into(), json!({"cidr": host}));
    } else if host.contains('*') {
        condition.insert("net.dst_name".into(), json!({"glob": host}));
    } else {
        condition.insert("net.dst_name".into(), json!(host));
    }
    condition.insert("net.dst.port".into(), json!(port));
    Value::Object(condition)
}

/// A workload name as a file name and rule id part.
fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::anomaly::profile::WorkloadKey;
    use crate::policy::{
        kernel_plan::{self, KernelRule, Placement},
        PolicySet, Source,
    };

    fn enforcing() -> Profile {
        let mut profile = Profile::new(WorkloadKey {
            kind: "model-server".into(),
            name: "fraud".into(),
        });
        profile.executables.insert("/usr/bin/python3.11", 8);
        profile.peers.insert("10.0.0.0/8:6379", 8);
        profile.peers.insert("loopback:9090", 8);
        profile
            .paths
            .entry("model".into())
            .or_default()
            .insert("/models/*.onnx", 8);
        profile.set_mode(Mode::Enforcing);
        profile
    }

    fn placements(lock: &Lock) -> Vec<(String, Placement)> {
        let set = PolicySet::from_sources(&[Source {
            name: Arc::from("lock.yaml"),
            text: lock.policy.clone(),
        }])
        .expect("the lock is a valid policy");
        kernel_plan::plan(&set)
            .into_iter()
            .map(|placed| (placed.rule.id.clone(), placed.placement))
            .collect()
    }

    #[test]
    fn a_locked_profile_becomes_kernel_allowlists() {
        let lock = lock_for(&enforcing(), &["127.0.0.53".parse().unwrap()]).expect("lock");
        let placed = placements(&lock);
        assert_eq!(
            placed[0],
            (
                "profile-lock.fraud.exec".into(),
                Placement::Kernel(KernelRule::ExecAllow {
                    workload: "fraud".into(),
                    exes: vec!["/usr/bin/python3.11".into()],
                })
            )
        );
        let Placement::Kernel(KernelRule::EgressAllow {
            workload, peers, ..
        }) = &placed[1].1
        else {
            panic!("{placed:?}");
        };
        assert_eq!(workload, "fraud");
        // 10.0.0.0/8:6379, loopback (v4 and v6) on 9090, and the host's
        // resolver on 53.
        assert_eq!(peers.len(), 4, "{peers:?}");
        assert!(
            peers
                .iter()
                .any(|p| p.net == "127.0.0.53/32".parse().unwrap() && p.port == Some(53)),
            "{peers:?}"
        );
        assert_eq!(placed[2].0, "profile-lock.fraud.open");
        assert!(matches!(placed[2].1, Placement::UserSpace(_)), "{placed:?}");
        assert_eq!(lock.notes.len(), 1, "{:?}", lock.notes);
    }

    #[test]
    fn a_peer_learned_by_name_goes_to_the_kernel_by_its_addresses() {
        let mut profile = enforcing();
        profile.set_mode(Mode::Drifting);
        profile.peers.insert("huggingface.co:443", 8);
        profile.set_mode(Mode::Enforcing);
        let lock = lock_for(&profile, &[]).expect("lock");
        let placed = placements(&lock);
        let Placement::Kernel(KernelRule::EgressAllow { names, .. }) = &placed[1].1 else {
            panic!("{placed:?}");
        };
        assert_eq!(names.len(), 1, "{names:?}");
        assert_eq!(names[0].name, "huggingface.co");
        assert!(lock
            .notes
            .iter()
            .any(|note| note.contains("huggingface.co") && note.contains("resolves")));
    }

    #[test]
    fn a_peer_learned_as_a_name_pattern_keeps_egress_out_of_the_kernel_and_says_so() {
        let mut profile = enforcing();
        profile.set_mode(Mode::Drifting);
        profile.peers.insert("cdn-lfs-*.huggingface.co:443", 8);
        profile.set_mode(Mode::Enforcing);
        let lock = lock_for(&profile, &[]).expect("lock");
        let placed = placements(&lock);
        assert!(
            matches!(&placed[1].1, Placement::NotEnforced(why) if why.contains("pattern")),
            "{placed:?}"
        );
        assert!(lock
            .notes
            .iter()
            .any(|note| note.contains("cdn-lfs-*.huggingface.co")));
    }

    #[test]
    fn a_learning_profile_is_not_locked() {
        let mut profile = enforcing();
        profile.set_mode(Mode::Learning);
        assert!(matches!(
            lock_for(&profile, &[]),
            Err(LockError::NotEnforcing(..))
        ));
    }
}
