//! The watcher against the real containerd (WHALEWATCHER_CONTAINERD): portfolio vs `ctr`
//! ground truth over all watched namespaces; pause/resume, exec and kill events.
#![cfg(all(feature = "containerd", feature = "serde"))]

mod support;

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use support::containerd::Ctr;
use whalewatcher::containerd::{ContainerdClient, DEFAULT_IGNORED_NAMESPACES};
use whalewatcher::{ContainerEvent, EventKind, Item, Subscription, Watcher, WatcherOptions};

/// display id → (pid, paused, labels).
type State = BTreeMap<String, (u32, bool, BTreeMap<String, String>)>;

const WAIT: Duration = Duration::from_secs(30);

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Ground truth: display id → (pid, paused, labels) of every RUNNING or PAUSED task in
/// the namespaces the client watches by default; `None` when something changed midway.
fn truth(ctr: &Ctr) -> Option<State> {
    let in_ns = |ns: &str, args: &[&str]| {
        support::try_run_with("ctr", &["-a", &ctr.sock, "-n", ns], args).ok()
    };
    let mut out = BTreeMap::new();
    let nss = in_ns("default", &["namespaces", "ls", "-q"])?;
    for ns in nss
        .lines()
        .filter(|n| !DEFAULT_IGNORED_NAMESPACES.contains(n))
    {
        for line in in_ns(ns, &["tasks", "ls"])?.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(id), Some(pid), Some(status)) = (f.first(), f.get(1), f.get(2)) else {
                continue;
            };
            if *status != "RUNNING" && *status != "PAUSED" {
                continue;
            }
            let info: Value =
                serde_json::from_str(&in_ns(ns, &["containers", "info", id])?).ok()?;
            let labels = support::string_map(&info["Labels"]);
            let display = if ns == "default" {
                id.to_string()
            } else {
                format!("{ns}/{id}")
            };
            out.insert(display, (pid.parse().ok()?, *status == "PAUSED", labels));
        }
    }
    Some(out)
}

fn unique(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("wwcw-{what}-{}-{nanos}", std::process::id())
}

fn view(w: &Watcher) -> State {
    w.portfolio()
        .iter()
        .map(|c| {
            (
                c.id.clone(),
                (c.pid, c.paused, support::label_map(&c.labels)),
            )
        })
        .collect()
}

fn converge(ctr: &Ctr, w: &Watcher) -> State {
    support::watch::converge(WAIT, || truth(ctr), || view(w))
}

fn watch(ctr: &Ctr) -> Watcher {
    let w = Watcher::new(
        ContainerdClient::new(Some(ctr.sock.as_ref())).unwrap(),
        WatcherOptions::default(),
    );
    w.wait_ready(WAIT).expect("watcher syncs");
    w
}

/// The next event of container `id` (others are skipped).
fn next_for(sub: &Subscription, id: &str, timeout: Duration) -> Option<ContainerEvent> {
    let end = Instant::now() + timeout;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match sub.recv_timeout(left)? {
            Item::Event(e) if e.container.id == id => return Some(e),
            Item::Event(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    None
}

#[test]
fn ps_equals_ctr_ground_truth() {
    let _s = serial();
    let Some(ctr) = support::endpoint("WHALEWATCHER_CONTAINERD").map(|s| Ctr::shared(&s)) else {
        return;
    };
    let tag = unique("ps");
    let (web, db) = (format!("{tag}-web"), format!("{tag}-db"));
    ctr.start(
        &web,
        &[
            ("nerdctl/name", "web"),
            ("com.docker.compose.project", "shop"),
        ],
    );
    ctr.start(&db, &[]);
    ctr.run(&["tasks", "pause", &db]);
    let w = watch(&ctr);
    let got = converge(&ctr, &w);
    assert!(got[&db].1, "db is paused");
    let pf = w.portfolio();
    let c = pf.get(&web).expect("web in the portfolio");
    assert_eq!((c.name.as_str(), c.project.as_str()), ("web", "shop"));
    assert_eq!(c.image, ctr.image);
    assert_eq!(c.engine_kind().as_str(), "containerd.io");
    assert!(pf.project("shop").is_some_and(|p| p.get(&web).is_some()));
    w.close();
}

#[test]
fn pause_resume_exec_kill_events() {
    let _s = serial();
    let Some(ctr) = support::endpoint("WHALEWATCHER_CONTAINERD").map(|s| Ctr::shared(&s)) else {
        return;
    };
    let x = unique("x");
    ctr.start(&x, &[]);
    let w = watch(&ctr);
    let sub = w.subscribe();
    // The synthetic start of x comes first among x's events.
    let ev = next_for(&sub, &x, WAIT).expect("synthetic started");
    assert!(ev.synthetic && ev.kind == EventKind::Started && ev.container.pid > 0);
    // Warm up: containerd's event subscription may go live a moment after the call.
    let mut warm = false;
    for _ in 0..10 {
        ctr.run(&["tasks", "pause", &x]);
        let ev = next_for(&sub, &x, Duration::from_secs(1));
        ctr.run(&["tasks", "resume", &x]);
        if let Some(ev) = ev {
            assert_eq!(ev.kind, EventKind::Paused);
            assert!(ev.container.paused);
            let ev = next_for(&sub, &x, WAIT).expect("unpaused");
            assert_eq!(ev.kind, EventKind::Unpaused);
            assert!(!ev.container.paused);
            warm = true;
            break;
        }
        // Missed pause: the watcher learns of it at its next resync, if ever; wait until
        // the portfolio says x is running again before the next try.
        support::wait_until(WAIT, "x running", || {
            w.portfolio().get(&x).is_some_and(|c| !c.paused)
        });
        while let Some(Item::Event(e)) = sub.try_recv() {
            assert_eq!(e.container.id, x, "stray event {e:?}");
        }
    }
    assert!(warm, "no Paused event after 10 tries");

    // An exec'd process that ends is no exit of the container: the next event of x after
    // the exec is the pause marker.
    ctr.run(&["tasks", "exec", "--exec-id", &unique("e"), &x, "true"]);
    ctr.run(&["tasks", "pause", &x]);
    let ev = next_for(&sub, &x, WAIT).expect("paused marker");
    assert_eq!(ev.kind, EventKind::Paused, "exec exit leaked as {ev:?}");
    assert!(w.portfolio().get(&x).is_some_and(|c| c.paused));
    ctr.run(&["tasks", "resume", &x]);
    assert_eq!(next_for(&sub, &x, WAIT).unwrap().kind, EventKind::Unpaused);

    let pid = w.portfolio().get(&x).unwrap().pid;
    ctr.run(&["tasks", "kill", "-s", "KILL", &x]);
    let ev = next_for(&sub, &x, WAIT).expect("exited");
    assert_eq!(
        ev.kind,
        EventKind::Exited {
            exit_code: Some(137),
            oom: false
        }
    );
    assert_eq!(ev.container.pid, pid);
    assert!(w.portfolio().get(&x).is_none());
    converge(&ctr, &w);
    w.close();
}
