//! Follows the agent's events file through its rotations and counts what
//! was written: lines per kind, and exec events per parent pid (the exec
//! storm's children are found by their parent).
//!
//! The agent writes thousands of lines a second under the soak's loads,
//! and xtask runs unoptimised, so a line is not parsed whole: its
//! top-level `kind` is found by a scan that skips strings and nested
//! values, and only exec lines are parsed (for their process).
//!
//! The file is read as it grows, about once a second on a thread of its
//! own (so the agent's samples stay on time), through a held
//! descriptor: when the agent rotates it (`events.jsonl` becomes
//! `events.jsonl.1`), the held file is read to its end, then the new one is
//! opened. A rotation between two reads that moved the held file further
//! than `.1` means a whole file went unread; that is reported, not guessed.

use std::{
    collections::HashMap,
    fs::File,
    io::Read as _,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::{self, JoinHandle},
    time::Duration,
};

use serde::Deserialize;

/// The fields of an exec line the soak reads.
#[derive(Deserialize)]
struct ExecLine {
    #[serde(default)]
    process: Option<Process>,
}

#[derive(Deserialize)]
struct Process {
    #[serde(default)]
    ppid: u32,
    #[serde(default)]
    comm: String,
}

/// The comm of the exec storm's children (`/bin/true`).
const EXEC_STORM_COMM: &str = "true";

/// What the events file held so far.
#[derive(Debug, Default)]
pub struct Written {
    /// Lines per event kind.
    pub by_kind: HashMap<String, u64>,
    /// Exec events of `true` per parent pid.
    pub execs_by_parent: HashMap<u32, u64>,
    /// Lines that were no event.
    pub bad_lines: u64,
    pub rotations: u64,
    /// A rotated file was passed over unread.
    pub missed_file: bool,
}

impl Written {
    fn line(&mut self, bytes: &[u8]) {
        let Some(kind) = top_level_str(bytes, "kind") else {
            self.bad_lines += 1;
            return;
        };
        if kind == "exec" {
            let Ok(line) = serde_json::from_slice::<ExecLine>(bytes) else {
                self.bad_lines += 1;
                return;
            };
            if let Some(process) = line.process.filter(|p| p.comm == EXEC_STORM_COMM) {
                *self.execs_by_parent.entry(process.ppid).or_default() += 1;
            }
        }
        match self.by_kind.get_mut(kind) {
            Some(count) => *count += 1,
            None => {
                self.by_kind.insert(kind.to_string(), 1);
            }
        }
    }

    /// Exec events whose parent is one of `parents`. Pids are reused (a
    /// long soak starts more processes than `pid_max`), so two loops may
    /// have had the same one: each pid counts once.
    pub fn execs_of(&self, parents: &[u32]) -> u64 {
        let mut parents = parents.to_vec();
        parents.sort_unstable();
        parents.dedup();
        parents
            .iter()
            .filter_map(|pid| self.execs_by_parent.get(pid))
            .sum()
    }
}

/// The reader of one events file.
pub struct EventsFile {
    path: PathBuf,
    held: Option<(File, u64)>,
    /// The end of the last read, up to its last newline.
    partial: Vec<u8>,
    pub written: Written,
}

impl EventsFile {
    pub fn new(path: &Path) -> EventsFile {
        EventsFile {
            path: path.to_owned(),
            held: None,
            partial: Vec::new(),
            written: Written::default(),
        }
    }

    /// Reads what was appended since the last call, following a rotation.
    pub fn poll(&mut self) -> std::io::Result<()> {
        if self.held.is_none() {
            match File::open(&self.path) {
                Ok(file) => {
                    let inode = file.metadata()?.ino();
                    self.held = Some((file, inode));
                }
                // The agent creates it with its first event.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(error) => return Err(error),
            }
        }
        self.read_held()?;
        let current = std::fs::metadata(&self.path).ok().map(|m| m.ino());
        let Some((_, held_inode)) = self.held else {
            return Ok(());
        };
        if current == Some(held_inode) {
            return Ok(());
        }
        // Rotated: whatever reached the old file before the agent let go
        // of it, then the new file from its start.
        self.read_held()?;
        self.partial.clear();
        self.written.rotations += 1;
        let first_rotated = rotated(&self.path, 1);
        if std::fs::metadata(&first_rotated).map(|m| m.ino()).ok() != Some(held_inode) {
            self.written.missed_file = true;
        }
        self.held = None;
        self.poll()
    }

    fn read_held(&mut self) -> std::io::Result<()> {
        let Some((file, _)) = self.held.as_mut() else {
            return Ok(());
        };
        let mut chunk = Vec::new();
        file.read_to_end(&mut chunk)?;
        self.partial.extend_from_slice(&chunk);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Ok(());
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        for line in complete.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            self.written.line(line);
        }
        Ok(())
    }
}

/// The value of the top-level string field `key` of the JSON object on
/// `line`, found without parsing the rest: strings are skipped whole and
/// nested objects and arrays by depth. `None` when there is none (or the
/// line is cut).
fn top_level_str<'a>(line: &'a [u8], key: &str) -> Option<&'a str> {
    let mut depth = 0usize;
    let mut at = 0;
    while let Some(&byte) = line.get(at) {
        match byte {
            b'"' => {
                let end = string_end(line, at)?;
                let colon = skip_space(line, end + 1);
                if depth == 1
                    && line.get(colon) == Some(&b':')
                    && &line[at + 1..end] == key.as_bytes()
                {
                    let start = skip_space(line, colon + 1);
                    if line.get(start) != Some(&b'"') {
                        return None;
                    }
                    let value_end = string_end(line, start)?;
                    return std::str::from_utf8(&line[start + 1..value_end]).ok();
                }
                at = end + 1;
            }
            b'{' | b'[' => {
                depth += 1;
                at += 1;
            }
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                at += 1;
            }
            _ => at += 1,
        }
    }
    None
}

/// The index of the quote that closes the string opening at `open`.
fn string_end(line: &[u8], open: usize) -> Option<usize> {
    let mut at = open + 1;
    while let Some(&byte) = line.get(at) {
        match byte {
            b'\\' => at += 2,
            b'"' => return Some(at),
            _ => at += 1,
        }
    }
    None
}

fn skip_space(line: &[u8], mut at: usize) -> usize {
    while line.get(at).is_some_and(u8::is_ascii_whitespace) {
        at += 1;
    }
    at
}

/// An [`EventsFile`] read about once a second on its own thread.
pub struct Follower {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<std::io::Result<Written>>,
}

impl Follower {
    pub fn start(path: &Path) -> Follower {
        let stop = Arc::new(AtomicBool::new(false));
        let mut file = EventsFile::new(path);
        let stopped = stop.clone();
        let thread = thread::spawn(move || loop {
            let last = stopped.load(Ordering::Relaxed);
            file.poll()?;
            if last {
                return Ok(file.written);
            }
            thread::sleep(Duration::from_secs(1));
        });
        Follower { stop, thread }
    }

    /// Reads the file to its end once more and returns what it held.
    pub fn finish(self) -> anyhow::Result<Written> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.join() {
            Ok(result) => Ok(result?),
            Err(_) => anyhow::bail!("the events file's reader panicked"),
        }
    }
}

/// The agent's name for the `n`th rotated file (`sink/file.rs`).
fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn exec_line(ppid: u32, comm: &str) -> String {
        format!(
            "{{\"kind\":\"exec\",\"process\":{{\"pid\":9,\"ppid\":{ppid},\"comm\":\"{comm}\"}},\
             \"workload\":{{\"kind\":\"inference\"}}}}\n"
        )
    }

    #[test]
    fn the_kind_is_the_top_level_one() {
        let line = br#"{"time":"t","note":"{\"kind\":\"x\"}","workload":{"kind":"inference"},"argv":["kind"],"kind" : "open","process":{}}"#;
        assert_eq!(top_level_str(line, "kind"), Some("open"));
        assert_eq!(
            top_level_str(br#"{"workload":{"kind":"inference"}}"#, "kind"),
            None
        );
        assert_eq!(top_level_str(br#"{"kind":7}"#, "kind"), None);
        assert_eq!(top_level_str(br#"{"kind":"ex"#, "kind"), None);
        assert_eq!(top_level_str(b"not json", "kind"), None);
    }

    #[test]
    fn lines_are_counted_across_partial_writes_and_a_rotation() {
        let dir = std::env::temp_dir().join(format!("xtask-soak-events-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("events.jsonl");
        let mut reader = EventsFile::new(&path);
        reader.poll().expect("no file yet is no error");

        let mut file = File::create(&path).expect("create");
        write!(
            file,
            "{}{{\"kind\":\"fork\"}}\n{{\"kind\":\"op",
            exec_line(41, "true")
        )
        .expect("write");
        reader.poll().expect("poll");
        assert_eq!(reader.written.by_kind.get("exec"), Some(&1));
        assert_eq!(reader.written.by_kind.get("open"), None);

        // The rest of the line, then the agent rotates and writes on.
        write!(file, "en\"}}\n{}", exec_line(41, "bash")).expect("write");
        std::fs::rename(&path, rotated(&path, 1)).expect("rotate");
        let mut file = File::create(&path).expect("create");
        writeln!(file, "{}not json", exec_line(42, "true")).expect("write");
        reader.poll().expect("poll");

        let written = &reader.written;
        assert_eq!(written.by_kind.get("open"), Some(&1));
        assert_eq!(written.by_kind.get("exec"), Some(&3));
        assert_eq!(
            written.execs_of(&[41, 42]),
            2,
            "bash is no child of the storm"
        );
        assert_eq!(written.execs_of(&[41]), 1);
        assert_eq!(
            written.execs_of(&[41, 42, 41]),
            2,
            "a reused pid counts once"
        );
        assert_eq!((written.rotations, written.bad_lines), (1, 1));
        assert!(!written.missed_file);

        // Two rotations between reads: the file between went unread.
        let rotate = || {
            std::fs::rename(rotated(&path, 1), rotated(&path, 2)).expect("rotate");
            std::fs::rename(&path, rotated(&path, 1)).expect("rotate");
            File::create(&path).expect("create")
        };
        let mut between = rotate();
        writeln!(between, "{{\"kind\":\"fork\"}}").expect("write");
        rotate();
        reader.poll().expect("poll");
        assert!(reader.written.missed_file);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
