//! The container identity hold: a new container's events wait in the
//! pipeline until a runtime says who the container is (`analyze::runtime`),
//! so that rules on `k8s.*` see its first exec; they go on when the answer
//! comes, when their hold time is up, or when the hold is full, and every
//! release is counted by outcome.

use std::time::Duration;

use super::{
    hold::{HeldEvents, Release},
    Pipeline,
};
use crate::{analyze::runtime::Resolved, event::Event, metrics::HeldOutcome};

/// The runtime resolver's answers (`analyze::runtime`) and the hold of the
/// events that wait for them.
pub struct IdentityAnswers {
    /// Taken by [`Pipeline::run`], which waits on it.
    pub answers: Option<tokio::sync::mpsc::Receiver<Resolved>>,
    pub held: HeldEvents,
}

/// How often held events are checked for their hold time.
pub(super) const HOLD_CHECK: Duration = Duration::from_millis(100);

impl Pipeline {
    /// Holds a container's event while a runtime is asked who the container
    /// is; gives the event back when it need not wait.
    pub(super) fn hold_for_identity(&mut self, event: Event) -> Option<Event> {
        let Some(identities) = self.identities.as_mut() else {
            return Some(event);
        };
        // Only a container's events pay for the id's copy, and only
        // while they wait.
        let waits = event
            .container
            .as_ref()
            .and_then(|c| c.id.as_deref())
            .filter(|id| {
                identities.held.holds(*id) || self.analyzer.identity_pending(&event).is_some()
            })
            .map(str::to_string);
        let Some(id) = waits else {
            return Some(event);
        };
        let overflow = identities.held.hold(id, event);
        self.release(overflow, Release::Overflow);
        None
    }

    /// A runtime answered for a container: its declared workload (if its
    /// pod declares one) is joined, and its held events go on.
    pub(super) fn identity_resolved(&mut self, resolved: Resolved) {
        let id = resolved.id.clone();
        let changes = self.analyzer.identity_resolved(resolved);
        if !changes.is_empty() {
            (self.on_changes)(&changes);
        }
        let events = match self.identities.as_mut() {
            Some(identities) => identities.held.take(&id),
            None => Vec::new(),
        };
        self.release(events, Release::Resolved);
    }

    pub(super) fn holds_events(&self) -> bool {
        self.identities
            .as_ref()
            .is_some_and(|identities| !identities.held.is_empty())
    }

    /// Lets go the events that waited past the hold time.
    pub(super) fn release_expired(&mut self) {
        let Some(identities) = self.identities.as_mut() else {
            return;
        };
        for (_, events) in identities.held.expired(std::time::Instant::now()) {
            self.release(events, Release::Expired);
        }
    }

    /// Held events go on, with what became known while they waited.
    pub(super) fn release(&mut self, events: Vec<Event>, why: Release) {
        if events.is_empty() {
            return;
        }
        self.metrics
            .identity_held(HeldOutcome::from(why), events.len() as u64);
        for mut event in events {
            self.analyzer.refill(&mut event);
            self.finish(event);
        }
    }
}

/// The next answer of a resolver (the runtimes', the allowlist names');
/// never resolves without one.
pub(super) async fn next_answer<T>(
    answers: &mut Option<tokio::sync::mpsc::Receiver<T>>,
) -> Option<T> {
    match answers {
        Some(answers) => answers.recv().await,
        None => std::future::pending().await,
    }
}
