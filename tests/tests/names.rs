//! Names for peers, end to end: real resolvers (dnsmasq) in a network
//! namespace of the test's own, real clients (glibc's `getent`, curl,
//! Python), and the dns, dns_answer and connect events of their pids.
//!
//! The namespace has two resolvers on its loopback, as a host with a
//! local stub has: a stub on 127.0.0.53 that forwards to an authoritative
//! dnsmasq on 127.0.0.1, which knows the test's names. Clients ask the
//! stub (`/etc/netns/<ns>/resolv.conf`, which `ip netns exec` mounts over
//! `/etc/resolv.conf`), so every name must be tied to the client that
//! asked, not to the stub that forwarded.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
};

use aiwatch_tests::{get, kind_of, pid_of, Agent, AgentOptions, TempDir};
use serde_json::Value;

const PYTHON: &str = "/usr/bin/python3";
const DNSMASQ: &str = "/usr/sbin/dnsmasq";
/// The address the test's names resolve to, on the namespace's loopback.
const MODELS_IP: &str = "10.77.0.2";
const TRUSTED_IP: &str = "10.77.0.3";
const FORGED_IP: &str = "10.77.0.4";

/// A network namespace with the two resolvers and an HTTP server on port
/// 8080 of every address; everything is removed on drop.
struct Namespace {
    name: String,
    children: Vec<Child>,
    _dir: TempDir,
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(status.success(), "{program} {args:?} failed: {status:?}");
}

impl Namespace {
    fn start() -> Namespace {
        // Tests of this file run side by side: one namespace each.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let serial = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("aiw-names-{}-{serial}", std::process::id());
        let dir = TempDir::new("names");
        run("ip", &["netns", "add", &name]);
        let mut ns = Namespace {
            name: name.clone(),
            children: Vec::new(),
            _dir: dir,
        };
        run("ip", &["-n", &name, "link", "set", "lo", "up"]);
        for ip in [MODELS_IP, TRUSTED_IP, FORGED_IP] {
            run(
                "ip",
                &["-n", &name, "addr", "add", &format!("{ip}/32"), "dev", "lo"],
            );
        }
        let etc = ns.etc();
        std::fs::create_dir_all(&etc).expect("/etc/netns folder");
        std::fs::write(
            etc.join("resolv.conf"),
            "nameserver 127.0.0.53\noptions timeout:2 attempts:2\n",
        )
        .expect("resolv.conf");
        // The authoritative server: the test's names, nothing upstream.
        ns.spawn_in(
            DNSMASQ,
            &[
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--user=root",
                "--pid-file",
                &format!("--host-record=models.example.test,{MODELS_IP}"),
                "--cname=alias.example.test,models.example.test",
                &format!("--host-record=tcp.example.test,{MODELS_IP}"),
                &format!("--host-record=trusted.example.test,{TRUSTED_IP}"),
                "--log-facility=-",
            ],
        );
        // The local stub: forwards everything, caches nothing.
        ns.spawn_in(
            DNSMASQ,
            &[
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.53",
                "--server=127.0.0.1",
                "--cache-size=0",
                "--user=root",
                "--pid-file",
                "--log-facility=-",
            ],
        );
        let mut http = ns.spawn_in_piped(
            PYTHON,
            &[
                "-c",
                "import http.server, sys\n\
                 srv = http.server.HTTPServer(('', 8080), http.server.SimpleHTTPRequestHandler)\n\
                 print('ready', flush=True)\n\
                 srv.serve_forever()\n",
            ],
        );
        assert_eq!(first_line(&mut http), "ready");
        ns.children.push(http);
        // Both resolvers answer before any test client asks.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !ns.resolves("models.example.test") {
            assert!(
                std::time::Instant::now() < deadline,
                "the namespace's resolvers never answered"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        ns
    }

    fn etc(&self) -> PathBuf {
        PathBuf::from("/etc/netns").join(&self.name)
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.name, program])
            .args(args);
        command
    }

    fn spawn_in(&mut self, program: &str, args: &[&str]) {
        let child = self
            .command(program, args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        self.children.push(child);
    }

    fn spawn_in_piped(&self, program: &str, args: &[&str]) -> Child {
        self.command(program, args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"))
    }

    fn resolves(&self, name: &str) -> bool {
        self.command("getent", &["hosts", name])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Runs `program` in the namespace to its end; returns its pid (`ip
    /// netns exec` execs it, so the pid is the client's) and stdout.
    fn client(&self, env: &[(&str, &str)], program: &str, args: &[&str]) -> (u64, String) {
        let child = self
            .command(program, args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        let pid = u64::from(child.id());
        let out = child.wait_with_output().expect("wait for the client");
        assert!(out.status.success(), "{program} {args:?}: {:?}", out.status);
        (pid, String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(self.etc());
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn first_line(child: &mut Child) -> String {
    let out = child.stdout.as_mut().expect("stdout");
    let mut line = String::new();
    BufReader::new(out).read_line(&mut line).expect("read");
    line.trim().to_owned()
}

fn answer_of(agent: &Agent, what: &str, pid: u64, name: &str) -> Value {
    agent.wait_event(what, |e| {
        kind_of(e) == "dns_answer" && pid_of(e) == pid && get(e, "dns.name") == name
    })
}

fn addresses(event: &Value) -> Vec<String> {
    get(event, "dns.answers")
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn skip_without_dnsmasq(test: &str) -> bool {
    if std::path::Path::new(DNSMASQ).exists() {
        return false;
    }
    println!(
        "skipped: {test}: {DNSMASQ} is missing (cargo xtask setup --tests installs dnsmasq-base)"
    );
    true
}

#[test]
fn real_resolvers_name_the_peers_of_real_clients() {
    if skip_without_dnsmasq("real_resolvers_name_the_peers_of_real_clients") {
        return;
    }
    let agent = Agent::start();
    let ns = Namespace::start();

    // glibc's resolver through getent: a connected UDP socket, sendmmsg.
    let (getent, out) = ns.client(&[], "getent", &["ahostsv4", "alias.example.test"]);
    assert!(out.contains(MODELS_IP), "getent printed {out}");
    let query = agent.wait_event("getent's query", |e| {
        kind_of(e) == "dns" && pid_of(e) == getent && get(e, "dns.name") == "alias.example.test"
    });
    assert_eq!(get(&query, "dns.server.ip"), "127.0.0.53");
    assert_eq!(get(&query, "dns.protocol"), "udp");
    let answer = answer_of(&agent, "getent's answer", getent, "alias.example.test");
    assert_eq!(addresses(&answer), [MODELS_IP]);
    assert_eq!(get(&answer, "dns.cnames")[0], "models.example.test");
    assert_eq!(get(&answer, "dns.verified"), true);
    assert_eq!(get(&answer, "dns.server.ip"), "127.0.0.53");
    assert!(get(&answer, "dns.ttl").as_u64().is_some());
    // The stub's own upstream query is the stub's, not the client's.
    agent.wait_event("the stub's upstream query", |e| {
        kind_of(e) == "dns"
            && pid_of(e) != getent
            && get(e, "dns.name") == "alias.example.test"
            && get(e, "dns.server.ip") == "127.0.0.1"
            && get(e, "process.comm") == "dnsmasq"
    });

    // Over TCP: glibc with `use-vc` writes the query with writev.
    let (tcp_client, out) = ns.client(
        &[("RES_OPTIONS", "use-vc")],
        "getent",
        &["ahostsv4", "tcp.example.test"],
    );
    assert!(out.contains(MODELS_IP), "getent over TCP printed {out}");
    let tcp_answer = answer_of(&agent, "the TCP answer", tcp_client, "tcp.example.test");
    assert_eq!(get(&tcp_answer, "dns.protocol"), "tcp");
    assert_eq!(addresses(&tcp_answer), [MODELS_IP]);
    assert_eq!(get(&tcp_answer, "dns.verified"), true);

    // curl resolves (glibc, in a thread of its own) and connects: the
    // connect names its destination.
    let (curl, _) = ns.client(
        &[],
        "curl",
        &["-sS", "-o", "/dev/null", "http://models.example.test:8080/"],
    );
    let connect = agent.wait_event("curl's connect", |e| {
        kind_of(e) == "connect" && pid_of(e) == curl && get(e, "net.dst.ip") == MODELS_IP
    });
    assert_eq!(get(&connect, "net.dst_name"), "models.example.test");
    assert_eq!(get(&connect, "net.dst_name_verified"), true);
    let summary = agent.wait_event("curl's connection summary", |e| {
        kind_of(e) == "tcp_summary" && pid_of(e) == curl && get(e, "net.closed") == true
    });
    assert_eq!(get(&summary, "net.dst_name"), "models.example.test");

    // Python's urllib (getaddrinfo, then connect).
    let (urllib, _) = ns.client(
        &[],
        PYTHON,
        &[
            "-c",
            "import urllib.request; urllib.request.urlopen('http://models.example.test:8080/').read()",
        ],
    );
    let connect = agent.wait_event("urllib's connect", |e| {
        kind_of(e) == "connect" && pid_of(e) == urllib && get(e, "net.dst.ip") == MODELS_IP
    });
    assert_eq!(get(&connect, "net.dst_name"), "models.example.test");
    assert_eq!(get(&connect, "net.dst_name_verified"), true);
}

/// A victim asks the real resolver; another process, which asked nothing,
/// answers first from another address with the same id. The name it
/// forges may show, but never as verified.
#[test]
fn a_forged_answer_never_names_a_peer_as_verified() {
    if skip_without_dnsmasq("a_forged_answer_never_names_a_peer_as_verified") {
        return;
    }
    let agent = Agent::start();
    let ns = Namespace::start();
    let victim = r#"
import socket, struct, sys
def query(name):
    out = struct.pack(">HHHHHH", 0x5151, 0x0100, 1, 0, 0, 0)
    for label in name.split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0" + struct.pack(">HH", 1, 1)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 0))
sock.settimeout(10)
sock.sendto(query("forged.example.test"), ("127.0.0.53", 53))
print(sock.getsockname()[1], flush=True)
sys.stdin.readline()  # the forger has sent
for _ in range(2):
    try:
        sock.recvfrom(512)
    except socket.timeout:
        break
conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
conn.settimeout(2)
try:
    conn.connect((sys.argv[1], 9))
except OSError:
    pass
"#;
    let forger = r#"
import socket, struct, sys
name = "forged.example.test"
out = struct.pack(">HHHHHH", 0x5151, 0x8180, 1, 1, 0, 0)
qname = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".")) + b"\0"
out += qname + struct.pack(">HH", 1, 1)
out += b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 300, 4) + socket.inet_aton(sys.argv[2])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.2", 53))
sock.sendto(out, ("127.0.0.1", int(sys.argv[1])))
"#;
    let mut victim = ns
        .command(PYTHON, &["-c", victim, FORGED_IP])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the victim");
    let victim_pid = u64::from(victim.id());
    let port = first_line(&mut victim);
    let (forger_pid, _) = ns.client(&[], PYTHON, &["-c", forger, &port, FORGED_IP]);
    {
        use std::io::Write as _;
        let stdin = victim.stdin.as_mut().expect("victim stdin");
        stdin.write_all(b"go\n").expect("tell the victim");
    }
    assert!(victim.wait().expect("victim").success());

    let forged = agent.wait_event("the forged answer", |e| {
        kind_of(e) == "dns_answer"
            && pid_of(e) == victim_pid
            && get(e, "dns.server.ip") == "127.0.0.2"
    });
    assert_eq!(get(&forged, "dns.verified"), false);
    assert_eq!(addresses(&forged), [FORGED_IP]);
    let connect = agent.wait_event("the victim's connect", |e| {
        kind_of(e) == "connect" && pid_of(e) == victim_pid && get(e, "net.dst.ip") == FORGED_IP
    });
    assert_ne!(get(&connect, "net.dst_name_verified"), true);
    // The forger asked nothing: no answer is ever its own.
    agent.sentinel();
    assert!(
        !agent
            .events()
            .iter()
            .any(|e| kind_of(e) == "dns_answer" && pid_of(e) == forger_pid),
        "an answer was attributed to the forger"
    );
}

#[test]
fn a_rule_on_a_name_glob_fires_and_the_trusted_host_exception_suppresses_it() {
    if skip_without_dnsmasq(
        "a_rule_on_a_name_glob_fires_and_the_trusted_host_exception_suppresses_it",
    ) {
        return;
    }
    let dir = TempDir::new("names-policy");
    let rules = dir.path().join("names.yaml");
    std::fs::write(
        &rules,
        r#"
lists:
  trusted_ai_hosts: {append: ["trusted.example.test"]}
rules:
  - id: test.names.example-test
    description: A connection to a host under example.test that is not a trusted AI host
    severity: medium
    when:
      kind: connect
      net.dst_name: {glob: "*.example.test"}
      not: {macro: trusted_ai_destination}
"#,
    )
    .expect("write the rule");
    let agent = Agent::start_with(AgentOptions {
        config: format!("policies: [{}]\n", rules.display()),
        ..Default::default()
    });
    let ns = Namespace::start();
    let connect = "import socket, sys\n\
                   addr = socket.getaddrinfo(sys.argv[1], 8080, socket.AF_INET, socket.SOCK_STREAM)[0][4]\n\
                   socket.create_connection(addr, timeout=5).close()\n";
    let (untrusted, _) = ns.client(&[], PYTHON, &["-c", connect, "models.example.test"]);
    let alert = agent.wait_alert("the name rule's alert", |a| {
        a["rule"] == "test.names.example-test"
            && get(a, "event.process.pid").as_u64() == Some(untrusted)
    });
    assert_eq!(get(&alert, "event.net.dst_name"), "models.example.test");
    let (trusted, _) = ns.client(&[], PYTHON, &["-c", connect, "trusted.example.test"]);
    let connect = agent.wait_event("the trusted host's connect", |e| {
        kind_of(e) == "connect" && pid_of(e) == trusted && get(e, "net.dst.ip") == TRUSTED_IP
    });
    assert_eq!(get(&connect, "net.dst_name"), "trusted.example.test");
    assert_eq!(get(&connect, "net.dst_name_verified"), true);
    agent.sentinel();
    assert!(
        !agent
            .alerts()
            .iter()
            .any(|a| a["rule"] == "test.names.example-test"
                && get(a, "event.process.pid").as_u64() == Some(trusted)),
        "the trusted host's verified name did not suppress the rule"
    );
}

/// The server name comes from the first bytes on the wire, so it is seen
/// for any TLS library: Python's ssl module and curl here.
#[test]
fn tls_client_hellos_name_their_server() {
    if skip_without_dnsmasq("tls_client_hellos_name_their_server") {
        return;
    }
    let agent = Agent::start();
    let ns = Namespace::start();
    // The server speaks HTTP, so each handshake fails after the hello.
    let python_tls = "import socket, ssl\n\
                      conn = socket.create_connection(('models.example.test', 8080), timeout=5)\n\
                      try:\n    ssl.create_default_context().wrap_socket(conn, server_hostname='weights.example.test')\n\
                      except (ssl.SSLError, OSError):\n    pass\n";
    let (python_pid, _) = ns.client(&[], PYTHON, &["-c", python_tls]);
    let hello = agent.wait_event("Python's ClientHello", |e| {
        kind_of(e) == "tls_client_hello" && pid_of(e) == python_pid
    });
    assert_eq!(get(&hello, "net.tls_server_name"), "weights.example.test");
    assert_eq!(get(&hello, "net.dst.ip"), MODELS_IP);
    assert_eq!(get(&hello, "net.dst.port").as_u64(), Some(8080));
    // The name the client resolved is there too, and is the one trusted.
    assert_eq!(get(&hello, "net.dst_name"), "models.example.test");
    assert_eq!(get(&hello, "net.dst_name_verified"), true);

    let curl = ns
        .command(
            "curl",
            &[
                "-sS",
                "-k",
                "-o",
                "/dev/null",
                "https://alias.example.test:8080/",
            ],
        )
        .stderr(Stdio::null())
        .spawn()
        .expect("start curl");
    let curl_pid = u64::from(curl.id());
    let _ = curl.wait_with_output();
    let hello = agent.wait_event("curl's ClientHello", |e| {
        kind_of(e) == "tls_client_hello" && pid_of(e) == curl_pid
    });
    assert_eq!(get(&hello, "net.tls_server_name"), "alias.example.test");
}

/// A tracked process's plain HTTP request names its host: the `Host` of
/// the head, read on the wire, beside the verified name the resolver gave.
/// An untracked process's request stays in the kernel.
#[test]
fn plain_http_requests_of_tracked_processes_name_their_host() {
    if skip_without_dnsmasq("plain_http_requests_of_tracked_processes_name_their_host") {
        return;
    }
    let marker = format!("aiwatch-http-host-{}", std::process::id());
    let agent = Agent::start_with(AgentOptions {
        config: format!(
            "workloads:\n  declared:\n    - name: {marker}\n      kind: agent\n      match:\n        argv: \"*{marker}*\"\n"
        ),
        ..AgentOptions::default()
    });
    let ns = Namespace::start();
    // Waits before asking, so that the agent has tracked it from its exec.
    let request = |host: &str| {
        format!(
            "import sys, time, http.client\n\
             time.sleep(1.5)\n\
             c = http.client.HTTPConnection('{host}', 8080, timeout=5)\n\
             c.request('GET', '/v1/models')\n\
             c.getresponse().read()\n"
        )
    };
    let untracked = request("alias.example.test");
    let (untracked_pid, _) = ns.client(&[], PYTHON, &["-c", &untracked]);
    let tracked = request("models.example.test");
    let (tracked_pid, _) = ns.client(&[], PYTHON, &["-c", &tracked, &marker]);
    let event = agent.wait_event("the tracked process's http_request", |e| {
        kind_of(e) == "http_request" && pid_of(e) == tracked_pid
    });
    assert_eq!(
        get(&event, "net.http_host"),
        "models.example.test",
        "{event}"
    );
    assert_eq!(get(&event, "net.dst.ip"), MODELS_IP);
    assert_eq!(get(&event, "net.dst.port").as_u64(), Some(8080));
    assert_eq!(get(&event, "net.dst_name"), "models.example.test");
    assert_eq!(get(&event, "net.dst_name_verified"), true);
    assert_eq!(get(&event, "workload.name"), marker.as_str());
    // The workload's inventory shows the peer by its verified name.
    let named = aiwatch_tests::wait_until(
        "the inventory's named peer",
        std::time::Duration::from_secs(20),
        || {
            let (_, body) = agent.http_get("/inventory");
            let inventory: Value = serde_json::from_str(&body).ok()?;
            inventory["workloads"]
                .as_array()?
                .iter()
                .find(|w| w["name"] == marker.as_str())?["peers"]
                .as_array()?
                .iter()
                .find(|p| p["ip"] == MODELS_IP && p["port"] == 8080)
                .cloned()
        },
    );
    let peer = named.expect("the workload's peer in /inventory");
    assert_eq!(peer["name"], "models.example.test", "{peer}");
    // The untracked request came first: had it been reported, it would be
    // in the file by now.
    let untracked_requests: Vec<Value> = agent
        .events()
        .into_iter()
        .filter(|e| kind_of(e) == "http_request" && pid_of(e) == untracked_pid)
        .collect();
    assert!(
        untracked_requests.is_empty(),
        "an untracked process's request was reported: {untracked_requests:?}"
    );
}

/// `names.dns_port`: a resolver on another port is read there. A client
/// asks a dnsmasq of the namespace on port 5353 itself, then connects to
/// the answer: the query, the verified answer and the connect's name are
/// reported by an agent configured for that port.
#[test]
fn a_configured_dns_port_is_read_instead_of_53() {
    if skip_without_dnsmasq("a_configured_dns_port_is_read_instead_of_53") {
        return;
    }
    let agent = Agent::start_with(AgentOptions {
        config: "names: {dns_port: 5353}\n".into(),
        ..Default::default()
    });
    // An agent with the default port, which must not read port 5353.
    let default_port = Agent::start();
    let mut ns = Namespace::start();
    ns.spawn_in(
        DNSMASQ,
        &[
            "--keep-in-foreground",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--listen-address=127.0.0.1",
            "--port=5353",
            "--user=root",
            "--pid-file",
            &format!("--host-record=port.example.test,{MODELS_IP}"),
            "--log-facility=-",
        ],
    );
    let client = r#"
import socket, struct, sys, time
out = struct.pack(">HHHHHH", 0x2a2a, 0x0100, 1, 0, 0, 0)
for label in "port.example.test".split("."):
    out += bytes([len(label)]) + label.encode()
out += b"\0" + struct.pack(">HH", 1, 1)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(1)
for _ in range(20):  # dnsmasq may still be starting
    sock.sendto(out, ("127.0.0.1", 5353))
    try:
        answer, _ = sock.recvfrom(512)
        break
    except (socket.timeout, ConnectionRefusedError):
        time.sleep(0.2)
else:
    sys.exit("no answer on port 5353")
address = socket.inet_ntoa(answer[-4:])
conn = socket.create_connection((address, 8080), timeout=5)
conn.close()
print(address)
"#;
    let (pid, out) = ns.client(&[], PYTHON, &["-c", client]);
    assert_eq!(out.trim(), MODELS_IP, "the resolver on 5353 answered");
    let query = agent.wait_event("the query to port 5353", |e| {
        kind_of(e) == "dns" && pid_of(e) == pid && get(e, "dns.name") == "port.example.test"
    });
    assert_eq!(get(&query, "dns.server.port"), 5353);
    let answer = answer_of(&agent, "the answer from 5353", pid, "port.example.test");
    assert_eq!(addresses(&answer), [MODELS_IP]);
    assert_eq!(get(&answer, "dns.verified"), true);
    let connect = agent.wait_event("the client's connect", |e| {
        kind_of(e) == "connect" && pid_of(e) == pid && get(e, "net.dst.ip") == MODELS_IP
    });
    assert_eq!(get(&connect, "net.dst_name"), "port.example.test");
    assert_eq!(get(&connect, "net.dst_name_verified"), true);
    default_port.wait_event("the client's connect, by the default agent", |e| {
        kind_of(e) == "connect" && pid_of(e) == pid
    });
    default_port.sentinel();
    let read = default_port
        .events()
        .into_iter()
        .filter(|e| pid_of(e) == pid && matches!(kind_of(e), "dns" | "dns_answer"))
        .count();
    assert_eq!(read, 0, "an agent on port 53 read DNS on port 5353");
}
