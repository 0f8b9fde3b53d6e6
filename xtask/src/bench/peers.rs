//! `--peers`: what two other tools cost on the same loops, in the same run.
//!
//! - **auditd** with rules equivalent to what aiwatch watches by default:
//!   every exec, every connect, and every successful open. auditd cannot
//!   match a file name's extension or base name, so to see a
//!   `.safetensors` or an `id_rsa` opened anywhere it must record every
//!   open; aiwatch filters those in the kernel.
//! - **bpftrace** printing every exec and every open (`execve` and
//!   `openat` entries) to a file, the usual one-liner.
//!
//! Each round runs every case with no tool, with auditd and with bpftrace,
//! the best of `repeat` runs each; ratios are per round against that
//! round's no-tool run, and the table puts aiwatch's agent/none from the
//! main run beside them. Both are Debian packages, installed on first use.

use std::{
    fmt::Write as _,
    io::{BufRead as _, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::Duration,
};

use anyhow::{bail, Context as _};

use super::{
    cases::{self, Case, Context, Sample},
    report::median,
};
use crate::{
    debian::{self, Apt},
    workspace::find_on_path,
};

/// The packages the peers come in.
pub const PACKAGES: &[&str] = &["auditd", "bpftrace"];

/// auditd's rules: every exec, connect and successful open, 64-bit calls
/// (the loops are 64-bit).
const AUDIT_RULES: &[&str] = &[
    "-a always,exit -F arch=b64 -S execve,execveat -k aiwatch-bench-exec",
    "-a always,exit -F arch=b64 -S connect -k aiwatch-bench-connect",
    "-a always,exit -F arch=b64 -S open,openat,openat2 -F success=1 -k aiwatch-bench-open",
];

/// bpftrace's program: a line per exec and per open.
const BPFTRACE_PROGRAM: &str = "tracepoint:syscalls:sys_enter_execve { printf(\"exec %d %s\\n\", pid, str(args->filename)); }\n\
tracepoint:syscalls:sys_enter_openat { printf(\"open %d %s\\n\", pid, str(args->filename)); }\n";

/// How long a peer may take to start watching.
const START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Peer {
    None,
    Auditd,
    Bpftrace,
}

impl Peer {
    const ALL: [Peer; 3] = [Peer::None, Peer::Auditd, Peer::Bpftrace];

    fn name(self) -> &'static str {
        match self {
            Peer::None => "no tool",
            Peer::Auditd => "auditd",
            Peer::Bpftrace => "bpftrace",
        }
    }
}

/// A peer watching the host until dropped.
enum Running {
    /// auditd, and the kernel audit's `enabled` flag before it (restored).
    Auditd(Child, String),
    Bpftrace(Child),
}

impl Running {
    fn start(peer: Peer, scratch: &Path) -> anyhow::Result<Option<Running>> {
        match peer {
            Peer::None => Ok(None),
            Peer::Auditd => {
                refuse_beside_an_audit_daemon()?;
                let enabled = audit_status("enabled").unwrap_or_else(|| "0".to_string());
                let child = Command::new("auditd")
                    .args(["-n", "-s", "nochange"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .context("cannot start auditd")?;
                let running = Running::Auditd(child, enabled);
                wait_until_auditd_listens()?;
                for rule in AUDIT_RULES {
                    let args: Vec<&str> = rule.split_whitespace().collect();
                    run("auditctl", &args)?;
                }
                run("auditctl", &["-e", "1"])?;
                Ok(Some(running))
            }
            Peer::Bpftrace => {
                let script = scratch.join("peers.bt");
                std::fs::write(&script, BPFTRACE_PROGRAM)
                    .with_context(|| format!("writing {}", script.display()))?;
                let output = scratch.join("bpftrace.out");
                let _ = std::fs::remove_file(&output);
                let mut child = Command::new("bpftrace")
                    .arg("-o")
                    .arg(&output)
                    .arg(&script)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .context("cannot start bpftrace")?;
                // bpftrace writes "Attaching N probes..." where its prints
                // go (the `-o` file) once its programs are loaded; its
                // complaints go to stderr.
                let stderr = child.stderr.take().context("bpftrace's stderr")?;
                let (tx, rx) = mpsc::channel();
                thread::spawn(move || {
                    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                        let _ = tx.send(line);
                    }
                });
                let mut running = Running::Bpftrace(child);
                let deadline = std::time::Instant::now() + START_TIMEOUT;
                loop {
                    let said = std::fs::read_to_string(&output).unwrap_or_default();
                    if said.contains("Attaching") {
                        break;
                    }
                    let exited = match &mut running {
                        Running::Bpftrace(child) => child.try_wait()?.is_some(),
                        Running::Auditd(..) => false,
                    };
                    if exited || std::time::Instant::now() > deadline {
                        let complaints: Vec<String> = rx.try_iter().collect();
                        bail!(
                            "bpftrace did not attach within {} s{}: {}",
                            START_TIMEOUT.as_secs(),
                            if exited { " (it exited)" } else { "" },
                            complaints.join(" / ")
                        );
                    }
                    thread::sleep(Duration::from_millis(100));
                }
                // Programs load before the message; give the attach a moment.
                thread::sleep(Duration::from_secs(1));
                Ok(Some(running))
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        match self {
            Running::Auditd(child, enabled) => {
                // Only our rules go: `-d` with the text each was added with.
                for rule in AUDIT_RULES {
                    let args: Vec<&str> = rule
                        .split_whitespace()
                        .map(|word| if word == "-a" { "-d" } else { word })
                        .collect();
                    let _ = run("auditctl", &args);
                }
                stop(child);
                let _ = run("auditctl", &["-e", enabled]);
            }
            Running::Bpftrace(child) => stop(child),
        }
    }
}

/// SIGTERM, then SIGKILL after 10 s.
fn stop(child: &mut Child) {
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    for _ in 0..100 {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !output.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// One field of `auditctl -s` (`enabled 1`, `pid 1234`).
fn audit_status(field: &str) -> Option<String> {
    let status = Command::new("auditctl").arg("-s").output().ok()?;
    String::from_utf8_lossy(&status.stdout)
        .lines()
        .find_map(|line| {
            line.strip_prefix(field)?
                .strip_prefix(' ')
                .map(str::to_string)
        })
}

/// auditd registers itself as the audit daemon: `auditctl -s` names its pid.
fn wait_until_auditd_listens() -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    while std::time::Instant::now() < deadline {
        if audit_status("pid").is_some_and(|pid| pid.trim() != "0") {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(200));
    }
    bail!(
        "auditd did not register with the kernel's audit within {} s",
        START_TIMEOUT.as_secs()
    )
}

/// Installs what is missing, and checks the tools are there.
pub fn provision() -> anyhow::Result<()> {
    let missing = debian::missing(PACKAGES);
    if !missing.is_empty() {
        Apt::default().install(&missing)?;
    }
    for tool in ["auditd", "auditctl", "bpftrace"] {
        if find_on_path(tool).is_none() {
            bail!(
                "{tool} is not on PATH after installing {}",
                PACKAGES.join(", ")
            );
        }
    }
    // Said before the main rounds rather than after them.
    refuse_beside_an_audit_daemon()
}

/// The kernel takes one audit daemon; the host's own, and its rules, are
/// not ours to stop or delete.
fn refuse_beside_an_audit_daemon() -> anyhow::Result<()> {
    if let Some(pid) = audit_status("pid").filter(|pid| pid.trim() != "0") {
        bail!(
            "an audit daemon (pid {}) already runs on this host; --peers needs the kernel's \
             audit to itself: stop it, or run the bench without --peers",
            pid.trim()
        );
    }
    Ok(())
}

/// The peers' samples: per case, per peer, one best sample per round.
pub struct PeerResults {
    samples: Vec<(Case, [Vec<Sample>; 3])>,
    rounds: usize,
}

/// Runs `cases` under no tool, auditd and bpftrace for `rounds` rounds.
pub fn measure(
    cases: &[Case],
    context: &Context<'_>,
    scratch: &Path,
    rounds: usize,
    repeat: usize,
) -> anyhow::Result<PeerResults> {
    let mut samples: Vec<(Case, [Vec<Sample>; 3])> = cases
        .iter()
        .map(|case| (*case, Default::default()))
        .collect();
    for round in 0..rounds {
        for step in 0..Peer::ALL.len() {
            let peer = Peer::ALL[(round + step) % Peer::ALL.len()];
            let running = Running::start(peer, scratch)
                .with_context(|| format!("starting {}", peer.name()))?;
            for (case, by_peer) in samples.iter_mut() {
                let mut best: Option<Sample> = None;
                for _ in 0..repeat {
                    let sample = cases::run(*case, context)
                        .with_context(|| format!("{} with {}", case.name(), peer.name()))?
                        .sample;
                    best = Some(match best {
                        Some(best) if !sample.better_than(&best, *case) => best,
                        _ => sample,
                    });
                }
                if let Some(sample) = best {
                    println!(
                        "bench: peers round {}/{rounds} {:<8} {:<15} cpu {:.3} s",
                        round + 1,
                        peer.name(),
                        case.name(),
                        sample.cpu_ns as f64 / 1e9
                    );
                    by_peer[Peer::ALL.iter().position(|p| *p == peer).unwrap_or(0)].push(sample);
                }
            }
            drop(running);
        }
    }
    Ok(PeerResults { samples, rounds })
}

impl PeerResults {
    /// Median over the rounds of `peer`'s cost over no tool's, paired by
    /// round (for throughput cases, no tool's over the peer's, so that
    /// higher is always costlier).
    fn ratio(&self, case: Case, by_peer: &[Vec<Sample>; 3], peer: Peer) -> Option<f64> {
        let index = Peer::ALL.iter().position(|p| *p == peer)?;
        let metric = |s: &Sample| {
            if case.is_throughput() {
                s.requests_per_sec
            } else {
                s.cpu_ns as f64 / 1e9
            }
        };
        let ratios: Vec<f64> = by_peer[index]
            .iter()
            .zip(&by_peer[0])
            .filter_map(|(with, without)| {
                let (with, without) = (metric(with), metric(without));
                match case.is_throughput() {
                    true if with > 0.0 => Some(without / with),
                    false if without > 0.0 => Some(with / without),
                    _ => None,
                }
            })
            .collect();
        median(ratios)
    }

    /// The markdown table, with aiwatch's ratio for each case beside.
    pub fn markdown(&self, aiwatch: impl Fn(Case) -> Option<f64>) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Peers in the same run ({} rounds; `--peers`, `xtask/src/bench/peers.rs`): each tool's cost over no tool, the loop's CPU time (for redis and the data loader, throughput no tool / tool), medians of the per-round ratios. auditd records every exec, connect and successful open (it cannot match a file's extension, so it must record every open to see a model or a key opened anywhere); bpftrace prints every execve and openat.\n",
            self.rounds
        );
        let _ = writeln!(out, "| case | aiwatch | auditd | bpftrace |");
        let _ = writeln!(out, "| --- | ---: | ---: | ---: |");
        let cell = |value: Option<f64>| value.map_or("—".to_string(), |v| format!("{v:.2}×"));
        for (case, by_peer) in &self.samples {
            let aiwatch = aiwatch(*case).map(|ratio| {
                // The main table gives throughput as agent/none: invert it.
                if case.is_throughput() && ratio > 0.0 {
                    1.0 / ratio
                } else {
                    ratio
                }
            });
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                case.name(),
                cell(aiwatch),
                cell(self.ratio(*case, by_peer, Peer::Auditd)),
                cell(self.ratio(*case, by_peer, Peer::Bpftrace)),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(seconds: f64) -> Sample {
        Sample {
            cpu_ns: (seconds * 1e9) as u64,
            ..Sample::default()
        }
    }

    fn rps(value: f64) -> Sample {
        Sample {
            requests_per_sec: value,
            ..Sample::default()
        }
    }

    #[test]
    fn ratios_pair_rounds_and_read_higher_as_costlier() {
        let results = PeerResults {
            samples: vec![
                (
                    Case::OpenUntracked,
                    [
                        vec![cpu(1.0), cpu(2.0), cpu(1.0)],
                        vec![cpu(12.0), cpu(26.0), cpu(13.0)],
                        vec![cpu(3.0), cpu(8.0), cpu(4.0)],
                    ],
                ),
                (
                    Case::Redis,
                    [vec![rps(100.0)], vec![rps(50.0)], vec![rps(80.0)]],
                ),
            ],
            rounds: 3,
        };
        let table = results.markdown(|case| match case {
            Case::OpenUntracked => Some(1.4),
            // agent/none of a throughput: 0.8 of the requests, 1.25× the cost.
            Case::Redis => Some(0.8),
            _ => None,
        });
        // Rounds 12, 13 and 13: median 13; bpftrace 3, 4 and 4.
        assert!(
            table.contains("| open-untracked | 1.40× | 13.00× | 4.00× |"),
            "{table}"
        );
        assert!(
            table.contains("| redis-get | 1.25× | 2.00× | 1.25× |"),
            "{table}"
        );
    }

    #[test]
    fn a_case_without_samples_says_so() {
        let results = PeerResults {
            samples: vec![(Case::ForkExec, Default::default())],
            rounds: 1,
        };
        let table = results.markdown(|_| None);
        assert!(table.contains("| fork-exec | — | — | — |"), "{table}");
    }
}
