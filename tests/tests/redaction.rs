//! Secrets in argv never leave the agent: each credential format goes
//! through a real exec, and every sink (events file, alerts file, syslog,
//! webhook) and the agent's own log are searched for it.
//!
//! The programs are copies of /bin/true in this test's own folder; a rule
//! alerts on any exec from that folder, so the alert sinks see every one.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    os::unix::{fs::PermissionsExt, net::UnixDatagram},
    path::Path,
    process::Command,
    sync::{Arc, Mutex},
    thread,
};

use aiwatch_tests::{event_timeout, get, kind_of, wait_until, Agent, AgentOptions, TempDir};
use serde_json::Value;

/// A webhook receiver answering 200 to every POST, keeping the bodies.
fn webhook_receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into_owned());
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (url, bodies)
}

/// A syslog socket keeping every datagram.
fn syslog_receiver(path: &Path) -> Arc<Mutex<Vec<String>>> {
    let socket = UnixDatagram::bind(path).expect("bind syslog socket");
    let messages = Arc::new(Mutex::new(Vec::new()));
    let seen = messages.clone();
    thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        while let Ok(n) = socket.recv(&mut buf) {
            seen.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    });
    messages
}

/// One case: a program name, its arguments, the secrets that must vanish
/// and the argument expected in its place.
struct Case {
    program: &'static str,
    args: Vec<String>,
    secret: String,
    expected: Vec<String>,
}

fn cases(nonce: &str) -> Vec<Case> {
    let upper: String = nonce
        .chars()
        .map(|c| c.to_ascii_uppercase())
        .chain("Q".repeat(16).chars())
        .filter(|c| c.is_ascii_alphanumeric())
        .take(16)
        .collect();
    let long = format!("{nonce}{}", "x".repeat(40));
    let long: String = long.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let case = |program, args: &[&str], secret: &str, expected: &[&str]| Case {
        program,
        args: args.iter().map(|a| a.to_string()).collect(),
        secret: secret.to_string(),
        expected: expected.iter().map(|a| a.to_string()).collect(),
    };
    let pw = format!("pw-{nonce}");
    let key = format!("ak-{nonce}");
    let sshpass = format!("sp-{nonce}");
    let token = format!("tk-{nonce}");
    let userinfo = format!("up-{nonce}");
    let bearer = format!("br{long}");
    let aws = format!("AKIA{upper}");
    let github = format!("ghp_{}", &long[..36]);
    let openai = format!("sk-proj-{}", &long[..32]);
    let hf = format!("hf_{}", &long[..34]);
    let slack = format!("xoxb-1234567890-{nonce}");
    let pem_body = format!("MIIE{long}");
    let corp = format!(
        "corp-{}",
        &nonce
            .chars()
            .filter(char::is_ascii_digit)
            .chain("000000".chars())
            .take(6)
            .collect::<String>()
    );
    vec![
        case(
            "probe",
            &[&format!("--password={pw}")],
            &pw,
            &["--password=[redacted]"],
        ),
        case(
            "probe",
            &["--api-key", &key],
            &key,
            &["--api-key", "[redacted]"],
        ),
        case(
            "sshpass",
            &["-p", &sshpass, "ssh"],
            &sshpass,
            &["-p", "[redacted]", "ssh"],
        ),
        case(
            "probe",
            &[&format!("HF_TOKEN={token}")],
            &token,
            &["HF_TOKEN=[redacted]"],
        ),
        case(
            "probe",
            &[&format!("https://bob:{userinfo}@git.invalid/r.git")],
            &userinfo,
            &["https://bob:[redacted]@git.invalid/r.git"],
        ),
        case(
            "probe",
            &["-H", &format!("Authorization: Bearer {bearer}")],
            &bearer,
            &["-H", "Authorization: Bearer [redacted]"],
        ),
        case("probe", &[&aws], &aws, &["AKIA[redacted]"]),
        case("probe", &[&github], &github, &["ghp_[redacted]"]),
        case("probe", &[&openai], &openai, &["sk-proj-[redacted]"]),
        case("probe", &[&hf], &hf, &["hf_[redacted]"]),
        case("probe", &[&slack], &slack, &["xoxb-[redacted]"]),
        case(
            "probe",
            &[&format!(
                "-----BEGIN PRIVATE KEY-----\n{pem_body}\n-----END PRIVATE KEY-----"
            )],
            &pem_body,
            &["-----BEGIN PRIVATE KEY-----[redacted]"],
        ),
        case("probe", &[&corp], &corp, &["[redacted]"]),
    ]
}

#[test]
fn secrets_in_argv_are_redacted_in_every_sink() {
    let dir = TempDir::new("redact");
    for program in ["probe", "sshpass"] {
        let to = dir.path().join(program);
        std::fs::copy("/bin/true", &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let policy = dir.path().join("rules.yaml");
    std::fs::write(
        &policy,
        format!(
            "rules:\n  - id: test.redact.exec\n    description: a redaction probe ran\n    severity: high\n    when:\n      kind: exec\n      process.exe: {{prefix: \"{}/\"}}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let syslog_path = dir.path().join("log");
    let syslog = syslog_receiver(&syslog_path);
    let (webhook_url, webhook) = webhook_receiver();
    let agent = Agent::start_with(AgentOptions {
        config: format!(
            "anomaly: {{enabled: false}}\npolicies: [{}]\nsyslog: {{socket: {}, facility: local0}}\n\
             webhook: {{url: \"{webhook_url}\", flush_ms: 100}}\nredact: {{patterns: [\"corp-[0-9]{{6}}\"]}}\n",
            policy.display(),
            syslog_path.display(),
        ),
        ..Default::default()
    });

    let nonce = format!(
        "{}n{}",
        std::process::id(),
        7_000_000 + std::process::id() % 1_000_000
    );
    let cases = cases(&nonce);
    let mut pids = Vec::new();
    for case in &cases {
        let status = Command::new(dir.path().join(case.program))
            .args(&case.args)
            .spawn()
            .unwrap();
        pids.push(status.id() as u64);
        let mut status = status;
        assert!(status.wait().unwrap().success());
    }

    // Each exec's event carries the redacted argv, key names kept.
    for (case, pid) in cases.iter().zip(&pids) {
        let exec = agent.wait_event(&format!("exec of {pid}"), |e| {
            kind_of(e) == "exec" && get(e, "process.pid").as_u64() == Some(*pid)
        });
        let argv: Vec<String> = get(&exec, "process.argv")
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(argv[1..], case.expected[..], "argv of {:?}", case.args);
    }
    // Every alert sink got every alert before it is searched.
    let alert_of = |text: &str, pid: u64| text.contains(&format!("\"pid\":{pid},"));
    let all_seen = wait_until("every alert in every sink", event_timeout(), || {
        let alerts = std::fs::read_to_string(&agent.alerts_path).unwrap_or_default();
        let syslog = syslog.lock().unwrap().join("\n");
        let webhook = webhook.lock().unwrap().join("\n");
        pids.iter()
            .all(|&pid| alert_of(&alerts, pid) && alert_of(&syslog, pid) && alert_of(&webhook, pid))
            .then_some(())
    });
    let (alerts, syslog, webhook) = (
        std::fs::read_to_string(&agent.alerts_path).unwrap_or_default(),
        syslog.lock().unwrap().join("\n"),
        webhook.lock().unwrap().join("\n"),
    );
    assert!(
        all_seen.is_some(),
        "not every alert reached every sink:\nalerts: {alerts}\nsyslog: {syslog}\nwebhook: {webhook}\nlog:\n{}",
        agent.log()
    );
    let events = std::fs::read_to_string(&agent.events_path).unwrap_or_default();
    let log = agent.log();
    for (name, text) in [
        ("events file", &events),
        ("alerts file", &alerts),
        ("syslog", &syslog),
        ("webhook", &webhook),
        ("agent log", &log),
    ] {
        for case in &cases {
            assert!(
                !text.contains(&case.secret),
                "the {name} holds the secret {:?}",
                case.secret
            );
        }
        if name != "agent log" {
            assert!(text.contains("[redacted]"), "the {name} shows no redaction");
            assert!(
                text.contains("--password=[redacted]"),
                "the {name} lost the key name"
            );
        }
    }
    let events: Vec<Value> = events
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(!events.is_empty());
    let (status, log) = agent.stop();
    assert!(status.success(), "agent exit status {status:?}\n{log}");
}
