//! Replay tests of benign AI workloads through the default pack: none of
//! them may raise an alert.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{replay, PolicyEngine, PolicySet};

/// Builds a stream of events with increasing `ktime_ns` (1 ms apart).
struct Stream {
    lines: Vec<String>,
    ktime_ns: u64,
}

impl Stream {
    fn new() -> Stream {
        Stream {
            lines: Vec::new(),
            ktime_ns: 1_000_000_000,
        }
    }

    fn push(&mut self, mut ev: Value) {
        self.ktime_ns += 1_000_000;
        let object = ev.as_object_mut().expect("events are objects");
        object.insert("time".into(), json!("2026-01-01T00:00:00.000000000Z"));
        object.insert("ktime_ns".into(), json!(self.ktime_ns));
        self.lines.push(ev.to_string());
    }

    /// A python process importing its libraries: many `.py`/`.so` opens.
    fn imports(&mut self, process: &Value, workload: &Value, count: usize) {
        for index in 0..count {
            let path = if index % 7 == 0 {
                format!("/usr/lib/python3/dist-packages/pkg{}/_native{index}.cpython-311-x86_64-linux-gnu.so", index % 40)
            } else {
                format!(
                    "/usr/lib/python3/dist-packages/pkg{}/module{index}.py",
                    index % 40
                )
            };
            self.push(
                json!({"kind": "open", "process": process, "workload": workload,
                "file": {"path": path, "flags": 0, "access": "read", "result": 3}}),
            );
        }
    }

    /// Replays through the default pack; returns the alert lines.
    fn alerts(&self) -> Vec<String> {
        let set = Arc::new(PolicySet::default_pack().expect("default pack loads"));
        let mut engine = PolicyEngine::new(set);
        let input = self.lines.join("\n");
        let mut output = Vec::new();
        let stats = replay(&mut engine, input.as_bytes(), &mut output, &mut |_| {
            Vec::new()
        })
        .expect("replay runs");
        assert_eq!(stats.events as usize, self.lines.len());
        assert_eq!(stats.bad_lines, 0);
        String::from_utf8(output)
            .expect("utf8")
            .lines()
            .map(str::to_string)
            .collect()
    }
}

fn assert_quiet(stream: &Stream) {
    let alerts = stream.alerts();
    assert!(
        alerts.is_empty(),
        "benign stream raised alerts:\n{}",
        alerts.join("\n")
    );
}

#[test]
fn onnx_runtime_inference_server_on_loopback() {
    let mut s = Stream::new();
    let wl = json!({"id": "onnx-1", "kind": "inference", "name": "onnx-server"});
    let server = json!({"pid": 1000, "ppid": 1, "exe": "/usr/bin/python3.11", "argv": ["python3", "serve.py", "--port", "8000"], "start_time": "2026-01-01T00:00:00Z"});
    s.push(json!({"kind": "exec", "process": server, "workload": wl,
        "parent": {"pid": 1, "exe": "/usr/bin/containerd-shim-runc-v2"}}));
    s.imports(&server, &wl, 3000);
    for model in [
        "/models/resnet50.onnx",
        "/models/bert/model.safetensors",
        "/models/bert/tokenizer.json",
    ] {
        let class = if model.ends_with(".json") {
            Value::Null
        } else {
            json!("model")
        };
        s.push(json!({"kind": "open", "process": server, "workload": wl,
            "file": {"path": model, "access": "read", "class": class, "result": 5, "size": 102760448}}));
    }
    for device in ["/dev/nvidiactl", "/dev/nvidia0", "/dev/nvidia-uvm"] {
        s.push(json!({"kind": "open", "process": server, "workload": wl,
            "file": {"path": device, "access": "read_write", "class": "gpu-device", "result": 6}}));
    }
    s.push(json!({"kind": "fork", "process": server, "workload": wl, "fork": {"child_pid": 1001}}));
    s.push(json!({"kind": "bind", "process": server, "workload": wl,
        "net": {"family": "ipv4", "protocol": "tcp", "src": {"ip": "127.0.0.1", "port": 8000}, "result": 0}}));
    s.push(json!({"kind": "listen", "process": server, "workload": wl,
        "net": {"family": "ipv4", "protocol": "tcp", "src": {"ip": "127.0.0.1", "port": 8000}, "result": 0}}));
    for request in 0..500u32 {
        let client = json!({"ip": "127.0.0.1", "port": 40000 + request});
        s.push(json!({"kind": "accept", "process": server, "workload": wl,
            "net": {"family": "ipv4", "protocol": "tcp", "src": {"ip": "127.0.0.1", "port": 8000}, "dst": client}}));
        s.push(json!({"kind": "tcp_summary", "process": server, "workload": wl,
            "net": {"family": "ipv4", "protocol": "tcp", "src": {"ip": "127.0.0.1", "port": 8000}, "dst": client,
                    "bytes_sent": 4096, "bytes_received": 900, "closed": true}}));
    }
    assert!(s.lines.len() > 4000);
    assert_quiet(&s);
}

#[test]
fn training_loop_writing_checkpoints() {
    let mut s = Stream::new();
    let wl = json!({"id": "train-1", "kind": "training", "name": "llama-ft"});
    let trainer = json!({"pid": 4000, "ppid": 3999, "exe": "/usr/bin/python3.10", "argv": ["python3", "train.py"], "start_time": "2026-01-01T00:00:00Z"});
    s.push(json!({"kind": "exec", "process": trainer, "workload": wl,
        "parent": {"pid": 3999, "exe": "/usr/bin/torchrun"}}));
    s.imports(&trainer, &wl, 2000);
    // Resume from a checkpoint, then report to the experiment tracker.
    s.push(json!({"kind": "open", "process": trainer, "workload": wl,
        "file": {"path": "/runs/exp1/checkpoint-900/optimizer.pt", "access": "read", "class": "pickle-model", "result": 7}}));
    s.push(json!({"kind": "connect", "process": trainer, "workload": wl,
        "net": {"family": "ipv4", "protocol": "tcp", "dst": {"ip": "35.186.0.1", "port": 443}, "dst_external": true, "dst_name": "api.wandb.ai", "dst_name_verified": true}}));
    // multiprocessing's resource tracker and DataLoader workers.
    s.push(json!({"kind": "exec", "workload": wl,
        "process": {"pid": 4001, "ppid": 4000, "exe": "/usr/bin/python3.10", "argv": ["python3", "-c", "from multiprocessing.resource_tracker import main;main(9)"],
                    "ancestors": [{"pid": 4000, "exe": "/usr/bin/python3.10"}]},
        "parent": {"pid": 4000, "exe": "/usr/bin/python3.10"}}));
    for worker in 0..4 {
        s.push(json!({"kind": "fork", "process": trainer, "workload": wl, "fork": {"child_pid": 4010 + worker}}));
    }
    for step in (1000..=5000).step_by(1000) {
        for shard in 0..50 {
            s.push(json!({"kind": "open", "process": trainer, "workload": wl,
                "file": {"path": format!("/data/shard-{shard}.arrow"), "access": "read", "class": "dataset", "result": 8}}));
        }
        let dir = format!("/runs/exp1/checkpoint-{step}");
        for (name, class) in [
            ("model.safetensors", "model"),
            ("optimizer.pt", "pickle-model"),
        ] {
            s.push(json!({"kind": "open", "process": trainer, "workload": wl,
                "file": {"path": format!("{dir}/{name}.tmp"), "access": "write", "class": class, "result": 9}}));
            s.push(json!({"kind": "rename", "process": trainer, "workload": wl,
                "file": {"path": format!("{dir}/{name}.tmp"), "target": format!("{dir}/{name}"), "class": class, "result": 0}}));
        }
        s.push(json!({"kind": "unlink", "process": trainer, "workload": wl,
            "file": {"path": format!("/runs/exp1/checkpoint-{}/optimizer.pt", step - 1000), "class": "pickle-model", "result": 0}}));
        s.push(json!({"kind": "tcp_summary", "process": trainer, "workload": wl,
            "net": {"family": "ipv4", "protocol": "tcp", "dst": {"ip": "35.186.0.1", "port": 443}, "dst_external": true, "bytes_sent": 65536}}));
        s.push(json!({"kind": "gpu_ioctl", "process": trainer, "workload": wl,
            "gpu": {"ioctls": 120000, "interval_s": 10.0, "device": {"kind": "char", "major": 195, "minor": 0, "accelerator": "nvidia"}}}));
    }
    assert_quiet(&s);
}

#[test]
fn jupyter_kernel_doing_numpy_work() {
    let mut s = Stream::new();
    let wl = json!({"id": "nb-1", "kind": "notebook", "name": "jupyter"});
    let kernel = json!({"pid": 3000, "ppid": 2990, "exe": "/opt/conda/bin/python3.11",
        "argv": ["python", "-m", "ipykernel_launcher", "-f", "/root/.local/share/jupyter/runtime/kernel-1.json"], "start_time": "2026-01-01T00:00:00Z"});
    s.push(json!({"kind": "exec", "process": kernel, "workload": wl,
        "parent": {"pid": 2990, "exe": "/opt/conda/bin/python3.11"}}));
    s.imports(&kernel, &wl, 2500);
    // ZeroMQ channels on loopback ephemeral ports.
    for port in [52341, 52342, 52343, 52344, 52345] {
        s.push(json!({"kind": "bind", "process": kernel, "workload": wl,
            "net": {"family": "ipv4", "protocol": "tcp", "src": {"ip": "127.0.0.1", "port": port}, "result": 0}}));
        s.push(json!({"kind": "listen", "process": kernel, "workload": wl,
            "net": {"family": "ipv4", "protocol": "tcp", "src": {"ip": "127.0.0.1", "port": port}, "result": 0}}));
    }
    for index in 0..20 {
        s.push(json!({"kind": "open", "process": kernel, "workload": wl,
            "file": {"path": format!("/home/jovyan/work/data{index}.npy"), "access": "read", "result": 12}}));
    }
    s.push(json!({"kind": "open", "process": kernel, "workload": wl,
        "file": {"path": "/home/jovyan/work/result.npy", "access": "write", "result": 13}}));
    assert_quiet(&s);
}

#[test]
fn pip_list_during_setup_outside_workloads() {
    let mut s = Stream::new();
    let bash = json!({"pid": 500, "exe": "/bin/bash", "argv": ["bash", "setup.sh"]});
    s.push(json!({"kind": "exec", "process": bash, "parent": {"pid": 1, "exe": "/sbin/init"}}));
    let sh = json!({"pid": 501, "ppid": 500, "exe": "/bin/sh", "argv": ["sh", "-c", "pip list"]});
    s.push(json!({"kind": "exec", "process": sh, "parent": {"pid": 500, "exe": "/bin/bash"}}));
    let pip =
        json!({"pid": 502, "ppid": 501, "exe": "/usr/local/bin/pip", "argv": ["pip", "list"]});
    s.push(json!({"kind": "exec", "process": pip, "parent": {"pid": 501, "exe": "/bin/sh"}}));
    s.imports(&pip, &Value::Null, 800);
    for index in 0..200 {
        s.push(json!({"kind": "open", "process": pip,
            "file": {"path": format!("/usr/lib/python3/dist-packages/pkg{index}-1.0.dist-info/METADATA"), "access": "read", "result": 4}}));
    }
    s.push(json!({"kind": "exit", "process": pip, "exit": {"code": 0, "lifetime_ms": 900}}));
    assert_quiet(&s);
}

#[test]
fn the_same_streams_with_an_attack_do_alert() {
    // Guards the quiet tests above: the pack is loaded and matching.
    let mut s = Stream::new();
    let wl = json!({"id": "onnx-1", "kind": "inference", "name": "onnx-server"});
    let server = json!({"pid": 1000, "exe": "/usr/bin/python3.11"});
    s.imports(&server, &wl, 100);
    s.push(json!({"kind": "exec", "workload": wl,
        "process": {"pid": 1001, "ppid": 1000, "exe": "/bin/sh", "argv": ["sh", "-c", "id"]},
        "parent": {"pid": 1000, "exe": "/usr/bin/python3.11"}}));
    let alerts = s.alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(
        alerts[0].contains("\"rule\":\"ai.workload.shell-spawn\""),
        "{}",
        alerts[0]
    );
}
