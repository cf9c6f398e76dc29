//! The watcher against the real dockerd through a fault-injecting proxy: connections cut
//! mid-stream, stalled, truncated, garbled and closed before the response head. Each
//! failure must show in `health()` as Reconnecting with a typed error, and after the fault
//! is lifted the watcher must converge to `docker inspect` ground truth for the containers
//! this test made (other tests may churn the shared engine meanwhile), including changes
//! made while the proxy was broken.
#![cfg(feature = "docker")]

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use support::cli::{Cli, Snap};
use support::fault_proxy::{Fault, Proxy};
use whalewatcher::docker::DockerClient;
use whalewatcher::{Error, EventKind, ExponentialBackoff, Health, Item, Watcher, WatcherOptions};

const WAIT: Duration = Duration::from_secs(30);

struct Setup {
    cli: Cli,
    proxy: Proxy,
    watcher: Watcher,
}

fn setup(timeout: Duration) -> Option<Setup> {
    let url = support::endpoint("WHALEWATCHER_DOCKER")?;
    let proxy = Proxy::start(&url);
    let client = DockerClient::new(Some(&proxy.url()))
        .unwrap()
        .with_timeout(timeout);
    let opts = WatcherOptions::default().with_retry(|| {
        ExponentialBackoff::new(Duration::from_millis(150), Duration::from_millis(600))
    });
    let watcher = Watcher::new(client, opts);
    watcher
        .wait_ready(WAIT)
        .expect("watcher syncs through the proxy");
    Some(Setup {
        cli: Cli::docker(url),
        proxy,
        watcher,
    })
}

/// Ground truth of `ids` from `docker inspect`: the alive ones.
fn truth(cli: &Cli, ids: &[String]) -> Option<BTreeMap<String, Snap>> {
    let mut args = vec!["inspect"];
    args.extend(ids.iter().map(String::as_str));
    let all: Vec<Value> = serde_json::from_str(&cli.try_run(&args).ok()?).ok()?;
    // Processless ones are left out; a document without id or name makes it None.
    all.iter()
        .filter(|v| v["State"]["Pid"].as_u64().unwrap_or(0) != 0)
        .map(Snap::from_inspect)
        .collect()
}

/// The watcher's view of `ids`.
fn view(w: &Watcher, ids: &[String]) -> BTreeMap<String, Snap> {
    support::watch::view(w)
        .into_iter()
        .filter(|(id, _)| ids.contains(id))
        .collect()
}

fn converge(s: &Setup, ids: &[String]) -> BTreeMap<String, Snap> {
    converge_until(s, ids, |_| true)
}

/// Waits until the watcher's view equals the ground truth and the truth satisfies `done`
/// (a `docker kill` may return before the container is dead).
fn converge_until(
    s: &Setup,
    ids: &[String],
    done: impl Fn(&BTreeMap<String, Snap>) -> bool,
) -> BTreeMap<String, Snap> {
    support::watch::converge(
        WAIT,
        || truth(&s.cli, ids).filter(|t| done(t)),
        || view(&s.watcher, ids),
    )
}

/// Records every distinct health state of `w` while `f` runs (polled every 2 ms).
fn record_health<R>(w: &Watcher, f: impl FnOnce() -> R) -> (R, Vec<Health>) {
    let stop = AtomicBool::new(false);
    let seen = Mutex::new(Vec::<Health>::new());
    let r = std::thread::scope(|sc| {
        sc.spawn(|| {
            while !stop.load(Ordering::SeqCst) {
                let h = w.health();
                let mut s = seen.lock().unwrap();
                if s.last() != Some(&h) {
                    s.push(h);
                }
                drop(s);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let r = f();
        stop.store(true, Ordering::SeqCst);
        r
    });
    (r, seen.into_inner().unwrap())
}

/// Waits until health is Reconnecting with an error that `pred` accepts; returns it.
fn wait_error(w: &Watcher, what: &str, pred: impl Fn(&Error) -> bool) -> Error {
    let mut seen = Vec::new();
    let end = std::time::Instant::now() + WAIT;
    loop {
        if let Health::Reconnecting { last_error, .. } = w.health() {
            if pred(&last_error) {
                return last_error;
            }
            if seen.last() != Some(&last_error) {
                seen.push(last_error);
            }
        }
        if std::time::Instant::now() >= end {
            panic!("no Reconnecting with {what}; saw {seen:#?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn errors(states: &[Health]) -> Vec<Error> {
    states
        .iter()
        .filter_map(|h| match h {
            Health::Reconnecting { last_error, .. } => Some(last_error.clone()),
            _ => None,
        })
        .collect()
}

fn is_http_protocol(e: &Error) -> bool {
    matches!(e, Error::Protocol { layer: "http", .. })
}

/// The error of the cut event stream itself (not the fault under test).
fn is_the_cut(e: &Error) -> bool {
    e.to_string()
        .contains("connection closed in a chunk size line")
}

/// Cuts every connection and waits until the watcher noticed and is back (synced).
fn cut_and_resync(s: &Setup) {
    s.proxy.cut();
    wait_error(&s.watcher, "the cut", is_the_cut);
    s.watcher.wait_ready(WAIT).unwrap();
}

#[test]
fn cut_mid_stream_reconnects_and_catches_up_with_changes_made_while_cut() {
    let Some(s) = setup(Duration::from_secs(5)) else {
        return;
    };
    let a = s.cli.start(&s.cli.name("cut-a"), &[]);
    let b = s.cli.start(&s.cli.name("cut-b"), &[]);
    let mut ids = vec![a.clone(), b.clone()];
    converge(&s, &ids);
    let sub = s.watcher.subscribe();

    // Engine unreachable through the proxy: cut everything, refuse new connections.
    s.proxy.set(Fault::Refuse);
    let accepted = s.proxy.accepted();
    s.proxy.cut();
    let e = wait_error(&s.watcher, "a refused connection", |e| {
        !is_the_cut(e) && (is_http_protocol(e) || matches!(e, Error::Connection { .. }))
    });
    eprintln!("refused: {e}");
    assert!(e.to_string().contains(&s.proxy.url()), "{e}");
    // it keeps retrying, with backoff
    support::wait_until(WAIT, "three reconnect attempts", || {
        s.proxy.accepted() >= accepted + 3
    });
    // Changes while cut.
    s.cli.run(&["kill", &a]);
    s.cli.run(&["pause", &b]);
    let c = s.cli.start(&s.cli.name("cut-c"), &[]);
    ids.push(c.clone());
    assert!(s.watcher.portfolio().get(&a).is_some(), "stale view kept");

    s.proxy.set(Fault::None);
    converge_until(&s, &ids, |t| {
        !t.contains_key(&a) && t.get(&b).is_some_and(|x| x.paused) && t.contains_key(&c)
    });
    assert!(s.watcher.health().is_synced() || s.watcher.wait_ready(WAIT).is_ok());
    // The catch-up is reported as events: a exited, b paused, c started.
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
    assert!(
        matches!(got[&a], EventKind::Exited { .. }),
        "a: {:?}",
        got[&a]
    );
    assert_eq!(got[&b], EventKind::Paused);
    assert_eq!(got[&c], EventKind::Started);
    s.watcher.close();
}

#[test]
fn stalled_requests_time_out_and_a_stalled_stream_loses_nothing() {
    let Some(s) = setup(Duration::from_millis(800)) else {
        return;
    };
    // A stalled event stream: events wait in the proxy and arrive when it resumes.
    s.proxy.set(Fault::Stall);
    let a = s.cli.start(&s.cli.name("stall-a"), &[]);
    let ids = vec![a.clone()];
    s.proxy.set(Fault::None);
    converge(&s, &ids);

    // Stalled requests: cut, so that the reconnect's requests stall → Timeout.
    s.proxy.set(Fault::Stall);
    s.proxy.cut();
    let e = wait_error(&s.watcher, "a timeout", |e| {
        matches!(e, Error::Timeout { .. })
    });
    assert!(e.to_string().starts_with("timed out"), "{e}");
    s.cli.run(&["kill", &a]);
    s.proxy.set(Fault::None);
    converge_until(&s, &ids, |t| t.is_empty());
    s.watcher.close();
}

#[test]
fn truncated_responses_are_protocol_errors_and_heal() {
    let Some(s) = setup(Duration::from_secs(5)) else {
        return;
    };
    let a = s.cli.start(&s.cli.name("trunc-a"), &[]);
    let mut ids = vec![a.clone()];
    converge(&s, &ids);
    // In the head, in the _ping body, further into the keep-alive connection's next
    // response (the listing).
    for n in [40, 120, 400] {
        s.proxy.set(Fault::Truncate(n));
        s.proxy.cut();
        let e = wait_error(&s.watcher, &format!("a truncation error at {n}"), |e| {
            !is_the_cut(e) && is_http_protocol(e)
        });
        eprintln!("truncated at {n}: {e}");
        let b = s.cli.start(&s.cli.name("trunc-b"), &[]);
        ids.push(b);
        s.proxy.set(Fault::None);
        converge(&s, &ids);
    }
    s.cli.run(&["kill", &a]);
    converge_until(&s, &ids, |t| !t.contains_key(&a));
    s.watcher.close();
}

#[test]
fn truncation_inside_the_head_is_an_http_protocol_error() {
    let Some(s) = setup(Duration::from_secs(5)) else {
        return;
    };
    s.proxy.set(Fault::Truncate(20));
    s.proxy.cut();
    let e = wait_error(&s.watcher, "http protocol error", |e| {
        !is_the_cut(e) && is_http_protocol(e)
    });
    eprintln!("truncated head: {e}");
    assert!(e.to_string().contains("head"), "{e}");
    s.proxy.set(Fault::None);
    s.watcher.wait_ready(WAIT).unwrap();
    s.watcher.close();
}

#[test]
fn garbage_in_the_event_stream_is_a_protocol_error_and_heals() {
    let Some(s) = setup(Duration::from_secs(5)) else {
        return;
    };
    cut_and_resync(&s);
    let ((a, ids), states) = record_health(&s.watcher, || {
        assert!(s.proxy.inject_garbage(b"\x00\xffNOT A CHUNK\r\n") >= 1);
        // the next event pushes the garbage out
        let a = s.cli.start(&s.cli.name("garbage-a"), &[]);
        let ids = vec![a.clone()];
        converge(&s, &ids);
        s.watcher.wait_ready(WAIT).unwrap();
        (a, ids)
    });
    let errs = errors(&states);
    eprintln!("garbage: {errs:?}");
    assert!(
        errs.iter()
            .any(|e| is_http_protocol(e) && e.to_string().contains("chunk size is not hexadecimal")),
        "no chunk framing error in {states:#?}"
    );
    s.cli.run(&["kill", &a]);
    converge_until(&s, &ids, |t| t.is_empty());
    s.watcher.close();
}

#[test]
fn garbage_before_the_response_head_is_an_http_protocol_error() {
    let Some(s) = setup(Duration::from_secs(5)) else {
        return;
    };
    s.proxy.set(Fault::Stall); // hold the reconnect's first response ...
    s.proxy.cut();
    support::wait_until(WAIT, "a reconnect attempt", || s.proxy.open() >= 1);
    assert!(s.proxy.inject_garbage(b"SSH-2.0-OpenSSH\r\n\r\n") >= 1); // ... and garble it
    s.proxy.set(Fault::None);
    let e = wait_error(&s.watcher, "a malformed head", |e| {
        is_http_protocol(e) && !is_the_cut(e)
    });
    eprintln!("garbage before head: {e}");
    assert!(e.to_string().contains("malformed response head"), "{e}");
    s.watcher.wait_ready(WAIT).unwrap();
    s.watcher.close();
}

#[test]
fn close_before_the_response_head_is_reported_and_heals() {
    let Some(s) = setup(Duration::from_secs(5)) else {
        return;
    };
    let a = s.cli.start(&s.cli.name("cbh-a"), &[]);
    let ids = vec![a.clone()];
    converge(&s, &ids);
    s.proxy.set(Fault::CloseBeforeHead);
    s.proxy.cut();
    let e = wait_error(&s.watcher, "closed before the head", |e| {
        !is_the_cut(e) && (is_http_protocol(e) || matches!(e, Error::Connection { .. }))
    });
    eprintln!("close before head: {e}");
    s.cli.run(&["kill", &a]);
    s.proxy.set(Fault::None);
    converge_until(&s, &ids, |t| t.is_empty());
    s.watcher.close();
}

#[test]
fn close_returns_promptly_while_the_engine_stalls() {
    // Default request timeout (30 s): only cancellation can end the stalled reads.
    let Some(url) = support::endpoint("WHALEWATCHER_DOCKER") else {
        return;
    };
    let proxy = Proxy::start(&url);
    let w = Watcher::new(
        DockerClient::new(Some(&proxy.url())).unwrap(),
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
    rx.recv_timeout(Duration::from_secs(10))
        .expect("close() returns while a request is stalled");
}
