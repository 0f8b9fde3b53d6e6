//! Alert summaries: one sentence naming the process (exe and pid) and what
//! it acted on (file, destination, DNS name, child executable, ...).

use crate::event::{Access, Endpoint, Event, Kind};

fn endpoint(ep: Option<&Endpoint>) -> String {
    match ep {
        Some(ep) => std::net::SocketAddr::new(ep.ip, ep.port).to_string(),
        None => "an unknown address".to_string(),
    }
}

/// Bytes in a short human unit (`1.5 MiB`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `/usr/bin/python3 (pid 42)`.
fn actor(exe: &str, pid: u32) -> String {
    let exe = if exe.is_empty() {
        "an unknown program"
    } else {
        exe
    };
    format!("{exe} (pid {pid})")
}

/// What the process did, as a verb phrase.
fn deed(ev: &Event) -> String {
    let file = ev.file.as_ref();
    let path = file.map_or("an unknown file", |f| f.path.as_str());
    let net = ev.net.as_ref();
    let sys = ev.syscall.as_ref();
    match ev.kind {
        Kind::Exec => {
            let args = ev.process.argv.join(" ");
            let args = if args.is_empty() {
                args
            } else if args.chars().count() > 200 {
                format!(": {}...", args.chars().take(200).collect::<String>())
            } else {
                format!(": {args}")
            };
            match &ev.parent {
                Some(parent) => format!(
                    "{} started {} (pid {}){args}",
                    actor(&parent.exe, parent.pid),
                    ev.process.exe,
                    ev.process.pid
                ),
                None => format!("was started{args}"),
            }
        }
        Kind::Fork => format!(
            "forked child pid {}",
            ev.fork.as_ref().map_or(0, |f| f.child_pid)
        ),
        Kind::Exit => "exited".to_string(),
        Kind::Open => {
            let class = file
                .and_then(|f| f.class)
                .map(|c| format!(" ({c})"))
                .unwrap_or_default();
            let verb = match file.and_then(|f| f.access) {
                Some(Access::Write) => "for writing",
                Some(Access::ReadWrite) => "for reading and writing",
                Some(Access::Read) => "for reading",
                None => "",
            };
            format!("opened {path}{class} {verb}")
                .trim_end()
                .to_string()
        }
        Kind::Unlink => format!("deleted {path}"),
        Kind::Rename => format!(
            "renamed {path} to {}",
            file.and_then(|f| f.target.as_deref())
                .unwrap_or("an unknown name")
        ),
        Kind::Link => format!(
            "linked {} to {path}",
            file.and_then(|f| f.target.as_deref())
                .unwrap_or("an unknown name")
        ),
        Kind::Chmod => format!("changed the mode of {path}"),
        Kind::FileAccess => format!(
            "read {} files in {path}",
            file.and_then(|f| f.count).unwrap_or(0)
        ),
        Kind::Truncate => format!("truncated {path}"),
        Kind::Connect => {
            let name = net
                .and_then(|n| n.dst_name.as_deref())
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            format!(
                "connected to {}{name}",
                endpoint(net.and_then(|n| n.dst.as_ref()))
            )
        }
        Kind::Accept => format!(
            "accepted a connection from {}",
            endpoint(net.and_then(|n| n.dst.as_ref()))
        ),
        Kind::Bind => format!("bound {}", endpoint(net.and_then(|n| n.src.as_ref()))),
        Kind::Listen => format!("listens on {}", endpoint(net.and_then(|n| n.src.as_ref()))),
        Kind::TcpSummary | Kind::UdpSend => format!(
            "sent {} to {}",
            human_bytes(net.and_then(|n| n.bytes_sent).unwrap_or(0)),
            endpoint(net.and_then(|n| n.dst.as_ref()))
        ),
        Kind::Dns => match &ev.dns {
            Some(dns) => format!("looked up {} ({})", dns.name, dns.qtype),
            None => "made a DNS query".to_string(),
        },
        Kind::HttpRequest => format!(
            "sent an HTTP request to {} for {}",
            endpoint(net.and_then(|n| n.dst.as_ref())),
            net.and_then(|n| n.http_host.as_deref())
                .unwrap_or("no host")
        ),
        Kind::TlsClientHello => format!(
            "began TLS with {} for {}",
            endpoint(net.and_then(|n| n.dst.as_ref())),
            net.and_then(|n| n.tls_server_name.as_deref())
                .unwrap_or("no server name")
        ),
        Kind::DnsAnswer => match &ev.dns {
            Some(dns) if !dns.answers.is_empty() => format!(
                "got {} for {}{}",
                dns.answers
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                dns.name,
                if dns.verified == Some(true) {
                    ""
                } else {
                    " (unverified)"
                }
            ),
            Some(dns) => format!("got a DNS answer for {}", dns.name),
            None => "got a DNS answer".to_string(),
        },
        Kind::Setuid => format!(
            "called setuid to uid {}",
            sys.and_then(|s| s.uid)
                .map_or("?".to_string(), |u| u.to_string())
        ),
        Kind::Setgid => format!(
            "called setgid to gid {}",
            sys.and_then(|s| s.gid)
                .map_or("?".to_string(), |g| g.to_string())
        ),
        Kind::Capset => "changed its capabilities".to_string(),
        Kind::Ptrace => {
            let target = sys
                .and_then(|s| s.target_pid)
                .map_or("?".to_string(), |p| p.to_string());
            match sys.map(|s| s.syscall.as_str()) {
                Some(call @ ("process_vm_writev" | "pidfd_getfd")) => {
                    format!("called {call} on pid {target}")
                }
                _ => format!(
                    "called ptrace {} on pid {target}",
                    sys.and_then(|s| s.request.as_deref()).unwrap_or("?"),
                ),
            }
        }
        Kind::Signal => format!(
            "sent {} to the aiwatch agent (pid {})",
            sys.and_then(|s| s.signal.as_deref()).unwrap_or("a signal"),
            sys.and_then(|s| s.target_pid)
                .map_or("?".to_string(), |p| p.to_string())
        ),
        Kind::ModuleLoad => format!(
            "loaded kernel module {}",
            sys.and_then(|s| s.name.as_deref()).unwrap_or("(unnamed)")
        ),
        Kind::Bpf => match sys.and_then(|s| s.bpf_id) {
            Some(id) => format!(
                "called bpf {} for id {id}{}",
                sys.and_then(|s| s.bpf_cmd.as_deref()).unwrap_or("?"),
                if sys.is_some_and(|s| s.target_agent) {
                    ", one of the aiwatch agent's own"
                } else {
                    ""
                }
            ),
            None => format!(
                "called bpf {}",
                sys.and_then(|s| s.bpf_cmd.as_deref()).unwrap_or("?")
            ),
        },
        Kind::MemfdCreate => format!(
            "created memfd {}",
            sys.and_then(|s| s.name.as_deref()).unwrap_or("(unnamed)")
        ),
        Kind::ExecMemory => "mapped anonymous executable memory".to_string(),
        Kind::GpuIoctl => "issued GPU ioctls".to_string(),
        Kind::ClearText => "sent or received LLM traffic".to_string(),
        Kind::LlmRequest => match &ev.llm {
            Some(llm) => format!(
                "asked {} model {} at {}",
                llm.provider,
                if llm.model.is_empty() {
                    "?"
                } else {
                    &llm.model
                },
                llm.host
            ),
            None => "called an LLM API".to_string(),
        },
        Kind::LlmResponse => match &ev.llm {
            Some(llm) => format!(
                "was answered by {} model {}",
                llm.provider,
                if llm.model.is_empty() {
                    "?"
                } else {
                    &llm.model
                }
            ),
            None => "was answered by an LLM API".to_string(),
        },
    }
}

/// `, because <provider> model <model> answered with tool <tool>`, for an
/// action a model's answer asked for.
fn because(ev: &Event) -> String {
    let Some(cause) = &ev.cause else {
        return String::new();
    };
    let how = match &cause.tool {
        Some(tool) => format!("a call of tool {tool}"),
        None => format!("{} `{}`", cause.what, cause.matched),
    };
    format!(
        ", because {} model {} answered with {how}",
        cause.provider, cause.model
    )
}

/// `<process> <deed>`, e.g. `/usr/bin/cat (pid 7) opened /models/m.gguf`.
pub fn what_happened(ev: &Event) -> String {
    let deed = deed(ev);
    let because = because(ev);
    if ev.kind == Kind::Exec && ev.parent.is_some() {
        format!("{deed}{because}")
    } else {
        format!("{} {deed}{because}", actor(&ev.process.exe, ev.process.pid))
    }
}

/// `<rule description>: <process> <deed> [, after <first step>] [in
/// workload <name> (<kind>)]`. `steps` are a sequence's events.
pub fn summarize(description: &str, rule_id: &str, ev: &Event, steps: &[Event]) -> String {
    let mut who_did = what_happened(ev);
    if let Some(first) = steps.first().filter(|_| steps.len() > 1) {
        who_did = format!("{who_did}, after {}", what_happened(first));
    }
    let workload = ev
        .workload
        .as_ref()
        .map(|w| format!(" in workload {} ({})", w.name, w.kind))
        .unwrap_or_default();
    let title = if description.is_empty() {
        rule_id
    } else {
        description
    };
    format!("{title}: {who_did}{workload}")
}
