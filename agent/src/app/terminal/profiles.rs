//! `aiwatch profile list|show` at a terminal.

use std::fmt::Write;

use crate::{
    anomaly::{cli::ProfileSummary, explain::duration, Profile},
    event::time_or_dash,
};

use super::{table, OutputFormat};

pub fn render_list(profiles: &[ProfileSummary], format: OutputFormat) -> String {
    if profiles.is_empty() {
        return "no profiles saved yet\n".to_string();
    }
    let mut headers = vec!["KIND", "NAME", "MODE", "FROZEN", "LEARNED", "ITEMS"];
    if format == OutputFormat::Wide {
        headers.push("KEY");
    }
    let mut t = table(&headers);
    for p in profiles {
        let mut row = vec![
            p.workload.kind.clone(),
            p.workload.name.clone(),
            p.mode.to_string(),
            if p.frozen { "yes" } else { "no" }.to_string(),
            duration(p.learned_ns),
            p.items.to_string(),
        ];
        if format == OutputFormat::Wide {
            row.push(p.workload.to_string());
        }
        t.add_row(row);
    }
    format!("{t}\n")
}

pub fn render_profile(p: &Profile) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Profile:  {}", p.workload);
    let _ = writeln!(
        out,
        "Mode:     {}{}",
        p.mode,
        if p.frozen { " (frozen)" } else { "" }
    );
    let _ = writeln!(out, "Learned:  {}", duration(p.learning.learned_ns));
    let _ = writeln!(
        out,
        "Seen:     {} .. {}",
        time_or_dash(p.first_seen),
        time_or_dash(p.last_seen)
    );
    let mut sets: Vec<(String, Vec<&str>)> = vec![
        ("EXECUTABLES".into(), p.executables.iter().collect()),
        ("PROCESS PAIRS".into(), p.process_pairs.iter().collect()),
    ];
    for (class, set) in &p.paths {
        sets.push((
            format!("{} PATHS", class.to_uppercase()),
            set.iter().collect(),
        ));
    }
    sets.push(("PEERS".into(), p.peers.iter().collect()));
    sets.push(("LISTEN PORTS".into(), p.listen_ports.iter().collect()));
    sets.push(("GPU DEVICES".into(), p.gpu_devices.iter().collect()));
    for (title, items) in sets {
        if items.is_empty() {
            continue;
        }
        let mut t = table(&[&title]);
        for item in items {
            t.add_row(vec![item]);
        }
        let _ = writeln!(out, "\n{t}");
    }
    if p.dropped_at_cap > 0 {
        let _ = writeln!(
            out,
            "\n{} items not learned: their set was full",
            p.dropped_at_cap
        );
    }
    out
}
