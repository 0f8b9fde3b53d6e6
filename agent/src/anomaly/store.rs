//! Profile files: one JSON file per workload profile in the state directory,
//! written atomically (temporary file, fsync, rename). Unreadable,
//! corrupt or other-version files are reported in one log sentence, counted
//! and moved aside as `<file>.corrupt-<unix seconds>`; they never stop the agent.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::profile::{Profile, WorkloadKey, PROFILE_VERSION};
use super::AnomalyError;

/// What a file looked like when the store last wrote or read it; a
/// different stamp means someone else (the `profile` CLI) changed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    pub modified: Option<SystemTime>,
    pub len: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read it: {0}")]
    Io(#[from] std::io::Error),
    #[error("it is not a valid profile: {0}")]
    Corrupt(String),
    #[error("it has format version {found}, this aiwatch reads version {expected}")]
    Version { found: String, expected: u32 },
}

/// Profiles read from the state directory.
#[derive(Debug, Default)]
pub struct LoadedProfiles {
    pub profiles: Vec<(Profile, FileStamp)>,
    /// Files moved aside as corrupt or of another version.
    pub corrupt: u64,
}

#[derive(Clone, Debug)]
pub struct ProfileStore {
    dir: PathBuf,
}

impl ProfileStore {
    /// Opens (and creates) the profile directory.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, AnomalyError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| AnomalyError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(ProfileStore { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<kind>--<name>--<hash>.json`: readable, and unique even when
    /// sanitising the name maps two workloads to the same text.
    pub fn file_name(key: &WorkloadKey) -> String {
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                        c
                    } else {
                        '_'
                    }
                })
                .take(80)
                .collect()
        };
        format!(
            "{}--{}--{:016x}.json",
            clean(&key.kind),
            clean(&key.name),
            fnv1a(&[key.kind.as_bytes(), b"\0", key.name.as_bytes()])
        )
    }

    pub fn path_for(&self, key: &WorkloadKey) -> PathBuf {
        self.dir.join(Self::file_name(key))
    }

    /// Profile files in the directory (not temporary or quarantined ones).
    pub fn files(&self) -> Result<Vec<PathBuf>, AnomalyError> {
        let entries = fs::read_dir(&self.dir).map_err(|source| AnomalyError::Io {
            path: self.dir.clone(),
            source,
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                name.ends_with(".json") && !name.starts_with('.')
            })
            .collect();
        files.sort();
        Ok(files)
    }

    pub fn read(path: &Path) -> Result<Profile, LoadError> {
        let text = fs::read_to_string(path)?;
        parse_profile(&text)
    }

    /// Loads every profile; bad files are logged, counted and moved aside.
    pub fn load_all(&self) -> Result<LoadedProfiles, AnomalyError> {
        let mut loaded = LoadedProfiles::default();
        for path in self.files()? {
            match Self::read(&path) {
                Ok(profile) => {
                    let stamp = stamp(&path).unwrap_or(FileStamp {
                        modified: None,
                        len: 0,
                    });
                    loaded.profiles.push((profile, stamp));
                }
                Err(error) => {
                    loaded.corrupt += 1;
                    self.quarantine(&path, &error);
                }
            }
        }
        Ok(loaded)
    }

    /// Moves a bad file aside, saying why in one sentence.
    pub fn quarantine(&self, path: &Path, error: &LoadError) -> Option<PathBuf> {
        let seconds = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut aside = path.as_os_str().to_owned();
        aside.push(format!(".corrupt-{seconds}"));
        let aside = PathBuf::from(aside);
        match fs::rename(path, &aside) {
            Ok(()) => {
                log::warn!(
                    "anomaly profile {} was ignored because {error}; it was moved to {}",
                    path.display(),
                    aside.display()
                );
                Some(aside)
            }
            Err(rename_error) => {
                log::warn!(
                    "anomaly profile {} was ignored because {error}, and could not be moved aside: {rename_error}",
                    path.display()
                );
                None
            }
        }
    }

    /// Writes a profile atomically and returns the new file's stamp.
    pub fn write(&self, profile: &Profile) -> Result<FileStamp, AnomalyError> {
        let path = self.path_for(&profile.workload);
        let io_error = |source| AnomalyError::Io {
            path: path.clone(),
            source,
        };
        let json = serde_json::to_vec_pretty(profile)
            .map_err(|e| AnomalyError::Serialize(e.to_string()))?;
        let tmp = self.dir.join(format!(
            ".{}.tmp-{}",
            Self::file_name(&profile.workload),
            std::process::id()
        ));
        let result = (|| {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(&json)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)
        })();
        if let Err(source) = result {
            let _ = fs::remove_file(&tmp);
            return Err(io_error(source));
        }
        // Make the rename durable; a failure here only weakens crash safety.
        if let Ok(dir) = fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        stamp(&path).ok_or_else(|| io_error(std::io::Error::other("written file vanished")))
    }

    /// Deletes a profile's file; `Ok(false)` when there was none.
    pub fn remove(&self, key: &WorkloadKey) -> Result<bool, AnomalyError> {
        let path = self.path_for(key);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(AnomalyError::Io { path, source }),
        }
    }
}

/// Parses a saved profile, checking its version first so that a future
/// format is reported as such rather than as corrupt.
pub fn parse_profile(text: &str) -> Result<Profile, LoadError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| LoadError::Corrupt(e.to_string()))?;
    match value.get("version").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(PROFILE_VERSION) => {}
        other => {
            return Err(LoadError::Version {
                found: other.map_or_else(|| "none".to_string(), |v| v.to_string()),
                expected: PROFILE_VERSION,
            })
        }
    }
    serde_json::from_value(value).map_err(|e| LoadError::Corrupt(e.to_string()))
}

pub fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

/// FNV-1a, 64 bit (the `fnv` crate): a hash fixed by its specification, so
/// file names stay the same across Rust and crate releases, unlike
/// `DefaultHasher` or rustc-hash's `FxHasher`, whose outputs may change.
fn fnv1a(parts: &[&[u8]]) -> u64 {
    use std::hash::Hasher;
    let mut hasher = fnv::FnvHasher::default();
    for part in parts {
        hasher.write(part);
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The name carries FNV-1a of kind and name: profiles written by earlier
    /// releases must keep being found.
    #[test]
    fn profile_file_names_are_stable() {
        let key = WorkloadKey {
            kind: "inference".into(),
            name: "vllm".into(),
        };
        assert_eq!(
            ProfileStore::file_name(&key),
            "inference--vllm--bf9759eb10844a39.json"
        );
    }
}
