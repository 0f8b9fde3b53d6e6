//! Events per second through `PolicyEngine::evaluate` over a realistic mix
//! of events, with 10, 100 and 1,000 synthetic rules of the default pack's
//! shape, and with the default pack itself (group `evaluate`); and through
//! the user-space pipeline from the kernel's raw records: decode → enrich →
//! rules (group `pipeline`).

use std::hint::black_box;
use std::mem::size_of;
use std::sync::Arc;
use std::time::Duration;

use aiwatch::clock::BootClock;
use aiwatch::enrich::{Enricher, TableLimits};
use aiwatch::event::Event;
use aiwatch::ingest::decode::decode;
use aiwatch::policy::{PolicyEngine, PolicySet, Source};
use aiwatch_common::{
    EventHeader, EventKind, ExecRecord, FileRecord, KernelPath, NetRecord, SockAddr,
    FILE_FLAG_INODE, FILE_FLAG_PATH_IS_FILE, FILE_FLAG_TRACKED, NET_FLAG_LOCAL_FROM_SOCKET,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;

const KINDS: [&str; 8] = [
    "exec",
    "open",
    "open",
    "connect",
    "dns",
    "tcp_summary",
    "open",
    "listen",
];

/// `count` rules: each pins a kind and tests a few fields, like the pack.
fn synthetic_rules(count: usize) -> String {
    let mut text = String::from(
        "lists:\n  shells: [sh, bash, dash, zsh, ash, ksh]\n  tools: [curl, wget, nc, socat, scp, rsync, tar, zip]\n  ports: [3333, 4444, 5555, 7777, 14444]\nmacros:\n  in_ai: {workload.kind: {in: [inference, training, notebook]}}\nrules:\n",
    );
    for index in 0..count {
        let kind = KINDS[index % KINDS.len()];
        let body = match (kind, index % 3) {
            ("exec", 0) => format!("process.name: {{in: shells}}\n      macro: in_ai\n      not: {{parent.name: {{in: shells}}}}\n      process.argv: {{contains: marker{index}}}"),
            ("exec", _) => format!("process.exe: {{glob: [\"/opt/tool{index}/**\", \"/tmp/**/x{index}\"]}}\n      workload: {{exists: true}}"),
            ("open", 0) => format!("file.class: {{in: [model, pickle-model]}}\n      process.name: {{in: tools}}\n      file.path: {{prefix: /srv/{index}/}}"),
            ("open", 1) => format!("file.path: {{glob: [\"/etc/app{index}/**\", \"**/secret{index}.key\"]}}\n      workload: {{exists: false}}"),
            ("open", _) => format!("file.class: secret\n      process.exe: {{suffix: /reader{index}}}"),
            ("connect", _) => format!("net.dst_external: true\n      net.dst.port: {{in: ports}}\n      net.dst.ip: {{cidr: [\"198.51.{}.0/24\"]}}", index % 250),
            ("dns", _) => format!("dns.name: {{glob: [\"*.pool{index}.example\", \"bad{index}.example.com\"]}}"),
            ("tcp_summary", _) => format!("net.bytes_sent: {{gt: {}MiB}}\n      net.dst_external: true", 100 + index),
            _ => format!("net.src.port: {}\n      not: {{net.src.ip: {{cidr: [127.0.0.0/8]}}}}", 8000 + index),
        };
        text.push_str(&format!(
            "  - id: synthetic.rule-{index}\n    severity: medium\n    when:\n      kind: {kind}\n      {body}\n"
        ));
    }
    text
}

/// A mix like a busy AI host: mostly opens (imports, models), some execs
/// and network events.
fn event_mix(count: usize) -> Vec<Event> {
    let workload = json!({"id": "w1", "kind": "inference", "name": "vllm"});
    (0..count)
        .map(|index| {
            let ktime = 1_000_000_000 + index as u64 * 10_000;
            let process = json!({"pid": 1000 + (index % 50), "exe": "/usr/bin/python3.11", "argv": ["python3", "serve.py"], "start_time": "2026-01-01T00:00:00Z"});
            let value = match index % 20 {
                0 => json!({"kind": "exec", "process": {"pid": 5000 + index, "exe": "/usr/bin/git", "argv": ["git", "rev-parse", "HEAD"]},
                    "parent": {"pid": 1000, "exe": "/usr/bin/python3.11"}, "workload": workload}),
                1 => json!({"kind": "connect", "process": process, "workload": workload,
                    "net": {"family": "ipv4", "protocol": "tcp", "dst": {"ip": "203.0.113.7", "port": 443}, "dst_external": true}}),
                2 => json!({"kind": "dns", "process": process, "dns": {"name": "huggingface.co", "qtype": "A", "server": {"ip": "10.0.0.2", "port": 53}}}),
                3 => json!({"kind": "tcp_summary", "process": process, "workload": workload,
                    "net": {"family": "ipv4", "dst": {"ip": "127.0.0.1", "port": 45000}, "bytes_sent": 4096}}),
                4 => json!({"kind": "open", "process": process, "workload": workload,
                    "file": {"path": "/models/llama/model-00001-of-00004.safetensors", "access": "read", "class": "model", "result": 5}}),
                5 => json!({"kind": "fork", "process": process, "fork": {"child_pid": 9000 + index}}),
                _ => json!({"kind": "open", "process": process, "workload": workload,
                    "file": {"path": format!("/usr/lib/python3/dist-packages/pkg{}/mod{}.py", index % 40, index % 300), "access": "read", "result": 3}}),
            };
            let mut value = value;
            value["time"] = json!("2026-01-01T00:00:00Z");
            value["ktime_ns"] = json!(ktime);
            serde_json::from_value(value).expect("benchmark events are valid")
        })
        .collect()
}

fn bench_rules(c: &mut Criterion) {
    let events = event_mix(10_000);
    let mut group = c.benchmark_group("evaluate");
    group.throughput(Throughput::Elements(events.len() as u64));
    let mut sets: Vec<(String, PolicySet)> = [10, 100, 1000]
        .into_iter()
        .map(|count| {
            let source = Source {
                name: Arc::from("synthetic.yaml"),
                text: synthetic_rules(count),
            };
            let set = PolicySet::from_sources(&[source]).expect("synthetic rules load");
            (format!("{count}_rules"), set)
        })
        .collect();
    sets.push((
        "default_pack".to_string(),
        PolicySet::default_pack().expect("pack loads"),
    ));
    for (name, set) in sets {
        let mut engine = PolicyEngine::new(Arc::new(set));
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut alerts = 0usize;
                for event in &events {
                    alerts += engine.evaluate(black_box(event)).len();
                }
                black_box(alerts)
            })
        });
    }
    group.finish();
}

// ---- raw kernel records, as the ring buffer hands them over --------------

fn zeroed<T>() -> T {
    // SAFETY: every ABI record is valid when all-zero.
    unsafe { std::mem::zeroed() }
}

fn bytes_of<T>(value: &T) -> Vec<u8> {
    // SAFETY: plain repr(C) data, read as bytes.
    unsafe { std::slice::from_raw_parts(value as *const T as *const u8, size_of::<T>()) }.to_vec()
}

fn header(kind: EventKind, size: usize, pid: u32, ktime_ns: u64) -> EventHeader {
    let mut header: EventHeader = zeroed();
    header.kind = kind as u16;
    header.size = size as u32;
    header.ktime_ns = ktime_ns;
    header.pid = pid;
    header.tid = pid;
    header.cgroup_id = 1;
    header.comm[..7].copy_from_slice(b"python3");
    header
}

/// A kernel path, components leaf first, NUL-separated.
fn kernel_path(components_leaf_first: &[&str]) -> KernelPath {
    let mut path: KernelPath = zeroed();
    let mut len = 0;
    for component in components_leaf_first {
        path.buf[len..len + component.len()].copy_from_slice(component.as_bytes());
        len += component.len() + 1;
    }
    path.len = len as u16;
    path.depth = components_leaf_first.len() as u16;
    path
}

fn exec(pid: u32, ktime_ns: u64) -> Vec<u8> {
    let mut record: ExecRecord = zeroed();
    record.header = header(EventKind::Exec, size_of::<ExecRecord>(), pid, ktime_ns);
    record.ppid = 1;
    let args = b"python3\0serve.py\0--port\08000\0";
    record.args[..args.len()].copy_from_slice(args);
    record.args_len = args.len() as u16;
    record.filename[..16].copy_from_slice(b"/usr/bin/python3");
    record.filename_len = 16;
    record.exe = kernel_path(&["python3.11", "bin", "usr"]);
    bytes_of(&record)
}

fn open(pid: u32, ktime_ns: u64, leaf: &str, dir: &str) -> Vec<u8> {
    let mut record: FileRecord = zeroed();
    record.header = header(EventKind::Open, size_of::<FileRecord>(), pid, ktime_ns);
    record.header.flags = FILE_FLAG_TRACKED | FILE_FLAG_PATH_IS_FILE | FILE_FLAG_INODE;
    record.ret = 3;
    record.i_mode = 0o100644;
    record.size = 4096;
    let name = format!("/usr/lib/python3/dist-packages/{dir}/{leaf}");
    record.name[..name.len()].copy_from_slice(name.as_bytes());
    record.name_len = name.len() as u16;
    record.path = kernel_path(&[leaf, dir, "dist-packages", "python3", "lib", "usr"]);
    record.path2 = kernel_path(&[]);
    bytes_of(&record)
}

fn connect(pid: u32, ktime_ns: u64) -> Vec<u8> {
    let mut record: NetRecord = zeroed();
    record.header = header(EventKind::Connect, size_of::<NetRecord>(), pid, ktime_ns);
    record.header.flags = NET_FLAG_LOCAL_FROM_SOCKET;
    record.fd = 5;
    record.sock_type = 1;
    let v4 = |a: [u8; 4]| {
        let mut addr = [0u8; 16];
        addr[..4].copy_from_slice(&a);
        addr
    };
    record.local = SockAddr {
        family: 2,
        port: 41000,
        _pad: 0,
        addr: v4([10, 0, 0, 5]),
    };
    record.remote = SockAddr {
        family: 2,
        port: 443,
        _pad: 0,
        addr: v4([203, 0, 113, 7]),
    };
    bytes_of(&record)
}

/// 50 processes' execs, then a busy AI host's mix: mostly opens (imports,
/// models), some connects and execs.
fn raw_records(count: usize) -> Vec<Vec<u8>> {
    let mut records: Vec<Vec<u8>> = (0..50)
        .map(|i| exec(1000 + i, 1_000_000 + u64::from(i)))
        .collect();
    for index in 0..count {
        let pid = 1000 + (index % 50) as u32;
        let ktime = 2_000_000_000 + index as u64 * 10_000;
        records.push(match index % 20 {
            0 => exec(pid, ktime),
            1 | 2 => connect(pid, ktime),
            3 => open(pid, ktime, "model-00001-of-00004.safetensors", "llama"),
            _ => open(
                pid,
                ktime,
                &format!("mod{}.py", index % 300),
                &format!("pkg{}", index % 40),
            ),
        });
    }
    records
}

fn bench_pipeline(c: &mut Criterion) {
    let records = raw_records(10_000);
    for bytes in &records {
        if let Err(err) = decode(bytes) {
            panic!("a benchmark record does not decode: {err}");
        }
    }
    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(records.len() as u64));
    for count in [10, 100, 1000] {
        let source = Source {
            name: Arc::from("synthetic.yaml"),
            text: synthetic_rules(count),
        };
        let set = PolicySet::from_sources(&[source]).expect("synthetic rules load");
        let mut engine = PolicyEngine::new(Arc::new(set));
        let mut enricher = Enricher::new(TableLimits::default(), BootClock::new(), false);
        group.bench_function(format!("decode_enrich_{count}_rules"), |b| {
            b.iter(|| {
                let mut alerts = 0usize;
                for bytes in &records {
                    let Ok(record) = decode(black_box(bytes)) else {
                        unreachable!("checked before measuring");
                    };
                    let event = enricher.enrich(record);
                    alerts += engine.evaluate(&event).len();
                }
                black_box(alerts)
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    targets = bench_rules, bench_pipeline
}
criterion_main!(benches);
