//! Each kernel's outcome, kept as `<target>/vm/results/<label>.json`, and
//! the matrix `cargo xtask vm --report` writes into the generated block of
//! `docs/kernels.md` from every recorded outcome.

use std::{fmt::Write as _, path::PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::{kernel::Kernel, payload::Built, qemu::Outcome, GuestKernel, SUITES};
use crate::workspace::Workspace;

pub const BEGIN: &str = "<!-- BEGIN cargo xtask vm --report -->";
pub const END: &str = "<!-- END cargo xtask vm --report -->";
/// The row labels, in the table's order.
const ORDER: &[&str] = &["6.1", "6.12", "host"];

/// One kernel's outcome.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct GuestResult {
    /// `6.1`, `6.12` or `host`.
    pub label: String,
    pub package: String,
    pub release: String,
    pub cgroups: String,
    pub lsm: String,
    /// The agent the host built.
    pub agent_sha256: String,
    /// The agent as the kernel's userland read it.
    pub loaded_sha256: String,
    /// The agent's start-up lines: `feature ...`, `ready ...`, `agent-log ...`.
    pub startup: Vec<String>,
    /// Suite name → `pass 12s` or `fail 30s why`.
    pub suites: Vec<(String, String)>,
    /// The verdict line (guests only).
    pub verdict_line: String,
    /// The guest's verdict through `isa-debug-exit`.
    pub verdict: Option<bool>,
    pub timed_out: bool,
    pub seconds: u64,
    /// When it ran (UTC).
    pub date: String,
}

impl GuestResult {
    /// Reads a guest's marked console lines.
    pub fn from_console(
        guest: &GuestKernel,
        kernel: &Kernel,
        built: &Built,
        outcome: &Outcome,
    ) -> GuestResult {
        let mut result = GuestResult {
            label: guest.label.to_owned(),
            package: kernel.package.clone(),
            agent_sha256: built.agent_sha256.clone(),
            verdict: outcome.verdict,
            timed_out: outcome.timed_out,
            seconds: outcome.elapsed.as_secs(),
            date: now(),
            ..GuestResult::default()
        };
        for line in &outcome.marked {
            let (key, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            match key {
                "kernel" => result.release = rest.to_owned(),
                "lsm" => result.lsm = rest.to_owned(),
                "cgroups" => result.cgroups = rest.to_owned(),
                "agent-sha256" => result.loaded_sha256 = rest.to_owned(),
                "feature" | "ready" | "agent-log" | "probes" => result.startup.push(line.clone()),
                "suite" => {
                    let (name, status) = rest.split_once(' ').unwrap_or((rest, ""));
                    result.suites.push((name.to_owned(), status.to_owned()));
                }
                "verdict" => result.verdict_line = rest.to_owned(),
                _ => {}
            }
        }
        result
    }

    /// The guest passed: its verdict is PASS both ways, and it ran the
    /// host's agent byte for byte.
    pub fn passed(&self) -> bool {
        self.verdict == Some(true)
            && self.verdict_line.starts_with("PASS")
            && self.loaded_sha256 == self.agent_sha256
    }

    pub fn summary(&self) -> String {
        let verdict = match self.verdict {
            Some(true) if self.passed() => "PASS".to_owned(),
            Some(true) => format!(
                "FAIL (the guest said PASS, but its agent's sha256 is {:?} and its verdict line {:?})",
                self.loaded_sha256, self.verdict_line
            ),
            Some(false) => "FAIL".to_owned(),
            None if self.timed_out => "FAIL (killed at its time budget)".to_owned(),
            None => "FAIL (no verdict)".to_owned(),
        };
        format!(
            "{} ({}): {verdict} in {}s; {}",
            self.label, self.release, self.seconds, self.verdict_line
        )
    }

    fn path(workspace: &Workspace, label: &str) -> PathBuf {
        workspace
            .target_dir
            .join("vm/results")
            .join(format!("{label}.json"))
    }

    pub fn save(&self, workspace: &Workspace) -> anyhow::Result<()> {
        let path = Self::path(workspace, &self.label);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(self).context("serialising a result")?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    }

    fn load(workspace: &Workspace, label: &str) -> Option<GuestResult> {
        let text = std::fs::read_to_string(Self::path(workspace, label)).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn suite_cell(&self, name: &str) -> &'static str {
        match self.suites.iter().find(|(suite, _)| suite == name) {
            Some((_, status)) if status.starts_with("pass") => "✔",
            Some(_) => "✗",
            None => "—",
        }
    }

    /// ✔ when the feature line of `name` says available, ✗ when it says
    /// unavailable, ? when there is none.
    fn feature_cell(&self, name: &str) -> &'static str {
        let line = self
            .startup
            .iter()
            .find(|line| line.starts_with("feature") && line.contains(name));
        match line {
            Some(line) if line.contains(" unavailable") => "✗",
            Some(_) => "✔",
            None => "?",
        }
    }

    fn loads_cell(&self) -> &'static str {
        if self.startup.iter().any(|line| line.starts_with("ready")) {
            "✔"
        } else {
            "✗"
        }
    }
}

/// UTC now, as `date -u` prints it.
pub fn now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Rewrites the generated block of docs/kernels.md; the path written.
pub fn write(workspace: &Workspace) -> anyhow::Result<PathBuf> {
    let results: Vec<GuestResult> = ORDER
        .iter()
        .filter_map(|label| GuestResult::load(workspace, label))
        .collect();
    anyhow::ensure!(
        !results.is_empty(),
        "no recorded results under {}: run `cargo xtask vm` first",
        workspace.target_dir.join("vm/results").display()
    );
    let path = workspace.root.join("docs/kernels.md");
    let document =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let updated = splice(&document, &markdown(&results));
    std::fs::write(&path, updated).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn markdown(results: &[GuestResult]) -> String {
    let mut out = String::new();
    let families: Vec<&str> = SUITES.iter().map(|s| s.family).collect();
    let _ = writeln!(
        out,
        "| kernel | release | cgroups | agent loads | {} | BPF LSM | fentry | kprobes | verdict |",
        families.join(" | ")
    );
    let columns = 7 + families.len();
    let _ = writeln!(out, "|{}", " --- |".repeat(columns + 1));
    for result in results {
        let suites: Vec<&str> = SUITES.iter().map(|s| result.suite_cell(s.name)).collect();
        let verdict = if result.label == "host" {
            "features only".to_owned()
        } else if result.passed() {
            format!("PASS ({} min)", result.seconds.div_ceil(60))
        } else {
            "FAIL".to_owned()
        };
        let _ = writeln!(
            out,
            "| {} | `{}` | {} | {} | {} | {} | {} | {} | {verdict} |",
            result.label,
            result.release,
            result.cgroups,
            result.loads_cell(),
            suites.join(" | "),
            result.feature_cell("BPF LSM"),
            result.feature_cell("fentry"),
            result.feature_cell("kprobes"),
        );
    }
    out.push('\n');
    let hashes: std::collections::BTreeSet<&str> =
        results.iter().map(|r| r.loaded_sha256.as_str()).collect();
    if hashes.len() == 1 {
        let _ = writeln!(
            out,
            "The same agent binary on every row: sha256 `{}`.\n",
            results[0].loaded_sha256
        );
    } else {
        out.push_str("**The rows ran different agent binaries:**\n\n");
        for result in results {
            let _ = writeln!(out, "- {}: `{}`", result.label, result.loaded_sha256);
        }
        out.push('\n');
    }
    for result in results {
        let _ = writeln!(
            out,
            "### {} (`{}`, {}, recorded {})\n",
            result.label, result.package, result.release, result.date
        );
        if !result.lsm.is_empty() {
            let _ = writeln!(out, "Active LSMs: `{}`.\n", result.lsm);
        }
        if !result.verdict_line.is_empty() {
            let _ = writeln!(out, "Verdict: `{}`\n", result.verdict_line);
        }
        out.push_str("```text\n");
        for line in &result.startup {
            let _ = writeln!(out, "{line}");
        }
        for (suite, status) in &result.suites {
            let _ = writeln!(out, "suite {suite}: {status}");
        }
        out.push_str("```\n\n");
    }
    out
}

/// Replaces the text between the markers, or appends the block.
fn splice(document: &str, block: &str) -> String {
    let generated = format!("{BEGIN}\n{block}{END}");
    match (document.find(BEGIN), document.find(END)) {
        (Some(begin), Some(end)) if begin < end => format!(
            "{}{generated}{}",
            &document[..begin],
            &document[end + END.len()..]
        ),
        _ => format!("{}\n{generated}\n", document.trim_end()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_only_the_generated_block() {
        let document = format!("before\n{BEGIN}\nold\n{END}\nafter\n");
        let spliced = splice(&document, "new\n");
        assert_eq!(spliced, format!("before\n{BEGIN}\nnew\n{END}\nafter\n"));
    }

    #[test]
    fn a_guest_that_ran_another_binary_fails_even_with_a_pass_verdict() {
        let result = GuestResult {
            verdict: Some(true),
            verdict_line: "PASS kernel=6.1".into(),
            agent_sha256: "aa".into(),
            loaded_sha256: "bb".into(),
            ..GuestResult::default()
        };
        assert!(!result.passed());
        let same = GuestResult {
            loaded_sha256: "aa".into(),
            ..result
        };
        assert!(same.passed());
    }

    #[test]
    fn feature_cells_read_the_start_up_lines() {
        let result = GuestResult {
            startup: vec![
                "feature kernel feature: BPF LSM programs available (unused)".into(),
                "feature kernel feature: kprobes unavailable (no support)".into(),
            ],
            ..GuestResult::default()
        };
        assert_eq!(result.feature_cell("BPF LSM"), "✔");
        assert_eq!(result.feature_cell("kprobes"), "✗");
        assert_eq!(result.feature_cell("fentry"), "?");
    }
}
