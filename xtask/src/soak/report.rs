//! The soak's printed table and the markdown block written into
//! `docs/reliability.md`.

use std::fmt::Write as _;

use crate::bench::report::thousands;

use super::{
    loads::{self, Tally},
    verdict::{median, steady, Check, Counters, KindAccount, Sample},
};

pub const BEGIN: &str = "<!-- BEGIN cargo xtask soak -->";
pub const END: &str = "<!-- END cargo xtask soak -->";
/// Rows of the samples table in the block, at most (every k-th sample).
const MAX_ROWS: usize = 40;

/// What the block says about the run itself.
pub struct RunInfo {
    pub date: String,
    pub machine: String,
    pub kernel: String,
    pub commit: String,
    pub sample_s: u64,
    pub load_before: String,
    pub load_after: String,
    /// Other aiwatch agents running before and after the run.
    pub other_agents: (usize, usize),
    /// The whole run, agent start to verdict.
    pub wall_minutes: f64,
}

/// Everything a soak found.
pub struct Summary {
    pub info: RunInfo,
    pub load_s: f64,
    pub warm_up_s: f64,
    pub samples: Vec<Sample>,
    pub tally: Tally,
    pub kinds: Vec<KindAccount>,
    /// `aiwatch_ringbuf_size_bytes`.
    pub ringbuf_size: u64,
    /// Lines of the events file read, its rotations, and lines that were no event.
    pub events_file: (u64, u64, u64),
    /// Every loss counter's final value.
    pub losses: Vec<(String, u64)>,
    /// `VmHWM` at the end, KiB.
    pub peak_kib: u64,
    /// Lines of the agent's log at warning level or above, and the alerts written.
    pub warnings: usize,
    pub alerts: u64,
    pub checks: Vec<Check>,
}

impl Summary {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|check| check.passed)
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// The header of the samples table.
pub const TABLE_HEADER: &str = "\
| t (s) | | RSS (MiB) | fds | agent CPU (% of a core) | events/s | ring buffer used (KiB) | events lost | stream drops | inventory processes (exited) | ready |
| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |
";

/// The samples, every `every`-th and the last, as a markdown table.
pub fn sample_table(samples: &[Sample], warm_up_s: f64, every: usize) -> String {
    let mut out = String::from(TABLE_HEADER);
    let every = every.max(1);
    let last = samples.len().saturating_sub(1);
    let mut previous: Option<&Sample> = None;
    for (index, sample) in samples.iter().enumerate() {
        if index % every != 0 && index != last {
            continue;
        }
        let _ = writeln!(out, "{}", row(sample, previous, warm_up_s));
        previous = Some(sample);
    }
    out
}

/// One sample's row; CPU and events are rates over the interval since
/// `previous` (since the loads started for the first).
pub fn row(sample: &Sample, previous: Option<&Sample>, warm_up_s: f64) -> String {
    let phase = if !sample.under_load {
        "after"
    } else if sample.at_s < warm_up_s {
        "warm-up"
    } else {
        ""
    };
    let span = previous.map_or(sample.at_s, |p| sample.at_s - p.at_s);
    let cpu_before = previous.map_or(0.0, |p| p.cpu_s);
    let cpu_share = if span > 0.0 {
        format!("{:.0}", (sample.cpu_s - cpu_before) / span * 100.0)
    } else {
        "–".into()
    };
    let counters = sample.counters.as_ref();
    let events_before = previous
        .and_then(|p| p.counters.as_ref())
        .map_or(0, |c| c.events);
    let rate = match counters {
        Some(c) if span > 0.0 => thousands(c.events.saturating_sub(events_before) as f64 / span),
        _ => "–".into(),
    };
    let value = |f: &dyn Fn(&Counters) -> u64| {
        counters.map_or_else(|| "–".to_string(), |c| thousands(f(c) as f64))
    };
    format!(
        "| {:.0} | {phase} | {} | {} | {cpu_share} | {rate} | {} | {} | {} | {} | {} |",
        sample.at_s,
        if sample.alive {
            mib(sample.rss_kib)
        } else {
            "gone".into()
        },
        sample.fds,
        value(&|c| c.ringbuf_used / 1024),
        value(&|c| c.lost),
        value(&|c| c.stream_dropped),
        sample.inventory.map_or_else(
            || "–".to_string(),
            |i| format!("{} ({})", i.listed, i.exited)
        ),
        if sample.ready { "yes" } else { "NO" },
    )
}

/// The verdict, one line per check and the outcome.
pub fn verdict(checks: &[Check]) -> String {
    let mut out = String::new();
    for check in checks {
        let _ = writeln!(
            out,
            "- {} {}: {}",
            if check.passed { "PASS" } else { "FAIL" },
            check.name,
            check.detail
        );
    }
    let passed = checks.iter().all(|c| c.passed);
    let _ = writeln!(
        out,
        "\nVerdict: **{}**.",
        if passed { "PASS" } else { "FAIL" }
    );
    out
}

/// The generated block of `docs/reliability.md`.
pub fn markdown(summary: &Summary) -> String {
    let info = &summary.info;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Run of {} on {} (kernel {}), commit {}: loads for {:.0} minutes, the agent \
         sampled every {} s, warm-up the first {:.0} s; {:.1} minutes in all with the \
         agent's start and drain. Load average (1, 5, 15 min) before: {}; after: {}. \
         Other aiwatch agents running on the host: {} before, {} after.\n",
        info.date,
        info.machine,
        info.kernel,
        info.commit,
        summary.load_s / 60.0,
        info.sample_s,
        summary.warm_up_s,
        info.wall_minutes,
        info.load_before,
        info.load_after,
        info.other_agents.0,
        info.other_agents.1,
    );
    out.push_str("Loads, two rotations side by side:\n\n");
    out.push_str(&loads::describe_all());
    out.push_str("\n| load | runs | made | per second of its own time | failed |\n| --- | ---: | ---: | ---: | ---: |\n");
    for (load, runs, seconds) in &summary.tally.runs {
        let failed = summary
            .tally
            .failures
            .iter()
            .filter(|f| f.starts_with(&format!("{}:", load.name())))
            .count();
        let made = runs * load.items();
        let _ = writeln!(
            out,
            "| {} | {runs} | {} | {} | {failed} |",
            load.name(),
            thousands(made as f64),
            thousands(made as f64 / seconds.max(1e-9)),
        );
    }
    out.push('\n');
    out.push_str(&agent_paragraph(summary));
    out.push_str("\nEvents by kind: delivered to the pipeline (`aiwatch_events_total`), written to the events file, lost in its sink and lost before delivery (`aiwatch_events_lost_total`):\n\n");
    out.push_str(&kind_table(&summary.kinds, summary.load_s));
    out.push_str("\nEvery loss, drop and overflow counter at the end:\n\n| counter | final value |\n| --- | ---: |\n");
    for (name, value) in &summary.losses {
        let _ = writeln!(out, "| `{name}` | {} |", thousands(*value as f64));
    }
    out.push('\n');
    out.push_str(&verdict(&summary.checks));
    let every = summary.samples.len().div_ceil(MAX_ROWS);
    let _ = writeln!(
        out,
        "\nSamples (every {}):\n",
        if every <= 1 {
            "one".to_string()
        } else {
            format!("{every}th")
        }
    );
    out.push_str(&sample_table(&summary.samples, summary.warm_up_s, every));
    out
}

/// RSS, fds, CPU and events in one paragraph.
fn agent_paragraph(summary: &Summary) -> String {
    let samples = &summary.samples;
    let steady = steady(samples, summary.warm_up_s);
    let first = samples.iter().find(|s| s.alive);
    let steady_rss = median(steady.iter().map(|s| s.rss_kib as f64).collect()) as u64;
    let largest = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let fds_min = steady.iter().map(|s| s.fds).min().unwrap_or(0);
    let fds_max = steady.iter().map(|s| s.fds).max().unwrap_or(0);
    let last = samples.iter().rev().find(|s| s.alive);
    let loaded = samples.iter().rev().find(|s| s.under_load && s.alive);
    let cpu_s = loaded.map_or(0.0, |s| s.cpu_s) - first.map_or(0.0, |s| s.cpu_s);
    let span = loaded.map_or(0.0, |s| s.at_s) - first.map_or(0.0, |s| s.at_s);
    let events = |s: Option<&Sample>| s.and_then(|s| s.counters.as_ref()).map_or(0, |c| c.events);
    let delivered = events(loaded).saturating_sub(events(first));
    let backlog = samples
        .iter()
        .filter_map(|s| s.counters.as_ref())
        .map(|c| c.ringbuf_used)
        .max()
        .unwrap_or(0);
    let (lines, rotations, bad) = summary.events_file;
    format!(
        "The agent: RSS {} MiB at the first sample, {} MiB steady (median after the \
         warm-up), {} MiB the largest sample, {} MiB peak (`VmHWM`); open fds {} at the \
         first sample, {}–{} after the warm-up, {} at the end; CPU {:.0} s over {:.0} s \
         of loads ({:.0}% of a core); {} events delivered under load ({}/s); the ring \
         buffer's largest sampled backlog {} KiB of {} MiB; {} lines read from the events \
         file through {} rotations ({} not an event); {} alerts written; {} log lines at \
         warning level or above.\n",
        mib(first.map_or(0, |s| s.rss_kib)),
        mib(steady_rss),
        mib(largest),
        mib(summary.peak_kib),
        first.map_or(0, |s| s.fds),
        fds_min,
        fds_max,
        last.map_or(0, |s| s.fds),
        cpu_s,
        span,
        if span > 0.0 {
            cpu_s / span * 100.0
        } else {
            0.0
        },
        thousands(delivered as f64),
        thousands(if span > 0.0 {
            delivered as f64 / span
        } else {
            0.0
        }),
        thousands((backlog / 1024) as f64),
        summary.ringbuf_size >> 20,
        thousands(lines as f64),
        rotations,
        bad,
        thousands(summary.alerts as f64),
        summary.warnings,
    )
}

/// The kinds that saw anything, most delivered first.
fn kind_table(kinds: &[KindAccount], load_s: f64) -> String {
    let mut out = String::from(
        "| kind | delivered | per second | written | lost in the sink | lost before delivery |\n\
         | --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let mut kinds: Vec<&KindAccount> = kinds
        .iter()
        .filter(|k| k.delivered + k.written + k.sink_lost + k.lost_before > 0)
        .collect();
    kinds.sort_by(|a, b| b.delivered.cmp(&a.delivered).then(a.kind.cmp(&b.kind)));
    for kind in kinds {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} |",
            kind.kind,
            thousands(kind.delivered as f64),
            thousands(kind.delivered as f64 / load_s.max(1.0)),
            thousands(kind.written as f64),
            thousands(kind.sink_lost as f64),
            thousands(kind.lost_before as f64),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_s: f64, cpu_s: f64, events: u64, under_load: bool) -> Sample {
        Sample {
            at_s,
            under_load,
            alive: true,
            ready: true,
            rss_kib: 40 * 1024,
            fds: 30,
            cpu_s,
            counters: Some(Counters {
                events,
                ..Counters::default()
            }),
            inventory: None,
        }
    }

    #[test]
    fn rows_show_rates_over_their_interval_and_the_phase() {
        let samples = [
            sample(10.0, 1.0, 1_000, true),
            sample(20.0, 6.0, 21_000, true),
            sample(30.0, 8.0, 31_000, true),
            sample(40.0, 8.5, 31_050, false),
        ];
        let table = sample_table(&samples, 15.0, 1);
        assert!(
            table.contains("| 10 | warm-up | 40.0 | 30 | 10 | 100 |"),
            "{table}"
        );
        assert!(
            table.contains("| 20 |  | 40.0 | 30 | 50 | 2,000 |"),
            "{table}"
        );
        assert!(
            table.contains("| 40 | after | 40.0 | 30 | 5 | 5 |"),
            "{table}"
        );
        // Every second row, and always the last.
        let sparse = sample_table(&samples, 15.0, 2);
        assert!(
            !sparse.contains("| 20 |") && sparse.contains("| 30 |"),
            "{sparse}"
        );
        assert!(sparse.contains("| 40 |"), "{sparse}");
    }

    #[test]
    fn the_verdict_fails_when_any_check_fails() {
        let pass = Check {
            name: "RSS flat",
            passed: true,
            detail: "ok".into(),
        };
        let fail = Check {
            name: "no fd growth",
            passed: false,
            detail: "grew".into(),
        };
        let text = verdict(&[pass.clone(), fail]);
        assert!(text.contains("- PASS RSS flat: ok") && text.contains("- FAIL no fd growth: grew"));
        assert!(text.contains("Verdict: **FAIL**"));
        assert!(verdict(&[pass]).contains("Verdict: **PASS**"));
    }
}
