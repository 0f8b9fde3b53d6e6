//! The TLS side of LLM traffic capture: which TLS libraries get the
//! `SSL_*` uprobes (`ebpf/src/probes/tls.rs`), attaching them, and the
//! kernel's capture settings (the request lines an untracked process's
//! write is matched against, the capture list).
//!
//! A uprobe is placed on a file (its inode), not on a process, so each
//! distinct library is probed once, whichever processes map it and through
//! whichever path: targets are deduplicated by device and inode. Libraries
//! are found in `/proc/<pid>/maps` of every process (container images and
//! Python wheels carry their own copies) and reached through
//! `/proc/<pid>/root`, so a container's copy is probed from the host.

use std::{
    collections::{BTreeMap, HashSet},
    path::{Path, PathBuf},
};

use aiwatch_common::{CLEAR_TEXT_MAX, LLM_PATH_KEY_LEN};
use aya::{
    maps::{
        lpm_trie::{Key, LpmTrie},
        HashMap, MapData,
    },
    programs::{uprobe::UProbeScope, UProbe},
    Ebpf,
};
use serde::Deserialize;

use crate::kernel::loader::ProbeStatus;

/// The library every Debian and Ubuntu process that speaks TLS through
/// OpenSSL 3 maps; probed even when no running process maps it yet.
pub const SYSTEM_LIBSSL: &str = "/usr/lib/x86_64-linux-gnu/libssl.so.3";

/// Each uprobe program and the function it is placed on.
pub const UPROBES: [(&str, &str); 6] = [
    ("ssl_write", "SSL_write"),
    ("ssl_write_ex", "SSL_write_ex"),
    ("ssl_read", "SSL_read"),
    ("ssl_read_ret", "SSL_read"),
    ("ssl_read_ex", "SSL_read_ex"),
    ("ssl_read_ex_ret", "SSL_read_ex"),
];

/// The `llm_capture` section of the configuration.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureConfig {
    /// Bytes of each TLS call copied, at most 16384.
    pub capture_bytes: u32,
    /// LLM API request lines: a write of an untracked process that starts
    /// with one tracks the process from then on. Matched on their first
    /// 32 bytes.
    pub request_lines: Vec<String>,
    /// Processes whose clear text is captured though they are not tracked.
    pub pids: Vec<u32>,
    /// TLS libraries (or binaries exporting `SSL_write`) probed besides
    /// those found mapped by running processes.
    pub libraries: Vec<PathBuf>,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        Self {
            capture_bytes: CLEAR_TEXT_MAX as u32,
            request_lines: [
                "POST /v1/chat/completions",
                "POST /v1/completions",
                "POST /v1/responses",
                "POST /v1/embeddings",
                "POST /v1/messages",
                "POST /api/chat",
                "POST /api/generate",
                "POST /api/embed",
                "POST /v1beta/models/",
            ]
            .map(String::from)
            .to_vec(),
            pids: Vec::new(),
            libraries: Vec::new(),
        }
    }
}

impl CaptureConfig {
    /// The capture size the kernel uses: `capture_bytes`, capped at what a
    /// record holds.
    pub fn kernel_capture_bytes(&self) -> u32 {
        if self.capture_bytes as usize > CLEAR_TEXT_MAX {
            log::warn!(
                "llm_capture.capture_bytes {} is more than a record holds; {CLEAR_TEXT_MAX} bytes of each call are captured",
                self.capture_bytes
            );
        }
        self.capture_bytes.min(CLEAR_TEXT_MAX as u32)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("the kernel programs lack the map {0}; the object and the agent do not match")]
    MissingMap(&'static str),
    #[error("cannot write {map}: {source}")]
    Write {
        map: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
}

/// The LPM key of a request line: its first `LLM_PATH_KEY_LEN` bytes, as
/// many bits of prefix as it has bytes. `None` for an empty line.
pub fn request_line_key(line: &str) -> Option<Key<[u8; LLM_PATH_KEY_LEN]>> {
    let bytes = line.as_bytes();
    if bytes.is_empty() {
        return None;
    }
    let used = bytes.len().min(LLM_PATH_KEY_LEN);
    let mut data = [0u8; LLM_PATH_KEY_LEN];
    data[..used].copy_from_slice(&bytes[..used]);
    Some(Key::new((used * 8) as u32, data))
}

/// Fills the kernel's request lines and capture list.
pub fn configure(ebpf: &mut Ebpf, config: &CaptureConfig) -> Result<(), CaptureError> {
    let map = ebpf
        .map_mut("LLM_PATHS")
        .ok_or(CaptureError::MissingMap("LLM_PATHS"))?;
    let mut paths: LpmTrie<&mut MapData, [u8; LLM_PATH_KEY_LEN], u32> =
        LpmTrie::try_from(map).map_err(|_| CaptureError::MissingMap("LLM_PATHS"))?;
    for line in &config.request_lines {
        let Some(key) = request_line_key(line) else {
            log::warn!("llm_capture.request_lines: an empty line matches every write; skipped");
            continue;
        };
        if line.len() > LLM_PATH_KEY_LEN {
            log::info!(
                "llm_capture.request_lines: {line:?} is matched on its first {LLM_PATH_KEY_LEN} bytes"
            );
        }
        paths
            .insert(&key, 1, 0)
            .map_err(|source| CaptureError::Write {
                map: "LLM_PATHS",
                source,
            })?;
    }
    let map = ebpf
        .map_mut("CAPTURE_PIDS")
        .ok_or(CaptureError::MissingMap("CAPTURE_PIDS"))?;
    let mut pids: HashMap<&mut MapData, u32, u32> =
        HashMap::try_from(map).map_err(|_| CaptureError::MissingMap("CAPTURE_PIDS"))?;
    for pid in &config.pids {
        pids.insert(pid, 1, 0)
            .map_err(|source| CaptureError::Write {
                map: "CAPTURE_PIDS",
                source,
            })?;
    }
    Ok(())
}

/// A file to probe: a path the agent can open, and the identity that makes
/// two paths the same file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub path: PathBuf,
    pub dev: u64,
    pub ino: u64,
}

/// Whether a mapped file's name is a TLS library worth probing.
pub fn is_tls_library(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with("libssl.so") || name.starts_with("libssl-"))
}

/// The distinct TLS libraries: the configured ones, the system libssl, and
/// every one a running process maps, each once by device and inode.
pub fn find_targets(config: &CaptureConfig) -> Vec<Target> {
    let mut found = BTreeMap::new();
    let mut add = |path: PathBuf| {
        if let Ok(meta) = std::fs::metadata(&path) {
            use std::os::unix::fs::MetadataExt as _;
            found
                .entry((meta.dev(), meta.ino()))
                .or_insert_with(|| path);
        }
    };
    for library in &config.libraries {
        if !library.exists() {
            log::warn!(
                "llm_capture.libraries: {} does not exist; not probed",
                library.display()
            );
        }
        add(library.clone());
    }
    add(PathBuf::from(SYSTEM_LIBSSL));
    for path in mapped_tls_libraries() {
        add(path);
    }
    found
        .into_iter()
        .map(|((dev, ino), path)| Target { path, dev, ino })
        .collect()
}

/// Paths, through `/proc/<pid>/root`, of the TLS libraries running
/// processes map (one path per process and library; deduplicated later).
fn mapped_tls_libraries() -> Vec<PathBuf> {
    let Ok(all) = procfs::process::all_processes() else {
        log::warn!("cannot list /proc: only the system and configured TLS libraries are probed");
        return Vec::new();
    };
    let mut seen = HashSet::new();
    let mut paths = Vec::new();
    for process in all.flatten() {
        let Ok(maps) = process.maps() else {
            continue;
        };
        for map in maps {
            let procfs::process::MMapPath::Path(path) = &map.pathname else {
                continue;
            };
            if is_tls_library(path) && seen.insert((map.dev, map.inode)) {
                let relative = path.strip_prefix("/").unwrap_or(path);
                paths.push(PathBuf::from(format!("/proc/{}/root", process.pid)).join(relative));
            }
        }
    }
    paths
}

/// Loads the uprobe programs and attaches each to every target. A program
/// is reported attached when it is on at least one library; each target
/// that cannot be probed gets one log line.
pub fn attach(ebpf: &mut Ebpf, targets: &[Target]) -> Vec<ProbeStatus> {
    let mut statuses = Vec::with_capacity(UPROBES.len());
    for (program, symbol) in UPROBES {
        let mut attached = 0;
        let mut last_error = None;
        let uprobe: Result<&mut UProbe, String> = ebpf
            .program_mut(program)
            .ok_or_else(|| format!("the object has no program {program}"))
            .and_then(|p| {
                p.try_into()
                    .map_err(|e: aya::programs::ProgramError| e.to_string())
            })
            .and_then(|p: &mut UProbe| p.load().map(|()| p).map_err(|e| e.to_string()));
        match uprobe {
            Ok(uprobe) => {
                for target in targets {
                    match uprobe.attach(symbol, &target.path, UProbeScope::AllProcesses) {
                        Ok(_) => attached += 1,
                        Err(err) => {
                            log::warn!(
                                "probe {program} not placed on {symbol} in {}: {err}",
                                target.path.display()
                            );
                            last_error = Some(err.to_string());
                        }
                    }
                }
            }
            Err(err) => {
                log::warn!("probe {program} is not attached: {err}");
                last_error = Some(err);
            }
        }
        statuses.push(ProbeStatus {
            probe: program,
            attached: attached > 0,
            reason: (attached == 0)
                .then(|| last_error.unwrap_or_else(|| "no TLS library found to probe".to_owned())),
        });
    }
    statuses
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_line_keys_are_byte_prefixes() {
        let key = request_line_key("POST /v1/chat/completions").unwrap();
        assert_eq!(key.prefix_len(), 25 * 8);
        assert_eq!(&key.data()[..25], b"POST /v1/chat/completions");
        assert!(key.data()[25..].iter().all(|&b| b == 0));
        let long = request_line_key("POST /v1beta/models/gemini-pro:generateContent").unwrap();
        assert_eq!(long.prefix_len(), (LLM_PATH_KEY_LEN * 8) as u32);
        assert!(request_line_key("").is_none());
    }

    #[test]
    fn tls_library_names() {
        assert!(is_tls_library(Path::new(
            "/usr/lib/x86_64-linux-gnu/libssl.so.3"
        )));
        assert!(is_tls_library(Path::new(
            "/venv/lib/python3.11/site-packages/cryptography.libs/libssl-ab12cd.so.3"
        )));
        assert!(!is_tls_library(Path::new("/usr/lib/libcrypto.so.3")));
        assert!(!is_tls_library(Path::new("/usr/lib/libssl3.so")));
    }

    #[test]
    fn a_capture_size_past_the_record_is_capped() {
        let config = CaptureConfig {
            capture_bytes: 1 << 20,
            ..CaptureConfig::default()
        };
        assert_eq!(config.kernel_capture_bytes(), CLEAR_TEXT_MAX as u32);
        assert_eq!(CaptureConfig::default().kernel_capture_bytes(), 16384);
    }
}
