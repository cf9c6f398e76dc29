//! A CRI watcher whose connections are cut (through the fault-injecting proxy) catches up
//! with what happened while it was away: exits and starts, in every event mode the
//! runtime supports, converging to the CRI ground truth.
#![cfg(feature = "cri")]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use support::cri::{runtime_version, Pod};
use support::fault_proxy::{Fault, Proxy};
use whalewatcher::cri::{CriClient, EventMode, POD_NAME_LABEL};
use whalewatcher::{
    EngineClient, EventKind, ExponentialBackoff, Health, Item, Watcher, WatcherOptions,
};

const WAIT: Duration = Duration::from_secs(30);

/// The ids of `pod`'s alive containers and sandbox, per a fresh CRI listing.
fn truth(cri: &CriClient, pod: &Pod) -> BTreeSet<String> {
    cri.list()
        .expect("list")
        .into_iter()
        .filter(|c| c.labels.get(POD_NAME_LABEL) == Some(pod.name.as_str()))
        .map(|c| c.id.clone())
        .collect()
}

fn view(w: &Watcher, pod: &Pod) -> BTreeSet<String> {
    w.portfolio()
        .iter()
        .filter(|c| c.labels.get(POD_NAME_LABEL) == Some(pod.name.as_str()))
        .map(|c| c.id.clone())
        .collect()
}

/// `exit_code`: also insist that the exit made while away carries its exit code (137:
/// SIGKILL), which the watcher learns by inspecting the vanished container.
fn cut_and_catch_up(path: &str, mode: EventMode, exit_code: bool) {
    let cri = CriClient::new(Some(path)).unwrap();
    let mut pod = Pod::run(&cri, "faults");
    let a = pod.run_container("a");
    let b = pod.run_container("b");
    let proxy = Proxy::start(path);
    let opts = WatcherOptions::default().with_retry(|| {
        ExponentialBackoff::new(Duration::from_millis(150), Duration::from_millis(600))
    });
    let w = Watcher::new(
        CriClient::new(proxy.path().to_str())
            .unwrap()
            .with_event_mode(mode)
            .with_relist_interval(Duration::from_millis(200)),
        opts,
    );
    w.wait_ready(WAIT).expect("synced through the proxy");
    assert_eq!(w.engine_info().expect("info").mode, mode.as_str());
    support::wait_until(WAIT, "the watcher sees the pod", || {
        view(&w, &pod) == BTreeSet::from([pod.id.clone(), a.clone(), b.clone()])
    });
    let sub = w.subscribe();

    // Away: every connection cut, new ones refused.
    proxy.set(Fault::Refuse);
    let accepted = proxy.accepted();
    proxy.cut();
    support::wait_until(WAIT, "Reconnecting", || {
        matches!(w.health(), Health::Reconnecting { .. })
    });
    support::wait_until(WAIT, "two refused reconnects", || {
        proxy.accepted() >= accepted + 2
    });
    pod.stop(&a);
    let c = pod.run_container("c");
    assert!(
        w.portfolio().get(&a).is_some(),
        "the stale view is kept meanwhile"
    );

    proxy.set(Fault::None);
    let want = BTreeSet::from([pod.id.clone(), b.clone(), c.clone()]);
    support::wait_until(WAIT, "convergence to the CRI truth", || {
        truth(&cri, &pod) == want && view(&w, &pod) == want
    });
    let mut got: BTreeMap<String, EventKind> = BTreeMap::new();
    let end = Instant::now() + WAIT;
    while !(got.contains_key(&a) && got.contains_key(&c)) {
        let left = end.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{mode:?}: got {got:?}");
        // (The subscription starts with synthetic Started events for what is alive.)
        if let Some(Item::Event(e)) = sub.recv_timeout(left) {
            if !e.synthetic && (e.container.id == a || e.container.id == c) {
                if let Some(before) = got.insert(e.container.id.clone(), e.kind) {
                    panic!(
                        "{mode:?}: second event {:?} (seq {}) for {}; first {before:?}",
                        e.kind, e.seq, e.container.name
                    );
                }
            }
        }
    }
    assert!(matches!(got[&a], EventKind::Exited { .. }), "{got:?}");
    if exit_code {
        assert_eq!(
            got[&a],
            EventKind::Exited {
                exit_code: Some(137),
                oom: false
            },
            "{mode:?}"
        );
    }
    assert_eq!(got[&c], EventKind::Started);
    eprintln!("{mode:?}: while away, a {:?}", got[&a]);

    // And live again: the sandbox's end.
    let sandbox = pod.id.clone();
    pod.destroy();
    support::wait_until(WAIT, "the pod's end", || view(&w, &pod).is_empty());
    assert!(w.portfolio().get(&sandbox).is_none());
    w.close();
}

/// The event modes this runtime supports: its own, containerd's task events (any
/// containerd), relisting.
fn modes(path: &str) -> Vec<EventMode> {
    let cri = CriClient::new(Some(path)).unwrap();
    let (name, version) = runtime_version(cri.channel());
    let mut modes = vec![EventMode::for_runtime(&name, &version)];
    if modes[0] != EventMode::ContainerdEvents && name == "containerd" {
        modes.push(EventMode::ContainerdEvents);
    }
    modes.push(EventMode::Relist);
    modes
}

#[test]
fn a_cut_watcher_catches_up_in_every_mode() {
    let Some(path) = support::endpoint("WHALEWATCHER_CRI") else {
        return;
    };
    for mode in modes(&path) {
        cut_and_catch_up(&path, mode, false);
    }
}

/// Issue 13 item 8 for CRI: the exit made while the watcher was away carries its exit
/// code: the watcher's resync asks the engine about each vanished container.
#[test]
fn exits_while_away_keep_their_exit_code() {
    let Some(path) = support::endpoint("WHALEWATCHER_CRI") else {
        return;
    };
    for mode in modes(&path) {
        cut_and_catch_up(&path, mode, true);
    }
}
