//! The watcher against the real containerd through the fault-injecting proxy: connections
//! cut mid-stream, stalled, truncated, garbled and closed before any answer. Each failure
//! must show in `health()` as Reconnecting with a typed error; after the fault is lifted
//! the watcher converges to `ctr tasks ls` ground truth for the containers this test
//! made, including changes made meanwhile.
#![cfg(feature = "containerd")]

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::containerd::Ctr;
use support::fault_proxy::{Fault, Proxy};
use whalewatcher::containerd::ContainerdClient;
use whalewatcher::{Error, EventKind, ExponentialBackoff, Health, Item, Watcher, WatcherOptions};

const WAIT: Duration = Duration::from_secs(30);

/// Runs a detached container with a unique id; returns the id.
fn start(ctr: &Ctr, what: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let id = format!(
        "wwf-{}-{}-{what}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    ctr.start(&id, &[]);
    id
}

/// id → (pid, paused) of the RUNNING or PAUSED tasks among `ids`.
fn truth(ctr: &Ctr, ids: &[String]) -> Option<BTreeMap<String, (u32, bool)>> {
    Some(
        ctr.tasks()?
            .into_iter()
            .filter(|(id, (_, status))| {
                ids.contains(id) && (status == "RUNNING" || status == "PAUSED")
            })
            .map(|(id, (pid, status))| (id, (pid, status == "PAUSED")))
            .collect(),
    )
}

struct Setup {
    ctr: Ctr,
    proxy: Proxy,
    watcher: Watcher,
}

fn setup() -> Option<Setup> {
    let sock = support::endpoint("WHALEWATCHER_CONTAINERD")?;
    let proxy = Proxy::start(&sock);
    let opts = WatcherOptions::default().with_retry(|| {
        ExponentialBackoff::new(Duration::from_millis(150), Duration::from_millis(600))
    });
    let watcher = Watcher::new(ContainerdClient::new(proxy.path().to_str()).unwrap(), opts);
    watcher
        .wait_ready(WAIT)
        .expect("watcher syncs through the proxy");
    Some(Setup {
        ctr: Ctr::shared(&sock),
        proxy,
        watcher,
    })
}

fn view(w: &Watcher, ids: &[String]) -> BTreeMap<String, (u32, bool)> {
    let p = w.portfolio();
    ids.iter()
        .filter_map(|id| p.get(id).map(|c| (id.clone(), (c.pid, c.paused))))
        .collect()
}

fn converge(s: &Setup, ids: &[String]) -> BTreeMap<String, (u32, bool)> {
    converge_until(s, ids, |_| true)
}

/// Waits until the watcher's view equals the ground truth and the truth satisfies `done`
/// (`ctr tasks kill` returns before the task is dead).
fn converge_until(
    s: &Setup,
    ids: &[String],
    done: impl Fn(&BTreeMap<String, (u32, bool)>) -> bool,
) -> BTreeMap<String, (u32, bool)> {
    let end = Instant::now() + WAIT;
    loop {
        let t = truth(&s.ctr, ids);
        let v = view(&s.watcher, ids);
        if t.as_ref() == Some(&v) && done(&v) {
            return v;
        }
        if Instant::now() >= end {
            panic!(
                "no convergence (health {:?}):\n truth {t:#?}\n watcher {v:#?}",
                s.watcher.health()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until health is Reconnecting with an error that `pred` accepts; returns it.
fn wait_error(w: &Watcher, what: &str, pred: impl Fn(&Error) -> bool) -> Error {
    let mut seen = Vec::new();
    let end = Instant::now() + WAIT;
    loop {
        if let Health::Reconnecting { last_error, .. } = w.health() {
            if pred(&last_error) {
                return last_error;
            }
            if seen.last() != Some(&last_error) {
                seen.push(last_error);
            }
        }
        if Instant::now() >= end {
            panic!("no Reconnecting with {what}; saw {seen:#?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The error of a cut connection (a clean close between frames), as opposed to the fault
/// under test.
fn is_the_cut(e: &Error) -> bool {
    matches!(e, Error::Connection { kind: std::io::ErrorKind::UnexpectedEof, message, .. }
        if message == "connection closed by the server")
}

fn typed(e: &Error) -> bool {
    matches!(
        e,
        Error::Connection { .. }
            | Error::Timeout { .. }
            | Error::Protocol {
                layer: "http2" | "hpack" | "grpc" | "protobuf",
                ..
            }
    )
}

#[test]
fn cut_mid_stream_reconnects_and_catches_up_with_changes_made_while_cut() {
    let Some(s) = setup() else { return };
    let a = start(&s.ctr, "cut-a");
    let b = start(&s.ctr, "cut-b");
    let mut ids = vec![a.clone(), b.clone()];
    converge(&s, &ids);
    let sub = s.watcher.subscribe();

    s.proxy.set(Fault::Refuse);
    let accepted = s.proxy.accepted();
    s.proxy.cut();
    let cut = wait_error(&s.watcher, "the cut", is_the_cut);
    eprintln!("cut: {cut}");
    let e = wait_error(&s.watcher, "a refused connection", |e| {
        typed(e) && !is_the_cut(e)
    });
    eprintln!("refused: {e}");
    assert!(
        e.to_string()
            .contains(&s.proxy.path().display().to_string()),
        "{e}"
    );
    support::wait_until(WAIT, "three reconnect attempts", || {
        s.proxy.accepted() >= accepted + 3
    });
    s.ctr.run(&["tasks", "kill", "-s", "KILL", &a]);
    s.ctr.run(&["tasks", "pause", &b]);
    let c = start(&s.ctr, "cut-c");
    ids.push(c.clone());
    assert!(s.watcher.portfolio().get(&a).is_some(), "stale view kept");

    s.proxy.set(Fault::None);
    converge_until(&s, &ids, |t| {
        !t.contains_key(&a) && t.get(&b).is_some_and(|x| x.1) && t.contains_key(&c)
    });
    let mut got = BTreeMap::new();
    while got.len() < 3 {
        match sub.recv_timeout(WAIT) {
            Some(Item::Event(ev)) if ids.contains(&ev.container.id) => {
                got.insert(ev.container.id.clone(), ev.kind);
            }
            Some(Item::Event(_)) => {}
            other => panic!("unexpected {other:?}; so far {got:?}"),
        }
    }
    assert!(matches!(got[&a], EventKind::Exited { .. }), "{:?}", got[&a]);
    assert_eq!(got[&b], EventKind::Paused);
    assert_eq!(got[&c], EventKind::Started);
    s.watcher.close();
}

#[test]
fn a_stalled_handshake_times_out_and_heals() {
    let Some(s) = setup() else { return };
    let a = start(&s.ctr, "stall-a");
    let ids = vec![a.clone()];
    converge(&s, &ids);
    s.proxy.set(Fault::Stall);
    s.proxy.cut();
    let e = wait_error(&s.watcher, "a timeout", |e| {
        matches!(e, Error::Timeout { .. })
    });
    eprintln!("stalled: {e}");
    s.ctr.run(&["tasks", "kill", "-s", "KILL", &a]);
    s.proxy.set(Fault::None);
    converge_until(&s, &ids, |t| t.is_empty());
    s.watcher.close();
}

#[test]
fn truncated_frames_are_protocol_errors_and_heal() {
    let Some(s) = setup() else { return };
    let mut ids = Vec::new();
    // Inside the server's SETTINGS frame, after it, and inside a later response.
    for n in [5, 40, 300] {
        s.proxy.set(Fault::Truncate(n));
        s.proxy.cut();
        let e = wait_error(&s.watcher, &format!("a truncation at {n}"), |e| {
            matches!(e, Error::Protocol { layer: "http2", .. })
        });
        assert!(e.to_string().contains("middle of a frame"), "{e}");
        eprintln!("truncated at {n}: {e}");
        ids.push(start(&s.ctr, "trunc"));
        s.proxy.set(Fault::None);
        converge(&s, &ids);
    }
    s.watcher.close();
}

#[test]
fn garbage_in_the_event_stream_is_an_http2_protocol_error_and_heals() {
    let Some(s) = setup() else { return };
    s.proxy.cut();
    wait_error(&s.watcher, "the cut", is_the_cut);
    s.watcher.wait_ready(WAIT).unwrap();
    support::wait_until(WAIT, "an open connection", || s.proxy.open() >= 1);
    assert!(
        s.proxy
            .inject_garbage(b"\x00\x00\x05\xee\x00\x00\x00\x00\x01GARBAGE")
            >= 1
    );
    // The next event (and any call on a pooled connection) pushes the garbage out.
    let a = start(&s.ctr, "garbage-a");
    let e = wait_error(&s.watcher, "an http2 protocol error", |e| {
        matches!(e, Error::Protocol { layer: "http2", .. })
    });
    eprintln!("garbage: {e}");
    let ids = vec![a];
    converge(&s, &ids);
    s.watcher.close();
}

#[test]
fn close_before_any_answer_is_reported_and_heals() {
    let Some(s) = setup() else { return };
    let a = start(&s.ctr, "cbh-a");
    let ids = vec![a.clone()];
    converge(&s, &ids);
    s.proxy.set(Fault::CloseBeforeHead);
    s.proxy.cut();
    let e = wait_error(&s.watcher, "closed before any answer", |e| {
        typed(e) && e.to_string().contains("during the HTTP/2 handshake")
    });
    eprintln!("close before head: {e}");
    s.ctr.run(&["tasks", "kill", "-s", "KILL", &a]);
    s.proxy.set(Fault::None);
    converge_until(&s, &ids, |t| t.is_empty());
    s.watcher.close();
}

#[test]
fn close_returns_promptly_while_the_engine_stalls() {
    let Some(sock) = support::endpoint("WHALEWATCHER_CONTAINERD") else {
        return;
    };
    let proxy = Proxy::start(&sock);
    let w = Watcher::new(
        ContainerdClient::new(proxy.path().to_str()).unwrap(),
        WatcherOptions::default(),
    );
    w.wait_ready(WAIT).unwrap();
    proxy.set(Fault::Stall);
    let before = proxy.accepted();
    proxy.cut();
    support::wait_until(WAIT, "a stalled reconnect", || proxy.accepted() > before);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        w.close();
        let _ = tx.send(());
    });
    // Under the channel's 5 s handshake timeout: only cancellation can end it this soon.
    rx.recv_timeout(Duration::from_secs(4))
        .expect("close() returns while a call is stalled");
}
