//! A private containerd is SIGKILLed while a watcher watches it; a task dies while
//! containerd is down; containerd comes back with the same config. The watcher must report
//! Reconnecting, re-attach by itself, converge to `ctr tasks ls`, report the deaths as
//! Exited, keep the survivors without a second Started, and get live events again. And a
//! watcher made while containerd is down attaches when it comes up.
#![cfg(all(feature = "containerd", feature = "docker"))]

mod support;

use std::time::{Duration, Instant, SystemTime};

use support::containerd::{view_ns, PrivateContainerd};
use support::replay::replay;
use support::watch::{converge, drain, kinds};
use whalewatcher::containerd::ContainerdClient;
use whalewatcher::{EventKind, ExponentialBackoff, Health, Item, Watcher, WatcherOptions};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn containerd_killed_and_restarted() {
    let Some(shared) = support::endpoint("WHALEWATCHER_CONTAINERD") else {
        return;
    };
    let mut p = PrivateContainerd::start(&shared);
    let ctr = p.ctr();
    let tag = p.ns.clone(); // unique across instances: cgroup paths are /<ns>/<id>
    let (gone, shimless, keep, frozen) = (
        format!("{tag}-gone"),
        format!("{tag}-shimless"),
        format!("{tag}-keep"),
        format!("{tag}-frozen"),
    );
    for id in [&gone, &shimless, &keep, &frozen] {
        ctr.start(id, &[("nerdctl/name", id)]);
    }
    ctr.run(&["tasks", "pause", &frozen]);
    let w = Watcher::new(
        ContainerdClient::new(Some(p.sock.as_ref())).unwrap(),
        WatcherOptions::default().with_retry(|| {
            ExponentialBackoff::new(Duration::from_millis(50), Duration::from_secs(1))
        }),
    );
    let sub = w.subscribe();
    w.wait_ready(WAIT).expect("watcher syncs");
    let before = converge(WAIT, || ctr.truth(), || view_ns(&w, &p.ns));
    assert_eq!(before.len(), 4, "{before:?}");
    assert!(before[&ctr.display(&frozen)].1, "frozen is paused");
    let victim_pid = before[&ctr.display(&gone)].0;
    let shimless_pid = before[&ctr.display(&shimless)].0;
    let shim = p.shim_pid(&shimless).expect("shim of shimless");

    let killed_at = SystemTime::now();
    p.kill9();
    support::wait_until(WAIT, "Health::Reconnecting", || {
        matches!(w.health(), Health::Reconnecting { .. })
    });
    let Health::Reconnecting { since, .. } = w.health() else {
        unreachable!()
    };
    assert!(
        since >= killed_at && since <= SystemTime::now(),
        "{since:?}"
    );
    // The portfolio stays (stale) while the engine is away.
    assert_eq!(view_ns(&w, &p.ns), before);
    // The shims keep the tasks alive; kill one task behind containerd's back.
    assert!(
        !support::is_dead(victim_pid),
        "task {victim_pid} died with containerd"
    );
    support::run("kill", &["-9", &victim_pid.to_string()]);
    support::wait_until(WAIT, "victim task gone", || support::is_dead(victim_pid));
    // Another task loses its shim: the restarted containerd cleans up after the dead shim
    // (kills the orphaned task, publishes its exit) while the watcher also resyncs.
    support::run("kill", &["-9", &shim.to_string()]);
    assert!(
        matches!(w.health(), Health::Reconnecting { .. }),
        "{:?} while containerd is down",
        w.health()
    );

    p.launch();
    let up = Instant::now();
    // Started while the watcher re-attaches: seen by its listing or as an event.
    let newcomer = format!("{tag}-newcomer");
    ctr.start(&newcomer, &[]);
    w.wait_ready(Duration::from_secs(60))
        .expect("watcher re-attaches by itself");
    eprintln!("re-attached {:?} after containerd answered", up.elapsed());
    let after = converge(WAIT, || ctr.truth(), || view_ns(&w, &p.ns));
    assert!(after.contains_key(&ctr.display(&newcomer)), "{after:?}");
    assert!(!after.contains_key(&ctr.display(&gone)), "{after:?}");
    assert!(!after.contains_key(&ctr.display(&shimless)), "{after:?}");
    support::wait_until(WAIT, "orphaned task of the dead shim gone", || {
        support::is_dead(shimless_pid)
    });
    for id in [&keep, &frozen] {
        let d = ctr.display(id);
        assert_eq!(after.get(&d), before.get(&d), "survivor {id} changed");
    }

    let events = drain(&sub, Duration::from_millis(500));
    replay(&events);
    assert_eq!(kinds(&events, &ctr.display(&keep)), [EventKind::Started]);
    assert_eq!(kinds(&events, &ctr.display(&frozen)), [EventKind::Started]);
    assert_eq!(
        kinds(&events, &ctr.display(&newcomer)),
        [EventKind::Started]
    );
    for (id, pid) in [(&gone, victim_pid), (&shimless, shimless_pid)] {
        let k = kinds(&events, &ctr.display(id));
        assert!(
            matches!(k[..], [EventKind::Started, EventKind::Exited { .. }]),
            "events of {id}, killed while containerd was down: {k:?}"
        );
        let exit = events
            .iter()
            .rfind(|e| e.container.id == ctr.display(id))
            .unwrap();
        assert_eq!(exit.container.pid, pid);
    }

    // Live events flow again. containerd's event subscription may go live a moment after
    // the call: a pause the watcher misses is retried (the watcher only learns of it at
    // its next resync).
    let keep_d = ctr.display(&keep);
    let mut live = false;
    for _ in 0..10 {
        ctr.run(&["tasks", "pause", &keep]);
        let got = next_for(&sub, &keep_d, Duration::from_secs(1));
        ctr.run(&["tasks", "resume", &keep]);
        match got {
            Some(EventKind::Paused) => {
                assert_eq!(next_for(&sub, &keep_d, WAIT), Some(EventKind::Unpaused));
                live = true;
                break;
            }
            Some(other) => panic!("unexpected {other:?} of {keep}"),
            None => {
                // Missed; the resume may still come through: drop keep's events.
                while let Some(item) = sub.recv_timeout(Duration::from_millis(300)) {
                    match item {
                        Item::Event(e) if e.container.id == keep_d => {}
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
        }
    }
    assert!(live, "no live Paused event after the restart (10 tries)");
    ctr.run(&["tasks", "kill", "-s", "KILL", &keep]);
    assert_eq!(
        next_for(&sub, &keep_d, WAIT),
        Some(EventKind::Exited {
            exit_code: Some(137),
            oom: false
        })
    );
    converge(WAIT, || ctr.truth(), || view_ns(&w, &p.ns));
    w.close();
}

/// The kind of the next event of container `id`; other containers' events are errors
/// (nothing else lives in this private containerd).
fn next_for(sub: &whalewatcher::Subscription, id: &str, timeout: Duration) -> Option<EventKind> {
    match sub.recv_timeout(timeout)? {
        Item::Event(e) if e.container.id == id => Some(e.kind),
        other => panic!("unexpected {other:?}"),
    }
}

/// A watcher made while containerd is down attaches as soon as it appears, with the
/// containers that were there all along.
#[test]
fn watcher_started_before_containerd() {
    let Some(shared) = support::endpoint("WHALEWATCHER_CONTAINERD") else {
        return;
    };
    let mut p = PrivateContainerd::start(&shared);
    let ctr = p.ctr();
    let id = format!("{}-early", p.ns);
    ctr.start(&id, &[]);
    let truth = ctr.truth().unwrap();
    p.kill9();
    let w = Watcher::new(
        ContainerdClient::new(Some(p.sock.as_ref())).unwrap(),
        WatcherOptions::default().with_retry(|| {
            ExponentialBackoff::new(Duration::from_millis(50), Duration::from_secs(1))
        }),
    );
    let sub = w.subscribe();
    support::wait_until(WAIT, "Health::Reconnecting without an engine", || {
        matches!(w.health(), Health::Reconnecting { .. })
    });
    assert!(w.portfolio().is_empty());
    p.launch();
    w.wait_ready(Duration::from_secs(60))
        .expect("watcher attaches once containerd is up");
    assert_eq!(converge(WAIT, || ctr.truth(), || view_ns(&w, &p.ns)), truth);
    let events = drain(&sub, Duration::from_millis(500));
    replay(&events);
    assert_eq!(kinds(&events, &ctr.display(&id)), [EventKind::Started]);
    w.close();
}

/// containerd flaps: killed and restarted three times in a row without waiting for the
/// watcher in between, a container started just before the first crash, a task dying
/// during the second outage. The watcher ends at the ground truth with one Started per
/// alive container and one Exited for the dead task.
#[test]
fn containerd_flapping() {
    let Some(shared) = support::endpoint("WHALEWATCHER_CONTAINERD") else {
        return;
    };
    let mut p = PrivateContainerd::start(&shared);
    let ctr = p.ctr();
    let (stays, dies) = (format!("{}-stays", p.ns), format!("{}-dies", p.ns));
    ctr.start(&stays, &[]);
    ctr.start(&dies, &[]);
    let w = Watcher::new(
        ContainerdClient::new(Some(p.sock.as_ref())).unwrap(),
        WatcherOptions::default().with_retry(|| {
            ExponentialBackoff::new(Duration::from_millis(20), Duration::from_millis(200))
        }),
    );
    let sub = w.subscribe();
    w.wait_ready(WAIT).expect("watcher syncs");
    let before = converge(WAIT, || ctr.truth(), || view_ns(&w, &p.ns));
    let dies_pid = before[&ctr.display(&dies)].0;
    // Started just before the first crash: the watcher's inspect of it likely finds
    // containerd gone, and the container is left to the next resync.
    let late = format!("{}-late", p.ns);
    for cycle in 0..3 {
        if cycle == 0 {
            ctr.start(&late, &[]);
        }
        p.kill9();
        if cycle == 1 {
            support::run("kill", &["-9", &dies_pid.to_string()]);
            support::wait_until(WAIT, "task gone", || support::is_dead(dies_pid));
        }
        p.launch();
    }
    w.wait_ready(Duration::from_secs(60))
        .expect("watcher re-attaches by itself");
    let after = converge(WAIT, || ctr.truth(), || view_ns(&w, &p.ns));
    assert_eq!(
        after.get(&ctr.display(&stays)),
        before.get(&ctr.display(&stays))
    );
    assert!(after.contains_key(&ctr.display(&late)), "{after:?}");
    assert_eq!(after.len(), 2, "{after:?}");
    let events = drain(&sub, Duration::from_millis(500));
    replay(&events);
    assert_eq!(kinds(&events, &ctr.display(&stays)), [EventKind::Started]);
    assert_eq!(kinds(&events, &ctr.display(&late)), [EventKind::Started]);
    let k = kinds(&events, &ctr.display(&dies));
    assert!(
        matches!(k[..], [EventKind::Started, EventKind::Exited { .. }]),
        "{k:?}"
    );
    w.close();
}
