//! The benchmark cases and how one run of each is measured.
//!
//! The native loops come from the `aiwatch-bench-workload` program
//! (`xtask/bench-workloads`): it sets up, says `READY`, waits for a go line
//! (so the agent can first track it), runs its loop and reports its own
//! wall and CPU time. Redis is measured by `redis-benchmark`'s requests per
//! second against a private `redis-server` on loopback.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _};

use super::{
    agent::{BenchAgent, TRACKED_MARKER},
    kernel_cost::{self, CaseCost, Snapshot},
};

/// One benchmark case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// open/read/close of a small uninteresting file, by an untracked process.
    OpenUntracked,
    /// The same loop by a process the agent tracks (a declared workload).
    OpenTracked,
    /// fork + exec of /bin/true.
    ForkExec,
    /// Loopback TCP connect, accept, close.
    TcpConnect,
    /// `redis-benchmark -t get` against a local redis-server.
    Redis,
    /// `sendto` of 64-byte datagrams on loopback by an untracked process.
    UdpSend,
    /// glibc `getaddrinfo` against a private resolver on loopback port 53.
    Resolver,
    /// A Python map-style dataset reading many small distinct files, tracked.
    DataLoader,
    /// HTTPS POSTs over one keep-alive connection, tracked: OpenSSL's
    /// SSL_write/SSL_read uprobes run on every call.
    TlsRequest,
    /// The same loop by an untracked client whose path is no LLM API's:
    /// each call traps into the uprobes, which look at the write's first
    /// bytes and return.
    TlsRequestUntracked,
    /// The tracked loop in plain HTTP to a model server's port (Ollama's
    /// 11434): the names programs copy every segment.
    PlainRequest,
    /// An ONNX Runtime model server (`python/onnx_server.py`), tracked,
    /// under a fixed concurrent load from a native load generator.
    OnnxServer,
    /// Opens for writing at a fixed rate by a tracked process: a full event
    /// each, for the agent's CPU at a known event rate.
    EventRate,
    /// fork + exec of /bin/true by a tracked process (`--enforcement` only:
    /// its workload's exec allowlist is checked on every exec).
    ForkExecTracked,
    /// Loopback TCP connect by a tracked process (`--enforcement` only: its
    /// workload's egress allowlist is checked on every connect).
    TcpConnectTracked,
}

/// Runs per configuration and round of the loops that take under a second
/// ([`Case::min_runs`]).
pub const SHORT_LOOP_RUNS: usize = 5;

impl Case {
    pub const ALL: [Case; 13] = [
        Case::OpenUntracked,
        Case::OpenTracked,
        Case::DataLoader,
        Case::ForkExec,
        Case::TcpConnect,
        Case::Redis,
        Case::UdpSend,
        Case::Resolver,
        Case::TlsRequest,
        Case::TlsRequestUntracked,
        Case::PlainRequest,
        Case::OnnxServer,
        Case::EventRate,
    ];

    /// The short name used on the command line and in the table.
    pub fn name(self) -> &'static str {
        match self {
            Case::OpenUntracked => "open-untracked",
            Case::OpenTracked => "open-tracked",
            Case::ForkExec => "fork-exec",
            Case::TcpConnect => "tcp-connect",
            Case::Redis => "redis-get",
            Case::UdpSend => "udp-send",
            Case::Resolver => "resolver",
            Case::DataLoader => "data-loader",
            Case::TlsRequest => "tls-request",
            Case::TlsRequestUntracked => "tls-request-untracked",
            Case::PlainRequest => "plain-request",
            Case::OnnxServer => "onnx-server",
            Case::EventRate => "event-rate",
            Case::ForkExecTracked => "fork-exec-tracked",
            Case::TcpConnectTracked => "tcp-connect-tracked",
        }
    }

    pub fn parse(name: &str) -> Option<Case> {
        Case::ALL.into_iter().find(|case| case.name() == name)
    }

    /// What one run does, for the report.
    pub fn describe(self, sizes: &Sizes) -> String {
        match self {
            Case::OpenUntracked => format!(
                "{} × open/read/close of a 64-byte file, untracked process",
                sizes.opens
            ),
            Case::OpenTracked => format!(
                "{} × open/read/close of a 64-byte file, tracked process",
                sizes.opens
            ),
            Case::ForkExec => format!("{} × fork + exec /bin/true + wait", sizes.execs),
            Case::ForkExecTracked => format!(
                "{} × fork + exec /bin/true + wait, tracked process",
                sizes.execs
            ),
            Case::TcpConnectTracked => format!(
                "{} × loopback TCP connect/accept/close, tracked process",
                sizes.connections
            ),
            Case::TcpConnect => {
                format!("{} × loopback TCP connect/accept/close", sizes.connections)
            }
            Case::Redis => format!(
                "redis-benchmark -t get -n {} -q (50 clients)",
                sizes.redis_requests
            ),
            Case::UdpSend => format!(
                "{} × sendto of 64 bytes on loopback, untracked process",
                sizes.datagrams
            ),
            Case::Resolver => format!(
                "{} × getaddrinfo (A and AAAA) against a resolver on loopback port 53",
                sizes.lookups
            ),
            Case::DataLoader => format!(
                "{} distinct 4 KiB files in {DATASET_FOLDERS} folders, each opened, read whole \
                 and closed once in a shuffled order by a Python map-style dataset, tracked \
                 process",
                sizes.samples
            ),
            Case::TlsRequest => format!(
                "{} × HTTPS POST of an LLM chat request over one keep-alive connection \
                 (Python http.client, the system's OpenSSL) to a local server, tracked client",
                sizes.tls_requests
            ),
            Case::PlainRequest => format!(
                "{} × plain HTTP POST of an LLM chat request over one keep-alive connection \
                 (Python http.client) to a local server on port {PLAIN_MODEL_PORT} (a model \
                 server's, read on the wire), tracked client",
                sizes.tls_requests
            ),
            Case::OnnxServer => format!(
                "an ONNX Runtime server (a 256-256-256-16 perceptron, one intra-op thread, \
                 Python's threading HTTP server, keep-alive) answering {} POSTs of 256 floats \
                 from {ONNX_CONCURRENCY} concurrent keep-alive connections of a native load \
                 generator, tracked server",
                sizes.inferences
            ),
            Case::EventRate => format!(
                "{} × open for writing and close, {EVENT_RATE} a second, tracked process: \
                 one full file event each (writes are never folded)",
                sizes.rate_events
            ),
            Case::TlsRequestUntracked => format!(
                "{} × HTTPS POST to /upload over one keep-alive connection (Python \
                 http.client, the system's OpenSSL) to a local server, untracked client",
                sizes.tls_requests
            ),
        }
    }

    /// The fewest runs per configuration and round, whatever `--repeat`
    /// says. The loops that take under a second on this machine kind are
    /// the ones whose ratios are held to a few per cent, and a shared
    /// machine adds tens of per cent to single runs of them: a best of
    /// [`SHORT_LOOP_RUNS`] costs seconds a round.
    pub fn min_runs(self) -> usize {
        match self {
            Case::OpenUntracked
            | Case::OpenTracked
            | Case::DataLoader
            | Case::TcpConnect
            | Case::UdpSend
            | Case::Resolver => SHORT_LOOP_RUNS,
            _ => 1,
        }
    }

    /// Whether higher is better (requests/s) rather than lower (time).
    pub fn is_throughput(self) -> bool {
        matches!(self, Case::Redis | Case::DataLoader | Case::OnnxServer)
    }

    /// The unit of a throughput case's metric.
    pub fn unit(self) -> &'static str {
        match self {
            Case::DataLoader => "files/s",
            _ => "req/s",
        }
    }

    /// Whether the loop is a Python program (from the tests' venv).
    pub fn needs_python(self) -> bool {
        matches!(
            self,
            Case::DataLoader
                | Case::TlsRequest
                | Case::TlsRequestUntracked
                | Case::PlainRequest
                | Case::OnnxServer
        )
    }

    /// Whether the loop talks to the bench's local TLS server.
    pub fn needs_tls_server(self) -> bool {
        matches!(self, Case::TlsRequest | Case::TlsRequestUntracked)
    }

    /// Whether the loop carries the tracked marker (a declared workload).
    pub fn is_tracked(self) -> bool {
        matches!(
            self,
            Case::OpenTracked
                | Case::DataLoader
                | Case::TlsRequest
                | Case::PlainRequest
                | Case::OnnxServer
                | Case::EventRate
                | Case::ForkExecTracked
                | Case::TcpConnectTracked
        )
    }
}

/// Iteration counts.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    pub opens: u64,
    pub execs: u64,
    pub connections: u64,
    pub redis_requests: u64,
    pub datagrams: u64,
    pub lookups: u64,
    pub samples: u64,
    pub tls_requests: u64,
    pub inferences: u64,
    pub rate_events: u64,
}

/// The inference server's concurrent connections.
pub const ONNX_CONCURRENCY: u64 = 4;
/// The event-rate loop's opens per second: the rate the agent's CPU target
/// is stated at.
pub const EVENT_RATE: u64 = 10_000;

/// Class folders the data loader's samples are spread over.
pub const DATASET_FOLDERS: u64 = 10;
/// Size of one data-loader sample.
const SAMPLE_BYTES: usize = 4096;

/// Writes the open loops' 64-byte file into a folder of its own under
/// `scratch`. Not beside the agent's configuration, which the scratch
/// folder also holds: a folder that names one of the agent's own files is
/// of interest, so a tracked process's reads there are never folded, and
/// the open cases would measure that folder rather than a plain one.
pub fn write_small_file(scratch: &Path) -> anyhow::Result<PathBuf> {
    let folder = scratch.join("open-loop");
    std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    let file = folder.join("small.txt");
    std::fs::write(&file, [b'x'; 64]).context("writing the small file")?;
    Ok(file)
}

/// Writes the data loader's dataset: `samples` files of 4 KiB, named as an
/// image dataset's are (`.jpg` is no asset class, so their reads fold).
pub fn write_dataset(root: &Path, samples: u64) -> anyhow::Result<()> {
    let body = vec![0x5a_u8; SAMPLE_BYTES];
    for folder in 0..DATASET_FOLDERS {
        let dir = root.join(format!("class_{folder:02}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for index in (folder..samples).step_by(DATASET_FOLDERS as usize) {
            let path = dir.join(format!("img_{index:06}.jpg"));
            std::fs::write(&path, &body).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(())
}

impl Sizes {
    pub const FULL: Sizes = Sizes {
        opens: 200_000,
        execs: 2_000,
        connections: 5_000,
        redis_requests: 200_000,
        datagrams: 200_000,
        lookups: 5_000,
        samples: 20_000,
        tls_requests: 5_000,
        inferences: 10_000,
        rate_events: 100_000,
    };

    /// A tenth of everything, to try the harness out.
    pub const QUICK: Sizes = Sizes {
        opens: 20_000,
        execs: 200,
        connections: 500,
        redis_requests: 20_000,
        datagrams: 20_000,
        lookups: 500,
        samples: 2_000,
        tls_requests: 500,
        inferences: 1_000,
        rate_events: 10_000,
    };
}

/// One measurement.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// Wall time of the loop (requests/s for redis).
    pub wall_ns: u64,
    /// CPU time of the loop's process and its children (0 for redis).
    pub cpu_ns: u64,
    /// redis-benchmark's requests per second, the data loader's files per
    /// CPU-second, or the inference server's requests per second.
    pub requests_per_sec: f64,
    /// The inference server's request latency percentiles (0 elsewhere).
    pub p50_ns: u64,
    pub p99_ns: u64,
    /// Requests answered (the inference server; 0 elsewhere): with
    /// `cpu_ns`, the server's CPU time per request.
    pub requests: u64,
    /// CPU time the agent used from the loop's start until it drained the
    /// loop's events.
    pub agent_cpu_ns: u64,
    /// Events the agent delivered over the same span.
    pub agent_events: u64,
    /// That span's wall time: the loop and the drain after it.
    pub agent_span_ns: u64,
    /// The agent's resident memory once drained, and its peak so far (KiB).
    pub agent_rss_kib: u64,
    pub agent_peak_kib: u64,
}

impl Sample {
    /// Whether this run is less disturbed than `other`: less CPU time, or
    /// more requests per second for the throughput case.
    pub fn better_than(&self, other: &Sample, case: Case) -> bool {
        if case.is_throughput() {
            self.requests_per_sec > other.requests_per_sec
        } else {
            self.cpu_ns < other.cpu_ns
        }
    }
}

/// What a case needs from the run.
pub struct Context<'a> {
    pub workload: &'a Path,
    /// The interpreter of the Python loops, and the folder of their scripts.
    pub python: &'a Path,
    pub scripts: &'a Path,
    pub dataset: &'a Path,
    /// Only when a TLS case runs.
    pub tls: Option<&'a TlsServer>,
    /// Only when the plain-request case runs.
    pub plain: Option<&'a TlsServer>,
    pub small_file: &'a Path,
    /// Only when the redis case runs.
    pub redis: Option<&'a Redis>,
    /// Where the inference server writes its model.
    pub model_dir: &'a Path,
    pub sizes: Sizes,
    pub agent: Option<&'a BenchAgent>,
}

/// One run of a case, and what the agent's kernel programs spent in it.
pub struct Measured {
    pub sample: Sample,
    /// Only with the full agent (the floor's programs return at once).
    pub kernel: Option<CaseCost>,
}

/// The full agent's counters at one moment.
struct AgentReading {
    cpu_ns: u64,
    events: u64,
    programs: Snapshot,
}

impl AgentReading {
    fn take(agent: &BenchAgent) -> anyhow::Result<AgentReading> {
        Ok(AgentReading {
            cpu_ns: agent.cpu_ns(),
            events: agent.events_total()?,
            programs: kernel_cost::snapshot(agent.pid())?,
        })
    }
}

/// Runs `case` once.
pub fn run(case: Case, context: &Context<'_>) -> anyhow::Result<Measured> {
    let full_agent = context.agent.filter(|agent| !agent.is_floor());
    let before = full_agent.map(AgentReading::take).transpose()?;
    let span = std::time::Instant::now();
    let mut sample = match case {
        Case::Redis => context
            .redis
            .context("redis-server was not started")?
            .benchmark(context.sizes.redis_requests)?,
        _ => run_workload(case, context)?,
    };
    let mut kernel = None;
    if let (Some(agent), Some(before)) = (full_agent, before) {
        // The loop's cost to the agent includes working off its backlog.
        agent.drain(Duration::from_secs(1), Duration::from_secs(60))?;
        let after = AgentReading::take(agent)?;
        sample.agent_span_ns = span.elapsed().as_nanos() as u64;
        sample.agent_cpu_ns = after.cpu_ns.saturating_sub(before.cpu_ns);
        sample.agent_events = after.events.saturating_sub(before.events);
        if let Some((rss, peak)) = agent.memory_kib() {
            sample.agent_rss_kib = rss;
            sample.agent_peak_kib = peak;
        }
        let mut cost = CaseCost::default();
        cost.add_loop(&before.programs, &after.programs);
        kernel = Some(cost);
    } else if let Some(agent) = context.agent {
        agent.settle(Duration::from_secs(20));
    }
    Ok(Measured { sample, kernel })
}

fn run_workload(case: Case, context: &Context<'_>) -> anyhow::Result<Sample> {
    start_workload(case, context)?.go_and_wait()
}

/// Starts `case`'s loop and, when it is tracked and the full agent runs,
/// waits until the agent tracks it; the loop waits for its go line.
pub fn start_workload(case: Case, context: &Context<'_>) -> anyhow::Result<Workload> {
    let sizes = context.sizes;
    let mut command = Command::new(context.workload);
    match case {
        Case::OpenUntracked | Case::OpenTracked => {
            command
                .arg("open-read-close")
                .arg(context.small_file)
                .arg(sizes.opens.to_string());
            if case == Case::OpenTracked {
                command.arg(TRACKED_MARKER);
            }
        }
        Case::ForkExec => {
            command.arg("fork-exec").arg(sizes.execs.to_string());
        }
        Case::ForkExecTracked => {
            command
                .arg("fork-exec")
                .arg(sizes.execs.to_string())
                .arg(TRACKED_MARKER);
        }
        Case::TcpConnect => {
            command
                .arg("tcp-connect")
                .arg(sizes.connections.to_string());
        }
        Case::TcpConnectTracked => {
            command
                .arg("tcp-connect")
                .arg(sizes.connections.to_string())
                .arg(TRACKED_MARKER);
        }
        Case::UdpSend => {
            command.arg("udp-send").arg(sizes.datagrams.to_string());
        }
        Case::Resolver => {
            command.arg("resolver").arg(sizes.lookups.to_string());
        }
        Case::DataLoader => {
            command = Command::new(context.python);
            command
                .arg(context.scripts.join("data_loader.py"))
                .arg(context.dataset)
                .arg(TRACKED_MARKER);
        }
        Case::TlsRequest | Case::TlsRequestUntracked => {
            let server = context.tls.context("the TLS server was not started")?;
            command = Command::new(context.python);
            command
                .arg(context.scripts.join("tls_request.py"))
                .arg(server.port.to_string())
                .arg(&server.certificate)
                .arg(sizes.tls_requests.to_string());
            if case == Case::TlsRequest {
                command.arg(TRACKED_MARKER);
            } else {
                // No LLM API's path: the kernel never promotes the client.
                command.env("TLS_REQUEST_PATH", "/upload");
            }
        }
        Case::PlainRequest => {
            let server = context
                .plain
                .context("the plain HTTP server was not started")?;
            command = Command::new(context.python);
            command
                .arg(context.scripts.join("tls_request.py"))
                .arg(server.port.to_string())
                .arg("-")
                .arg(sizes.tls_requests.to_string())
                .arg(TRACKED_MARKER)
                .env("TLS_REQUEST_PATH", "/api/chat");
        }
        Case::OnnxServer => {
            command = Command::new(context.python);
            command
                .arg(context.scripts.join("onnx_server.py"))
                .arg(context.model_dir)
                .arg(context.workload)
                .arg(sizes.inferences.to_string())
                .arg(ONNX_CONCURRENCY.to_string())
                .arg(TRACKED_MARKER);
        }
        Case::EventRate => {
            command
                .arg("write-open")
                .arg(context.small_file)
                .arg(sizes.rate_events.to_string())
                .arg(EVENT_RATE.to_string())
                .arg(TRACKED_MARKER);
        }
        Case::Redis => bail!("redis is not a workload of the bench program"),
    }
    let child = Workload::start(command)?;
    if case.is_tracked() {
        if let Some(agent) = context.agent.filter(|a| !a.is_floor()) {
            agent.wait_tracked(child.pid(), Duration::from_secs(20))?;
        }
    }
    Ok(child)
}

/// A started `aiwatch-bench-workload` waiting for its go line.
pub struct Workload {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

/// A workload dropped before its result (its start failed, e.g. the agent
/// did not track it in time) is killed and reaped, not left to run its
/// loop into a closed pipe and linger as a zombie.
impl Drop for Workload {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Workload {
    fn start(mut command: Command) -> anyhow::Result<Self> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {:?}", command.get_program()))?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let mut workload = Workload {
            child,
            stdout: BufReader::new(stdout),
        };
        let line = workload.line()?;
        if line.trim() != "READY" {
            bail!("the bench workload said {line:?} instead of READY");
        }
        Ok(workload)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn line(&mut self) -> anyhow::Result<String> {
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        Ok(line)
    }

    pub fn go_and_wait(mut self) -> anyhow::Result<Sample> {
        let mut stdin = self.child.stdin.take().context("no stdin pipe")?;
        stdin.write_all(b"go\n")?;
        drop(stdin);
        let line = self.line()?;
        let status = self.child.wait()?;
        if !status.success() {
            bail!("the bench workload failed ({status})");
        }
        parse_result(&line).with_context(|| format!("the bench workload said {line:?}"))
    }
}

/// Parses `RESULT wall_ns=<n> cpu_ns=<n> [items=<n>] [requests=<n>
/// p50_ns=<n> p99_ns=<n>]`; items make the throughput items per
/// CPU-second, requests make it requests per second of wall time.
fn parse_result(line: &str) -> anyhow::Result<Sample> {
    let rest = line
        .trim()
        .strip_prefix("RESULT ")
        .context("no RESULT line")?;
    let mut sample = Sample::default();
    let mut items = None;
    for field in rest.split_whitespace() {
        let (key, value) = field.split_once('=').context("a field without =")?;
        let value: u64 = value.parse().context("a field that is not a number")?;
        match key {
            "wall_ns" => sample.wall_ns = value,
            "cpu_ns" => sample.cpu_ns = value,
            "items" => items = Some(value),
            "requests" => sample.requests = value,
            "p50_ns" => sample.p50_ns = value,
            "p99_ns" => sample.p99_ns = value,
            _ => {}
        }
    }
    if sample.wall_ns == 0 {
        bail!("no wall time");
    }
    if let Some(items) = items {
        if sample.cpu_ns == 0 {
            bail!("items without CPU time");
        }
        sample.requests_per_sec = items as f64 * 1e9 / sample.cpu_ns as f64;
    }
    if sample.requests > 0 {
        sample.requests_per_sec = sample.requests as f64 * 1e9 / sample.wall_ns as f64;
    }
    Ok(sample)
}

/// A private redis-server on 127.0.0.1, stopped on drop.
pub struct Redis {
    child: Child,
    port: u16,
    benchmark: PathBuf,
}

impl Redis {
    pub fn start(server: &Path, benchmark: &Path, dir: &Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        let child = Command::new(server)
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--dir"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", server.display()))?;
        let redis = Redis {
            child,
            port,
            benchmark: benchmark.to_owned(),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if std::time::Instant::now() > deadline {
                bail!("redis-server did not listen on port {port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(redis)
    }

    fn benchmark(&self, requests: u64) -> anyhow::Result<Sample> {
        let started = std::time::Instant::now();
        let output = Command::new(&self.benchmark)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-t", "get", "-n", &requests.to_string(), "-q"])
            .stderr(Stdio::null())
            .output()
            .context("cannot start redis-benchmark")?;
        let wall_ns = started.elapsed().as_nanos() as u64;
        let text = String::from_utf8_lossy(&output.stdout);
        let requests_per_sec = parse_requests_per_sec(&text)
            .with_context(|| format!("redis-benchmark printed no GET rate: {text:?}"))?;
        Ok(Sample {
            wall_ns,
            requests_per_sec,
            ..Sample::default()
        })
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// The rate of `GET: 61349.69 requests per second, p50=0.407 msec`; the
/// quiet output redraws progress with carriage returns before it.
fn parse_requests_per_sec(text: &str) -> Option<f64> {
    text.split(['\r', '\n'])
        .filter_map(|line| line.trim().strip_prefix("GET: "))
        .filter_map(|rest| rest.split_once(" requests per second"))
        .filter_map(|(number, _)| number.trim().parse().ok())
        .next_back()
}

/// The tls-request case's server: `tls_server.py` with a self-signed
/// certificate for `localhost`, untracked, stopped on drop.
pub struct TlsServer {
    child: Child,
    port: u16,
    certificate: PathBuf,
}

/// The port of the plain-request case's server: Ollama's, one of the
/// agent's default `llm_capture.plain_ports`.
pub const PLAIN_MODEL_PORT: u16 = 11434;

impl TlsServer {
    /// The same server in plain HTTP on [`PLAIN_MODEL_PORT`].
    pub fn start_plain(python: &Path, scripts: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(python)
            .arg(scripts.join("tls_server.py"))
            .arg("--plain")
            .arg(PLAIN_MODEL_PORT.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start tls_server.py --plain")?;
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            BufReader::new(stdout).read_line(&mut line)?;
        }
        let server = TlsServer {
            child,
            port: PLAIN_MODEL_PORT,
            certificate: PathBuf::from("-"),
        };
        if !line.starts_with("READY ") {
            bail!(
                "the plain HTTP server could not listen on 127.0.0.1:{PLAIN_MODEL_PORT} \
                 (is a model server running there?)"
            );
        }
        Ok(server)
    }

    pub fn start(python: &Path, scripts: &Path, dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let certificate = dir.join("cert.pem");
        let key = dir.join("key.pem");
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args([
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&certificate)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("cannot run openssl (Debian package openssl)")?;
        if !status.success() {
            bail!("openssl could not make a self-signed certificate ({status})");
        }
        let mut child = Command::new(python)
            .arg(scripts.join("tls_server.py"))
            .arg(&certificate)
            .arg(&key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start tls_server.py")?;
        let (line, port) = ready_line(&mut child)?;
        let server = TlsServer {
            child,
            port: port.unwrap_or(0),
            certificate,
        };
        if port.is_none() {
            bail!("tls_server.py said {line:?} instead of READY <port>");
        }
        Ok(server)
    }
}

/// A server's first line, `READY <port>`, and the port in it.
pub fn ready_line(child: &mut Child) -> std::io::Result<(String, Option<u16>)> {
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        BufReader::new(stdout).read_line(&mut line)?;
    }
    let port = line
        .trim()
        .strip_prefix("READY ")
        .and_then(|port| port.parse().ok());
    Ok((line, port))
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_parse_and_garbage_does_not() {
        let sample = parse_result("RESULT wall_ns=1200 cpu_ns=900\n").expect("parses");
        assert_eq!((sample.wall_ns, sample.cpu_ns), (1200, 900));
        assert!(parse_result("READY").is_err());
        let loader =
            parse_result("RESULT wall_ns=3000 cpu_ns=2000000000 items=1000").expect("parses");
        assert_eq!(loader.requests_per_sec, 500.0);
        assert!(parse_result("RESULT wall_ns=3000 cpu_ns=0 items=1000").is_err());
        // The inference server: requests per second of wall time, and its
        // latency percentiles.
        let server = parse_result(
            "RESULT wall_ns=2000000000 cpu_ns=1500000000 requests=10000 p50_ns=400000 p99_ns=4000000",
        )
        .expect("parses");
        assert!((server.requests_per_sec - 5_000.0).abs() < 1e-6);
        assert_eq!(
            (server.requests, server.p50_ns, server.p99_ns),
            (10_000, 400_000, 4_000_000)
        );
        assert!(parse_result("RESULT wall_ns=x").is_err());
    }

    #[test]
    fn redis_rate_is_taken_from_the_final_line() {
        let text = "GET: rps=12000.0 (overall: 11000.0) avg_msec=0.5\r\
                    GET: 61349.69 requests per second, p50=0.407 msec\n\n";
        assert_eq!(parse_requests_per_sec(text), Some(61349.69));
        assert_eq!(parse_requests_per_sec("nothing"), None);
    }

    #[test]
    fn the_best_run_is_the_cheapest_or_the_fastest() {
        let cheap = Sample {
            cpu_ns: 10,
            requests_per_sec: 1.0,
            ..Sample::default()
        };
        let costly = Sample {
            cpu_ns: 20,
            requests_per_sec: 2.0,
            ..Sample::default()
        };
        assert!(cheap.better_than(&costly, Case::OpenUntracked));
        assert!(!cheap.better_than(&costly, Case::Redis));
    }

    #[test]
    fn case_names_round_trip() {
        for case in Case::ALL {
            assert_eq!(Case::parse(case.name()), Some(case));
        }
    }
}
