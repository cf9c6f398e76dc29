//! The sync algorithm against the scripted engine: every race of the issue, a randomized
//! test over many seeds, the subscriber policy, the journal and leak checks.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use support::replay::Replay;
use support::wait_until;
use whalewatcher::scripted::Script;
use whalewatcher::{EventKind, ExponentialBackoff, Health, Item, Watcher, WatcherOptions};

const T: Duration = Duration::from_secs(10);

fn options() -> WatcherOptions {
    WatcherOptions::default()
        .with_retry(|| ExponentialBackoff::new(Duration::from_millis(5), Duration::from_millis(50)))
}

fn truth(s: &Script) -> HashMap<String, (u32, bool)> {
    s.truth()
        .into_iter()
        .map(|(k, c)| (k, (c.pid, c.paused)))
        .collect()
}

fn portfolio_state(w: &Watcher) -> HashMap<String, (u32, bool)> {
    w.portfolio()
        .iter()
        .map(|c| (c.id.clone(), (c.pid, c.paused)))
        .collect()
}

/// Waits until the watcher, and the replayed stream, equal the ground truth.
fn converge(w: &Watcher, s: &Script, r: &mut Replay, sub: &whalewatcher::Subscription) {
    wait_until(T, "portfolio equals the ground truth", || {
        r.drain(sub);
        w.health() == Health::Synced && portfolio_state(w) == truth(s) && r.alive == truth(s)
    });
}

#[test]
fn initial_sync_and_synthetic_subscription() {
    let s = Script::new();
    s.start("a", "shop");
    s.start("b", "");
    s.set_paused("b", true);
    let w = Watcher::new(s.client(), options());
    w.wait_ready(T).unwrap();
    let p = w.portfolio();
    assert_eq!(p.len(), 2);
    assert_eq!(p.project_names(), vec!["", "shop"]);
    assert!(p.get("b").unwrap().paused);
    let sub = w.subscribe();
    let mut r = Replay::default();
    r.drain(&sub);
    assert_eq!(r.alive, truth(&s));
    assert!(r.log().iter().all(|(_, k)| *k == "started"));
    // then live
    s.exit("a", 3);
    let Some(Item::Event(ev)) = sub.recv_timeout(T) else {
        panic!()
    };
    assert_eq!(
        ev.kind,
        EventKind::Exited {
            exit_code: Some(3),
            oom: false
        }
    );
    assert_eq!(ev.container.id, "a");
    w.close();
}

/// A container the listing saw that died before the listing was applied is reported as a
/// short-lived one (Started, then Exited with the die's code) and never enters the
/// portfolio.
#[test]
fn die_during_listing_is_not_added() {
    let s = Script::new();
    s.start("a", "");
    s.start("b", "");
    s.after_list_snapshot(|s| {
        s.exit("a", 1);
        assert!(s.wait_delivered(), "events not delivered");
    });
    let w = Watcher::new(s.client(), options());
    let sub = w.subscribe();
    w.wait_ready(T).unwrap();
    let mut r = Replay::default();
    converge(&w, &s, &mut r, &sub);
    wait_until(T, "a reported", || {
        r.drain(&sub);
        r.log().iter().filter(|(id, _)| id == "a").count() >= 2
    });
    assert!(w.portfolio().get("a").is_none());
    let log = r.log();
    let a: Vec<_> = log.iter().filter(|(id, _)| id == "a").collect();
    assert_eq!(a, [&("a".into(), "started"), &("a".into(), "exited")]);
}

#[test]
fn pause_changes_during_listing_are_replayed() {
    let s = Script::new();
    s.start("a", "");
    s.start("b", "");
    s.set_paused("b", true);
    s.after_list_snapshot(|s| {
        s.set_paused("a", true);
        s.set_paused("b", false);
        assert!(s.wait_delivered(), "events not delivered");
    });
    let w = Watcher::new(s.client(), options());
    let sub = w.subscribe();
    w.wait_ready(T).unwrap();
    let mut r = Replay::default();
    converge(&w, &s, &mut r, &sub);
    assert!(w.portfolio().get("a").unwrap().paused);
    assert!(!w.portfolio().get("b").unwrap().paused);
}

#[test]
fn start_during_listing_is_no_duplicate() {
    let s = Script::new();
    s.before_list_snapshot(|s| {
        if s.truth().is_empty() {
            s.start("a", "");
            assert!(s.wait_delivered(), "events not delivered");
        }
    });
    s.after_list_snapshot(|s| {
        if !s.truth().contains_key("late") {
            s.start("late", "");
            assert!(s.wait_delivered(), "events not delivered");
        }
    });
    let w = Watcher::new(s.client(), options());
    let sub = w.subscribe();
    w.wait_ready(T).unwrap();
    let mut r = Replay::default();
    converge(&w, &s, &mut r, &sub);
    let starts_a = r.log().iter().filter(|e| e.0 == "a").count();
    assert_eq!(starts_a, 1, "{:?}", r.log());
    assert!(w.portfolio().get("late").is_some());
}

/// Issue 13 item 7: a container that dies after its start event but before its inspect
/// answers is reported Started then Exited with the die's exit code, and never enters the
/// portfolio. (On ef5c2da the die won and the container produced no event at all.)
#[test]
fn die_while_inspect_in_flight_reports_started_then_exited() {
    let s = Script::new();
    let w = Watcher::new(s.client(), options());
    w.wait_ready(T).unwrap();
    let sub = w.subscribe();
    s.before_inspect(|s| {
        s.exit("x", 3);
        assert!(s.wait_delivered(), "events not delivered");
    });
    s.start("x", "job");
    s.start("y", "");
    let mut r = Replay::default();
    converge(&w, &s, &mut r, &sub);
    wait_until(T, "x reported", || {
        r.drain(&sub);
        r.events.iter().filter(|e| e.container.id == "x").count() >= 2
    });
    assert!(w.portfolio().get("x").is_none());
    let x: Vec<_> = r.events.iter().filter(|e| e.container.id == "x").collect();
    assert_eq!(x.len(), 2, "{x:?}");
    assert_eq!(x[0].kind, EventKind::Started);
    assert_eq!(
        x[1].kind,
        EventKind::Exited {
            exit_code: Some(3),
            oom: false
        }
    );
    assert_eq!(x[0].container.name, "name-x", "details from the engine");
    assert_eq!(x[0].container.project, "job");
    assert!(w.portfolio().get("y").is_some());
}

#[test]
fn reconnect_emits_the_exact_diff() {
    let s = Script::new();
    for id in ["stay", "dies", "pauses", "restarts"] {
        s.start(id, "p");
    }
    let w = Watcher::new(s.client(), options());
    w.wait_ready(T).unwrap();
    let sub = w.subscribe();
    let mut r = Replay::default();
    r.drain(&sub);
    s.break_streams(true);
    wait_until(T, "Reconnecting", || {
        matches!(w.health(), Health::Reconnecting { .. })
    });
    // the old portfolio stays visible while away
    assert_eq!(w.portfolio().len(), 4);
    s.silently(|alive| {
        alive.remove("dies");
        alive.get_mut("pauses").unwrap().paused = true;
        alive.get_mut("restarts").unwrap().pid += 1000;
        let mut n = alive["stay"].clone();
        n.id = "new".into();
        n.pid = 4242;
        alive.insert("new".into(), n);
    });
    s.set_up();
    converge(&w, &s, &mut r, &sub);
    let live: Vec<_> = r.log()[4..].to_vec();
    let count = |id: &str, k: &str| live.iter().filter(|e| e.0 == id && e.1 == k).count();
    assert_eq!(count("stay", "started"), 0, "{live:?}");
    assert_eq!(count("dies", "exited"), 1);
    assert_eq!(count("pauses", "paused"), 1);
    assert_eq!(count("restarts", "exited"), 1);
    assert_eq!(count("restarts", "started"), 1);
    assert_eq!(count("new", "started"), 1);
    assert_eq!(live.len(), 5, "{live:?}");
}

#[test]
fn starts_before_the_engine_and_attaches_later() {
    let s = Script::new();
    s.break_streams(true);
    let w = Watcher::new(s.client(), options());
    wait_until(T, "Reconnecting", || {
        matches!(w.health(), Health::Reconnecting { .. })
    });
    assert!(w.wait_ready(Duration::from_millis(50)).is_err());
    s.start("a", "");
    s.set_up();
    w.wait_ready(T).unwrap();
    assert!(w.portfolio().get("a").is_some());
}

#[test]
fn gives_up_when_the_policy_says_so() {
    let s = Script::new();
    s.break_streams(true);
    let opts = WatcherOptions::default().with_retry(|| {
        ExponentialBackoff::new(Duration::from_millis(1), Duration::from_millis(2))
            .with_max_attempts(2)
    });
    let w = Watcher::new(s.client(), opts);
    let err = w.wait_ready(T).unwrap_err();
    assert!(matches!(err, whalewatcher::Error::GaveUp { .. }), "{err}");
    assert!(matches!(w.health(), Health::Failed(_)));
}

/// A tiny deterministic PRNG for the randomized test.
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn random_op(s: &Script, rng: &mut Rng) {
    let id = format!("c{}", rng.next(12));
    match rng.next(5) {
        0 | 1 => {
            if !s.truth().contains_key(&id) {
                s.start(&id, if rng.next(2) == 0 { "p" } else { "" })
            }
        }
        2 => s.exit(&id, rng.next(255) as i32),
        3 => s.set_paused(&id, true),
        _ => s.set_paused(&id, false),
    }
}

#[test]
fn randomized_races_converge_with_valid_sequences() {
    for seed in 1..=40u64 {
        let s = Script::new();
        let mut rng = Rng(seed * 0x9e37_79b9);
        for _ in 0..6 {
            random_op(&s, &mut rng);
        }
        let hook_rng = Arc::new(parking_lot::Mutex::new(Rng(seed + 7)));
        let (h1, h2, h3) = (hook_rng.clone(), hook_rng.clone(), hook_rng.clone());
        s.before_list_snapshot(move |s| {
            for _ in 0..3 {
                random_op(s, &mut h1.lock())
            }
        });
        s.after_list_snapshot(move |s| {
            for _ in 0..3 {
                random_op(s, &mut h2.lock())
            }
        });
        s.before_inspect(move |s| {
            let mut r = h3.lock();
            if r.next(3) == 0 {
                random_op(s, &mut r)
            }
        });
        let w = Watcher::new(s.client(), options());
        let sub = w.subscribe();
        let mut r = Replay::default();
        for round in 0..4 {
            for _ in 0..20 {
                random_op(&s, &mut rng);
            }
            if round == 2 {
                s.break_streams(false);
            }
        }
        converge(&w, &s, &mut r, &sub);
        s.clear_hooks();
        w.close();
    }
}

#[test]
fn slow_subscriber_lags_without_stalling_others() {
    let s = Script::new();
    const EVENTS: usize = 10_000;
    const JOURNAL: usize = 4096;
    let w = Watcher::new(
        s.client(),
        options()
            .with_subscriber_capacity(1024)
            .with_journal_capacity(JOURNAL),
    );
    w.wait_ready(T).unwrap();
    for i in 0..10 {
        s.start(&format!("c{i}"), "");
    }
    wait_until(T, "10 containers", || w.portfolio().len() == 10);
    let slow = w.subscribe();
    let fast = w.subscribe();
    // the fast subscriber reads on its own thread while 10,000 events flow
    let progress = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = progress.clone();
    let reader = std::thread::spawn(move || {
        let mut r = Replay::default();
        let mut live = 0;
        while live < EVENTS {
            let item = fast.recv_timeout(T).expect("fast subscriber starved");
            let synthetic = matches!(&item, Item::Event(e) if e.synthetic);
            r.apply_item(item);
            if !synthetic {
                live += 1;
                seen.store(live, std::sync::atomic::Ordering::SeqCst);
            }
        }
        r.alive
    });
    for i in 0..EVENTS {
        // a fast subscriber keeps up: stay at most 200 events ahead of it
        wait_until(T, "fast subscriber progress", || {
            i < progress.load(std::sync::atomic::Ordering::SeqCst) + 200
        });
        s.set_paused(&format!("c{}", i % 10), (i / 10) % 2 == 0);
    }
    assert_eq!(reader.join().unwrap(), truth(&s));
    let items: Vec<_> = std::iter::from_fn(|| slow.try_recv()).collect();
    assert!(items.len() <= 10 + 1024 + 1, "{}", items.len());
    let Some(Item::Lagged { missed, resume_seq }) = items.last() else {
        panic!("no Lagged marker: {:?}", items.last())
    };
    assert!(*missed >= 1 && *resume_seq >= 1);
    assert!(slow.is_ended());
    // Memory stays bounded: the slow one's queue held at most its capacity (above), and
    // the journal only its capacity, so resubscribing where it fell behind reports the
    // events that have fallen out as a gap, then replays the journal exactly.
    let last = 10 + EVENTS as u64; // 10 starts, then the pauses/unpauses
    let again = w.subscribe_from(whalewatcher::Since::Seq(*resume_seq - 1));
    let items: Vec<_> = std::iter::from_fn(|| again.try_recv()).collect();
    let Some(Item::Gap { from, to }) = items.first() else {
        panic!("no gap first: {:?}", items.first())
    };
    assert_eq!((*from, *to), (*resume_seq, last - JOURNAL as u64));
    let seqs: Vec<u64> = items[1..]
        .iter()
        .map(|i| match i {
            Item::Event(e) => e.seq,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        seqs,
        ((last - JOURNAL as u64 + 1)..=last).collect::<Vec<_>>()
    );
}

#[test]
fn journal_replay_and_gap_marker() {
    let s = Script::new();
    let w = Watcher::new(s.client(), options().with_journal_capacity(10));
    w.wait_ready(T).unwrap();
    for i in 0..30 {
        s.start(&format!("c{i}"), "");
    }
    wait_until(T, "30 containers", || w.portfolio().len() == 30);
    let sub = w.subscribe_from(whalewatcher::Since::Seq(25));
    let seqs: Vec<u64> = std::iter::from_fn(|| sub.try_recv())
        .map(|i| match i {
            Item::Event(e) => e.seq,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(seqs, (26..=30).collect::<Vec<_>>());
    let sub = w.subscribe_from(whalewatcher::Since::Seq(5));
    assert!(matches!(
        sub.try_recv(),
        Some(Item::Gap { from: 6, to: 20 })
    ));
    let Some(Item::Event(e)) = sub.try_recv() else {
        panic!()
    };
    assert_eq!(e.seq, 21);
    // filtered by container
    let one = w.subscribe_container(whalewatcher::Since::Seq(0), "c29");
    assert!(matches!(one.try_recv(), Some(Item::Gap { .. })));
    let Some(Item::Event(e)) = one.try_recv() else {
        panic!()
    };
    assert_eq!(e.container.id, "c29");
    assert!(one.try_recv().is_none());
}

/// A PortfolioReader made before the first sync follows every change, hands out the same
/// snapshot while nothing changes, and always one at least as new as the watcher's.
#[test]
fn portfolio_reader_follows_every_snapshot() {
    let s = Script::new();
    s.start("a", "shop");
    let w = Watcher::new(s.client(), options());
    let mut reader = w.reader();
    let mut other = w.reader();
    w.wait_ready(T).unwrap();
    wait_until(T, "reader sees the sync", || {
        reader.portfolio().get("a").is_some()
    });
    let first = reader.portfolio().clone();
    assert!(
        Arc::ptr_eq(&first, reader.portfolio()),
        "unchanged: same snapshot"
    );
    assert!(Arc::ptr_eq(&w.portfolio(), reader.portfolio()));

    s.set_paused("a", true);
    s.start("b", "");
    wait_until(T, "reader sees pause and start", || {
        let p = reader.portfolio();
        p.get("a").is_some_and(|c| c.paused) && p.get("b").is_some()
    });
    assert!(!Arc::ptr_eq(&first, reader.portfolio()));
    s.exit("a", 0);
    wait_until(T, "reader sees the exit", || {
        reader.portfolio().get("a").is_none()
    });
    // Whatever the watcher has published, a reader that asks afterwards has it too.
    for i in 0..200 {
        s.set_paused("b", i % 2 == 0);
        let published = w.portfolio();
        let seen = other.portfolio();
        assert!(
            seen.seq() >= published.seq(),
            "{} < {}",
            seen.seq(),
            published.seq()
        );
    }
    w.close();
    // After close: the last snapshot, still.
    assert!(reader.portfolio().get("b").is_some());
}
