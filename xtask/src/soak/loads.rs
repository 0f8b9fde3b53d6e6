//! The loads a soak runs against the agent, in two rotations side by side
//! (the machine has two cores; the agent shares them):
//!
//! - the storms, native loops of the bench: fork + exec, opens of a file by
//!   an untracked and by a tracked process, loopback TCP connects;
//! - the AI workloads: the bench's TLS LLM request loop (tracked, and
//!   untracked to a path no LLM API has), its data loader (a Python
//!   map-style dataset, tracked), and an ONNX Runtime inference server
//!   (`tests/workloads/onnx_server.py`, discovered as a workload by the
//!   agent itself) started, queried and stopped, so workloads come and go.
//!
//! Each rotation starts its next run until the deadline; a run that fails
//! is counted with its error and the rotation goes on. The tracked loops
//! start at once: they do not wait for the agent to list them in its
//! inventory (which the verdict judges on its own).

use std::{
    fmt::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use crate::bench::{
    agent::http_get,
    cases::{self, Case, Context, Sizes},
};

/// One run's size per loop: a few seconds each on the 2-core machine.
pub const SIZES: Sizes = Sizes {
    opens: 20_000,
    execs: 200,
    connections: 500,
    redis_requests: 0,
    datagrams: 0,
    lookups: 0,
    samples: 2_000,
    tls_requests: 500,
    inferences: 1_000,
    rate_events: 10_000,
};
/// Predictions asked of each inference server.
const PREDICTIONS: u64 = 300;

/// One load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    /// A loop of the bench.
    Bench(Case),
    /// An ONNX Runtime inference server: started, queried, stopped.
    Inference,
}

/// The storms' rotation.
pub const STORMS: [Load; 4] = [
    Load::Bench(Case::ForkExec),
    Load::Bench(Case::OpenUntracked),
    Load::Bench(Case::OpenTracked),
    Load::Bench(Case::TcpConnect),
];
/// The AI workloads' rotation.
pub const AI_WORKLOADS: [Load; 4] = [
    Load::Bench(Case::TlsRequest),
    Load::Bench(Case::TlsRequestUntracked),
    Load::Bench(Case::DataLoader),
    Load::Inference,
];

impl Load {
    pub fn name(self) -> &'static str {
        match self {
            Load::Bench(case) => case.name(),
            Load::Inference => "onnx-inference",
        }
    }

    /// What one run does.
    pub fn describe(self) -> String {
        match self {
            Load::Bench(case) => case.describe(&SIZES),
            Load::Inference => format!(
                "an ONNX Runtime server (tests/workloads/onnx_server.py, the venv's \
                 onnxruntime) started, asked {PREDICTIONS} predictions over loopback HTTP \
                 and one child process, and stopped"
            ),
        }
    }

    /// What one run makes: execs, opens, connections, requests, samples.
    pub fn items(self) -> u64 {
        match self {
            Load::Bench(Case::ForkExec) => SIZES.execs,
            Load::Bench(Case::OpenUntracked | Case::OpenTracked) => SIZES.opens,
            Load::Bench(Case::TcpConnect) => SIZES.connections,
            Load::Bench(Case::TlsRequest | Case::TlsRequestUntracked) => SIZES.tls_requests,
            Load::Bench(Case::DataLoader) => SIZES.samples,
            Load::Bench(_) => 0,
            Load::Inference => PREDICTIONS,
        }
    }
}

/// What a rotation did.
#[derive(Debug, Default)]
pub struct Tally {
    /// Per load: runs completed and the seconds they took.
    pub runs: Vec<(Load, u64, f64)>,
    /// Errors of the runs that failed, with their load's name.
    pub failures: Vec<String>,
    /// Pids of the fork-exec loops: the parents of the storm's execs.
    pub exec_parents: Vec<u32>,
}

impl Tally {
    fn add(&mut self, load: Load, runs: u64, seconds: f64) {
        match self.runs.iter_mut().find(|(l, _, _)| *l == load) {
            Some((_, total_runs, total_seconds)) => {
                *total_runs += runs;
                *total_seconds += seconds;
            }
            None => self.runs.push((load, runs, seconds)),
        }
    }

    pub fn merge(&mut self, other: Tally) {
        for (load, runs, seconds) in other.runs {
            self.add(load, runs, seconds);
        }
        self.failures.extend(other.failures);
        self.exec_parents.extend(other.exec_parents);
    }

    pub fn total_runs(&self) -> u64 {
        self.runs.iter().map(|(_, runs, _)| runs).sum()
    }

    /// Execs the storm made (each completed run made all of its own).
    pub fn execs_made(&self) -> u64 {
        self.runs
            .iter()
            .filter(|(load, _, _)| *load == Load::Bench(Case::ForkExec))
            .map(|(load, runs, _)| runs * load.items())
            .sum()
    }
}

/// What the inference load needs.
pub struct Inference {
    pub python: PathBuf,
    /// `tests/workloads/onnx_server.py`.
    pub script: PathBuf,
    /// Where the server writes its model.
    pub dir: PathBuf,
}

/// Runs `loads` in turn until `until` or until `stop` is set.
pub fn rotate(
    loads: &[Load],
    context: &Context<'_>,
    inference: &Inference,
    until: Instant,
    stop: &AtomicBool,
) -> Tally {
    let mut tally = Tally::default();
    for &load in loads.iter().cycle() {
        if Instant::now() >= until || stop.load(Ordering::Relaxed) {
            break;
        }
        let started = Instant::now();
        let outcome = match load {
            Load::Bench(case) => run_case(case, context, &mut tally.exec_parents),
            Load::Inference => inference.run(),
        };
        match outcome {
            Ok(()) => tally.add(load, 1, started.elapsed().as_secs_f64()),
            Err(error) => {
                tally.failures.push(format!("{}: {error:#}", load.name()));
                // A load that fails at once must not spin.
                thread::sleep(Duration::from_secs(1));
            }
        }
    }
    tally
}

fn run_case(case: Case, context: &Context<'_>, exec_parents: &mut Vec<u32>) -> anyhow::Result<()> {
    let workload = cases::start_workload(case, context)?;
    if case == Case::ForkExec {
        exec_parents.push(workload.pid());
    }
    workload.go_and_wait()?;
    Ok(())
}

impl Inference {
    /// One server's life: start, predictions, a child process, stop.
    fn run(&self) -> anyhow::Result<()> {
        let mut server = Server::start(self)?;
        let address = SocketAddr::from(([127, 0, 0, 1], server.port));
        for index in 0..PREDICTIONS {
            let x = format!("{},{},{}", index % 7, index % 5, index % 3);
            let body = http_get(address, &format!("/predict?x={x}"))?;
            if !body.contains("\"y\"") {
                bail!("the inference server answered {body:?}");
            }
        }
        http_get(address, "/spawn")?;
        server.stop()
    }
}

/// A running `onnx_server.py`, killed on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(inference: &Inference) -> anyhow::Result<Server> {
        std::fs::create_dir_all(&inference.dir)?;
        let mut child = Command::new(&inference.python)
            .arg(&inference.script)
            .arg(&inference.dir)
            .arg("0")
            .current_dir(&inference.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // It says whether it found a Hugging Face token, every start.
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", inference.script.display()))?;
        let (line, port) = cases::ready_line(&mut child)?;
        let mut server = Server {
            child,
            port: port.unwrap_or(0),
        };
        if port.is_none() {
            let _ = server.stop();
            bail!("onnx_server.py said {line:?} instead of READY <port>");
        }
        Ok(server)
    }

    /// SIGTERM, then SIGKILL after 10 s.
    fn stop(&mut self) -> anyhow::Result<()> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                // SIGTERM is how it is told to stop: exit 0 or the signal.
                return match status.code() {
                    Some(0) | None => Ok(()),
                    Some(code) => bail!("onnx_server.py exited with {code}"),
                };
            }
            thread::sleep(Duration::from_millis(50));
        }
        self.child.kill()?;
        self.child.wait()?;
        bail!("onnx_server.py ignored SIGTERM for 10 s")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The loads, one line each, for the report.
pub fn describe_all() -> String {
    let mut out = String::new();
    for (rotation, loads) in [("storms", &STORMS), ("AI workloads", &AI_WORKLOADS)] {
        let _ = writeln!(out, "- {rotation}, in turn:");
        for load in loads {
            let _ = writeln!(out, "  - `{}`: {}", load.name(), load.describe());
        }
    }
    out
}

/// Where `onnx_server.py` lives in the workspace.
pub fn inference_script(root: &Path) -> PathBuf {
    root.join("tests/workloads/onnx_server.py")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_execs_made_are_the_completed_fork_exec_runs() {
        let mut storms = Tally::default();
        storms.add(Load::Bench(Case::ForkExec), 1, 2.0);
        storms.add(Load::Bench(Case::ForkExec), 1, 3.0);
        storms.add(Load::Bench(Case::OpenUntracked), 1, 1.0);
        storms.exec_parents = vec![10, 11, 12];
        storms.failures.push("fork-exec: failed".into());
        let mut ai = Tally::default();
        ai.add(Load::Inference, 1, 4.0);
        storms.merge(ai);
        assert_eq!(storms.execs_made(), 2 * SIZES.execs);
        assert_eq!(storms.total_runs(), 4);
        assert_eq!(storms.exec_parents, [10, 11, 12]);
        let fork_exec = storms
            .runs
            .iter()
            .find(|(l, _, _)| *l == Load::Bench(Case::ForkExec));
        assert_eq!(fork_exec, Some(&(Load::Bench(Case::ForkExec), 2, 5.0)));
    }

    #[test]
    fn every_load_makes_something() {
        for load in STORMS.iter().chain(&AI_WORKLOADS) {
            assert!(load.items() > 0, "{}", load.name());
        }
    }
}
