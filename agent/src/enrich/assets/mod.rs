//! Asset classes: which opened paths are models, pickle models, data sets,
//! secrets or GPU devices.
//!
//! All patterns (built-in and user-supplied) are compiled once into a single
//! [`globset::GlobSet`]; classifying a path is one pass over that set, never
//! a list of regexes tried in turn. When several classes match, the most
//! sensitive wins: `secret` > `gpu-device` > `pickle-model` > `model` >
//! `dataset`. Exclusion globs beat everything.
//!
//! `pickle-model` is its own class (formats that execute code when loaded),
//! so a rule that means "any model" writes `file.class in [model, pickle-model]`.
//!
//! [`AssetClassifier::kernel_interest`] reduces the same patterns to what the
//! kernel prefilter can test (extensions, base names, path prefixes).

mod defaults;
mod host;
mod interest;
mod secret_kind;

use globset::{Candidate, GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

pub use crate::event::AssetClass;
pub use crate::kernel::interest::KernelInterest;
pub use defaults::{ACCELERATOR_MAJORS, DATA_FOLDERS, DRM_MAJOR, MODEL_FOLDERS, NVIDIA_MAJOR};
pub use host::{dev_accelerator_majors, host_homes, host_interest, passwd_homes};
pub use secret_kind::secret_kind;

/// Asset configuration (`assets:` in the agent configuration).
///
/// Every list adds to the built-in patterns unless `defaults: false`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AssetConfig {
    /// Start from the built-in patterns (documented in `docs/workloads.md`).
    pub defaults: bool,
    /// Extra globs for `model`.
    pub model: Vec<String>,
    /// Extra globs for `pickle-model`.
    pub pickle_model: Vec<String>,
    /// Extra globs for `dataset`.
    pub dataset: Vec<String>,
    /// Extra globs for `secret`.
    pub secret: Vec<String>,
    /// Extra globs for `gpu-device`.
    pub gpu_device: Vec<String>,
    /// Extra globs for `persistence`.
    pub persistence: Vec<String>,
    /// Globs that are never classified, whatever else matches.
    pub exclude: Vec<String>,
    /// Character device majors that are GPUs whatever their path
    /// (default: 195, NVIDIA).
    pub gpu_majors: Vec<u32>,
    /// The running agent's own files (class `aiwatch`), filled at start-up
    /// from where it runs from and what it reads: never configured.
    #[serde(skip)]
    pub agent_files: Vec<String>,
    /// The running agent's pid, for its `/proc/<pid>/mem` (class
    /// `aiwatch`); none in replay.
    #[serde(skip)]
    pub agent_pid: Option<u32>,
}

impl Default for AssetConfig {
    fn default() -> Self {
        AssetConfig {
            defaults: true,
            model: Vec::new(),
            pickle_model: Vec::new(),
            dataset: Vec::new(),
            secret: Vec::new(),
            gpu_device: Vec::new(),
            persistence: Vec::new(),
            exclude: Vec::new(),
            gpu_majors: vec![NVIDIA_MAJOR],
            agent_files: Vec::new(),
            agent_pid: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AssetError {
    #[error("asset pattern `{glob}` ({class}) is not a valid glob: {source}")]
    BadGlob {
        class: &'static str,
        glob: String,
        source: globset::Error,
    },
    #[error("asset patterns could not be compiled together: {0}")]
    Build(globset::Error),
}

/// What a compiled pattern yields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Class(AssetClass),
    Exclude,
}

/// Paths whose class [`ClassCache`] remembers.
const CACHED_PATHS: std::num::NonZeroUsize = match std::num::NonZeroUsize::new(2048) {
    Some(paths) => paths,
    None => std::num::NonZeroUsize::MIN,
};

/// The glob set's answers for recently opened paths. The same files are
/// opened over and over (each process's libraries and modules, a server's
/// configuration), and a pass over the glob set costs far more than a
/// lookup. Tied to one classifier: a new classifier needs a new cache.
pub struct ClassCache {
    paths: lru::LruCache<Box<str>, Option<AssetClass>, rustc_hash::FxBuildHasher>,
}

impl Default for ClassCache {
    fn default() -> Self {
        ClassCache {
            paths: lru::LruCache::with_hasher(CACHED_PATHS, rustc_hash::FxBuildHasher),
        }
    }
}

/// One compiled pattern, kept for [`AssetClassifier::kernel_interest`].
#[derive(Clone, Debug)]
struct PatternSource {
    glob: String,
    target: Target,
}

/// Classifies opened paths into asset classes. Build once, share freely.
#[derive(Clone, Debug)]
pub struct AssetClassifier {
    set: GlobSet,
    targets: Vec<Target>,
    sources: Vec<PatternSource>,
    gpu_majors: Vec<u32>,
    hint_basenames: Vec<String>,
    agent_pid: Option<u32>,
}

impl AssetClassifier {
    /// Compiles the built-in patterns plus the configured ones.
    pub fn new(config: &AssetConfig) -> Result<Self, AssetError> {
        let mut builder = GlobSetBuilder::new();
        let mut targets = Vec::new();
        let mut sources = Vec::new();
        let mut add = |glob: &str, target: Target, ci: bool| -> Result<(), AssetError> {
            let compiled = GlobBuilder::new(glob)
                .literal_separator(true)
                .case_insensitive(ci)
                .build()
                .map_err(|source| AssetError::BadGlob {
                    class: match target {
                        Target::Class(c) => c.as_str(),
                        Target::Exclude => "exclude",
                    },
                    glob: glob.to_string(),
                    source,
                })?;
            builder.add(compiled);
            targets.push(target);
            sources.push(PatternSource {
                glob: glob.to_string(),
                target,
            });
            Ok(())
        };

        let mut hint_basenames = Vec::new();
        if config.defaults {
            for pattern in defaults::default_patterns() {
                add(
                    &pattern.glob,
                    Target::Class(pattern.class),
                    pattern.case_insensitive,
                )?;
            }
            for glob in defaults::DEFAULT_EXCLUDES {
                add(glob, Target::Exclude, false)?;
            }
            hint_basenames.extend(
                defaults::DEFAULT_HINT_BASENAMES
                    .iter()
                    .map(|s| s.to_string()),
            );
        }
        let user_lists = [
            (AssetClass::Model, &config.model),
            (AssetClass::PickleModel, &config.pickle_model),
            (AssetClass::Dataset, &config.dataset),
            (AssetClass::Secret, &config.secret),
            (AssetClass::GpuDevice, &config.gpu_device),
            (AssetClass::Persistence, &config.persistence),
            (AssetClass::Aiwatch, &config.agent_files),
        ];
        for (class, globs) in user_lists {
            for glob in globs {
                add(glob, Target::Class(class), false)?;
            }
        }
        for glob in &config.exclude {
            add(glob, Target::Exclude, false)?;
        }
        let set = builder.build().map_err(AssetError::Build)?;
        Ok(AssetClassifier {
            set,
            targets,
            sources,
            gpu_majors: config.gpu_majors.clone(),
            hint_basenames,
            agent_pid: config.agent_pid,
        })
    }

    /// The built-in configuration; cannot fail (the defaults are tested).
    pub fn with_defaults() -> Result<Self, AssetError> {
        Self::new(&AssetConfig::default())
    }

    /// The class of `path` opened by `opener_pid`, if any.
    ///
    /// `opener_pid` matters for `/proc/<pid>/environ`: reading one's own
    /// environment is ordinary, reading another process's is reading its
    /// secrets. When the opener is unknown, any numeric pid counts as another
    /// process. The pid must be in the same pid namespace as the path (the
    /// namespace the path was resolved in).
    pub fn classify(&self, path: &str, opener_pid: Option<u32>) -> Option<AssetClass> {
        self.special_class(path, opener_pid)
            .unwrap_or_else(|| self.glob_class(path))
    }

    /// [`Self::classify`], with the glob set's answers remembered in `cache`.
    pub fn classify_cached(
        &self,
        path: &str,
        opener_pid: Option<u32>,
        cache: &mut ClassCache,
    ) -> Option<AssetClass> {
        if let Some(verdict) = self.special_class(path, opener_pid) {
            return verdict;
        }
        if let Some(class) = cache.paths.get(path) {
            return *class;
        }
        let class = self.glob_class(path);
        cache.paths.put(path.into(), class);
        class
    }

    /// The classes decided by code, which depend on the opener too:
    /// `Some(verdict)` for those paths, `None` for the rest.
    fn special_class(&self, path: &str, opener_pid: Option<u32>) -> Option<Option<AssetClass>> {
        if let Some(verdict) = proc_environ(path, opener_pid) {
            return Some(verdict);
        }
        if self
            .agent_pid
            .is_some_and(|agent| proc_mem_of(path) == Some(agent))
        {
            return Some(Some(AssetClass::Aiwatch));
        }
        None
    }

    /// The class the glob set gives `path`: a function of the path alone.
    fn glob_class(&self, path: &str) -> Option<AssetClass> {
        let candidate = Candidate::new(path);
        let mut best: Option<AssetClass> = None;
        for index in self.set.matches_candidate(&candidate) {
            match self.targets.get(index) {
                Some(Target::Exclude) => return None,
                Some(Target::Class(class))
                    if best.is_none_or(|b| class.priority() > b.priority()) =>
                {
                    best = Some(*class);
                }
                Some(Target::Class(_)) | None => {}
            }
        }
        best
    }

    /// Classifies a device node by its major number (character devices).
    pub fn classify_device(&self, major: u32) -> Option<AssetClass> {
        self.gpu_majors
            .contains(&major)
            .then_some(AssetClass::GpuDevice)
    }

    /// Classifies an open with everything the pipeline knows: the path, the
    /// opener and, for device nodes, the major number.
    pub fn classify_open(
        &self,
        path: &str,
        opener_pid: Option<u32>,
        char_device_major: Option<u32>,
        cache: &mut ClassCache,
    ) -> Option<AssetClass> {
        self.classify_cached(path, opener_pid, cache)
            .or_else(|| char_device_major.and_then(|major| self.classify_device(major)))
    }

    /// What the kernel prefilter must let through so that every path that
    /// could classify reaches user space. Home-relative patterns are
    /// expanded for `/root` only; see [`Self::kernel_interest_for_homes`].
    pub fn kernel_interest(&self) -> KernelInterest {
        self.kernel_interest_for_homes(&["/root"])
    }

    /// Like [`Self::kernel_interest`], with home-relative patterns
    /// (`**/.config/gcloud/**`) expanded into a prefix for each home given.
    pub fn kernel_interest_for_homes(&self, homes: &[&str]) -> KernelInterest {
        let globs = self
            .sources
            .iter()
            .filter_map(|source| match source.target {
                Target::Class(_) => Some(source.glob.as_str()),
                Target::Exclude => None,
            });
        let mut interest = interest::derive(globs, homes);
        interest
            .basenames
            .extend(self.hint_basenames.iter().cloned());
        // `/proc/<pid>/environ` and the agent's `/proc/<pid>/mem` are
        // classified by code, not by a glob.
        interest.basenames.push("environ".to_string());
        if self.agent_pid.is_some() {
            interest.basenames.push("mem".to_string());
        }
        interest.device_majors = self.gpu_majors.clone();
        interest.normalise();
        interest
    }
}

/// The pid whose memory `/proc/<pid>/mem` or `/proc/<pid>/task/<tid>/mem`
/// is.
fn proc_mem_of(path: &str) -> Option<u32> {
    let rest = path.strip_prefix("/proc/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [owner, "mem"] | [owner, "task", _, "mem"] => owner.parse().ok(),
        _ => None,
    }
}

/// Classifies `/proc/<pid>/environ` and `/proc/<pid>/task/<tid>/environ`:
/// `Some(Some(Secret))` for another process's, `Some(None)` for one's own,
/// `None` when the path is not an environ file.
fn proc_environ(path: &str, opener_pid: Option<u32>) -> Option<Option<AssetClass>> {
    let rest = path.strip_prefix("/proc/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    let owner = match parts.as_slice() {
        [owner, "environ"] | [owner, "task", _, "environ"] => *owner,
        _ => return None,
    };
    if owner == "self" || owner == "thread-self" {
        return Some(None);
    }
    let pid: u32 = owner.parse().ok()?;
    if opener_pid == Some(pid) {
        Some(None)
    } else {
        Some(Some(AssetClass::Secret))
    }
}

/// The accelerator family of a device node, for `DeviceInfo.accelerator`.
pub fn accelerator_family(path: &str, major: Option<u32>) -> Option<&'static str> {
    let name = path.strip_prefix("/dev/");
    match name {
        Some("nvidiactl") => Some("nvidiactl"),
        Some(n) if n.starts_with("nvidia-uvm") => Some("nvidia-uvm"),
        Some(n) if n.starts_with("nvidia") => Some("nvidia"),
        Some(n) if n.starts_with("dri/") => Some("dri"),
        Some("kfd") => Some("kfd"),
        Some(n) if n.starts_with("accel/") => Some("accel"),
        _ => major.and_then(accelerator_of_major),
    }
}

/// The accelerator with this fixed major, if any.
pub fn accelerator_of_major(major: u32) -> Option<&'static str> {
    ACCELERATOR_MAJORS
        .iter()
        .find(|(known, _)| *known == major)
        .map(|(_, name)| *name)
}

#[cfg(test)]
mod tests;
