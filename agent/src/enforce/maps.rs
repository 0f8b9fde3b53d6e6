//! The kernel's enforcement maps (`ebpf/src/probes/enforce.rs` and
//! `egress.rs`): the exec deny list, the never-touch list, the control
//! slots, and the egress allowlists by enforcement scope.

use std::{collections::HashSet, net::IpAddr, os::unix::fs::MetadataExt, path::Path};

use aiwatch_common::{
    EgressKey, ExeKey, ExecAllowKey, OpenAllowKey, EGRESS_ENFORCED, EGRESS_KEY_FIXED_BITS,
    ENFORCE_ACCEL, ENFORCE_KILL_BUDGET, ENFORCE_KILL_WINDOW_NS, ENFORCE_ON, ENFORCE_PROTECTED,
};
use aya::{
    maps::{
        lpm_trie::{Key, LpmTrie},
        Array, HashMap, MapData, MapError,
    },
    Ebpf,
};

use crate::policy::kernel_plan::EgressPeer;

#[derive(Debug, thiserror::Error)]
pub enum EnforceMapError {
    #[error("the kernel programs lack the map {0}; the object and the agent do not match")]
    Missing(&'static str),
    #[error("cannot update the kernel map {map}: {source}")]
    Update {
        map: &'static str,
        #[source]
        source: MapError,
    },
}

/// The identity the kernel compares: `sb->s_dev` in the kernel's encoding
/// (`MAJOR << 20 | MINOR`) and the inode number.
pub fn exe_key(path: &Path) -> std::io::Result<ExeKey> {
    let meta = std::fs::metadata(path)?;
    let dev = meta.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    Ok(ExeKey {
        dev: (major << 20) | (minor & 0xfffff),
        _pad: 0,
        ino: meta.ino(),
    })
}

pub struct EnforceMaps {
    exec_deny: HashMap<MapData, ExeKey, u32>,
    never_touch: HashMap<MapData, ExeKey, u32>,
    accel_allow_exes: HashMap<MapData, ExeKey, u32>,
    protected_files: HashMap<MapData, ExeKey, u32>,
    open_allow: HashMap<MapData, OpenAllowKey, u32>,
    exec_allow: HashMap<MapData, ExecAllowKey, u32>,
    exec_allow_scopes: HashMap<MapData, u32, u32>,
    control: Array<MapData, u64>,
    egress_allow: LpmTrie<MapData, EgressKey, u32>,
    egress_scopes: HashMap<MapData, u32, u32>,
    /// What the last `set_egress` wrote, so the next removes what is gone.
    egress_written: HashSet<(u32, EgressKey)>,
}

/// The trie key of `peer` in `scope`: the scope and port, then the address
/// (IPv4 as IPv4-mapped IPv6), with the network's prefix.
pub fn egress_key(scope: u16, peer: &EgressPeer) -> (u32, EgressKey) {
    let (addr, bits) = match peer.net.network() {
        IpAddr::V4(v4) => (v4.to_ipv6_mapped(), 96 + u32::from(peer.net.prefix_len())),
        IpAddr::V6(v6) => (v6, u32::from(peer.net.prefix_len())),
    };
    (
        EGRESS_KEY_FIXED_BITS + bits,
        EgressKey {
            scope: u32::from(scope).to_be_bytes(),
            port: peer.port.unwrap_or(0).to_be_bytes(),
            _pad: [0; 2],
            addr: addr.octets(),
        },
    )
}

fn take<T: TryFrom<aya::maps::Map>>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<T, EnforceMapError> {
    let map = ebpf.take_map(name).ok_or(EnforceMapError::Missing(name))?;
    T::try_from(map).map_err(|_| EnforceMapError::Missing(name))
}

impl EnforceMaps {
    pub fn from_ebpf(ebpf: &mut Ebpf) -> Result<EnforceMaps, EnforceMapError> {
        Ok(EnforceMaps {
            exec_deny: take(ebpf, "EXEC_DENY")?,
            never_touch: take(ebpf, "NEVER_TOUCH")?,
            accel_allow_exes: take(ebpf, "ACCEL_ALLOW_EXES")?,
            protected_files: take(ebpf, "PROTECTED_FILES")?,
            open_allow: take(ebpf, "OPEN_ALLOW")?,
            exec_allow: take(ebpf, "EXEC_ALLOW")?,
            exec_allow_scopes: take(ebpf, "EXEC_ALLOW_SCOPES")?,
            control: take(ebpf, "ENFORCE_CONTROL")?,
            egress_allow: take(ebpf, "EGRESS_ALLOW")?,
            egress_scopes: take(ebpf, "EGRESS_SCOPES")?,
            egress_written: HashSet::new(),
        })
    }

    /// Sets the switch, the kill budget and the accelerator deny mode
    /// (`ACCEL_*`).
    pub fn set_control(
        &mut self,
        on: bool,
        kill_budget: u64,
        window_ns: u64,
        accel: u64,
    ) -> Result<(), EnforceMapError> {
        for (slot, value) in [
            (ENFORCE_KILL_BUDGET, kill_budget),
            (ENFORCE_KILL_WINDOW_NS, window_ns),
            (ENFORCE_ACCEL, accel),
            (ENFORCE_ON, u64::from(on)),
        ] {
            self.set_slot(slot, value)?;
        }
        Ok(())
    }

    /// Replaces the exec deny list (`value`: a rule slot per key).
    pub fn set_exec_deny(&mut self, wanted: &[(ExeKey, u32)]) -> Result<(), EnforceMapError> {
        replace(&mut self.exec_deny, "EXEC_DENY", wanted)
    }

    /// Replaces the enforced egress allowlists: each scope listed is
    /// enforced with exactly its peers; every other scope is not.
    pub fn set_egress(
        &mut self,
        allowlists: &[(u16, Vec<EgressPeer>)],
    ) -> Result<(), EnforceMapError> {
        let update = |map| move |source| EnforceMapError::Update { map, source };
        let wanted: HashSet<(u32, EgressKey)> = allowlists
            .iter()
            .flat_map(|(scope, peers)| peers.iter().map(|peer| egress_key(*scope, peer)))
            .collect();
        // Entries first, then the scopes: a scope is never enforced with
        // part of its list.
        for (bits, key) in &wanted {
            self.egress_allow
                .insert(&Key::new(*bits, *key), 1, 0)
                .map_err(update("EGRESS_ALLOW"))?;
        }
        let scopes: HashSet<u32> = allowlists
            .iter()
            .map(|(scope, _)| u32::from(*scope))
            .collect();
        for scope in &scopes {
            self.egress_scopes
                .insert(scope, EGRESS_ENFORCED, 0)
                .map_err(update("EGRESS_SCOPES"))?;
        }
        let stale: Vec<u32> = self
            .egress_scopes
            .keys()
            .filter_map(Result::ok)
            .filter(|scope| !scopes.contains(scope))
            .collect();
        for scope in stale {
            self.egress_scopes
                .remove(&scope)
                .map_err(update("EGRESS_SCOPES"))?;
        }
        for (bits, key) in self.egress_written.difference(&wanted) {
            self.egress_allow
                .remove(&Key::new(*bits, *key))
                .map_err(update("EGRESS_ALLOW"))?;
        }
        self.egress_written = wanted;
        Ok(())
    }

    /// Adds peers to enforced allowlists (the addresses of an allowlisted
    /// name), keeping what is there.
    pub fn add_egress(&mut self, peers: &[(u16, EgressPeer)]) -> Result<(), EnforceMapError> {
        for (scope, peer) in peers {
            let (bits, key) = egress_key(*scope, peer);
            self.egress_allow
                .insert(&Key::new(bits, key), 1, 0)
                .map_err(|source| EnforceMapError::Update {
                    map: "EGRESS_ALLOW",
                    source,
                })?;
            self.egress_written.insert((bits, key));
        }
        Ok(())
    }

    pub fn set_never_touch(&mut self, wanted: &[(ExeKey, u32)]) -> Result<(), EnforceMapError> {
        replace(&mut self.never_touch, "NEVER_TOUCH", wanted)
    }

    /// Replaces the protected files (value: the rule's slot) and the
    /// executables allowed to open them. The allowed first, so a file is
    /// never protected without its openers.
    pub fn set_open_kill(
        &mut self,
        protected: &[(ExeKey, u32)],
        allowed: &[OpenAllowKey],
    ) -> Result<(), EnforceMapError> {
        let allowed: Vec<(OpenAllowKey, u32)> = allowed.iter().map(|key| (*key, 1)).collect();
        replace(&mut self.open_allow, "OPEN_ALLOW", &allowed)?;
        // A folded read asks `PROTECTED_FILES` only while this slot is
        // set: raised before a file is protected, lowered once none is.
        if !protected.is_empty() {
            self.set_slot(ENFORCE_PROTECTED, 1)?;
        }
        replace(&mut self.protected_files, "PROTECTED_FILES", protected)?;
        if protected.is_empty() {
            self.set_slot(ENFORCE_PROTECTED, 0)?;
        }
        Ok(())
    }

    fn set_slot(&mut self, slot: u32, value: u64) -> Result<(), EnforceMapError> {
        self.control
            .set(slot, value, 0)
            .map_err(|source| EnforceMapError::Update {
                map: "ENFORCE_CONTROL",
                source,
            })
    }

    /// Replaces the workloads' exec allowlists: `scopes` (scope → the
    /// rule's slot) are held to exactly the executables of `allowed` for
    /// their scope. The new entries go in before the scopes change and the
    /// stale ones go after, so no scope is ever held to part of its list.
    pub fn set_exec_allow(
        &mut self,
        allowed: &[ExecAllowKey],
        scopes: &[(u32, u32)],
    ) -> Result<(), EnforceMapError> {
        let allowed: Vec<(ExecAllowKey, u32)> = allowed.iter().map(|key| (*key, 1)).collect();
        insert_all(&mut self.exec_allow, "EXEC_ALLOW", &allowed)?;
        replace(&mut self.exec_allow_scopes, "EXEC_ALLOW_SCOPES", scopes)?;
        remove_stale(&mut self.exec_allow, "EXEC_ALLOW", &allowed)
    }

    /// Replaces the executables allowed to open accelerators.
    pub fn set_accel_allow(&mut self, wanted: &[(ExeKey, u32)]) -> Result<(), EnforceMapError> {
        replace(&mut self.accel_allow_exes, "ACCEL_ALLOW_EXES", wanted)
    }
}

/// Inserts the wanted entries first, then removes the stale ones, so a key
/// present before and after is never absent in between.
fn replace<K: aya::Pod + Eq + std::hash::Hash>(
    map: &mut HashMap<MapData, K, u32>,
    name: &'static str,
    wanted: &[(K, u32)],
) -> Result<(), EnforceMapError> {
    insert_all(map, name, wanted)?;
    remove_stale(map, name, wanted)
}

fn insert_all<K: aya::Pod>(
    map: &mut HashMap<MapData, K, u32>,
    name: &'static str,
    wanted: &[(K, u32)],
) -> Result<(), EnforceMapError> {
    for (key, value) in wanted {
        map.insert(key, value, 0)
            .map_err(|source| EnforceMapError::Update { map: name, source })?;
    }
    Ok(())
}

/// Removes every key not in `wanted`.
fn remove_stale<K: aya::Pod + Eq + std::hash::Hash>(
    map: &mut HashMap<MapData, K, u32>,
    name: &'static str,
    wanted: &[(K, u32)],
) -> Result<(), EnforceMapError> {
    let update = |source| EnforceMapError::Update { map: name, source };
    let keep: HashSet<K> = wanted.iter().map(|(key, _)| *key).collect();
    let stale: Vec<K> = map
        .keys()
        .filter_map(Result::ok)
        .filter(|key| !keep.contains(key))
        .collect();
    for key in stale {
        map.remove(&key).map_err(update)?;
    }
    Ok(())
}
