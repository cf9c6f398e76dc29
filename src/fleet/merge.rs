//! The merge logic of a [`FleetSubscription`](super::FleetSubscription) as a pure state
//! machine: one input in (an engine attached, the subscription to its watcher in place, an
//! item from that subscription, the outcome of a resume, the engine vanished, the fleet
//! closed), the resulting effects out (items for the subscriber, a resume to perform, a
//! source to drop). No threads, channels, clocks or locks: the subscription's `recv`
//! loop moves the inputs and carries out the effects.
//!
//! What it guarantees, per engine, to the subscriber:
//! - **Exact or told.** The events of an engine arrive in order, each once (a replayed
//!   event the subscriber already has is dropped), or a [`FleetItem::Gap`] naming the
//!   engine says which sequence numbers it will never get. A queue overflow is resumed
//!   from the engine's journal ([`FleetItem::Lagged`] then the replay); when the engine's
//!   watcher is gone before the resume (the engine vanished, the fleet closed), the
//!   subscriber gets `Gap { from: resume_seq, to: last seq the engine published }`.
//! - **Nothing alive after `Vanished`.** The machine tracks, from the events the
//!   subscriber was actually given, which containers of each engine it has been told are
//!   alive; when the engine vanishes it emits a synthetic `Exited` (`seq` 0, no exit code)
//!   for exactly those, after the events still queued for the subscriber, then `Vanished`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use crate::container::Container;
use crate::discover::Found;
use crate::event::{ContainerEvent, EventKind};
use crate::watcher::Item;

use super::subscription::FleetItem;

/// Names one attachment of an engine (a restarted engine gets a new key).
pub(crate) type Key = u64;

/// What the machine is told.
#[derive(Debug, Clone)]
pub(crate) enum Input {
    /// The fleet attached an engine; the subscriber hears of it now, its synthetic
    /// `Started` events follow once its watcher has synced.
    Attached { key: Key, engine: Arc<Found> },
    /// The subscription to the engine's watcher is in place (its items follow).
    Subscribed { key: Key, engine: Arc<Found> },
    /// An item from the engine's subscription.
    Item { key: Key, item: Item },
    /// The outcome of an [`Effect::Resume`]: `ok` when the engine's watcher was still
    /// there and the subscription replays from its journal.
    Resumed { key: Key, ok: bool },
    /// The engine vanished: `queued` is what its subscription still held for us, in
    /// order; `last_seq` the last sequence number its watcher published; `at` now.
    Vanished {
        key: Key,
        engine: Arc<Found>,
        queued: Vec<Item>,
        last_seq: u64,
        at: SystemTime,
    },
    /// The fleet closed; the engine's watcher published nothing after `last_seq`. Its
    /// subscription still drains.
    Closed { key: Key, last_seq: u64 },
    /// The fleet's control channel ended (no `Closed` or `Vanished` will come).
    ControlEnded,
}

/// What the machine asks for.
#[derive(Debug, Clone)]
pub(crate) enum Effect {
    /// Give this item to the subscriber.
    Emit(FleetItem),
    /// Replace the engine's subscription by one replaying the journal after `after`,
    /// then answer with [`Input::Resumed`].
    Resume { key: Key, after: u64 },
    /// Stop listening to the engine's subscription.
    Drop { key: Key },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lag {
    missed: u64,
    resume_seq: u64,
}

#[derive(Debug)]
struct Engine {
    found: Arc<Found>,
    /// The containers the subscriber has been told are alive, as last described.
    told: BTreeMap<String, Arc<Container>>,
    /// Highest sequence number given to the subscriber (synthetic events included: they
    /// carry the sequence number their snapshot reflects).
    seen: u64,
    /// A resume asked for and not answered yet.
    resuming: Option<Lag>,
    /// Events from `resume_seq` on will never come; not yet told (waits for `last_seq`).
    lost: Option<Lag>,
    /// The engine's last sequence number, once the fleet closed.
    last_seq: Option<u64>,
}

impl Engine {
    fn new(found: Arc<Found>) -> Self {
        Engine {
            found,
            told: BTreeMap::new(),
            seen: 0,
            resuming: None,
            lost: None,
            last_seq: None,
        }
    }

    fn gap(&self, from: u64, to: u64) -> Effect {
        Effect::Emit(FleetItem::Gap {
            engine: self.found.clone(),
            from,
            to: to.max(from),
        })
    }

    /// Passes an event on unless the subscriber already has it; keeps `told` current.
    fn event(&mut self, e: ContainerEvent, out: &mut Vec<Effect>) {
        if !e.synthetic && e.seq <= self.seen {
            return; // a replayed event the subscriber already has
        }
        self.seen = self.seen.max(e.seq);
        match e.kind {
            EventKind::Exited { .. } => {
                self.told.remove(&e.container.id);
            }
            EventKind::Started | EventKind::Paused | EventKind::Unpaused => {
                self.told
                    .insert(e.container.id.clone(), e.container.clone());
            }
        }
        out.push(Effect::Emit(FleetItem::Event(e)));
    }

    /// Remembers a loss (the earliest one wins: everything after it is lost too).
    fn lose(&mut self, lag: Lag) {
        if self.lost.is_none() {
            self.lost = Some(lag);
        }
    }
}

/// The merge state of one fleet subscription.
#[derive(Debug, Default)]
pub(crate) struct Merge {
    engines: BTreeMap<Key, Engine>,
}

impl Merge {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Takes one input, returns the effects in order.
    pub(crate) fn handle(&mut self, input: Input) -> Vec<Effect> {
        let mut out = Vec::new();
        match input {
            Input::Attached { key, engine } => {
                self.engines
                    .entry(key)
                    .or_insert_with(|| Engine::new(engine.clone()));
                out.push(Effect::Emit(FleetItem::Attached(engine)));
            }
            Input::Subscribed { key, engine } => {
                self.engines
                    .entry(key)
                    .or_insert_with(|| Engine::new(engine));
            }
            Input::Item { key, item } => {
                let Some(e) = self.engines.get_mut(&key) else {
                    out.push(Effect::Drop { key }); // never subscribed: nothing to merge
                    return out;
                };
                match item {
                    Item::Event(ev) => e.event(ev, &mut out),
                    Item::Lagged { missed, resume_seq } => {
                        e.resuming = Some(Lag { missed, resume_seq });
                        out.push(Effect::Resume {
                            key,
                            after: resume_seq.saturating_sub(1),
                        });
                    }
                    Item::Gap { from, to } => out.push(e.gap(from, to)),
                }
            }
            Input::Resumed { key, ok } => {
                let Some(e) = self.engines.get_mut(&key) else {
                    return out;
                };
                let Some(lag) = e.resuming.take() else {
                    return out;
                };
                if ok {
                    out.push(Effect::Emit(FleetItem::Lagged {
                        engine: e.found.clone(),
                        missed: lag.missed,
                        resume_seq: lag.resume_seq,
                    }));
                } else {
                    out.push(Effect::Drop { key });
                    e.lose(lag);
                    if let (Some(lost), Some(last)) = (e.lost, e.last_seq) {
                        out.push(e.gap(lost.resume_seq, last));
                        e.lost = None;
                    }
                }
            }
            Input::Vanished {
                key,
                engine,
                queued,
                last_seq,
                at,
            } => {
                out.push(Effect::Drop { key });
                let mut e = self
                    .engines
                    .remove(&key)
                    .unwrap_or_else(|| Engine::new(engine.clone()));
                if let Some(lag) = e.resuming.take() {
                    e.lose(lag);
                }
                for item in queued {
                    match item {
                        Item::Event(ev) => e.event(ev, &mut out),
                        // No resume: the engine is gone.
                        Item::Lagged { missed, resume_seq } => e.lose(Lag { missed, resume_seq }),
                        Item::Gap { from, to } => out.push(e.gap(from, to)),
                    }
                }
                if let Some(lost) = e.lost.take() {
                    out.push(e.gap(lost.resume_seq, last_seq));
                }
                for container in std::mem::take(&mut e.told).into_values() {
                    out.push(Effect::Emit(FleetItem::Event(ContainerEvent {
                        seq: 0,
                        time: at,
                        kind: EventKind::Exited {
                            exit_code: None,
                            oom: false,
                        },
                        container,
                        synthetic: true,
                    })));
                }
                out.push(Effect::Emit(FleetItem::Vanished(engine)));
            }
            Input::Closed { key, last_seq } => {
                let Some(e) = self.engines.get_mut(&key) else {
                    return out;
                };
                e.last_seq = Some(last_seq);
                if let Some(lost) = e.lost.take() {
                    out.push(e.gap(lost.resume_seq, last_seq));
                }
            }
            Input::ControlEnded => {
                for e in self.engines.values_mut() {
                    if let Some(lost) = e.lost.take() {
                        // The best bound known: the batch that overflowed.
                        let to = lost.resume_seq + lost.missed.saturating_sub(1);
                        out.push(e.gap(lost.resume_seq, to));
                    }
                }
            }
        }
        out
    }

    /// The containers of engine `key` the subscriber has been told are alive (tests).
    #[cfg(test)]
    pub(crate) fn told(&self, key: Key) -> Vec<String> {
        self.engines
            .get(&key)
            .map(|e| e.told.keys().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Table tests in the style of httparse's: per case, the inputs in order and, for each,
    //! the effects it must produce, written compactly (see `show`).

    use super::*;
    use crate::discover::Source;
    use crate::engine::EngineKind;

    pub(crate) fn found(key: Key) -> Arc<Found> {
        Arc::new(Found {
            kind: EngineKind::Docker,
            api_path: format!("/e{key}"),
            pid: Some(key as u32),
            inode: None,
            source: Source::Process,
            managed_by: None,
        })
    }

    fn ev(kind: EventKind, id: &str, seq: u64, synthetic: bool, paused: bool) -> Item {
        let mut c = Container::new(id, format!("name-{id}"), 1);
        c.paused = paused;
        Item::Event(ContainerEvent {
            seq,
            time: SystemTime::UNIX_EPOCH,
            kind,
            container: Arc::new(c),
            synthetic,
        })
    }
    fn syn(id: &str, seq: u64) -> Item {
        ev(EventKind::Started, id, seq, true, false)
    }
    fn started(id: &str, seq: u64) -> Item {
        ev(EventKind::Started, id, seq, false, false)
    }
    fn exited(id: &str, seq: u64) -> Item {
        let kind = EventKind::Exited {
            exit_code: Some(3),
            oom: false,
        };
        ev(kind, id, seq, false, false)
    }
    fn paused(id: &str, seq: u64) -> Item {
        ev(EventKind::Paused, id, seq, false, true)
    }
    fn lagged(missed: u64, resume_seq: u64) -> Item {
        Item::Lagged { missed, resume_seq }
    }
    fn gap(from: u64, to: u64) -> Item {
        Item::Gap { from, to }
    }
    fn att(key: Key) -> Input {
        Input::Attached {
            key,
            engine: found(key),
        }
    }
    fn sub(key: Key) -> Input {
        Input::Subscribed {
            key,
            engine: found(key),
        }
    }
    fn item(key: Key, item: Item) -> Input {
        Input::Item { key, item }
    }
    fn resumed(key: Key, ok: bool) -> Input {
        Input::Resumed { key, ok }
    }
    fn vanished(key: Key, queued: Vec<Item>, last_seq: u64) -> Input {
        Input::Vanished {
            key,
            engine: found(key),
            queued,
            last_seq,
            at: SystemTime::UNIX_EPOCH,
        }
    }
    fn closed(key: Key, last_seq: u64) -> Input {
        Input::Closed { key, last_seq }
    }

    fn engine(f: &Found) -> &str {
        f.api_path.trim_start_matches('/')
    }

    /// `attached e1`, `started c1 #3 syn`, `exited c1 #0 syn paused`, `lagged e1 2@5`,
    /// `gap e1 5..=9`, `vanished e1`, `resume e1 >4`, `drop e1`; joined by `; `.
    pub(crate) fn show(effects: &[Effect]) -> String {
        let one = |e: &Effect| match e {
            Effect::Emit(FleetItem::Event(ev)) => format!(
                "{} {} #{}{}{}",
                ev.kind.as_str(),
                ev.container.id,
                ev.seq,
                if ev.synthetic { " syn" } else { "" },
                if ev.container.paused { " paused" } else { "" }
            ),
            Effect::Emit(FleetItem::Attached(f)) => format!("attached {}", engine(f)),
            Effect::Emit(FleetItem::Vanished(f)) => format!("vanished {}", engine(f)),
            Effect::Emit(FleetItem::Lagged {
                engine: f,
                missed,
                resume_seq,
            }) => format!("lagged {} {missed}@{resume_seq}", engine(f)),
            Effect::Emit(FleetItem::Gap {
                engine: f,
                from,
                to,
            }) => {
                format!("gap {} {from}..={to}", engine(f))
            }
            Effect::Resume { key, after } => format!("resume e{key} >{after}"),
            Effect::Drop { key } => format!("drop e{key}"),
        };
        effects.iter().map(one).collect::<Vec<_>>().join("; ")
    }

    type Case = (&'static str, Vec<(Input, &'static str)>);

    fn cases() -> Vec<Case> {
        vec![
            (
                "attached, subscribed, snapshot then live events",
                vec![
                    (att(1), "attached e1"),
                    (sub(1), ""),
                    (item(1, syn("c1", 2)), "started c1 #2 syn"),
                    (item(1, started("c2", 3)), "started c2 #3"),
                    (item(1, exited("c1", 4)), "exited c1 #4"),
                    (
                        vanished(1, vec![], 4),
                        "drop e1; exited c2 #0 syn; vanished e1",
                    ),
                ],
            ),
            (
                "lag resumed from the journal: Lagged, then the replay without repeats",
                vec![
                    (sub(1), ""),
                    (item(1, started("c1", 1)), "started c1 #1"),
                    (item(1, lagged(2, 2)), "resume e1 >1"),
                    (resumed(1, true), "lagged e1 2@2"),
                    (item(1, started("c1", 1)), ""),
                    (item(1, started("c2", 2)), "started c2 #2"),
                    (item(1, exited("c2", 3)), "exited c2 #3"),
                ],
            ),
            (
                "lag not resumable (watcher gone), then the engine vanishes: Gap to its \
                 last seq, Exited for what the subscriber was told",
                vec![
                    (sub(1), ""),
                    (item(1, started("c1", 1)), "started c1 #1"),
                    (item(1, started("c2", 2)), "started c2 #2"),
                    (item(1, lagged(3, 3)), "resume e1 >2"),
                    (resumed(1, false), "drop e1"),
                    (
                        vanished(1, vec![], 9),
                        "drop e1; gap e1 3..=9; exited c1 #0 syn; exited c2 #0 syn; vanished e1",
                    ),
                ],
            ),
            (
                "vanished with events and a Lagged still queued: events first, then the \
                 Gap, then the exits of what is alive for the subscriber",
                vec![
                    (sub(1), ""),
                    (item(1, syn("c1", 1)), "started c1 #1 syn"),
                    (
                        vanished(1, vec![started("c2", 2), exited("c1", 3), lagged(2, 4)], 5),
                        "drop e1; started c2 #2; exited c1 #3; gap e1 4..=5; \
                         exited c2 #0 syn; vanished e1",
                    ),
                ],
            ),
            (
                "vanished while a resume was asked for: no resume any more, Gap",
                vec![
                    (sub(1), ""),
                    (item(1, started("c1", 1)), "started c1 #1"),
                    (item(1, lagged(1, 2)), "resume e1 >1"),
                    (
                        vanished(1, vec![], 2),
                        "drop e1; gap e1 2..=2; exited c1 #0 syn; vanished e1",
                    ),
                    (resumed(1, true), ""),
                ],
            ),
            (
                "a journal Gap from the watcher passes through, naming the engine",
                vec![
                    (sub(1), ""),
                    (item(1, lagged(9, 2)), "resume e1 >1"),
                    (resumed(1, true), "lagged e1 9@2"),
                    (item(1, gap(2, 5)), "gap e1 2..=5"),
                    (item(1, started("c6", 6)), "started c6 #6"),
                    (
                        vanished(1, vec![gap(7, 7)], 7),
                        "drop e1; gap e1 7..=7; exited c6 #0 syn; vanished e1",
                    ),
                ],
            ),
            (
                "an engine attached but never synced vanishes: no exits",
                vec![
                    (att(1), "attached e1"),
                    (vanished(1, vec![], 0), "drop e1; vanished e1"),
                ],
            ),
            (
                "an engine this subscription never heard of vanishes",
                vec![(vanished(7, vec![], 3), "drop e7; vanished e7")],
            ),
            (
                "the synthetic exit describes the container as last told (paused)",
                vec![
                    (sub(1), ""),
                    (item(1, syn("c1", 1)), "started c1 #1 syn"),
                    (item(1, paused("c1", 2)), "paused c1 #2 paused"),
                    (
                        vanished(1, vec![], 2),
                        "drop e1; exited c1 #0 syn paused; vanished e1",
                    ),
                ],
            ),
            (
                "fleet closed first, lag later: Gap as soon as the resume fails",
                vec![
                    (sub(1), ""),
                    (item(1, started("c1", 1)), "started c1 #1"),
                    (closed(1, 6), ""),
                    (item(1, lagged(5, 2)), "resume e1 >1"),
                    (resumed(1, false), "drop e1; gap e1 2..=6"),
                    (Input::ControlEnded, ""),
                ],
            ),
            (
                "lag first, fleet closed later: Gap when the last seq is known",
                vec![
                    (sub(1), ""),
                    (item(1, lagged(5, 2)), "resume e1 >1"),
                    (resumed(1, false), "drop e1"),
                    (closed(1, 6), "gap e1 2..=6"),
                    (Input::ControlEnded, ""),
                ],
            ),
            (
                "control ends with a loss untold: Gap over the overflowing batch",
                vec![
                    (sub(1), ""),
                    (item(1, lagged(5, 2)), "resume e1 >1"),
                    (resumed(1, false), "drop e1"),
                    (Input::ControlEnded, "gap e1 2..=6"),
                ],
            ),
            (
                "two engines are independent; a restarted engine is a new key",
                vec![
                    (sub(1), ""),
                    (sub(2), ""),
                    (item(1, started("a", 1)), "started a #1"),
                    (item(2, started("b", 1)), "started b #1"),
                    (item(2, lagged(1, 2)), "resume e2 >1"),
                    (item(1, started("a2", 2)), "started a2 #2"),
                    (resumed(2, true), "lagged e2 1@2"),
                    (
                        vanished(1, vec![], 2),
                        "drop e1; exited a #0 syn; exited a2 #0 syn; vanished e1",
                    ),
                    (att(3), "attached e3"),
                    (sub(3), ""),
                    (item(3, syn("a", 0)), "started a #0 syn"),
                    (item(2, started("b2", 2)), "started b2 #2"),
                ],
            ),
            (
                "items of an engine never subscribed are refused; spurious resumes ignored",
                vec![
                    (item(3, started("x", 1)), "drop e3"),
                    (resumed(3, true), ""),
                    (sub(1), ""),
                    (resumed(1, false), ""),
                    (closed(4, 1), ""),
                ],
            ),
            (
                "an exit the subscriber was not told of still passes (the engine's word)",
                vec![
                    (sub(1), ""),
                    (item(1, exited("c9", 3)), "exited c9 #3"),
                    (vanished(1, vec![], 3), "drop e1; vanished e1"),
                ],
            ),
        ]
    }

    #[test]
    fn table() {
        for (name, steps) in cases() {
            let mut m = Merge::new();
            for (i, (input, want)) in steps.into_iter().enumerate() {
                let what = format!("{input:?}");
                let got = show(&m.handle(input));
                assert_eq!(got, want, "case {name:?}, step {i}: {what}");
            }
        }
    }

    #[test]
    fn told_follows_the_stream() {
        let mut m = Merge::new();
        m.handle(sub(1));
        m.handle(item(1, syn("a", 1)));
        m.handle(item(1, started("b", 2)));
        m.handle(item(1, paused("b", 3)));
        m.handle(item(1, exited("a", 4)));
        m.handle(item(1, started("a", 2))); // a repeat: ignored
        assert_eq!(m.told(1), vec!["b".to_string()]);
        m.handle(vanished(1, vec![], 4));
        assert!(m.told(1).is_empty());
    }
}
