//! Sinks: where events and alerts leave the agent, as JSON lines.
//!
//! Architecture invariant: only sinks serialize. The pipeline hands values
//! over a bounded channel; a full channel drops the value and counts it, so
//! a slow disk or a stuck pipe never stalls event processing.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::{event::Kind, metrics::pipeline_stats::PipelineStats};

pub mod stream;
pub mod syslog;
pub mod webhook;

/// Where a JSON-lines stream goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File {
        path: PathBuf,
        max_bytes: u64,
        keep: u32,
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
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot open {path} for writing: {source}")]
pub struct OpenError {
    path: String,
    #[source]
    source: io::Error,
}

/// A writer of JSON lines with size-based rotation for files.
pub struct LineWriter {
    target: Target,
    out: BufWriter<Box<dyn Write + Send>>,
    written: u64,
}

impl LineWriter {
    pub fn open(target: Target) -> Result<Self, OpenError> {
        let (out, written): (Box<dyn Write + Send>, u64) = match &target {
            Target::Stdout => (Box::new(io::stdout()), 0),
            Target::File { path, .. } => {
                let file = open_append(path)?;
                let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                (Box::new(file), len)
            }
        };
        Ok(Self {
            target,
            out: BufWriter::with_capacity(64 * 1024, out),
            written,
        })
    }

    pub fn write_line<T: Serialize>(&mut self, value: &T) -> io::Result<()> {
        let mut line = serde_json::to_vec(value).map_err(io::Error::other)?;
        line.push(b'\n');
        self.out.write_all(&line)?;
        self.written += line.len() as u64;
        if let Target::File {
            path,
            max_bytes,
            keep,
        } = &self.target
        {
            if *max_bytes > 0 && self.written >= *max_bytes {
                let (path, keep) = (path.clone(), *keep);
                self.rotate(&path, keep)?;
            }
        }
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// `file` → `file.1` → `file.2` ... keeping `keep` old files.
    fn rotate(&mut self, path: &Path, keep: u32) -> io::Result<()> {
        self.out.flush()?;
        for i in (1..keep.max(1)).rev() {
            let from = rotated(path, i);
            if from.exists() {
                std::fs::rename(&from, rotated(path, i + 1))?;
            }
        }
        std::fs::rename(path, rotated(path, 1))?;
        let file = open_append(path).map_err(|e| e.source)?;
        self.out = BufWriter::with_capacity(64 * 1024, Box::new(file));
        self.written = 0;
        Ok(())
    }
}

fn rotated(path: &Path, i: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{i}"));
    PathBuf::from(name)
}

fn open_append(path: &Path) -> Result<File, OpenError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| OpenError {
            path: path.display().to_string(),
            source,
        })
}

/// The sending half: cheap to clone, never blocks.
#[derive(Clone)]
pub struct SinkSender<T> {
    tx: mpsc::Sender<T>,
    stats: Arc<PipelineStats>,
}

impl<T> SinkSender<T> {
    pub fn new(tx: mpsc::Sender<T>, stats: Arc<PipelineStats>) -> Self {
        Self { tx, stats }
    }

    /// Queues `value`; when the sink is behind, drops it and counts the drop.
    pub fn send(&self, value: T, kind: Option<Kind>) {
        if self.tx.try_send(value).is_err() {
            self.stats.sink_dropped.add(kind, 1);
        }
    }
}

/// Queue capacity of the events file's sink, in events.
pub const EVENT_SINK_CAPACITY: usize = 65_536;
/// Queue capacity of the alerts file's sink, in alerts.
pub const ALERT_SINK_CAPACITY: usize = 16_384;

/// Starts a sink task writing every value it receives as one JSON line. The
/// task ends, flushing, when every sender is dropped.
pub fn spawn<T: Serialize + Send + 'static>(
    mut writer: LineWriter,
    capacity: usize,
    stats: Arc<PipelineStats>,
) -> (SinkSender<T>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<T>(capacity);
    let task_stats = stats.clone();
    let handle = tokio::task::spawn_blocking(move || {
        while let Some(value) = rx.blocking_recv() {
            if let Err(err) = writer.write_line(&value) {
                task_stats.sink_dropped.add(None, 1);
                log::warn!("sink write failed: {err}");
            }
            // Flush when the queue is drained: batches under load, prompt when idle.
            if rx.is_empty() {
                if let Err(err) = writer.flush() {
                    log::warn!("sink flush failed: {err}");
                }
            }
        }
        let _ = writer.flush();
    });
    (SinkSender { tx, stats }, handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_n_files() {
        let dir = std::env::temp_dir().join(format!("aiwatch-sink-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("alerts.jsonl");
        let mut w = LineWriter::open(Target::File {
            path: path.clone(),
            max_bytes: 100,
            keep: 2,
        })
        .unwrap();
        for i in 0..50 {
            w.write_line(&serde_json::json!({ "i": i, "pad": "xxxxxxxxxxxxxxxxxxxx" }))
                .unwrap();
        }
        w.flush().unwrap();
        assert!(path.exists());
        assert!(rotated(&path, 1).exists());
        assert!(rotated(&path, 2).exists());
        assert!(!rotated(&path, 3).exists());
        for file in [path.clone(), rotated(&path, 1)] {
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(
                text.len() < 200,
                "{} has {} bytes",
                file.display(),
                text.len()
            );
            for line in text.lines() {
                serde_json::from_str::<serde_json::Value>(line).unwrap();
            }
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn unwritable_path_is_a_clear_error() {
        let err = LineWriter::open(Target::parse("/nonexistent-dir/x.jsonl", 0, 0))
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("/nonexistent-dir/x.jsonl"),
            "{err}"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_queue_drops_and_counts() {
        let stats = Arc::new(PipelineStats::new());
        let (tx, _rx) = mpsc::channel::<u32>(1);
        let sender = SinkSender {
            tx,
            stats: stats.clone(),
        };
        sender.send(1, Some(Kind::Exec));
        sender.send(2, Some(Kind::Exec));
        sender.send(3, Some(Kind::Exit));
        assert_eq!(stats.sink_dropped.get(Some(Kind::Exec)), 1);
        assert_eq!(stats.sink_dropped.get(Some(Kind::Exit)), 1);
    }
}
