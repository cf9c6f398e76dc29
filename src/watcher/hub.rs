//! Subscribers, the event journal and the published portfolio, behind one lock so that a
//! subscription's snapshot and its live events join with no gap and no duplicate.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::event::{ContainerEvent, EventKind};
use crate::portfolio::Portfolio;

/// What a [`Subscription`] delivers.
#[derive(Debug, Clone)]
pub enum Item {
    /// A lifecycle event (synthetic `Started` events first, for a plain subscription).
    Event(ContainerEvent),
    /// The subscriber fell behind: its queue was full, `missed` events that its filter
    /// would have delivered were not, and the subscription ENDS here (nothing follows).
    /// Everything from `resume_seq` on is in the journal while it lasts: resubscribe with
    /// [`Watcher::subscribe_from`](super::Watcher::subscribe_from)`(Since::Seq(resume_seq - 1))`.
    Lagged {
        /// Events (that the subscription's filter passes) not delivered.
        missed: u64,
        /// The sequence number of the first event that was not delivered.
        resume_seq: u64,
    },
    /// Events `from..=to` had already fallen out of the journal when the subscription
    /// began and cannot be replayed (some of them may have concerned the subscription's
    /// containers); the subscription's events follow from `to + 1` on. Replaying the
    /// stream onto a snapshot is no longer exact: take a fresh snapshot (`subscribe()`).
    Gap {
        /// First sequence number that is lost.
        from: u64,
        /// Last sequence number that is lost.
        to: u64,
    },
}

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// Synthetic `Started` events for the current portfolio, then live events.
    Now,
    /// Journal events with a sequence number greater than this, then live events.
    Seq(u64),
    /// Journal events from the first one that happened at or after this time on (in seq
    /// order), then live events.
    Time(SystemTime),
}

/// A subscriber's receiving end. Dropping it unsubscribes (at once: it stops counting
/// in [`Watcher::subscriber_count`](super::Watcher::subscriber_count)).
#[derive(Debug)]
pub struct Subscription {
    rx: Receiver<Item>,
    /// The hub holds a weak reference: dropping the subscription is visible at once.
    _alive: Arc<()>,
}

impl Subscription {
    /// Blocks until the next item; `None` once the subscription ended (watcher closed or
    /// after a [`Item::Lagged`]).
    pub fn recv(&self) -> Option<Item> {
        self.rx.recv().ok()
    }

    /// Waits at most `timeout` for the next item; `None` on timeout or end.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Item> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// The next item if one is queued.
    pub fn try_recv(&self) -> Option<Item> {
        self.rx.try_recv().ok()
    }

    /// True once the subscription has ended and its queue is drained.
    pub fn is_ended(&self) -> bool {
        self.rx.is_empty() && matches!(self.rx.try_recv(), Err(TryRecvError::Disconnected))
    }

    /// The underlying channel (the fleet selects over its engines' subscriptions). Not
    /// public: crossbeam-channel stays out of our API.
    pub(crate) fn receiver(&self) -> &Receiver<Item> {
        &self.rx
    }
}

impl Iterator for Subscription {
    type Item = Item;
    fn next(&mut self) -> Option<Item> {
        self.recv()
    }
}

struct Subscriber {
    tx: Sender<Item>,
    /// Live items the queue may hold before the subscriber counts as lagging: the
    /// capacity plus every synthetic item queued for it (those never count against the
    /// capacity, and there are at most as many as the portfolio had containers).
    limit: usize,
    filter: Option<String>,
    missed: u64,
    resume_seq: u64,
    alive: Weak<()>,
}

pub(crate) struct Hub {
    pub(crate) portfolio: Arc<Portfolio>,
    /// The latest events, in seq order. An event's key for `Since::Time` is the largest
    /// event time up to it (monotone in seq): the running max from `journal_floor` on.
    journal: VecDeque<ContainerEvent>,
    journal_capacity: usize,
    /// The largest time of the events dropped from the journal so far.
    journal_floor: Option<SystemTime>,
    /// Highest sequence number dropped from the journal (0: none).
    dropped: u64,
    /// (seq, running max time) of the most recently dropped events, for `Since::Time`.
    dropped_index: VecDeque<(u64, SystemTime)>,
    /// The running max time of the last entry that fell out of `dropped_index`.
    dropped_floor: Option<SystemTime>,
    subscribers: Vec<Subscriber>,
    capacity: usize,
    closed: bool,
}

impl Hub {
    pub(crate) fn new(capacity: usize, journal_capacity: usize) -> Self {
        Hub {
            portfolio: Arc::new(Portfolio::new()),
            journal: VecDeque::new(),
            journal_capacity,
            journal_floor: None,
            dropped: 0,
            dropped_index: VecDeque::new(),
            dropped_floor: None,
            subscribers: Vec::new(),
            capacity: capacity.max(1),
            closed: false,
        }
    }

    /// Active subscriptions (dropped ones are pruned first).
    pub(crate) fn subscriber_count(&mut self) -> usize {
        self.subscribers.retain(|s| s.alive.strong_count() > 0);
        self.subscribers.len()
    }

    /// Journal and dropped-index lengths (for the simulation's bounds check).
    #[cfg(test)]
    pub(crate) fn lengths(&self) -> (usize, usize) {
        (self.journal.len(), self.dropped_index.len())
    }

    /// Subscribers held, without pruning the dropped ones first (tests).
    #[cfg(test)]
    pub(crate) fn subscribers_held(&self) -> usize {
        self.subscribers.len()
    }

    fn index_capacity(&self) -> usize {
        self.journal_capacity.max(64)
    }

    /// The running max of event times from `floor` on, with `time` next.
    fn key(floor: Option<SystemTime>, time: SystemTime) -> SystemTime {
        floor.map_or(time, |m| m.max(time))
    }

    fn drop_entry(&mut self, ev: ContainerEvent) {
        let key = Self::key(self.journal_floor, ev.time);
        self.journal_floor = Some(key);
        self.dropped = ev.seq;
        self.dropped_index.push_back((ev.seq, key));
        if self.dropped_index.len() > self.index_capacity() {
            if let Some((_, k)) = self.dropped_index.pop_front() {
                self.dropped_floor = Some(k);
            }
        }
    }

    /// Publishes a new portfolio together with the events that led to it. Returns how
    /// many subscriptions ended lagging. Synthetic events (the first listing's `Started`
    /// events) reach every subscriber whatever its queue holds.
    pub(crate) fn publish(
        &mut self,
        portfolio: Arc<Portfolio>,
        events: impl Into<Vec<ContainerEvent>>,
    ) -> usize {
        let events: Vec<ContainerEvent> = events.into();
        self.portfolio = portfolio;
        for ev in &events {
            for s in &mut self.subscribers {
                if s.filter.as_ref().is_some_and(|f| *f != ev.container.id) {
                    continue;
                }
                if s.missed > 0 {
                    s.missed += 1;
                    continue;
                }
                if ev.synthetic {
                    s.limit += 1;
                } else if s.tx.len() >= s.limit {
                    s.missed = 1;
                    s.resume_seq = ev.seq;
                    continue;
                }
                let _ = s.tx.send(Item::Event(ev.clone()));
            }
        }
        if self.journal.is_empty() && events.len() <= self.journal_capacity {
            // The first burst (a first listing's events, one per container): its vector
            // becomes the journal, no copy (a copy left the vector freed: issue 16).
            self.journal = VecDeque::from(events);
        } else if self.journal_capacity > 0 {
            // Grown at once to what a burst needs, not through a doubling series whose
            // freed buffers the allocator kept; still doubling for the usual few events.
            let want = (self.journal.len() + events.len()).min(self.journal_capacity);
            if want > self.journal.capacity() {
                let doubled = self.journal.capacity().saturating_mul(2);
                let grown = want.max(doubled.min(self.journal_capacity));
                self.journal.reserve_exact(grown - self.journal.len());
            }
            for ev in events {
                if self.journal.len() == self.journal_capacity {
                    if let Some(old) = self.journal.pop_front() {
                        self.drop_entry(old);
                    }
                }
                self.journal.push_back(ev);
            }
        } else {
            for ev in events {
                self.drop_entry(ev);
            }
        }
        let mut lagged = 0;
        self.subscribers.retain(|s| {
            if s.missed > 0 {
                lagged += 1;
                let _ = s.tx.send(Item::Lagged {
                    missed: s.missed,
                    resume_seq: s.resume_seq,
                });
                return false;
            }
            s.alive.strong_count() > 0
        });
        lagged
    }

    /// The first sequence number whose event happened at or after `t` (by the running
    /// max of event times), if any event has; `Err(())` when it fell out of the index.
    fn first_at_or_after(&self, t: SystemTime) -> Option<Result<u64, ()>> {
        if self.dropped_floor.is_some_and(|k| k >= t) {
            return Some(Err(()));
        }
        if let Some((seq, _)) = self.dropped_index.iter().find(|(_, k)| *k >= t) {
            return Some(Ok(*seq));
        }
        let mut key = self.journal_floor;
        self.journal
            .iter()
            .find(|e| {
                key = Some(Self::key(key, e.time));
                key.is_some_and(|k| k >= t)
            })
            .map(|e| Ok(e.seq))
    }

    pub(crate) fn subscribe(&mut self, since: Since, filter: Option<String>) -> Subscription {
        let matches = |c: &str| filter.as_deref().is_none_or(|f| f == c);
        let mut initial = Vec::new();
        let after = match since {
            Since::Now => {
                let p = &self.portfolio;
                initial.extend(p.sorted().into_iter().filter(|c| matches(&c.id)).map(|c| {
                    Item::Event(ContainerEvent {
                        seq: p.seq(),
                        time: SystemTime::now(),
                        kind: EventKind::Started,
                        container: c,
                        synthetic: true,
                    })
                }));
                None
            }
            Since::Seq(seq) => {
                if self.dropped > seq {
                    initial.push(Item::Gap {
                        from: seq + 1,
                        to: self.dropped,
                    });
                }
                Some(seq)
            }
            Since::Time(t) => match self.first_at_or_after(t) {
                // Everything from the first event at or after `t` on, in seq order.
                Some(Ok(first)) => {
                    if first <= self.dropped {
                        initial.push(Item::Gap {
                            from: first,
                            to: self.dropped,
                        });
                    }
                    Some(first - 1)
                }
                Some(Err(())) => {
                    initial.push(Item::Gap {
                        from: 1,
                        to: self.dropped,
                    });
                    Some(self.dropped)
                }
                None => Some(u64::MAX),
            },
        };
        if let Some(after) = after {
            initial.extend(
                self.journal
                    .iter()
                    .filter(|e| e.seq > after && matches(&e.container.id))
                    .map(|e| Item::Event(e.clone())),
            );
        }
        let limit = self.capacity + initial.len();
        let (tx, rx) = crossbeam_channel::unbounded();
        for i in initial {
            let _ = tx.send(i);
        }
        let alive = Arc::new(());
        if !self.closed {
            self.subscribers.push(Subscriber {
                tx,
                limit,
                filter,
                missed: 0,
                resume_seq: 0,
                alive: Arc::downgrade(&alive),
            });
        }
        Subscription { rx, _alive: alive }
    }

    /// Ends every subscription (their receivers see the end after draining) and frees
    /// the journal.
    pub(crate) fn close(&mut self) {
        self.closed = true;
        self.subscribers.clear();
        self.journal = VecDeque::new();
        self.dropped_index = VecDeque::new();
    }
}
