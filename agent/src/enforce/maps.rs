//! The kernel's enforcement maps (`ebpf/src/probes/enforce.rs`): the exec
//! deny list, the never-touch list and the control slots.

use std::{collections::HashSet, os::unix::fs::MetadataExt, path::Path};

use aiwatch_common::{ExeKey, ENFORCE_KILL_BUDGET, ENFORCE_KILL_WINDOW_NS, ENFORCE_ON};
use aya::{
    maps::{Array, HashMap, MapData, MapError},
    Ebpf,
};

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
    control: Array<MapData, u64>,
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
            control: take(ebpf, "ENFORCE_CONTROL")?,
        })
    }

    /// Sets the switch and the kill budget.
    pub fn set_control(
        &mut self,
        on: bool,
        kill_budget: u64,
        window_ns: u64,
    ) -> Result<(), EnforceMapError> {
        for (slot, value) in [
            (ENFORCE_KILL_BUDGET, kill_budget),
            (ENFORCE_KILL_WINDOW_NS, window_ns),
            (ENFORCE_ON, u64::from(on)),
        ] {
            self.control
                .set(slot, value, 0)
                .map_err(|source| EnforceMapError::Update {
                    map: "ENFORCE_CONTROL",
                    source,
                })?;
        }
        Ok(())
    }

    /// Replaces the exec deny list (`value`: a rule slot per key).
    pub fn set_exec_deny(&mut self, wanted: &[(ExeKey, u32)]) -> Result<(), EnforceMapError> {
        replace(&mut self.exec_deny, "EXEC_DENY", wanted)
    }

    pub fn set_never_touch(&mut self, wanted: &[(ExeKey, u32)]) -> Result<(), EnforceMapError> {
        replace(&mut self.never_touch, "NEVER_TOUCH", wanted)
    }
}

/// Inserts the wanted entries first, then removes the stale ones, so a key
/// present before and after is never absent in between.
fn replace(
    map: &mut HashMap<MapData, ExeKey, u32>,
    name: &'static str,
    wanted: &[(ExeKey, u32)],
) -> Result<(), EnforceMapError> {
    let update = |source| EnforceMapError::Update { map: name, source };
    for (key, value) in wanted {
        map.insert(key, value, 0).map_err(update)?;
    }
    let keep: HashSet<ExeKey> = wanted.iter().map(|(key, _)| *key).collect();
    let stale: Vec<ExeKey> = map
        .keys()
        .filter_map(Result::ok)
        .filter(|key| !keep.contains(key))
        .collect();
    for key in stale {
        map.remove(&key).map_err(update)?;
    }
    Ok(())
}
