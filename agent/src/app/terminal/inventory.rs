//! `aiwatch inventory` at a terminal: one row per workload (name, kind,
//! processes, models, GPUs, peers, alerts), then the models, the LLM APIs
//! called, GPUs and secrets; `-w <workload>` shows one workload in detail.

use std::fmt::Write;

use crate::{
    analyze::inventory::{FileUse, InventorySnapshot, WorkloadInventory},
    event::time_or_dash,
};

use super::{bytes, table, OutputFormat};

/// The tables, as text.
pub fn render(snapshot: &InventorySnapshot, format: OutputFormat) -> String {
    if snapshot.workloads.is_empty() && snapshot.models.is_empty() {
        return "no AI workloads seen yet\n".to_string();
    }
    let wide = format == OutputFormat::Wide;
    let mut out = String::new();
    let mut headers = vec![
        "NAME",
        "KIND",
        "PROCESSES",
        "MODELS",
        "GPUS",
        "PEERS",
        "ALERTS",
    ];
    if wide {
        headers.extend(["ID", "SCORE", "FIRST SEEN", "LAST SEEN"]);
    }
    let mut workloads = table(&headers);
    for w in &snapshot.workloads {
        let mut row = vec![
            w.workload.name.clone(),
            w.workload.kind.to_string(),
            w.processes.len().to_string(),
            w.models.len().to_string(),
            w.gpu_devices.len().to_string(),
            w.peers.len().to_string(),
            w.alerts.to_string(),
        ];
        if wide {
            row.extend([
                w.workload.id.clone(),
                w.score.to_string(),
                time_or_dash(w.first_seen),
                time_or_dash(w.last_seen),
            ]);
        }
        workloads.add_row(row);
    }
    let _ = writeln!(out, "{workloads}\n");

    if !snapshot.models.is_empty() {
        let mut models = table(&["MODEL", "CLASS", "SIZE", "READERS", "WRITERS"]);
        for m in &snapshot.models {
            models.add_row(vec![
                m.path.clone(),
                m.class.to_string(),
                m.size.map(bytes).unwrap_or_default(),
                m.readers.len().to_string(),
                m.writers.len().to_string(),
            ]);
        }
        let _ = writeln!(out, "{models}\n");
    }
    let llm_rows: Vec<_> = snapshot
        .workloads
        .iter()
        .flat_map(|w| w.llm.providers.iter().map(move |p| (w, p)))
        .collect();
    if !llm_rows.is_empty() {
        let mut llm = table(&[
            "LLM PROVIDER",
            "HOST",
            "WORKLOAD",
            "MODELS",
            "REQUESTS",
            "TOKENS IN",
            "TOKENS OUT",
            "TOOLS CALLED",
        ]);
        for (w, p) in llm_rows {
            llm.add_row(vec![
                p.provider.clone(),
                p.host.clone(),
                w.workload.name.clone(),
                p.models.join(", "),
                p.requests.to_string(),
                p.input_tokens.to_string(),
                p.output_tokens.to_string(),
                w.llm.tools_called.join(", "),
            ]);
        }
        let _ = writeln!(out, "{llm}\n");
    }
    let uses = |pick: fn(&WorkloadInventory) -> &Vec<FileUse>| {
        snapshot
            .workloads
            .iter()
            .flat_map(move |w| pick(w).iter().map(move |u| (w, u)))
    };
    if uses(|w| &w.gpu_devices).next().is_some() {
        let mut gpus = table(&["GPU DEVICE", "ACCELERATOR", "WORKLOAD", "OPENS"]);
        for (w, u) in uses(|w| &w.gpu_devices) {
            gpus.add_row(vec![
                u.path.clone(),
                u.accelerator.clone().unwrap_or_default(),
                w.workload.name.clone(),
                u.opens.to_string(),
            ]);
        }
        let _ = writeln!(out, "{gpus}\n");
    }
    if uses(|w| &w.secrets).next().is_some() {
        let mut secrets = table(&["SECRET", "WORKLOAD", "OPENS", "LAST SEEN"]);
        for (w, u) in uses(|w| &w.secrets) {
            secrets.add_row(vec![
                u.path.clone(),
                w.workload.name.clone(),
                u.opens.to_string(),
                time_or_dash(u.last_seen),
            ]);
        }
        let _ = writeln!(out, "{secrets}\n");
    }
    out
}

/// One workload in detail, found by name or id.
pub fn render_workload(snapshot: &InventorySnapshot, selector: &str) -> Option<String> {
    let w = snapshot
        .workloads
        .iter()
        .find(|w| w.workload.name == selector || w.workload.id == selector)?;
    let mut out = String::new();
    let _ = writeln!(out, "Workload:   {} ({})", w.workload.name, w.workload.kind);
    let _ = writeln!(out, "Id:         {}", w.workload.id);
    let _ = writeln!(
        out,
        "Seen:       {} .. {}",
        time_or_dash(w.first_seen),
        time_or_dash(w.last_seen)
    );
    let _ = writeln!(out, "Alerts:     {}", w.alerts);
    if !w.reasons.is_empty() {
        let _ = writeln!(out, "Why:        {}", w.reasons.join("; "));
    }
    let mut processes = table(&["PID", "EXECUTABLE", "FIRST SEEN"]);
    for p in &w.processes {
        processes.add_row(vec![
            p.pid.to_string(),
            p.exe.clone(),
            time_or_dash(p.first_seen),
        ]);
    }
    let _ = writeln!(out, "\n{processes}");
    for (title, list) in [
        ("MODEL", &w.models),
        ("DATASET", &w.datasets),
        ("GPU DEVICE", &w.gpu_devices),
        ("SECRET", &w.secrets),
    ] {
        if list.is_empty() {
            continue;
        }
        let mut files = table(&[title, "OPENS", "WRITES", "READ"]);
        for u in list {
            files.add_row(vec![
                u.path.clone(),
                u.opens.to_string(),
                u.writes.to_string(),
                bytes(u.bytes_read),
            ]);
        }
        let _ = writeln!(out, "\n{files}");
    }
    if !w.peers.is_empty() {
        let mut peers = table(&["PEER", "NAME", "EXTERNAL", "CONNECTIONS", "OUT", "IN"]);
        for p in &w.peers {
            peers.add_row(vec![
                std::net::SocketAddr::new(p.ip, p.port).to_string(),
                p.name.clone().unwrap_or_default(),
                if p.external { "yes" } else { "no" }.to_string(),
                p.connections.to_string(),
                bytes(p.bytes_out),
                bytes(p.bytes_in),
            ]);
        }
        let _ = writeln!(out, "\n{peers}");
    }
    if !w.listening.is_empty() {
        let mut listening = table(&["LISTENING", "PROTOCOL"]);
        for l in &w.listening {
            listening.add_row(vec![
                std::net::SocketAddr::new(l.ip, l.port).to_string(),
                l.protocol.as_str().to_string(),
            ]);
        }
        let _ = writeln!(out, "\n{listening}");
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::WorkloadRef;

    #[test]
    fn an_empty_inventory_says_so_in_one_line() {
        let text = render(&InventorySnapshot::default(), OutputFormat::Table);
        assert_eq!(text, "no AI workloads seen yet\n");
    }

    #[test]
    fn a_workload_has_its_row_and_its_detail() {
        let snapshot = InventorySnapshot {
            workloads: vec![WorkloadInventory {
                workload: WorkloadRef {
                    id: "w1".into(),
                    kind: crate::event::WorkloadKind::Inference,
                    name: "onnx-server".into(),
                    claimed: false,
                },
                alerts: 3,
                ..WorkloadInventory::default()
            }],
            ..InventorySnapshot::default()
        };
        let text = render(&snapshot, OutputFormat::Table);
        let row = text
            .lines()
            .find(|l| l.contains("onnx-server"))
            .expect("a row");
        assert!(
            row.contains("inference") && row.trim_end().ends_with('3'),
            "{row}"
        );
        assert!(!text.contains("SCORE"));
        assert!(render(&snapshot, OutputFormat::Wide).contains("SCORE"));
        let detail = render_workload(&snapshot, "onnx-server").expect("found");
        assert!(detail.contains("Alerts:     3"), "{detail}");
        assert!(render_workload(&snapshot, "other").is_none());
    }

    #[test]
    fn the_llm_apis_a_workload_called_have_their_table() {
        use crate::analyze::inventory::{LlmProviderUse, LlmUse};
        let snapshot = InventorySnapshot {
            workloads: vec![WorkloadInventory {
                workload: WorkloadRef {
                    id: "a1".into(),
                    kind: crate::event::WorkloadKind::Agent,
                    name: "agent.py".into(),
                    claimed: false,
                },
                llm: LlmUse {
                    providers: vec![LlmProviderUse {
                        provider: "openai".into(),
                        host: "api.openai.com".into(),
                        models: vec!["gpt-4o".into()],
                        requests: 4,
                        input_tokens: 120,
                        output_tokens: 30,
                        last_seen: None,
                    }],
                    tools_offered: vec!["run_shell".into()],
                    tools_called: vec!["run_shell".into()],
                    overflow: 0,
                },
                ..WorkloadInventory::default()
            }],
            ..InventorySnapshot::default()
        };
        let text = render(&snapshot, OutputFormat::Table);
        let row = text
            .lines()
            .find(|l| l.contains("api.openai.com"))
            .expect("an LLM row");
        for cell in ["openai", "agent.py", "gpt-4o", "120", "run_shell"] {
            assert!(row.contains(cell), "{cell} in {row}");
        }
        assert!(!render(
            &InventorySnapshot {
                workloads: vec![WorkloadInventory::default()],
                ..InventorySnapshot::default()
            },
            OutputFormat::Table
        )
        .contains("LLM PROVIDER"));
    }
}
