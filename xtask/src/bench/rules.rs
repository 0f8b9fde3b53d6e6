//! The criterion benchmarks of the rule engine and the user-space pipeline
//! (`agent/benches/rules.rs`), run with a short measurement and read back
//! from criterion's JSON output.

use std::{
    path::Path,
    time::{Duration, SystemTime},
};

use anyhow::Context as _;
use serde_json::Value;

use crate::workspace::{run_step, Workspace};

/// Events per second of one criterion benchmark.
#[derive(Clone, Debug)]
pub struct RuleResult {
    /// `group/function`, e.g. `evaluate/100_rules`.
    pub name: String,
    pub events_per_sec: f64,
}

/// Runs `cargo bench -p aiwatch --bench rules` and reads its results.
pub fn run(workspace: &Workspace) -> anyhow::Result<Vec<RuleResult>> {
    let started = SystemTime::now();
    let mut command = workspace.cargo();
    command.args(["bench", "--package", "aiwatch", "--bench", "rules", "--"]);
    command.args(["--warm-up-time", "1", "--measurement-time", "2", "--noplot"]);
    run_step(&mut command, "the rule-engine benchmarks")?;
    // Only what this run wrote, not older benchmarks' leftovers.
    let since = started - Duration::from_secs(1);
    read_results(&workspace.target_dir.join("criterion"), since)
}

/// Reads `<group>/<function>/new/{benchmark,estimates}.json` under `root`
/// written after `since`.
fn read_results(root: &Path, since: SystemTime) -> anyhow::Result<Vec<RuleResult>> {
    let mut results = Vec::new();
    let groups = std::fs::read_dir(root).with_context(|| format!("reading {}", root.display()))?;
    for group in groups.flatten() {
        let Ok(functions) = std::fs::read_dir(group.path()) else {
            continue;
        };
        for function in functions.flatten() {
            let new = function.path().join("new");
            let estimates = new.join("estimates.json");
            let fresh = estimates
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified >= since);
            if !fresh {
                continue;
            }
            if let Some(result) = read_one(&new.join("benchmark.json"), &estimates) {
                results.push(result);
            }
        }
    }
    results.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(results)
}

fn read_one(benchmark: &Path, estimates: &Path) -> Option<RuleResult> {
    let benchmark: Value = serde_json::from_str(&std::fs::read_to_string(benchmark).ok()?).ok()?;
    let estimates: Value = serde_json::from_str(&std::fs::read_to_string(estimates).ok()?).ok()?;
    let elements = benchmark["throughput"]["Elements"].as_f64()?;
    let nanos = estimates["median"]["point_estimate"].as_f64()?;
    let name = benchmark["full_id"].as_str()?.to_string();
    (nanos > 0.0).then(|| RuleResult {
        name,
        events_per_sec: elements / (nanos / 1e9),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_comes_from_elements_over_the_median_time() {
        let dir = std::env::temp_dir().join(format!("xtask-criterion-{}", std::process::id()));
        let new = dir.join("evaluate").join("100_rules").join("new");
        std::fs::create_dir_all(&new).expect("dirs");
        std::fs::write(
            new.join("benchmark.json"),
            r#"{"full_id":"evaluate/100_rules","throughput":{"Elements":10000}}"#,
        )
        .expect("write");
        std::fs::write(
            new.join("estimates.json"),
            r#"{"median":{"point_estimate":5000000.0}}"#,
        )
        .expect("write");
        let results = read_results(&dir, SystemTime::UNIX_EPOCH).expect("read");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].name, "evaluate/100_rules");
        // 10,000 events in 5 ms.
        assert!((results[0].events_per_sec - 2_000_000.0).abs() < 1e-6);
    }
}
