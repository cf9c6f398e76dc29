//! THE event-stream replayer: replays a watcher's events per container, checking that the
//! sequence is valid.

use std::collections::BTreeMap;

use whalewatcher::{ContainerEvent, EventKind};

/// Replays each container's event sequence, checking it is valid (no Exited or pause
/// without Started, no double Started, pause/unpause only while alive and in the right
/// state, strictly increasing live seq); returns the final (alive, paused) per id.
pub fn replay(events: &[ContainerEvent]) -> BTreeMap<String, (bool, bool)> {
    let mut st: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    let mut last_seq = 0;
    for e in events {
        if !e.synthetic {
            assert!(e.seq > last_seq, "seq not increasing at {e:?}");
            last_seq = e.seq;
        }
        let s = st.entry(e.container.id.clone()).or_insert((false, false));
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
            }
            EventKind::Exited { .. } => {
                if !s.0 {
                    bad("Exited without Started");
                }
                *s = (false, false);
            }
            EventKind::Paused => {
                if !s.0 || s.1 {
                    bad("Paused while not alive or already paused");
                }
                s.1 = true;
            }
            EventKind::Unpaused => {
                if !s.0 || !s.1 {
                    bad("Unpaused while not alive or not paused");
                }
                s.1 = false;
            }
        }
        assert!(
            matches!(e.kind, EventKind::Exited { .. }) || e.container.paused == s.1,
            "event {:?} carries paused={} for {}",
            e.kind,
            e.container.paused,
            e.container.name
        );
    }
    st
}
