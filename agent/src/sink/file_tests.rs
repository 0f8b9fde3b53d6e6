use std::{os::unix::fs::symlink, process::Command};

use super::*;

fn file_target(path: &Path, max_bytes: u64, keep: u32) -> Target {
    Target::File {
        path: path.to_owned(),
        max_bytes,
        keep,
        group: None,
    }
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn rotates_by_size_and_keeps_n_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.jsonl");
    let mut w = LineWriter::open(file_target(&path, 100, 2)).unwrap();
    for i in 0..50 {
        w.write_line(&serde_json::json!({ "i": i, "pad": "xxxxxxxxxxxxxxxxxxxx" }))
            .unwrap();
        w.flush().unwrap();
    }
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
        assert_eq!(lines(&file).len(), text.lines().count());
        assert_eq!(mode(&file), 0o600);
    }
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

#[test]
fn files_are_private_and_an_existing_file_is_tightened() {
    let dir = tempfile::tempdir().unwrap();
    let new = dir.path().join("new.jsonl");
    LineWriter::open(file_target(&new, 0, 0)).unwrap();
    assert_eq!(mode(&new), 0o600);

    let old = dir.path().join("old.jsonl");
    std::fs::write(&old, "").unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
    LineWriter::open(file_target(&old, 0, 0)).unwrap();
    assert_eq!(mode(&old), 0o600);

    let shared = dir.path().join("shared.jsonl");
    let gid = 65534; // nogroup: any group other than ours.
    LineWriter::open(file_target(&shared, 0, 0).with_group(Some(gid))).unwrap();
    assert_eq!(mode(&shared), 0o640);
    // Changing a file's group to one we are not in needs root.
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        assert_eq!(std::fs::metadata(&shared).unwrap().gid(), gid);
    }
}

#[test]
fn a_symlink_at_the_path_is_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "untouched\n").unwrap();
    let path = dir.path().join("alerts.jsonl");
    symlink(&victim, &path).unwrap();
    let err = LineWriter::open(file_target(&path, 0, 0)).err().unwrap();
    assert!(err.to_string().contains("alerts.jsonl"), "{err}");

    // Planted after the sink opened: the next flush sees the path replaced,
    // refuses the link, and counts the lines.
    std::fs::remove_file(&path).unwrap();
    let mut w = LineWriter::open(file_target(&path, 0, 0)).unwrap();
    std::fs::remove_file(&path).unwrap();
    symlink(&victim, &path).unwrap();
    w.write_line(&serde_json::json!({"n": 1})).unwrap();
    w.write_line(&serde_json::json!({"n": 2})).unwrap();
    let lost = w.flush().unwrap_err();
    assert_eq!(lost.lines, 2);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched\n");
}

#[test]
fn reopens_after_external_rotation_and_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.jsonl");
    let mut w = LineWriter::open(file_target(&path, 0, 0)).unwrap();
    w.write_line(&serde_json::json!({"n": 1})).unwrap();
    w.flush().unwrap();
    // logrotate's default: rename, and the writer must start a new file.
    let moved = dir.path().join("events.jsonl.old");
    std::fs::rename(&path, &moved).unwrap();
    w.write_line(&serde_json::json!({"n": 2})).unwrap();
    w.flush().unwrap();
    assert_eq!(lines(&moved), [serde_json::json!({"n": 1})]);
    assert_eq!(lines(&path), [serde_json::json!({"n": 2})]);
    // Deleted: a new file appears at the path.
    std::fs::remove_file(&path).unwrap();
    w.write_line(&serde_json::json!({"n": 3})).unwrap();
    w.flush().unwrap();
    assert_eq!(lines(&path), [serde_json::json!({"n": 3})]);
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn warnings_are_rate_limited_and_recovery_reports_the_loss() {
    let mut limiter = WarningLimiter::default();
    assert_eq!(limiter.failed(3), Some(3));
    assert_eq!(limiter.failed(4), None);
    assert_eq!(limiter.failed(5), None);
    assert_eq!(limiter.recovered(), Some(12));
    assert_eq!(limiter.recovered(), None);
    assert_eq!(limiter.failed(1), Some(1), "a new failure warns again");
}

/// A tmpfs of 64 KiB mounted on a private folder, unmounted on drop.
struct TinyTmpfs(tempfile::TempDir);

impl TinyTmpfs {
    fn mount() -> Option<TinyTmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k,mode=0700", "tmpfs"])
            .arg(dir.path())
            .status()
            .ok()?;
        status.success().then_some(TinyTmpfs(dir))
    }
}

impl Drop for TinyTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_disk_loses_counted_lines_then_resumes() {
    let Some(fs) = TinyTmpfs::mount() else {
        eprintln!(
            "SKIP a_full_disk_loses_counted_lines_then_resumes: cannot mount a tmpfs (needs root)"
        );
        return;
    };
    let filler = fs.0.path().join("filler");
    std::fs::write(&filler, vec![0u8; 40 * 1024]).unwrap();
    let path = fs.0.path().join("alerts.jsonl");
    let mut w = LineWriter::open(file_target(&path, 0, 0)).unwrap();
    let pad = "x".repeat(1000);
    let (mut sent, mut lost) = (0u64, 0u64);
    for i in 0..100 {
        w.write_line(&serde_json::json!({"i": i, "pad": pad}))
            .unwrap();
        sent += 1;
        if let Err(err) = w.flush() {
            assert_eq!(err.source.raw_os_error(), Some(libc::ENOSPC), "{err}");
            lost += err.lines;
        }
    }
    assert!(lost > 50, "the 64 KiB disk filled: {lost} of {sent} lost");
    let written = lines(&path).len() as u64;
    assert_eq!(written + lost, sent, "every line is written or counted");

    std::fs::remove_file(&filler).unwrap();
    w.write_line(&serde_json::json!({"after": "space returned"}))
        .unwrap();
    w.flush().unwrap();
    let after = lines(&path);
    assert_eq!(
        after.last(),
        Some(&serde_json::json!({"after": "space returned"}))
    );
}
