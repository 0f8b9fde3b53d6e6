//! A recorded event file (a real agent run: a pickle payload spawning a
//! shell, model and secret reads, connects, DNS, renames, a memfd) keeps its
//! meaning across changes:
//! - every event parses into the typed `Event` and serialises back to the
//!   same bytes, so the schema in `docs/events.md` does not drift;
//! - `aiwatch replay` (rules, and rules plus anomaly detection) gives the
//!   recorded alerts byte for byte.
//!
//! A change that alters alerts on purpose (a new or re-graded rule) updates
//! the expected files: `AIWATCH_BLESS=1 cargo test -p aiwatch --test recorded`,
//! and the diff shows the new alerts for review.

use std::{path::Path, process::Command};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/recorded");

#[test]
fn recorded_events_round_trip_through_the_typed_event() {
    let events = std::fs::read_to_string(Path::new(DATA).join("events.jsonl")).unwrap();
    let mut lines = 0;
    for (number, line) in events.lines().enumerate() {
        let event: aiwatch::event::Event =
            serde_json::from_str(line).unwrap_or_else(|err| panic!("line {}: {err}", number + 1));
        let written = serde_json::to_string(&event).unwrap();
        assert_eq!(
            written,
            line,
            "line {} changed on the way through",
            number + 1
        );
        lines += 1;
    }
    assert!(lines > 300, "the recording has {lines} events");
}

fn replay_matches(extra: &[&str], expected: &str) {
    let output = Command::new(env!("CARGO_BIN_EXE_aiwatch"))
        .arg("replay")
        .args(extra)
        .arg(Path::new(DATA).join("events.jsonl"))
        .output()
        .expect("run aiwatch replay");
    assert!(
        output.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected_path = Path::new(DATA).join(expected);
    if std::env::var_os("AIWATCH_BLESS").is_some() {
        std::fs::write(&expected_path, &output.stdout).unwrap();
    }
    let want = std::fs::read_to_string(&expected_path).unwrap();
    let got = String::from_utf8(output.stdout).unwrap();
    assert!(
        want.lines().count() >= 10,
        "{expected} holds the recorded alerts"
    );
    assert!(
        got == want,
        "replay alerts differ from {expected}; if the rules changed on purpose, \
         regenerate with AIWATCH_BLESS=1 and review the diff\n--- got:\n{got}"
    );
}

#[test]
fn replay_gives_the_recorded_alerts() {
    replay_matches(&[], "replay-alerts.jsonl");
}

#[test]
fn replay_with_anomaly_detection_gives_the_recorded_alerts() {
    replay_matches(&["--anomaly"], "replay-anomaly-alerts.jsonl");
}
