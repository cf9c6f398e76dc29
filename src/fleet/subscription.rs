//! The merged event stream of a [`Fleet`](super::Fleet): pulled by the caller's thread,
//! selecting over every engine's subscription and the fleet's control channel. What to
//! emit is decided by the pure [`Merge`] machine; this file only moves its inputs and
//! carries out its effects (resuming a lagging engine from its watcher's journal).

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Select};
use parking_lot::Mutex;

use super::merge::{Effect, Input, Key, Merge};
use crate::discover::Found;
use crate::event::ContainerEvent;
use crate::watcher::{Subscription, Watcher};

/// What the fleet's supervisor tells its subscriptions.
pub(crate) enum Control {
    /// An engine was attached (its watcher has not synced yet).
    Attached { key: Key, engine: Arc<Found> },
    /// The engine's watcher synced for the first time: here is a subscription to it
    /// (synthetic `Started` for its portfolio, then live events).
    Synced {
        key: Key,
        engine: Arc<Found>,
        watcher: Weak<Watcher>,
        sub: Subscription,
    },
    /// The engine vanished; its watcher published nothing after `last_seq`.
    Vanished {
        key: Key,
        engine: Arc<Found>,
        last_seq: u64,
    },
    /// The fleet closed; the engine's watcher published nothing after `last_seq`.
    Closed { key: Key, last_seq: u64 },
}

/// One item of the merged stream.
#[derive(Debug, Clone)]
pub enum FleetItem {
    /// A container event of one engine (the container names its engine). `seq` is the
    /// engine watcher's; the synthetic exits of a vanished engine have `seq` 0.
    Event(ContainerEvent),
    /// An engine was attached; its synthetic `Started` events follow once its watcher has
    /// synced (however many containers it runs: they do not go through the bounded queue).
    Attached(Arc<Found>),
    /// An engine vanished. Just before came the events still queued for this subscription,
    /// then a synthetic `Exited` (`seq` 0, no exit code) for each container of the engine
    /// this subscription had been told is alive (and not told exited since): after
    /// `Vanished`, none of the engine's containers is alive in the stream.
    Vanished(Arc<Found>),
    /// This subscription fell behind on an engine and resumed from its journal: the
    /// engine's events from `resume_seq` on follow (a [`Gap`](Self::Gap) first for those
    /// that already fell out of the journal). Events the subscription already had are not
    /// repeated.
    Lagged {
        /// Which engine.
        engine: Arc<Found>,
        /// How many events were not delivered in time.
        missed: u64,
        /// Where the replay starts.
        resume_seq: u64,
    },
    /// Events `from..=to` of an engine that this subscription will never get: they fell
    /// out of the engine's journal before they could be replayed, or the subscription fell
    /// behind on the engine when its watcher was already gone (the engine vanished or the
    /// fleet closed), so that nothing could be replayed.
    Gap {
        /// Which engine.
        engine: Arc<Found>,
        /// First lost sequence number.
        from: u64,
        /// Last lost sequence number.
        to: u64,
    },
}

struct Source {
    key: Key,
    /// Weak: the fleet alone keeps watchers alive, so closing it closes them.
    watcher: Weak<Watcher>,
    sub: Subscription,
}

/// The merged event stream of a fleet; see [`Fleet::subscribe`](super::Fleet::subscribe).
///
/// The same shape as a watcher's [`Subscription`]: `recv`, `recv_timeout`, `try_recv`
/// and `is_ended` on `&self`, and an [`Iterator`] of the items. Dropping it unsubscribes.
pub struct FleetSubscription {
    /// The merge state; one receiver at a time takes items (`recv` needs no `mut`, as
    /// for a [`Subscription`]).
    inner: Mutex<Merged>,
}

impl FleetSubscription {
    pub(crate) fn new(
        subs: Vec<(Key, Arc<Found>, Weak<Watcher>, Subscription)>,
        control: Receiver<Control>,
    ) -> Self {
        FleetSubscription {
            inner: Mutex::new(Merged::new(subs, control)),
        }
    }

    /// Blocks until the next item; `None` once the fleet is closed and every engine's
    /// events are drained.
    pub fn recv(&self) -> Option<FleetItem> {
        self.inner.lock().recv()
    }

    /// The next item, waiting at most `timeout`; `None` on timeout or once the fleet is
    /// closed and every engine's events are drained.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<FleetItem> {
        self.inner.lock().recv_timeout(timeout)
    }

    /// The next item if one is ready now.
    pub fn try_recv(&self) -> Option<FleetItem> {
        self.inner.lock().recv_timeout(Duration::ZERO)
    }

    /// True once the fleet is closed and every item has been taken: nothing more will
    /// come (what tells a `None` of [`recv_timeout`](Self::recv_timeout) from a timeout).
    pub fn is_ended(&self) -> bool {
        self.inner.lock().is_ended()
    }
}

impl Iterator for FleetSubscription {
    type Item = FleetItem;
    fn next(&mut self) -> Option<FleetItem> {
        self.inner.get_mut().recv()
    }
}

/// The merge of the engines' subscriptions behind a [`FleetSubscription`].
struct Merged {
    merge: Merge,
    sources: Vec<Source>,
    control: Option<Receiver<Control>>,
    pending: VecDeque<FleetItem>,
}

impl Merged {
    fn new(
        subs: Vec<(Key, Arc<Found>, Weak<Watcher>, Subscription)>,
        control: Receiver<Control>,
    ) -> Self {
        let mut me = Merged {
            merge: Merge::new(),
            sources: Vec::new(),
            control: Some(control),
            pending: VecDeque::new(),
        };
        for (key, engine, watcher, sub) in subs {
            me.add_source(key, engine, watcher, sub);
        }
        me
    }

    fn recv_timeout(&mut self, timeout: Duration) -> Option<FleetItem> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(i) = self.pending.pop_front() {
                return Some(i);
            }
            if self.control.is_none() && self.sources.is_empty() {
                return None;
            }
            let mut sel = Select::new();
            let ctl = self.control.as_ref().map(|c| sel.recv(c));
            for s in &self.sources {
                sel.recv(s.sub.receiver());
            }
            let left = end.saturating_duration_since(Instant::now());
            let Ok(op) = sel.select_timeout(left) else {
                return None;
            };
            let index = op.index();
            if Some(index) == ctl {
                let Some(control) = self.control.as_ref() else {
                    continue;
                };
                match op.recv(control) {
                    Ok(c) => self.control(c),
                    Err(_) => {
                        self.control = None;
                        self.feed(Input::ControlEnded);
                    }
                }
                continue;
            }
            let i = index - usize::from(ctl.is_some());
            let Some(source) = self.sources.get(i) else {
                continue;
            };
            let key = source.key;
            match op.recv(source.sub.receiver()) {
                Ok(item) => self.feed(Input::Item { key, item }),
                // The watcher closed and everything it sent us was taken.
                Err(_) => {
                    self.sources.remove(i);
                }
            }
        }
    }

    fn is_ended(&self) -> bool {
        self.control.is_none() && self.sources.is_empty() && self.pending.is_empty()
    }

    fn recv(&mut self) -> Option<FleetItem> {
        loop {
            if self.is_ended() {
                return None;
            }
            if let Some(i) = self.recv_timeout(Duration::from_secs(3600)) {
                return Some(i);
            }
        }
    }

    fn add_source(
        &mut self,
        key: Key,
        engine: Arc<Found>,
        watcher: Weak<Watcher>,
        sub: Subscription,
    ) {
        self.sources.retain(|s| s.key != key);
        self.sources.push(Source { key, watcher, sub });
        self.feed(Input::Subscribed { key, engine });
    }

    /// Runs one input through the machine and carries out its effects (a resume answers
    /// with another input).
    fn feed(&mut self, input: Input) {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            for effect in self.merge.handle(input) {
                match effect {
                    Effect::Emit(item) => self.pending.push_back(item),
                    Effect::Drop { key } => self.sources.retain(|s| s.key != key),
                    Effect::Resume { key, after } => {
                        let source = self.sources.iter_mut().find(|s| s.key == key);
                        let ok = match source.map(|s| (s.watcher.upgrade(), s)) {
                            Some((Some(w), s)) => {
                                s.sub = w.subscribe_from(crate::watcher::Since::Seq(after));
                                true
                            }
                            _ => false,
                        };
                        inputs.push_back(Input::Resumed { key, ok });
                    }
                }
            }
        }
    }

    fn control(&mut self, c: Control) {
        match c {
            Control::Attached { key, engine } => self.feed(Input::Attached { key, engine }),
            Control::Synced {
                key,
                engine,
                watcher,
                sub,
            } => self.add_source(key, engine, watcher, sub),
            Control::Vanished {
                key,
                engine,
                last_seq,
            } => {
                // What the engine's watcher still had queued for us comes first.
                let mut queued = Vec::new();
                if let Some(s) = self.sources.iter().find(|s| s.key == key) {
                    while let Ok(item) = s.sub.receiver().try_recv() {
                        queued.push(item);
                    }
                }
                self.feed(Input::Vanished {
                    key,
                    engine,
                    queued,
                    last_seq,
                    at: SystemTime::now(),
                });
            }
            Control::Closed { key, last_seq } => self.feed(Input::Closed { key, last_seq }),
        }
    }
}

impl std::fmt::Debug for FleetSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("FleetSubscription");
        // A receiver blocked in `recv` holds the lock: no waiting here.
        match self.inner.try_lock() {
            Some(m) => d
                .field("engines", &m.sources.len())
                .field("pending", &m.pending.len())
                .finish(),
            None => d.finish_non_exhaustive(),
        }
    }
}
