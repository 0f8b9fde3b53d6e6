//! `aiwatch profile list|show|reset|export|import|freeze|unfreeze|mode|enforce`.
//!
//! These act on the saved profile files in the state directory, not on the
//! running agent's memory. The agent notices: on its next periodic save
//! (which calls [`AnomalyEngine::reload`](super::AnomalyEngine::reload))
//! a file changed on disk replaces the profile in memory, and a deleted file
//! (`reset`) makes the profile learn again from scratch.
//!
//! A workload is named `kind/name`, or just `name` when only one kind has it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::export;
use super::lock::{lock_for, lock_path, LockError};
use super::profile::{Mode, Profile, WorkloadKey};
use super::store::{parse_profile, ProfileStore};
use super::AnomalyError;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("no saved profile matches `{0}`")]
    NotFound(String),
    #[error("`{0}` names profiles of several kinds ({1}); use kind/name")]
    Ambiguous(String, String),
    #[error("unknown mode `{0}`; use learning, enforcing or drifting")]
    BadMode(String),
    #[error("{0} is not a usable profile: {1}")]
    BadFile(PathBuf, String),
    #[error(transparent)]
    Store(#[from] AnomalyError),
    #[error("cannot write {0}: {1}")]
    Output(PathBuf, std::io::Error),
    #[error("cannot render the policy: {0}")]
    Render(String),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("{0} has no lock to remove")]
    NoLock(PathBuf),
}

/// One line of `profile list`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ProfileSummary {
    pub workload: WorkloadKey,
    pub mode: Mode,
    pub frozen: bool,
    pub learned_ns: u64,
    pub items: usize,
}

fn run(result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("aiwatch profile: {error}");
            ExitCode::FAILURE
        }
    }
}

/// All saved profiles; unreadable files are skipped with a warning (the
/// agent moves them aside when it loads).
pub fn list_profiles(state_dir: &Path) -> Result<Vec<ProfileSummary>, CliError> {
    let store = ProfileStore::open(state_dir)?;
    let mut out = Vec::new();
    for path in store.files()? {
        match ProfileStore::read(&path) {
            Ok(p) => out.push(ProfileSummary {
                items: p.executables.len()
                    + p.process_pairs.len()
                    + p.paths.values().map(|s| s.len()).sum::<usize>()
                    + p.peers.len()
                    + p.listen_ports.len()
                    + p.gpu_devices.len(),
                workload: p.workload,
                mode: p.mode,
                frozen: p.frozen,
                learned_ns: p.learning.learned_ns,
            }),
            Err(error) => log::warn!("skipping profile {}: {error}", path.display()),
        }
    }
    out.sort_by(|a, b| a.workload.cmp(&b.workload));
    Ok(out)
}

/// Finds the saved profile named by `selector` (`kind/name` or `name`).
pub fn find_profile(state_dir: &Path, selector: &str) -> Result<Profile, CliError> {
    let store = ProfileStore::open(state_dir)?;
    let mut matches: Vec<(PathBuf, Profile)> = Vec::new();
    for path in store.files()? {
        if let Ok(profile) = ProfileStore::read(&path) {
            let key = &profile.workload;
            if format!("{}/{}", key.kind, key.name) == selector || key.name == selector {
                matches.push((path, profile));
            }
        }
    }
    // Several files may hold the same workload (a copy dropped in by hand);
    // the one the agent reads and writes is the canonical file.
    matches.sort_by_cached_key(|(path, profile)| {
        (
            profile.workload.clone(),
            *path != store.path_for(&profile.workload),
        )
    });
    matches.dedup_by(|later, earlier| later.1.workload == earlier.1.workload);
    if matches.len() > 1 {
        // `kind/name` is exact; a bare name may be shared by several kinds.
        let exact = matches
            .iter()
            .position(|(_, p)| format!("{}/{}", p.workload.kind, p.workload.name) == selector);
        if let Some(index) = exact {
            return Ok(matches.swap_remove(index).1);
        }
        let kinds: Vec<String> = matches
            .iter()
            .map(|(_, p)| p.workload.to_string())
            .collect();
        return Err(CliError::Ambiguous(selector.to_string(), kinds.join(", ")));
    }
    matches
        .pop()
        .map(|(_, profile)| profile)
        .ok_or_else(|| CliError::NotFound(selector.to_string()))
}

/// Loads, changes and saves one profile.
pub fn update_profile(
    state_dir: &Path,
    selector: &str,
    change: impl FnOnce(&mut Profile),
) -> Result<Profile, CliError> {
    let mut profile = find_profile(state_dir, selector)?;
    change(&mut profile);
    ProfileStore::open(state_dir)?.write(&profile)?;
    Ok(profile)
}

pub fn reset_profile(state_dir: &Path, selector: &str) -> Result<WorkloadKey, CliError> {
    let profile = find_profile(state_dir, selector)?;
    ProfileStore::open(state_dir)?.remove(&profile.workload)?;
    Ok(profile.workload)
}

/// The profile as JSON, or as a policy YAML with `as_policy`.
pub fn export_profile(
    state_dir: &Path,
    selector: &str,
    as_policy: bool,
) -> Result<String, CliError> {
    let profile = find_profile(state_dir, selector)?;
    if as_policy {
        export::to_yaml(&export::policy_for(&profile)).map_err(CliError::Render)
    } else {
        serde_json::to_string_pretty(&profile).map_err(|e| CliError::Render(e.to_string()))
    }
}

/// Installs a profile file (as written by `export`) into the state directory.
pub fn import_profile(state_dir: &Path, file: &Path) -> Result<WorkloadKey, CliError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::BadFile(file.to_path_buf(), e.to_string()))?;
    let profile =
        parse_profile(&text).map_err(|e| CliError::BadFile(file.to_path_buf(), e.to_string()))?;
    ProfileStore::open(state_dir)?.write(&profile)?;
    Ok(profile.workload)
}

pub fn reset(state_dir: &Path, workload: &str) -> ExitCode {
    run(reset_profile(state_dir, workload)
        .map(|key| println!("profile {key} removed; the workload learns again from scratch")))
}

/// `profile export [--as-policy] [-o FILE]`: to `output`, or stdout.
pub fn export(
    state_dir: &Path,
    workload: &str,
    as_policy: bool,
    output: Option<&Path>,
) -> ExitCode {
    run(
        export_profile(state_dir, workload, as_policy).and_then(|text| match output {
            Some(path) => {
                std::fs::write(path, text).map_err(|e| CliError::Output(path.to_path_buf(), e))
            }
            None => {
                println!("{text}");
                Ok(())
            }
        }),
    )
}

pub fn import(state_dir: &Path, file: &Path) -> ExitCode {
    run(import_profile(state_dir, file).map(|key| println!("profile {key} imported")))
}

pub fn freeze(state_dir: &Path, workload: &str) -> ExitCode {
    run(update_profile(state_dir, workload, |p| p.frozen = true)
        .map(|p| println!("profile {} frozen", p.workload)))
}

pub fn unfreeze(state_dir: &Path, workload: &str) -> ExitCode {
    run(update_profile(state_dir, workload, |p| p.frozen = false)
        .map(|p| println!("profile {} unfrozen", p.workload)))
}

pub fn set_mode(state_dir: &Path, workload: &str, mode: &str) -> ExitCode {
    let result = Mode::parse(mode)
        .ok_or_else(|| CliError::BadMode(mode.to_string()))
        .and_then(|mode| update_profile(state_dir, workload, |p| p.set_mode(mode)))
        .map(|p| println!("profile {} is now {}", p.workload, p.mode));
    run(result)
}

/// `profile enforce [--dry-run | --remove]`: writes (or prints, or removes)
/// the policy that locks the workload to its profile. The agent watches
/// the folder and applies it at once.
/// `profile_dir` holds the profiles, `state_dir` the locks' folder.
pub fn enforce(
    profile_dir: &Path,
    state_dir: &Path,
    workload: &str,
    dry_run: bool,
    remove: bool,
) -> ExitCode {
    run(enforce_profile(
        profile_dir,
        state_dir,
        workload,
        dry_run,
        remove,
    ))
}

fn enforce_profile(
    profile_dir: &Path,
    state_dir: &Path,
    workload: &str,
    dry_run: bool,
    remove: bool,
) -> Result<(), CliError> {
    let profile = find_profile(profile_dir, workload)?;
    let path = lock_path(state_dir, &profile.workload.name);
    if remove {
        return match std::fs::remove_file(&path) {
            Ok(()) => {
                println!(
                    "profile {} unlocked: {} removed",
                    profile.workload,
                    path.display()
                );
                Ok(())
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                Err(CliError::NoLock(path))
            }
            Err(error) => Err(CliError::Output(path, error)),
        };
    }
    let lock = lock_for(
        &profile,
        &super::config::host_resolvers(Path::new(super::config::RESOLV_CONF)),
    )?;
    if dry_run {
        println!("# would write {}", path.display());
        print!("{}", lock.policy);
    } else {
        write_lock(&path, &lock.policy)?;
        println!("profile {} locked: {}", profile.workload, path.display());
    }
    for note in &lock.notes {
        println!("note: {note}");
    }
    Ok(())
}

/// Writes a lock file whole (a temporary file renamed over it), in a folder
/// only root can enter: the agent must never read half a policy.
pub fn write_lock(path: &Path, policy: &str) -> Result<(), CliError> {
    use std::os::unix::fs::DirBuilderExt;
    let output = |error| CliError::Output(path.to_path_buf(), error);
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(output)?;
    }
    let temporary = path.with_extension("yaml.tmp");
    std::fs::write(&temporary, policy).map_err(output)?;
    std::fs::rename(&temporary, path).map_err(output)
}
