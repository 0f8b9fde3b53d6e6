//! The loops `cargo xtask bench` times, as one small native program so that
//! the measurement is not drowned in an interpreter's noise.
//!
//! ```text
//! aiwatch-bench-workload open-read-close FILE ITERATIONS [MARKER...]
//! aiwatch-bench-workload fork-exec ITERATIONS
//! aiwatch-bench-workload tcp-connect ITERATIONS
//! ```
//!
//! Each prints `READY` once set up, waits for a line on standard input (the
//! harness first makes sure the agent has seen this process, e.g. tracked
//! it), runs its loop, and prints one line:
//! `RESULT wall_ns=<n> cpu_ns=<n>`, where the CPU time is user + system of
//! this process and its waited-for children during the loop. Trailing
//! MARKER arguments are ignored: they only make the command line match (or
//! not) a declared workload's argv pattern.

use std::{
    ffi::CString,
    io::{BufRead, Read, Write},
    net::{TcpListener, TcpStream},
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
    let usage = "usage: aiwatch-bench-workload open-read-close FILE N [MARKER...] | fork-exec N | tcp-connect N";
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
