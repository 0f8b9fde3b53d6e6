//! `aiwatch alerts --follow` and `aiwatch events --follow`: read the running
//! agent's stream socket (`sink::stream`), or with `--remote` its listener's
//! stream (`observe::http::remote_stream`), filter, and print one line per
//! alert or event: readable text on a terminal, the JSON lines of the
//! schema in a pipe.

use std::{
    io::{BufRead, BufReader, IsTerminal, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::ExitCode,
};

use crate::{
    alert::{Alert, Severity},
    app::{
        cli::{FollowArgs, LineFormat},
        terminal::compact,
    },
    event::{Event, Kind},
    sink::stream::{recent_notice, Request, Topic},
};

#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("--follow is the only mode: past alerts and events are in the agent's files")]
    NotFollowing,
    #[error(
        "cannot open the agent's stream {path}: {source} (is the agent running, and are you root?)"
    )]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the stream ended: {0}")]
    Read(#[source] std::io::Error),
    #[error("{0}")]
    BadFilter(String),
    #[error(
        "--last is for alerts: the agent keeps no past events (they are in its --events file)"
    )]
    NoPastEvents,
    #[error("the agent did not send its latest alerts: is it older than this aiwatch? (--last 0 follows without them)")]
    NoRecent,
    #[error("--remote needs --token-file: the agent's remote stream asks every reader for its bearer token")]
    NoToken,
    #[error("cannot read the token file {path}: {source}")]
    Token {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot reach the agent's stream at {url}: {reason}")]
    Remote { url: String, reason: String },
    #[error("the agent at {url} refused the stream (HTTP {status}): {reason}")]
    Refused {
        url: String,
        status: u16,
        reason: String,
    },
}

/// The filters of the command line, checked once.
struct Filter {
    workload: Option<String>,
    kind: Option<Kind>,
    severity: Option<Severity>,
    rule: Option<String>,
    pid: Option<u32>,
}

impl Filter {
    fn new(args: &FollowArgs) -> Result<Filter, FollowError> {
        let kind = match &args.kind {
            Some(name) => Some(Kind::parse(name).ok_or_else(|| {
                FollowError::BadFilter(format!("{name:?} is not an event kind (docs/events.md)"))
            })?),
            None => None,
        };
        Ok(Filter {
            workload: args.workload.clone(),
            kind,
            severity: args.severity,
            rule: args.rule.clone(),
            pid: args.pid,
        })
    }

    fn event(&self, event: &Event) -> bool {
        self.kind.is_none_or(|k| event.kind == k)
            && self.pid.is_none_or(|p| event.process.pid == p)
            && self.workload.as_ref().is_none_or(|w| {
                event
                    .workload
                    .as_ref()
                    .is_some_and(|ours| &ours.name == w || &ours.id == w)
            })
    }

    fn alert(&self, alert: &Alert) -> bool {
        self.event(&alert.event)
            && self.severity.is_none_or(|s| alert.severity >= s)
            && self.rule.as_ref().is_none_or(|r| &alert.rule == r)
    }
}

pub fn run(topic: Topic, args: &FollowArgs) -> ExitCode {
    match follow(topic, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("aiwatch: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Latest alerts printed first by default on a terminal, as `tail -f`
/// prints the last lines; in a pipe the default is none, so that a
/// consumer that restarts does not read alerts twice.
const LAST_ON_A_TERMINAL: usize = 10;

fn follow(topic: Topic, args: &FollowArgs) -> Result<(), FollowError> {
    if !args.follow {
        return Err(FollowError::NotFollowing);
    }
    let filter = Filter::new(args)?;
    let terminal = std::io::stdout().is_terminal();
    let text = match args.format {
        Some(format) => format == LineFormat::Text,
        None => terminal,
    };
    let last = match (topic, args.last) {
        (Topic::Events, Some(n)) if n > 0 => return Err(FollowError::NoPastEvents),
        (Topic::Events, _) => 0,
        (Topic::Alerts, Some(n)) => n,
        (Topic::Alerts, None) if terminal => LAST_ON_A_TERMINAL,
        (Topic::Alerts, None) => 0,
    };
    let request = Request {
        topic,
        recent: last > 0,
    };
    let stream: Box<dyn BufRead> = match &args.remote {
        Some(url) => {
            let token_file = args.token_file.as_deref().ok_or(FollowError::NoToken)?;
            Box::new(open_remote(url, token_file, request)?)
        }
        None => Box::new(open(&args.socket, request)?),
    };
    // What to print for a line of the stream, if anything.
    let show = |line: String| -> Option<String> {
        if let Some(dropped) = dropped_notice(&line) {
            eprintln!("aiwatch: {dropped} lines were dropped: this reader fell behind the agent");
            return None;
        }
        match topic {
            Topic::Alerts => to_show(
                line,
                text,
                |alert| filter.alert(alert),
                |alert| compact::alert_line(alert, terminal),
            ),
            Topic::Events => to_show(line, text, |event| filter.event(event), compact::event_line),
        }
    };
    let mut lines = stream.lines();
    let mut shown: Vec<String> = Vec::new();
    if request.recent {
        // The agent sends all it kept; the filters choose, then `last`.
        let announced = lines
            .next()
            .transpose()
            .map_err(FollowError::Read)?
            .and_then(|line| recent_notice(&line))
            .ok_or(FollowError::NoRecent)?;
        let mut read = 0;
        while read < announced {
            let Some(line) = lines.next().transpose().map_err(FollowError::Read)? else {
                break;
            };
            if dropped_notice(&line).is_none() {
                read += 1;
            }
            shown.extend(show(line));
        }
        shown.drain(..shown.len().saturating_sub(last));
    }
    let mut stdout = std::io::stdout().lock();
    let live = lines.map(|line| line.map(&show));
    for line in shown.into_iter().map(|line| Ok(Some(line))).chain(live) {
        let Some(line) = line.map_err(FollowError::Read)? else {
            continue;
        };
        if writeln!(stdout, "{line}").is_err() {
            // The reader of our output went away (`| head`).
            return Ok(());
        }
        let _ = stdout.flush();
    }
    Ok(())
}

/// What to print for one line of the stream: the line itself, or its
/// compact form when `text`; nothing when `keep` leaves it out or it does
/// not parse (said on stderr).
fn to_show<T: serde::de::DeserializeOwned>(
    line: String,
    text: bool,
    keep: impl Fn(&T) -> bool,
    compact: impl Fn(&T) -> String,
) -> Option<String> {
    match serde_json::from_str::<T>(&line) {
        Ok(item) if keep(&item) => Some(if text { compact(&item) } else { line }),
        Ok(_) => None,
        Err(err) => {
            eprintln!("aiwatch: skipping a line the stream garbled: {err}");
            None
        }
    }
}

/// Connects to the stream socket at `socket` and sends `request`.
pub fn open(socket: &Path, request: Request) -> Result<BufReader<UnixStream>, FollowError> {
    let mut stream = UnixStream::connect(socket).map_err(|source| FollowError::Connect {
        path: socket.to_path_buf(),
        source,
    })?;
    stream
        .write_all(request.line())
        .map_err(FollowError::Read)?;
    Ok(BufReader::new(stream))
}

/// Asks the listener at `url` (`http://host:port`) for the stream of
/// `request`, with the bearer token of `token_file`.
pub fn open_remote(
    url: &str,
    token_file: &Path,
    request: Request,
) -> Result<impl BufRead, FollowError> {
    let token = std::fs::read_to_string(token_file).map_err(|source| FollowError::Token {
        path: token_file.to_path_buf(),
        source,
    })?;
    let url = format!(
        "{}/stream/{}{}",
        url.trim_end_matches('/'),
        match request.topic {
            Topic::Alerts => "alerts",
            Topic::Events => "events",
        },
        if request.recent { "?recent" } else { "" }
    );
    // No overall timeout: the stream lasts as long as the reader wants it.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(std::time::Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .get(&url)
        .header("Authorization", &format!("Bearer {}", token.trim()))
        .call()
        .map_err(|err| FollowError::Remote {
            url: url.clone(),
            reason: err.to_string(),
        })?;
    let status = response.status().as_u16();
    if status != 200 {
        let reason = response
            .body_mut()
            .with_config()
            .limit(4096)
            .read_to_string()
            .unwrap_or_default();
        return Err(FollowError::Refused {
            url,
            status,
            reason: reason.trim().to_owned(),
        });
    }
    Ok(BufReader::new(
        response.into_body().into_with_config().reader(),
    ))
}

/// The count of a `{"dropped": N}` notice, which the stream sends between
/// its JSON lines.
pub fn dropped_notice(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("{\"dropped\":")?;
    rest.strip_suffix('}')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_notices_are_recognised() {
        assert_eq!(dropped_notice("{\"dropped\":12}"), Some(12));
        assert_eq!(dropped_notice("{\"kind\":\"exec\"}"), None);
    }
}
