//! Events that wait for an answer the pipeline asked another thread for.
//!
//! The first exec in a new container reaches the pipeline before the
//! runtime has answered for it (`identity.rs`, held by container id), and
//! a model open or a listen before the process's libraries were read
//! (`maps.rs`, held by pid). Rather than let rules miss what the answer
//! brings, the pipeline holds the events (attributed, not yet written or
//! checked) until the answer arrives, for at most the hold time and up to a
//! bounded count over all keys. Holding beats re-evaluating: rules,
//! sequences and throttles see each event once, in order within its key.
//! What a hold costs is latency, for the held events only, and it is
//! counted by outcome.

use std::{
    borrow::Borrow,
    collections::{HashMap, VecDeque},
    hash::Hash,
    time::{Duration, Instant},
};

use crate::event::Event;

/// Why held events went on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// The identity arrived (or the runtimes said they did not know it).
    Resolved,
    /// The hold time passed first.
    Expired,
    /// The bound on held events was reached: the container holding the
    /// oldest event went on without its identity.
    Overflow,
}

impl From<Release> for crate::metrics::HeldOutcome {
    fn from(why: Release) -> Self {
        match why {
            Release::Resolved => Self::Resolved,
            Release::Expired => Self::Expired,
            Release::Overflow => Self::Overflow,
        }
    }
}

/// Held events, by key (a container id, a pid), in arrival order.
#[derive(Debug)]
pub struct HeldEvents<K = String> {
    by_container: HashMap<K, VecDeque<(Instant, Event)>>,
    held: usize,
    max_events: usize,
    hold: Duration,
}

impl<K: Hash + Eq + Clone> HeldEvents<K> {
    pub fn new(max_events: usize, hold: Duration) -> Self {
        HeldEvents {
            by_container: HashMap::new(),
            held: 0,
            max_events,
            hold,
        }
    }

    /// Whether events of `id` are waiting: a later event of the same key
    /// must wait behind them.
    pub fn holds<Q: Hash + Eq + ?Sized>(&self, id: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.by_container.contains_key(id)
    }

    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// Holds `event`. Returns the events that must go on to make room (with
    /// `Release::Overflow`), or `event` itself when nothing may be held.
    pub fn hold(&mut self, id: K, event: Event) -> Vec<Event> {
        if self.max_events == 0 || self.hold.is_zero() {
            return vec![event];
        }
        let mut released = Vec::new();
        if self.held >= self.max_events {
            let oldest = self
                .by_container
                .iter()
                .filter_map(|(id, queue)| queue.front().map(|(at, _)| (*at, id.clone())))
                .min_by_key(|(at, _)| *at);
            if let Some((_, oldest)) = oldest {
                released = self.take(&oldest);
            }
        }
        self.by_container
            .entry(id)
            .or_default()
            .push_back((Instant::now(), event));
        self.held += 1;
        released
    }

    /// Every event of `id`, in arrival order.
    pub fn take<Q: Hash + Eq + ?Sized>(&mut self, id: &Q) -> Vec<Event>
    where
        K: Borrow<Q>,
    {
        let Some(queue) = self.by_container.remove(id) else {
            return Vec::new();
        };
        self.held -= queue.len();
        queue.into_iter().map(|(_, event)| event).collect()
    }

    /// Every held event, by key: nothing more will arrive.
    pub fn drain(&mut self) -> Vec<(K, Vec<Event>)> {
        let ids: Vec<K> = self.by_container.keys().cloned().collect();
        ids.into_iter()
            .map(|id| {
                let events = self.take(&id);
                (id, events)
            })
            .collect()
    }

    /// The events of every key whose first held event waited past the hold
    /// time, with their keys.
    pub fn expired(&mut self, now: Instant) -> Vec<(K, Vec<Event>)> {
        let due: Vec<K> = self
            .by_container
            .iter()
            .filter(|(_, queue)| {
                queue
                    .front()
                    .is_some_and(|(at, _)| now.saturating_duration_since(*at) >= self.hold)
            })
            .map(|(id, _)| id.clone())
            .collect();
        due.into_iter()
            .map(|id| {
                let events = self.take(&id);
                (id, events)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Kind, Process};

    fn event(pid: u32) -> Event {
        Event {
            kind: Kind::Exec,
            process: Process {
                pid,
                ..Process::default()
            },
            ..Event::default()
        }
    }

    fn pids(events: &[Event]) -> Vec<u32> {
        events.iter().map(|e| e.process.pid).collect()
    }

    #[test]
    fn held_events_come_back_in_order_per_container() {
        let mut held: HeldEvents = HeldEvents::new(16, Duration::from_secs(2));
        assert!(held.hold("a".to_string(), event(1)).is_empty());
        assert!(held.hold("b".to_string(), event(2)).is_empty());
        assert!(held.hold("a".to_string(), event(3)).is_empty());
        assert!(held.holds("a"));
        assert_eq!(pids(&held.take("a")), vec![1, 3]);
        assert!(!held.holds("a"));
        assert_eq!(pids(&held.take("b")), vec![2]);
        assert!(held.is_empty());
        // At shutdown everything goes.
        held.hold("c".to_string(), event(4));
        held.hold("d".to_string(), event(5));
        let mut drained: Vec<u32> = held.drain().iter().flat_map(|(_, e)| pids(e)).collect();
        drained.sort_unstable();
        assert_eq!(drained, vec![4, 5]);
        assert!(held.is_empty());
    }

    #[test]
    fn the_bound_releases_the_container_waiting_longest() {
        let mut held: HeldEvents = HeldEvents::new(2, Duration::from_secs(2));
        held.hold("a".to_string(), event(1));
        held.hold("b".to_string(), event(2));
        let released = held.hold("c".to_string(), event(3));
        assert_eq!(pids(&released), vec![1]);
        assert!(!held.holds("a") && held.holds("b") && held.holds("c"));
    }

    #[test]
    fn events_past_the_hold_time_go_on() {
        let mut held: HeldEvents = HeldEvents::new(16, Duration::from_millis(50));
        held.hold("a".to_string(), event(1));
        assert!(held.expired(Instant::now()).is_empty());
        let later = Instant::now() + Duration::from_millis(60);
        let expired = held.expired(later);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].0, "a");
        assert!(held.is_empty());
        // A hold of zero holds nothing.
        let mut none: HeldEvents = HeldEvents::new(16, Duration::ZERO);
        assert_eq!(pids(&none.hold("a".to_string(), event(9))), vec![9]);
    }
}
