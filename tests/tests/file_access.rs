//! Folded reads end to end: a tracked process's plain reads in a data
//! directory are counted in the kernel and reported as `file_access`
//! summaries, counted exactly, while its writes, unlinks and reads of files
//! of interest stay full events.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::{fs::MetadataExt, process::ExitStatusExt},
    path::Path,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use aiwatch_common::{file_access_slots, FileAccessKey};
use aiwatch_tests::{event_timeout, get, kind_of, pid_of, Agent, AgentOptions, TempDir};
use serde_json::Value;

const PYTHON: &str = "/usr/bin/python3";

/// Distinct files read once each, and reads of one file again and again.
const DISTINCT: u64 = 300;
const REPEATS: u64 = 200;

/// Starts `script` (Python) with `args` from a descriptor table of its
/// own size: the kernel sizes a child's table at fork by the highest
/// descriptor its parent has open, and keeps it through exec, so a test
/// run from a shell holding a high descriptor would give every child a
/// grown table. The launcher closes everything past stderr, then forks the
/// script; stdin and stdout are the launcher's, the exit status (or the
/// killing signal) the script's.
fn spawn_clean(script: &str, args: &[&str]) -> std::process::Child {
    const LAUNCHER: &str = "import os, subprocess, sys\n\
        os.closerange(3, 1 << 16)\n\
        status = subprocess.call([sys.executable, '-c'] + sys.argv[1:], close_fds=True)\n\
        if status < 0: os.kill(os.getpid(), -status)\n\
        sys.exit(status)\n";
    Command::new(PYTHON)
        .args(["-c", LAUNCHER, script])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the launcher")
}

/// The size of the descriptor table of `pid` (`FDSize`).
fn descriptor_table_size(pid: u64) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("the process's status")
        .lines()
        .find_map(|line| line.strip_prefix("FDSize:"))
        .and_then(|size| size.trim().parse().ok())
        .expect("FDSize in the process's status")
}

/// A script's pipes: it waits for a line on stdin before each phase and
/// says on stdout what it did.
struct Pipes {
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Pipes {
    fn of(child: &mut Child) -> Pipes {
        Pipes {
            stdin: child.stdin.take().expect("the script's stdin"),
            stdout: BufReader::new(child.stdout.take().expect("the script's stdout")),
        }
    }

    /// The script's next line, trimmed; empty once it has ended.
    fn read(&mut self) -> String {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .expect("read the script's output");
        line.trim().to_string()
    }

    /// Lets the script go on to its next phase; what it says next.
    fn go(&mut self) -> String {
        writeln!(self.stdin).expect("write to the script");
        self.read()
    }
}

/// Descriptors embedded in a `files_struct` (`NR_OPEN_DEFAULT` on 64-bit
/// kernels): the kernel folds through them with direct loads, and through
/// a grown table with checked reads.
const EMBEDDED_DESCRIPTORS: u64 = 64;

/// The loader: waits for a line on stdin before each phase, so that the
/// test decides when it is tracked (the first line) and when its directory
/// is folded (the second). It holds `argv[4]` descriptors open, so that the
/// kernel's descriptor table grows past the slots embedded in its
/// `files_struct`. The script is short, and has no comments: the kernel
/// captures 1,024 bytes of arguments, and the workload's marker comes
/// after it.
const LOADER: &str = r#"
import os, sys
d = sys.argv[1]
held = [os.open('/dev/null', os.O_RDONLY) for _ in range(int(sys.argv[4]))]
print(os.getpid(), flush=True)
sys.stdin.readline()
open(os.path.join(d, 'f0000'), 'rb').read()
print('first', flush=True)
sys.stdin.readline()
for i in range(1, int(sys.argv[2]) + 1):
    open(os.path.join(d, 'f%04d' % i), 'rb').read()
for _ in range(int(sys.argv[3])):
    open(os.path.join(d, 'same'), 'rb').read()
for name in sys.argv[6:]:
    open(os.path.join(d, name), 'rb').read()
with open(os.path.join(d, 'written'), 'w') as f:
    f.write('x')
os.unlink(os.path.join(d, 'f0005'))
try:
    open(os.path.join(d, 'missing'), 'rb')
except OSError:
    pass
print('done', flush=True)
sys.stdin.readline()
"#;

/// Models the loader reads in its folded directory, one of each length the
/// kernel takes a different way: the first 16 bytes of the dentry's inline
/// buffer (up to 16), its words shifted (17 to 24, 25 to 31), and a copy
/// of the name's tail (32 and longer, never inline).
const MODELS: &[&str] = &[
    "m.onnx",
    "weights_001.onnx",
    "weights.safetensors",
    "an_eight_more_bytes.safetensors",
    "a_checkpoint_with_a_rather_long_name.safetensors",
];

/// Plain files of the lengths of the shifted and the copied names: folded
/// like the short ones.
const PLAIN_LONG: &[&str] = &[
    "plain_sample_0001_24byte",
    "plain_sample_with_a_rather_long_name_0001",
];

/// The id of the `FILE_ACCESS` map of the agent with pid `agent`: other
/// agents on the kernel (other tests') have maps of the same name.
fn own_map_id(agent: u32) -> u64 {
    let fds = std::fs::read_dir(format!("/proc/{agent}/fdinfo")).expect("the agent's fdinfo");
    for fd in fds.flatten() {
        let Ok(info) = std::fs::read_to_string(fd.path()) else {
            continue;
        };
        let Some(id) = info
            .lines()
            .find_map(|line| line.strip_prefix("map_id:"))
            .and_then(|id| id.trim().parse::<u64>().ok())
        else {
            continue;
        };
        let shown = Command::new("bpftool")
            .args(["-j", "map", "show", "id", &id.to_string()])
            .output()
            .expect("run bpftool");
        let map: Value = serde_json::from_slice(&shown.stdout).unwrap_or(Value::Null);
        if map["name"] == "FILE_ACCESS" {
            return id;
        }
    }
    panic!("agent {agent} holds no FILE_ACCESS map");
}

/// The kernel's form of the device of `path` (`MKDEV`: major << 20 | minor).
fn kernel_dev(path: &Path) -> u32 {
    let dev = std::fs::metadata(path).unwrap().dev();
    (libc::major(dev) << 20) | libc::minor(dev)
}

/// Whether the agent's `FILE_ACCESS` array (id `map`) has a counter for
/// `pid` and the directory `dir`: looked up in the slots where the kernel
/// looks for it, so this also checks that the agent placed it there.
fn kernel_counts(map: u64, pid: u32, dir: &Path) -> bool {
    let key = FileAccessKey {
        tgid: pid,
        dev: kernel_dev(dir),
        dir_ino: std::fs::metadata(dir).unwrap().ino(),
    };
    file_access_slots(&key).into_iter().any(|slot| {
        let mut args = vec!["-j".to_string(), "map".into(), "lookup".into(), "id".into()];
        args.push(map.to_string());
        args.push("key".into());
        args.extend(slot.to_le_bytes().iter().map(|b| b.to_string()));
        let output = Command::new("bpftool")
            .args(&args)
            .output()
            .expect("run bpftool");
        let entry: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        entry["values"].as_array().into_iter().flatten().any(|cpu| {
            let value: Vec<u8> = cpu["value"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|b| b.as_str())
                .filter_map(|b| u8::from_str_radix(b.trim_start_matches("0x"), 16).ok())
                .collect();
            value.len() >= 16
                && u32::from_le_bytes(value[0..4].try_into().unwrap()) == key.tgid
                && u32::from_le_bytes(value[4..8].try_into().unwrap()) == key.dev
                && u64::from_le_bytes(value[8..16].try_into().unwrap()) == key.dir_ino
        })
    })
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn plain_reads_are_counted_exactly_and_changes_are_never_folded() {
    check_folding(0);
}

/// The same with 100 descriptors held open: past the 64 embedded in the
/// process's `files_struct`, the kernel reads the new file through the
/// grown table with checked reads instead of direct loads.
#[test]
fn folding_is_the_same_with_a_grown_descriptor_table() {
    check_folding(100);
}

fn check_folding(held_descriptors: usize) {
    let data = TempDir::new("file-access");
    let dir = std::fs::canonicalize(data.path()).unwrap();
    for i in 0..=DISTINCT {
        std::fs::write(dir.join(format!("f{i:04}")), vec![b'x'; 100]).unwrap();
    }
    std::fs::write(dir.join("same"), vec![b'y'; 10]).unwrap();
    for name in MODELS {
        std::fs::write(dir.join(name), b"{}").unwrap();
    }
    for name in PLAIN_LONG {
        std::fs::write(dir.join(name), vec![b'z'; 1000]).unwrap();
    }
    let marker = format!("file-access-loader-{}", std::process::id());
    let agent = Agent::start_with(AgentOptions {
        config: format!(
            "file_access_interval_secs: 1\nworkloads:\n  declared:\n    - name: {marker}\n      kind: training\n      match:\n        argv: \"*{marker}*\"\n"
        ),
        ..AgentOptions::default()
    });
    let map = own_map_id(agent.pid());

    let mut args = vec![
        dir.to_str().unwrap().to_string(),
        DISTINCT.to_string(),
        REPEATS.to_string(),
        held_descriptors.to_string(),
        marker.clone(),
    ];
    args.extend(PLAIN_LONG.iter().chain(MODELS).map(|name| name.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut loader = spawn_clean(LOADER, &args);
    let mut pipes = Pipes::of(&mut loader);
    let pid: u64 = pipes.read().parse().expect("the loader prints its pid");
    // Each test takes the path it names: the embedded table or a grown one.
    let table = descriptor_table_size(pid);
    if held_descriptors == 0 {
        assert_eq!(table, EMBEDDED_DESCRIPTORS, "the loader's descriptor table");
    } else {
        assert!(
            table > EMBEDDED_DESCRIPTORS,
            "the loader's table has {table} slots"
        );
    }

    // Its exec event is written once the pipeline has tracked it.
    agent.wait_event("the loader's exec", |e| {
        kind_of(e) == "exec" && pid_of(e) == pid && get(e, "workload.name") == marker.as_str()
    });
    assert_eq!(pipes.go(), "first");
    let first = dir.join("f0000").display().to_string();
    let first_full = agent.wait_event("the first read in the directory, in full", |e| {
        kind_of(e) == "open" && pid_of(e) == pid && get(e, "file.path") == first.as_str()
    });
    wait_until(
        "the kernel to count the loader's reads in its directory",
        Duration::from_secs(30),
        || kernel_counts(map, pid as u32, &dir),
    );
    assert_eq!(pipes.go(), "done");

    // Changes and a read of a file of interest are full events.
    let written = dir.join("written").display().to_string();
    let write = agent.wait_event("the write, in full", |e| {
        kind_of(e) == "open" && pid_of(e) == pid && get(e, "file.path") == written.as_str()
    });
    let unlinked = dir.join("f0005").display().to_string();
    agent.wait_event("the unlink, in full", |e| {
        kind_of(e) == "unlink" && pid_of(e) == pid && get(e, "file.path") == unlinked.as_str()
    });
    // A failed read is a full event, its name read from the loader's
    // memory at the exit.
    let missing = dir.join("missing").display().to_string();
    let failed = agent.wait_event("the failed read, in full", |e| {
        kind_of(e) == "open" && pid_of(e) == pid && get(e, "file.path") == missing.as_str()
    });
    assert_eq!(get(&failed, "file.result"), -2, "ENOENT: {failed}");
    for name in MODELS {
        let weights = dir.join(name).display().to_string();
        let model = agent.wait_event(&format!("the read of {name}, in full"), |e| {
            kind_of(e) == "open" && pid_of(e) == pid && get(e, "file.path") == weights.as_str()
        });
        assert_eq!(get(&model, "file.class"), "model", "{model}");
    }

    // The loader exits; its counters are reported one last time and
    // removed.
    assert_eq!(pipes.go(), "", "the loader's end");
    assert!(loader.wait().unwrap().success());
    wait_until(
        "the loader's counters to be removed",
        Duration::from_secs(30),
        || !kernel_counts(map, pid as u32, &dir),
    );
    agent.sentinel();

    let directory = dir.display().to_string();
    let events = agent.events();
    let summaries: Vec<&Value> = events
        .iter()
        .filter(|e| kind_of(e) == "file_access" && pid_of(e) == pid)
        .filter(|e| get(e, "file.path") == directory.as_str())
        .collect();
    assert!(
        !summaries.is_empty(),
        "no file_access summary of {directory}"
    );
    let counted: u64 = summaries
        .iter()
        .map(|e| get(e, "file.count").as_u64().unwrap())
        .sum();
    let plain_long = PLAIN_LONG.len() as u64;
    assert_eq!(
        counted,
        DISTINCT + REPEATS + plain_long,
        "reads counted: {summaries:?}"
    );
    let bytes: u64 = summaries
        .iter()
        .map(|e| get(e, "file.size").as_u64().unwrap())
        .sum();
    assert_eq!(bytes, DISTINCT * 100 + REPEATS * 10 + plain_long * 1000);
    for summary in &summaries {
        assert_eq!(get(summary, "file.access"), "read");
        assert_eq!(get(summary, "workload.name"), marker.as_str());
        // The counted reads came after the first, full read and before
        // the write. The kernel reads its clock once per tick, so the
        // last time may be up to a tick early, never late. (Fixed-width
        // RFC 3339 times compare as strings.)
        let time = |event: &Value, field: &str| get(event, field).as_str().unwrap().to_string();
        let (first_time, last_time) = (
            time(summary, "file.first_time"),
            time(summary, "file.last_time"),
        );
        assert!(
            time(&first_full, "time") <= first_time
                && first_time <= last_time
                && last_time <= time(&write, "time"),
            "the summary's times lie outside the reads: {summary}"
        );
    }
    // None of the folded reads came one by one.
    let one_by_one = events
        .iter()
        .filter(|e| kind_of(e) == "open" && pid_of(e) == pid)
        .filter(|e| {
            let path = get(e, "file.path").as_str().unwrap_or_default().to_string();
            path.starts_with(&format!("{directory}/f")) && path != first
                || path == format!("{directory}/same")
                || PLAIN_LONG
                    .iter()
                    .any(|name| path == format!("{directory}/{name}"))
        })
        .count();
    assert_eq!(one_by_one, 0, "folded reads were also reported one by one");
}

/// A reader that warms its directory up, then opens a hard link there to
/// a file a kill rule protects elsewhere.
const WARM_THEN_STEAL: &str = r#"
import os, sys
d = sys.argv[1]
print(os.getpid(), flush=True)
sys.stdin.readline()                       # tracked now
open(os.path.join(d, 'f0000'), 'rb').read()
print('first', flush=True)
sys.stdin.readline()                       # the directory is folded now
for i in range(1, 51):
    open(os.path.join(d, 'f%04d' % i), 'rb').read()
print('warm', flush=True)
data = open(os.path.join(d, 'f0051'), 'rb').read()
print('stolen', len(data), flush=True)
"#;

/// Folding never hides an enforced open. A rule's path is never in a
/// folded directory, but it protects the file's inode, which a hard link
/// can give another name in a data directory whose reads the kernel
/// counts: the open through the link is still decided by the open kill,
/// and the tracked reader dies before it reads a byte.
#[test]
fn a_hard_link_to_a_protected_file_in_a_folded_directory_is_still_killed() {
    let root = TempDir::new("file-access-kill");
    let root_path = std::fs::canonicalize(root.path()).unwrap();
    let dir = root_path.join("data");
    let vault = root_path.join("vault");
    std::fs::create_dir(&dir).unwrap();
    std::fs::create_dir(&vault).unwrap();
    for i in 0..=50 {
        std::fs::write(dir.join(format!("f{i:04}")), vec![b'x'; 100]).unwrap();
    }
    let protected = vault.join("batch.dat");
    std::fs::write(&protected, b"labelled records that must not leave").unwrap();
    let link = dir.join("f0051");
    std::fs::hard_link(&protected, &link).unwrap();
    let policies = root_path.join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("open.yaml"),
        format!(
            "enforcement: enforce\nrules:\n  - id: test.folded-open-kill\n    description: A protected batch was opened\n    severity: high\n    action: kill\n    when:\n      kind: open\n      file.path: {}\n      not:\n        process.exe: /bin/true\n",
            protected.display()
        ),
    )
    .unwrap();
    let marker = format!("file-access-thief-{}", std::process::id());
    let agent = Agent::start_with(AgentOptions {
        config: format!(
            "anomaly: {{enabled: false}}\ndefault_policies: false\npolicies: [{}]\nenforcement: {{kill_budget: 0}}\nfile_access_interval_secs: 1\nworkloads:\n  declared:\n    - name: {marker}\n      kind: training\n      match:\n        argv: \"*{marker}*\"\n",
            policies.display()
        ),
        ..AgentOptions::default()
    });
    agent.wait_for_log(
        "kernel open kill: 1 protected file(s), 1 allowed opener(s)",
        event_timeout(),
    );
    let map = own_map_id(agent.pid());

    let mut reader = spawn_clean(WARM_THEN_STEAL, &[dir.to_str().unwrap(), &marker]);
    let mut pipes = Pipes::of(&mut reader);
    let pid: u64 = pipes.read().parse().expect("the reader prints its pid");
    // The direct loads serve this table; a grown one takes checked reads.
    assert_eq!(descriptor_table_size(pid), EMBEDDED_DESCRIPTORS);
    agent.wait_event("the reader's exec", |e| {
        kind_of(e) == "exec" && pid_of(e) == pid && get(e, "workload.name") == marker.as_str()
    });
    assert_eq!(pipes.go(), "first");
    wait_until(
        "the kernel to count the reader's reads in its directory",
        Duration::from_secs(30),
        || kernel_counts(map, pid as u32, &dir),
    );
    assert_eq!(pipes.go(), "warm");
    let stolen = pipes.read();
    assert_eq!(stolen, "", "the reader got the protected file: {stolen}");
    let status = reader.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");

    // The open came in full, with the kernel's kill on it.
    let link_path = link.display().to_string();
    let open = agent.wait_event("the killed open, in full", |e| {
        kind_of(e) == "open" && pid_of(e) == pid && get(e, "file.path") == link_path.as_str()
    });
    assert_eq!(get(&open, "kernel_action"), "killed", "{open}");
}
