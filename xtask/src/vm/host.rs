//! `cargo xtask vm --kernel host`: the running kernel's row of the matrix.
//! No guest: the agent starts on this host long enough to print its
//! start-up feature lines, with the same binary the guests get. The host's
//! suites are `cargo xtask test`'s, so this row records features only.

use anyhow::Context as _;

use super::{guest::agent_startup, payload::Built, report::GuestResult};
use crate::{privilege::is_root, workspace::Workspace};

pub fn record(workspace: &Workspace, built: &Built) -> anyhow::Result<()> {
    anyhow::ensure!(
        is_root(),
        "`cargo xtask vm --kernel host` loads the programs into this kernel: run it as root"
    );
    let dir = workspace.target_dir.join("vm/host-agent");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let startup = agent_startup(&built.agent, &dir);
    for line in &startup.lines {
        println!("vm: host: {line}");
    }
    let read = |path: &str| {
        std::fs::read_to_string(path)
            .map(|text| text.trim().to_owned())
            .unwrap_or_default()
    };
    let cgroups = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "unified"
    } else if std::path::Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists() {
        "hybrid"
    } else {
        "v1 only"
    };
    let result = GuestResult {
        label: "host".into(),
        package: "this machine".into(),
        release: read("/proc/sys/kernel/osrelease"),
        cgroups: cgroups.into(),
        lsm: read("/sys/kernel/security/lsm"),
        agent_sha256: built.agent_sha256.clone(),
        loaded_sha256: built.agent_sha256.clone(),
        startup: startup.lines,
        seconds: 0,
        date: super::report::now(),
        ..GuestResult::default()
    };
    result.save(workspace)?;
    anyhow::ensure!(startup.ready, "the agent did not get ready on this host");
    Ok(())
}
