//! The loops `cargo xtask bench` times, as one small native program so that
//! the measurement is not drowned in an interpreter's noise.
//!
//! ```text
//! aiwatch-bench-workload open-read-close FILE ITERATIONS [MARKER...]
//! aiwatch-bench-workload fork-exec ITERATIONS
//! aiwatch-bench-workload tcp-connect ITERATIONS
//! aiwatch-bench-workload udp-send ITERATIONS
//! aiwatch-bench-workload resolver ITERATIONS
//! aiwatch-bench-workload idle SECONDS [MARKER...]
//! aiwatch-bench-workload write-open FILE N RATE [MARKER...]
//! aiwatch-bench-workload http-load PORT REQUESTS CONCURRENCY BODY_FILE
//! ```
//!
//! `write-open` opens FILE for writing and closes it N times, RATE times a
//! second: one full file event per open for a tracked process (writes are
//! never folded), at a fixed event rate. `http-load` is the inference
//! server's load generator (`http_load.rs`); it is run by the server
//! script, not by the harness, and prints its own result line.
//!
//! `idle` only sleeps: a cheap process for the agent to hold as a workload
//! (the agent-memory measurement starts a thousand of them).
//!
//! Each prints `READY` once set up, waits for a line on standard input (the
//! harness first makes sure the agent has seen this process, e.g. tracked
//! it), runs its loop, and prints one line:
//! `RESULT wall_ns=<n> cpu_ns=<n>`, where the CPU time is user + system of
//! this process and its waited-for children during the loop. Trailing
//! MARKER arguments are ignored: they only make the command line match (or
//! not) a declared workload's argv pattern.

mod http_load;

use std::{
    ffi::CString,
    io::{BufRead, Read, Write},
    net::{TcpListener, TcpStream, UdpSocket},
    process::ExitCode,
    time::Instant,
};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("aiwatch-bench-workload: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<(), String> {
    let usage = "usage: aiwatch-bench-workload open-read-close FILE N [MARKER...] | fork-exec N [MARKER...] | tcp-connect N [MARKER...] | udp-send N | resolver N | idle SECONDS [MARKER...] | write-open FILE N RATE [MARKER...] | http-load PORT REQUESTS CONCURRENCY BODY_FILE";
    let (Some(case), Some(rest)) = (args.first(), args.get(1..)) else {
        return Err(usage.into());
    };
    match case.as_str() {
        "open-read-close" => {
            let (Some(file), Some(count)) = (rest.first(), rest.get(1)) else {
                return Err(usage.into());
            };
            let path = CString::new(file.as_str()).map_err(|_| "FILE has a NUL byte")?;
            let count = iterations(count)?;
            timed(|| open_read_close(&path, count))
        }
        "fork-exec" => {
            let count = iterations(rest.first().ok_or(usage)?)?;
            timed(|| fork_exec(count))
        }
        "tcp-connect" => {
            let count = iterations(rest.first().ok_or(usage)?)?;
            let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
            timed(|| tcp_connect(&listener, count))
        }
        "udp-send" => {
            let count = iterations(rest.first().ok_or(usage)?)?;
            let sink = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
            timed(|| udp_send(&sink, count))
        }
        "resolver" => {
            let count = iterations(rest.first().ok_or(usage)?)?;
            let resolver = Resolver::start()?;
            timed(|| lookups(count))?;
            drop(resolver);
            Ok(())
        }
        "write-open" => {
            let (Some(file), Some(count), Some(rate)) = (rest.first(), rest.get(1), rest.get(2))
            else {
                return Err(usage.into());
            };
            let path = CString::new(file.as_str()).map_err(|_| "FILE has a NUL byte")?;
            let (count, rate) = (iterations(count)?, iterations(rate)?);
            timed(|| write_open(&path, count, rate))
        }
        "http-load" => {
            let [port, requests, concurrency, body] = rest else {
                return Err(usage.into());
            };
            let port = port
                .parse()
                .map_err(|_| format!("{port:?} is not a port"))?;
            let body = std::fs::read(body).map_err(|e| format!("reading {body}: {e}"))?;
            http_load::run(port, iterations(requests)?, iterations(concurrency)?, &body)
        }
        "idle" => {
            let seconds = iterations(rest.first().ok_or(usage)?)?;
            std::thread::sleep(std::time::Duration::from_secs(seconds));
            Ok(())
        }
        other => Err(format!("unknown case {other:?}; {usage}")),
    }
}

fn iterations(text: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|_| format!("{text:?} is not a number of iterations"))
}

/// Says `READY`, waits for the go line, runs `work` and prints its cost.
fn timed(work: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    let mut stdout = std::io::stdout();
    writeln!(stdout, "READY")
        .and_then(|()| stdout.flush())
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("reading the go line: {e}"))?;
    let cpu_before = cpu_ns();
    let started = Instant::now();
    work()?;
    let wall_ns = started.elapsed().as_nanos();
    let cpu_ns = cpu_ns().saturating_sub(cpu_before);
    writeln!(stdout, "RESULT wall_ns={wall_ns} cpu_ns={cpu_ns}")
        .and_then(|()| stdout.flush())
        .map_err(|e| e.to_string())
}

/// User + system time of this process and its reaped children.
fn cpu_ns() -> u64 {
    let mut total = 0;
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: `rusage` is plain integers, valid when all-zero.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: getrusage fills the struct we own.
        if unsafe { libc::getrusage(who, &mut usage) } == 0 {
            for time in [usage.ru_utime, usage.ru_stime] {
                total += time.tv_sec as u64 * 1_000_000_000 + time.tv_usec as u64 * 1_000;
            }
        }
    }
    total
}

/// `open`, one small `read`, `close`: the syscalls the file family hooks.
fn open_read_close(path: &CString, count: u64) -> Result<(), String> {
    let mut buffer = [0u8; 64];
    for _ in 0..count {
        // SAFETY: a NUL-terminated path; a buffer we own; the fd we opened.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(format!("open: {}", std::io::Error::last_os_error()));
            }
            libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len());
            libc::close(fd);
        }
    }
    Ok(())
}

/// `open(O_WRONLY)` and `close`, `rate` times a second: every millisecond
/// the loop catches up with the opens due by then, so the rate holds on
/// average whatever the timer's slack.
fn write_open(path: &CString, count: u64, rate: u64) -> Result<(), String> {
    let started = Instant::now();
    let mut done = 0;
    while done < count {
        let due = (started.elapsed().as_nanos() * u128::from(rate) / 1_000_000_000) as u64;
        while done < due.min(count) {
            // SAFETY: a NUL-terminated path; the fd we opened.
            unsafe {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(format!("open: {}", std::io::Error::last_os_error()));
                }
                libc::close(fd);
            }
            done += 1;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    Ok(())
}

/// `fork`, `execv("/bin/true")` in the child, `waitpid`: one process
/// lifecycle (fork, exec, exit events) per iteration.
fn fork_exec(count: u64) -> Result<(), String> {
    let program = c"/bin/true";
    let argv = [program.as_ptr(), std::ptr::null()];
    for _ in 0..count {
        // SAFETY: the child only calls async-signal-safe execv and _exit.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("fork: {}", std::io::Error::last_os_error()));
        }
        if pid == 0 {
            // SAFETY: `program` and the NULL-terminated `argv` outlive the
            // call; in the forked child only these async-signal-safe calls run.
            unsafe {
                libc::execv(program.as_ptr(), argv.as_ptr());
                libc::_exit(127);
            }
        }
        let mut status = 0;
        // SAFETY: waiting for the child we just forked.
        if unsafe { libc::waitpid(pid, &mut status, 0) } != pid
            || !libc::WIFEXITED(status)
            || libc::WEXITSTATUS(status) != 0
        {
            return Err("/bin/true did not exit with status 0".into());
        }
    }
    Ok(())
}

/// A loopback connection per iteration: connect, accept, the server closes,
/// the client reads the end of stream and closes.
fn tcp_connect(listener: &TcpListener, count: u64) -> Result<(), String> {
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let server = listener.try_clone().map_err(|e| e.to_string())?;
    let acceptor = std::thread::spawn(move || {
        for _ in 0..count {
            match server.accept() {
                Ok((stream, _)) => drop(stream),
                Err(error) => return Err(format!("accept: {error}")),
            }
        }
        Ok(())
    });
    for _ in 0..count {
        let mut stream = TcpStream::connect(address).map_err(|e| format!("connect: {e}"))?;
        let mut byte = [0u8; 1];
        // The server closes first: end of stream.
        let _ = stream.read(&mut byte);
    }
    acceptor
        .join()
        .map_err(|_| "the accepting thread panicked".to_string())?
}

/// Datagrams of 64 bytes to a socket on loopback (port not 53), with an
/// address each time: the `sendto` path of an untracked process.
fn udp_send(sink: &UdpSocket, count: u64) -> Result<(), String> {
    let address = sink.local_addr().map_err(|e| e.to_string())?;
    let sender = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    sink.set_nonblocking(true).map_err(|e| e.to_string())?;
    let payload = [7u8; 64];
    let mut buffer = [0u8; 64];
    for _ in 0..count {
        sender
            .send_to(&payload, address)
            .map_err(|e| format!("sendto: {e}"))?;
        // Drain, so the socket buffer never fills and drops.
        while sink.recv(&mut buffer).is_ok() {}
    }
    Ok(())
}

/// Where the private resolver listens: loopback, port 53, an address no
/// real resolver uses.
const RESOLVER_ADDRESS: &str = "127.0.53.251";

/// A DNS server of this process's own, answering every A question with
/// 10.0.0.1 and every other with no records, and this process's view of
/// `/etc/resolv.conf` pointing at it (a private mount namespace), so that
/// glibc's `getaddrinfo` takes its real path: a connected UDP socket,
/// `sendmmsg` of the A and AAAA queries, `recvfrom` of the answers.
struct Resolver {
    _thread: std::thread::JoinHandle<()>,
}

impl Resolver {
    fn start() -> Result<Resolver, String> {
        let socket = UdpSocket::bind((RESOLVER_ADDRESS, 53))
            .map_err(|e| format!("bind {RESOLVER_ADDRESS}:53: {e}"))?;
        let conf =
            std::env::temp_dir().join(format!("aiwatch-bench-resolv-{}", std::process::id()));
        std::fs::write(
            &conf,
            format!("nameserver {RESOLVER_ADDRESS}\noptions timeout:1 attempts:1\n"),
        )
        .map_err(|e| e.to_string())?;
        let conf_c = CString::new(conf.to_string_lossy().as_bytes()).map_err(|e| e.to_string())?;
        // SAFETY: plain syscalls on C strings we own; they only change this
        // process's mount namespace.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(format!("unshare: {}", std::io::Error::last_os_error()));
            }
            if libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
                || libc::mount(
                    conf_c.as_ptr(),
                    c"/etc/resolv.conf".as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ) != 0
            {
                return Err(format!("mount: {}", std::io::Error::last_os_error()));
            }
        }
        let _ = std::fs::remove_file(&conf);
        let thread = std::thread::spawn(move || {
            let mut buffer = [0u8; 512];
            while let Ok((len, peer)) = socket.recv_from(&mut buffer) {
                if let Some(reply) = answer(&buffer[..len]) {
                    let _ = socket.send_to(&reply, peer);
                }
            }
        });
        Ok(Resolver { _thread: thread })
    }
}

/// The reply to a one-question query: the question echoed, and one A record
/// (10.0.0.1, TTL 60) when it asks for A.
fn answer(query: &[u8]) -> Option<Vec<u8>> {
    if query.len() < 12 + 5 {
        return None;
    }
    let mut reply = query.to_vec();
    reply[2] |= 0x80; // a response
    reply[3] = 0x80; // recursion available, no error
    let qtype = u16::from_be_bytes([query[query.len() - 4], query[query.len() - 3]]);
    reply[6..12].copy_from_slice(&[0, 0, 0, 0, 0, 0]);
    if qtype == 1 {
        reply[7] = 1;
        reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 1]);
    }
    Some(reply)
}

/// `getaddrinfo` of a name only DNS knows, in a loop.
fn lookups(count: u64) -> Result<(), String> {
    let name = c"bench.example.test";
    for _ in 0..count {
        // SAFETY: hints is plain data, valid when zeroed; the result list
        // is freed before the next call.
        unsafe {
            let mut hints: libc::addrinfo = std::mem::zeroed();
            hints.ai_socktype = libc::SOCK_STREAM;
            let mut result: *mut libc::addrinfo = std::ptr::null_mut();
            let rc = libc::getaddrinfo(name.as_ptr(), std::ptr::null(), &hints, &mut result);
            if rc != 0 {
                return Err(format!("getaddrinfo failed: {rc}"));
            }
            libc::freeaddrinfo(result);
        }
    }
    Ok(())
}
