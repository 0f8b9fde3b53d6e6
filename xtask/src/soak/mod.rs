//! `cargo xtask soak`: does the agent stay flat and lose nothing silently
//! under a long mixed load?
//!
//! Builds the release agent and the bench's loops, starts the agent with
//! the default policy pack, its events and alerts in a temp folder and its
//! listener on a free loopback port, then runs the storms and the AI
//! workloads of [`loads`] for the given minutes while sampling the agent
//! every few seconds ([`sample`]) and following its events file
//! ([`events_file`]). Once the loads stop and the agent has drained, it
//! prints the samples and the verdict ([`verdict`]), and with `--record`
//! writes them into the generated block of `docs/reliability.md`. Exits
//! non-zero when the verdict fails. Needs root (the agent loads eBPF
//! programs).
//!
//! It owns the run's sequence; the loops, the agent handle and the host
//! descriptions are the bench's.

mod events_file;
mod loads;
mod report;
mod sample;
mod verdict;

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use self::{
    events_file::Follower,
    loads::{Inference, Tally},
    report::{RunInfo, Summary},
    verdict::{ExecAccount, KindAccount, Sample},
};
use crate::{
    bench::{
        self,
        agent::{config_text, series, AgentMode, BenchAgent},
        cases::{self, Context, TlsServer},
    },
    debian::{self, Apt},
    provision::{self, Scope},
    python,
    workspace::Workspace,
};

/// How long after the loads the last sample is taken, at least: past the
/// agent's folded-read interval (`file_access_interval_secs`, 10 s), after
/// which an exited process's last report is out and it must be gone.
const SETTLE: Duration = Duration::from_secs(15);

#[derive(Debug, clap::Args)]
pub struct Options {
    /// How long the loads run, in minutes.
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Seconds between two samples of the agent.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    sample_seconds: u64,
    /// Write the summary into the generated block of docs/reliability.md
    /// (refused on a tree with uncommitted changes: the block names the
    /// commit it measured).
    #[arg(long)]
    record: bool,
    /// Run this aiwatch binary instead of a fresh release build (which is
    /// then not built: CI gives the static one its image test built).
    #[arg(long, value_name = "PATH")]
    agent_binary: Option<PathBuf>,
}

pub fn soak(workspace: &Workspace, options: &Options) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    if options.minutes == 0 {
        bail!("--minutes must be at least 1");
    }
    let commit = bench::measured_commit(workspace, "soak", options.record)?;
    provision::setup(workspace, Scope::Run)?;
    let missing = debian::missing(bench::TLS_PACKAGES);
    if !missing.is_empty() {
        Apt::default().install(&missing)?;
    }
    let release = workspace.target_dir.join("release");
    let binary = match &options.agent_binary {
        Some(binary) => {
            if !binary.is_file() {
                bail!(
                    "--agent-binary {}: no such file (`cargo xtask image` builds the static agent, `cargo build -p aiwatch` the debug one)",
                    binary.display()
                );
            }
            bench::build_release_loops(workspace)?;
            binary.clone()
        }
        None => {
            bench::build_release(workspace)?;
            release.join("aiwatch")
        }
    };
    let python = python::virtualenv(workspace)?.python();
    let scripts = workspace.root.join(bench::PYTHON_WORKLOADS);

    let scratch = bench::Scratch::create("soak")?;
    let dir = scratch.path();
    let small_file = cases::write_small_file(dir)?;
    let dataset = dir.join("dataset");
    cases::write_dataset(&dataset, loads::SIZES.samples)?;
    let tls = TlsServer::start(&python, &scripts, &dir.join("tls"))?;
    let inference = Inference {
        python: python.clone(),
        script: loads::inference_script(&workspace.root),
        dir: dir.join("inference"),
    };
    let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let events_path = dir.join("events.jsonl");
    let alerts_path = dir.join("alerts.jsonl");
    let config = dir.join("config.yaml");
    let text = config_text(listen, Some(&events_path), &alerts_path, &dir.join("state"));
    std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;

    println!(
        "soak: provisioned and built in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let load_before = bench::load_average();
    let agents_before = bench::other_agents();
    let agent_started = Instant::now();
    let agent = BenchAgent::start(&binary, &config, listen, AgentMode::Full)?;
    println!(
        "soak: agent {} ready; loads for {} min, a sample every {} s",
        agent.pid(),
        options.minutes,
        options.sample_seconds
    );
    let context = Context {
        workload: &release.join(bench::WORKLOAD_BINARY),
        python: &python,
        scripts: &scripts,
        dataset: &dataset,
        tls: Some(&tls),
        plain: None,
        small_file: &small_file,
        redis: None,
        model_dir: &dataset,
        sizes: loads::SIZES,
        // The loops start at once rather than after the agent lists them
        // in its inventory: the soak's loads must not hang on the
        // inventory, which it judges on its own.
        agent: None,
    };
    let load_s = (options.minutes * 60) as f64;
    let warm_up_s = verdict::warm_up_s(load_s);
    let events = Follower::start(&events_path);
    let run = run_loads(
        &agent,
        &context,
        &inference,
        Duration::from_secs(options.minutes * 60),
        Duration::from_secs(options.sample_seconds),
        warm_up_s,
    );
    let Run {
        mut samples,
        tally,
        loads_started,
    } = run;

    // The loads' backlog, the last folded-read reports of their processes
    // (which come one interval after an exit), then one more sample and
    // the final counters; the sink flushes whenever its queue is empty.
    let loads_ended = Instant::now();
    if agent.alive() {
        agent.drain(Duration::from_secs(2), Duration::from_secs(120))?;
    }
    thread::sleep(SETTLE.saturating_sub(loads_ended.elapsed()));
    samples.push(sample::take(&agent, loads_started, false));
    print_row(&samples, warm_up_s);
    let final_text = agent.metrics_text().unwrap_or_default();
    thread::sleep(Duration::from_secs(3));
    let written = events.finish().context("reading the events file")?;
    let peak_kib = agent.memory_kib().map_or(0, |(_, peak)| peak);
    let warnings = agent
        .log_lines()
        .iter()
        .filter(|line| line.contains("WARN") || line.contains("ERROR"))
        .count();
    agent.stop()?;
    drop(tls);

    let kinds = kind_accounts(&final_text, &written.by_kind);
    let exec = ExecAccount {
        made: tally.execs_made(),
        written: written.execs_of(&tally.exec_parents),
        counted_lost: ["exec", "unknown"]
            .iter()
            .map(|kind| sample::total_where(&final_text, "aiwatch_events_lost_total", "kind", kind))
            .sum(),
    };
    let task_failures = sample::total(&final_text, "aiwatch_task_failures_total");
    let checks = vec![
        verdict::rss_check(&samples, load_s, warm_up_s),
        verdict::fds_flat(&samples, warm_up_s),
        verdict::alive_and_ready(&samples, task_failures),
        verdict::execs_accounted(exec),
        verdict::sink_accounted(&kinds, !written.missed_file && !final_text.is_empty()),
        verdict::inventory_live(&samples),
        verdict::loads_ran(tally.total_runs(), &tally.failures),
    ];
    let summary = Summary {
        info: RunInfo {
            date: bench::command_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            machine: bench::machine(),
            kernel: bench::command_line("uname", &["-r"]),
            commit: commit.describe(),
            sample_s: options.sample_seconds,
            load_before,
            load_after: bench::load_average(),
            other_agents: (agents_before, bench::other_agents()),
            wall_minutes: agent_started.elapsed().as_secs_f64() / 60.0,
        },
        load_s,
        warm_up_s,
        samples,
        tally,
        kinds,
        ringbuf_size: sample::total(&final_text, "aiwatch_ringbuf_size_bytes"),
        events_file: (
            written.by_kind.values().sum(),
            written.rotations,
            written.bad_lines,
        ),
        losses: sample::loss_lines(&final_text),
        peak_kib,
        warnings,
        alerts: line_count(&alerts_path),
        checks,
    };
    for failure in summary.tally.failures.iter().take(10) {
        eprintln!("soak: a load failed: {failure}");
    }
    let block = report::markdown(&summary);
    println!("\n{block}");
    if options.record {
        let path = workspace.root.join("docs/reliability.md");
        let document = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| "# Reliability\n\nWritten by `cargo xtask soak`.\n".to_string());
        let spliced = bench::report::splice_between(&document, &block, report::BEGIN, report::END);
        std::fs::write(&path, spliced).with_context(|| format!("writing {}", path.display()))?;
        println!("soak: results written into {}", path.display());
    }
    println!(
        "soak: {:.1} minutes from the agent's start to the verdict, {:.1} in all",
        summary.info.wall_minutes,
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(if summary.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What the load phase left.
struct Run {
    samples: Vec<Sample>,
    tally: Tally,
    loads_started: Instant,
}

/// Runs the two rotations for `length`, sampling the agent every `every`;
/// stops the loads early when the agent dies.
fn run_loads(
    agent: &BenchAgent,
    context: &Context<'_>,
    inference: &Inference,
    length: Duration,
    every: Duration,
    warm_up_s: f64,
) -> Run {
    let loads_started = Instant::now();
    let until = loads_started + length;
    let stop = AtomicBool::new(false);
    let mut samples = Vec::new();
    let tally = thread::scope(|scope| {
        let storms =
            scope.spawn(|| loads::rotate(&loads::STORMS, context, inference, until, &stop));
        let ai =
            scope.spawn(|| loads::rotate(&loads::AI_WORKLOADS, context, inference, until, &stop));
        let mut next_sample = loads_started + every;
        while Instant::now() < until {
            thread::sleep(Duration::from_millis(200));
            if Instant::now() >= next_sample {
                next_sample += every;
                let sample = sample::take(agent, loads_started, true);
                let dead = !sample.alive;
                samples.push(sample);
                print_row(&samples, warm_up_s);
                if dead {
                    eprintln!("soak: the agent is gone; stopping the loads");
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        let mut tally = storms.join().unwrap_or_default();
        tally.merge(ai.join().unwrap_or_default());
        tally
    });
    Run {
        samples,
        tally,
        loads_started,
    }
}

/// Prints the newest sample as a table row (the header with the first).
fn print_row(samples: &[Sample], warm_up_s: f64) {
    let Some((newest, before)) = samples.split_last() else {
        return;
    };
    if before.is_empty() {
        print!("{}", report::TABLE_HEADER);
    }
    println!("{}", report::row(newest, before.last(), warm_up_s));
}

/// Each kind's delivered, written and lost events.
fn kind_accounts(
    metrics: &str,
    written: &std::collections::HashMap<String, u64>,
) -> Vec<KindAccount> {
    let mut kinds: Vec<KindAccount> = series(metrics, "aiwatch_events_total")
        .filter_map(|(labels, value)| {
            let kind = sample::label(labels, "kind")?;
            Some(KindAccount {
                kind: kind.to_string(),
                delivered: value as u64,
                written: written.get(kind).copied().unwrap_or(0),
                ..KindAccount::default()
            })
        })
        .collect();
    for (labels, value) in series(metrics, "aiwatch_events_lost_total") {
        let (Some(stage), Some(kind)) = (
            sample::label(labels, "stage"),
            sample::label(labels, "kind"),
        ) else {
            continue;
        };
        if let Some(account) = kinds.iter_mut().find(|k| k.kind == kind) {
            if stage == "sink" {
                account.sink_lost += value as u64;
            } else {
                account.lost_before += value as u64;
            }
        }
    }
    kinds
}

fn line_count(path: &std::path::Path) -> u64 {
    std::fs::read(path).map_or(0, |bytes| {
        bytes.iter().filter(|&&byte| byte == b'\n').count() as u64
    })
}
