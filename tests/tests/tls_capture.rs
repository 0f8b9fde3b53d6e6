//! LLM traffic capture, kernel side: the `SSL_*` uprobes in the system
//! libssl see real TLS clients (Python's `ssl` module, curl) talking to a
//! local HTTPS server of this test's own (self-signed certificate,
//! loopback). An untracked client's write that starts with an LLM API
//! request line makes the kernel track the client at once, which the agent
//! shows by reporting the client's later, otherwise filtered, file opens;
//! the same client's earlier non-LLM TLS traffic does not. Assertions are
//! on this test's own pids only.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use aiwatch_tests::{free_port, get, kind_of, pid_of, Agent, AgentOptions, TempDir};
use serde_json::Value;

const PYTHON: &str = "/usr/bin/python3";

/// A threaded HTTPS server: POSTs get a small JSON completion, GETs a page.
const SERVER: &str = r#"
import http.server, json, ssl, sys
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def reply(self, body, kind):
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        answer = {"id": "c1", "model": "m", "choices": [{"message": {"content": "hi"}}]}
        self.reply(json.dumps(answer).encode(), "application/json")
    def do_GET(self):
        self.reply(b"<html>a page</html>", "text/html")
    def log_message(self, *args):
        pass
server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[2], sys.argv[3])
server.socket = context.wrap_socket(server.socket, server_side=True)
print("ready", flush=True)
server.serve_forever()
"#;

/// A Python `ssl` client on one keep-alive connection: a plain GET, then a
/// chat completion request. It opens a note file before each step and
/// after the last, so the agent's view of its opens shows when the kernel
/// started tracking it. Prints its pid.
const CLIENT: &str = r#"
import http.client, json, os, ssl, sys
port, ca, work = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def note(name):
    with open(os.path.join(work, name), "w") as f:
        f.write("x")
context = ssl.create_default_context(cafile=ca)
conn = http.client.HTTPSConnection("127.0.0.1", port, context=context)
note("note-before.txt")
conn.request("GET", "/index.html")
assert conn.getresponse().read() == b"<html>a page</html>"
note("note-between.txt")
body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hello"}]})
conn.request("POST", "/v1/chat/completions", body=body, headers={"content-type": "application/json"})
assert json.loads(conn.getresponse().read())["id"] == "c1"
note("note-after.txt")
print(os.getpid(), flush=True)
"#;

/// Makes a self-signed certificate for 127.0.0.1 in `dir`: (cert, key).
fn certificate(dir: &Path) -> (String, String) {
    let cert = dir.join("cert.pem").display().to_string();
    let key = dir.join("key.pem").display().to_string();
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .args(["-keyout", &key, "-out", &cert])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl (cargo xtask test installs it)");
    assert!(status.success(), "openssl req failed: {status:?}");
    (cert, key)
}

struct Server(Child);

impl Server {
    fn start(port: u16, cert: &str, key: &str) -> Server {
        let mut child = Command::new(PYTHON)
            .args(["-c", SERVER, &port.to_string(), cert, key])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the HTTPS server");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("read the server's readiness");
        assert_eq!(line.trim(), "ready", "the HTTPS server did not start");
        Server(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs curl to `url` with the CA, writing the body to `out`; returns its
/// pid once it has exited. `post` sends a JSON body.
fn curl(url: &str, ca: &str, out: &Path, post: Option<&str>) -> u64 {
    let mut command = Command::new("curl");
    command
        .args(["--silent", "--show-error", "--fail", "--cacert", ca, "-o"])
        .arg(out)
        .arg(url);
    if let Some(body) = post {
        command.args(["-H", "content-type: application/json", "--data", body]);
    }
    let mut child = command.spawn().expect("run curl");
    let pid = child.id() as u64;
    let status = child.wait().expect("wait for curl");
    assert!(status.success(), "curl {url} failed: {status:?}");
    pid
}

fn opens_of(agent: &Agent, pid: u64, name: &str) -> Vec<Value> {
    agent
        .events()
        .into_iter()
        .filter(|e| {
            kind_of(e) == "open"
                && pid_of(e) == pid
                && get(e, "file.path")
                    .as_str()
                    .is_some_and(|p| p.ends_with(name))
        })
        .collect()
}

fn metric(agent: &Agent, line_start: &str) -> Option<f64> {
    let (_, body) = agent.http_get("/metrics");
    body.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn an_llm_request_over_tls_tracks_its_client_from_that_write_on() {
    if !Path::new("/usr/lib/x86_64-linux-gnu/libssl.so.3").exists() {
        println!(
            "skipped: an_llm_request_over_tls_tracks_its_client_from_that_write_on: \
             no /usr/lib/x86_64-linux-gnu/libssl.so.3 to probe"
        );
        return;
    }
    let dir = TempDir::new("tls");
    let work = std::fs::canonicalize(dir.path()).expect("canonical temp dir");
    let (cert, key) = certificate(&work);
    let agent = Agent::start_with(AgentOptions::default());
    for probe in [
        "ssl_write",
        "ssl_write_ex",
        "ssl_read_ret",
        "ssl_read_ex_ret",
    ] {
        assert_eq!(
            metric(
                &agent,
                &format!("aiwatch_probe_attached{{probe=\"{probe}\"}}")
            ),
            Some(1.0),
            "{probe} is not attached; log:\n{}",
            agent.log()
        );
    }
    let port = free_port();
    let _server = Server::start(port, &cert, &key);

    // Python's ssl module (SSL_write_ex / SSL_read_ex).
    let output = Command::new(PYTHON)
        .args(["-c", CLIENT, &port.to_string(), &cert])
        .arg(&work)
        .output()
        .expect("run the Python client");
    assert!(
        output.status.success(),
        "the Python client failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let client: u64 = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("the client prints its pid");

    // curl (SSL_write / SSL_read): a page, then a messages request. curl
    // creates its output file when the first bytes of the answer arrive,
    // after its request was written.
    let url = format!("https://127.0.0.1:{port}");
    let page_out = work.join("curl-page.out");
    let page = curl(&format!("{url}/index.html"), &cert, &page_out, None);
    let llm_out = work.join("curl-llm.out");
    let llm = curl(
        &format!("{url}/v1/messages"),
        &cert,
        &llm_out,
        Some(r#"{"model":"claude","messages":[]}"#),
    );
    assert!(std::fs::read_to_string(&llm_out)
        .expect("curl's answer")
        .contains("\"c1\""));

    // The writes that matched tracked their process: its later opens,
    // which the kernel filters for untracked processes, are reported.
    agent.wait_event("the Python client's open after its LLM request", |e| {
        kind_of(e) == "open"
            && pid_of(e) == client
            && get(e, "file.path")
                .as_str()
                .is_some_and(|p| p.ends_with("note-after.txt"))
    });
    agent.wait_event("curl's output file after its LLM request", |e| {
        kind_of(e) == "open"
            && pid_of(e) == llm
            && get(e, "file.path").as_str() == Some(llm_out.to_str().unwrap())
    });
    // The clear text of the tracked clients reached the agent, which
    // reassembled each request (head and body) and its response.
    for (who, pid) in [("python", client), ("curl", llm)] {
        for kind in ["llm_request", "llm_response"] {
            agent.wait_event(&format!("{who}'s {kind}"), |e| {
                kind_of(e) == kind && pid_of(e) == pid
            });
        }
    }

    // Everything before the matching write stayed in the kernel.
    agent.sentinel();
    for name in ["note-before.txt", "note-between.txt"] {
        assert!(
            opens_of(&agent, client, name).is_empty(),
            "{name} was opened before the LLM request, yet reported"
        );
    }
    assert!(
        opens_of(&agent, page, "curl-page.out").is_empty(),
        "the page download tracked curl"
    );
    let untracked_text = agent
        .events()
        .into_iter()
        .filter(|e| kind_of(e).starts_with("llm_") && pid_of(e) == page)
        .count();
    assert_eq!(untracked_text, 0, "a non-LLM download made LLM events");
    // The kernel's counters reach /metrics on the telemetry task's tick.
    let filtered =
        aiwatch_tests::wait_until("filtered clear text", Duration::from_secs(15), || {
            metric(
                &agent,
                "aiwatch_kernel_events_filtered_total{kind=\"clear_text\"}",
            )
            .filter(|n| *n >= 2.0)
        });
    assert!(
        filtered.is_some(),
        "the two GETs' writes were not counted as filtered; log:\n{}",
        agent.log()
    );
    let (status, log) = agent.stop();
    assert!(status.success(), "aiwatch failed: {log}");
}

/// A Python client that waits for "go" on stdin before its chat completion
/// request, so that the agent's library scan can find the TLS library it
/// mapped at start. Prints its pid first, "done" last.
const WAITING_CLIENT: &str = r#"
import http.client, json, os, ssl, sys
port, ca, work = int(sys.argv[1]), sys.argv[2], sys.argv[3]
context = ssl.create_default_context(cafile=ca)
print(os.getpid(), flush=True)
sys.stdin.readline()
conn = http.client.HTTPSConnection("127.0.0.1", port, context=context)
conn.request("POST", "/v1/chat/completions", body=json.dumps({"model": "m"}),
             headers={"content-type": "application/json"})
assert json.loads(conn.getresponse().read())["id"] == "c1"
open(os.path.join(work, "wheel-after.txt"), "w").close()
print("done", flush=True)
"#;

/// The same with Node's https module (Node brings its own OpenSSL, linked
/// into the binary, unless the distribution links the system's).
const NODE_CLIENT: &str = r#"
const https = require("https"), fs = require("fs"), path = require("path");
const [port, ca, work] = process.argv.slice(1);
console.log(process.pid);
process.stdin.once("data", () => {
  const req = https.request({host: "127.0.0.1", port: Number(port), path: "/v1/messages",
    method: "POST", ca: fs.readFileSync(ca), headers: {"content-type": "application/json"}},
    res => { let body = ""; res.on("data", d => body += d); res.on("end", () => {
      fs.writeFileSync(path.join(work, "node-after.txt"), body);
      console.log("done"); process.exit(0); }); });
  req.end(JSON.stringify({model: "claude"}));
});
"#;

/// Starts a client whose first stdout line is its pid.
fn start_waiting(mut command: Command) -> (Child, u64) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the client");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout"))
        .read_line(&mut line)
        .expect("read the client's pid");
    let pid = line.trim().parse().expect("the client prints its pid");
    (child, pid)
}

/// Tells a waiting client to go and waits for its "done".
fn release(mut child: Child) {
    use std::io::Write as _;
    child
        .stdin
        .as_mut()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("tell the client to go");
    let output = child.wait_with_output().expect("wait for the client");
    assert!(output.status.success(), "the client failed: {output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("done"));
}

#[test]
fn tls_libraries_mapped_after_start_are_probed_when_allowed() {
    if !Path::new("/usr/lib/x86_64-linux-gnu/libssl.so.3").exists() {
        println!(
            "skipped: tls_libraries_mapped_after_start_are_probed_when_allowed: \
             no /usr/lib/x86_64-linux-gnu/libssl.so.3 to copy"
        );
        return;
    }
    let dir = TempDir::new("tls-later");
    let work = std::fs::canonicalize(dir.path()).expect("canonical temp dir");
    let (cert, key) = certificate(&work);
    let agent = Agent::start_with(AgentOptions {
        config: "llm_capture:\n  probe_after_start: true\n".into(),
        ..AgentOptions::default()
    });
    let port = free_port();
    let _server = Server::start(port, &cert, &key);

    // A wheel-bundled copy of libssl: another file, so another inode, which
    // the system library's probes do not cover.
    let wheel = work.join("wheel");
    std::fs::create_dir_all(&wheel).expect("wheel folder");
    let copy = wheel.join("libssl.so.3");
    std::fs::copy("/usr/lib/x86_64-linux-gnu/libssl.so.3", &copy).expect("copy libssl");
    let mut python = Command::new(PYTHON);
    python
        .env("LD_LIBRARY_PATH", &wheel)
        .args(["-c", WAITING_CLIENT, &port.to_string(), &cert])
        .arg(&work);
    let (client, pid) = start_waiting(python);
    // The library scan after exec finds the copy and probes it.
    agent.wait_for_log(
        &format!("TLS capture: probing {}", copy.display()),
        Duration::from_secs(30),
    );
    release(client);
    agent.wait_event("the wheel client's open after its LLM request", |e| {
        kind_of(e) == "open"
            && pid_of(e) == pid
            && get(e, "file.path")
                .as_str()
                .is_some_and(|p| p.ends_with("wheel-after.txt"))
    });

    // Node: probed as a binary when it exports OpenSSL itself; else its
    // requests go through the system libssl. Either way its LLM request
    // tracks it.
    let Ok(node) = which_node() else {
        println!(
            "skipped: tls_libraries_mapped_after_start_are_probed_when_allowed (node part): \
             no node on PATH"
        );
        return;
    };
    let mut command = Command::new(&node);
    command
        .args(["-e", NODE_CLIENT, &port.to_string(), &cert])
        .arg(&work);
    let (client, pid) = start_waiting(command);
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("node's executable");
    let probed = aiwatch_tests::wait_until("node probed", Duration::from_secs(10), || {
        agent
            .log()
            .contains(&format!("TLS capture: probing {}", exe.display()))
            .then_some(())
    });
    println!(
        "node {}: {}",
        exe.display(),
        if probed.is_some() {
            "exports OpenSSL and was probed as a binary"
        } else {
            "not probed as a binary (it uses a shared libssl)"
        }
    );
    release(client);
    agent.wait_event("node's write after its LLM request", |e| {
        kind_of(e) == "open"
            && pid_of(e) == pid
            && get(e, "file.path")
                .as_str()
                .is_some_and(|p| p.ends_with("node-after.txt"))
    });
    let (status, log) = agent.stop();
    assert!(status.success(), "aiwatch failed: {log}");
}

fn which_node() -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("node"))
        .find(|candidate| candidate.is_file())
        .ok_or(())
}
