//! The latest alerts for `aiwatch top`, read from the agent's live stream
//! (`sink::stream`: the socket, or the listener's remote stream) on a
//! thread of their own, so that a quiet stream never holds up the screen.

use std::{
    io::BufRead,
    path::PathBuf,
    sync::mpsc::{self, Receiver, SyncSender, TrySendError},
};

use crate::{
    alert::Alert,
    app::follow,
    sink::stream::{recent_notice, Request, Topic},
};

/// Alerts waiting for the screen; past this the thread drops and counts.
const PENDING: usize = 1024;

/// What the stream thread hands the screen.
pub enum Feed {
    Alert(Box<Alert>),
    /// Alerts lost: the agent dropped them for this reader, or the screen
    /// fell behind.
    Dropped(u64),
    /// A line that is not an alert; the sentence says why.
    Garbled(String),
    /// The stream is not (or no longer) readable, and why.
    Closed(String),
}

/// Where the alerts come from.
pub enum AlertSource {
    /// The stream socket (root only).
    Socket(PathBuf),
    /// The listener's remote stream at this URL, with this token file.
    Remote { url: String, token_file: PathBuf },
}

/// Starts reading the alert stream.
pub fn start(source: AlertSource) -> Receiver<Feed> {
    let (sender, receiver) = mpsc::sync_channel(PENDING);
    let spawned = std::thread::Builder::new()
        .name("top-alerts".into())
        .spawn({
            let sender = sender.clone();
            move || read(&source, &sender)
        });
    if let Err(err) = spawned {
        let _ = sender.try_send(Feed::Closed(format!("cannot start a thread: {err}")));
    }
    receiver
}

fn read(source: &AlertSource, sender: &SyncSender<Feed>) {
    // The pane starts with the agent's latest alerts, not empty.
    let request = Request {
        topic: Topic::Alerts,
        recent: true,
    };
    let stream: Result<Box<dyn BufRead>, _> = match source {
        AlertSource::Socket(socket) => {
            follow::open(socket, request).map(|stream| Box::new(stream) as Box<dyn BufRead>)
        }
        AlertSource::Remote { url, token_file } => follow::open_remote(url, token_file, request)
            .map(|stream| Box::new(stream) as Box<dyn BufRead>),
    };
    let stream = match stream {
        Ok(stream) => stream,
        Err(err) => {
            let _ = sender.send(Feed::Closed(err.to_string()));
            return;
        }
    };
    let mut lost_here = 0u64;
    for line in stream.lines() {
        let line = match line {
            Ok(line) => line,
            Err(err) => {
                let _ = sender.send(Feed::Closed(format!("the stream ended: {err}")));
                return;
            }
        };
        let feed = if let Some(dropped) = follow::dropped_notice(&line) {
            Feed::Dropped(dropped)
        } else if recent_notice(&line).is_some() {
            // The alerts it announces are read as any other.
            continue;
        } else {
            match serde_json::from_str::<Alert>(&line) {
                Ok(alert) => Feed::Alert(Box::new(alert)),
                Err(err) => Feed::Garbled(format!("a stream line is not an alert: {err}")),
            }
        };
        match sender.try_send(feed) {
            Ok(()) => {
                if lost_here > 0 && sender.try_send(Feed::Dropped(lost_here)).is_ok() {
                    lost_here = 0;
                }
            }
            Err(TrySendError::Full(_)) => lost_here += 1,
            Err(TrySendError::Disconnected(_)) => return,
        }
    }
    let _ = sender.send(Feed::Closed("the agent closed the stream".into()));
}
