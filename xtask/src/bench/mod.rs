//! `cargo xtask bench`: what aiwatch costs the host.
//!
//! Builds the agent and the benchmark loops in release, then runs every case
//! in three configurations, alternated within each round so that slow drift
//! of a shared machine hits them alike:
//!
//! 1. no agent;
//! 2. the floor: `aiwatch run --bench-floor`, the same hooks attached with
//!    every program reduced to `return 0` (what merely hooking costs);
//! 3. the agent with its default configuration (every family on, events
//!    off, alerts to a temp file), plus one declared workload so that a
//!    loop can be tracked.
//!
//! Medians over the rounds are printed as a table against the targets, and
//! written with the machine, kernel, date and load into the generated block
//! of `docs/benchmarks.md`. The criterion benchmarks of the rule engine and
//! pipeline run last. Needs root (the agent loads eBPF programs).

pub(crate) mod agent;
pub(crate) mod cases;
mod descriptors;
mod enforcement;
mod kernel_cost;
mod memory;
mod peers;
pub(crate) mod report;
mod rules;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::Instant,
};

use anyhow::{bail, Context as _};

use self::{
    agent::{AgentMode, BenchAgent},
    cases::{Case, Context, Redis, Sizes, TlsServer},
    kernel_cost::{CaseCost, StatsSwitch},
    report::{Config, Results, RunInfo},
};
use crate::{
    debian::{self, Apt},
    privilege::is_root,
    provision::{self, Scope},
    python,
    workspace::{find_on_path, probe_output, run_step, Workspace, AGENT_PACKAGE},
};

/// The package and binary of the benchmark loops.
const WORKLOAD_PACKAGE: &str = "aiwatch-bench-workloads";
pub(crate) const WORKLOAD_BINARY: &str = "aiwatch-bench-workload";
/// What the redis case needs.
const REDIS_PACKAGES: &[&str] = &["redis-server", "redis-tools"];
/// What the TLS case needs: the certificate is made with the openssl tool.
pub(crate) const TLS_PACKAGES: &[&str] = &["openssl"];
/// The Python loops, relative to the workspace root.
pub(crate) const PYTHON_WORKLOADS: &str = "xtask/bench-workloads/python";

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Rounds; each runs every case in the three configurations.
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Runs of each case per configuration and round; the best one counts
    /// (interference from other work on the machine only ever adds time).
    /// The loops under a second run at least 5 times.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// A tenth of the iterations, to try the harness out.
    #[arg(long)]
    quick: bool,
    /// Only these cases (open-untracked, open-tracked, data-loader,
    /// fork-exec, tcp-connect, redis-get, udp-send, resolver, tls-request,
    /// tls-request-untracked, plain-request),
    /// comma-separated.
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// Skip the criterion rule-engine benchmarks.
    #[arg(long)]
    skip_rules: bool,
    /// Write the results into the generated block of docs/benchmarks.md
    /// (refused on a tree with uncommitted changes: the block names the
    /// commit it measured).
    #[arg(long, conflicts_with = "no_write")]
    record: bool,
    /// Only print the markdown block (what happens without --record).
    #[arg(long)]
    no_write: bool,
    /// Exit non-zero when a target is missed.
    #[arg(long)]
    strict: bool,
    /// Also measure the agent's RSS with 1,000 declared workloads.
    #[arg(long)]
    agent_memory: bool,
    /// Also measure enforcement: tracked exec and connect loops under the
    /// plain and an enforcing agent, and the exec kill's reaction latency.
    #[arg(long)]
    enforcement: bool,
    /// Also run the same loops under auditd (every exec, connect and open)
    /// and bpftrace (printing every exec and open), and print their costs
    /// beside aiwatch's.
    #[arg(long)]
    peers: bool,
    /// Run this aiwatch binary as the "agent" configuration instead of the
    /// fresh build (to compare builds; the floor always uses the fresh one).
    #[arg(long, value_name = "PATH")]
    agent_binary: Option<PathBuf>,
}

pub fn bench(workspace: &Workspace, options: &Options) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let commit = measured_commit(workspace, "bench", options.record)?;
    let cases = selected_cases(&options.cases)?;
    provision::setup(workspace, Scope::Run)?;
    let mut packages: Vec<&str> = REDIS_PACKAGES.to_vec();
    if cases.iter().any(|case| case.needs_tls_server()) {
        packages.extend(TLS_PACKAGES);
    }
    let missing = debian::missing(&packages);
    if !missing.is_empty() {
        Apt::default().install(&missing)?;
    }
    if options.peers {
        peers::provision()?;
    }
    build_release(workspace)?;
    let closed = descriptors::close_high().context("cannot list /proc/self/fd")?;
    if !closed.is_empty() {
        println!(
            "bench: closed {} inherited descriptor(s) numbered {} or more ({closed:?}), so that \
             the loops start with the descriptor table a service has",
            closed.len(),
            descriptors::EMBEDDED
        );
    }

    let release = workspace.target_dir.join("release");
    let floor_binary = release.join("aiwatch");
    let agent_binary = options
        .agent_binary
        .clone()
        .unwrap_or_else(|| floor_binary.clone());
    let workload = release.join(WORKLOAD_BINARY);
    let scripts = workspace.root.join(PYTHON_WORKLOADS);
    let python = if cases.iter().any(|case| case.needs_python()) {
        python::virtualenv(workspace)?.python()
    } else {
        PathBuf::from("python3")
    };
    let sizes = if options.quick {
        Sizes::QUICK
    } else {
        Sizes::FULL
    };
    let scratch = Scratch::create("bench")?;
    let small_file = cases::write_small_file(scratch.path())?;
    let redis_dir = scratch.path().join("redis");
    std::fs::create_dir_all(&redis_dir)?;
    let redis = Redis::start(
        &find_on_path("redis-server").context("redis-server is not installed")?,
        &find_on_path("redis-benchmark").context("redis-benchmark is not installed")?,
        &redis_dir,
    )?;
    let model_dir = scratch.path().join("inference");
    let dataset = scratch.path().join("dataset");
    if cases.contains(&Case::DataLoader) {
        cases::write_dataset(&dataset, sizes.samples)?;
    }
    let plain = if cases.contains(&Case::PlainRequest) {
        Some(cases::TlsServer::start_plain(&python, &scripts)?)
    } else {
        None
    };
    let tls = if cases.iter().any(|case| case.needs_tls_server()) {
        Some(TlsServer::start(
            &python,
            &scripts,
            &scratch.path().join("tls"),
        )?)
    } else {
        None
    };
    // What every case needs; each configuration adds its agent.
    let without_agent = Context {
        workload: &workload,
        python: &python,
        scripts: &scripts,
        dataset: &dataset,
        tls: tls.as_ref(),
        plain: plain.as_ref(),
        small_file: &small_file,
        redis: Some(&redis),
        model_dir: &model_dir,
        sizes,
        agent: None,
    };
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let config = agent::write_config(scratch.path(), listen)?;
    let load_before = load_average();
    let agents_before = other_agents();
    let mut results = Results::default();
    let mut kernel_costs: Vec<(Case, CaseCost)> = Vec::new();
    // Off for every timed run: the full agent's per-program costs come from
    // one more run of each case with the statistics on (below).
    let _stats_off = StatsSwitch::disable()?;
    let rounds = options.rounds.max(1);
    let repeat = options.repeat.max(1);
    for round in 0..rounds {
        // Rotate the order so that no configuration always runs first.
        for step in 0..Config::ALL.len() {
            let config_kind = Config::ALL[(round + step) % Config::ALL.len()];
            let agent = match config_kind {
                Config::NoAgent => None,
                Config::Floor => Some(BenchAgent::start(
                    &floor_binary,
                    &config,
                    listen,
                    AgentMode::Floor,
                )?),
                Config::Agent => Some(BenchAgent::start(
                    &agent_binary,
                    &config,
                    listen,
                    AgentMode::Full,
                )?),
            };
            if let Some(agent) = &agent {
                // Start-up work (the /proc seed, first scans) is not the cost
                // being measured.
                agent.settle(std::time::Duration::from_secs(20));
            }
            let context = Context {
                agent: agent.as_ref(),
                ..without_agent
            };
            for &case in &cases {
                let mut best: Option<cases::Sample> = None;
                for _ in 0..repeat.max(case.min_runs()) {
                    let measured = cases::run(case, &context)
                        .with_context(|| format!("{} with {}", case.name(), config_kind.name()))?;
                    let sample = measured.sample;
                    best = Some(match best {
                        Some(best) if !sample.better_than(&best, case) => best,
                        _ => sample,
                    });
                }
                if config_kind == Config::Agent {
                    // The kernel's own per-program cost, from an untimed run.
                    let _stats_on = StatsSwitch::enable()?;
                    let measured = cases::run(case, &context).with_context(|| {
                        format!(
                            "{} with {} (program statistics)",
                            case.name(),
                            config_kind.name()
                        )
                    })?;
                    if let Some(cost) = measured.kernel {
                        add_kernel_cost(&mut kernel_costs, case, &cost);
                    }
                }
                let Some(sample) = best else { continue };
                println!(
                    "bench: round {}/{rounds} {:<8} {:<15} wall {:.3} s cpu {:.3} s{}",
                    round + 1,
                    config_kind.name(),
                    case.name(),
                    sample.wall_ns as f64 / 1e9,
                    sample.cpu_ns as f64 / 1e9,
                    if case.is_throughput() {
                        format!(" {:.0} {}", sample.requests_per_sec, case.unit())
                    } else {
                        String::new()
                    },
                );
                results.add(case, config_kind, sample);
            }
            if let Some(agent) = agent {
                agent.stop()?;
            }
        }
    }
    let enforcement = if options.enforcement {
        // Plain and enforcing agents alike, with the statistics on: the
        // comparison reads the kernel's per-program costs.
        let _stats_on = StatsSwitch::enable()?;
        let result = enforcement::measure(
            &agent_binary,
            &workload,
            scratch.path(),
            &redis,
            sizes,
            rounds,
        )?;
        println!("\n{}", result.markdown());
        Some(result)
    } else {
        None
    };
    let peers = if options.peers {
        Some(peers::measure(
            &cases,
            &without_agent,
            scratch.path(),
            rounds,
            repeat,
        )?)
    } else {
        None
    };
    drop(redis);
    drop(tls);
    let memory = if options.agent_memory {
        let result = memory::measure(&agent_binary, &workload, scratch.path())?;
        println!("\n{}", result.markdown());
        Some(result)
    } else {
        None
    };
    let load_after = load_average();
    let agents_after = other_agents();
    println!("\n{}", report::table(&results));
    println!("\n{}", report::agent_table(&results));
    let kernel: Vec<(&str, &CaseCost)> = kernel_costs
        .iter()
        .map(|(case, cost)| (case.name(), cost))
        .collect();
    if !kernel.is_empty() {
        println!("\n{}", kernel_cost::table(&kernel));
    }

    let rules = if options.skip_rules {
        Vec::new()
    } else {
        rules::run(workspace)?
    };
    if !rules.is_empty() {
        println!("\n{}", report::rules_table(&rules));
    }
    let info = RunInfo {
        date: command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        machine: machine(),
        kernel: command_line("uname", &["-r"]),
        commit: commit.describe(),
        rounds,
        repeat,
        sizes,
        load_before,
        load_after,
        other_agents: (agents_before, agents_after),
        minutes: started.elapsed().as_secs_f64() / 60.0,
    };
    let mut block = report::markdown(&info, &results, &kernel, &rules);
    if let Some(memory) = &memory {
        block.push('\n');
        block.push_str(&memory.markdown());
    }
    if let Some(enforcement) = &enforcement {
        block.push('\n');
        block.push_str(&enforcement.markdown());
    }
    if let Some(peers) = &peers {
        let table = peers.markdown(|case| results.agent_over_none(case));
        println!("\n{table}");
        block.push('\n');
        block.push_str(&table);
    }
    if !options.record {
        println!("\n{block}");
    } else {
        let path = workspace.root.join("docs/benchmarks.md");
        let document = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| "# Benchmarks\n\nWritten by `cargo xtask bench`.\n".to_string());
        std::fs::write(&path, report::splice(&document, &block))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("bench: results written into {}", path.display());
    }
    let mut missed: Vec<&str> = results.missed().iter().map(|case| case.name()).collect();
    if memory.is_some_and(|memory| !memory.met()) {
        missed.push("agent-memory");
    }
    if options.strict && !missed.is_empty() {
        let names = missed;
        eprintln!("bench: targets missed: {}", names.join(", "));
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// What a measuring command (`cargo xtask TASK`) checks first: root, which
/// the agent needs to load its programs, and, when it is to `record` its
/// results, a clean tree; returns the commit measured.
pub(crate) fn measured_commit(
    workspace: &Workspace,
    task: &str,
    record: bool,
) -> anyhow::Result<Commit> {
    if !is_root() {
        bail!("cargo xtask {task} needs root: the agent loads eBPF programs");
    }
    let commit = commit(&workspace.root)?;
    if record && commit.dirty {
        bail!(
            "--record needs a clean tree: the recorded run names the commit it measured, \
             and {} has uncommitted changes",
            workspace.root.display()
        );
    }
    Ok(commit)
}

/// `cargo build --release` of the agent and the benchmark loops.
pub(crate) fn build_release(workspace: &Workspace) -> anyhow::Result<()> {
    let mut build = workspace.cargo();
    build.args([
        "build",
        "--release",
        "--package",
        AGENT_PACKAGE,
        "--package",
    ]);
    build.arg(WORKLOAD_PACKAGE);
    run_step(
        &mut build,
        "building the agent and the benchmark loops (release)",
    )
}

/// Builds the benchmark loops alone, for a run given its agent binary.
pub(crate) fn build_release_loops(workspace: &Workspace) -> anyhow::Result<()> {
    let mut build = workspace.cargo();
    build.args(["build", "--release", "--package", WORKLOAD_PACKAGE]);
    run_step(&mut build, "building the benchmark loops (release)")
}

/// Adds one loop's kernel cost to its case's.
fn add_kernel_cost(costs: &mut Vec<(Case, CaseCost)>, case: Case, cost: &CaseCost) {
    match costs.iter_mut().find(|(c, _)| *c == case) {
        Some((_, total)) => total.merge(cost),
        None => costs.push((case, cost.clone())),
    }
}

fn selected_cases(names: &[String]) -> anyhow::Result<Vec<Case>> {
    if names.is_empty() {
        return Ok(Case::ALL.to_vec());
    }
    names
        .iter()
        .map(|name| {
            Case::parse(name).with_context(|| {
                let known: Vec<_> = Case::ALL.iter().map(|c| c.name()).collect();
                format!("unknown case {name:?}; known: {}", known.join(", "))
            })
        })
        .collect()
}

/// A private folder under the temp dir, removed on drop.
pub(crate) struct Scratch(PathBuf);

impl Scratch {
    /// `<temp>/aiwatch-<task>-<pid>`.
    pub(crate) fn create(task: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("aiwatch-{task}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch(dir))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// aiwatch processes running (other people's tests' agents, when this one
/// is not): their programs run on the benchmark's syscalls too.
pub(crate) fn other_agents() -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter(|entry| {
            std::fs::read_to_string(entry.path().join("comm"))
                .is_ok_and(|comm| comm.trim() == "aiwatch")
        })
        .count()
}

pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".into())
}

pub(crate) fn command_line(program: &str, args: &[&str]) -> String {
    probe_output(Command::new(program).args(args))
        .map(|out| out.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// CPU model, core count and memory.
pub(crate) fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, name)| name.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    format!("{model}, {cores} cores, {memory_gib:.0} GiB")
}

/// The commit of the measured tree.
pub(crate) struct Commit {
    pub(crate) hash: String,
    /// Tracked files differ from the commit.
    pub(crate) dirty: bool,
}

impl Commit {
    pub(crate) fn describe(&self) -> String {
        if self.dirty {
            format!("{} (with uncommitted changes)", self.hash)
        } else {
            self.hash.clone()
        }
    }
}

pub(crate) fn commit(root: &Path) -> anyhow::Result<Commit> {
    let root = root.to_string_lossy();
    let hash = probe_output(Command::new("git").args(["-C", &root, "rev-parse", "HEAD"]))
        .map(|out| out.trim().to_string())
        .filter(|hash| !hash.is_empty())
        .with_context(|| format!("{root} is not a git checkout: a run must name its commit"))?;
    let status = probe_output(Command::new("git").args([
        "-C",
        &root,
        "status",
        "--porcelain",
        "--untracked-files=no",
    ]))
    .with_context(|| format!("git status failed in {root}"))?;
    Ok(Commit {
        hash,
        dirty: !status.trim().is_empty(),
    })
}
