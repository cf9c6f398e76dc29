//! Watcher metrics against the scripted engine: every counter checked against what the
//! script made the engine do.

mod support;

use std::time::Duration;

use support::wait_until;
use whalewatcher::scripted::Script;
use whalewatcher::{ExponentialBackoff, Health, Item, Watcher, WatcherOptions};

const T: Duration = Duration::from_secs(10);

#[test]
fn counters_follow_what_the_engine_did() {
    let s = Script::new();
    s.start("a", "p");
    s.start("b", "");
    let w = Watcher::new(
        s.client(),
        WatcherOptions::default()
            .with_subscriber_capacity(2)
            .with_retry(|| {
                ExponentialBackoff::new(Duration::from_millis(5), Duration::from_millis(20))
            }),
    );
    w.wait_ready(T).unwrap();
    let m = w.metrics();
    assert_eq!((m.started, m.exited, m.resyncs), (2, 0, 1), "{m:?}");
    assert_eq!((m.raw_events, m.reconnect_attempts), (0, 0));
    assert_eq!(m.list.count, 1);
    assert!(m.list.min <= m.list.avg && m.list.avg <= m.list.max);
    assert_eq!(m.last_event, None);

    // Live: one start (inspected), a pause, an unpause, an exit.
    let sub = w.subscribe();
    assert_eq!(w.metrics().subscribers, 1);
    s.start("c", "");
    s.set_paused("a", true);
    s.set_paused("a", false);
    s.exit("b", 3);
    wait_until(T, "four live events", || {
        let m = w.metrics();
        m.started == 3 && m.paused == 1 && m.unpaused == 1 && m.exited == 1
    });
    let m = w.metrics();
    assert_eq!(m.raw_events, 4, "{m:?}");
    assert_eq!(m.inspect.count, 1);
    assert!(m.last_event.is_some());
    // The subscriber (capacity 2) did not read: 2 synthetic + 4 live events → lagged.
    let items: Vec<Item> = std::iter::from_fn(|| sub.try_recv()).collect();
    assert!(
        matches!(items.last(), Some(Item::Lagged { .. })),
        "{items:?}"
    );
    let m = w.metrics();
    assert_eq!((m.lagged_subscribers, m.subscribers), (1, 0), "{m:?}");

    // The stream breaks twice before it comes back: reconnect attempts, a second resync.
    s.break_streams(true);
    wait_until(T, "reconnecting", || {
        matches!(w.health(), Health::Reconnecting { .. })
    });
    wait_until(T, "two failed reconnects", || {
        w.metrics().reconnect_attempts >= 2
    });
    s.set_up();
    w.wait_ready(T).unwrap();
    wait_until(T, "second resync", || w.metrics().resyncs == 2);
    let m = w.metrics();
    assert!(m.reconnect_attempts >= 2, "{m:?}");
    assert_eq!(m.list.count, 2);
    assert_eq!(
        (m.started, m.exited),
        (3, 1),
        "no duplicate starts after a resync"
    );
}
