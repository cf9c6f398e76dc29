//! THE event-stream replayer: replays a watcher's events per container, checking that
//! each container's sequence is valid, into the alive set the stream describes.

use std::collections::{BTreeMap, HashMap};

use whalewatcher::{ContainerEvent, EventKind, Item, Subscription};

/// A replay of a subscriber's events. Each event is checked: no Exited or pause without
/// Started, no double Started, pause/unpause only while alive and in the other state, the
/// paused flag each event carries agrees, live seqs strictly increase.
#[derive(Default)]
pub struct Replay {
    /// The alive containers the stream describes: id → (pid, paused).
    pub alive: HashMap<String, (u32, bool)>,
    /// Every container seen: id → (alive, paused) after its last event.
    pub states: BTreeMap<String, (bool, bool)>,
    /// Every event applied, in order.
    pub events: Vec<ContainerEvent>,
    last_seq: u64,
}

impl Replay {
    /// Applies one event; panics when the sequence is invalid.
    pub fn apply(&mut self, e: &ContainerEvent) {
        if !e.synthetic {
            assert!(
                e.seq > self.last_seq,
                "seq not increasing: {} after {} at {e:?}",
                e.seq,
                self.last_seq
            );
            self.last_seq = e.seq;
        }
        let id = &e.container.id;
        let s = self.states.entry(id.clone()).or_insert((false, false));
        let bad = |why: &str| -> ! {
            panic!(
                "{why}: {:?} of {} ({})",
                e.kind, e.container.name, e.container.id
            )
        };
        match e.kind {
            EventKind::Started => {
                if s.0 {
                    bad("double Started");
                }
                *s = (true, e.container.paused);
                self.alive
                    .insert(id.clone(), (e.container.pid, e.container.paused));
            }
            EventKind::Exited { .. } => {
                if !s.0 {
                    bad("Exited without Started");
                }
                *s = (false, false);
                self.alive.remove(id);
            }
            EventKind::Paused | EventKind::Unpaused => {
                let paused = e.kind == EventKind::Paused;
                if !s.0 || s.1 == paused {
                    bad("pause state unchanged, or container not alive");
                }
                s.1 = paused;
                if let Some(a) = self.alive.get_mut(id) {
                    a.1 = paused;
                }
            }
        }
        assert!(
            matches!(e.kind, EventKind::Exited { .. }) || e.container.paused == s.1,
            "event {:?} carries paused={} for {}",
            e.kind,
            e.container.paused,
            e.container.name
        );
        self.events.push(e.clone());
    }

    /// Applies an item that must be an event.
    pub fn apply_item(&mut self, item: Item) {
        match item {
            Item::Event(e) => self.apply(&e),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Applies every item the subscription has right now.
    pub fn drain(&mut self, sub: &Subscription) {
        while let Some(i) = sub.try_recv() {
            self.apply_item(i);
        }
    }

    /// (container id, event kind name) of every event applied, in order.
    pub fn log(&self) -> Vec<(String, &'static str)> {
        self.events
            .iter()
            .map(|e| (e.container.id.clone(), e.kind.as_str()))
            .collect()
    }
}

/// Replays `events` ([`Replay`]); the final (alive, paused) of every container seen.
pub fn replay(events: &[ContainerEvent]) -> BTreeMap<String, (bool, bool)> {
    let mut r = Replay::default();
    for e in events {
        r.apply(e);
    }
    r.states
}
