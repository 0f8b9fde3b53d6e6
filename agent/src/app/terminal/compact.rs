//! One readable line per alert or event, for a terminal: time, severity,
//! workload, rule and summary; coloured by severity when asked.

use anstyle::{AnsiColor, Style};

use crate::{
    alert::{Alert, Severity},
    event::{Event, WallTime},
    policy::what_happened,
};

fn severity_style(severity: Severity) -> Style {
    let color = match severity {
        Severity::Info => AnsiColor::BrightBlack,
        Severity::Low => AnsiColor::Cyan,
        Severity::Medium => AnsiColor::Yellow,
        Severity::High => AnsiColor::Red,
        Severity::Critical => AnsiColor::BrightRed,
    };
    let style = Style::new().fg_color(Some(color.into()));
    if severity >= Severity::High {
        style.bold()
    } else {
        style
    }
}

/// `12:03:44.120 HIGH     onnx-server  ai.model.pickle-load-exec  <summary>`.
pub fn alert_line(alert: &Alert, color: bool) -> String {
    let severity = format!("{:<8}", alert.severity.as_str().to_uppercase());
    let severity = if color {
        let style = severity_style(alert.severity);
        format!("{style}{severity}{style:#}")
    } else {
        severity
    };
    let workload = alert
        .workload
        .as_ref()
        .map(|w| w.name.as_str())
        .unwrap_or("-");
    format!(
        "{} {severity} {workload:<16} {:<36} {}",
        clock(alert.time),
        alert.rule,
        alert.summary
    )
}

/// `12:03:44.120 exec     onnx-server  /usr/bin/sh (pid 7) ran ...`.
pub fn event_line(event: &Event) -> String {
    let workload = event
        .workload
        .as_ref()
        .map(|w| w.name.as_str())
        .unwrap_or("-");
    format!(
        "{} {:<12} {workload:<16} {}",
        clock(event.time),
        event.kind.as_str(),
        what_happened(event)
    )
}

/// The time of day (UTC) to the millisecond; `-` when unknown.
fn clock(time: Option<WallTime>) -> String {
    let Some(time) = time else {
        return "-".to_string();
    };
    let text = time.to_string();
    text.split_once('T')
        .map(|(_, t)| t.get(..12).unwrap_or(t).to_string())
        .unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert() -> Alert {
        serde_json::from_value(serde_json::json!({
            "time": "2026-11-29T12:03:44.120456789Z",
            "rule": "ai.model.pickle-load-exec",
            "severity": "high",
            "summary": "a pickle ran a shell",
            "action": "alert",
            "action_taken": true,
            "workload": {"id": "w", "kind": "inference", "name": "onnx-server"},
            "event": {"time": "2026-11-29T12:03:44.120456789Z", "ktime_ns": 0, "kind": "exec", "process": {}},
        }))
        .expect("an alert")
    }

    #[test]
    fn an_alert_is_one_line_with_time_severity_workload_rule_and_summary() {
        let line = alert_line(&alert(), false);
        assert!(line.starts_with("12:03:44.120 HIGH "), "{line}");
        for part in [
            "onnx-server",
            "ai.model.pickle-load-exec",
            "a pickle ran a shell",
        ] {
            assert!(line.contains(part), "{line}");
        }
        assert!(!line.contains('\n') && !line.contains('\u{1b}'));
        assert!(alert_line(&alert(), true).contains('\u{1b}'));
    }
}
