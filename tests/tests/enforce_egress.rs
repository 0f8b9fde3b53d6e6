//! Egress deny in the kernel: `cgroup/connect4`, `connect6`, `sendmsg4` and
//! `sendmsg6` on the cgroup v2 root refuse a workload's connects and UDP
//! sends outside its allowlist with EPERM, before any packet leaves.
//!
//! The workload is a Python client in a cgroup of the test's own, declared
//! by that cgroup, so the agent tracks the cgroup and the process with the
//! workload's enforcement scope; nothing else on the host is in that scope.
//! Its peers are listeners of the test on loopback and in a network
//! namespace of the test's own (a non-loopback address). The client prints
//! the errno of each attempt: the proof of a refusal is the client's own
//! EPERM.

use std::{
    io::{BufRead, BufReader, ErrorKind, Write},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use aiwatch_tests::{event_timeout, get, wait_until, Agent, AgentOptions, TempDir};
use serde_json::Value;

fn run_ok(program: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The cgroup2 mount (`/sys/fs/cgroup/unified` on hybrid hosts).
fn cgroup2_root() -> PathBuf {
    let mounts = std::fs::read_to_string("/proc/mounts").expect("read /proc/mounts");
    mounts
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|fields| fields.get(2) == Some(&"cgroup2"))
        .map(|fields| PathBuf::from(fields[1]))
        .expect("a cgroup2 mount")
}

/// A cgroup of the test; its processes are killed and it is removed on drop.
struct Cgroup {
    path: PathBuf,
    /// Its path below the cgroup2 mount, as declarations match it.
    name: String,
}

impl Cgroup {
    fn create(label: &str) -> Cgroup {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "aiwatch-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = cgroup2_root().join(&name);
        std::fs::create_dir(&path)
            .unwrap_or_else(|e| panic!("create cgroup {}: {e}", path.display()));
        Cgroup {
            path,
            name: format!("/{name}"),
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.path.join("cgroup.kill"), "1");
        let _ = wait_until("cgroup empty", Duration::from_secs(10), || {
            std::fs::read_to_string(self.path.join("cgroup.procs"))
                .ok()
                .filter(|procs| procs.trim().is_empty())
        });
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// A network namespace with a veth link to the host and TCP listeners on
/// its own address.
struct Netns {
    name: String,
    host_if: String,
    ip: String,
    listeners: Child,
    /// The namespace's resolvers, if any (`resolver`).
    resolvers: std::cell::RefCell<Vec<Child>>,
}

impl Netns {
    fn start(ports: &[u16]) -> Netns {
        // Tests of this file run side by side: each its own namespace,
        // links and subnet.
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed) % 10;
        let pid = std::process::id();
        let name = format!("aiwatch-egress-{pid}-{n}");
        let host_if = format!("awe{}{n}", pid % 100_000);
        let peer_if = format!("awf{}{n}", pid % 100_000);
        let subnet = format!("10.{}.{}", 200 + n, pid % 250);
        let (host_ip, ip) = (format!("{subnet}.1"), format!("{subnet}.2"));
        run_ok("ip", &["netns", "add", &name]);
        run_ok(
            "ip",
            &[
                "link", "add", &host_if, "type", "veth", "peer", "name", &peer_if,
            ],
        );
        run_ok("ip", &["link", "set", &peer_if, "netns", &name]);
        run_ok(
            "ip",
            &["addr", "add", &format!("{host_ip}/24"), "dev", &host_if],
        );
        run_ok("ip", &["link", "set", &host_if, "up"]);
        let address = format!("{ip}/24");
        for args in [
            ["addr", "add", address.as_str(), "dev", peer_if.as_str()].as_slice(),
            &["link", "set", peer_if.as_str(), "up"],
            &["link", "set", "lo", "up"],
        ] {
            let mut all = vec!["netns", "exec", name.as_str(), "ip"];
            all.extend_from_slice(args);
            run_ok("ip", &all);
        }
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        let mut listeners = Command::new("ip")
            .args(["netns", "exec", &name, "python3", "-c", LISTENERS])
            .args(&ports)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the namespace's listeners");
        let mut line = String::new();
        BufReader::new(listeners.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("read the listeners' first line");
        assert_eq!(line.trim(), "READY", "the listeners did not start");
        Netns {
            name,
            host_if,
            ip,
            listeners,
            resolvers: Default::default(),
        }
    }
}

impl Netns {
    /// Another address of the namespace (on its loopback; the host reaches
    /// it through the veth link, as the subnet routes there).
    fn add_address(&self, ip: &str) {
        run_ok(
            "ip",
            &[
                "-n",
                &self.name,
                "addr",
                "add",
                &format!("{ip}/32"),
                "dev",
                "lo",
            ],
        );
    }

    /// Starts a dnsmasq on the namespace's address and `port` that answers
    /// `name` with `address` and nothing else; it is stopped on drop.
    fn resolver(&self, port: u16, name: &str, address: &str) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, DNSMASQ])
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                &format!("--listen-address={}", self.ip),
                &format!("--port={port}"),
                &format!("--host-record={name},{address}"),
                "--user=root",
                "--pid-file",
                "--log-facility=-",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dnsmasq");
        self.resolvers.borrow_mut().push(child);
    }
}

const DNSMASQ: &str = "/usr/sbin/dnsmasq";

impl Drop for Netns {
    fn drop(&mut self) {
        for child in self
            .resolvers
            .get_mut()
            .iter_mut()
            .chain([&mut self.listeners])
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// TCP listeners on every address of the namespace, one per port given,
/// accepting and closing forever.
const LISTENERS: &str = r#"
import socket, sys, threading
def serve(s):
    while True:
        c, _ = s.accept()
        c.close()
for port in sys.argv[1:]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(port)))
    s.listen(64)
    threading.Thread(target=serve, args=(s,), daemon=True).start()
print("READY", flush=True)
threading.Event().wait()
"#;

/// The workload: reads `tcp|udp HOST PORT` lines and answers `ok` or the
/// errno's name. A host with a colon is IPv6 (`::ffff:127.0.0.1` goes
/// through `connect6` with an IPv4-mapped address). `dns SERVER NAME` asks
/// the resolver on SERVER port 53 for NAME's address (one A query on a UDP
/// socket, as a stub resolver does) and answers the first address.
const CLIENT: &str = r#"
import errno, random, socket, struct, sys
def resolve(server, name):
    qid = random.randrange(65536)
    question = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
    query = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + question + struct.pack(">HH", 1, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.sendto(query, (server, 53))
    data, _ = s.recvfrom(4096)
    s.close()
    (rid, _, _, count, _, _) = struct.unpack(">HHHHHH", data[:12])
    offset = len(query)
    for _ in range(count):
        if data[offset] & 0xC0:
            offset += 2
        else:
            while data[offset]:
                offset += data[offset] + 1
            offset += 1
        rtype, _, _, length = struct.unpack(">HHIH", data[offset:offset + 10])
        offset += 10
        if rtype == 1 and rid == qid:
            return socket.inet_ntoa(data[offset:offset + 4])
        offset += length
    return "NOANSWER"
print("ready", flush=True)
for line in sys.stdin:
    proto, host, port = line.split()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        if proto == "dns":
            print(resolve(host, port), flush=True)
            continue
        if proto == "tcp":
            s = socket.socket(family, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect((host, int(port)))
        else:
            s = socket.socket(family, socket.SOCK_DGRAM)
            s.sendto(b"x", (host, int(port)))
        s.close()
        print("ok", flush=True)
    except OSError as e:
        print(errno.errorcode.get(e.errno, str(e.errno)), flush=True)
"#;

struct Client {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Client {
    /// Starts the client inside `cgroup` (the shell moves itself there,
    /// then execs Python, so the exec the agent attributes is already in
    /// the cgroup).
    fn start(cgroup: &Cgroup, dir: &Path) -> Client {
        let script = dir.join("egress_client.py");
        std::fs::write(&script, CLIENT).expect("write the client");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && exec python3 {}",
                cgroup.path.display(),
                script.display()
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the client");
        let stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("client's first line");
        assert_eq!(line.trim(), "ready");
        Client {
            child,
            stdin,
            stdout,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// One attempt; the answer is `ok` or an errno name (`EPERM`).
    fn attempt(&mut self, proto: &str, host: &str, port: u16) -> String {
        self.ask(&format!("{proto} {host} {port}"))
    }

    fn ask(&mut self, line: &str) -> String {
        writeln!(self.stdin, "{line}").expect("tell the client");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("client's answer");
        line.trim().to_string()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Setup {
    agent: Agent,
    cgroup: Cgroup,
    workload: String,
    allowed: TcpListener,
    denied: TcpListener,
    netns: Netns,
    /// The namespace's allowed and denied ports.
    ns_ports: (u16, u16),
    dir: TempDir,
}

/// An agent with one egress allowlist, in `mode`, for a workload declared
/// by a cgroup of the test's own: 127.0.0.1 on the `allowed` listener's
/// port, and the namespace's address on its first port.
fn start(mode: &str) -> Setup {
    start_with(mode, |peers| {
        let entries = format!(
            "          - {{net.dst.ip: 127.0.0.1, net.dst.port: {}}}\n          - {{net.dst.ip: {{cidr: {}/32}}, net.dst.port: {}}}\n",
            peers.allowed.local_addr().expect("addr").port(),
            peers.netns.ip,
            peers.ns_ports.0,
        );
        (entries, String::new())
    })
}

/// The parts of a setup an allowlist is written from.
struct Peers {
    allowed: TcpListener,
    netns: Netns,
    ns_ports: (u16, u16),
}

/// As `start`, with the allowlist's `any` entries (YAML lines) and the
/// agent's `enforcement:` keys (a flow mapping's inside) from `allowlist`.
fn start_with(mode: &str, allowlist: impl FnOnce(&Peers) -> (String, String)) -> Setup {
    let dir = TempDir::new("egress");
    let cgroup = Cgroup::create("egress");
    let workload = format!("egress-test-{}", cgroup.name.trim_start_matches('/'));
    let denied = TcpListener::bind("127.0.0.1:0").expect("bind");
    denied.set_nonblocking(true).expect("nonblocking");
    // The namespace is the test's own: any ports are free there.
    let ns_ports = (9101, 9102);
    let peers = Peers {
        allowed: TcpListener::bind("127.0.0.1:0").expect("bind"),
        netns: Netns::start(&[ns_ports.0, ns_ports.1]),
        ns_ports,
    };
    let (entries, enforcement) = allowlist(&peers);
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).expect("policies dir");
    std::fs::write(
        policies.join("egress.yaml"),
        format!(
            "enforcement: {mode}\nrules:\n  - id: test.egress\n    description: Egress outside the allowlist\n    severity: high\n    action: deny\n    when:\n      kind: [connect, udp_send]\n      workload.name: {workload}\n      not:\n        any:\n{entries}",
        ),
    )
    .expect("policy");
    let agent = Agent::start_with(AgentOptions {
        config: format!(
            "anomaly: {{enabled: false}}\ndefault_policies: false\npolicies: [{}]\nenforcement: {{{enforcement}}}\nworkloads:\n  declared:\n    - name: {workload}\n      kind: inference\n      match:\n        cgroup: \"{}\"\n",
            policies.display(),
            cgroup.name,
        ),
        ..Default::default()
    });
    let Peers {
        allowed,
        netns,
        ns_ports,
    } = peers;
    Setup {
        agent,
        cgroup,
        workload,
        allowed,
        denied,
        netns,
        ns_ports,
        dir,
    }
}

/// Starts the client and waits until the agent attributed its exec to the
/// workload: the pipeline writes the kernel's tracking maps before it
/// writes that event.
fn start_client(setup: &Setup) -> Client {
    let client = Client::start(&setup.cgroup, setup.dir.path());
    let pid = u64::from(client.pid());
    setup
        .agent
        .wait_event("the client's exec in its workload", |e| {
            e["kind"] == "exec"
                && get(e, "process.pid").as_u64() == Some(pid)
                && get(e, "workload.name") == setup.workload.as_str()
        });
    client
}

fn wait_alert_for(agent: &Agent, pid: u32, port: u16) -> Value {
    agent.wait_alert(&format!("test.egress for pid {pid} to port {port}"), |a| {
        a["rule"] == "test.egress"
            && get(a, "event.process.pid").as_u64() == Some(u64::from(pid))
            && get(a, "event.net.dst.port").as_u64() == Some(u64::from(port))
    })
}

#[test]
fn an_enforced_egress_allowlist_refuses_other_peers_with_eperm() {
    let setup = start("enforce");
    setup.agent.wait_for_log(
        "kernel egress enforcement: 1 workload allowlist(s)",
        event_timeout(),
    );
    // This host offers the hooks, and says so in /readyz and the metrics.
    let (_, body) = setup.agent.http_get("/readyz");
    let ready: Value = serde_json::from_str(&body).expect("/readyz is JSON");
    for hook in ["cgroup_connect", "cgroup_sendmsg", "sched_process_exec"] {
        assert_eq!(ready["enforcement_hooks"][hook], true, "{body}");
    }
    for hook in ["bpf_lsm_file_open", "bpf_lsm_bprm_check_security"] {
        assert_eq!(
            ready["enforcement_hooks"][hook],
            aiwatch_tests::bpf_lsm_active(),
            "{hook}: {body}"
        );
    }
    let (_, metrics) = setup.agent.http_get("/metrics");
    assert!(
        metrics.contains("aiwatch_enforcement_mode{hook=\"cgroup_connect\"} 1"),
        "{metrics}"
    );
    let mut client = start_client(&setup);
    let allowed = setup.allowed.local_addr().expect("addr").port();
    let denied = setup.denied.local_addr().expect("addr").port();
    let ns = setup.netns.ip.clone();
    let (ns_allowed, ns_denied) = setup.ns_ports;

    assert_eq!(client.attempt("tcp", "127.0.0.1", allowed), "ok");
    assert_eq!(client.attempt("tcp", "127.0.0.1", denied), "EPERM");
    assert_eq!(
        client.attempt("tcp", &ns, ns_allowed),
        "ok",
        "the namespace's allowed port"
    );
    assert_eq!(client.attempt("tcp", &ns, ns_denied), "EPERM");
    // IPv4-mapped addresses go through connect6 and meet the same list.
    assert_eq!(client.attempt("tcp", "::ffff:127.0.0.1", allowed), "ok");
    assert_eq!(client.attempt("tcp", "::ffff:127.0.0.1", denied), "EPERM");
    assert_eq!(client.attempt("tcp", "::1", allowed), "EPERM");
    // UDP: sendmsg4 refuses the datagram, to the allowed address too when
    // the port differs.
    assert_eq!(client.attempt("udp", &ns, 5353), "EPERM");
    assert_eq!(client.attempt("udp", "127.0.0.1", allowed), "ok");
    // The denied listener never saw a connection: no SYN left.
    match setup.denied.accept() {
        Err(err) if err.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the denied listener accepted a connection: {other:?}"),
    }

    let alert = wait_alert_for(&setup.agent, client.pid(), denied);
    assert_eq!(alert["action"], "deny");
    assert_eq!(alert["action_taken"], true);
    assert_eq!(alert["enforcement"]["outcome"], "denied");
    assert_eq!(alert["enforcement"]["hook"], "cgroup_connect");
    assert_eq!(get(&alert, "event.kernel_action"), "denied");
    let alert = wait_alert_for(&setup.agent, client.pid(), ns_denied);
    assert_eq!(alert["enforcement"]["outcome"], "denied");
    let alert = wait_alert_for(&setup.agent, client.pid(), 5353);
    assert_eq!(alert["enforcement"]["hook"], "cgroup_sendmsg");
    assert_eq!(alert["enforcement"]["outcome"], "denied");
    // The allowed attempts raised nothing. The last attempt is a refused
    // one; alerts are written in the kernel's order, so once its alert is
    // there every earlier one is too.
    assert_eq!(client.attempt("tcp", "127.0.0.2", denied), "EPERM");
    setup.agent.wait_alert("the last refusal", |a| {
        a["rule"] == "test.egress"
            && get(a, "event.process.pid").as_u64() == Some(u64::from(client.pid()))
            && get(a, "event.net.dst.ip") == "127.0.0.2"
    });
    let pid = u64::from(client.pid());
    let stray: Vec<Value> = setup
        .agent
        .alerts()
        .into_iter()
        .filter(|a| {
            get(a, "event.process.pid").as_u64() == Some(pid)
                && get(a, "event.net.dst.ip") != "::1"
                && [allowed, ns_allowed]
                    .map(u64::from)
                    .contains(&get(a, "event.net.dst.port").as_u64().unwrap_or(0))
        })
        .collect();
    assert!(stray.is_empty(), "alerts for allowed peers: {stray:?}");
}

#[test]
fn audit_mode_reports_would_deny_and_connects() {
    let setup = start("audit");
    let mut client = start_client(&setup);
    let denied = setup.denied.local_addr().expect("addr").port();
    let (_, ns_denied) = setup.ns_ports;

    assert_eq!(client.attempt("tcp", "127.0.0.1", denied), "ok");
    assert_eq!(client.attempt("tcp", &setup.netns.ip, ns_denied), "ok");
    let alert = wait_alert_for(&setup.agent, client.pid(), denied);
    assert_eq!(alert["action_taken"], false);
    assert_eq!(alert["enforcement"]["outcome"], "would-deny");
    assert_eq!(alert["enforcement"]["hook"], "cgroup_connect");
    assert!(alert["event"].get("kernel_action").is_none(), "{alert}");
    let alert = wait_alert_for(&setup.agent, client.pid(), ns_denied);
    assert_eq!(alert["enforcement"]["outcome"], "would-deny");
}

/// A name in the allowlist is allowed by the addresses the agent resolves
/// for it and by those a verified answer gave the workload; every other
/// address, and the name's address on another port, is refused.
///
/// The agent asks one resolver of the namespace (its
/// `egress_name_servers`, port 5300) and the workload another (port 53),
/// which gives the same name another address, as a CDN or a container's
/// own resolver may.
#[test]
fn a_name_in_the_allowlist_admits_the_addresses_resolved_for_it() {
    const TEST: &str = "a_name_in_the_allowlist_admits_the_addresses_resolved_for_it";
    const NAME: &str = "hub.aiwatch-egress.test";
    if !Path::new(DNSMASQ).exists() {
        println!(
            "skipped: {TEST}: {DNSMASQ} is missing (cargo xtask setup --tests installs dnsmasq-base)"
        );
        return;
    }
    let mut addresses = Vec::new();
    let setup = start_with("enforce", |peers| {
        let netns = &peers.netns;
        let subnet = netns.ip.rsplit_once('.').expect("an IPv4 address").0;
        addresses = (3..=5).map(|n| format!("{subnet}.{n}")).collect();
        for ip in &addresses {
            netns.add_address(ip);
        }
        netns.resolver(5300, NAME, &addresses[0]);
        netns.resolver(53, NAME, &addresses[1]);
        let entries = format!(
            "          - {{net.dst.ip: {}, net.dst.port: 53}}\n          - {{net.dst_name: {NAME}, net.dst.port: {}}}\n",
            netns.ip, peers.ns_ports.0
        );
        (
            entries,
            format!("egress_name_servers: [\"{}:5300\"]", netns.ip),
        )
    });
    let (agents, workloads, unnamed) = (&addresses[0], &addresses[1], &addresses[2]);
    let (port, other_port) = setup.ns_ports;
    setup.agent.wait_for_log(
        "kernel egress enforcement: 1 workload allowlist(s), 1 destination(s), 1 name(s)",
        event_timeout(),
    );
    // The agent's own lookup (dnsmasq may still be starting: it is tried
    // again until it answers) reaches the kernel.
    wait_until("the agent resolved the name", event_timeout() * 4, || {
        let (_, metrics) = setup.agent.http_get("/metrics");
        metrics
            .contains("aiwatch_enforcement_name_addresses 1")
            .then_some(())
    });
    let mut client = start_client(&setup);
    let pid = client.pid();
    assert_eq!(
        client.attempt("tcp", agents, port),
        "ok",
        "the agent's address"
    );
    assert_eq!(
        client.attempt("tcp", workloads, port),
        "EPERM",
        "an address nobody resolved yet"
    );
    // The workload asks its resolver: a verified answer, read on the wire.
    assert_eq!(
        &client.ask(&format!("dns {} {NAME}", setup.netns.ip)),
        workloads
    );
    setup
        .agent
        .wait_event("the workload's verified answer", |e| {
            e["kind"] == "dns_answer"
                && get(e, "process.pid").as_u64() == Some(u64::from(pid))
                && get(e, "dns.verified") == true
        });
    assert_eq!(
        client.attempt("tcp", workloads, port),
        "ok",
        "the answer's address"
    );
    assert_eq!(
        client.attempt("tcp", agents, other_port),
        "EPERM",
        "another port"
    );
    assert_eq!(
        client.attempt("tcp", unnamed, port),
        "EPERM",
        "an unnamed address"
    );

    // Alerts come in the kernel's order: once the last refusal's is there,
    // every earlier one is too.
    setup.agent.wait_alert("the last refusal", |a| {
        a["rule"] == "test.egress"
            && get(a, "event.process.pid").as_u64() == Some(u64::from(pid))
            && get(a, "event.net.dst.ip") == unnamed.as_str()
    });
    let client_alerts: Vec<Value> = setup
        .agent
        .alerts()
        .into_iter()
        .filter(|a| get(a, "event.process.pid").as_u64() == Some(u64::from(pid)))
        .collect();
    let alerts: Vec<(String, u64, String)> = client_alerts
        .iter()
        .map(|a| {
            (
                get(a, "event.net.dst.ip")
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                get(a, "event.net.dst.port").as_u64().unwrap_or(0),
                get(a, "enforcement.outcome")
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    let denied = |ip: &str, port: u16| (ip.to_string(), u64::from(port), "denied".to_string());
    assert_eq!(
        alerts,
        [
            denied(workloads, port),
            denied(agents, other_port),
            denied(unnamed, port)
        ],
        "one alert per refusal, none for the allowed connects; the client's alerts: {}",
        client_alerts
            .iter()
            .map(|a| format!("{} {}: {}", a["rule"], a["event"]["kind"], a["summary"]))
            .collect::<Vec<_>>()
            .join("; ")
    );
    // The allowed connects carry the name.
    for ip in [agents, workloads] {
        let connect = setup.agent.wait_event("an allowed connect", |e| {
            e["kind"] == "connect"
                && get(e, "process.pid").as_u64() == Some(u64::from(pid))
                && get(e, "net.dst.ip") == ip.as_str()
                && e["kernel_action"].is_null()
        });
        assert_eq!(get(&connect, "net.dst_name"), NAME, "{connect}");
        assert_eq!(get(&connect, "net.dst_name_verified"), true, "{connect}");
    }
}
