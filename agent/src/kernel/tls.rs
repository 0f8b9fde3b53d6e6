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

use procfs::process::{MMapPath, MemoryMaps};

use aiwatch_common::{CLEAR_TEXT_MAX, LLM_PATH_KEY_LEN, PLAIN_PORTS_MAX};
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
pub const UPROBES: [(&str, &str); 7] = [
    ("ssl_write", "SSL_write"),
    ("ssl_write_ex", "SSL_write_ex"),
    ("ssl_read", "SSL_read"),
    ("ssl_read_ret", "SSL_read"),
    ("ssl_read_ex", "SSL_read_ex"),
    ("ssl_read_ex_ret", "SSL_read_ex"),
    // The socket behind each connection, for the records' peer.
    ("ssl_set_fd", "SSL_set_fd"),
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
    /// Model-server ports whose plain-HTTP payload is read on the wire, at
    /// most `PLAIN_PORTS_MAX`.
    pub plain_ports: Vec<u16>,
    /// Processes whose clear text is captured though they are not tracked.
    pub pids: Vec<u32>,
    /// TLS libraries (or binaries exporting `SSL_write`) probed besides
    /// those found mapped by running processes.
    pub libraries: Vec<PathBuf>,
    /// Probe libraries first mapped after start-up too. Placing a uprobe
    /// needs `CAP_SYS_ADMIN` on the kernels aiwatch was tested on, which
    /// the agent otherwise drops once ready (docs/security.md).
    pub probe_after_start: bool,
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
            plain_ports: vec![11434, 8000],
            pids: Vec::new(),
            libraries: Vec::new(),
            probe_after_start: false,
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

    /// The plain-HTTP ports as the kernel takes them: the first
    /// `PLAIN_PORTS_MAX` non-zero ones, 0 in unused slots.
    pub fn kernel_plain_ports(&self) -> [u16; PLAIN_PORTS_MAX] {
        let mut ports = [0; PLAIN_PORTS_MAX];
        let wanted: Vec<u16> = self
            .plain_ports
            .iter()
            .copied()
            .filter(|p| *p != 0)
            .collect();
        if wanted.len() < self.plain_ports.len() {
            log::warn!("llm_capture.plain_ports: port 0 names no server; skipped");
        }
        if wanted.len() > PLAIN_PORTS_MAX {
            log::warn!(
                "llm_capture.plain_ports: {} ports, the kernel reads at most {PLAIN_PORTS_MAX}; {:?} are not read",
                wanted.len(),
                &wanted[PLAIN_PORTS_MAX..]
            );
        }
        for (slot, port) in ports.iter_mut().zip(wanted) {
            *slot = port;
        }
        ports
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

/// A file's identity: device (`st_dev` form) and inode. A uprobe is placed
/// on the inode, so one identity is probed once, whatever its paths.
pub type FileId = (u64, u64);

/// What a target is: a TLS library, or an executable that may export the
/// OpenSSL functions itself (Node links OpenSSL statically and exports it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    Library,
    Executable,
}

/// A file to probe: a path the agent can open (through `/proc/<pid>/root`
/// for a process's mappings) and its identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub path: PathBuf,
    pub id: FileId,
    pub kind: TargetKind,
}

/// Whether a mapped file's name is a TLS library worth probing: OpenSSL's
/// `libssl.so*`, or a wheel's renamed copy (`libssl-<hash>.so*`).
pub fn is_tls_library(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with("libssl.so") || name.starts_with("libssl-"))
}

/// The configured libraries and the system libssl, each once.
pub fn configured_targets(config: &CaptureConfig) -> Vec<Target> {
    let mut found: BTreeMap<FileId, PathBuf> = BTreeMap::new();
    let system = PathBuf::from(SYSTEM_LIBSSL);
    for path in config.libraries.iter().chain(std::iter::once(&system)) {
        match std::fs::metadata(path) {
            Ok(meta) => {
                use std::os::unix::fs::MetadataExt as _;
                found
                    .entry((meta.dev(), meta.ino()))
                    .or_insert(path.clone());
            }
            Err(err) if path != &system => log::warn!(
                "llm_capture.libraries: {} is not probed: {err}",
                path.display()
            ),
            Err(_) => {}
        }
    }
    found
        .into_iter()
        .map(|(id, path)| Target {
            path,
            id,
            kind: TargetKind::Library,
        })
        .collect()
}

/// The TLS candidates in one process's mappings (read by the library scans
/// of `analyze`): each `libssl` it maps, and its executable, reached
/// through `/proc/<pid>/root` so that a container's files are probed from
/// the host.
pub fn candidates_in(pid: u32, maps: &MemoryMaps) -> Vec<Target> {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    // A process in the agent's own mount namespace sees the same files
    // under the same names; others' are reached through their root.
    let same_mounts = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()
        == std::fs::read_link("/proc/self/ns/mnt").ok();
    let root = PathBuf::from(if same_mounts {
        "/".to_owned()
    } else {
        format!("/proc/{pid}/root")
    });
    let mut seen = HashSet::new();
    let mut candidates = Vec::new();
    for map in maps {
        let MMapPath::Path(path) = &map.pathname else {
            continue;
        };
        let kind = if exe.as_deref() == Some(path.as_path()) {
            TargetKind::Executable
        } else if is_tls_library(path) {
            TargetKind::Library
        } else {
            continue;
        };
        let id = (libc::makedev(map.dev.0 as u32, map.dev.1 as u32), map.inode);
        if seen.insert(id) {
            candidates.push(Target {
                path: root.join(path.strip_prefix("/").unwrap_or(path)),
                id,
                kind,
            });
        }
    }
    candidates
}

/// Whether an ELF file defines `SSL_write` in its dynamic symbol table.
/// Read lazily: only the headers and the dynamic symbols, not the whole
/// (often 100 MB) binary.
pub fn exports_openssl(path: &Path) -> bool {
    use object::{Object as _, ObjectSymbol as _};
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let cache = object::ReadCache::new(file);
    let Ok(elf) = object::File::parse(&cache) else {
        return false;
    };
    elf.dynamic_symbols()
        .any(|symbol| !symbol.is_undefined() && symbol.name() == Ok("SSL_write"))
}

/// Most executables remembered as not exporting OpenSSL; past it the set
/// starts over, and each is looked at again when met. (Probed files are
/// never forgotten: a second uprobe on one would double its cost.)
const MAX_SEEN: usize = 16_384;

/// Places the uprobes on TLS targets as they are found, each file once.
#[derive(Debug, Default)]
pub struct TlsAttacher {
    /// Files probed (never forgotten: probing one twice doubles its cost).
    probed: HashSet<FileId>,
    /// Files looked at and not probed (executables without OpenSSL).
    skipped: HashSet<FileId>,
    /// Per program of [`UPROBES`]: targets it is placed on.
    placed: [usize; UPROBES.len()],
    /// Per program: it could not be loaded, with the reason.
    unloadable: [Option<String>; UPROBES.len()],
    /// The agent dropped the capability that placing a uprobe needs: later
    /// targets are reported, not probed.
    locked: bool,
}

impl TlsAttacher {
    /// Loads the uprobe programs and places them on `targets`. Returns the
    /// attacher and each program's status.
    pub fn start(ebpf: &mut Ebpf, targets: &[Target]) -> (TlsAttacher, Vec<ProbeStatus>) {
        let mut attacher = TlsAttacher::default();
        for (index, (program, _)) in UPROBES.iter().enumerate() {
            if let Err(err) =
                uprobe(ebpf, program).and_then(|p| p.load().map_err(|e| e.to_string()))
            {
                log::warn!("probe {program} is not attached: {err}");
                attacher.unloadable[index] = Some(err);
            }
        }
        attacher.offer(ebpf, targets.to_vec());
        let statuses = UPROBES
            .iter()
            .enumerate()
            .map(|(index, (program, _))| ProbeStatus {
                probe: program,
                attached: attacher.placed[index] > 0,
                reason: (attacher.placed[index] == 0).then(|| {
                    attacher.unloadable[index]
                        .clone()
                        .unwrap_or_else(|| crate::kernel::loader::NO_TARGET.to_owned())
                }),
            })
            .collect();
        (attacher, statuses)
    }

    /// The agent drops its capabilities from now on: unless it keeps
    /// `CAP_SYS_ADMIN`, new targets get one log line instead of uprobes.
    pub fn capabilities_dropped(&mut self, keeps_sys_admin: bool) {
        self.locked = !keeps_sys_admin;
    }

    /// Places the uprobes on the candidates not seen before. Returns the
    /// programs that were attached nowhere before and are now.
    pub fn offer(&mut self, ebpf: &mut Ebpf, candidates: Vec<Target>) -> Vec<&'static str> {
        let mut newly = Vec::new();
        for target in candidates {
            if self.probed.contains(&target.id) || self.skipped.contains(&target.id) {
                continue;
            }
            if target.kind == TargetKind::Executable && !exports_openssl(&target.path) {
                if self.skipped.len() >= MAX_SEEN {
                    self.skipped.clear();
                }
                self.skipped.insert(target.id);
                continue;
            }
            self.probed.insert(target.id);
            if self.locked {
                log::warn!(
                    "TLS capture: {} is not probed: it was first mapped after start-up, and \
                     placing a uprobe then needs CAP_SYS_ADMIN, which the agent dropped \
                     (llm_capture.probe_after_start)",
                    target.path.display()
                );
                continue;
            }
            let mut failures = Vec::new();
            for (index, (program, symbol)) in UPROBES.iter().enumerate() {
                if self.unloadable[index].is_some() {
                    continue;
                }
                let placed = uprobe(ebpf, program).and_then(|p| {
                    p.attach(*symbol, &target.path, UProbeScope::AllProcesses)
                        .map_err(|e| with_sources(&e))
                });
                match placed {
                    Ok(_) => {
                        self.placed[index] += 1;
                        if self.placed[index] == 1 {
                            newly.push(*program);
                        }
                    }
                    Err(err) => failures.push(format!("{program} ({err})")),
                }
            }
            // One line per file that cannot be probed fully.
            if !failures.is_empty() {
                log::warn!(
                    "TLS capture: {} cannot be fully probed: {}",
                    target.path.display(),
                    failures.join("; ")
                );
            } else {
                log::info!("TLS capture: probing {}", target.path.display());
            }
        }
        newly
    }
}

/// An error and its sources, in one line (aya's attach errors keep the
/// errno in their source).
fn with_sources(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The uprobe program `name` of the object.
fn uprobe<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut UProbe, String> {
    ebpf.program_mut(name)
        .ok_or_else(|| format!("the object has no program {name}"))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())
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
