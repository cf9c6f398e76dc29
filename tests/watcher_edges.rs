//! Issue 13, end to end against the scripted engine: each test failed on ef5c2da (the
//! comment says where) and passes with the state machine.

mod support;

use std::time::Duration;

use support::wait_until;
use whalewatcher::scripted::Script;
use whalewatcher::{
    ContainerEvent, EventKind, ExponentialBackoff, Health, Item, Since, Subscription, Watcher,
    WatcherOptions,
};

const T: Duration = Duration::from_secs(10);

fn options() -> WatcherOptions {
    WatcherOptions::default()
        .with_retry(|| ExponentialBackoff::new(Duration::from_millis(5), Duration::from_millis(50)))
}

/// Every event item until `done` says stop (or the timeout).
fn collect_until(
    sub: &Subscription,
    mut done: impl FnMut(&[ContainerEvent]) -> bool,
) -> Vec<ContainerEvent> {
    let mut got = Vec::new();
    wait_until(T, "expected events", || {
        while let Some(i) = sub.try_recv() {
            match i {
                Item::Event(e) => got.push(e),
                other => panic!("unexpected {other:?} after {got:?}"),
            }
        }
        done(&got)
    });
    got
}

fn exited(code: i32) -> EventKind {
    EventKind::Exited {
        exit_code: Some(code),
        oom: false,
    }
}

/// Item 1: the inspect of a just-started container fails its attempts. On ef5c2da the
/// attempts ran back to back and the container was forgotten (sync.rs `inspected`, "giving
/// up inspecting"), health Synced; its exit was then ignored. Now: backoff, then a relist
/// accounts for it.
#[test]
fn failing_inspects_retry_then_relist() {
    let s = Script::new();
    let w = Watcher::new(s.client(), options());
    w.wait_ready(T).unwrap();
    let sub = w.subscribe();
    s.fail_next_inspects(3);
    s.start("x", "");
    let got = collect_until(&sub, |g| !g.is_empty());
    assert_eq!(got[0].kind, EventKind::Started);
    assert_eq!(got[0].container.id, "x");
    wait_until(T, "synced with x", || {
        w.health().is_synced() && w.portfolio().get("x").is_some()
    });
    assert!(s.lists() >= 2, "relisted");
    s.exit("x", 4);
    let got = collect_until(&sub, |g| !g.is_empty());
    assert_eq!(got[0].kind, exited(4));
}

/// Item 2: a listing retry policy that gives up. On ef5c2da health said Failed but the
/// event reader kept running (its stream stayed open, events were buffered without bound)
/// and subscriptions stayed open. Now Failed is terminal: every thread stops, every
/// subscription ends.
#[test]
fn listing_gives_up_failed_is_terminal() {
    let s = Script::new();
    s.start("a", "");
    s.fail_next_lists(100);
    let opts = WatcherOptions::default().with_retry(|| {
        ExponentialBackoff::new(Duration::from_millis(1), Duration::from_millis(2))
            .with_max_attempts(2)
    });
    let w = Watcher::new(s.client(), opts);
    let sub = w.subscribe();
    let err = w.wait_ready(T).unwrap_err();
    assert!(matches!(err, whalewatcher::Error::GaveUp { .. }), "{err}");
    wait_until(T, "the subscription ends", || sub.is_ended());
    wait_until(T, "the event stream is closed", || {
        s.start(&format!("probe{}", s.alive_ids().len()), "");
        s.open_streams() == 0
    });
    assert_eq!(w.subscriber_count(), 0);
    assert!(w
        .subscribe()
        .recv_timeout(Duration::from_millis(50))
        .is_none());
    assert!(matches!(w.health(), Health::Failed(_)));
    w.close();
}

/// Item 4: the listing fails after the stream reopened. On ef5c2da `HealthCell::lost` was
/// called after health had gone to Syncing, so `since` moved forward to the listing
/// failure. Now it stays the first loss.
#[test]
fn reconnecting_since_stays_the_first_loss() {
    let s = Script::new();
    let w = Watcher::new(s.client(), options());
    w.wait_ready(T).unwrap();
    s.break_streams(true);
    let since = {
        let mut since = None;
        wait_until(T, "Reconnecting", || {
            if let Health::Reconnecting { since: t, .. } = w.health() {
                since = Some(t);
            }
            since.is_some()
        });
        since.unwrap()
    };
    let lists = s.lists();
    s.fail_next_lists(3);
    s.set_up();
    wait_until(T, "failed listings after the stream reopened", || {
        s.lists() >= lists + 2
    });
    let mut seen = Vec::new();
    wait_until(T, "synced again", || {
        if let Health::Reconnecting { since: t, .. } = w.health() {
            seen.push(t);
        }
        w.health().is_synced()
    });
    assert!(!seen.is_empty(), "Reconnecting after the failed listings");
    assert!(seen.iter().all(|t| *t == since), "{since:?} vs {seen:?}");
}

/// Item 6: a subscription made before the first sync, with more containers than its
/// queue capacity. On ef5c2da the first listing's Started events went through the bounded
/// queue as live events (hub.rs `publish`: Lagged after 1024). Now every one arrives,
/// marked synthetic.
#[test]
fn subscribe_before_ready_gets_every_container_synthetic() {
    let s = Script::new();
    for i in 0..3000 {
        s.start(&format!("c{i:04}"), "");
    }
    let w = Watcher::new(s.client(), options().with_subscriber_capacity(100));
    let sub = w.subscribe();
    w.wait_ready(T).unwrap();
    let got = collect_until(&sub, |g| g.len() >= 3000);
    assert_eq!(got.len(), 3000);
    assert!(got
        .iter()
        .all(|e| e.synthetic && e.kind == EventKind::Started));
    // then live events as usual
    s.exit("c0000", 1);
    let got = collect_until(&sub, |g| !g.is_empty());
    assert!(!got[0].synthetic && got[0].kind == exited(1));
}

/// Item 7: a one-shot container (`docker run --rm ... sh -c "exit 3"`): it starts, exits
/// and is removed before its inspect runs. On ef5c2da the die won over the inspect in
/// flight (sync.rs `apply_live`: `self.pending.remove`) and nothing was reported.
#[test]
fn short_lived_removed_container_is_reported() {
    let s = Script::new();
    let w = Watcher::new(s.client(), options());
    w.wait_ready(T).unwrap();
    let sub = w.subscribe();
    s.before_inspect(|s| {
        s.exit("job", 3);
        s.remove("job");
        assert!(s.wait_delivered(), "events not delivered");
    });
    s.start("job", "batch");
    let got = collect_until(&sub, |g| g.len() >= 2);
    assert_eq!(got[0].kind, EventKind::Started);
    assert_eq!(got[1].kind, exited(3));
    assert_eq!(got[0].container.id, "job");
    assert_eq!(got[0].container.project, "batch", "project from the event");
    assert_eq!(got[0].container.pid, 0);
    assert!(w.portfolio().get("job").is_none());
}

/// Item 8: a container killed while the watcher was away. On ef5c2da the resync said
/// `exit_code: null` (sync.rs `resync`: `unwrap_or((None, false, now))`). Now the engine is
/// asked; null only for the one it no longer knows.
#[test]
fn exits_while_away_carry_the_engines_exit_code() {
    let s = Script::new();
    for id in ["killed", "removed", "stays"] {
        s.start(id, "");
    }
    let w = Watcher::new(s.client(), options());
    w.wait_ready(T).unwrap();
    let sub = w.subscribe();
    while sub.try_recv().is_some() {}
    s.break_streams(true);
    wait_until(T, "Reconnecting", || {
        matches!(w.health(), Health::Reconnecting { .. })
    });
    s.exit_with("killed", 137, true, false);
    s.exit_with("removed", 1, false, false);
    s.remove("removed");
    s.set_up();
    let got = collect_until(&sub, |g| g.len() >= 2);
    let kind = |id: &str| got.iter().find(|e| e.container.id == id).unwrap().kind;
    assert_eq!(
        kind("killed"),
        EventKind::Exited {
            exit_code: Some(137),
            oom: true
        }
    );
    assert_eq!(
        kind("removed"),
        EventKind::Exited {
            exit_code: None,
            oom: false
        }
    );
    assert_eq!(got.len(), 2, "{got:?}");
}

/// Item 9a: `[die(1), start, die(2)]` buffered during one listing. On ef5c2da the old
/// container's Exited carried code 2 (the buffered exits map kept the last one) and the
/// second incarnation was not reported.
#[test]
fn die_start_die_during_one_listing() {
    let s = Script::new();
    s.start("x", "");
    let w = Watcher::new(s.client(), options());
    w.wait_ready(T).unwrap();
    let sub = w.subscribe();
    while sub.try_recv().is_some() {}
    s.after_list_snapshot(|s| {
        s.exit("x", 1);
        s.start("x", "");
        s.exit("x", 2);
        assert!(s.wait_delivered(), "events not delivered");
    });
    s.break_streams(false);
    let got = collect_until(&sub, |g| g.len() >= 3);
    s.clear_hooks();
    let kinds: Vec<_> = got.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [exited(1), EventKind::Started, exited(2)], "{got:?}");
    assert!(w.portfolio().get("x").is_none());
}

/// Item 9b: Lagged.missed counts only the events the filter delivers. On ef5c2da every
/// published event after the overflow counted (hub.rs `publish`: `missed += 1` before the
/// filter check).
#[test]
fn lagged_missed_counts_only_filtered_events() {
    let s = Script::new();
    s.start("a", "");
    s.start("b", "");
    let w = Watcher::new(s.client(), options().with_subscriber_capacity(1));
    w.wait_ready(T).unwrap();
    let one = w.subscribe_container(Since::Now, "a");
    s.set_paused("a", true); // fits (capacity 1 + 1 synthetic)
    s.set_paused("a", false); // overflows
    for i in 0..10 {
        s.set_paused("b", i % 2 == 0);
    }
    wait_until(T, "all published", || {
        w.portfolio().get("b").is_some_and(|b| !b.paused) && w.portfolio().seq() >= 14
    });
    let items: Vec<_> = std::iter::from_fn(|| one.try_recv()).collect();
    assert!(
        matches!(items.last(), Some(Item::Lagged { missed: 1, .. })),
        "{items:?}"
    );
}

/// Item 9c: a dropped subscription stops counting at once. On ef5c2da it was counted
/// until the next publish found its receiver gone.
#[test]
fn dropped_subscription_stops_counting_at_once() {
    let s = Script::new();
    let w = Watcher::new(s.client(), options());
    w.wait_ready(T).unwrap();
    let a = w.subscribe();
    let b = w.subscribe_from(whalewatcher::Since::Seq(0));
    assert_eq!(w.subscriber_count(), 2);
    drop(a);
    assert_eq!(w.subscriber_count(), 1);
    assert_eq!(w.metrics().subscribers, 1);
    drop(b);
    assert_eq!(w.metrics().subscribers, 0);
}
