//! Network events end to end: real sockets on loopback, asserted by the
//! pids of the processes this test starts.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
};

use aiwatch_tests::{free_port, get, kind_of, pid_of, Agent, AgentOptions, TempDir};
use serde_json::Value;

const PYTHON: &str = "/usr/bin/python3";

/// Starts `python3 -c script args...` with a piped stdout.
fn python(script: &str, args: &[&str]) -> Child {
    Command::new(PYTHON)
        .arg("-c")
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start python3")
}

/// Waits for a child's first stdout line (a readiness signal).
fn first_line(child: &mut Child) -> String {
    let out = child.stdout.as_mut().expect("stdout");
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).expect("read");
    line.trim().to_owned()
}

fn wait_ok(mut child: Child) {
    let status = child.wait().expect("wait");
    assert!(status.success(), "python failed: {status:?}");
}

fn endpoint(event: &Value, which: &str) -> (String, u64) {
    (
        get(event, &format!("net.{which}.ip"))
            .as_str()
            .unwrap_or("")
            .to_owned(),
        get(event, &format!("net.{which}.port"))
            .as_u64()
            .unwrap_or(0),
    )
}

const TCP_SERVER: &str = r#"
import socket, sys
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
srv = socket.socket(family, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(1)
print("ready", flush=True)
conn, peer = srv.accept()
want, got = int(sys.argv[3]), 0
while got < want:
    data = conn.recv(65536)
    if not data:
        break
    got += len(data)
conn.sendall(b"y" * int(sys.argv[4]))
conn.recv(1)  # the client's close
conn.close()
srv.close()
"#;

const TCP_CLIENT: &str = r#"
import socket, sys
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])))
conn.sendall(b"x" * int(sys.argv[3]))
want, got = int(sys.argv[4]), 0
while got < want:
    data = conn.recv(65536)
    if not data:
        break
    got += len(data)
conn.close()
"#;

/// Declares processes whose argv carries `marker` a workload: the agent
/// then tracks them in the kernel, and they get every event.
fn tracked_agent(marker: &str) -> Agent {
    Agent::start_with(AgentOptions {
        config: format!(
            "workloads:\n  declared:\n    - name: net-test\n      kind: inference\n      match: {{argv: \"*{marker}*\"}}\n"
        ),
        ..Default::default()
    })
}

#[test]
fn tcp_connection_lifecycle_and_byte_totals() {
    let marker = format!("aiwatch-net-server-{}", std::process::id());
    let agent = tracked_agent(&marker);
    let port = free_port();
    let port_s = port.to_string();
    let mut server = python(
        TCP_SERVER,
        &["127.0.0.1", &port_s, "10000", "2500", &marker],
    );
    let server_pid = server.id() as u64;
    assert_eq!(first_line(&mut server), "ready");
    // The server is a declared workload: tracked from its exec on.
    agent.wait_event("the server's exec, in its workload", |e| {
        kind_of(e) == "exec" && pid_of(e) == server_pid && get(e, "workload.name") == "net-test"
    });
    let client = python(TCP_CLIENT, &["127.0.0.1", &port_s, "10000", "2500"]);
    let client_pid = client.id() as u64;
    wait_ok(client);
    wait_ok(server);

    let bind = agent.wait_event("bind by the server", |e| {
        kind_of(e) == "bind" && pid_of(e) == server_pid
    });
    assert_eq!(endpoint(&bind, "src"), ("127.0.0.1".into(), port as u64));
    assert_eq!(get(&bind, "net.result").as_i64(), Some(0));
    let listen = agent.wait_event("listen by the server", |e| {
        kind_of(e) == "listen" && pid_of(e) == server_pid
    });
    assert_eq!(endpoint(&listen, "src").1, port as u64);
    assert_eq!(get(&listen, "net.protocol"), "tcp");

    // The connect to the server: a process may connect elsewhere first
    // (glibc asks nscd over a unix socket when HOME is unset).
    let connect = agent.wait_event("connect by the client", |e| {
        kind_of(e) == "connect" && pid_of(e) == client_pid && get(e, "net.family") == "ipv4"
    });
    assert_eq!(endpoint(&connect, "dst"), ("127.0.0.1".into(), port as u64));
    assert_eq!(get(&connect, "net.result").as_i64(), Some(0));
    assert_eq!(get(&connect, "net.family"), "ipv4");
    assert_eq!(get(&connect, "net.protocol"), "tcp");
    assert!(
        get(&connect, "net.dst_external").is_null(),
        "loopback is not external"
    );
    let client_port = endpoint(&connect, "src").1;
    assert!(client_port > 0);

    let accept = agent.wait_event("accept by the tracked server", |e| {
        kind_of(e) == "accept" && pid_of(e) == server_pid
    });
    assert_eq!(endpoint(&accept, "dst"), ("127.0.0.1".into(), client_port));
    assert!(
        get(&accept, "net.result").as_i64().unwrap() >= 0,
        "{accept}"
    );

    let client_summary = agent.wait_event("the client's tcp_summary", |e| {
        kind_of(e) == "tcp_summary" && pid_of(e) == client_pid
    });
    assert_eq!(
        get(&client_summary, "net.bytes_sent").as_u64(),
        Some(10_000)
    );
    assert_eq!(
        get(&client_summary, "net.bytes_received").as_u64(),
        Some(2_500)
    );
    assert_eq!(get(&client_summary, "net.closed").as_bool(), Some(true));
    assert_eq!(endpoint(&client_summary, "dst").1, port as u64);
    assert_eq!(endpoint(&client_summary, "src").1, client_port);

    let server_summary = agent.wait_event("the server's tcp_summary", |e| {
        kind_of(e) == "tcp_summary" && pid_of(e) == server_pid
    });
    assert_eq!(get(&server_summary, "net.bytes_sent").as_u64(), Some(2_500));
    assert_eq!(
        get(&server_summary, "net.bytes_received").as_u64(),
        Some(10_000)
    );
    assert_eq!(endpoint(&server_summary, "dst").1, client_port);
    assert_eq!(get(&server_summary, "workload.name"), "net-test");
}

#[test]
fn loopback_accepts_of_untracked_servers_are_filtered_in_the_kernel() {
    let agent = Agent::start();
    let port = free_port();
    let port_s = port.to_string();
    let mut server = python(TCP_SERVER, &["127.0.0.1", &port_s, "100", "50"]);
    let server_pid = server.id() as u64;
    assert_eq!(first_line(&mut server), "ready");
    let client = python(TCP_CLIENT, &["127.0.0.1", &port_s, "100", "50"]);
    let client_pid = client.id() as u64;
    wait_ok(client);
    wait_ok(server);
    // The client's side carries the connection and its bytes ...
    agent.wait_event("connect by the client", |e| {
        kind_of(e) == "connect" && pid_of(e) == client_pid
    });
    let summary = agent.wait_event("the client's tcp_summary", |e| {
        kind_of(e) == "tcp_summary" && pid_of(e) == client_pid
    });
    assert_eq!(get(&summary, "net.bytes_sent").as_u64(), Some(100));
    agent.wait_event("the server's exit", |e| {
        kind_of(e) == "exit" && pid_of(e) == server_pid
    });
    // ... the untracked server's view of the same loopback connection is
    // counted as filtered, not sent.
    let server_net: Vec<_> = agent
        .events()
        .into_iter()
        .filter(|e| pid_of(e) == server_pid && matches!(kind_of(e), "accept" | "tcp_summary"))
        .collect();
    assert!(server_net.is_empty(), "{server_net:?}");
    // The telemetry task copies the kernel's counters every few seconds.
    let filtered = aiwatch_tests::wait_until(
        "the accept filter counter",
        std::time::Duration::from_secs(15),
        || {
            let (_, metrics) = agent.http_get("/metrics");
            metrics
                .lines()
                .find(|l| l.starts_with("aiwatch_kernel_events_filtered_total{kind=\"accept\"}"))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .filter(|filtered| *filtered >= 1.0)
        },
    );
    assert!(filtered.is_some(), "the accept filter counter stayed at 0");
}

#[test]
fn ipv6_connect_to_loopback() {
    let agent = Agent::start();
    let port = free_port().to_string();
    let mut server = python(TCP_SERVER, &["::1", &port, "10", "5"]);
    let server_pid = server.id() as u64;
    assert_eq!(first_line(&mut server), "ready");
    let client = python(TCP_CLIENT, &["::1", &port, "10", "5"]);
    let client_pid = client.id() as u64;
    wait_ok(client);
    wait_ok(server);
    let connect = agent.wait_event("IPv6 connect", |e| {
        kind_of(e) == "connect" && pid_of(e) == client_pid && get(e, "net.family") == "ipv6"
    });
    assert_eq!(get(&connect, "net.family"), "ipv6");
    assert_eq!(endpoint(&connect, "dst").0, "::1");
    assert_eq!(get(&connect, "net.result").as_i64(), Some(0));
    let summary = agent.wait_event("IPv6 tcp_summary", |e| {
        kind_of(e) == "tcp_summary" && pid_of(e) == client_pid
    });
    assert_eq!(
        (
            get(&summary, "net.bytes_sent").as_u64(),
            get(&summary, "net.bytes_received").as_u64()
        ),
        (Some(10), Some(5))
    );
    let _ = server_pid;
}

#[test]
fn unix_socket_connect_reports_the_path_and_a_refused_non_blocking_connect_its_error() {
    let agent = Agent::start();
    let dir = TempDir::new("net-unix");
    let path = dir.path().join("agent.sock");
    let path_s = path.display().to_string();
    let script = r#"
import socket, sys, errno
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(sys.argv[1])
srv.listen(1)
cli = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
cli.connect(sys.argv[1])
cli.close()
srv.close()
# Nothing listens on this port: a non-blocking connect returns EINPROGRESS.
nb = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
nb.setblocking(False)
assert nb.connect_ex(("127.0.0.1", int(sys.argv[2]))) == errno.EINPROGRESS
nb.close()
"#;
    let port = free_port().to_string();
    let child = python(script, &[&path_s, &port]);
    let pid = child.id() as u64;
    wait_ok(child);
    let connect = agent.wait_event("unix connect", |e| {
        kind_of(e) == "connect"
            && pid_of(e) == pid
            && get(e, "net.family") == "unix"
            && get(e, "net.unix_path") == path_s.as_str()
    });
    assert_eq!(get(&connect, "net.unix_path"), path_s.as_str());
    assert_eq!(get(&connect, "net.result").as_i64(), Some(0));
    let bind = agent.wait_event("unix bind", |e| kind_of(e) == "bind" && pid_of(e) == pid);
    assert_eq!(get(&bind, "net.unix_path"), path_s.as_str());
    let pending = agent.wait_event("non-blocking connect", |e| {
        kind_of(e) == "connect" && pid_of(e) == pid && get(e, "net.family") == "ipv4"
    });
    assert_eq!(get(&pending, "net.result").as_i64(), Some(-115));
    assert_eq!(endpoint(&pending, "dst").1.to_string(), port);
}

#[test]
fn dns_queries_over_udp_are_parsed() {
    let agent = Agent::start();
    // The whole of 127/8 is loopback: a private address keeps this stub off
    // any real resolver's port 53 and off other tests'.
    let server_ip = format!("127.0.53.{}", std::process::id() % 200 + 20);
    let stub = r#"
import socket, sys
srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
srv.bind((sys.argv[1], 53))
print("ready", flush=True)
for _ in range(2):
    query, peer = srv.recvfrom(512)
    reply = bytearray(query)
    reply[2] |= 0x80  # QR: a response with no answers
    srv.sendto(bytes(reply), peer)
"#;
    let client = r#"
import socket, struct, sys
def query(name, qtype):
    out = struct.pack(">HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0" + struct.pack(">HH", qtype, 1)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(10)
server = (sys.argv[1], 53)
sock.sendto(query("models.example.test", 1), server)
sock.recvfrom(512)
sock.sendmsg([query("weights.example.test", 28)], [], 0, server)
sock.recvfrom(512)
"#;
    let mut server = python(stub, &[&server_ip]);
    assert_eq!(first_line(&mut server), "ready");
    let client = python(client, &[&server_ip]);
    let pid = client.id() as u64;
    wait_ok(client);
    wait_ok(server);

    let dns = agent.wait_event("DNS query by sendto", |e| {
        kind_of(e) == "dns" && pid_of(e) == pid && get(e, "dns.name") == "models.example.test"
    });
    assert_eq!(get(&dns, "dns.qtype"), "A");
    assert_eq!(get(&dns, "dns.server.ip"), server_ip.as_str());
    assert_eq!(get(&dns, "dns.server.port").as_u64(), Some(53));
    let dns6 = agent.wait_event("DNS query by sendmsg", |e| {
        kind_of(e) == "dns" && pid_of(e) == pid && get(e, "dns.name") == "weights.example.test"
    });
    assert_eq!(get(&dns6, "dns.qtype"), "AAAA");

    let send = agent.wait_event("udp_send to port 53", |e| {
        kind_of(e) == "udp_send" && pid_of(e) == pid
    });
    assert_eq!(endpoint(&send, "dst"), (server_ip.clone(), 53));
    assert_eq!(get(&send, "net.protocol"), "udp");
    // The query's size: a 12-byte header, the name, type and class.
    assert_eq!(
        get(&send, "net.bytes_sent").as_u64(),
        Some(12 + "models.example.test".len() as u64 + 2 + 4)
    );
    assert!(get(&send, "net.result").is_null());
}

#[test]
fn the_agents_own_sockets_are_never_reported() {
    // Every process's file operations are reported, so the agent's own reads
    // of /proc (its process collector, on each scrape) would show up too if
    // it traced itself.
    let agent = Agent::start_with(AgentOptions {
        config: "trace_all_files: true".into(),
        ..Default::default()
    });
    // The agent accepts this connection on its own listener, and reads its
    // own /proc files to answer.
    let (status, body) = agent.http_get("/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("process_open_fds"), "{body}");
    let me = std::process::id() as u64;
    agent.wait_event("this test's connect to the agent", |e| {
        kind_of(e) == "connect" && pid_of(e) == me
    });
    // Sentinel: an open by this test, after the scrape, has arrived.
    let marker = TempDir::new("own-sockets");
    let marker_path = marker.path().join("sentinel");
    std::fs::write(&marker_path, "x").unwrap();
    let marker_path = marker_path.display().to_string();
    agent.wait_event("the sentinel open", |e| {
        kind_of(e) == "open" && pid_of(e) == me && get(e, "file.path") == marker_path.as_str()
    });
    let agent_pid = agent.pid() as u64;
    assert!(
        !agent.events().iter().any(|e| pid_of(e) == agent_pid),
        "the agent reported itself"
    );
}

#[test]
fn long_lived_connections_are_summarised_periodically() {
    let agent = Agent::start_with(AgentOptions {
        config: "tcp_summary_interval_secs: 1".into(),
        ..Default::default()
    });
    let port = free_port().to_string();
    // The server reads 3,000 bytes, answers 700, and both then hold the
    // connection open for a few seconds before closing.
    let server_script = TCP_SERVER.replace("conn.recv(1)  # the client's close", "conn.recv(1)");
    let mut server = python(&server_script, &["127.0.0.1", &port, "3000", "700"]);
    assert_eq!(first_line(&mut server), "ready");
    let client_script =
        TCP_CLIENT.replace("conn.close()", "import time; time.sleep(4); conn.close()");
    let client = python(&client_script, &["127.0.0.1", &port, "3000", "700"]);
    let client_pid = client.id() as u64;
    let open = agent.wait_event("a periodic summary of the open connection", |e| {
        kind_of(e) == "tcp_summary"
            && pid_of(e) == client_pid
            && get(e, "net.closed").as_bool() == Some(false)
            && get(e, "net.bytes_received").as_u64() == Some(700)
    });
    assert_eq!(get(&open, "net.bytes_sent").as_u64(), Some(3000));
    assert_eq!(endpoint(&open, "dst").1.to_string(), port);
    wait_ok(client);
    wait_ok(server);
    let closed = agent.wait_event("the final summary", |e| {
        kind_of(e) == "tcp_summary"
            && pid_of(e) == client_pid
            && get(e, "net.closed").as_bool() == Some(true)
    });
    assert_eq!(get(&closed, "net.bytes_sent").as_u64(), Some(3000));
}
