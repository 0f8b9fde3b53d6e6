//! Command-line entry points the `aiwatch` binary wires into subcommands:
//! `policy check`, `policy test` and `replay`. They need neither root nor a
//! kernel: `replay` reads events as JSON lines (the `--events` format).

use std::io::{self, BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use super::engine::PolicyEngine;
use super::kernel_plan;
use super::set::PolicySet;
use super::testing::run_tests;
use crate::alert::Alert;
use crate::event::{Event, WallTime};

/// `aiwatch policy check PATH...`: loads the files (with the default pack
/// unless disabled) and prints every error as `file:line:column: sentence`
/// on stderr. Exit 0 when the set is valid. For every rule with a `kill` or
/// `deny` action it says whether the kernel carries it out, and why not.
pub fn check_command(paths: &[PathBuf], with_default_pack: bool) -> ExitCode {
    match PolicySet::load(paths, with_default_pack) {
        Ok(set) => {
            println!(
                "ok: {} rules from {} files",
                set.rule_count(),
                set.files().len()
            );
            for placed in kernel_plan::plan(&set) {
                let rule = placed.rule;
                let mode = rule
                    .enforcement
                    .map_or("the agent's enforcement.mode", |mode| mode.as_str());
                println!(
                    "{} ({}, {mode}): {}",
                    rule.id,
                    rule.action.as_str(),
                    placed.placement.describe()
                );
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{} error(s)", errors.len());
            ExitCode::FAILURE
        }
    }
}

/// `aiwatch policy test PATH...`: runs the `tests:` of the given files (of
/// every loaded file when no path is given) and prints one line per test.
/// Exit non-zero when a file is invalid or a test fails.
pub fn test_command(paths: &[PathBuf], with_default_pack: bool) -> ExitCode {
    let set = match PolicySet::load(paths, with_default_pack) {
        Ok(set) => Arc::new(set),
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let include = |file: &str| paths.is_empty() || !file.starts_with(super::set::BUILTIN_PREFIX);
    let outcomes = run_tests(&set, include);
    let mut failed = 0;
    for outcome in &outcomes {
        if outcome.passed() {
            println!("ok   {}:{}: {}", outcome.file, outcome.line, outcome.name);
        } else {
            failed += 1;
            println!(
                "FAIL {}:{}: {}: expected {:?}, got {:?}",
                outcome.file, outcome.line, outcome.name, outcome.expected, outcome.got
            );
        }
    }
    println!("{} passed, {} failed", outcomes.len() - failed, failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    pub events: u64,
    /// Lines that were not valid events (reported on stderr, skipped).
    pub bad_lines: u64,
    pub alerts: u64,
}

/// Replays events (one JSON object per line) through `engine` and any
/// `extra` detectors (anomaly detection), writing each alert as a JSON line.
/// Bad lines are reported on stderr with their line number and skipped.
pub fn replay<R: BufRead, W: Write>(
    engine: &mut PolicyEngine,
    input: R,
    mut output: W,
    extra: &mut dyn FnMut(&Event) -> Vec<Alert>,
) -> io::Result<ReplayStats> {
    let mut stats = ReplayStats::default();
    let mut last_ktime_ns = 0;
    let redactor = crate::enrich::redact::Redactor::default();
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let event: Event = match serde_json::from_str(&line) {
            Ok(event) => event,
            Err(error) => {
                stats.bad_lines += 1;
                eprintln!("line {}: not a valid event: {error}", index + 1);
                continue;
            }
        };
        let mut event = with_replay_clock(event, &mut last_ktime_ns);
        stats.events += 1;
        // Events written by any version, or by hand, are redacted as the
        // live pipeline would have.
        redactor.redact_event(&mut event);
        let mut alerts = engine.evaluate(&event);
        alerts.extend(extra(&event));
        for alert in alerts {
            stats.alerts += 1;
            serde_json::to_writer(&mut output, &alert)?;
            output.write_all(b"\n")?;
        }
    }
    output.flush()?;
    Ok(stats)
}

/// Gives a hand-written event without `ktime_ns` one: its `time` as
/// nanoseconds since the Unix epoch when it has a valid one, else 1 ms after
/// the previous event, so windows and sequences still see events in order.
fn with_replay_clock(mut event: Event, last_ktime_ns: &mut u64) -> Event {
    if event.ktime_ns == 0 {
        event.ktime_ns = event
            .time
            .and_then(WallTime::unix_nanos)
            .unwrap_or(*last_ktime_ns + 1_000_000);
    }
    *last_ktime_ns = event.ktime_ns;
    event
}

/// `aiwatch replay --policy PATH... [EVENTS]`: reads events from the file
/// (or stdin when `None` or `-`) and writes alerts to stdout.
pub fn replay_command(
    paths: &[PathBuf],
    with_default_pack: bool,
    events: Option<&Path>,
) -> ExitCode {
    let set = match PolicySet::load(paths, with_default_pack) {
        Ok(set) => Arc::new(set),
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let mut engine = PolicyEngine::new(set);
    let stdout = io::stdout();
    let output = BufWriter::new(stdout.lock());
    let result = match events {
        Some(path) if path != Path::new("-") => match std::fs::File::open(path) {
            Ok(file) => replay(&mut engine, io::BufReader::new(file), output, &mut |_| {
                Vec::new()
            }),
            Err(error) => {
                eprintln!("{}: cannot open: {error}", path.display());
                return ExitCode::FAILURE;
            }
        },
        _ => replay(&mut engine, io::stdin().lock(), output, &mut |_| Vec::new()),
    };
    match result {
        Ok(stats) => {
            eprintln!(
                "{} events, {} alerts, {} bad lines",
                stats.events, stats.alerts, stats.bad_lines
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("replay failed: {error}");
            ExitCode::FAILURE
        }
    }
}
