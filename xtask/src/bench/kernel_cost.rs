//! What each of the agent's kernel programs costs, from the kernel's own
//! statistics: with `kernel.bpf_stats_enabled` on, every program counts its
//! runs (`run_cnt`) and the time spent in them (`run_time_ns`), which
//! `bpftool -j prog show` reports. Read before and after a loop, the
//! difference is the loop's cost per program, free of the wall-clock noise
//! of a shared machine.
//!
//! Only the agent's own programs count (other people's agents may hold
//! programs of the same names): their ids come from the `prog_id:` lines of
//! `/proc/<agent pid>/fdinfo`, read at each snapshot, since the agent
//! attaches some programs (the TLS uprobes) while it runs.

use std::{collections::BTreeMap, path::Path, process::Command};

use anyhow::Context as _;
use serde::Deserialize;

const STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Sets the statistics on or off for its lifetime and restores the
/// previous setting on drop. Collecting them costs every program run two
/// clock reads, so timed runs keep them off and the kernel's per-program
/// costs come from a run of their own.
pub struct StatsSwitch {
    previous: Option<String>,
}

impl StatsSwitch {
    pub fn enable() -> anyhow::Result<StatsSwitch> {
        Self::set("1")
    }

    pub fn disable() -> anyhow::Result<StatsSwitch> {
        Self::set("0")
    }

    fn set(value: &str) -> anyhow::Result<StatsSwitch> {
        let previous = std::fs::read_to_string(STATS_SYSCTL).with_context(|| {
            format!("cannot read {STATS_SYSCTL}: is this kernel built with BPF?")
        })?;
        std::fs::write(STATS_SYSCTL, value)
            .with_context(|| format!("cannot set {STATS_SYSCTL} to {value}"))?;
        Ok(StatsSwitch {
            previous: Some(previous.trim().to_string()),
        })
    }
}

impl Drop for StatsSwitch {
    fn drop(&mut self) {
        if let Some(previous) = self.previous.take() {
            let _ = std::fs::write(STATS_SYSCTL, previous);
        }
    }
}

/// One program's counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct ProgramStats {
    pub id: u32,
    #[serde(default)]
    pub name: String,
    /// Absent while the program has not run (or statistics are off).
    #[serde(default)]
    pub run_time_ns: u64,
    #[serde(default)]
    pub run_cnt: u64,
}

/// The agent's programs' counters, by program id.
pub type Snapshot = BTreeMap<u32, ProgramStats>;

/// Reads the counters of the programs `pid` holds.
pub fn snapshot(pid: u32) -> anyhow::Result<Snapshot> {
    let ids = program_ids(&Path::new("/proc").join(pid.to_string()).join("fdinfo"));
    let output = Command::new("bpftool")
        .args(["-j", "prog", "show"])
        .output()
        .context("cannot run bpftool (Debian package bpftool)")?;
    if !output.status.success() {
        anyhow::bail!(
            "bpftool prog show failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let all = parse_programs(&String::from_utf8_lossy(&output.stdout))?;
    Ok(all
        .into_iter()
        .filter(|program| ids.contains(&program.id))
        .map(|program| (program.id, program))
        .collect())
}

/// Parses `bpftool -j prog show`.
pub fn parse_programs(json: &str) -> anyhow::Result<Vec<ProgramStats>> {
    serde_json::from_str(json).context("bpftool printed JSON that is not a list of programs")
}

/// The program ids among the file descriptors listed in `fdinfo_dir`.
fn program_ids(fdinfo_dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(fdinfo_dir) else {
        return Vec::new();
    };
    let mut ids: Vec<u32> = entries
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
        .filter_map(|text| prog_id_of(&text))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The `prog_id:` of one fdinfo file (a program fd or a link to one).
fn prog_id_of(fdinfo: &str) -> Option<u32> {
    fdinfo
        .lines()
        .find_map(|line| line.strip_prefix("prog_id:"))
        .and_then(|id| id.trim().parse().ok())
}

/// Runs and time of one program name, summed over loops.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProgramCost {
    pub runs: u64,
    pub run_time_ns: u64,
}

impl ProgramCost {
    pub fn ns_per_run(&self) -> Option<f64> {
        (self.runs > 0).then(|| self.run_time_ns as f64 / self.runs as f64)
    }
}

/// The agent's programs' cost over every measured loop of one case.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CaseCost {
    /// How many loops the totals cover.
    pub loops: u64,
    /// By program name: one name may cover several program ids (a uprobe
    /// placed on several libraries).
    pub programs: BTreeMap<String, ProgramCost>,
}

impl CaseCost {
    /// Adds one loop's differences. Programs that did not run in it add
    /// nothing.
    pub fn add_loop(&mut self, before: &Snapshot, after: &Snapshot) {
        self.loops += 1;
        for (id, now) in after {
            let then = before.get(id);
            let runs = now.run_cnt.saturating_sub(then.map_or(0, |t| t.run_cnt));
            let time = now
                .run_time_ns
                .saturating_sub(then.map_or(0, |t| t.run_time_ns));
            if runs > 0 {
                let cost = self.programs.entry(now.name.clone()).or_default();
                cost.runs += runs;
                cost.run_time_ns += time;
            }
        }
    }

    /// Adds another set of loops.
    pub fn merge(&mut self, other: &CaseCost) {
        self.loops += other.loops;
        for (name, cost) in &other.programs {
            let total = self.programs.entry(name.clone()).or_default();
            total.runs += cost.runs;
            total.run_time_ns += cost.run_time_ns;
        }
    }

    pub fn runs_per_loop(&self, program: &str) -> Option<f64> {
        let cost = self.programs.get(program)?;
        (self.loops > 0).then(|| cost.runs as f64 / self.loops as f64)
    }
}

/// The program × case table: each cell is ns per run and runs per loop.
pub fn table(cases: &[(&str, &CaseCost)]) -> String {
    let mut programs: Vec<&str> = cases
        .iter()
        .flat_map(|(_, cost)| cost.programs.keys().map(String::as_str))
        .collect();
    programs.sort_unstable();
    programs.dedup();
    let mut out = String::from("| program |");
    for (case, _) in cases {
        out.push_str(&format!(" {case} |"));
    }
    out.push_str("\n| --- |");
    out.push_str(&" ---: |".repeat(cases.len()));
    out.push('\n');
    for program in programs {
        out.push_str(&format!("| `{program}` |"));
        for (_, cost) in cases {
            let ns = cost.programs.get(program).and_then(ProgramCost::ns_per_run);
            match (ns, cost.runs_per_loop(program)) {
                (Some(ns), Some(runs)) => {
                    out.push_str(&format!(
                        " {ns:.0} ns × {} |",
                        super::report::thousands(runs)
                    ));
                }
                _ => out.push_str(" |"),
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BPFTOOL: &str = r#"[{"id":12,"type":"tracepoint","name":"sys_exit_openat","tag":"ab","gpl_compatible":true,"run_time_ns":5000,"run_cnt":10,"loaded_at":1,"uid":0},
        {"id":13,"type":"cgroup_skb","name":"names_egress","tag":"cd","gpl_compatible":true},
        {"id":14,"type":"kprobe","name":"ssl_write_ex","run_time_ns":100,"run_cnt":1}]"#;

    #[test]
    fn bpftool_json_parses_with_and_without_counters() {
        let programs = parse_programs(BPFTOOL).expect("parses");
        assert_eq!(programs.len(), 3);
        assert_eq!(programs[0].name, "sys_exit_openat");
        assert_eq!((programs[0].run_time_ns, programs[0].run_cnt), (5000, 10));
        // A program that never ran has no counters in the JSON.
        assert_eq!((programs[1].run_time_ns, programs[1].run_cnt), (0, 0));
        assert!(parse_programs("not json").is_err());
        assert!(parse_programs("{\"id\": 1}").is_err());
    }

    #[test]
    fn fdinfo_names_the_program_of_a_program_or_link_fd() {
        let prog = "pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1057\nprog_type:\t5\nprog_jited:\t1\nprog_tag:\tab\nmemlock:\t4096\nprog_id:\t412\n";
        assert_eq!(prog_id_of(prog), Some(412));
        assert_eq!(prog_id_of("pos:\t0\nflags:\t02\n"), None);
    }

    #[test]
    fn differences_are_summed_by_name_and_idle_programs_left_out() {
        let before = snapshot_of(&[
            (1, "open", 100, 10),
            (2, "ssl_write", 0, 0),
            (3, "idle", 5, 1),
        ]);
        // A second uprobe (id 4) attached during the loop.
        let after = snapshot_of(&[
            (1, "open", 1100, 20),
            (2, "ssl_write", 300, 2),
            (3, "idle", 5, 1),
            (4, "ssl_write", 300, 1),
        ]);
        let mut cost = CaseCost::default();
        cost.add_loop(&before, &after);
        cost.add_loop(&after, &after);
        assert_eq!(cost.loops, 2);
        assert_eq!(cost.programs.len(), 2, "{cost:?}");
        let open = &cost.programs["open"];
        assert_eq!((open.runs, open.run_time_ns), (10, 1000));
        assert_eq!(open.ns_per_run(), Some(100.0));
        let ssl = &cost.programs["ssl_write"];
        assert_eq!((ssl.runs, ssl.run_time_ns), (3, 600));
        assert_eq!(ssl.ns_per_run(), Some(200.0));
        assert_eq!(cost.runs_per_loop("ssl_write"), Some(1.5));
        assert_eq!(cost.runs_per_loop("idle"), None);
    }

    #[test]
    fn the_table_has_a_row_per_program_and_a_column_per_case() {
        let mut open = CaseCost::default();
        open.add_loop(
            &snapshot_of(&[(1, "sys_exit_openat", 0, 0)]),
            &snapshot_of(&[(1, "sys_exit_openat", 2_600_000, 2000)]),
        );
        let mut tls = CaseCost::default();
        tls.add_loop(
            &snapshot_of(&[(7, "ssl_write_ex", 0, 0)]),
            &snapshot_of(&[(7, "ssl_write_ex", 1_200_000, 1000)]),
        );
        let table = table(&[("open-tracked", &open), ("tls-request", &tls)]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "| program | open-tracked | tls-request |");
        assert_eq!(lines[2], "| `ssl_write_ex` | | 1200 ns × 1,000 |");
        assert_eq!(lines[3], "| `sys_exit_openat` | 1300 ns × 2,000 | |");
    }

    fn snapshot_of(programs: &[(u32, &str, u64, u64)]) -> Snapshot {
        programs
            .iter()
            .map(|&(id, name, run_time_ns, run_cnt)| {
                (
                    id,
                    ProgramStats {
                        id,
                        name: name.to_string(),
                        run_time_ns,
                        run_cnt,
                    },
                )
            })
            .collect()
    }
}
