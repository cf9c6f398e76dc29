//! The fleet's merged stream against scripted engines (no real engine, no socket): the
//! engines are attached through [`Fleet::with_connector`] and vanish when the scanner stops
//! returning them. Each test replays the merged stream into the subscriber's view and
//! checks it against the engine's truth.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use whalewatcher::discover::{Found, Source};
use whalewatcher::fleet::{Fleet, FleetItem, FleetOptions, FleetSubscription};
use whalewatcher::scripted::Script;
use whalewatcher::EngineKind as Kind;
use whalewatcher::{EngineClient, EventKind, WatcherOptions};

const WAIT: Duration = Duration::from_secs(30);

fn found(name: &str, pid: u32) -> Found {
    Found {
        kind: Kind::Docker,
        api_path: format!("/scripted/{name}.sock"),
        pid: Some(pid),
        inode: None,
        source: Source::Process,
        managed_by: None,
    }
}

/// Scripted engines behind a fleet: `visible` is what the scanner finds.
struct Rig {
    visible: Arc<Mutex<Vec<Found>>>,
    fleet: Fleet,
}

impl Rig {
    fn new(engines: &[(&Found, &Script)], visible: &[&Found], watcher: WatcherOptions) -> Rig {
        let scripts: BTreeMap<String, Script> = engines
            .iter()
            .map(|(f, s)| (f.api_path.clone(), (*s).clone()))
            .collect();
        let visible = Arc::new(Mutex::new(
            visible.iter().map(|f| (*f).clone()).collect::<Vec<_>>(),
        ));
        let v = visible.clone();
        let fleet = Fleet::with_connector(
            Box::new(move || v.lock().clone()),
            Box::new(move |f: &Found| {
                let s = scripts.get(&f.api_path).expect("a scripted engine");
                Ok(Box::new(s.client()) as Box<dyn EngineClient>)
            }),
            FleetOptions {
                // Rescans only when the test asks.
                rescan: Duration::from_secs(3600),
                watcher,
                ..FleetOptions::default()
            },
        );
        Rig { visible, fleet }
    }

    fn show(&self, engines: &[&Found]) {
        *self.visible.lock() = engines.iter().map(|f| (*f).clone()).collect();
        self.fleet.rescan_now();
    }
}

/// The subscriber's side: every item taken, and the view they add up to.
#[derive(Default)]
struct View {
    items: Vec<FleetItem>,
    /// Engine api path → container id → paused.
    alive: BTreeMap<String, BTreeMap<String, bool>>,
    errors: Vec<String>,
}

impl View {
    fn take(&mut self, item: FleetItem) {
        if let FleetItem::Event(e) = &item {
            // The scripted containers do not name their engine: a view per container id
            // is enough here (ids are unique across the test's engines).
            let engine = "all".to_string();
            let alive = self.alive.entry(engine).or_default();
            let id = e.container.id.clone();
            match e.kind {
                EventKind::Started => {
                    if alive.insert(id.clone(), e.container.paused).is_some() {
                        self.errors
                            .push(format!("second Started for {id} (seq {})", e.seq));
                    }
                }
                EventKind::Exited { .. } => {
                    if alive.remove(&id).is_none() {
                        self.errors
                            .push(format!("Exited for {id} not alive (seq {})", e.seq));
                    }
                }
                EventKind::Paused | EventKind::Unpaused => match alive.get_mut(&id) {
                    Some(p) => *p = e.kind == EventKind::Paused,
                    None => self.errors.push(format!("{:?} for {id} not alive", e.kind)),
                },
            }
        }
        self.items.push(item);
    }

    fn ids(&self) -> BTreeSet<String> {
        self.alive
            .values()
            .flat_map(|m| m.keys().cloned())
            .collect()
    }

    /// Takes items until `pred` holds for the view, failing after [`WAIT`].
    fn until(&mut self, sub: &mut FleetSubscription, what: &str, pred: impl Fn(&View) -> bool) {
        let end = Instant::now() + WAIT;
        while !pred(self) {
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; errors {:?}; last items {:#?}",
                self.errors,
                &self.items[self.items.len().saturating_sub(20)..]
            );
            if let Some(i) = sub.recv_timeout(Duration::from_millis(100)) {
                self.take(i);
            }
        }
    }

    /// Takes what is there now (nothing more within `quiet`).
    fn drain(&mut self, sub: &mut FleetSubscription, quiet: Duration) {
        while let Some(i) = sub.recv_timeout(quiet) {
            self.take(i);
        }
    }

    fn lags_and_gaps(&self) -> Vec<&FleetItem> {
        self.items
            .iter()
            .filter(|i| matches!(i, FleetItem::Lagged { .. } | FleetItem::Gap { .. }))
            .collect()
    }

    fn vanished(&self, f: &Found) -> bool {
        self.items
            .iter()
            .any(|i| matches!(i, FleetItem::Vanished(v) if **v == *f))
    }

    /// The live sequence numbers of the events taken, and the gaps told, in order: every
    /// number from the first live one to `last` must be either delivered or in a Gap.
    fn check_exact_or_told(&self, f: &Found, first: u64, last: u64) -> Result<(), String> {
        let mut next = first;
        for i in &self.items {
            match i {
                FleetItem::Event(e) if !e.synthetic && e.seq > 0 => {
                    if e.seq != next {
                        return Err(format!("seq {} after {} with no Gap", e.seq, next - 1));
                    }
                    next += 1;
                }
                FleetItem::Gap { engine, from, to } if **engine == *f => {
                    if *from != next {
                        return Err(format!("Gap from {from}, expected from {next}"));
                    }
                    next = to + 1;
                }
                _ => {}
            }
        }
        if next != last + 1 {
            return Err(format!(
                "delivered or told up to {}, the engine published up to {last}",
                next - 1
            ));
        }
        Ok(())
    }
}

/// Issue 13 item 6: an engine attached with more containers than the subscriber's queue
/// capacity (1024 by default) shows as synthetic Started for every one of them, with no
/// Lagged and no Gap. Failed before (the first listing came as 1500 live Started through the
/// bounded queue: Lagged, replay, none synthetic).
#[test]
fn attach_with_more_containers_than_the_queue_is_all_synthetic() {
    let script = Script::new();
    for i in 0..1500 {
        script.start(&format!("c{i:04}"), "big");
    }
    let a = found("big", 11);
    let rig = Rig::new(&[(&a, &script)], &[], WatcherOptions::default());
    let mut sub = rig.fleet.subscribe();
    rig.show(&[&a]);
    let mut view = View::default();
    view.until(&mut sub, "1500 Started", |v| v.ids().len() == 1500);
    rig.fleet.wait_ready(WAIT).unwrap();
    view.drain(&mut sub, Duration::from_millis(200));

    assert!(matches!(&view.items[0], FleetItem::Attached(f) if **f == a));
    let started: Vec<_> = view.items[1..]
        .iter()
        .map(|i| match i {
            FleetItem::Event(e) if e.kind == EventKind::Started => e,
            other => panic!("not a Started: {other:?}"),
        })
        .collect();
    assert_eq!(started.len(), 1500);
    assert!(
        started.iter().all(|e| e.synthetic),
        "live Started in the initial listing"
    );
    assert_eq!(view.ids(), script.alive_ids().into_iter().collect());
    assert!(view.errors.is_empty(), "{:?}", view.errors);

    // Live events go on after the snapshot.
    script.start("late", "big");
    view.until(&mut sub, "Started late", |v| v.ids().contains("late"));
    let FleetItem::Event(late) = view.items.last().unwrap() else {
        unreachable!()
    };
    assert!(!late.synthetic);
    assert!(
        view.lags_and_gaps().is_empty(),
        "{:?}",
        view.lags_and_gaps()
    );
}

/// Issue 13 item 6, for a fleet subscription made after the engine was attached but
/// before its watcher synced, with a journal too small for a replay: before, the listing
/// came as live events (Lagged, Gap) and containers were lost.
#[test]
fn subscribe_before_the_first_sync_gets_every_container_synthetic() {
    let script = Script::new();
    for i in 0..300 {
        script.start(&format!("d{i:03}"), "");
    }
    // The first listing waits until the test has subscribed.
    let (open, gate) = crossbeam_channel::bounded::<()>(1);
    script.before_list_snapshot(move |_| {
        let _ = gate.recv_timeout(WAIT);
    });
    let a = found("small", 12);
    let options = WatcherOptions::default()
        .with_subscriber_capacity(16)
        .with_journal_capacity(32);
    let rig = Rig::new(&[(&a, &script)], &[&a], options);
    let mut sub = rig.fleet.subscribe();
    open.send(()).unwrap();
    let mut view = View::default();
    view.until(&mut sub, "300 Started", |v| v.ids().len() == 300);
    rig.fleet.wait_ready(WAIT).unwrap();
    view.drain(&mut sub, Duration::from_millis(200));
    script.clear_hooks();

    assert!(
        view.lags_and_gaps().is_empty(),
        "{:?}",
        view.lags_and_gaps()
    );
    assert!(view.errors.is_empty(), "{:?}", view.errors);
    assert!(view
        .items
        .iter()
        .all(|i| matches!(i, FleetItem::Event(e) if e.synthetic)));
    assert_eq!(view.ids(), script.alive_ids().into_iter().collect());
}

/// Issue 13 item 5: the subscriber lags on an engine (queue of 4, 16 events) that then
/// vanishes. Whatever order the subscription takes its items in, it must end with none of
/// the engine's containers alive, never an Exited for one it was not told started, and
/// every live event either delivered or inside a Gap naming the engine. Before, the lagged
/// source was dropped without a word and the exits came from the engine's last portfolio:
/// containers stayed alive, or exits came for containers never started, with no Gap.
#[test]
fn engine_vanishing_while_the_subscriber_lags_is_told() {
    for round in 0..8 {
        let script = Script::new();
        script.start("a0", "p");
        script.start("a1", "p");
        let a = found("lag", 13);
        let rig = Rig::new(
            &[(&a, &script)],
            &[&a],
            WatcherOptions::default().with_subscriber_capacity(4),
        );
        rig.fleet.wait_ready(WAIT).unwrap();
        let mut sub = rig.fleet.subscribe();
        let mut view = View::default();
        view.until(&mut sub, "the synthetic Started", |v| v.ids().len() == 2);
        let first = match view.items.last() {
            Some(FleetItem::Event(e)) => e.seq + 1,
            _ => unreachable!(),
        };

        // 16 events the subscriber does not take in time.
        let w = rig.fleet.watchers()[0].1.clone();
        for i in 0..10 {
            script.start(&format!("n{i}"), "p");
        }
        support::wait_until(WAIT, "the 10 starts applied", || w.portfolio().len() == 12);
        for i in 0..5 {
            script.exit(&format!("n{i}"), i);
        }
        script.set_paused("n7", true);
        support::wait_until(WAIT, "the watcher applied the 16 events", || {
            w.portfolio().seq() == first + 15
        });
        let last = w.portfolio().seq();
        drop(w);

        rig.show(&[]); // the engine vanishes
        view.until(&mut sub, "Vanished", |v| v.vanished(&a));
        view.drain(&mut sub, Duration::from_millis(50));

        let ctx = format!("round {round}: items {:#?}", view.items);
        assert!(view.errors.is_empty(), "{:?}; {ctx}", view.errors);
        assert!(
            view.ids().is_empty(),
            "alive after Vanished: {:?}; {ctx}",
            view.ids()
        );
        if let Err(e) = view.check_exact_or_told(&a, first, last) {
            panic!("{e}; {ctx}");
        }
        assert!(
            view.items
                .iter()
                .any(|i| matches!(i, FleetItem::Gap { engine, .. } if **engine == a)),
            "no Gap for the events lost; {ctx}"
        );
    }
}

/// The fleet closes while the subscriber lags on an engine: the subscription drains what
/// it has, tells the Gap up to the engine's last event, and ends. Before, the lagged
/// engine was dropped without a word.
#[test]
fn fleet_closing_while_the_subscriber_lags_tells_the_gap() {
    let script = Script::new();
    let a = found("close", 14);
    let rig = Rig::new(
        &[(&a, &script)],
        &[&a],
        WatcherOptions::default().with_subscriber_capacity(4),
    );
    rig.fleet.wait_ready(WAIT).unwrap();
    let sub = rig.fleet.subscribe();
    for i in 0..12 {
        script.start(&format!("k{i}"), "");
    }
    assert!(script.wait_delivered(), "events not delivered");
    let w = rig.fleet.watchers()[0].1.clone();
    support::wait_until(WAIT, "the watcher applied the 12 events", || {
        w.portfolio().len() == 12
    });
    let last = w.portfolio().seq();
    drop(w);
    rig.fleet.close();
    let mut view = View::default();
    let end = Instant::now() + WAIT;
    while !sub.is_ended() {
        assert!(Instant::now() < end, "the subscription does not end");
        if let Some(i) = sub.recv_timeout(Duration::from_millis(100)) {
            view.take(i);
        }
    }
    let ctx = format!("items {:#?}", view.items);
    assert!(view.errors.is_empty(), "{:?}; {ctx}", view.errors);
    if let Err(e) = view.check_exact_or_told(&a, 1, last) {
        panic!("{e}; {ctx}");
    }
}

/// A subscriber that lags on a live engine is resumed from the journal: one Lagged naming
/// the engine, then the events it missed, each once, in order; its view ends equal to the
/// engine's truth.
#[test]
fn lag_on_a_live_engine_is_resumed_exactly() {
    let script = Script::new();
    script.start("r0", "");
    let a = found("resume", 15);
    let rig = Rig::new(
        &[(&a, &script)],
        &[&a],
        WatcherOptions::default().with_subscriber_capacity(4),
    );
    rig.fleet.wait_ready(WAIT).unwrap();
    let mut sub = rig.fleet.subscribe();
    let w = rig.fleet.watchers()[0].1.clone();
    let first = w.portfolio().seq() + 1;
    for i in 0..20 {
        script.start(&format!("r{}", i + 1), "");
    }
    support::wait_until(WAIT, "the 20 starts applied", || w.portfolio().len() == 21);
    for i in 0..5 {
        script.exit(&format!("r{}", i + 1), 0);
    }
    support::wait_until(WAIT, "the 5 exits applied", || w.portfolio().len() == 16);
    let last = w.portfolio().seq();
    let mut view = View::default();
    view.until(&mut sub, "the truth", |v| {
        v.ids() == script.alive_ids().into_iter().collect()
    });
    view.drain(&mut sub, Duration::from_millis(100));
    let ctx = format!("items {:#?}", view.items);
    assert!(view.errors.is_empty(), "{:?}; {ctx}", view.errors);
    let lags: Vec<_> = view.lags_and_gaps();
    assert!(
        !lags.is_empty()
            && lags
                .iter()
                .all(|i| matches!(i, FleetItem::Lagged { engine, .. } if **engine == a)),
        "expected Lagged only: {lags:?}"
    );
    if let Err(e) = view.check_exact_or_told(&a, first, last) {
        panic!("{e}; {ctx}");
    }
}

/// `wait_ready` keeps the error's kind: an engine whose watcher gave up is `GaveUp` (with
/// the engine's error as its source), one that is still trying when the time is up is a
/// `Timeout` naming the engine.
#[test]
fn wait_ready_keeps_the_error_kind() {
    use std::error::Error as _;
    use whalewatcher::{Error, NoRetry};

    let down = Script::new();
    down.break_streams(true);
    let a = found("down", 1);
    let rig = Rig::new(
        &[(&a, &down)],
        &[&a],
        WatcherOptions::default().with_retry(|| NoRetry),
    );
    let e = rig.fleet.wait_ready(WAIT).unwrap_err();
    assert!(matches!(e, Error::GaveUp { .. }), "{e:?}");
    assert!(e.source().is_some(), "{e:?}");

    let slow = Script::new();
    slow.break_streams(true);
    let b = found("slow", 2);
    let rig = Rig::new(&[(&b, &slow)], &[&b], WatcherOptions::default());
    let e = rig
        .fleet
        .wait_ready(Duration::from_millis(300))
        .unwrap_err();
    match e {
        Error::Timeout { what } => assert!(what.contains("/scripted/slow.sock"), "{what}"),
        other => panic!("expected a Timeout: {other:?}"),
    }
}
