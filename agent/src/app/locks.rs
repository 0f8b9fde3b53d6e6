//! Start-up side of profile locks: the locked profiles' folder exists (so
//! it can be loaded and watched), and the workloads named in
//! `enforcement.lock_profiles` are locked as `aiwatch profile enforce`
//! locks them.

use std::{os::unix::fs::DirBuilderExt, path::Path};

use crate::{
    anomaly::{
        cli::{find_profile, write_lock},
        config::{host_resolvers, RESOLV_CONF},
        lock::{lock_for, lock_path, LOCKED_PROFILES_DIR},
    },
    app::config::Config,
};

/// Creates the folder and writes the configured locks; each profile that
/// cannot be locked is named in one warning, and the others still are.
pub fn write_configured(config: &Config) {
    let dir = config.state_dir.join(LOCKED_PROFILES_DIR);
    if let Err(error) = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
    {
        log::warn!(
            "cannot create {}: {error}; locked profiles are not loaded",
            dir.display()
        );
        return;
    }
    for name in &config.enforcement.lock_profiles {
        let written = find_profile(&config.profile_dir(), name)
            .map_err(|error| error.to_string())
            .and_then(|profile| {
                let resolvers = if config.anomaly.dns_resolvers.is_empty() {
                    host_resolvers(Path::new(RESOLV_CONF))
                } else {
                    config.anomaly.dns_resolvers.clone()
                };
                let lock = lock_for(&profile, &resolvers).map_err(|error| error.to_string())?;
                let path = lock_path(&config.state_dir, &profile.workload.name);
                write_lock(&path, &lock.policy).map_err(|error| error.to_string())?;
                for note in &lock.notes {
                    log::info!("profile lock {}: {note}", profile.workload);
                }
                Ok(path)
            });
        match written {
            Ok(path) => log::info!(
                "enforcement.lock_profiles: {name} locked ({})",
                path.display()
            ),
            Err(error) => {
                log::warn!("enforcement.lock_profiles: {name} is not locked: {error}")
            }
        }
    }
}
