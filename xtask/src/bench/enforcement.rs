//! `--enforcement`: what enforcement costs, and how fast a kill lands.
//!
//! 1. The cost on the exec and connect loops: a tracked fork + exec loop
//!    and a tracked loopback connect loop, run under the plain agent and
//!    under an enforcing agent whose workload has allow-all lists (an exec
//!    allowlist naming the loop and /bin/true, an egress allowlist naming
//!    loopback), alternated over the rounds. The loops' wall time and the
//!    kernel's own per-program cost of `sched_process_exec` and
//!    `egress_connect4` are compared.
//! 2. The reaction latency: an enforcing agent kills a copy of /bin/true at
//!    exec, many times; the latency is the victim's exit time minus its
//!    exec time, both stamped by the kernel (`ktime_ns` of the exec and exit
//!    events). A victim that never runs cannot time itself.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{bail, Context as _};
use serde_json::Value;

use super::{
    agent::{self, AgentMode, BenchAgent},
    cases::{self, Case, Context, Redis, Sizes},
    kernel_cost::CaseCost,
    report::median,
};

/// Victims killed for the latency measurement.
const VICTIMS: usize = 200;

/// The loops compared, and the program whose kernel cost each shows.
const LOOPS: [(Case, &str); 2] = [
    (Case::ForkExecTracked, "sched_process_exec"),
    (Case::TcpConnectTracked, "egress_connect4"),
];

/// Writes a configuration: `policy` (if any) in a folder of its own, and
/// enforcement on for it.
fn write_config(
    dir: &Path,
    name: &str,
    listen: SocketAddr,
    events: Option<&Path>,
    policy: Option<&str>,
) -> anyhow::Result<PathBuf> {
    let mut config = agent::config_text(
        listen,
        events,
        &dir.join("enforcement-alerts.jsonl"),
        &dir.join("enforcement-state"),
    );
    if let Some(policy) = policy {
        let folder = dir.join(format!("{name}-policies"));
        std::fs::create_dir_all(&folder)?;
        std::fs::write(folder.join("enforce.yaml"), policy)?;
        let _ = write!(
            config,
            "enforcement: {{mode: enforce, kill_budget: 0}}\npolicies: [{}]\n",
            folder.display()
        );
    }
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, config).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Allow-all lists for the bench workload: everything the loops do is
/// allowed, so the cost is the checks alone.
fn allow_all(workload: &Path, truth: &Path) -> String {
    format!(
        "rules:\n\
         \x20 - id: bench.exec-allowlist\n\
         \x20   severity: high\n\
         \x20   action: kill\n\
         \x20   when:\n\
         \x20     kind: exec\n\
         \x20     workload.name: aiwatch-bench\n\
         \x20     not:\n\
         \x20       process.exe: [{}, {}]\n\
         \x20 - id: bench.egress-allowlist\n\
         \x20   severity: high\n\
         \x20   action: deny\n\
         \x20   when:\n\
         \x20     kind: [connect, udp_send]\n\
         \x20     workload.name: aiwatch-bench\n\
         \x20     not:\n\
         \x20       net.dst.ip: {{cidr: [127.0.0.0/8, '::1/128']}}\n",
        workload.display(),
        truth.display()
    )
}

/// What `--enforcement` found.
#[derive(Debug, Default)]
pub struct EnforcementResult {
    /// Per loop: (case, program, plain wall medians, enforcing wall medians,
    /// plain kernel cost, enforcing kernel cost).
    pub loops: Vec<LoopResult>,
    /// Hook-to-exit latencies of killed victims, in microseconds.
    pub latencies_us: Vec<f64>,
    /// Victims started and victims whose kill and exit were both seen.
    pub victims: usize,
}

#[derive(Debug)]
pub struct LoopResult {
    pub case: Case,
    pub program: &'static str,
    pub plain_wall_ns: Vec<f64>,
    pub enforcing_wall_ns: Vec<f64>,
    pub plain_cost: CaseCost,
    pub enforcing_cost: CaseCost,
}

impl EnforcementResult {
    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "Enforcement cost (`--enforcement`): tracked loops under the plain agent and under \
             an enforcing agent with allow-all exec and egress allowlists for their workload.\n\n\
             | loop | plain agent | enforcing agent | ratio | kernel program | plain ns/run | \
             enforcing ns/run |\n| --- | ---: | ---: | ---: | --- | ---: | ---: |\n",
        );
        for result in &self.loops {
            let plain = median(result.plain_wall_ns.clone());
            let enforcing = median(result.enforcing_wall_ns.clone());
            let ns = |cost: &CaseCost| {
                cost.programs
                    .get(result.program)
                    .and_then(|c| c.ns_per_run())
                    .map_or("–".to_string(), |ns| format!("{ns:.0}"))
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | `{}` | {} | {} |",
                result.case.name(),
                plain.map_or("–".into(), |ns| format!("{:.3} s", ns / 1e9)),
                enforcing.map_or("–".into(), |ns| format!("{:.3} s", ns / 1e9)),
                match (plain, enforcing) {
                    (Some(p), Some(e)) if p > 0.0 => format!("{:.2}×", e / p),
                    _ => "–".into(),
                },
                result.program,
                ns(&result.plain_cost),
                ns(&result.enforcing_cost),
            );
        }
        let mut sorted = self.latencies_us.clone();
        sorted.sort_by(f64::total_cmp);
        let at = |q: f64| -> String {
            if sorted.is_empty() {
                return "–".into();
            }
            let index = ((sorted.len() - 1) as f64 * q).round() as usize;
            format!("{:.0} µs", sorted[index])
        };
        let _ = writeln!(
            out,
            "\nReaction latency of the exec kill, from `sched_process_exec` to the victim's \
             exit, both stamped by the kernel: median {}, p90 {}, max {} over {} of {} \
             victims.",
            at(0.5),
            at(0.9),
            at(1.0),
            sorted.len(),
            self.victims
        );
        out
    }
}

/// Runs both measurements with `binary`.
pub fn measure(
    binary: &Path,
    workload: &Path,
    dir: &Path,
    redis: &Redis,
    sizes: Sizes,
    rounds: usize,
) -> anyhow::Result<EnforcementResult> {
    let truth = std::fs::canonicalize("/bin/true").context("resolving /bin/true")?;
    let workload_exe = std::fs::canonicalize(workload)?;
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let plain = write_config(dir, "enforcement-plain", listen, None, None)?;
    let enforcing = write_config(
        dir,
        "enforcement-on",
        listen,
        None,
        Some(&allow_all(&workload_exe, &truth)),
    )?;
    let mut result = EnforcementResult::default();
    for (case, program) in LOOPS {
        result.loops.push(LoopResult {
            case,
            program,
            plain_wall_ns: Vec::new(),
            enforcing_wall_ns: Vec::new(),
            plain_cost: CaseCost::default(),
            enforcing_cost: CaseCost::default(),
        });
    }
    let empty = dir.join("enforcement-empty");
    std::fs::create_dir_all(&empty)?;
    for round in 0..rounds {
        for step in 0..2 {
            let enforce = (round + step) % 2 == 1;
            let config = if enforce { &enforcing } else { &plain };
            let mut agent = BenchAgent::start(binary, config, listen, AgentMode::Full)?;
            if enforce {
                agent.wait_for_log(
                    "kernel exec allowlists: 1 workload(s)",
                    Duration::from_secs(30),
                )?;
            }
            agent.settle(Duration::from_secs(20));
            let context = Context {
                workload,
                python: Path::new("python3"),
                scripts: &empty,
                dataset: &empty,
                tls: None,
                plain: None,
                small_file: &empty,
                redis: Some(redis),
                model_dir: &empty,
                sizes,
                agent: Some(&agent),
            };
            for entry in &mut result.loops {
                let measured = cases::run(entry.case, &context).with_context(|| {
                    format!(
                        "{} ({})",
                        entry.case.name(),
                        if enforce { "enforcing" } else { "plain" }
                    )
                })?;
                let (walls, cost) = if enforce {
                    (&mut entry.enforcing_wall_ns, &mut entry.enforcing_cost)
                } else {
                    (&mut entry.plain_wall_ns, &mut entry.plain_cost)
                };
                walls.push(measured.sample.wall_ns as f64);
                if let Some(kernel) = measured.kernel {
                    cost.merge(&kernel);
                }
                println!(
                    "bench: enforcement round {}/{rounds} {:<9} {:<20} wall {:.3} s",
                    round + 1,
                    if enforce { "enforcing" } else { "plain" },
                    entry.case.name(),
                    measured.sample.wall_ns as f64 / 1e9
                );
            }
            agent.stop()?;
        }
    }
    let (victims, latencies) = reaction_latency(binary, dir, &truth)?;
    result.victims = victims;
    result.latencies_us = latencies;
    Ok(result)
}

/// Kills a copy of /bin/true at exec `VICTIMS` times and reads the kernel's
/// exec and exit stamps of each victim from the events file.
fn reaction_latency(binary: &Path, dir: &Path, truth: &Path) -> anyhow::Result<(usize, Vec<f64>)> {
    let victim = dir.join("aiwatch-bench-victim");
    std::fs::copy(truth, &victim).context("copying /bin/true")?;
    let events = dir.join("enforcement-events.jsonl");
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let policy = format!(
        "rules:\n  - id: bench.victim\n    severity: high\n    action: kill\n    when:\n      kind: exec\n      process.exe: {}\n",
        victim.display()
    );
    let config = write_config(
        dir,
        "enforcement-latency",
        listen,
        Some(&events),
        Some(&policy),
    )?;
    let mut agent = BenchAgent::start(binary, &config, listen, AgentMode::Full)?;
    agent.wait_for_log(
        "kernel enforcement: 1 executables killed at exec",
        Duration::from_secs(30),
    )?;
    let mut pids = Vec::with_capacity(VICTIMS);
    for _ in 0..VICTIMS {
        let mut child = Command::new(&victim)
            .spawn()
            .context("starting the victim")?;
        pids.push(child.id());
        let status = child.wait()?;
        if std::os::unix::process::ExitStatusExt::signal(&status) != Some(libc::SIGKILL) {
            bail!("the victim was not killed at exec: {status}");
        }
    }
    agent.drain(Duration::from_secs(1), Duration::from_secs(60))?;
    agent.stop()?;
    let text = std::fs::read_to_string(&events)
        .with_context(|| format!("reading {}", events.display()))?;
    Ok((VICTIMS, latencies(&text, &pids)))
}

/// Exit `ktime_ns` minus killed exec `ktime_ns` per pid, in microseconds.
fn latencies(events: &str, pids: &[u32]) -> Vec<f64> {
    let mut killed = std::collections::HashMap::new();
    let mut exited = std::collections::HashMap::new();
    for line in events.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let pid = event["process"]["pid"].as_u64().unwrap_or(0) as u32;
        if !pids.contains(&pid) {
            continue;
        }
        let Some(time) = event["ktime_ns"].as_u64() else {
            continue;
        };
        match event["kind"].as_str() {
            Some("exec") if event["kernel_action"] == "killed" => {
                killed.insert(pid, time);
            }
            Some("exit") => {
                exited.insert(pid, time);
            }
            _ => {}
        }
    }
    pids.iter()
        .filter_map(|pid| {
            let (exec, exit) = (killed.get(pid)?, exited.get(pid)?);
            Some(exit.saturating_sub(*exec) as f64 / 1e3)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_pair_each_killed_exec_with_its_exit() {
        let events = "\
{\"kind\":\"exec\",\"ktime_ns\":1000,\"kernel_action\":\"killed\",\"process\":{\"pid\":7}}\n\
{\"kind\":\"exit\",\"ktime_ns\":51000,\"process\":{\"pid\":7}}\n\
{\"kind\":\"exec\",\"ktime_ns\":2000,\"process\":{\"pid\":8}}\n\
{\"kind\":\"exit\",\"ktime_ns\":9000,\"process\":{\"pid\":8}}\n\
{\"kind\":\"exit\",\"ktime_ns\":9000,\"process\":{\"pid\":9}}\n";
        assert_eq!(latencies(events, &[7, 8, 9]), vec![50.0]);
    }

    #[test]
    fn the_allow_all_policy_names_both_lists() {
        let text = allow_all(Path::new("/opt/loop"), Path::new("/usr/bin/true"));
        assert!(text.contains("process.exe: [/opt/loop, /usr/bin/true]"));
        assert!(text.contains("workload.name: aiwatch-bench"));
        assert!(text.contains("cidr: [127.0.0.0/8, '::1/128']"));
    }
}
