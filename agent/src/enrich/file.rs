//! File and GPU events: absolute paths, access, devices, sizes and asset
//! classes.
//!
//! The kernel resolves what it can: the opened file's own path, or the
//! directory a relative name is relative to. This module joins a directory
//! and a relative name and normalises the result lexically (`.` and `..`;
//! symlinks are not followed), fills the device and size from the kernel's
//! inode, and classifies the path with the [`AssetClassifier`].
//!
//! Paths are never `stat`'ed here: a path names a file in the process's
//! own mount namespace (a container's root, its own mounts), which the
//! agent's namespace may not see or may see as another file, and a stat on
//! the pipeline thread could hang on a dead network or FUSE mount. The
//! kernel gives the inode of what was opened, and for a failed open of a
//! device node the device its device check saw (`cgroup/dev`); a failed
//! open of anything else, a chmod or a rename has no device or size.

use std::collections::HashMap;

use crate::{
    enrich::assets::{accelerator_family, accelerator_of_major, AssetClassifier, ClassCache},
    event::{
        Access, DeviceInfo, DeviceKind, DirectoryKey, Event, FileInfo, GpuInfo, KernelAction, Kind,
    },
    ingest::decode::{
        kernel_dev, AccelVerdict, Common, FileAccess, FileOp, GpuIoctl, ResolvedPath,
    },
};

const S_IFMT: u32 = 0o170000;
const S_IFCHR: u32 = 0o020000;
const S_IFBLK: u32 = 0o060000;
const S_IFREG: u32 = 0o100000;
const O_ACCMODE: u32 = 0o3;
const O_CREAT: u32 = 0o100;
const O_TMPFILE: u32 = 0o20200000;

/// Accelerator families learnt from device opens, so that ioctl counts on
/// devices with dynamic majors (`nvidia-uvm`, `kfd`) still name them.
const MAX_KNOWN_DEVICES: usize = 1024;

/// The file family's part of the enricher.
pub struct FileState {
    classifier: Option<AssetClassifier>,
    /// The classifier's answers for recent paths; replaced with it.
    classes: ClassCache,
    /// `rdev` (kernel form) → accelerator family, from device opens.
    accelerators: HashMap<u32, &'static str>,
}

impl Default for FileState {
    fn default() -> Self {
        FileState {
            classifier: AssetClassifier::with_defaults().ok(),
            classes: ClassCache::default(),
            accelerators: HashMap::new(),
        }
    }
}

impl super::Enricher {
    /// Classifies file events with `classifier` (built from the agent's
    /// configuration) instead of the built-in patterns.
    pub fn set_asset_classifier(&mut self, classifier: AssetClassifier) {
        self.files.classifier = Some(classifier);
        self.files.classes = ClassCache::default();
    }

    pub(super) fn enrich_file(&mut self, event: &mut Event, common: &Common, op: FileOp) {
        self.ensure_known(common.pid, common);
        self.fill_process(event, common.pid, common.tid);
        event.kernel_action = if op.killed {
            Some(KernelAction::Killed)
        } else if op.kill_rate_limited {
            Some(KernelAction::KillRateLimited)
        } else if op.lsm_denied {
            Some(KernelAction::Refused)
        } else {
            op.accel.map(|verdict| match verdict {
                AccelVerdict::Denied => KernelAction::Denied,
                AccelVerdict::WouldDeny => KernelAction::WouldDeny,
            })
        };
        let (path, mut incomplete) = absolute(&op.name, op.opened.as_ref(), op.dir.as_ref());
        let target = op
            .name2
            .as_deref()
            .map(|name2| absolute(name2, None, op.dir2.as_ref()));
        incomplete |= op.name_truncated || target.as_ref().is_some_and(|(_, inc)| *inc);
        let target = target.map(|(t, _)| t);

        // What the inode says, from the kernel only (see the module's note).
        let inode = op
            .inode
            .map(|inode| (inode.i_mode, kernel_dev(inode.rdev), inode.size));
        let device = inode.and_then(|(mode, (major, minor), _)| {
            let kind = match mode & S_IFMT {
                S_IFCHR => DeviceKind::Char,
                S_IFBLK => DeviceKind::Block,
                _ => return None,
            };
            Some(DeviceInfo {
                kind,
                major,
                minor,
                accelerator: (kind == DeviceKind::Char)
                    .then(|| accelerator_family(&path, Some(major)))
                    .flatten()
                    .map(str::to_string),
            })
        });
        let size = inode
            .filter(|(mode, _, _)| mode & S_IFMT == S_IFREG)
            .and_then(|(_, _, size)| u64::try_from(size).ok());
        let char_major = device
            .as_ref()
            .filter(|d| d.kind == DeviceKind::Char)
            .map(|d| d.major);
        let files = &mut self.files;
        let mut classify = |p: &str| {
            let classifier = files.classifier.as_ref()?;
            classifier.classify_open(p, Some(common.pid), char_major, &mut files.classes)
        };
        let class = classify(&path).or_else(|| target.as_deref().and_then(&mut classify));
        if let Some(device) = &device {
            if let (Some(family), Some(major)) = (accelerator_name(device), char_major) {
                if self.files.accelerators.len() < MAX_KNOWN_DEVICES {
                    let rdev = (major << 20) | (device.minor & 0xf_ffff);
                    self.files.accelerators.insert(rdev, family);
                }
            }
        }
        let is_open = event.kind == Kind::Open;
        // A plain read the kernel could fold from now on: only of a regular
        // file with no class, whose path is whole.
        let fold_candidate = op
            .foldable_dir
            .filter(|_| is_open && class.is_none() && size.is_some() && !incomplete)
            .map(|key| DirectoryKey {
                tgid: key.tgid,
                dev: key.dev,
                ino: key.dir_ino,
            });
        event.file = Some(FileInfo {
            path,
            target,
            flags: op.flags,
            access: is_open.then(|| access(op.flags)),
            mode: match event.kind {
                Kind::Open if op.flags & (O_CREAT | O_TMPFILE) != 0 => Some(op.mode),
                Kind::Chmod => Some(op.mode),
                // symlink and symlinkat mark their events with S_IFLNK.
                Kind::Link if op.mode != 0 => Some(op.mode),
                _ => None,
            },
            result: op.ret,
            class,
            device,
            size,
            path_incomplete: incomplete,
            length: (event.kind == Kind::Truncate).then_some(op.length),
            model_in_use: false,
            unchecked: op.unchecked,
            fold_candidate,
            ..FileInfo::default()
        });
    }

    /// A `file_access` summary: plain reads in one directory, counted in
    /// the kernel.
    pub(super) fn enrich_file_access(
        &mut self,
        event: &mut Event,
        common: &Common,
        access: FileAccess,
    ) {
        self.attribute_report(event, common);
        event.file = Some(FileInfo {
            path: access.directory,
            access: Some(Access::Read),
            size: Some(access.bytes),
            count: Some(access.count),
            first_time: (access.first_ns != 0).then(|| self.clock.wall_time(access.first_ns)),
            last_time: (access.last_ns != 0).then(|| self.clock.wall_time(access.last_ns)),
            ..FileInfo::default()
        });
    }

    pub(super) fn enrich_gpu(&mut self, event: &mut Event, common: &Common, gpu: GpuIoctl) {
        self.attribute_report(event, common);
        let (major, minor) = kernel_dev(gpu.rdev);
        let accelerator = self
            .files
            .accelerators
            .get(&gpu.rdev)
            .copied()
            .or(accelerator_of_major(major));
        event.gpu = Some(GpuInfo {
            ioctls: gpu.count,
            interval_s: gpu.interval_ns as f64 / 1e9,
            device: DeviceInfo {
                kind: DeviceKind::Char,
                major,
                minor,
                accelerator: accelerator.map(str::to_string),
            },
        });
    }
}

fn accelerator_name(device: &DeviceInfo) -> Option<&'static str> {
    match device.accelerator.as_deref()? {
        "nvidia" => Some("nvidia"),
        "nvidia-uvm" => Some("nvidia-uvm"),
        "nvidiactl" => Some("nvidiactl"),
        "dri" => Some("dri"),
        "kfd" => Some("kfd"),
        "accel" => Some("accel"),
        _ => None,
    }
}

/// `read`, `write` or `read_write` from open flags.
pub fn access(flags: u32) -> Access {
    match flags & O_ACCMODE {
        0 => Access::Read,
        1 => Access::Write,
        _ => Access::ReadWrite,
    }
}

/// The absolute path of an operation, and whether it may be incomplete:
/// the kernel's resolution of the file itself, else the name if absolute,
/// else the name joined to its directory, else the name as given.
pub fn absolute(
    name: &str,
    opened: Option<&ResolvedPath>,
    dir: Option<&ResolvedPath>,
) -> (String, bool) {
    if let Some(opened) = opened {
        return (opened.path.clone(), opened.truncated);
    }
    if name.starts_with('/') {
        return (normalise(name), false);
    }
    match dir {
        Some(dir) => (join(&dir.path, name), dir.truncated),
        None => (name.to_string(), true),
    }
}

/// `dir` joined with a relative `name`, normalised.
pub fn join(dir: &str, name: &str) -> String {
    if name.starts_with('/') {
        return normalise(name);
    }
    normalise(&format!("{dir}/{name}"))
}

/// Removes empty and `.` components and applies `..` lexically (never
/// above the root). The result is absolute when `path` is.
pub fn normalise(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    if path.starts_with('/') {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(path: &str) -> ResolvedPath {
        ResolvedPath {
            path: path.to_string(),
            truncated: false,
        }
    }

    #[test]
    fn normalise_handles_dots_and_slashes() {
        assert_eq!(normalise("/a/./b//c/"), "/a/b/c");
        assert_eq!(normalise("/a/b/../c"), "/a/c");
        assert_eq!(normalise("/../../etc/passwd"), "/etc/passwd");
        assert_eq!(normalise("/"), "/");
        assert_eq!(normalise("a/../.."), ".");
        assert_eq!(normalise("a/./b"), "a/b");
    }

    #[test]
    fn relative_names_join_their_directory() {
        assert_eq!(join("/tmp/work", "model.onnx"), "/tmp/work/model.onnx");
        assert_eq!(join("/tmp/work", "./x/../y"), "/tmp/work/y");
        assert_eq!(join("/tmp/work", "../../../root/.netrc"), "/root/.netrc");
        assert_eq!(join("/", "etc/hosts"), "/etc/hosts");
        assert_eq!(join("/tmp", "/abs/./p"), "/abs/p");
    }

    #[test]
    fn absolute_prefers_the_kernel_resolution() {
        let dir = resolved("/srv");
        let opened = resolved("/data/real.bin");
        assert_eq!(
            absolute("link.bin", Some(&opened), Some(&dir)),
            ("/data/real.bin".to_string(), false)
        );
        assert_eq!(
            absolute("w/../m.pt", None, Some(&dir)),
            ("/srv/m.pt".to_string(), false)
        );
        assert_eq!(absolute("/x/./y", None, None), ("/x/y".to_string(), false));
        // No directory known: the name as given, flagged incomplete.
        assert_eq!(absolute("m.pt", None, None), ("m.pt".to_string(), true));
        let deep = ResolvedPath {
            path: "/deep".to_string(),
            truncated: true,
        };
        assert!(absolute("f", None, Some(&deep)).1);
    }

    #[test]
    fn access_follows_the_accmode_bits() {
        assert_eq!(access(0), Access::Read);
        assert_eq!(access(0o1 | O_CREAT), Access::Write);
        assert_eq!(access(0o2), Access::ReadWrite);
        assert_eq!(access(0o3), Access::ReadWrite);
    }
}
