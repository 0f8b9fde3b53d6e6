//! JSON-lines files (or standard output) that survive the host around them.
//!
//! The agent writes as root into folders others may write to, and operators
//! rotate and delete its files behind its back. So a file sink:
//! - opens with `O_NOFOLLOW`: a symlink planted at the path is refused, never
//!   followed to overwrite another file;
//! - creates its files `0600`, or `0640` owned by the configured group, and
//!   tightens an existing file to that mode;
//! - notices when the path no longer names the file it holds (logrotate's
//!   rename, `rm`, a new file) by its device and inode, and reopens;
//! - rotates by size itself (`file` → `file.1` …);
//! - on a failed write (a full disk), drops the lines it held, counts every
//!   one, warns at most once a minute, and writes again once space returns.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::Serialize;

/// Where a JSON-lines stream goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File {
        path: PathBuf,
        max_bytes: u64,
        keep: u32,
        /// Group allowed to read the files (mode 0640); `None` is 0600.
        group: Option<u32>,
    },
}

impl Target {
    /// `-` is standard output; anything else is a file path.
    pub fn parse(spec: &str, max_bytes: u64, keep: u32) -> Target {
        if spec == "-" {
            Target::Stdout
        } else {
            Target::File {
                path: PathBuf::from(spec),
                max_bytes,
                keep,
                group: None,
            }
        }
    }

    /// The same target, readable by `group` (files become 0640).
    pub fn with_group(self, group: Option<u32>) -> Target {
        match self {
            Target::File {
                path,
                max_bytes,
                keep,
                ..
            } => Target::File {
                path,
                max_bytes,
                keep,
                group,
            },
            stdout => stdout,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open {path} for writing: {source}")]
    Open {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot open {path}: sink_group `{group}` is not a group on this host")]
    UnknownGroup { path: String, group: String },
}

impl OpenError {
    fn into_io(self) -> io::Error {
        match self {
            OpenError::Open { source, .. } => source,
            other => io::Error::other(other.to_string()),
        }
    }
}

/// Lines a flush could not write: they are gone, and counted by the caller.
#[derive(Debug, thiserror::Error)]
#[error("{lines} lines lost: {source}")]
pub struct LostLines {
    pub lines: u64,
    #[source]
    pub source: io::Error,
}

/// Buffer size past which a write flushes on its own.
const BUFFER_BYTES: usize = 64 * 1024;
/// At most one warning per this interval about failed writes.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// A writer of JSON lines with size-based rotation for files.
pub struct LineWriter {
    target: Target,
    out: Option<Output>,
    buffer: Vec<u8>,
    buffered_lines: u64,
    /// Bytes in the current file.
    written: u64,
    /// A failed write may have left half a line: start the next with `\n`.
    torn_line: bool,
    warnings: WarningLimiter,
}

enum Output {
    Stdout(io::Stdout),
    File {
        file: File,
        /// Device and inode of the file opened, to notice a replaced path.
        identity: (u64, u64),
    },
}

impl LineWriter {
    pub fn open(target: Target) -> Result<Self, OpenError> {
        let mut writer = Self {
            target,
            out: None,
            buffer: Vec::with_capacity(BUFFER_BYTES),
            buffered_lines: 0,
            written: 0,
            torn_line: false,
            warnings: WarningLimiter::default(),
        };
        writer.reopen()?;
        Ok(writer)
    }

    /// Buffers one line; flushes when the buffer is full.
    pub fn write_line<T: Serialize>(&mut self, value: &T) -> Result<(), LostLines> {
        let start = self.buffer.len();
        if let Err(err) = serde_json::to_writer(&mut self.buffer, value) {
            self.buffer.truncate(start);
            return Err(LostLines {
                lines: 1,
                source: io::Error::other(err),
            });
        }
        self.buffer.push(b'\n');
        self.buffered_lines += 1;
        if self.buffer.len() >= BUFFER_BYTES {
            return self.flush();
        }
        Ok(())
    }

    /// Writes the buffered lines. On failure they are dropped and their
    /// number returned, so that nothing is lost uncounted and the buffer
    /// never grows while the disk is full.
    pub fn flush(&mut self) -> Result<(), LostLines> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let result = self.write_buffer();
        let lines = std::mem::take(&mut self.buffered_lines);
        self.buffer.clear();
        match result {
            Ok(()) => {
                if let Some(suppressed) = self.warnings.recovered() {
                    log::warn!(
                        "{}: writing again ({suppressed} lines lost while it failed)",
                        self.describe()
                    );
                }
                self.rotate_if_due();
                Ok(())
            }
            Err(source) => {
                if let Some(since) = self.warnings.failed(lines) {
                    log::warn!(
                        "{}: write failed, {since} lines lost (counted in aiwatch_events_lost_total{{stage=\"sink\"}}; next warning in a minute at most): {source}",
                        self.describe()
                    );
                }
                Err(LostLines { lines, source })
            }
        }
    }

    fn describe(&self) -> String {
        match &self.target {
            Target::Stdout => "standard output".into(),
            Target::File { path, .. } => path.display().to_string(),
        }
    }

    fn write_buffer(&mut self) -> io::Result<()> {
        if self.path_was_replaced() {
            self.reopen().map_err(OpenError::into_io)?;
        }
        let Some(out) = self.out.as_mut() else {
            self.reopen().map_err(OpenError::into_io)?;
            return self.write_buffer();
        };
        let writer: &mut dyn Write = match out {
            Output::Stdout(stdout) => stdout,
            Output::File { file, .. } => file,
        };
        if self.torn_line {
            writer.write_all(b"\n")?;
            self.torn_line = false;
        }
        let mut done = 0;
        while done < self.buffer.len() {
            match writer.write(&self.buffer[done..]) {
                Ok(0) => {
                    self.torn_line = done > 0;
                    return Err(io::ErrorKind::WriteZero.into());
                }
                Ok(n) => done += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    self.torn_line = done > 0;
                    self.written += done as u64;
                    return Err(err);
                }
            }
        }
        self.written += done as u64;
        writer.flush()
    }

    /// The path no longer names the file held open: renamed away, deleted,
    /// or replaced.
    fn path_was_replaced(&self) -> bool {
        let (Target::File { path, .. }, Some(Output::File { identity, .. })) =
            (&self.target, &self.out)
        else {
            return false;
        };
        match std::fs::symlink_metadata(path) {
            Ok(meta) => (meta.dev(), meta.ino()) != *identity,
            Err(_) => true,
        }
    }

    fn reopen(&mut self) -> Result<(), OpenError> {
        let was_open = self.out.take().is_some();
        let (path, group) = match &self.target {
            Target::Stdout => {
                self.out = Some(Output::Stdout(io::stdout()));
                return Ok(());
            }
            Target::File { path, group, .. } => (path.clone(), *group),
        };
        let file = open_private(&path, group)?;
        let meta = file.metadata().map_err(|source| OpenError::Open {
            path: path.display().to_string(),
            source,
        })?;
        if was_open {
            log::info!(
                "{}: reopened (rotated or removed from outside)",
                path.display()
            );
        }
        self.written = meta.len();
        self.torn_line = false;
        self.out = Some(Output::File {
            file,
            identity: (meta.dev(), meta.ino()),
        });
        Ok(())
    }

    fn rotate_if_due(&mut self) {
        let Target::File {
            path,
            max_bytes,
            keep,
            ..
        } = &self.target
        else {
            return;
        };
        if *max_bytes == 0 || self.written < *max_bytes {
            return;
        }
        let (path, keep) = (path.clone(), *keep);
        if let Err(err) = rotate_files(&path, keep) {
            log::warn!("{}: rotation failed: {err}", path.display());
            return;
        }
        if let Err(err) = self.reopen() {
            log::warn!("{err}");
        }
    }
}

/// `file` → `file.1` → `file.2` ... keeping `keep` old files.
fn rotate_files(path: &Path, keep: u32) -> io::Result<()> {
    for i in (1..keep.max(1)).rev() {
        let from = rotated(path, i);
        if from.exists() {
            std::fs::rename(&from, rotated(path, i + 1))?;
        }
    }
    std::fs::rename(path, rotated(path, 1))
}

pub(crate) fn rotated(path: &Path, i: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{i}"));
    PathBuf::from(name)
}

/// Opens for appending without following a symlink, creating the file
/// 0600 (0640 and group-owned with a group), and tightens an existing
/// file's mode to the same.
fn open_private(path: &Path, group: Option<u32>) -> Result<File, OpenError> {
    let error = |source| OpenError::Open {
        path: path.display().to_string(),
        source,
    };
    let mode = if group.is_some() { 0o640 } else { 0o600 };
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(error)?;
    let meta = file.metadata().map_err(error)?;
    if !meta.is_file() {
        return Err(error(io::Error::other("not a regular file")));
    }
    if let Some(gid) = group {
        std::os::unix::fs::fchown(&file, None, Some(gid)).map_err(error)?;
    }
    if meta.permissions().mode() & 0o7777 != mode {
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(error)?;
    }
    Ok(file)
}

/// One warning per [`WARN_EVERY`] while writes fail, with the lines lost
/// since the last one; one line when writes work again.
#[derive(Default)]
struct WarningLimiter {
    last_warning: Option<Instant>,
    lost_since_warning: u64,
    lost_while_failing: u64,
    failing: bool,
}

impl WarningLimiter {
    /// Records a failure; `Some(lines lost since the last warning)` when a
    /// warning is due.
    fn failed(&mut self, lines: u64) -> Option<u64> {
        self.failing = true;
        self.lost_since_warning += lines;
        self.lost_while_failing += lines;
        let due = self
            .last_warning
            .is_none_or(|at| at.elapsed() >= WARN_EVERY);
        due.then(|| {
            self.last_warning = Some(Instant::now());
            std::mem::take(&mut self.lost_since_warning)
        })
    }

    /// Records a success; `Some(lines lost in the failure)` when it ends one.
    fn recovered(&mut self) -> Option<u64> {
        if !std::mem::take(&mut self.failing) {
            return None;
        }
        self.last_warning = None;
        self.lost_since_warning = 0;
        Some(std::mem::take(&mut self.lost_while_failing))
    }
}

/// The group id of a group name or number (`sink_group` in the
/// configuration).
pub fn resolve_group(name: &str) -> Option<u32> {
    if let Ok(gid) = name.parse() {
        return Some(gid);
    }
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name)
            .then(|| fields.nth(1)?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
#[path = "file_tests.rs"]
mod tests;
