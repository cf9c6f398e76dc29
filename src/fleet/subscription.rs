//! The merged event stream of a [`Fleet`](super::Fleet): pulled by the caller's thread,
//! selecting over every engine's subscription and the fleet's control channel. Lagging
//! engine subscriptions are resumed from their watcher's journal.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Select, TryRecvError};

use crate::container::Container;
use crate::discover::Found;
use crate::event::{ContainerEvent, EventKind};
use crate::watcher::{Item, Subscription, Watcher};

/// What the fleet's supervisor tells its subscriptions.
pub(crate) enum Control {
    Attached {
        engine: Arc<Found>,
        watcher: Weak<Watcher>,
        sub: Subscription,
    },
    Vanished {
        engine: Arc<Found>,
        containers: Vec<Arc<Container>>,
    },
}

/// One item of the merged stream.
#[derive(Debug, Clone)]
pub enum FleetItem {
    /// A container event of one engine (the container names its engine). `seq` is the
    /// engine watcher's; the synthetic exits of a vanished engine have `seq` 0.
    Event(ContainerEvent),
    /// An engine was attached; its synthetic `Started` events follow.
    Attached(Arc<Found>),
    /// An engine vanished; the `Exited` events of its containers came just before.
    Vanished(Arc<Found>),
    /// This subscription fell behind on an engine and resumed from its journal; events
    /// may repeat from `resume_seq`.
    Lagged {
        /// Which engine.
        engine: Arc<Found>,
        /// How many events were not delivered in time.
        missed: u64,
        /// Where the replay starts.
        resume_seq: u64,
    },
    /// Events of an engine that fell out of its journal before they could be replayed.
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
    engine: Arc<Found>,
    /// Weak: the fleet alone keeps watchers alive, so closing it closes them.
    watcher: Weak<Watcher>,
    sub: Subscription,
}

/// The merged event stream of a fleet; see [`Fleet::subscribe`](super::Fleet::subscribe).
pub struct FleetSubscription {
    sources: Vec<Source>,
    control: Option<Receiver<Control>>,
    pending: VecDeque<FleetItem>,
}

impl FleetSubscription {
    pub(crate) fn new(
        subs: Vec<(Arc<Found>, Arc<Watcher>, Subscription)>,
        control: Receiver<Control>,
    ) -> Self {
        FleetSubscription {
            sources: subs
                .into_iter()
                .map(|(engine, watcher, sub)| Source {
                    engine,
                    watcher: Arc::downgrade(&watcher),
                    sub,
                })
                .collect(),
            control: Some(control),
            pending: VecDeque::new(),
        }
    }

    /// The next item, waiting at most `timeout`; `None` on timeout or once the fleet is
    /// closed and every engine's events are drained.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<FleetItem> {
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
                    Err(_) => self.control = None,
                }
                continue;
            }
            let i = index - usize::from(ctl.is_some());
            let Some(source) = self.sources.get(i) else {
                continue;
            };
            match op.recv(source.sub.receiver()) {
                Ok(item) => self.item(i, item),
                Err(_) => {
                    self.sources.remove(i);
                }
            }
        }
    }

    /// True once the fleet is closed and every item has been taken: nothing more will
    /// come (what tells a `None` of [`recv_timeout`](Self::recv_timeout) from a timeout).
    pub fn is_ended(&self) -> bool {
        self.control.is_none() && self.sources.is_empty() && self.pending.is_empty()
    }

    /// Blocks until the next item; `None` once the fleet is closed.
    pub fn recv(&mut self) -> Option<FleetItem> {
        loop {
            if self.is_ended() {
                return None;
            }
            if let Some(i) = self.recv_timeout(Duration::from_secs(3600)) {
                return Some(i);
            }
        }
    }

    fn item(&mut self, i: usize, item: Item) {
        let source = &mut self.sources[i];
        match item {
            Item::Event(e) => self.pending.push_back(FleetItem::Event(e)),
            Item::Lagged { missed, resume_seq } => {
                match source.watcher.upgrade() {
                    Some(w) => source.sub = w.subscribe_since(resume_seq.saturating_sub(1)),
                    None => {
                        self.sources.remove(i);
                        return;
                    }
                }
                self.pending.push_back(FleetItem::Lagged {
                    engine: source.engine.clone(),
                    missed,
                    resume_seq,
                });
            }
            Item::Gap { from, to } => self.pending.push_back(FleetItem::Gap {
                engine: source.engine.clone(),
                from,
                to,
            }),
        }
    }

    fn control(&mut self, c: Control) {
        match c {
            Control::Attached {
                engine,
                watcher,
                sub,
            } => {
                self.pending.push_back(FleetItem::Attached(engine.clone()));
                self.sources.push(Source {
                    engine,
                    watcher,
                    sub,
                });
            }
            Control::Vanished { engine, containers } => {
                // First what the engine's watcher still had queued for us, then the exits of
                // its last portfolio as amended by those queued events (the watcher may
                // have moved on after the fleet took the portfolio).
                let mut alive: BTreeMap<String, Arc<Container>> =
                    containers.into_iter().map(|c| (c.id.clone(), c)).collect();
                let at = self
                    .sources
                    .iter()
                    .position(|s| Arc::ptr_eq(&s.engine, &engine));
                if let Some(i) = at {
                    loop {
                        match self.sources[i].sub.receiver().try_recv() {
                            Ok(Item::Event(e)) => {
                                if matches!(e.kind, EventKind::Exited { .. }) {
                                    alive.remove(&e.container.id);
                                } else {
                                    alive.insert(e.container.id.clone(), e.container.clone());
                                }
                                self.pending.push_back(FleetItem::Event(e));
                            }
                            Ok(_) => {}
                            Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => break,
                        }
                    }
                    self.sources.remove(i);
                }
                let now = SystemTime::now();
                for container in alive.into_values() {
                    self.pending.push_back(FleetItem::Event(ContainerEvent {
                        seq: 0,
                        time: now,
                        kind: EventKind::Exited {
                            exit_code: None,
                            oom: false,
                        },
                        container,
                        synthetic: true,
                    }));
                }
                self.pending.push_back(FleetItem::Vanished(engine));
            }
        }
    }
}

impl std::fmt::Debug for FleetSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetSubscription")
            .field("engines", &self.sources.len())
            .field("pending", &self.pending.len())
            .finish()
    }
}
