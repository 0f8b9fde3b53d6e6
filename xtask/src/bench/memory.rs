//! `--agent-memory`: the agent's resident memory with the default rule pack
//! and a thousand workloads, against the target of 64 MiB.
//!
//! A thousand idle `aiwatch-bench-workload idle` processes, each carrying
//! its own marker, are declared under a thousand names, so the agent holds
//! a thousand workloads with a process each. Their cost to the host is a
//! sleeping native process; what grows is the agent's tables.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use super::{
    agent::{AgentMode, BenchAgent, MemorySplit},
    report::median,
};

/// Declared workloads, and idle processes, one per workload.
pub const WORKLOADS: usize = 1_000;
/// The target for the agent's steady RSS.
pub const TARGET_MIB: f64 = 64.0;

/// What the measurement found.
#[derive(Debug, Clone, Copy)]
pub struct MemoryResult {
    pub workloads: usize,
    /// Processes the agent listed in its inventory once settled.
    pub listed: usize,
    pub steady_mib: f64,
    pub peak_mib: f64,
    /// Where the resident pages were at the last steady sample.
    pub split: Option<MemorySplit>,
}

impl MemoryResult {
    pub fn met(&self) -> bool {
        self.steady_mib <= TARGET_MIB
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Agent memory with the default rule pack and {} declared workloads \
             ({} of their processes listed in the inventory): RSS steady {:.1} MiB \
             (median of 10 one-second samples), peak {:.1} MiB; target ≤ {TARGET_MIB:.0} \
             MiB steady: {}.",
            self.workloads,
            self.listed,
            self.steady_mib,
            self.peak_mib,
            if self.met() { "met" } else { "MISSED" }
        );
        if let Some(split) = self.split {
            let mib = |kib: u64| kib as f64 / 1024.0;
            let _ = writeln!(
                out,
                "\nOf that RSS ({:.1} MiB at the last sample), {:.1} MiB is the kernel's BPF \
                 maps mapped into the agent, the ring buffer's data pages counted twice (the \
                 kernel maps them twice in a row so that a wrapping record reads as one), and \
                 {:.1} MiB the pages of its own executable it has read, the embedded eBPF \
                 object among them; the rest, {:.1} MiB, is its heap, stacks and libraries. \
                 Its proportional set size, where a page mapped twice counts once: {:.1} MiB.",
                mib(split.rss_kib),
                mib(split.bpf_maps_kib),
                mib(split.binary_kib),
                mib(split
                    .rss_kib
                    .saturating_sub(split.bpf_maps_kib + split.binary_kib)),
                mib(split.pss_kib),
            );
        }
        out
    }
}

/// The marker of workload `index`: fixed width, so no pattern matches another.
fn marker(index: usize) -> String {
    format!("aiwatch-bench-mem-{index:04}")
}

/// The configuration: the bench's, with `WORKLOADS` declared workloads.
pub fn write_config(dir: &Path, listen: SocketAddr) -> anyhow::Result<PathBuf> {
    let path = dir.join("memory-config.yaml");
    let mut config = format!(
        "listen: {listen}\nevents: null\nalerts: {}\nstate_dir: {}\nworkloads:\n  declared:\n",
        dir.join("memory-alerts.jsonl").display(),
        dir.join("memory-state").display(),
    );
    for index in 0..WORKLOADS {
        let _ = writeln!(
            config,
            "    - name: {0}\n      kind: inference\n      match: {{argv: \"*{0}*\"}}",
            marker(index)
        );
    }
    std::fs::write(&path, config).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Idle processes, killed on drop.
struct Sleepers(Vec<Child>);

impl Drop for Sleepers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs the measurement with `binary`.
pub fn measure(binary: &Path, workload: &Path, dir: &Path) -> anyhow::Result<MemoryResult> {
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let config = write_config(dir, listen)?;
    let agent = BenchAgent::start(binary, &config, listen, AgentMode::Full)?;
    let mut sleepers = Sleepers(Vec::with_capacity(WORKLOADS));
    for index in 0..WORKLOADS {
        let child = Command::new(workload)
            .args(["idle", "600", &marker(index)])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start idle process {index}"))?;
        sleepers.0.push(child);
    }
    let pids: Vec<u32> = sleepers.0.iter().map(Child::id).collect();
    // Until every process is a workload member, or a minute has passed.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut listed = agent.listed_count(&pids);
    while listed < WORKLOADS && Instant::now() < deadline {
        thread::sleep(Duration::from_secs(1));
        listed = agent.listed_count(&pids);
    }
    agent.settle(Duration::from_secs(20));
    let mut samples = Vec::new();
    for _ in 0..10 {
        if let Some((rss, _)) = agent.memory_kib() {
            samples.push(rss as f64 / 1024.0);
        }
        thread::sleep(Duration::from_secs(1));
    }
    let split = agent.memory_split();
    let peak = agent
        .memory_kib()
        .map_or(0.0, |(_, peak)| peak as f64 / 1024.0);
    drop(sleepers);
    agent.stop()?;
    Ok(MemoryResult {
        workloads: WORKLOADS,
        listed,
        steady_mib: median(samples).context("could not read the agent's /proc status")?,
        peak_mib: peak,
        split,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_workload_is_declared_with_a_pattern_of_its_own() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-memory-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = write_config(&dir, "127.0.0.1:9999".parse().expect("address")).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            text.matches("- name: aiwatch-bench-mem-").count(),
            WORKLOADS
        );
        assert!(text.contains("argv: \"*aiwatch-bench-mem-0999*\""));
        assert_eq!(marker(7), "aiwatch-bench-mem-0007");
    }

    #[test]
    fn the_target_is_on_the_steady_rss() {
        let result = MemoryResult {
            workloads: WORKLOADS,
            listed: WORKLOADS,
            steady_mib: 63.9,
            peak_mib: 90.0,
            split: None,
        };
        assert!(result.met());
        assert!(result.markdown().contains("63.9 MiB"));
        let over = MemoryResult {
            steady_mib: 64.5,
            ..result
        };
        assert!(!over.met() && over.markdown().contains("MISSED"));
    }
}
