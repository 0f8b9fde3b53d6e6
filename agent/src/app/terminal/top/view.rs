//! How `aiwatch top` draws a [`TopModel`]: the agent's health on top, the
//! workloads table, the latest alerts, and a line of keys. The same cells
//! make the one-shot table printed when stdout is not a terminal.

use ratatui::{
    layout::{Constraint, Flex, Layout},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, List, ListItem, Paragraph, Row as TableRow, Table},
    Frame,
};

use crate::{
    alert::Severity,
    app::terminal::{bytes, compact},
};

use super::{
    model::{Health, Row, SortKey, TopModel},
    Screen,
};

pub const HEADERS: [&str; 7] = [
    "WORKLOAD",
    "KIND",
    "PROCS",
    "GPU PROCS",
    "EGRESS/s",
    "MODEL READS/1m",
    "ALERTS/1m",
];

/// The headers of the one-shot table, which counts since the agent started.
pub const TOTAL_HEADERS: [&str; 7] = [
    "WORKLOAD",
    "KIND",
    "PROCS",
    "GPU PROCS",
    "EGRESS/s",
    "MODEL READS",
    "ALERTS",
];

/// The header a sort key orders by.
fn sorted_header(key: SortKey) -> &'static str {
    match key {
        SortKey::Alerts => "ALERTS/1m",
        SortKey::Egress => "EGRESS/s",
        SortKey::ModelReads => "MODEL READS/1m",
        SortKey::Name => "WORKLOAD",
    }
}

pub fn cells(row: &Row) -> [String; 7] {
    [
        row.name.clone(),
        row.kind.clone(),
        row.processes
            .map(|n| n.to_string())
            .unwrap_or_else(|| "-".into()),
        row.gpu_processes.to_string(),
        format!("{}/s", bytes(row.egress_per_second as u64)),
        bytes(row.model_read_bytes as u64),
        row.alerts.to_string(),
    ]
}

/// `ready  events 120/s  lost 0 (0/s)  ring buffer 0.1%  rules 63  stream drops 0`.
pub fn health_line(health: &Health) -> String {
    let ring = health
        .ringbuf_fill
        .map(|fill| format!("{:.1}%", fill * 100.0))
        .unwrap_or_else(|| "?".into());
    format!(
        "{}  events {:.0}/s  lost {} ({:.0}/s)  ring buffer {ring}  rules {}  stream drops {}",
        if health.ready { "ready" } else { "NOT READY" },
        health.events_per_second,
        health.lost,
        health.lost_per_second,
        health.rules_loaded,
        health.stream_dropped,
    )
}

fn severity_color(severity: Severity) -> Color {
    match severity {
        Severity::Info => Color::DarkGray,
        Severity::Low => Color::Cyan,
        Severity::Medium => Color::Yellow,
        Severity::High | Severity::Critical => Color::Red,
    }
}

pub fn draw(frame: &mut Frame, model: &TopModel, screen: &Screen) {
    let [health_area, workloads_area, alerts_area, keys_area] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Min(4),
        Constraint::Percentage(40),
        Constraint::Length(1),
    ])
    .areas(frame.area());

    let bold = Style::new().add_modifier(Modifier::BOLD);
    let health = match (&screen.fetch_error, model.health()) {
        (Some(error), _) => Line::from(Span::styled(error.clone(), Style::new().fg(Color::Red))),
        (None, Some(health)) => Line::from(health_line(&health)),
        (None, None) => Line::from("waiting for the agent's first reading"),
    };
    let title = Line::from(vec![
        Span::styled("aiwatch top", bold),
        Span::raw(format!("  {}", screen.source)),
    ]);
    frame.render_widget(Paragraph::new(vec![title, health]), health_area);

    let rows = model.rows();
    let sorted = sorted_header(model.sort_key());
    let header = TableRow::new(HEADERS.map(|h| {
        if h == sorted {
            Span::styled(format!("{h}▼"), bold.add_modifier(Modifier::UNDERLINED))
        } else {
            Span::styled(h, bold)
        }
    }));
    let name_width = rows
        .iter()
        .map(|row| row.name.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(16, 48);
    let widths = [
        Constraint::Length(u16::try_from(name_width + 1).unwrap_or(u16::MAX)),
        Constraint::Length(11),
        Constraint::Length(6),
        Constraint::Length(10),
        Constraint::Length(12),
        Constraint::Length(15),
        Constraint::Length(10),
    ];
    let empty = rows.is_empty();
    let table = Table::new(rows.iter().map(|row| TableRow::new(cells(row))), widths)
        .flex(Flex::Start)
        .header(header)
        .block(Block::bordered().title(if empty {
            " workloads: none match ".to_string()
        } else {
            format!(" workloads ({}) ", rows.len())
        }));
    frame.render_widget(table, workloads_area);

    let mut items: Vec<ListItem> = model
        .alerts()
        .map(|alert| {
            ListItem::new(compact::alert_line(alert, false))
                .style(Style::new().fg(severity_color(alert.severity)))
        })
        .collect();
    if let Some(closed) = &screen.alerts_closed {
        items.insert(
            0,
            ListItem::new(format!("alert stream: {closed}")).style(Style::new().fg(Color::Red)),
        );
    }
    let mut alerts_title = " latest alerts ".to_string();
    if screen.alerts_dropped > 0 {
        alerts_title = format!(" latest alerts ({} dropped) ", screen.alerts_dropped);
    }
    frame.render_widget(
        List::new(items).block(Block::bordered().title(alerts_title)),
        alerts_area,
    );

    let filter = &model.filter;
    let keys = match &screen.editing {
        Some(text) => format!("workload filter: {text}_   (Enter keeps it, Esc clears it)"),
        None => format!(
            "q quit  / workload: {}  k kind: {}  s sort: {}",
            if filter.workload.is_empty() {
                "all"
            } else {
                &filter.workload
            },
            filter.kind.unwrap_or("all"),
            model.sort_key().as_str(),
        ),
    };
    frame.render_widget(
        Paragraph::new(keys).style(Style::new().add_modifier(Modifier::REVERSED)),
        keys_area,
    );
}
