//! The library-maps hold: a model open or a listen asks for the process's
//! `/proc/<pid>/maps` (read off this thread, `analyze::maps_reader`), and
//! events wait until the answer has fed discovery, so that the rules see
//! the event attributed to the workload its libraries make it. Every event
//! waits, not only the process's: a sequence `by: tree` (a pickle opened,
//! then a child's exec) needs the parent's open before the child's exec,
//! as when the maps were read on this thread. A read takes well under a
//! millisecond, and model opens and listens are rare. The events go on
//! when every answer asked for has come, after [`MAPS_HOLD`], or when the
//! hold is full, in arrival order, and every release is counted by
//! outcome.

use std::time::Duration;

use super::{
    hold::{HeldEvents, Release},
    Pipeline,
};
use crate::{analyze::maps_reader::MapsRead, event::Event, metrics::HeldOutcome};

/// How long a process's events wait for its maps: a read takes well under
/// a millisecond unless the process's memory lock is held.
pub const MAPS_HOLD: Duration = Duration::from_millis(200);
/// Events held for maps at most, over all processes.
pub const MAPS_HOLD_EVENTS: usize = 4096;

/// The maps reader's answers and the events that wait for them.
pub struct MapsAnswers {
    /// Taken by [`Pipeline::run`], which waits on it.
    pub answers: Option<tokio::sync::mpsc::Receiver<MapsRead>>,
    /// One queue: the hold keeps the events' order across processes.
    pub held: HeldEvents<()>,
}

impl MapsAnswers {
    pub fn new(answers: tokio::sync::mpsc::Receiver<MapsRead>) -> MapsAnswers {
        MapsAnswers {
            answers: Some(answers),
            held: HeldEvents::new(MAPS_HOLD_EVENTS, MAPS_HOLD),
        }
    }
}

impl Pipeline {
    /// Holds an attributed event while maps asked for urgently are read;
    /// gives it back when nothing is awaited.
    pub(super) fn hold_for_maps(&mut self, event: Event) -> Option<Event> {
        let Some(maps) = self.maps.as_mut() else {
            return Some(event);
        };
        if !maps.held.holds(&()) && !self.analyzer.awaits_maps() {
            return Some(event);
        }
        let overflow = maps.held.hold((), event);
        if !overflow.is_empty() {
            self.analyzer.stop_awaiting_maps();
        }
        self.release_from_maps(overflow, Release::Overflow);
        None
    }

    /// The reader answered for a process: its libraries feed discovery,
    /// and once nothing more is awaited the held events go on.
    pub(super) fn maps_answered(&mut self, read: MapsRead) {
        self.metrics
            .maps_reads(if read.maps.is_some() { "read" } else { "gone" }, 1);
        let changes = self.analyzer.maps_read(read);
        if !changes.is_empty() {
            (self.on_changes)(&changes);
        }
        if self.analyzer.awaits_maps() {
            return;
        }
        let events = match self.maps.as_mut() {
            Some(maps) => maps.held.take(&()),
            None => Vec::new(),
        };
        self.release_from_maps(events, Release::Resolved);
    }

    /// Lets go the events that waited for maps past the hold time.
    pub(super) fn release_expired_maps(&mut self) {
        let Some(maps) = self.maps.as_mut() else {
            return;
        };
        for (_, events) in maps.held.expired(std::time::Instant::now()) {
            self.analyzer.stop_awaiting_maps();
            self.release_from_maps(events, Release::Expired);
        }
    }

    pub(super) fn holds_for_maps(&self) -> bool {
        self.maps.as_ref().is_some_and(|maps| !maps.held.is_empty())
    }

    /// Events held for maps go on, with what became known meanwhile, to
    /// the container identity hold and the rules.
    pub(super) fn release_from_maps(&mut self, events: Vec<Event>, why: Release) {
        if events.is_empty() {
            return;
        }
        self.metrics
            .maps_held(HeldOutcome::from(why), events.len() as u64);
        for mut event in events {
            self.analyzer.refill(&mut event);
            if let Some(event) = self.hold_for_identity(event) {
                self.finish(event);
            }
        }
    }
}
