//! `aiwatch top`: a live view of the running agent, refreshed every second.
//!
//! Everything comes through the agent's existing endpoints: `/metrics` for
//! its health and the per-workload counters (rates are differences between
//! readings), `/inventory` for the workloads and their processes, and the
//! live stream socket for the latest alerts. When stdout is not a terminal
//! (or with `--once`) it prints one table and exits.

mod alerts;
mod model;
mod reading;
mod view;

use std::{
    io::IsTerminal,
    net::SocketAddr,
    process::ExitCode,
    sync::mpsc::{Receiver, TryRecvError},
    time::{Duration, Instant},
};

use crossterm::event::{self, Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::{
    analyze::inventory::InventorySnapshot,
    app::{cli::TopArgs, terminal::table},
    observe::http::client::{self, ClientError},
};

use alerts::Feed;
use model::TopModel;
use reading::{BadMetrics, Reading};

/// How often the screen reads the agent.
const REFRESH: Duration = Duration::from_secs(1);
/// How long one request to the listener may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum TopError {
    #[error(transparent)]
    Agent(#[from] ClientError),
    #[error(transparent)]
    Metrics(#[from] BadMetrics),
    #[error("the agent's /inventory is not an inventory: {0}")]
    Inventory(#[source] serde_json::Error),
    #[error("cannot drive the terminal: {0}")]
    Terminal(#[source] std::io::Error),
}

/// What the screen shows besides the model: where the data comes from and
/// what went wrong getting it.
pub struct Screen {
    pub source: String,
    /// The last reading failed, and why.
    pub fetch_error: Option<String>,
    /// The workload filter being typed.
    pub editing: Option<String>,
    /// The alert stream is not readable, and why.
    pub alerts_closed: Option<String>,
    /// Alerts the stream dropped for this reader.
    pub alerts_dropped: u64,
}

pub fn run(args: &TopArgs) -> ExitCode {
    let result = if args.once || !std::io::stdout().is_terminal() {
        once(args.listen)
    } else {
        live(args)
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("aiwatch: {err}");
            ExitCode::FAILURE
        }
    }
}

/// One reading of the metrics and the inventory.
fn read_agent(listen: SocketAddr, model: &mut TopModel) -> Result<(), TopError> {
    let metrics = client::get_text(listen, "/metrics", REQUEST_TIMEOUT)?;
    model.push_reading(Reading::from_metrics(&metrics, Instant::now())?);
    let inventory = client::get_text(listen, "/inventory", REQUEST_TIMEOUT)?;
    let inventory: InventorySnapshot =
        serde_json::from_str(&inventory).map_err(TopError::Inventory)?;
    model.set_inventory(inventory);
    Ok(())
}

/// Two readings a second apart (so that rates are real), as a table whose
/// model reads and alerts count since the agent started.
fn once(listen: SocketAddr) -> Result<(), TopError> {
    let mut model = TopModel::counting_since_start();
    read_agent(listen, &mut model)?;
    std::thread::sleep(REFRESH);
    read_agent(listen, &mut model)?;
    if let Some(health) = model.health() {
        println!("{}", view::health_line(&health));
    }
    let rows = model.rows();
    if rows.is_empty() {
        println!("no AI workloads seen yet");
        return Ok(());
    }
    let mut workloads = table(&view::TOTAL_HEADERS);
    for row in &rows {
        workloads.add_row(view::cells(row).to_vec());
    }
    println!("{workloads}");
    Ok(())
}

fn live(args: &TopArgs) -> Result<(), TopError> {
    let source = match &args.token_file {
        Some(token_file) => alerts::AlertSource::Remote {
            url: format!("http://{}", args.listen),
            token_file: token_file.clone(),
        },
        None => alerts::AlertSource::Socket(args.socket.clone()),
    };
    let feed = alerts::start(source);
    let mut terminal = ratatui::try_init().map_err(TopError::Terminal)?;
    let result = live_loop(&mut terminal, args.listen, &feed);
    ratatui::restore();
    result
}

fn live_loop(
    terminal: &mut ratatui::DefaultTerminal,
    listen: SocketAddr,
    feed: &Receiver<Feed>,
) -> Result<(), TopError> {
    let mut model = TopModel::default();
    let mut screen = Screen {
        source: format!("agent at {listen}"),
        fetch_error: None,
        editing: None,
        alerts_closed: None,
        alerts_dropped: 0,
    };
    let mut next_reading = Instant::now();
    loop {
        if Instant::now() >= next_reading {
            screen.fetch_error = read_agent(listen, &mut model)
                .err()
                .map(|err| err.to_string());
            next_reading = Instant::now() + REFRESH;
        }
        take_alerts(feed, &mut model, &mut screen);
        terminal
            .draw(|frame| view::draw(frame, &model, &screen))
            .map_err(TopError::Terminal)?;
        let wait = next_reading.saturating_duration_since(Instant::now());
        if event::poll(wait).map_err(TopError::Terminal)? {
            if let TermEvent::Key(key) = event::read().map_err(TopError::Terminal)? {
                if on_key(key, &mut model, &mut screen) == Step::Quit {
                    return Ok(());
                }
            }
        }
    }
}

fn take_alerts(feed: &Receiver<Feed>, model: &mut TopModel, screen: &mut Screen) {
    loop {
        match feed.try_recv() {
            Ok(Feed::Alert(alert)) => model.push_alert(*alert),
            Ok(Feed::Dropped(count)) => screen.alerts_dropped += count,
            Ok(Feed::Garbled(why)) => screen.alerts_closed = Some(why),
            Ok(Feed::Closed(why)) => screen.alerts_closed = Some(why),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Step {
    Continue,
    Quit,
}

/// `q` (or Ctrl-C) quits; `/` types a workload filter (Enter keeps it, Esc
/// clears it); `k` steps through the workload kinds; `s` through the sort
/// orders.
fn on_key(key: KeyEvent, model: &mut TopModel, screen: &mut Screen) -> Step {
    if key.kind != KeyEventKind::Press {
        return Step::Continue;
    }
    if key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL) {
        return Step::Quit;
    }
    if let Some(text) = &mut screen.editing {
        match key.code {
            KeyCode::Enter => {
                model.filter.workload = std::mem::take(text);
                screen.editing = None;
            }
            KeyCode::Esc => {
                model.filter.workload.clear();
                screen.editing = None;
            }
            KeyCode::Backspace => {
                text.pop();
            }
            // A terminal reads an Escape and the key typed right after it
            // as one Alt-key: the Escape clears, the key is a key.
            KeyCode::Char(c) if key.modifiers.contains(KeyModifiers::ALT) => {
                model.filter.workload.clear();
                screen.editing = None;
                let plain = KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
                return on_key(plain, model, screen);
            }
            KeyCode::Char(c) => text.push(c),
            _ => {}
        }
        return Step::Continue;
    }
    match key.code {
        KeyCode::Char('q') | KeyCode::Esc => return Step::Quit,
        KeyCode::Char('/') | KeyCode::Char('w') => {
            screen.editing = Some(model.filter.workload.clone())
        }
        KeyCode::Char('k') => model.filter.next_kind(),
        KeyCode::Char('s') => model.sort = Some(model.sort_key().next()),
        _ => {}
    }
    Step::Continue
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn screen() -> Screen {
        Screen {
            source: String::new(),
            fetch_error: None,
            editing: None,
            alerts_closed: None,
            alerts_dropped: 0,
        }
    }

    #[test]
    fn keys_filter_sort_and_quit() {
        let mut model = TopModel::default();
        let mut screen = screen();
        for key in ['/', 'o', 'n', 'x'].map(KeyCode::Char) {
            assert_eq!(on_key(press(key), &mut model, &mut screen), Step::Continue);
        }
        assert_eq!(screen.editing.as_deref(), Some("onx"));
        on_key(press(KeyCode::Backspace), &mut model, &mut screen);
        on_key(press(KeyCode::Char('n')), &mut model, &mut screen);
        // `q` while typing is part of the filter, not a quit.
        assert_eq!(
            on_key(press(KeyCode::Char('q')), &mut model, &mut screen),
            Step::Continue
        );
        on_key(press(KeyCode::Backspace), &mut model, &mut screen);
        on_key(press(KeyCode::Enter), &mut model, &mut screen);
        assert_eq!(model.filter.workload, "onn");
        assert!(screen.editing.is_none());

        on_key(press(KeyCode::Char('k')), &mut model, &mut screen);
        assert_eq!(model.filter.kind, Some("inference"));
        on_key(press(KeyCode::Char('s')), &mut model, &mut screen);
        assert_eq!(model.sort_key(), model::SortKey::Egress);

        on_key(press(KeyCode::Char('/')), &mut model, &mut screen);
        on_key(press(KeyCode::Esc), &mut model, &mut screen);
        assert_eq!(model.filter.workload, "", "Esc clears the filter");

        // Esc then `/` typed fast arrive as Alt-/: the filter is cleared
        // and a new one begins, empty.
        model.filter.workload = "old".into();
        on_key(press(KeyCode::Char('/')), &mut model, &mut screen);
        let alt_slash = KeyEvent::new(KeyCode::Char('/'), KeyModifiers::ALT);
        on_key(alt_slash, &mut model, &mut screen);
        assert_eq!(model.filter.workload, "");
        assert_eq!(screen.editing.as_deref(), Some(""));
        on_key(press(KeyCode::Esc), &mut model, &mut screen);

        assert_eq!(
            on_key(press(KeyCode::Char('q')), &mut model, &mut screen),
            Step::Quit
        );
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(on_key(ctrl_c, &mut model, &mut screen), Step::Quit);
    }
}
