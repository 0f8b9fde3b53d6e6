//! The live stream behind `aiwatch alerts --follow` and `aiwatch events
//! --follow`: a unix socket that only root can open (its folder is 0700 and
//! the socket 0600), because the stream carries argv and paths, and any
//! local user can reach a loopback port.
//!
//! A reader sends one line naming what it wants (`alerts` or `events`) and
//! then receives JSON lines. `alerts recent` first sends the agent's latest
//! alerts (at most [`RECENT_ALERTS`]), announced by a `{"recent": N}` line,
//! so that a reader started just after an alert still sees it, as `tail
//! -f` shows the last lines. No past events are kept: at their rate a
//! backlog would cost every event a serialisation with nobody reading.
//! Each reader has a bounded queue: a reader that
//! stops reading loses lines, never slows the pipeline or the other sinks.
//! Its losses are counted and told to it in a `{"dropped": N}` line as soon
//! as it reads again.
//!
//! Publishing an event costs one atomic load while nobody listens; with
//! readers, one serialisation per event and a `try_send` per reader. An
//! alert is always serialised once, for the recent alerts.

use std::{
    collections::VecDeque,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
        Arc, Mutex,
    },
};

use serde::Serialize;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
    sync::{mpsc, watch},
};

use crate::{alert::Alert, event::Event, ingest::queue::ByteBudget};

/// Lines queued per reader before its new lines are dropped.
pub const READER_QUEUE: usize = 4096;
/// Bytes of lines queued per reader before its new lines are dropped: an
/// LLM event with its content is far longer than an exec.
pub const READER_QUEUE_BYTES: usize = 8 << 20;

/// Default socket path.
pub const DEFAULT_SOCKET: &str = "/run/aiwatch/stream.sock";

/// The latest alerts kept for readers that ask for them first.
pub const RECENT_ALERTS: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topic {
    Alerts,
    Events,
}

/// What a reader asks for: a topic, and for alerts whether the latest ones
/// come first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub topic: Topic,
    pub recent: bool,
}

impl Request {
    /// `alerts`, `alerts recent` or `events`: the line a reader sends.
    pub fn parse(line: &str) -> Option<Request> {
        let (topic, recent) = match line.trim() {
            "alerts" => (Topic::Alerts, false),
            "alerts recent" => (Topic::Alerts, true),
            "events" => (Topic::Events, false),
            _ => return None,
        };
        Some(Request { topic, recent })
    }

    /// The line that asks for this, newline included.
    pub fn line(self) -> &'static [u8] {
        match (self.topic, self.recent) {
            (Topic::Alerts, false) => b"alerts\n",
            (Topic::Alerts, true) => b"alerts recent\n",
            // Past events are not kept: `recent` asks for nothing more.
            (Topic::Events, _) => b"events\n",
        }
    }
}

/// The count of a `{"recent": N}` line: the N lines after it are alerts
/// raised before the reader connected.
pub fn recent_notice(line: &str) -> Option<usize> {
    let rest = line.strip_prefix("{\"recent\":")?;
    rest.strip_suffix('}')?.parse().ok()
}

struct Reader {
    topic: Topic,
    lines: mpsc::Sender<Arc<str>>,
    budget: Arc<ByteBudget>,
    dropped: Arc<AtomicU64>,
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("cannot create the stream socket's folder {path}: {source}")]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("another agent serves the stream at {0}")]
    InUse(PathBuf),
    #[error("cannot listen on the stream socket {path}: {source}")]
    Bind {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The readers, and the latest alerts: one lock, so that a reader asking
/// for recent alerts gets each alert either in its backlog or live, never
/// both and never neither.
#[derive(Default)]
struct Readers {
    list: Vec<Reader>,
    recent_alerts: VecDeque<Arc<str>>,
}

/// Where the pipeline publishes; shared with the socket's accept task.
#[derive(Default)]
pub struct StreamHub {
    readers: Mutex<Readers>,
    alert_readers: AtomicUsize,
    event_readers: AtomicUsize,
    /// Lines dropped across all readers, for `aiwatch_stream_dropped_total`.
    pub dropped: AtomicU64,
}

impl StreamHub {
    pub fn publish_alert(&self, alert: &Alert) {
        let Some(line) = to_line(alert) else {
            return;
        };
        let mut readers = self.lock();
        if readers.recent_alerts.len() == RECENT_ALERTS {
            readers.recent_alerts.pop_front();
        }
        readers.recent_alerts.push_back(line.clone());
        if self.alert_readers.load(Relaxed) > 0 {
            self.send(&mut readers.list, Topic::Alerts, &line);
        }
    }

    pub fn publish_event(&self, event: &Event) {
        if self.event_readers.load(Relaxed) > 0 {
            if let Some(line) = to_line(event) {
                self.send(&mut self.lock().list, Topic::Events, &line);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Readers> {
        self.readers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn send(&self, readers: &mut Vec<Reader>, topic: Topic, line: &Arc<str>) {
        readers.retain(|reader| {
            if reader.topic != topic {
                return true;
            }
            let lost = || {
                reader.dropped.fetch_add(1, Relaxed);
                self.dropped.fetch_add(1, Relaxed);
                true
            };
            if !reader.budget.try_take(line.len()) {
                return lost();
            }
            match reader.lines.try_send(line.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    reader.budget.give_back(line.len());
                    lost()
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.counter(topic).fetch_sub(1, Relaxed);
                    false
                }
            }
        });
    }

    fn counter(&self, topic: Topic) -> &AtomicUsize {
        match topic {
            Topic::Alerts => &self.alert_readers,
            Topic::Events => &self.event_readers,
        }
    }

    fn register(&self, request: Request) -> Subscription {
        let topic = request.topic;
        let (lines, receiver) = mpsc::channel(READER_QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let budget = Arc::new(ByteBudget::new(READER_QUEUE_BYTES));
        let mut readers = self.lock();
        if request.recent && topic == Topic::Alerts {
            queue_recent(&readers.recent_alerts, &lines, &budget);
        }
        readers.list.push(Reader {
            topic,
            lines,
            budget: budget.clone(),
            dropped: dropped.clone(),
        });
        // Counted under the lock: an alert published next, which reads the
        // count under it too, is sent to this reader, not only kept.
        self.counter(topic).fetch_add(1, Relaxed);
        drop(readers);
        Subscription {
            lines: receiver,
            budget,
            dropped,
            told: 0,
            held: None,
            tick: tokio::time::interval(std::time::Duration::from_millis(200)),
        }
    }
}

/// Binds the socket (0600, in a 0700 folder), replacing a stale one.
pub fn bind(path: &Path) -> Result<UnixListener, StreamError> {
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder).map_err(|source| StreamError::Folder {
            path: folder.to_path_buf(),
            source,
        })?;
        std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o700)).map_err(
            |source| StreamError::Folder {
                path: folder.to_path_buf(),
                source,
            },
        )?;
    }
    // A socket left by an agent that died is replaced; one that answers
    // belongs to a live agent and is left alone.
    if std::fs::symlink_metadata(path).is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_socket()
    }) {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(StreamError::InUse(path.to_path_buf()));
        }
        let _ = std::fs::remove_file(path);
    }
    let bind_error = |source| StreamError::Bind {
        path: path.to_path_buf(),
        source,
    };
    let listener = match UnixListener::bind(path) {
        Ok(listener) => listener,
        // Another agent bound it between the check above and here.
        Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => {
            return Err(StreamError::InUse(path.to_path_buf()))
        }
        Err(err) => return Err(bind_error(err)),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_error)?;
    Ok(listener)
}

/// Accepts readers until `shutdown`, then removes the socket.
pub async fn serve(
    hub: Arc<StreamHub>,
    listener: UnixListener,
    path: PathBuf,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(serve_reader(hub.clone(), stream));
                }
                Err(err) => log::warn!("stream socket: cannot accept a reader: {err}"),
            },
            _ = shutdown.changed() => break,
        }
    }
    let _ = std::fs::remove_file(&path);
}

async fn serve_reader(hub: Arc<StreamHub>, stream: UnixStream) {
    let (read_half, mut write_half) = stream.into_split();
    let mut request = String::new();
    let mut read_half = BufReader::new(read_half);
    if read_half.read_line(&mut request).await.is_err() {
        return;
    }
    let Some(request) = Request::parse(&request) else {
        let _ = write_half
            .write_all(b"{\"error\":\"send one line: alerts, alerts recent or events\"}\n")
            .await;
        return;
    };
    let mut subscription = hub.subscribe(request);
    while let Some(chunk) = subscription.next().await {
        if write_half.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    // Dropping the subscription makes the next publish forget this reader.
}

/// One reader's lines: its bounded queue, and the notices of what it lost.
/// The socket and the listener's remote stream both read through it.
pub struct Subscription {
    lines: mpsc::Receiver<Arc<str>>,
    /// The bytes of `lines`, handed back as each is taken.
    budget: Arc<ByteBudget>,
    dropped: Arc<AtomicU64>,
    told: u64,
    /// A line that came with a loss notice, sent after it.
    held: Option<Arc<str>>,
    tick: tokio::time::Interval,
}

impl Subscription {
    /// The next piece to send, newline included: a JSON line, or a
    /// `{"dropped":N}` notice before the first line after a loss (or within
    /// a tick when no line follows it). `None` once the hub is gone.
    pub async fn next(&mut self) -> Option<String> {
        if let Some(line) = self.held.take() {
            return Some(format!("{line}\n"));
        }
        loop {
            let line = tokio::select! {
                line = self.lines.recv() => Some(line?),
                _ = self.tick.tick() => None,
            };
            if let Some(line) = &line {
                self.budget.give_back(line.len());
            }
            let now = self.dropped.load(Relaxed);
            if now > self.told {
                let notice = format!("{{\"dropped\":{}}}\n", now - self.told);
                self.told = now;
                self.held = line;
                return Some(notice);
            }
            if let Some(line) = line {
                return Some(format!("{line}\n"));
            }
        }
    }
}

impl StreamHub {
    /// A new reader of what `request` asks for.
    pub fn subscribe(&self, request: Request) -> Subscription {
        self.register(request)
    }
}

fn to_line<T: Serialize>(value: &T) -> Option<Arc<str>> {
    serde_json::to_string(value).ok().map(Arc::from)
}

/// Queues a new reader's backlog: the `{"recent": N}` notice, then the
/// newest `N` of `recent` that fit in its byte budget, oldest first. The
/// queue is new and longer than `RECENT_ALERTS`, so every send succeeds.
fn queue_recent(recent: &VecDeque<Arc<str>>, lines: &mpsc::Sender<Arc<str>>, budget: &ByteBudget) {
    // Room for the notice is kept back while the lines are chosen.
    const NOTICE_ROOM: usize = 32;
    let mut room = READER_QUEUE_BYTES - NOTICE_ROOM;
    let kept = recent
        .iter()
        .rev()
        .take_while(|line| match room.checked_sub(line.len()) {
            Some(left) => {
                room = left;
                true
            }
            None => false,
        })
        .count();
    let notice: Arc<str> = format!("{{\"recent\":{kept}}}").into();
    for line in std::iter::once(&notice).chain(recent.iter().skip(recent.len() - kept)) {
        let queued = budget.try_take(line.len()) && lines.try_send(line.clone()).is_ok();
        debug_assert!(queued, "a new reader's queue holds the whole backlog");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Long lines fill a reader's byte bound long before its line bound:
    /// it never holds more, the rest is counted, and reading gives the
    /// bytes back.
    #[tokio::test]
    async fn a_reader_is_bounded_in_bytes() {
        let hub = StreamHub::default();
        let mut reader = hub.subscribe(Request {
            topic: Topic::Events,
            recent: false,
        });
        let long = Event {
            process: crate::event::Process {
                argv: vec!["a".repeat(1024); 64].into(),
                ..crate::event::Process::default()
            },
            ..Event::default()
        };
        let line_len = serde_json::to_string(&long).unwrap().len();
        for _ in 0..1000 {
            hub.publish_event(&long);
        }
        let fits = READER_QUEUE_BYTES / line_len;
        assert!(fits < 1000, "the byte bound is the one reached");
        assert!(reader.budget.used() <= READER_QUEUE_BYTES);
        assert_eq!(hub.dropped.load(Relaxed), (1000 - fits) as u64);
        // The notice of the loss, then the lines that were kept.
        assert!(reader.next().await.unwrap().starts_with("{\"dropped\":"));
        for _ in 0..fits {
            reader.next().await.expect("a kept line");
        }
        assert_eq!(reader.budget.used(), 0, "every byte came back");
    }

    /// The rule of each alert line a reader gets, and the count of the
    /// `{"recent": N}` notice if one came first.
    async fn rules_read(reader: &mut Subscription, lines: usize) -> (Option<usize>, Vec<String>) {
        let mut notice = None;
        let mut rules = Vec::new();
        for at in 0..lines {
            let line = reader.next().await.expect("a line");
            if let Some(n) = recent_notice(line.trim_end()) {
                assert_eq!(at, 0, "the notice comes first");
                notice = Some(n);
                continue;
            }
            let alert: Alert = serde_json::from_str(&line).expect("an alert");
            rules.push(alert.rule);
        }
        (notice, rules)
    }

    /// A reader that asks for recent alerts gets the newest ones kept,
    /// announced, and then the live ones; one that does not gets only
    /// what follows. Each alert reaches a reader once.
    #[tokio::test]
    async fn recent_alerts_come_first_to_a_reader_that_asks_for_them() {
        let hub = StreamHub::default();
        let alert = |n: usize| Alert::sample(&format!("rule.{n}"), crate::alert::Severity::High);
        let published = RECENT_ALERTS + 6;
        for n in 0..published {
            hub.publish_alert(&alert(n));
        }
        let mut recent = hub.subscribe(Request::parse("alerts recent").unwrap());
        let mut live = hub.subscribe(Request::parse("alerts").unwrap());
        hub.publish_alert(&alert(published));

        let (notice, rules) = rules_read(&mut recent, RECENT_ALERTS + 2).await;
        assert_eq!(notice, Some(RECENT_ALERTS));
        let expected: Vec<String> = (published - RECENT_ALERTS..=published)
            .map(|n| format!("rule.{n}"))
            .collect();
        assert_eq!(rules, expected, "the newest kept, oldest first, then live");
        let (notice, rules) = rules_read(&mut live, 1).await;
        assert_eq!(notice, None);
        assert_eq!(rules, [format!("rule.{published}")]);
        assert_eq!(recent.budget.used(), 0, "every byte came back");
    }

    #[test]
    fn requests_are_one_line_each_way() {
        for line in ["alerts", "alerts recent", "events"] {
            let request = Request::parse(line).expect(line);
            assert_eq!(request.line(), format!("{line}\n").as_bytes());
        }
        assert_eq!(Request::parse("events recent"), None);
        assert_eq!(Request::parse("alerts please"), None);
        assert_eq!(recent_notice("{\"recent\":3}"), Some(3));
        assert_eq!(recent_notice("{\"dropped\":3}"), None);
    }

    #[tokio::test]
    async fn a_stopped_reader_loses_lines_that_are_counted_and_told() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/stream.sock");
        let hub = Arc::new(StreamHub::default());
        let listener = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (stop, shutdown) = watch::channel(false);
        let server = tokio::spawn(serve(hub.clone(), listener, path.clone(), shutdown));

        let mut client = UnixStream::connect(&path).await.unwrap();
        client.write_all(b"events\n").await.unwrap();
        while hub.event_readers.load(Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        // Nobody reads the client's socket while these are published.
        let event = Event::default();
        let total = READER_QUEUE as u64 * 8;
        for _ in 0..total {
            hub.publish_event(&event);
        }
        assert!(hub.dropped.load(Relaxed) > 0, "a full reader drops");
        let mut reader = BufReader::new(client);
        let mut received = 0u64;
        let mut told = 0u64;
        let mut line = String::new();
        while received + told < total {
            line.clear();
            reader.read_line(&mut line).await.unwrap();
            match serde_json::from_str::<serde_json::Value>(&line).unwrap() {
                serde_json::Value::Object(o) if o.contains_key("dropped") => {
                    told += o["dropped"].as_u64().unwrap()
                }
                _ => received += 1,
            }
        }
        assert!(told > 0);
        assert_eq!(
            received + told,
            total,
            "every line is delivered or told as dropped"
        );
        assert_eq!(told, hub.dropped.load(Relaxed));
        stop.send(true).unwrap();
        server.await.unwrap();
        assert!(!path.exists(), "the socket is removed at shutdown");
    }
}
