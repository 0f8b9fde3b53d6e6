//! The soak's verdict, from the samples and the run's accounts: pure, so
//! that passing and failing series can be tested without an agent.
//!
//! - **Warm-up** is the first fifth of the load time, at least 30 s: the
//!   agent seeds its tables from `/proc`, learns the loads' workloads and
//!   sizes its queues; memory may grow then.
//! - **RSS flat**: of the samples taken under load after the warm-up, the
//!   largest RSS among the last `k` is at most 10% above the median RSS of
//!   the first `k`, where `k` is a tenth of those samples, at least 3 (and
//!   at most half of them).
//!   Loads shorter than [`FLATNESS_MIN_LOAD_S`] cannot judge flatness (the
//!   agent is still growing to its working size), so they judge **RSS
//!   within the limit** instead: no sample above the DaemonSet's memory
//!   limit, [`RSS_LIMIT_KIB`].
//! - **No fd growth**: the largest fd count among the last `k` is at most
//!   [`FD_SLACK`] above the largest among the first `k`.
//! - **Alive and ready**: the agent ran at every sample, `/readyz` said
//!   ready at every sample, and no agent task failed.
//! - **Losses only where counted**: every exec the exec storm made is an
//!   exec event in the events file or counted as lost
//!   (`aiwatch_events_lost_total` of kind `exec` or `unknown`, any stage);
//!   and for every kind, the events delivered to the pipeline
//!   (`aiwatch_events_total`) are in the events file or counted as lost by
//!   its sink.
//! - **Inventory holds only live processes**: once the loads have stopped
//!   and the agent has had time to see the last exits (and the last
//!   folded-read reports, which come after an exit), no process the
//!   inventory lists in a workload has exited.
//! - **Loads ran**: no load failed.

/// Allowed rise in RSS after the warm-up.
pub const RSS_BOUND: f64 = 0.10;
/// Loads shorter than this judge RSS against [`RSS_LIMIT_KIB`], not
/// flatness: at the soak's rates the agent took 11 minutes to reach its
/// working size in the recorded run (docs/reliability.md, "Short runs"), so
/// a shorter run's rise measures that ramp, not a leak.
pub const FLATNESS_MIN_LOAD_S: f64 = 15.0 * 60.0;
/// The DaemonSet's memory limit (`deploy/kubernetes/daemonset.yaml`): a pod
/// whose agent went past it would be killed.
pub const RSS_LIMIT_KIB: u64 = 512 * 1024;
/// Descriptors the agent may hold beyond its early count at any moment:
/// the listener's connection serving a scrape, a file sink reopened on
/// rotation, a TLS library's uprobes attached when first seen.
pub const FD_SLACK: u64 = 4;
/// Share of the load time that is warm-up, and its least length.
const WARM_UP_SHARE: f64 = 0.2;
const WARM_UP_MIN_S: f64 = 30.0;

/// One reading of the agent.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Seconds since the loads started.
    pub at_s: f64,
    /// Whether it was taken while the loads ran (not after they stopped).
    pub under_load: bool,
    pub alive: bool,
    pub ready: bool,
    pub rss_kib: u64,
    pub fds: u64,
    /// CPU seconds the agent used since it started.
    pub cpu_s: f64,
    /// From `/metrics`; `None` when it could not be read.
    pub counters: Option<Counters>,
    /// From `/inventory`; `None` when it could not be read.
    pub inventory: Option<Inventory>,
}

/// The processes the inventory lists in workloads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    pub listed: u64,
    /// Of them, those with no `/proc` entry.
    pub exited: u64,
}

/// What a sample reads from `/metrics`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counters {
    /// `aiwatch_events_total`, every kind.
    pub events: u64,
    /// `aiwatch_events_lost_total`, every stage and kind.
    pub lost: u64,
    /// `aiwatch_stream_dropped_total`.
    pub stream_dropped: u64,
    /// `aiwatch_ringbuf_used_bytes`: the kernel ring buffer's backlog.
    pub ringbuf_used: u64,
    pub ringbuf_size: u64,
}

/// The length of the warm-up for loads of `load_s` seconds.
pub fn warm_up_s(load_s: f64) -> f64 {
    (load_s * WARM_UP_SHARE).max(WARM_UP_MIN_S)
}

/// The samples the flatness checks judge: under load, after the warm-up.
pub fn steady(samples: &[Sample], warm_up_s: f64) -> Vec<&Sample> {
    samples
        .iter()
        .filter(|s| s.under_load && s.alive && s.at_s >= warm_up_s)
        .collect()
}

/// The window at each end of `n` steady samples.
pub fn window(n: usize) -> usize {
    (n / 10).max(3).min(n / 2)
}

/// One line of the verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

impl Check {
    fn new(name: &'static str, passed: bool, detail: String) -> Check {
        Check {
            name,
            passed,
            detail,
        }
    }

    fn too_few(name: &'static str, n: usize) -> Check {
        Check::new(
            name,
            false,
            format!("{n} sample(s) after the warm-up: too few to judge (run longer)"),
        )
    }
}

fn mib(kib: f64) -> f64 {
    kib / 1024.0
}

/// The first and the last [`window`] of the steady samples; how many
/// there are when fewer than two.
fn ends(samples: &[Sample], warm_up_s: f64) -> Result<(Vec<&Sample>, Vec<&Sample>), usize> {
    let steady = steady(samples, warm_up_s);
    if steady.len() < 2 {
        return Err(steady.len());
    }
    let k = window(steady.len());
    Ok((steady[..k].to_vec(), steady[steady.len() - k..].to_vec()))
}

/// The median RSS of the first [`window`] of the steady samples and the
/// largest of the last (KiB), with the window's size; how many steady
/// samples there are when fewer than two.
fn rss_ends(samples: &[Sample], warm_up_s: f64) -> Result<(usize, f64, f64), usize> {
    let (early, late) = ends(samples, warm_up_s)?;
    let k = early.len();
    let early = median(early.iter().map(|s| s.rss_kib as f64).collect());
    let late = late.iter().map(|s| s.rss_kib).max().unwrap_or(0) as f64;
    Ok((k, early, late))
}

/// RSS flat within [`RSS_BOUND`] after the warm-up.
pub fn rss_flat(samples: &[Sample], warm_up_s: f64) -> Check {
    const NAME: &str = "RSS flat";
    let (k, early, late) = match rss_ends(samples, warm_up_s) {
        Ok(ends) => ends,
        Err(n) => return Check::too_few(NAME, n),
    };
    let rise = if early > 0.0 { late / early - 1.0 } else { 0.0 };
    Check::new(
        NAME,
        early > 0.0 && rise <= RSS_BOUND,
        format!(
            "median of the first {k} samples after the warm-up {:.1} MiB, largest of the \
             last {k} {:.1} MiB: {:+.1}% (bound +{:.0}%)",
            mib(early),
            mib(late),
            rise * 100.0,
            RSS_BOUND * 100.0
        ),
    )
}

/// The RSS check for loads of `load_s` seconds: flatness when the run is
/// long enough to judge it, else the limit.
pub fn rss_check(samples: &[Sample], load_s: f64, warm_up_s: f64) -> Check {
    if load_s >= FLATNESS_MIN_LOAD_S {
        rss_flat(samples, warm_up_s)
    } else {
        rss_within_limit(samples, load_s, warm_up_s)
    }
}

/// No sample of the agent above [`RSS_LIMIT_KIB`]; the rise after the
/// warm-up is shown, not judged.
pub fn rss_within_limit(samples: &[Sample], load_s: f64, warm_up_s: f64) -> Check {
    const NAME: &str = "RSS within the limit";
    let alive: Vec<&Sample> = samples.iter().filter(|s| s.alive).collect();
    if alive.is_empty() {
        return Check::too_few(NAME, 0);
    }
    let largest = alive.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let rise = match rss_ends(samples, warm_up_s) {
        Ok((_, early, late)) if early > 0.0 => format!("{:+.1}%", (late / early - 1.0) * 100.0),
        _ => "unknown".to_string(),
    };
    Check::new(
        NAME,
        largest <= RSS_LIMIT_KIB,
        format!(
            "largest {:.1} MiB (limit {:.0} MiB); rise after the warm-up {rise}, not judged: flatness needs {:.0} minutes of load, this run had {:.0}",
            mib(largest as f64),
            mib(RSS_LIMIT_KIB as f64),
            FLATNESS_MIN_LOAD_S / 60.0,
            load_s / 60.0
        ),
    )
}

/// No fd growth after the warm-up beyond [`FD_SLACK`].
pub fn fds_flat(samples: &[Sample], warm_up_s: f64) -> Check {
    const NAME: &str = "no fd growth";
    let (early, late) = match ends(samples, warm_up_s) {
        Ok(ends) => ends,
        Err(n) => return Check::too_few(NAME, n),
    };
    let k = early.len();
    let early = early.iter().map(|s| s.fds).max().unwrap_or(0);
    let late = late.iter().map(|s| s.fds).max().unwrap_or(0);
    Check::new(
        NAME,
        late <= early + FD_SLACK,
        format!(
            "largest of the first {k} samples after the warm-up {early} fds, of the last \
             {k} {late} (bound +{FD_SLACK})"
        ),
    )
}

/// The agent ran and said ready at every sample, and no task failed.
pub fn alive_and_ready(samples: &[Sample], task_failures: u64) -> Check {
    let dead = samples.iter().filter(|s| !s.alive).count();
    let unready = samples.iter().filter(|s| s.alive && !s.ready).count();
    Check::new(
        "alive and ready",
        !samples.is_empty() && dead == 0 && unready == 0 && task_failures == 0,
        format!(
            "{} samples: agent gone at {dead}, /readyz not ready at {unready}; \
             task failures {task_failures}",
            samples.len()
        ),
    )
}

/// The exec storm's execs against what the agent wrote and counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecAccount {
    /// Execs the storm's loops made.
    pub made: u64,
    /// Exec events of the storm's children in the events file.
    pub written: u64,
    /// `aiwatch_events_lost_total` of kind `exec` or `unknown`, every stage.
    pub counted_lost: u64,
}

/// Every exec made is written or counted as lost.
pub fn execs_accounted(account: ExecAccount) -> Check {
    let missing = account.made.saturating_sub(account.written);
    Check::new(
        "every exec accounted for",
        account.made > 0 && missing <= account.counted_lost,
        format!(
            "{} execs made, {} exec events of them written, {} missing; exec losses \
             counted {}",
            account.made, account.written, missing, account.counted_lost
        ),
    )
}

/// One event kind's delivered events against the events file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KindAccount {
    pub kind: String,
    /// `aiwatch_events_total{kind}` at the final scrape.
    pub delivered: u64,
    /// Lines of the kind in the events file, read after that scrape.
    pub written: u64,
    /// `aiwatch_events_lost_total{stage="sink",kind}`.
    pub sink_lost: u64,
    /// The kind's losses at the other stages (before delivery).
    pub lost_before: u64,
}

/// Kinds the pipeline counts but never writes: clear text becomes the LLM
/// events it completes.
pub const NOT_WRITTEN: &[&str] = &["clear_text"];

/// Every kind's delivered events are written or counted as lost by the
/// sink; `file_complete` is false when the events file could not be read
/// whole (a rotated file was missed).
pub fn sink_accounted(accounts: &[KindAccount], file_complete: bool) -> Check {
    const NAME: &str = "every delivered event written or counted";
    if !file_complete {
        return Check::new(
            NAME,
            false,
            "the events file rotated past a file that was not read".into(),
        );
    }
    let judged = accounts
        .iter()
        .filter(|a| !NOT_WRITTEN.contains(&a.kind.as_str()));
    let short: Vec<String> = judged
        .clone()
        .filter(|a| a.written + a.sink_lost < a.delivered)
        .map(|a| {
            format!(
                "{}: {} delivered, {} written, {} counted",
                a.kind, a.delivered, a.written, a.sink_lost
            )
        })
        .collect();
    let delivered: u64 = judged.clone().map(|a| a.delivered).sum();
    let written: u64 = judged.clone().map(|a| a.written).sum();
    let sink_lost: u64 = judged.map(|a| a.sink_lost).sum();
    let detail = if short.is_empty() {
        format!(
            "{delivered} events delivered, {written} written, {sink_lost} counted as lost \
             by the sink; no kind short"
        )
    } else {
        format!("uncounted loss: {}", short.join("; "))
    };
    Check::new(NAME, delivered > 0 && short.is_empty(), detail)
}

/// The last sample's inventory lists no exited process.
pub fn inventory_live(samples: &[Sample]) -> Check {
    const NAME: &str = "inventory holds only live processes";
    match samples.last().and_then(|s| s.inventory) {
        Some(inventory) => Check::new(
            NAME,
            inventory.exited == 0,
            format!(
                "after the loads: {} processes listed in workloads, {} of them exited",
                inventory.listed, inventory.exited
            ),
        ),
        None => Check::new(NAME, false, "the inventory could not be read".into()),
    }
}

/// No load failed.
pub fn loads_ran(runs: u64, failures: &[String]) -> Check {
    Check::new(
        "loads ran",
        runs > 0 && failures.is_empty(),
        if failures.is_empty() {
            format!("{runs} runs, none failed")
        } else {
            format!(
                "{runs} runs, {} failed; first: {}",
                failures.len(),
                failures[0]
            )
        },
    )
}

/// The median (mean of the middle two for an even count); 0 for none.
pub fn median(values: Vec<f64>) -> f64 {
    crate::bench::report::median(values).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sample every 10 s under load, with these RSS values (MiB) and fds.
    fn series(rss_mib: &[f64], fds: &[u64]) -> Vec<Sample> {
        rss_mib
            .iter()
            .zip(fds)
            .enumerate()
            .map(|(i, (&rss, &fds))| Sample {
                at_s: 10.0 * (i + 1) as f64,
                under_load: true,
                alive: true,
                ready: true,
                rss_kib: (rss * 1024.0) as u64,
                fds,
                ..Sample::default()
            })
            .collect()
    }

    #[test]
    fn the_warm_up_is_a_fifth_and_at_least_half_a_minute() {
        assert_eq!(warm_up_s(1800.0), 360.0);
        assert_eq!(warm_up_s(180.0), 36.0);
        assert_eq!(warm_up_s(60.0), 30.0);
    }

    #[test]
    fn the_window_is_a_tenth_at_least_three_and_at_most_half() {
        assert_eq!(window(180), 18);
        assert_eq!(window(14), 3);
        assert_eq!(window(4), 2);
        assert_eq!(window(2), 1);
    }

    #[test]
    fn growth_during_the_warm_up_does_not_count() {
        // 20 → 40 MiB in the first 30 s, then flat with noise.
        let mut rss = vec![20.0, 30.0, 40.0];
        rss.extend([40.0, 41.0, 40.5, 40.0, 41.5, 40.2, 40.8, 41.0, 40.1, 40.9]);
        let samples = series(&rss, &[30; 13]);
        let check = rss_flat(&samples, 30.0);
        assert!(check.passed, "{check:?}");
        assert!(check.detail.contains("+2.5%"), "{}", check.detail);
    }

    #[test]
    fn a_steady_climb_fails_the_rss_check() {
        // +1 MiB every sample after the warm-up: 40 → 52 MiB.
        let rss: Vec<f64> = (0..16).map(|i| 37.0 + f64::from(i)).collect();
        let check = rss_flat(&series(&rss, &[30; 16]), 30.0);
        assert!(!check.passed, "{check:?}");
        // Early median 40 MiB (39, 40, 41), late largest 52: +30%.
        assert!(check.detail.contains("40.0 MiB"), "{}", check.detail);
        assert!(check.detail.contains("+30.0%"), "{}", check.detail);
        assert!(check.detail.contains("52.0 MiB"), "{}", check.detail);
    }

    #[test]
    fn one_late_spike_above_the_bound_fails_and_one_below_passes() {
        let mut rss = vec![40.0; 14];
        rss[12] = 44.5;
        assert!(!rss_flat(&series(&rss, &[30; 14]), 30.0).passed);
        rss[12] = 43.9;
        assert!(rss_flat(&series(&rss, &[30; 14]), 30.0).passed);
    }

    #[test]
    fn samples_after_the_loads_and_of_a_dead_agent_are_not_judged() {
        let mut samples = series(&[40.0; 10], &[30; 10]);
        samples.push(Sample {
            at_s: 200.0,
            under_load: false,
            alive: true,
            ready: true,
            rss_kib: 400 * 1024,
            fds: 300,
            ..Sample::default()
        });
        assert_eq!(steady(&samples, 30.0).len(), 8);
        assert!(rss_flat(&samples, 30.0).passed);
        assert!(fds_flat(&samples, 30.0).passed);
    }

    #[test]
    fn short_runs_judge_the_limit_and_long_runs_flatness() {
        // A ramp a 3-minute run cannot tell from a leak: +50% after warm-up.
        let rss: Vec<f64> = (0..18).map(|i| 60.0 + 2.0 * f64::from(i)).collect();
        let samples = series(&rss, &[30; 18]);
        let short = rss_check(&samples, 180.0, 36.0);
        assert!(short.passed, "{short:?}");
        assert!(short.detail.contains("not judged"), "{short:?}");
        assert!(!rss_check(&samples, FLATNESS_MIN_LOAD_S, 36.0).passed);
        // Past the limit once fails a short run.
        let mut rss = vec![100.0; 18];
        rss[9] = 513.0;
        assert!(!rss_check(&series(&rss, &[30; 18]), 180.0, 36.0).passed);
    }

    #[test]
    fn the_limit_is_the_daemonsets() {
        let manifest = include_str!("../../../deploy/kubernetes/daemonset.yaml");
        let limits = manifest
            .split_once("limits:")
            .expect("the DaemonSet has resource limits")
            .1;
        let memory = limits
            .lines()
            .find_map(|line| line.trim().strip_prefix("memory:"))
            .expect("a memory limit")
            .trim();
        assert_eq!(memory, format!("{}Mi", RSS_LIMIT_KIB / 1024));
    }

    #[test]
    fn too_few_samples_fail_rather_than_pass() {
        let samples = series(&[40.0, 40.0, 40.0], &[30, 30, 30]);
        let check = rss_flat(&samples, 30.0);
        assert!(
            !check.passed && check.detail.contains("too few"),
            "{check:?}"
        );
        assert!(!fds_flat(&samples, 30.0).passed);
    }

    #[test]
    fn fds_may_wobble_within_the_slack_but_not_grow() {
        let wobble = [30, 31, 30, 30, 33, 31, 30, 32, 34, 31, 30, 33, 31, 34];
        let check = fds_flat(&series(&[40.0; 14], &wobble), 30.0);
        assert!(check.passed, "{check:?}");
        let leak: Vec<u64> = (0..14).map(|i| 30 + 2 * i).collect();
        let check = fds_flat(&series(&[40.0; 14], &leak), 30.0);
        assert!(!check.passed, "{check:?}");
        assert!(
            check.detail.contains("fds, of the last 3 56"),
            "{}",
            check.detail
        );
    }

    #[test]
    fn a_dead_or_unready_agent_or_a_failed_task_fails() {
        let samples = series(&[40.0; 5], &[30; 5]);
        assert!(alive_and_ready(&samples, 0).passed);
        assert!(!alive_and_ready(&samples, 1).passed);
        let mut unready = samples.clone();
        unready[2].ready = false;
        assert!(!alive_and_ready(&unready, 0).passed);
        let mut dead = samples;
        dead[4].alive = false;
        let check = alive_and_ready(&dead, 0);
        assert!(
            !check.passed && check.detail.contains("gone at 1"),
            "{check:?}"
        );
        assert!(!alive_and_ready(&[], 0).passed);
    }

    #[test]
    fn missing_execs_must_be_counted() {
        let all_written = ExecAccount {
            made: 1000,
            written: 1000,
            counted_lost: 0,
        };
        assert!(execs_accounted(all_written).passed);
        let counted = ExecAccount {
            made: 1000,
            written: 900,
            counted_lost: 150,
        };
        assert!(execs_accounted(counted).passed);
        let uncounted = ExecAccount {
            made: 1000,
            written: 900,
            counted_lost: 99,
        };
        let check = execs_accounted(uncounted);
        assert!(
            !check.passed && check.detail.contains("100 missing"),
            "{check:?}"
        );
        assert!(!execs_accounted(ExecAccount::default()).passed);
    }

    fn kind(kind: &str, delivered: u64, written: u64, sink_lost: u64) -> KindAccount {
        KindAccount {
            kind: kind.into(),
            delivered,
            written,
            sink_lost,
            lost_before: 0,
        }
    }

    #[test]
    fn delivered_events_must_be_written_or_counted_by_the_sink() {
        let balanced = [
            kind("exec", 500, 500, 0),
            // Written after the scrape: more lines than delivered is fine.
            kind("fork", 500, 510, 0),
            kind("open", 1000, 700, 300),
            // Clear text is never written.
            kind("clear_text", 80, 0, 0),
        ];
        let check = sink_accounted(&balanced, true);
        assert!(check.passed, "{check:?}");
        assert!(
            check.detail.contains("2000 events delivered"),
            "{}",
            check.detail
        );
        let short = [kind("exec", 500, 500, 0), kind("open", 1000, 700, 299)];
        let check = sink_accounted(&short, true);
        assert!(!check.passed, "{check:?}");
        assert!(
            check
                .detail
                .contains("open: 1000 delivered, 700 written, 299 counted"),
            "{}",
            check.detail
        );
        assert!(!sink_accounted(&balanced, false).passed);
        assert!(!sink_accounted(&[], true).passed);
    }

    #[test]
    fn exited_processes_left_in_the_inventory_fail() {
        let mut samples = series(&[40.0; 3], &[30; 3]);
        samples[2].inventory = Some(Inventory {
            listed: 3,
            exited: 0,
        });
        assert!(inventory_live(&samples).passed);
        samples[2].inventory = Some(Inventory {
            listed: 256,
            exited: 256,
        });
        let check = inventory_live(&samples);
        assert!(
            !check.passed && check.detail.contains("256 of them exited"),
            "{check:?}"
        );
        // Only the last sample counts: exits in flight earlier are no leak.
        samples[1].inventory = samples[2].inventory;
        samples[2].inventory = Some(Inventory::default());
        assert!(inventory_live(&samples).passed);
        samples[2].inventory = None;
        assert!(!inventory_live(&samples).passed);
    }

    #[test]
    fn a_failed_load_fails_the_run() {
        assert!(loads_ran(40, &[]).passed);
        let check = loads_ran(40, &["fork-exec: the bench workload failed".into()]);
        assert!(
            !check.passed && check.detail.contains("1 failed"),
            "{check:?}"
        );
        assert!(!loads_ran(0, &[]).passed);
    }
}
