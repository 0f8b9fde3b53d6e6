//! Plain-language alert summaries: what the workload did, and what its
//! profile expected instead.

use super::config::Detector;
use super::detect::{set_for, Observation};
use super::profile::{Profile, WorkloadKey};
use super::rates::RateMetric;

/// Known items listed in a summary before "and N more".
const LISTED_ITEMS: usize = 6;

/// "inference workload `vllm-llama`"
pub fn workload_phrase(workload: &WorkloadKey) -> String {
    format!("{} workload `{}`", workload.kind, workload.name)
}

/// A learning duration the way people say it: `45s`, `10m`, `3h`, `2h 15m`, `4d`.
pub fn duration(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86_399 => {
            let (h, m) = (secs / 3600, (secs % 3600) / 60);
            if m == 0 {
                format!("{h}h")
            } else {
                format!("{h}h {m}m")
            }
        }
        _ => format!("{}d", secs / 86_400),
    }
}

/// `a, b, c and 4 more`, or `none`.
pub fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let items: Vec<&str> = items.collect();
    if items.is_empty() {
        return "none".to_string();
    }
    let shown = items[..items.len().min(LISTED_ITEMS)].join(", ");
    if items.len() > LISTED_ITEMS {
        format!("{shown} and {} more", items.len() - LISTED_ITEMS)
    } else {
        shown
    }
}

pub fn bytes(amount: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = amount.max(0.0);
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The summary of an alert on a novel set item.
pub fn novel_item(profile: &Profile, observation: &Observation) -> String {
    let who = workload_phrase(&profile.workload);
    let learned = duration(profile.learning.learned_ns);
    let known = list(
        set_for(profile, observation)
            .into_iter()
            .flat_map(|s| s.iter()),
    );
    let seen = &observation.seen;
    match observation.detector {
        Detector::NewExecutable => format!(
            "{who} ran {seen}, never seen in {learned} of learning; its known executables are {known}"
        ),
        Detector::NewProcessPair => format!(
            "{who} had {seen}, a parent → child pair never seen in {learned} of learning; its known pairs are {known}"
        ),
        Detector::NewPeer => format!(
            "{who} connected to {seen}, never seen in {learned} of learning; its known peers are {known}"
        ),
        Detector::NewListenPort => format!(
            "{who} listened on {seen}, never seen in {learned} of learning; its known listening ports are {known}"
        ),
        Detector::NewFileClassPath => {
            let class = observation.class.as_deref().unwrap_or("asset");
            let pattern = observation.items.first().map(String::as_str).unwrap_or(seen);
            format!(
                "{who} opened {class} file {seen} (path class {pattern}), never seen in {learned} of learning; its known {class} paths are {known}"
            )
        }
        Detector::NewGpuDevice => format!(
            "{who} used GPU device {seen}, never seen in {learned} of learning; its known GPU devices are {known}"
        ),
        rate => format!("{who}: {} departed from its profile at {seen}", rate.name()),
    }
}

fn amount(metric: RateMetric, value: f64) -> String {
    if metric.is_bytes() {
        bytes(value)
    } else {
        format!("{value:.0}")
    }
}

/// One rate's excursion, with the numbers that make it one.
pub struct RateExcursion {
    pub metric: RateMetric,
    pub value: f64,
    pub level: f64,
    pub upper: f64,
    pub minutes: u32,
}

/// Model reads seen beside an egress excursion.
pub struct ModelReadJump {
    pub value: f64,
    pub level: f64,
}

pub fn rate(
    profile: &Profile,
    excursion: &RateExcursion,
    model_reads: Option<&ModelReadJump>,
) -> String {
    let who = workload_phrase(&profile.workload);
    let RateExcursion {
        metric,
        value,
        level,
        upper,
        minutes,
    } = *excursion;
    let what = match metric {
        RateMetric::Spawns => "started {v} processes a minute",
        RateMetric::EgressBytes => "sent {v} a minute to remote peers",
        RateMetric::ModelReadBytes => "read {v} of model files a minute",
        RateMetric::DistinctPeers => "contacted {v} distinct peers a minute",
        RateMetric::GpuIoctls => "made {v} GPU ioctls a minute",
    }
    .replace("{v}", &amount(metric, value));
    let mut summary = format!(
        "{who} {what} for {minutes} consecutive minutes; its profile expects about {} (band up to {})",
        amount(metric, level),
        amount(metric, upper)
    );
    if let Some(jump) = model_reads {
        summary.push_str(&format!(
            ", while its model-file reads jumped to {} a minute (usually {}): possible model exfiltration",
            bytes(jump.value),
            bytes(jump.level)
        ));
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_naturally() {
        assert_eq!(duration(3 * 3600 * 1_000_000_000), "3h");
        assert_eq!(duration(600 * 1_000_000_000), "10m");
        assert_eq!(duration(8100 * 1_000_000_000), "2h 15m");
        assert_eq!(bytes(100.0 * 1024.0 * 1024.0), "100.0 MiB");
        assert_eq!(list(["a", "b"].into_iter()), "a, b");
        assert_eq!(list(std::iter::empty()), "none");
        let many: Vec<String> = (0..8).map(|i| i.to_string()).collect();
        assert_eq!(
            list(many.iter().map(String::as_str)),
            "0, 1, 2, 3, 4, 5 and 2 more"
        );
    }
}
