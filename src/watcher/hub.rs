//! Subscribers, the event journal and the published portfolio, behind one lock so that a
//! subscription's snapshot and its live events join with no gap and no duplicate.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};

use crate::event::{ContainerEvent, EventKind};
use crate::portfolio::Portfolio;

/// What a [`Subscription`] delivers.
#[derive(Debug, Clone)]
pub enum Item {
    /// A lifecycle event (synthetic `Started` events first, for a plain subscription).
    Event(ContainerEvent),
    /// The subscriber fell behind: its queue was full, `missed` events of the batch that
    /// overflowed it were not delivered, and the subscription ENDS here (nothing follows).
    /// Everything from `resume_seq` on is in the journal while it lasts: resubscribe with
    /// [`Watcher::subscribe_since`](super::Watcher::subscribe_since)`(resume_seq - 1)`.
    Lagged {
        /// Events that did not fit into the queue when it overflowed.
        missed: u64,
        /// The sequence number of the first event that was not delivered.
        resume_seq: u64,
    },
    /// Events `from..=to` have already fallen out of the journal and cannot be replayed
    /// (some of them may have concerned the subscription's containers).
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
    /// Journal events that happened at or after this time, then live events.
    Time(SystemTime),
}

/// A subscriber's receiving end. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    rx: Receiver<Item>,
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

    /// The underlying channel, e.g. for `crossbeam_channel::select!`.
    pub fn receiver(&self) -> &Receiver<Item> {
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
    /// Items the queue may hold before the subscriber counts as lagging; the channel has
    /// one slot more, reserved for the final `Lagged` marker.
    limit: usize,
    filter: Option<String>,
    missed: u64,
    resume_seq: u64,
    /// The receiver was dropped.
    gone: bool,
}

pub(crate) struct Hub {
    pub(crate) portfolio: Arc<Portfolio>,
    journal: VecDeque<ContainerEvent>,
    journal_capacity: usize,
    /// Highest sequence number dropped from the journal, and its time.
    dropped: Option<(u64, SystemTime)>,
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
            dropped: None,
            subscribers: Vec::new(),
            capacity: capacity.max(1),
            closed: false,
        }
    }

    pub(crate) fn subscriber_count(&self) -> usize {
        self.subscribers.len()
    }

    /// Publishes a new portfolio together with the events that led to it. Returns how
    /// many subscriptions ended lagging.
    pub(crate) fn publish(
        &mut self,
        portfolio: Arc<Portfolio>,
        events: &[ContainerEvent],
    ) -> usize {
        self.portfolio = portfolio;
        for ev in events {
            if self.journal_capacity > 0 {
                if self.journal.len() == self.journal_capacity {
                    if let Some(old) = self.journal.pop_front() {
                        self.dropped = Some((old.seq, old.time));
                    }
                }
                self.journal.push_back(ev.clone());
            } else {
                self.dropped = Some((ev.seq, ev.time));
            }
            for s in &mut self.subscribers {
                if s.missed > 0 {
                    s.missed += 1;
                    continue;
                }
                if s.filter.as_ref().is_some_and(|f| *f != ev.container.id) {
                    continue;
                }
                if s.tx.len() >= s.limit {
                    s.missed = 1;
                    s.resume_seq = ev.seq;
                    continue;
                }
                // Full cannot happen: we checked the length, and only we send.
                if let Err(TrySendError::Disconnected(_)) = s.tx.try_send(Item::Event(ev.clone())) {
                    s.gone = true;
                }
            }
        }
        let mut lagged = 0;
        self.subscribers.retain(|s| {
            if s.missed > 0 {
                lagged += 1;
                let _ = s.tx.try_send(Item::Lagged {
                    missed: s.missed,
                    resume_seq: s.resume_seq,
                });
                return false;
            }
            !s.gone
        });
        lagged
    }

    pub(crate) fn subscribe(&mut self, since: Since, filter: Option<String>) -> Subscription {
        let matches = |c: &str| filter.as_deref().is_none_or(|f| f == c);
        let mut initial = Vec::new();
        match since {
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
            }
            Since::Seq(seq) => {
                if let Some((dropped, _)) = self.dropped {
                    if dropped > seq {
                        initial.push(Item::Gap {
                            from: seq + 1,
                            to: dropped,
                        });
                    }
                }
                initial.extend(
                    self.journal
                        .iter()
                        .filter(|e| e.seq > seq && matches(&e.container.id))
                        .map(|e| Item::Event(e.clone())),
                );
            }
            Since::Time(t) => {
                if let Some((dropped, time)) = self.dropped {
                    if time >= t {
                        initial.push(Item::Gap {
                            from: 1,
                            to: dropped,
                        });
                    }
                }
                initial.extend(
                    self.journal
                        .iter()
                        .filter(|e| e.time >= t && matches(&e.container.id))
                        .map(|e| Item::Event(e.clone())),
                );
            }
        }
        let limit = self.capacity + initial.len();
        let (tx, rx) = crossbeam_channel::bounded(limit + 1);
        for i in initial {
            let _ = tx.try_send(i);
        }
        if !self.closed {
            self.subscribers.push(Subscriber {
                tx,
                limit,
                filter,
                missed: 0,
                resume_seq: 0,
                gone: false,
            });
        }
        Subscription { rx }
    }

    /// Ends every subscription (their receivers see the end after draining).
    pub(crate) fn close(&mut self) {
        self.closed = true;
        self.subscribers.clear();
    }
}
