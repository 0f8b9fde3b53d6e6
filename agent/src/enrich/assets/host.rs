//! The kernel interest of the running host: the classifier's patterns with
//! home folders expanded for the homes that exist, and the accelerator
//! majors (built-in, configured and found under `/dev`).

use std::collections::BTreeSet;

use super::{accelerator_family, AssetClassifier, ACCELERATOR_MAJORS};
use crate::kernel::interest::KernelInterest;

/// The interest of the running host: the classifier's patterns with home
/// folders expanded for the homes that exist, and the accelerator majors
/// (built-in, configured and found under `/dev`).
pub fn host_interest(classifier: &AssetClassifier, extra_majors: &[u32]) -> KernelInterest {
    let homes = host_homes();
    let homes: Vec<&str> = homes.iter().map(String::as_str).collect();
    let mut interest = classifier.kernel_interest_for_homes(&homes);
    interest
        .device_majors
        .extend(ACCELERATOR_MAJORS.iter().map(|(major, _)| *major));
    interest.device_majors.extend_from_slice(extra_majors);
    interest
        .device_majors
        .extend(dev_accelerator_majors("/dev"));
    interest.normalise();
    interest
}

/// Home folders that exist: `/root`, every folder under `/home`, and the
/// homes `/etc/passwd` names.
pub fn host_homes() -> Vec<String> {
    let mut homes = BTreeSet::new();
    homes.insert("/root".to_string());
    if let Ok(entries) = std::fs::read_dir("/home") {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                homes.insert(entry.path().display().to_string());
            }
        }
    }
    if let Ok(passwd) = std::fs::read_to_string("/etc/passwd") {
        homes.extend(passwd_homes(&passwd));
    }
    homes
        .into_iter()
        .filter(|home| home != "/" && std::path::Path::new(home).is_dir())
        .collect()
}

/// Home folders listed in a passwd file (field 6), absolute ones only.
pub fn passwd_homes(passwd: &str) -> Vec<String> {
    passwd
        .lines()
        .filter_map(|line| line.split(':').nth(5))
        .filter(|home| home.starts_with('/') && *home != "/")
        .map(|home| home.trim_end_matches('/').to_string())
        .collect()
}

/// Majors of the accelerator character devices present under `dev`
/// (`/dev/nvidia-uvm` and `/dev/kfd` have dynamic majors).
pub fn dev_accelerator_majors(dev: &str) -> Vec<u32> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let mut majors = Vec::new();
    let mut visit = |path: std::path::PathBuf| {
        let Ok(meta) = std::fs::metadata(&path) else {
            return;
        };
        let shown = format!("/dev/{}", path.strip_prefix(dev).unwrap_or(&path).display());
        if meta.file_type().is_char_device() && accelerator_family(&shown, None).is_some() {
            majors.push(libc::major(meta.rdev()));
        }
    };
    for sub in ["", "dri", "accel"] {
        let folder = std::path::Path::new(dev).join(sub);
        if let Ok(entries) = std::fs::read_dir(&folder) {
            for entry in entries.flatten() {
                visit(entry.path());
            }
        }
    }
    majors.sort_unstable();
    majors.dedup();
    majors
}
