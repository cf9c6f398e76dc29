//! Deterministic simulation of the fleet merge: a seeded PRNG drives the [`Merge`] machine
//! through random interleavings of engine changes, attachments, first syncs, engines
//! vanishing (with their watcher closed, or kept alive by someone), the fleet closing,
//! and the delivery of control messages and of each engine's queued items, with small
//! subscriber queues and journals so that lags, failed resumes and journal gaps are
//! frequent. The engines' watchers are modelled after the watcher's hub (bounded queue
//! ending with `Lagged`, journal replay with `Gap`), and the driver after
//! `FleetSubscription` (resume on `Lagged` while the watcher lives).
//!
//! Checked after every step, against the engines' published history:
//! - every engine's live events reach the subscriber in order, each once, each the one
//!   the engine published with that seq, or a `Gap` naming the engine covers them (a
//!   `Lagged` says where the replay resumes);
//! - never two `Started` for a container without an `Exited` between, never an
//!   `Exited`/`Paused`/`Unpaused` for one not alive, in the subscriber's view (unless a
//!   journal `Gap` made that view inexact);
//! - after `Vanished`, none of the engine's containers is alive in the view, and nothing
//!   of that engine follows;
//! - when a subscribed engine's queue is drained, the view equals the engine's truth
//!   (unless a `Gap` was told), and every seq it published was delivered or in a Gap.
//!
//! `WHALEWATCHER_SIM_SEEDS=N` runs N seeds (default 400); `WHALEWATCHER_SIM_SEED=S` runs
//! seed S alone and prints its trace. A failure prints its seed and the replay command.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use super::merge::{Effect, Input, Key, Merge};
use super::subscription::FleetItem;
use crate::container::Container;
use crate::discover::Found;
use crate::event::{ContainerEvent, EventKind};
use crate::watcher::Item;

use crate::sim_rng::Rng;

/// The hub's side of the subscriber's subscription to one watcher.
struct Sub {
    queue: VecDeque<Item>,
    limit: usize,
    /// Overflowed during the current batch: (missed, resume_seq).
    lagging: Option<(u64, u64)>,
    /// Nothing more will be sent (after `Lagged`, or the watcher closed).
    ended: bool,
}

/// One engine and its watcher.
struct Engine {
    key: Key,
    found: Arc<Found>,
    /// id → paused: what the engine runs.
    truth: BTreeMap<String, bool>,
    synced: bool,
    /// The watcher still runs (not closed).
    open: bool,
    /// Someone else holds the watcher: it can still be subscribed to after it vanished.
    held: bool,
    vanished: bool,
    seq: u64,
    /// Every event published: seq → (kind, id).
    log: BTreeMap<u64, (&'static str, String)>,
    journal: VecDeque<ContainerEvent>,
    journal_capacity: usize,
    dropped: Option<u64>,
    capacity: usize,
    next_id: u64,
    sub: Option<Sub>,
}

impl Engine {
    fn container(&self, id: &str, paused: bool) -> Arc<Container> {
        let mut c = Container::new(id, format!("name-{id}"), 1);
        c.paused = paused;
        Arc::new(c)
    }

    /// Publishes a batch of changes (each: start, exit, pause or unpause).
    fn publish(&mut self, changes: Vec<(EventKind, String)>) {
        for (kind, id) in changes {
            let paused = match kind {
                EventKind::Started => {
                    self.truth.insert(id.clone(), false);
                    false
                }
                EventKind::Exited { .. } => self.truth.remove(&id).unwrap_or(false),
                EventKind::Paused | EventKind::Unpaused => {
                    let p = kind == EventKind::Paused;
                    self.truth.insert(id.clone(), p);
                    p
                }
            };
            if !self.synced {
                continue; // the first listing will show it
            }
            self.seq += 1;
            let ev = ContainerEvent {
                seq: self.seq,
                time: SystemTime::UNIX_EPOCH,
                kind,
                container: self.container(&id, paused),
                synthetic: false,
            };
            self.log.insert(self.seq, (kind.as_str(), id));
            self.journal_push(ev.clone());
            if let Some(s) = self.sub.as_mut().filter(|s| !s.ended) {
                if let Some((missed, _)) = s.lagging.as_mut() {
                    *missed += 1;
                } else if s.queue.len() >= s.limit {
                    s.lagging = Some((1, ev.seq));
                } else {
                    s.queue.push_back(Item::Event(ev));
                }
            }
        }
        if let Some(s) = self.sub.as_mut() {
            if let Some((missed, resume_seq)) = s.lagging.take() {
                s.queue.push_back(Item::Lagged { missed, resume_seq });
                s.ended = true;
            }
        }
    }

    fn journal_push(&mut self, ev: ContainerEvent) {
        if self.journal_capacity == 0 {
            self.dropped = Some(ev.seq);
            return;
        }
        if self.journal.len() == self.journal_capacity {
            if let Some(old) = self.journal.pop_front() {
                self.dropped = Some(old.seq);
            }
        }
        self.journal.push_back(ev);
    }

    /// The first listing: published as events (no one is subscribed yet).
    fn sync(&mut self) {
        self.synced = true;
        let listed: Vec<(String, bool)> = self.truth.iter().map(|(i, p)| (i.clone(), *p)).collect();
        for (id, paused) in listed {
            self.seq += 1;
            self.log.insert(self.seq, ("started", id.clone()));
            let ev = ContainerEvent {
                seq: self.seq,
                time: SystemTime::UNIX_EPOCH,
                kind: EventKind::Started,
                container: self.container(&id, paused),
                synthetic: false,
            };
            self.journal_push(ev);
        }
    }

    /// `Watcher::subscribe()`: synthetic Started for the truth, then live.
    fn subscribe_now(&mut self) {
        let queue: VecDeque<Item> = self
            .truth
            .iter()
            .map(|(id, p)| {
                Item::Event(ContainerEvent {
                    seq: self.seq,
                    time: SystemTime::UNIX_EPOCH,
                    kind: EventKind::Started,
                    container: self.container(id, *p),
                    synthetic: true,
                })
            })
            .collect();
        self.sub = Some(Sub {
            limit: self.capacity + queue.len(),
            queue,
            lagging: None,
            ended: !self.open,
        });
    }

    /// `Watcher::subscribe_since(after)`.
    fn subscribe_since(&mut self, after: u64) {
        let mut queue = VecDeque::new();
        if let Some(d) = self.dropped.filter(|d| *d > after) {
            queue.push_back(Item::Gap {
                from: after + 1,
                to: d,
            });
        }
        queue.extend(
            self.journal
                .iter()
                .filter(|e| e.seq > after)
                .map(|e| Item::Event(e.clone())),
        );
        self.sub = Some(Sub {
            limit: self.capacity + queue.len(),
            queue,
            lagging: None,
            // A held watcher of a vanished engine publishes nothing more.
            ended: !self.open || self.vanished,
        });
    }
}

enum Ctl {
    Attached(Key),
    Synced(Key),
    Vanished(Key, u64),
    Closed(Key, u64),
}

/// What the subscriber has been given, per engine.
#[derive(Default)]
struct Seen {
    view: BTreeMap<String, bool>,
    /// The next live seq expected (set by the subscription's start).
    next: Option<u64>,
    gapped: bool,
    vanished: bool,
    attached: bool,
}

struct Sim {
    rng: Rng,
    engines: Vec<Engine>,
    merge: Merge,
    control: VecDeque<Ctl>,
    control_open: bool,
    closed: bool,
    /// Engines whose subscription the driver listens to.
    sources: BTreeSet<Key>,
    seen: BTreeMap<Key, Seen>,
    /// The seq of each engine's subscription snapshot.
    synced_at: BTreeMap<Key, u64>,
    trace: bool,
    items: u64,
    /// How often each kind of item and resume outcome occurred.
    stats: BTreeMap<&'static str, u64>,
}

type Check = Result<(), String>;

fn key_of(id: &str) -> Key {
    id.trim_start_matches('k')
        .split(':')
        .next()
        .and_then(|k| k.parse().ok())
        .unwrap_or(0)
}

impl Sim {
    fn new(seed: u64, trace: bool) -> Sim {
        let mut sim = Sim {
            rng: Rng(seed),
            engines: Vec::new(),
            merge: Merge::new(),
            control: VecDeque::new(),
            control_open: true,
            closed: false,
            sources: BTreeSet::new(),
            seen: BTreeMap::new(),
            synced_at: BTreeMap::new(),
            trace,
            items: 0,
            stats: BTreeMap::new(),
        };
        // Engines that exist before the subscription, synced: it starts with them.
        for _ in 0..sim.rng.below(3) {
            let i = sim.attach_engine();
            let e = &mut sim.engines[i];
            e.sync();
            e.subscribe_now();
            let (key, engine, start) = (e.key, e.found.clone(), e.seq);
            sim.sources.insert(key);
            let s = sim.seen.entry(key).or_default();
            s.attached = true;
            s.next = Some(start + 1);
            sim.feed(Input::Subscribed { key, engine }).expect("start");
        }
        // And one attached before the subscription but not synced yet: the subscription
        // hears of it only when it has synced (no Attached).
        if sim.rng.chance(50) {
            sim.attach_engine();
        }
        sim
    }

    fn log(&self, what: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("{}", what());
        }
    }

    /// A new engine with some containers (up to three queues full); returns its index.
    fn attach_engine(&mut self) -> usize {
        let key = self.engines.len() as Key + 1;
        let capacity = 1 + self.rng.below(4) as usize;
        let journal_capacity = self.rng.below(13) as usize;
        let n = self.rng.below(3 * capacity as u64 + 1);
        let mut e = Engine {
            key,
            found: super::merge::tests::found(key),
            truth: BTreeMap::new(),
            synced: false,
            open: true,
            held: false,
            vanished: false,
            seq: 0,
            log: BTreeMap::new(),
            journal: VecDeque::new(),
            journal_capacity,
            dropped: None,
            capacity,
            next_id: 0,
            sub: None,
        };
        for _ in 0..n {
            e.next_id += 1;
            e.truth.insert(format!("k{key}:c{}", e.next_id), false);
        }
        self.log(|| {
            format!("attach e{key}: {n} containers, queue {capacity}, journal {journal_capacity}")
        });
        self.engines.push(e);
        self.engines.len() - 1
    }

    fn engine(&mut self, key: Key) -> Option<&mut Engine> {
        self.engines.iter_mut().find(|e| e.key == key)
    }

    /// Runs one input through the machine, carries out its effects like
    /// `FleetSubscription::feed`, and checks every emitted item.
    fn feed(&mut self, input: Input) -> Check {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            for effect in self.merge.handle(input) {
                match effect {
                    Effect::Emit(item) => self.emitted(item)?,
                    Effect::Drop { key } => {
                        self.sources.remove(&key);
                        if let Some(e) = self.engine(key) {
                            e.sub = None;
                        }
                    }
                    Effect::Resume { key, after } => {
                        let listening = self.sources.contains(&key);
                        let ok = match self.engine(key) {
                            Some(e) if listening && (e.open || e.held) => {
                                e.subscribe_since(after);
                                true
                            }
                            _ => false,
                        };
                        self.log(|| format!("  resume e{key} >{after}: {ok}"));
                        *self
                            .stats
                            .entry(if ok { "resumed" } else { "resume failed" })
                            .or_default() += 1;
                        inputs.push_back(Input::Resumed { key, ok });
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks one item given to the subscriber against the engines' history.
    fn emitted(&mut self, item: FleetItem) -> Check {
        self.items += 1;
        let kind = match &item {
            FleetItem::Event(e) if e.synthetic => "synthetic",
            FleetItem::Event(_) => "live",
            FleetItem::Attached(_) => "attached",
            FleetItem::Vanished(_) => "vanished",
            FleetItem::Lagged { .. } => "lagged",
            FleetItem::Gap { .. } => "gap",
        };
        *self.stats.entry(kind).or_default() += 1;
        self.log(|| {
            format!(
                "  -> {}",
                super::merge::tests::show(&[Effect::Emit(item.clone())])
            )
        });
        let key_of_found =
            |f: &Found| -> Key { f.api_path.trim_start_matches("/e").parse().unwrap_or(0) };
        match item {
            FleetItem::Attached(f) => {
                let s = self.seen.entry(key_of_found(&f)).or_default();
                if s.attached {
                    return Err(format!("second Attached for {}", f.api_path));
                }
                s.attached = true;
            }
            FleetItem::Lagged {
                engine, resume_seq, ..
            } => {
                let s = self.seen.entry(key_of_found(&engine)).or_default();
                if s.next != Some(resume_seq) {
                    return Err(format!(
                        "Lagged resumes e{} at {resume_seq}, the subscriber is at {:?}",
                        key_of_found(&engine),
                        s.next
                    ));
                }
            }
            FleetItem::Gap { engine, from, to } => {
                let k = key_of_found(&engine);
                let s = self.seen.entry(k).or_default();
                if s.next != Some(from) || to < from {
                    return Err(format!(
                        "Gap e{k} {from}..={to}, the subscriber is at {:?}",
                        s.next
                    ));
                }
                s.next = Some(to + 1);
                s.gapped = true;
            }
            FleetItem::Vanished(f) => {
                let k = key_of_found(&f);
                let last = self.engine(k).map(|e| e.seq).unwrap_or(0);
                let s = self.seen.entry(k).or_default();
                if !s.view.is_empty() {
                    return Err(format!("e{k} vanished, still alive: {:?}", s.view));
                }
                if let Some(next) = s.next {
                    if next != last + 1 {
                        return Err(format!(
                            "e{k} vanished at seq {last}; delivered or told only up to {}",
                            next - 1
                        ));
                    }
                }
                s.vanished = true;
            }
            FleetItem::Event(ev) => {
                let id = ev.container.id.clone();
                let k = key_of(&id);
                let published = self.engine(k).and_then(|e| e.log.get(&ev.seq).cloned());
                let s = self.seen.entry(k).or_default();
                if s.vanished {
                    return Err(format!("event of e{k} after its Vanished: {id}"));
                }
                let alive = s.view.contains_key(&id);
                let strict = !s.gapped;
                if ev.synthetic {
                    match ev.kind {
                        EventKind::Started => {
                            if s.next != Some(ev.seq + 1) {
                                return Err(format!(
                                    "synthetic Started {id} #{}, the subscription starts at {:?}",
                                    ev.seq, s.next
                                ));
                            }
                            if alive {
                                return Err(format!("second Started for {id}"));
                            }
                            s.view.insert(id, ev.container.paused);
                        }
                        EventKind::Exited { .. } => {
                            if ev.seq != 0 || s.view.remove(&id).is_none() {
                                return Err(format!(
                                    "synthetic Exited for {id} not alive (#{})",
                                    ev.seq
                                ));
                            }
                        }
                        _ => return Err(format!("synthetic {:?}", ev.kind)),
                    }
                    return Ok(());
                }
                if s.next != Some(ev.seq) {
                    return Err(format!(
                        "e{k} event #{} ({id}) while expecting #{:?}",
                        ev.seq, s.next
                    ));
                }
                s.next = Some(ev.seq + 1);
                if published.as_ref().map(|(k, i)| (*k, i.as_str()))
                    != Some((ev.kind.as_str(), id.as_str()))
                {
                    return Err(format!(
                        "e{k} #{} is {} {id}, the engine published {published:?}",
                        ev.seq,
                        ev.kind.as_str()
                    ));
                }
                match ev.kind {
                    EventKind::Started => {
                        if alive && strict {
                            return Err(format!("second Started for {id} #{}", ev.seq));
                        }
                        s.view.insert(id, false);
                    }
                    EventKind::Exited { .. } => {
                        if s.view.remove(&id).is_none() && strict {
                            return Err(format!("Exited for {id} not alive #{}", ev.seq));
                        }
                    }
                    EventKind::Paused | EventKind::Unpaused => {
                        if !alive && strict {
                            return Err(format!("{} for {id} not alive", ev.kind.as_str()));
                        }
                        s.view.insert(id, ev.kind == EventKind::Paused);
                    }
                }
            }
        }
        Ok(())
    }

    /// A drained, listening, subscribed engine: the view equals the truth, every seq
    /// delivered or told.
    fn check_quiet(&self) -> Check {
        for e in &self.engines {
            let Some(sub) = &e.sub else { continue };
            let quiet = self.sources.contains(&e.key)
                && sub.queue.is_empty()
                && !sub.ended
                && !e.vanished
                && !self
                    .control
                    .iter()
                    .any(|c| matches!(c, Ctl::Synced(k) if *k == e.key));
            let Some(s) = self.seen.get(&e.key) else {
                continue;
            };
            if !quiet || s.next.is_none() {
                continue;
            }
            if s.next != Some(e.seq + 1) {
                return Err(format!(
                    "e{} drained at #{:?}, published up to #{}",
                    e.key,
                    s.next.map(|n| n - 1),
                    e.seq
                ));
            }
            if !s.gapped && s.view != e.truth {
                return Err(format!(
                    "e{} view {:?} != truth {:?}",
                    e.key, s.view, e.truth
                ));
            }
        }
        Ok(())
    }

    /// One random step; false once nothing is left to do.
    fn step(&mut self, wind_down: bool) -> Result<bool, String> {
        let live: Vec<usize> = (0..self.engines.len())
            .filter(|&i| !self.engines[i].vanished && !self.closed)
            .collect();
        let readable: Vec<Key> = self
            .sources
            .iter()
            .copied()
            .filter(|k| {
                self.engines.iter().any(|e| {
                    e.key == *k
                        && e.sub
                            .as_ref()
                            .is_some_and(|s| !s.queue.is_empty() || s.ended)
                })
            })
            .collect();
        let pending_control = !self.control.is_empty() || (self.closed && self.control_open);
        if wind_down && readable.is_empty() && !pending_control {
            return Ok(false);
        }
        let roll = self.rng.below(100);
        if !wind_down && roll < 35 && !live.is_empty() {
            let i = live[self.rng.below(live.len() as u64) as usize];
            let n = 1 + self.rng.below(3);
            let mut changes = Vec::new();
            let e = &mut self.engines[i];
            let mut alive: Vec<String> = e.truth.keys().cloned().collect();
            for _ in 0..n {
                let r = self.rng.below(10);
                if r < 4 || alive.is_empty() {
                    e.next_id += 1;
                    let id = format!("k{}:c{}", e.key, e.next_id);
                    alive.push(id.clone());
                    changes.push((EventKind::Started, id));
                } else {
                    let j = self.rng.below(alive.len() as u64) as usize;
                    let id = alive[j].clone();
                    let paused = changes
                        .iter()
                        .rev()
                        .find(|(_, c)| *c == id)
                        .map(|(k, _)| *k == EventKind::Paused)
                        .unwrap_or_else(|| e.truth.get(&id).copied().unwrap_or(false));
                    if r < 7 {
                        alive.remove(j);
                        let code = self.rng.below(3) as i32;
                        changes.push((
                            EventKind::Exited {
                                exit_code: Some(code),
                                oom: false,
                            },
                            id,
                        ));
                    } else if paused {
                        changes.push((EventKind::Unpaused, id));
                    } else {
                        changes.push((EventKind::Paused, id));
                    }
                }
            }
            let key = e.key;
            self.log(|| {
                format!(
                    "e{key} publishes {:?}",
                    changes
                        .iter()
                        .map(|(k, i)| format!("{} {i}", k.as_str()))
                        .collect::<Vec<_>>()
                )
            });
            self.engines[i].publish(changes);
        } else if !wind_down && roll < 40 && !self.closed && self.engines.len() < 6 {
            let i = self.attach_engine();
            let key = self.engines[i].key;
            self.control.push_back(Ctl::Attached(key));
        } else if !wind_down && roll < 50 {
            // First sync of an attached engine: the fleet subscribes the subscription.
            if let Some(i) = live.iter().copied().find(|&i| !self.engines[i].synced) {
                let e = &mut self.engines[i];
                e.sync();
                e.subscribe_now();
                let (key, start) = (e.key, e.seq);
                self.synced_at.insert(key, start);
                self.log(|| format!("e{key} synced at #{start}; subscribed"));
                self.control.push_back(Ctl::Synced(key));
            }
        } else if !wind_down && roll < 55 && !live.is_empty() {
            let i = live[self.rng.below(live.len() as u64) as usize];
            let held = self.rng.chance(30);
            let e = &mut self.engines[i];
            e.vanished = true;
            e.held = held;
            e.open = false;
            if let Some(s) = e.sub.as_mut() {
                s.ended = true;
            }
            let (key, last) = (e.key, e.seq);
            self.log(|| format!("e{key} vanishes at #{last} (watcher held: {held})"));
            self.control.push_back(Ctl::Vanished(key, last));
        } else if !wind_down && roll < 56 && self.rng.chance(20) && !self.closed {
            self.closed = true;
            self.log(|| "the fleet closes".to_string());
            for e in self.engines.iter_mut().filter(|e| !e.vanished) {
                e.open = false;
                if let Some(s) = e.sub.as_mut() {
                    s.ended = true;
                }
                self.control.push_back(Ctl::Closed(e.key, e.seq));
            }
        } else if pending_control && (readable.is_empty() || self.rng.chance(40)) {
            self.deliver_control()?;
        } else if !readable.is_empty() {
            let key = readable[self.rng.below(readable.len() as u64) as usize];
            self.deliver_item(key)?;
        }
        Ok(true)
    }

    fn deliver_control(&mut self) -> Check {
        let Some(c) = self.control.pop_front() else {
            if self.closed && self.control_open {
                self.control_open = false;
                self.log(|| "control ends".to_string());
                return self.feed(Input::ControlEnded);
            }
            return Ok(());
        };
        match c {
            Ctl::Attached(key) => {
                let engine = self.engine(key).map(|e| e.found.clone()).expect("engine");
                self.log(|| format!("ctl attached e{key}"));
                self.feed(Input::Attached { key, engine })
            }
            Ctl::Synced(key) => {
                let engine = self.engine(key).map(|e| e.found.clone()).expect("engine");
                self.log(|| format!("ctl synced e{key}"));
                self.sources.insert(key);
                let start = self.synced_at[&key];
                self.seen.entry(key).or_default().next = Some(start + 1);
                self.feed(Input::Subscribed { key, engine })
            }
            Ctl::Vanished(key, last_seq) => {
                let listening = self.sources.contains(&key);
                let e = self.engine(key).expect("engine");
                let engine = e.found.clone();
                let queued: Vec<Item> = match e.sub.as_mut() {
                    Some(s) if listening => s.queue.drain(..).collect(),
                    _ => Vec::new(),
                };
                self.log(|| format!("ctl vanished e{key} #{last_seq}, {} queued", queued.len()));
                self.feed(Input::Vanished {
                    key,
                    engine,
                    queued,
                    last_seq,
                    at: SystemTime::UNIX_EPOCH,
                })
            }
            Ctl::Closed(key, last_seq) => {
                self.log(|| format!("ctl closed e{key} #{last_seq}"));
                self.feed(Input::Closed { key, last_seq })
            }
        }
    }

    fn deliver_item(&mut self, key: Key) -> Check {
        let e = self.engine(key).expect("engine");
        let Some(s) = e.sub.as_mut() else {
            return Ok(());
        };
        match s.queue.pop_front() {
            Some(item) => {
                self.log(|| match &item {
                    Item::Event(e) => format!(
                        "e{key} item {} {} #{}{}",
                        e.kind.as_str(),
                        e.container.id,
                        e.seq,
                        if e.synthetic { " syn" } else { "" }
                    ),
                    other => format!("e{key} item {other:?}"),
                });
                self.feed(Input::Item { key, item })
            }
            None => {
                // Ended and drained: the channel is disconnected.
                self.log(|| format!("e{key} subscription ends"));
                self.sources.remove(&key);
                Ok(())
            }
        }
    }

    fn final_check(&self) -> Check {
        for e in &self.engines {
            let Some(s) = self.seen.get(&e.key) else {
                continue;
            };
            if e.vanished && self.control.is_empty() && !s.vanished {
                return Err(format!("e{} vanished, the subscriber was not told", e.key));
            }
            if self.closed {
                if let Some(next) = s.next {
                    if next != e.seq + 1 {
                        return Err(format!(
                            "fleet closed: e{} delivered or told up to {}, published {}",
                            e.key,
                            next - 1,
                            e.seq
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Runs one seed: `steps` random steps, then everything delivered; checked throughout.
fn run(seed: u64, steps: usize, trace: bool) -> Result<BTreeMap<&'static str, u64>, String> {
    let mut sim = Sim::new(seed, trace);
    for step in 0..steps {
        sim.step(false).map_err(|e| format!("step {step}: {e}"))?;
        sim.check_quiet().map_err(|e| format!("step {step}: {e}"))?;
    }
    let mut n = 0;
    while sim.step(true).map_err(|e| format!("wind-down {n}: {e}"))? {
        sim.check_quiet()
            .map_err(|e| format!("wind-down {n}: {e}"))?;
        n += 1;
        if n > 100_000 {
            return Err("does not wind down".into());
        }
    }
    sim.final_check()?;
    if sim.closed {
        *sim.stats.entry("fleet closed").or_default() += 1;
    }
    Ok(sim.stats)
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[test]
fn merge_simulation() {
    let (seeds, trace): (Vec<u64>, bool) = match env_u64("WHALEWATCHER_SIM_SEED") {
        Some(s) => (vec![s], true),
        None => (
            (0..env_u64("WHALEWATCHER_SIM_SEEDS").unwrap_or(400)).collect(),
            false,
        ),
    };
    let mut stats: BTreeMap<&str, u64> = BTreeMap::new();
    for seed in seeds {
        match run(seed, 300, trace) {
            Ok(s) => {
                for (k, n) in s {
                    *stats.entry(k).or_default() += n;
                }
            }
            Err(e) => panic!(
                "fleet merge simulation failed: seed {seed}, {e}\n\
                 replay: WHALEWATCHER_SIM_SEED={seed} cargo test --lib fleet::sim -- --nocapture"
            ),
        }
    }
    eprintln!("fleet merge simulation: {stats:?}");
    // The runs reach the paths they are for.
    for k in [
        "lagged",
        "gap",
        "resume failed",
        "vanished",
        "synthetic",
        "fleet closed",
    ] {
        assert!(
            stats.get(k).copied().unwrap_or(0) > 0,
            "no {k} in {stats:?}"
        );
    }
}

#[test]
fn the_prng_is_splitmix64() {
    // First outputs of splitmix64 seeded with 0 (reference values).
    let mut r = Rng(0);
    assert_eq!(r.next(), 0xe220_a839_7b1d_cdaf);
    assert_eq!(r.next(), 0x6e78_9e6a_a1b9_65f4);
}
