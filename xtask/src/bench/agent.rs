//! The agent under benchmark: one `aiwatch run` per configuration and round,
//! with a private configuration, its alerts in a temp folder and events off.
//!
//! The configuration declares one workload whose argv pattern matches
//! [`TRACKED_MARKER`], so a benchmark loop carrying that argument is put in
//! the kernel's tracked processes; [`BenchAgent::wait_tracked`] waits until
//! the agent lists the process in its inventory (by then it is tracked).

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use serde_json::Value;

/// The argument that makes a benchmark loop a declared (tracked) workload.
pub const TRACKED_MARKER: &str = "aiwatch-bench-tracked";

/// How the agent runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentMode {
    /// Every hook attached, every program reduced to `return 0`.
    Floor,
    /// The default configuration: every family on, events off.
    Full,
}

/// A running `aiwatch run`.
pub struct BenchAgent {
    child: Child,
    mode: AgentMode,
    listen: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

/// Writes the benchmark configuration into `dir` and returns its path.
pub fn write_config(dir: &Path, listen: SocketAddr) -> anyhow::Result<PathBuf> {
    let path = dir.join("config.yaml");
    let config = config_text(listen, None, &dir.join("alerts.jsonl"), &dir.join("state"));
    std::fs::write(&path, config).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// The benchmark configuration: the listener, events (off unless given),
/// alerts and state, and the one declared workload whose processes carry
/// [`TRACKED_MARKER`].
pub fn config_text(
    listen: SocketAddr,
    events: Option<&Path>,
    alerts: &Path,
    state: &Path,
) -> String {
    format!(
        "listen: {listen}\n\
         events: {events}\n\
         alerts: {alerts}\n\
         state_dir: {state}\n\
         workloads:\n\
         \x20 declared:\n\
         \x20   - name: aiwatch-bench\n\
         \x20     kind: inference\n\
         \x20     match: {{argv: \"*{TRACKED_MARKER}*\"}}\n",
        events = events.map_or("null".to_string(), |p| p.display().to_string()),
        alerts = alerts.display(),
        state = state.display(),
    )
}

impl BenchAgent {
    /// Starts the agent and waits until it says it is ready.
    pub fn start(
        binary: &Path,
        config: &Path,
        listen: SocketAddr,
        mode: AgentMode,
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(binary);
        command.arg("run").arg("--config").arg(config);
        if mode == AgentMode::Floor {
            command.arg("--bench-floor");
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        if let Some(pipe) = child.stderr.take() {
            let lines = log.clone();
            // Drained for the agent's whole life: a full pipe would block it.
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let Ok(mut lines) = lines.lock() {
                        lines.push(line);
                    }
                }
            });
        }
        let mut agent = BenchAgent {
            child,
            mode,
            listen,
            log,
        };
        agent.wait_for_log("aiwatch ready", Duration::from_secs(120))?;
        Ok(agent)
    }

    /// Whether this is the floor, which sees no events and tracks nothing.
    pub fn is_floor(&self) -> bool {
        self.mode == AgentMode::Floor
    }

    /// Waits until the agent's log has a line containing `needle`.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log_lines().iter().any(|line| line.contains(needle)) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the agent exited ({status}) before saying {needle:?}:\n{}",
                    self.log_lines().join("\n")
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the agent did not say {needle:?} within {timeout:?}:\n{}",
                    self.log_lines().join("\n")
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The agent's standard error so far, one line each.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Waits until the agent's inventory lists `pid` in a workload: the
    /// workload table mirrors membership into the kernel's tracked
    /// processes before the inventory is published.
    pub fn wait_tracked(&self, pid: u32, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(inventory) = http_get_json(self.listen, "/inventory") {
                if lists_process(&inventory, pid) {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("the agent did not track the benchmark process {pid} within {timeout:?}");
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every pid the agent's inventory lists in a workload.
    pub fn inventory_pids(&self) -> anyhow::Result<Vec<u64>> {
        Ok(listed_pids(&http_get_json(self.listen, "/inventory")?))
    }

    /// How many of `pids` the agent's inventory lists in a workload.
    pub fn listed_count(&self, pids: &[u32]) -> usize {
        let Ok(inventory) = http_get_json(self.listen, "/inventory") else {
            return 0;
        };
        pids.iter()
            .filter(|&&pid| lists_process(&inventory, pid))
            .count()
    }

    /// CPU time (user + system, all threads) the agent used so far.
    pub fn cpu_ns(&self) -> u64 {
        process_cpu_ns(self.child.id()).unwrap_or(0)
    }

    /// The agent's `aiwatch_events_total`, summed over kinds.
    pub fn events_total(&self) -> anyhow::Result<u64> {
        let text = http_get(self.listen, "/metrics")?;
        sum_of_counter(&text, "aiwatch_events_total")
            .context("the agent's /metrics has no aiwatch_events_total")
    }

    /// Waits until the agent has drained what a loop left: its events
    /// counter grew by no more than the host's background over a whole
    /// `window` ([`drained`]), for at most `timeout`. The time this takes is
    /// part of what the loop cost the agent.
    pub fn drain(&self, window: Duration, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last = self.events_total()?;
        loop {
            thread::sleep(window);
            let now = self.events_total()?;
            if drained(last, now) || Instant::now() > deadline {
                return Ok(());
            }
            last = now;
        }
    }

    /// The agent's `/metrics` text.
    pub fn metrics_text(&self) -> anyhow::Result<String> {
        http_get(self.listen, "/metrics")
    }

    /// Whether `/readyz` says ready.
    pub fn ready(&self) -> bool {
        http_get_json(self.listen, "/readyz")
            .is_ok_and(|answer| answer.get("ready").and_then(Value::as_bool) == Some(true))
    }

    /// Whether the process still runs: its `/proc` entry exists and is no
    /// zombie.
    pub fn alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).is_ok_and(|stat| {
            stat.rfind(')')
                .and_then(|end| stat[end + 1..].split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X")
        })
    }

    /// Open file descriptors, from `/proc/<pid>/fd`.
    pub fn open_fds(&self) -> Option<u64> {
        let entries = std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).ok()?;
        Some(entries.count() as u64)
    }

    /// Resident memory now and at its peak (`VmRSS`, `VmHWM`), in KiB.
    pub fn memory_kib(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        Some((status_kib(&status, "VmRSS")?, status_kib(&status, "VmHWM")?))
    }

    /// How the resident memory splits, from `/proc/<pid>/smaps`.
    pub fn memory_split(&self) -> Option<MemorySplit> {
        let pid = self.child.id();
        let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
        let executable = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
        Some(MemorySplit::of_smaps(&smaps, &executable))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the agent has caught up: less than 2% of a CPU used over
    /// a 300 ms window, for at most `timeout`.
    pub fn settle(&self, timeout: Duration) {
        let window = Duration::from_millis(300);
        let deadline = Instant::now() + timeout;
        loop {
            let before = self.cpu_ns();
            thread::sleep(window);
            let used = self.cpu_ns().saturating_sub(before);
            if used * 50 < window.as_nanos() as u64 || Instant::now() > deadline {
                return;
            }
        }
    }

    /// SIGTERM, then SIGKILL if it does not stop within 30 s.
    pub fn stop(mut self) -> anyhow::Result<()> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            thread::sleep(Duration::from_millis(50));
        }
        eprintln!("bench: the agent ignored SIGTERM for 30 s; killing it");
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for BenchAgent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// utime + stime of a process from `/proc/<pid>/stat`.
pub fn process_cpu_ns(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields, i.e. the 12th and 13th after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok()?;
    Some((utime + stime) * 1_000_000_000 / ticks.max(1))
}

/// Events per drain window that other processes' activity alone produces
/// on a busy shared host (execs of other people's builds and tests): a
/// counter that grows by no more than this has stopped growing for the loop.
const BACKGROUND_EVENTS_PER_WINDOW: u64 = 20;

/// Whether the events counter, `last` then `now` one window later, shows
/// the agent drained.
fn drained(last: u64, now: u64) -> bool {
    now.saturating_sub(last) <= BACKGROUND_EVENTS_PER_WINDOW
}

/// Where the agent's resident pages are, in KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MemorySplit {
    /// Every mapping's `Rss`: what `VmRSS` says.
    pub rss_kib: u64,
    /// Every mapping's `Pss`: a page mapped twice counts once.
    pub pss_kib: u64,
    /// `Rss` of the BPF map mappings (`anon_inode:bpf-map`): the kernel
    /// maps the ring buffer's data pages twice in a row, so that a record
    /// that wraps reads as one, and `VmRSS` counts them twice.
    pub bpf_maps_kib: u64,
    /// `Rss` of the agent's own executable: code and read-only data read
    /// from the file, the embedded eBPF object among them.
    pub binary_kib: u64,
}

impl MemorySplit {
    /// Sums the `Rss:` and `Pss:` lines of each mapping of a `smaps` text;
    /// `executable` is the process's `/proc/<pid>/exe`, which names its
    /// mappings of the executable the same way.
    pub fn of_smaps(smaps: &str, executable: &Path) -> MemorySplit {
        let mut split = MemorySplit::default();
        let mut mapping = "";
        for line in smaps.lines() {
            let mut fields = line.split_whitespace();
            match fields.next() {
                Some("Rss:") => {
                    let kib = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                    split.rss_kib += kib;
                    if mapping == "anon_inode:bpf-map" {
                        split.bpf_maps_kib += kib;
                    } else if Path::new(mapping) == executable {
                        split.binary_kib += kib;
                    }
                }
                Some("Pss:") => {
                    split.pss_kib += fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                }
                // A mapping's header: `start-end perms offset dev inode [name]`.
                Some(range) if range.contains('-') && !range.ends_with(':') => {
                    mapping = fields.nth(4).unwrap_or("");
                }
                _ => {}
            }
        }
        split
    }
}

/// A `Vm*:` line of `/proc/<pid>/status`, in KiB.
fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// The sum of every series of a counter in the Prometheus text format;
/// `None` when no series of it is present.
fn sum_of_counter(text: &str, name: &str) -> Option<u64> {
    let mut found = false;
    let mut total = 0.0;
    for (_, value) in series(text, name) {
        found = true;
        total += value;
    }
    found.then_some(total as u64)
}

/// Every series of the metric `name` in the Prometheus text format: its
/// labels (what stands between the braces, empty without any) and value.
pub fn series<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(move |line| {
            let rest = line.strip_prefix(name)?;
            // `name{labels} value` or `name value`, not `name_created ...`.
            let (labels, value) = match rest.chars().next() {
                Some('{') => {
                    let (labels, value) = rest[1..].rsplit_once('}')?;
                    (labels, value)
                }
                Some(' ') => ("", rest),
                _ => return None,
            };
            let value = value.split_whitespace().next()?.parse::<f64>().ok()?;
            Some((labels, value))
        })
}

/// A plain HTTP/1.0 GET of a JSON document.
fn http_get_json(address: SocketAddr, path: &str) -> anyhow::Result<Value> {
    Ok(serde_json::from_str(&http_get(address, path)?)?)
}

/// A plain HTTP/1.0 GET; the body.
pub fn http_get(address: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .context("an HTTP response without a body")?;
    Ok(body.to_string())
}

/// Whether any `processes` list in the document has an entry for `pid`.
fn lists_process(value: &Value, pid: u32) -> bool {
    listed_pids(value).contains(&u64::from(pid))
}

/// The pids of every `processes` list in the document.
fn listed_pids(value: &Value) -> Vec<u64> {
    match value {
        Value::Object(map) => map
            .iter()
            .flat_map(|(key, item)| {
                let mut pids = listed_pids(item);
                if key == "processes" {
                    let list = item.as_array().map(Vec::as_slice).unwrap_or_default();
                    pids.extend(list.iter().filter_map(|p| p.get("pid")?.as_u64()));
                }
                pids
            })
            .collect(),
        Value::Array(items) => items.iter().flat_map(listed_pids).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_listed_in_any_workload_is_found() {
        let inventory = serde_json::json!({
            "workloads": [
                {"name": "other", "processes": [{"pid": 7}]},
                {"name": "aiwatch-bench", "processes": [{"pid": 41}, {"pid": 42}]}
            ]
        });
        assert!(lists_process(&inventory, 42));
        assert!(!lists_process(&inventory, 43));
        assert_eq!(listed_pids(&inventory), [7, 41, 42]);
    }

    #[test]
    fn the_configuration_declares_the_tracked_marker() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = write_config(&dir, "127.0.0.1:9999".parse().expect("address")).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(text.contains(&format!("argv: \"*{TRACKED_MARKER}*\"")));
        assert!(text.contains("events: null"));
    }

    #[test]
    fn the_events_counter_is_summed_over_its_kinds() {
        let text = "# HELP aiwatch_events_total Events.\n\
                    # TYPE aiwatch_events_total counter\n\
                    aiwatch_events_total{kind=\"exec\"} 5\n\
                    aiwatch_events_total{kind=\"open\"} 1e3\n\
                    aiwatch_events_total_created 17\n\
                    aiwatch_events_lost_total{stage=\"queue\"} 9\n";
        assert_eq!(sum_of_counter(text, "aiwatch_events_total"), Some(1005));
        assert_eq!(
            sum_of_counter("aiwatch_other 1\n", "aiwatch_events_total"),
            None
        );
    }

    #[test]
    fn the_agent_is_drained_when_only_background_events_arrive() {
        assert!(drained(1_000, 1_000));
        assert!(drained(1_000, 1_000 + BACKGROUND_EVENTS_PER_WINDOW));
        assert!(!drained(1_000, 5_000));
    }

    #[test]
    fn memory_lines_of_proc_status_parse() {
        let status = "Name:\taiwatch\nVmHWM:\t   40960 kB\nVmRSS:\t   30720 kB\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(30720));
        assert_eq!(status_kib(status, "VmHWM"), Some(40960));
        assert_eq!(status_kib(status, "VmSwap"), None);
    }

    #[test]
    fn smaps_split_counts_the_ring_buffer_and_the_binary_apart() {
        let smaps = "\
55d0c0000000-55d0c1000000 r-xp 00000000 fd:01 42 /tmp/aiwatch-base
Rss:                1024 kB
Pss:                1024 kB
VmFlags: rd ex mr mw me
7f5c20000000-7f5c20100000 r-xp 00000000 fd:01 43 /work/target/release/aiwatch
Rss:                 256 kB
Pss:                  16 kB
7f5c25fff000-7f5c28000000 r--s 00001000 00:10 12                         anon_inode:bpf-map
Rss:               32768 kB
Pss:               16384 kB
7f5c30000000-7f5c30100000 rw-p 00000000 00:00 0
Rss:                 512 kB
Pss:                 512 kB
";
        assert_eq!(
            MemorySplit::of_smaps(smaps, Path::new("/tmp/aiwatch-base")),
            MemorySplit {
                rss_kib: 34560,
                pss_kib: 17936,
                bpf_maps_kib: 32768,
                binary_kib: 1024,
            }
        );
    }

    #[test]
    fn own_cpu_time_is_readable() {
        assert!(process_cpu_ns(std::process::id()).is_some());
    }
}
