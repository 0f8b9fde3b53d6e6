//! Inside a guest: `xtask vm-guest-init`, started by the initramfs's
//! `/init`. It mounts the kernel filesystems and the guest's cgroup layout,
//! brings up loopback, starts the agent once to record the kernel's
//! start-up feature lines, runs each suite with its time budget, prints one
//! verdict line and leaves through QEMU's `isa-debug-exit` port, whose value
//! becomes QEMU's exit status.
//!
//! Every line the host reads starts with [`MARK`]; everything else on the
//! console (the suites' output) is for people.

use std::{
    io::{BufRead as _, BufReader, Read},
    os::unix::process::CommandExt as _,
    path::Path,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use super::payload::{sha256_of, GUEST_DIR};

/// The prefix of every line meant for the host.
pub const MARK: &str = "aiwatch-vm:";
/// `isa-debug-exit` port; QEMU exits with `(value << 1) | 1`.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;
pub const PASS_VALUE: u8 = 0x10;
pub const FAIL_VALUE: u8 = 0x11;
/// The exec storm's size in the guests (20,000 on the host): under TCG an
/// exec costs 20 to 50 times more (about 45 ms), and the storm would outlast
/// CI's budget. The check is the same at any size (every exec delivered or
/// counted as lost). The suite took 215 s at 4,000, 194 to 215 s at 2,000
/// and 92 s at 1,000 (its own agent's start-up included).
const STORM_EXECS: &str = "1000";
/// How long the agent may take to say it is ready: verifying the programs
/// under TCG takes about 20 s.
const AGENT_READY_BUDGET: Duration = Duration::from_secs(240);
/// How long a test waits for an event (20 s on the host): under TCG a
/// Python process takes seconds to start, and another test's agent may be
/// verifying its programs on the same two CPUs. The privilege suite's
/// mmap test once missed 20 s there.
const EVENT_BUDGET: Duration = Duration::from_secs(60);

/// The instructions the host writes into `guest.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Plan {
    pub label: String,
    /// `unified` or `hybrid` ([`super::CgroupLayout::name`]).
    pub cgroups: String,
    pub suites: Vec<PlannedSuite>,
    /// Mandatory suites left out by `--suites`: the verdict fails.
    pub not_selected: Vec<String>,
    /// Suites no guest runs, with what they need.
    pub skipped: Vec<(String, String)>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PlannedSuite {
    pub name: String,
    pub mandatory: bool,
    pub budget_secs: u64,
}

impl Plan {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a plan serialises")
    }
}

/// The guest's init. Never returns: the guest powers off.
///
/// As pid 1 it forks first: the child runs the suites as the init always
/// did, while pid 1 reaps every orphan (as an init must) and opens files on
/// request (`PID_1_OPENER`).
pub fn guest_init() -> ! {
    if std::process::id() == 1 {
        // SAFETY: xtask's main has started no thread before it calls this,
        // so the child of this fork may run any code.
        match unsafe { libc::fork() } {
            0 => {}
            -1 => println!(
                "{MARK} note fork failed ({}): the suites run as pid 1, with no pid-1 opener",
                std::io::Error::last_os_error()
            ),
            runner => reap_as_pid_1(runner),
        }
    }
    let verdict = match run() {
        Ok(passed) => passed,
        Err(error) => {
            println!("{MARK} error {error:#}");
            println!("{MARK} verdict FAIL the guest init failed: {error:#}");
            false
        }
    };
    power_off(verdict)
}

fn run() -> anyhow::Result<bool> {
    let plan: Plan = {
        let path = Path::new(GUEST_DIR).join("guest.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
    };
    mount_kernel_filesystems(&plan.cgroups)?;
    checked(
        Command::new("ip").args(["link", "set", "lo", "up"]),
        "ip link set lo up",
    )?;

    let release = read_trimmed("/proc/sys/kernel/osrelease");
    println!("{MARK} kernel {release}");
    load_module(&release, "kernel/drivers/net/veth");
    println!("{MARK} lsm {}", read_trimmed("/sys/kernel/security/lsm"));
    println!("{MARK} cgroups {}", plan.cgroups);
    let agent = Path::new(GUEST_DIR).join("aiwatch");
    println!("{MARK} agent-sha256 {}", sha256_of(&agent)?);

    // Held until the guest powers off: the init never exits.
    let _hold = crate::tracepoint_hold::TracepointHold::open();
    let agent_ready = record_features(&agent);
    enter_suite_cgroup(&plan.cgroups)?;
    let mut failures = Vec::new();
    if !agent_ready {
        failures.push("agent".to_owned());
    }
    for suite in &plan.suites {
        let outcome = run_suite(suite);
        println!("{MARK} suite {} {}", suite.name, outcome.line());
        if !outcome.passed() {
            failures.push(suite.name.clone());
        }
    }
    for name in &plan.not_selected {
        println!("{MARK} suite {name} fail mandatory, not selected");
        failures.push(name.clone());
    }
    let ran: Vec<&str> = plan.suites.iter().map(|s| s.name.as_str()).collect();
    let skipped: Vec<String> = plan
        .skipped
        .iter()
        .map(|(name, why)| format!("{name}({why})"))
        .collect();
    let passed = failures.is_empty();
    println!(
        "{MARK} verdict {} kernel={release} cgroups={} ran={} failed={} skipped={}",
        if passed { "PASS" } else { "FAIL" },
        plan.cgroups,
        ran.join(","),
        if failures.is_empty() {
            "-".to_owned()
        } else {
            failures.join(",")
        },
        skipped.join(","),
    );
    Ok(passed)
}

/// Loads a module of the payload (`finit_module`; the root has no kmod).
/// A failure is one line: the suites that need the module then fail with
/// their own message.
fn load_module(release: &str, module: &str) {
    /// `MODULE_INIT_COMPRESSED_FILE`: the kernel decompresses the file.
    const COMPRESSED: libc::c_int = 4;
    let base = Path::new("/usr/lib/modules").join(release).join(module);
    let Some((path, flags)) = [("ko", 0), ("ko.xz", COMPRESSED), ("ko.gz", COMPRESSED)]
        .iter()
        .map(|(ext, flags)| (base.with_extension(ext), *flags))
        .find(|(path, _)| path.exists())
    else {
        println!("{MARK} module {module} missing from the payload");
        return;
    };
    let file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(err) => {
            println!("{MARK} module {} unreadable: {err}", path.display());
            return;
        }
    };
    // SAFETY: finit_module reads the open file and the NUL-terminated empty
    // parameter string; neither outlives the call.
    let result = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            std::os::fd::AsRawFd::as_raw_fd(&file),
            c"".as_ptr(),
            flags,
        )
    };
    if result == 0 {
        println!("{MARK} module {module} loaded");
    } else {
        println!(
            "{MARK} module {module} not loaded: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// proc, sys, dev, tmp, tracefs, securityfs, bpffs and the cgroups.
fn mount_kernel_filesystems(cgroups: &str) -> anyhow::Result<()> {
    let mut mounts: Vec<(&str, String, &str)> = [
        ("proc", "/proc"),
        ("sysfs", "/sys"),
        ("devtmpfs", "/dev"),
        ("tmpfs", "/tmp"),
        ("tmpfs", "/run"),
        ("tracefs", "/sys/kernel/tracing"),
        ("securityfs", "/sys/kernel/security"),
        ("bpf", "/sys/fs/bpf"),
    ]
    .into_iter()
    .map(|(fs_type, target)| (fs_type, target.to_owned(), ""))
    .collect();
    match cgroups {
        "unified" => mounts.push(("cgroup2", "/sys/fs/cgroup".into(), "")),
        "hybrid" => {
            mounts.push(("tmpfs", "/sys/fs/cgroup".into(), "mode=755"));
            // Controllers every kernel still offers to v1: 6.12 builds
            // memory and cpuset for cgroup2 only (CONFIG_MEMCG_V1=n).
            for controller in ["cpu,cpuacct", "pids", "devices"] {
                mounts.push(("cgroup", format!("/sys/fs/cgroup/{controller}"), controller));
            }
            mounts.push(("cgroup2", "/sys/fs/cgroup/unified".into(), ""));
        }
        other => bail!("unknown cgroup layout {other:?}"),
    }
    for (fs_type, target, options) in &mounts {
        std::fs::create_dir_all(target).with_context(|| format!("creating {target}"))?;
        let mut mount = Command::new("mount");
        mount.args(["-t", fs_type]);
        if !options.is_empty() {
            mount.args(["-o", options]);
        }
        mount.arg(fs_type).arg(target);
        checked(&mut mount, &format!("mounting {fs_type} at {target}"))?;
    }
    Ok(())
}

/// The cgroup2 mount of the guest's layout.
fn cgroup2_root(cgroups: &str) -> &'static str {
    if cgroups == "hybrid" {
        "/sys/fs/cgroup/unified"
    } else {
        "/sys/fs/cgroup"
    }
}

/// Where the guest's pid 1 opens files on request: the enforcement suite
/// asks it to open a protected file, to see that no rule acts on pid 1
/// (`tests/tests/enforce_open.rs`). Nothing else on a host offers this. In
/// the initramfs root, which no tmpfs of the runner covers.
pub const PID_1_OPENER: &str = "/aiwatch/pid1-opener.sock";

/// Pid 1's life: reaps every child, and powers off with a failed verdict if
/// the suite runner dies without powering off itself.
fn reap_as_pid_1(runner: libc::pid_t) -> ! {
    serve_opens_as_pid_1();
    loop {
        let mut status = 0;
        // SAFETY: waitpid only writes the status we own.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid == runner {
            println!("{MARK} verdict FAIL the guest's suite runner exited (wait status {status})");
            power_off(false);
        }
        if pid < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// Serves opens from a thread of pid 1 (the init's thread group, which the
/// kernel's rails know as pid 1): each connection sends a path and reads
/// back `ok <bytes read>` or `err <errno>`.
fn serve_opens_as_pid_1() {
    let listener = match std::os::unix::net::UnixListener::bind(PID_1_OPENER) {
        Ok(listener) => listener,
        Err(error) => {
            println!("{MARK} note no pid-1 opener at {PID_1_OPENER}: {error}");
            return;
        }
    };
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = String::new();
            let answer = match std::io::BufRead::read_line(
                &mut std::io::BufReader::new(&stream),
                &mut request,
            ) {
                Ok(_) => match std::fs::read(request.trim()) {
                    Ok(bytes) => format!("ok {}\n", bytes.len()),
                    Err(error) => format!("err {}\n", error.raw_os_error().unwrap_or(0)),
                },
                Err(error) => format!("err {}\n", error.raw_os_error().unwrap_or(0)),
            };
            let _ = std::io::Write::write_all(&mut stream, answer.as_bytes());
        }
    });
}

/// Moves the init into a cgroup of its own, as a service manager would, so
/// that the suites' processes are not in the root cgroup.
fn enter_suite_cgroup(cgroups: &str) -> anyhow::Result<()> {
    let dir = Path::new(cgroup2_root(cgroups)).join("aiwatch-suites");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string())
        .with_context(|| format!("moving the init into {}", dir.display()))
}

/// Starts the agent, prints its start-up feature lines, stops it. Whether
/// it got ready.
fn record_features(agent: &Path) -> bool {
    let startup = agent_startup(agent, Path::new("/tmp/aiwatch-features"));
    for line in &startup.lines {
        println!("{MARK} {line}");
    }
    startup.ready
}

/// The agent's start-up, as lines for the host: `feature <line>` for each
/// kernel feature line, `ready <line>`, `agent-log <line>` for the rest.
pub struct Startup {
    pub lines: Vec<String>,
    pub ready: bool,
}

/// Starts `agent` with its files in `dir`, reads its log until it is ready
/// (or gives up after [`AGENT_READY_BUDGET`]), and stops it.
pub fn agent_startup(agent: &Path, dir: &Path) -> Startup {
    let mut startup = Startup {
        lines: Vec::new(),
        ready: false,
    };
    let _ = std::fs::create_dir_all(dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or(9464);
    let config = format!(
        "listen: 127.0.0.1:{port}\nevents: {0}/events.jsonl\nalerts: {0}/alerts.jsonl\nstream_socket: {0}/stream.sock\nstate_dir: {0}/state\n",
        dir.display()
    );
    if let Err(error) = std::fs::write(dir.join("config.yaml"), config) {
        startup.lines.push(format!(
            "agent-log cannot write the agent's config: {error}"
        ));
        return startup;
    }
    let child = Command::new(agent)
        .arg("run")
        .arg("--config")
        .arg(dir.join("config.yaml"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => {
            startup.lines.push(format!(
                "agent-log cannot start {}: {error}",
                agent.display()
            ));
            return startup;
        }
    };
    let started = Instant::now();
    let (sender, receiver) = std::sync::mpsc::channel::<String>();
    if let Some(stderr) = child.stderr.take() {
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
    }
    while started.elapsed() < AGENT_READY_BUDGET {
        let Ok(line) = receiver.recv_timeout(Duration::from_secs(1)) else {
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            continue;
        };
        // After the `[time LEVEL ] ` prefix of the agent's log.
        let message = line.split_once("] ").map_or(line.as_str(), |(_, m)| m);
        if message.starts_with("kernel feature:") {
            startup.lines.push(format!("feature {message}"));
        } else if message.starts_with("aiwatch ready") {
            startup.lines.push(format!(
                "ready {message} (after {:.0}s)",
                started.elapsed().as_secs_f64()
            ));
            startup.ready = true;
            let missing = probes_not_attached(port);
            startup.lines.push(format!(
                "probes that failed to attach: {}",
                if missing.is_empty() {
                    "none".to_owned()
                } else {
                    missing.join(", ")
                }
            ));
            break;
        } else {
            startup.lines.push(format!("agent-log {message}"));
        }
    }
    if !startup.ready {
        startup.lines.push(format!(
            "agent-log the agent did not get ready within {}s",
            AGENT_READY_BUDGET.as_secs()
        ));
    }
    stop(&mut child);
    startup
}

/// The probes whose `aiwatch_probe_attached` gauge is 0 on the agent's
/// `/metrics`, or what made them unknowable.
fn probes_not_attached(port: u16) -> Vec<String> {
    use std::io::Write as _;
    let fetched = std::net::TcpStream::connect(("127.0.0.1", port)).and_then(|mut stream| {
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(stream, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut body = String::new();
        stream.read_to_string(&mut body)?;
        Ok(body)
    });
    match fetched {
        Ok(body) => body
            .lines()
            .filter_map(|line| line.strip_prefix("aiwatch_probe_attached{probe=\""))
            .filter_map(|rest| rest.strip_suffix("\"} 0"))
            .map(str::to_owned)
            .collect(),
        Err(error) => vec![format!("unknown (GET /metrics: {error})")],
    }
}

/// What became of a suite.
enum Outcome {
    Passed { secs: f64 },
    Failed { secs: f64, why: String },
}

impl Outcome {
    fn passed(&self) -> bool {
        matches!(self, Outcome::Passed { .. })
    }

    fn line(&self) -> String {
        match self {
            Outcome::Passed { secs } => format!("pass {secs:.0}s"),
            Outcome::Failed { secs, why } => format!("fail {secs:.0}s {why}"),
        }
    }
}

/// Runs one test executable, echoing its output; a mandatory suite that
/// skips a test fails.
fn run_suite(suite: &PlannedSuite) -> Outcome {
    println!(
        "{MARK} start {} (budget {}s)",
        suite.name, suite.budget_secs
    );
    let started = Instant::now();
    let executable = Path::new(GUEST_DIR).join("tests").join(&suite.name);
    let spawned = Command::new(&executable)
        .args(["--test-threads=2"])
        .env("AIWATCH_BIN", Path::new(GUEST_DIR).join("aiwatch"))
        .env("AIWATCH_REPO", GUEST_DIR)
        .env("AIWATCH_PYTHON", "/usr/bin/python3")
        .env("AIWATCH_REQUIRE_MODULE_LOADS", "1")
        .env("AIWATCH_STORM_EXECS", STORM_EXECS)
        .env(
            "AIWATCH_READY_TIMEOUT_S",
            AGENT_READY_BUDGET.as_secs().to_string(),
        )
        .env(
            "AIWATCH_EVENT_TIMEOUT_S",
            EVENT_BUDGET.as_secs().to_string(),
        )
        .env("RUST_BACKTRACE", "1")
        .env("TMPDIR", "/tmp")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(error) => {
            return Outcome::Failed {
                secs: 0.0,
                why: format!("cannot start {}: {error}", executable.display()),
            }
        }
    };
    let echoes: Vec<_> = [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|pipe| thread::spawn(move || echo_counting_skips(pipe)))
    .collect();
    let budget = Duration::from_secs(suite.budget_secs);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() > budget => break None,
            Ok(None) => thread::sleep(Duration::from_millis(200)),
            Err(_) => break None,
        }
    };
    if status.is_none() {
        stop(&mut child);
    }
    let skips: usize = echoes.into_iter().map(|e| e.join().unwrap_or(0)).sum();
    let secs = started.elapsed().as_secs_f64();
    match status {
        None => Outcome::Failed {
            secs,
            why: format!("timed out after {}s", suite.budget_secs),
        },
        Some(status) if !status.success() => Outcome::Failed {
            secs,
            why: format!("tests failed ({status})"),
        },
        Some(_) if suite.mandatory && skips > 0 => Outcome::Failed {
            secs,
            why: format!("{skips} test(s) skipped in a mandatory suite"),
        },
        Some(_) => Outcome::Passed { secs },
    }
}

/// Copies a pipe to the console line by line; the number of `skipped:` lines.
fn echo_counting_skips(pipe: Box<dyn Read + Send>) -> usize {
    let mut skips = 0;
    for line in BufReader::new(pipe).lines().map_while(Result::ok) {
        if line.starts_with("skipped:") {
            skips += 1;
        }
        println!("{line}");
    }
    skips
}

/// SIGTERM to the child's process group, SIGKILL after 10 s.
fn stop(child: &mut Child) {
    let Ok(pid) = i32::try_from(child.id()) else {
        return;
    };
    for (signal, grace) in [(libc::SIGTERM, 10), (libc::SIGKILL, 5)] {
        // SAFETY: kill has no memory preconditions; pid is our own child,
        // and -pid its process group when it leads one.
        unsafe {
            libc::kill(pid, signal);
            libc::kill(-pid, signal);
        }
        for _ in 0..grace * 10 {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }
}

fn checked(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("{what}: cannot start"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_owned())
        .unwrap_or_else(|error| format!("unreadable ({error})"))
}

/// Writes the verdict to QEMU's `isa-debug-exit` port, which ends QEMU with
/// that status; powers off if the port is absent.
fn power_off(passed: bool) -> ! {
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    // SAFETY: tcdrain and sync have no memory preconditions. tcdrain waits
    // until the serial console has sent the verdict line: the port write
    // below ends the VM at once.
    unsafe {
        libc::tcdrain(libc::STDOUT_FILENO);
        libc::sync();
    }
    thread::sleep(Duration::from_millis(500));
    let value = if passed { PASS_VALUE } else { FAIL_VALUE };
    // SAFETY: ioperm grants this process the one port; the guest is ours.
    if unsafe { libc::ioperm(u64::from(DEBUG_EXIT_PORT), 1, 1) } == 0 {
        // SAFETY: the port was granted above; writing it ends the VM (on a
        // machine without the device the write is ignored).
        unsafe {
            std::arch::asm!(
                "out dx, al",
                in("dx") DEBUG_EXIT_PORT,
                in("al") value,
                options(nomem, nostack, preserves_flags)
            );
        }
    }
    // SAFETY: reboot has no memory preconditions; we are the guest's init.
    unsafe { libc::reboot(libc::RB_POWER_OFF) };
    std::process::exit(if passed { 0 } else { 1 })
}
