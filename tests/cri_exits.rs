//! CRI without lost events, against a real containerd (`WHALEWATCHER_CRI`; run once per
//! engine generation by sourcing its env): one-shot listings that open no event stream,
//! watchers side by side with other subscribers that each see every exit with its exit
//! code, short-lived containers at the client level, and a measurement of the exit
//! latency (printed, not asserted).
#![cfg(feature = "cri")]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use support::cri::{exit_truth, runtime_version, Pod, RawSubscriber};
use whalewatcher::cri::api::ContainerState;
use whalewatcher::cri::{CriClient, EventMode};
use whalewatcher::{
    EngineClient, EventKind, Inspection, Item, Subscription, Watcher, WatcherOptions,
};

/// The engine tests of this file run one at a time (their containers and timings would
/// otherwise mix).
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn endpoint() -> Option<String> {
    support::endpoint("WHALEWATCHER_CRI")
}

/// The mode the client must pick for this runtime.
fn expected_mode(cri: &CriClient) -> &'static str {
    let (name, version) = runtime_version(cri.channel());
    EventMode::for_runtime(&name, &version).as_str()
}

use support::whalewatch_binary as binary;

/// `whalewatch --cri PATH ps --json`: the listed ids, and how long it took.
fn ps(path: &str) -> (BTreeSet<String>, Duration) {
    let t0 = Instant::now();
    let out = Command::new(binary())
        .args(["--cri", path, "ps", "--json"])
        .output()
        .expect("cannot run whalewatch");
    let took = t0.elapsed();
    assert!(
        out.status.success(),
        "ps failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ps --json is JSON");
    let ids = v
        .as_array()
        .expect("an array")
        .iter()
        .map(|c| c["id"].as_str().expect("id").to_string())
        .collect();
    (ids, took)
}

#[test]
fn ten_one_shot_listings_in_a_row_are_prompt() {
    let Some(path) = endpoint() else { return };
    let _s = serial();
    let cri = CriClient::new(Some(path.as_ref())).unwrap();
    let pod = Pod::run(&cri, "oneshot");
    let web = pod.run_container("web");
    let mut took = Vec::new();
    for _ in 0..10 {
        let (ids, t) = ps(&path);
        assert!(ids.contains(&web) && ids.contains(&pod.id), "{ids:?}");
        took.push(t);
    }
    eprintln!("ten one-shot `ps --json`: {took:?}");
    // Functional bound (a listing that waits for an event stream took 20 s and more on
    // containerd 2.1): far above the ~10 ms these take.
    for t in &took {
        assert!(*t < Duration::from_secs(5), "{took:?}");
    }
    // The text form names the mode the watcher would use, without opening a stream.
    let out = Command::new(binary())
        .args(["--cri", &path, "ps"])
        .output()
        .expect("cannot run whalewatch");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.ends_with(&format!("cri {path} ({} events)\n", expected_mode(&cri))),
        "{text}"
    );
}

/// Waits for an event of each of `want` (id → kind name) on `sub`; returns the events of
/// the ids in `want` (in order) with their receipt times.
fn await_events(
    sub: &Subscription,
    want: &BTreeMap<String, &str>,
    timeout: Duration,
) -> Vec<(whalewatcher::ContainerEvent, SystemTime)> {
    let end = Instant::now() + timeout;
    let mut got: Vec<(whalewatcher::ContainerEvent, SystemTime)> = Vec::new();
    let done = |got: &[(whalewatcher::ContainerEvent, SystemTime)]| {
        want.iter().all(|(id, kind)| {
            got.iter()
                .any(|(e, _)| &e.container.id == id && e.kind.as_str() == *kind)
        })
    };
    while !done(&got) {
        let left = end.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "timed out waiting for {want:?}; got {:?}",
            got.iter()
                .map(|(e, _)| (e.container.id.clone(), e.kind))
                .collect::<Vec<_>>()
        );
        match sub.recv_timeout(left) {
            Some(Item::Event(e)) if want.contains_key(&e.container.id) => {
                got.push((e, SystemTime::now()))
            }
            Some(Item::Event(_)) => {}
            Some(other) => panic!("unexpected {other:?}"),
            None => {}
        }
    }
    got
}

/// The exit code per ContainerStatus, once the runtime has recorded the exit (it may
/// report the exit event a little before its status says so).
fn exited_truth(ch: &whalewatcher::grpc::Channel, id: &str) -> i32 {
    let mut code = None;
    support::wait_until(Duration::from_secs(10), "CRI status says exited", || {
        let (state, c) = exit_truth(ch, id);
        code = Some(c);
        state == ContainerState::CONTAINER_EXITED
    });
    code.unwrap()
}

fn exit_code(e: &whalewatcher::ContainerEvent) -> Option<i32> {
    match e.kind {
        EventKind::Exited { exit_code, .. } => exit_code,
        _ => None,
    }
}

#[test]
fn every_watcher_reports_every_exit_beside_other_subscribers() {
    let Some(path) = endpoint() else { return };
    let _s = serial();
    let cri = CriClient::new(Some(path.as_ref())).unwrap();
    let mode = expected_mode(&cri);
    let watchers: Vec<Watcher> = (0..2)
        .map(|i| {
            Watcher::new(
                CriClient::new(Some(path.as_ref())).unwrap(),
                WatcherOptions {
                    name: format!("cri-exits-{i}"),
                    ..WatcherOptions::default()
                },
            )
        })
        .collect();
    // They start at once, also on an idle engine (no probe, no deadline to wait out).
    let t0 = Instant::now();
    for w in &watchers {
        w.wait_ready(Duration::from_secs(20)).expect("synced");
        assert_eq!(w.engine_info().expect("info").mode, mode);
    }
    eprintln!("two watchers synced in {:?} (mode {mode})", t0.elapsed());
    let subs: Vec<Subscription> = watchers.iter().map(|w| w.subscribe()).collect();
    // A one-shot listing between them, and a third-party CRI event subscriber (on
    // containerd 1.7 it takes its share of the CRI events; containerd 1.6 refuses it).
    let (_, took) = ps(&path);
    eprintln!("one-shot ps between the watchers: {took:?}");
    let raw = RawSubscriber::open(&path);

    let mut pod = Pod::run(&cri, "exits");
    let term = pod.run_container("term");
    let kill = pod.run_container("kill");
    let three = pod.run_cmd("three", &["sh", "-c", "sleep 3; exit 3"]);
    let started: BTreeMap<String, &str> = [&pod.id, &term, &kill, &three]
        .into_iter()
        .map(|id| (id.clone(), "started"))
        .collect();
    for sub in &subs {
        await_events(sub, &started, Duration::from_secs(20));
    }
    pod.stop_timeout(&term, 10);
    pod.stop(&kill);
    let exited: BTreeMap<String, &str> = [&term, &kill, &three]
        .into_iter()
        .map(|id| (id.clone(), "exited"))
        .collect();
    let mut truth = BTreeMap::new();
    for (i, sub) in subs.iter().enumerate() {
        let got = await_events(sub, &exited, Duration::from_secs(20));
        for id in exited.keys() {
            let code = *truth
                .entry(id.clone())
                .or_insert_with(|| exited_truth(&pod.ch, id));
            let mine: Vec<_> = got
                .iter()
                .filter(|(e, _)| &e.container.id == id && e.kind.as_str() == "exited")
                .collect();
            assert_eq!(mine.len(), 1, "watcher {i}, {id}: {got:?}");
            assert_eq!(exit_code(&mine[0].0), Some(code), "watcher {i}, {id}");
        }
    }
    assert_eq!(truth[&three], 3);
    assert_eq!(truth[&kill], 137);
    eprintln!(
        "exit codes (mode {mode}): term {}, kill {}, exit 3 {}",
        truth[&term], truth[&kill], truth[&three]
    );
    // The sandbox's end too.
    let sandbox = pod.id.clone();
    pod.destroy();
    let gone: BTreeMap<String, &str> = [(sandbox.clone(), "exited")].into();
    for sub in &subs {
        await_events(sub, &gone, Duration::from_secs(20));
    }
    for w in &watchers {
        assert!(w.portfolio().get(&sandbox).is_none());
        assert!(exited.keys().all(|id| w.portfolio().get(id).is_none()));
    }
    let raw_events = raw.close();
    eprintln!(
        "the raw GetContainerEvents subscriber got {} events",
        raw_events.len()
    );
    for w in watchers {
        w.close();
    }
}

#[test]
fn short_lived_container_starts_and_exits_with_its_code() {
    let Some(path) = endpoint() else { return };
    let _s = serial();
    let cri = std::sync::Arc::new(CriClient::new(Some(path.as_ref())).unwrap());
    let mut stream = cri.events().expect("events");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        while let Ok(Some(e)) = stream.next_event() {
            if tx.send(e).is_err() {
                break;
            }
        }
    });
    let pod = Pod::run(&cri, "short");
    let id = pod.run_cmd("short", &["sh", "-c", "exit 3"]);
    let end = Instant::now() + Duration::from_secs(20);
    let mut kinds = Vec::new();
    while !kinds.iter().any(|k| matches!(k, EventKind::Exited { .. })) {
        let left = end.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out; got {kinds:?}");
        if let Ok(e) = rx.recv_timeout(left) {
            if e.id == id {
                kinds.push(e.kind);
            }
        }
    }
    let relist = cri.info().expect("info").mode == whalewatcher::cri::EventMode::Relist.as_str();
    if !relist {
        assert_eq!(
            kinds,
            vec![
                EventKind::Started,
                EventKind::Exited {
                    exit_code: Some(3),
                    oom: false
                }
            ]
        );
    }
    // inspect, right after the exit event, knows the details and the exit status (in
    // mode containerd-events the CRI status may not say exited yet: inspect follows the
    // task and waits for it).
    match cri.inspect(&id).expect("inspect") {
        Inspection::Exited(c, st) => {
            assert_eq!(c.name, "short");
            assert_eq!(c.pid, 0);
            assert_eq!(
                c.labels.get(whalewatcher::cri::POD_NAME_LABEL),
                Some(pod.name.as_str())
            );
            assert_eq!(c.labels.get("ww-container"), Some("short"));
            assert!(!c.image.is_empty());
            assert_eq!(st.exit_code, Some(3));
            assert!(!st.oom);
            assert!(st.time.is_some());
        }
        other => panic!("{other:?}"),
    }
    cri.cancel();
    reader.join().unwrap();
}

/// Percentile `p` (0..=100) of sorted `v`.
fn percentile(v: &[Duration], p: usize) -> Duration {
    v[((v.len() - 1) * p + 50) / 100]
}

/// Exit latency per event mode, printed (not asserted): from the engine's event time to
/// the subscriber (for relisting that time is the watcher's own detection time), and
/// from the return of StopContainer to the subscriber.
#[test]
fn exit_latency_is_measured() {
    let Some(path) = endpoint() else { return };
    let _s = serial();
    const N: usize = 20;
    let cri = CriClient::new(Some(path.as_ref())).unwrap();
    let (name, version) = runtime_version(cri.channel());
    let generation = std::env::var("WHALEWATCHER_GENERATION").unwrap_or_else(|_| "host".into());
    let mut modes = vec![EventMode::ContainerdEvents, EventMode::Relist];
    // CRI events only where they are reliable: containerd 1.6 has none, 1.7's go to one
    // stream each (an abandoned stream of an earlier test swallows the next event).
    if EventMode::for_runtime(&name, &version) == EventMode::Evented {
        modes.insert(0, EventMode::Evented);
    }
    for mode in modes {
        let w = Watcher::new(
            CriClient::new(Some(path.as_ref()))
                .unwrap()
                .with_event_mode(mode),
            WatcherOptions::default(),
        );
        w.wait_ready(Duration::from_secs(20)).expect("synced");
        assert_eq!(w.engine_info().expect("info").mode, mode.as_str());
        let sub = w.subscribe();
        let pod = Pod::run(&cri, "latency");
        let ids: Vec<String> = (0..N)
            .map(|i| pod.run_container(&format!("c{i}")))
            .collect();
        let started: BTreeMap<String, &str> =
            ids.iter().map(|id| (id.clone(), "started")).collect();
        await_events(&sub, &started, Duration::from_secs(60));
        let (mut from_engine, mut from_stop) = (Vec::new(), Vec::new());
        for id in &ids {
            pod.stop(id);
            let stopped = SystemTime::now();
            let want: BTreeMap<String, &str> = [(id.clone(), "exited")].into();
            for (e, at) in await_events(&sub, &want, Duration::from_secs(20)) {
                if e.kind.as_str() == "exited" {
                    from_engine.push(at.duration_since(e.time).unwrap_or_default());
                    from_stop.push(at.duration_since(stopped).unwrap_or_default());
                }
            }
        }
        from_engine.sort();
        from_stop.sort();
        eprintln!(
            "CRI exit latency, {generation} ({name} {version}), mode {}: engine time -> subscriber p50 {:?} p99 {:?}; StopContainer return -> subscriber p50 {:?} p99 {:?} (n={})",
            mode.as_str(),
            percentile(&from_engine, 50),
            percentile(&from_engine, 99),
            percentile(&from_stop, 50),
            percentile(&from_stop, 99),
            from_engine.len()
        );
        drop(pod);
        w.close();
    }
}

/// One `whalewatch --cri PATH events --json` process; its lines `(id, type, exit_code)`.
struct CliWatcher {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<(String, String, Option<i64>)>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl CliWatcher {
    fn start(path: &str) -> CliWatcher {
        use std::io::BufRead;
        let mut child = Command::new(binary())
            .args(["--cri", path, "events", "--json"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("cannot run whalewatch");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                let v: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
                let id = v["container"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let kind = v["type"].as_str().unwrap_or_default().to_string();
                if tx.send((id, kind, v["exit_code"].as_i64())).is_err() {
                    return;
                }
            }
        });
        CliWatcher {
            child,
            lines,
            reader: Some(reader),
        }
    }

    /// Waits for a line of each `(id, type)` in `want`; the exit codes of the exits.
    fn await_lines(&self, want: &[(&str, &str)]) -> BTreeMap<String, Option<i64>> {
        let end = Instant::now() + Duration::from_secs(20);
        let mut seen: Vec<(String, String, Option<i64>)> = Vec::new();
        while !want
            .iter()
            .all(|(id, k)| seen.iter().any(|(i, kk, _)| i == id && kk == k))
        {
            let left = end.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {want:?}; got {seen:?}"
            );
            if let Ok(l) = self.lines.recv_timeout(left) {
                seen.push(l);
            }
        }
        seen.into_iter()
            .filter(|(_, k, _)| k == "exited")
            .map(|(i, _, c)| (i, c))
            .collect()
    }
}

impl Drop for CliWatcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// The reproduction, as a user runs it: two `whalewatch events` side by side, a
/// `whalewatch ps` between them and a raw CRI event subscriber; every exit reaches both.
#[test]
fn two_cli_watchers_and_a_ps_between_them_see_every_exit() {
    let Some(path) = endpoint() else { return };
    let _s = serial();
    let cri = CriClient::new(Some(path.as_ref())).unwrap();
    let pod = Pod::run(&cri, "cli");
    let clis = [CliWatcher::start(&path), CliWatcher::start(&path)];
    // Synced: each printed the (synthetic) start of the pod's sandbox.
    for c in &clis {
        c.await_lines(&[(&pod.id, "started")]);
    }
    ps(&path);
    let _raw = RawSubscriber::open(&path);
    let kill = pod.run_container("kill");
    let three = pod.run_cmd("three", &["sh", "-c", "sleep 2; exit 3"]);
    for c in &clis {
        c.await_lines(&[(&kill, "started"), (&three, "started")]);
    }
    pod.stop(&kill);
    for (i, c) in clis.iter().enumerate() {
        let exits = c.await_lines(&[(&kill, "exited"), (&three, "exited")]);
        assert_eq!(exits[&kill], Some(137), "cli {i}");
        assert_eq!(exits[&three], Some(3), "cli {i}");
    }
}

/// containerd 2.x keeps CRI events while nobody subscribes and hands them to the next
/// subscriber; the client's stream must not report them (the listing after the open is
/// fresher). Changes made while nobody listens, then a stream: nothing about them, but a
/// live change afterwards comes through.
#[test]
fn a_backlog_from_before_the_stream_is_not_reported() {
    let Some(path) = endpoint() else { return };
    let _s = serial();
    let cri = std::sync::Arc::new(CriClient::new(Some(path.as_ref())).unwrap());
    let pod = Pod::run(&cri, "backlog");
    let gone = pod.run_container("gone");
    pod.stop(&gone);
    exited_truth(&pod.ch, &gone);
    let mut stream = cri.events().expect("events");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        while let Ok(Some(e)) = stream.next_event() {
            if tx.send(e).is_err() {
                break;
            }
        }
    });
    let old = [pod.id.clone(), gone.clone()];
    let quiet_until = Instant::now() + Duration::from_secs(1);
    while let Some(left) = quiet_until.checked_duration_since(Instant::now()) {
        if let Ok(e) = rx.recv_timeout(left) {
            assert!(!old.contains(&e.id), "stale event {e:?}");
        }
    }
    let live = pod.run_container("live");
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no live start");
        match rx.recv_timeout(left) {
            Ok(e) if e.id == live => {
                assert_eq!(e.kind, EventKind::Started);
                break;
            }
            Ok(e) => assert!(!old.contains(&e.id), "stale event {e:?}"),
            Err(_) => {}
        }
    }
    cri.cancel();
    reader.join().unwrap();
}

/// Issue 13 item 7 for CRI at the watcher level: five containers that `exit 3` at once
/// each appear as Started + Exited(3) and never enter the portfolio. Needs the watcher
/// core that reports short-lived containers.
#[test]
fn watcher_reports_short_lived_containers_with_their_exit_code() {
    let Some(path) = endpoint() else { return };
    let _s = serial();
    let cri = CriClient::new(Some(path.as_ref())).unwrap();
    let w = Watcher::new(
        CriClient::new(Some(path.as_ref())).unwrap(),
        WatcherOptions::default(),
    );
    w.wait_ready(Duration::from_secs(20)).expect("synced");
    let sub = w.subscribe();
    let pod = Pod::run(&cri, "shortlived");
    let ids: Vec<String> = (0..5)
        .map(|i| pod.run_cmd(&format!("s{i}"), &["sh", "-c", "exit 3"]))
        .collect();
    let want: BTreeMap<String, &str> = ids.iter().map(|id| (id.clone(), "exited")).collect();
    let got = await_events(&sub, &want, Duration::from_secs(20));
    for id in &ids {
        let mine: Vec<EventKind> = got
            .iter()
            .filter(|(e, _)| &e.container.id == id)
            .map(|(e, _)| e.kind)
            .collect();
        assert_eq!(
            mine,
            vec![
                EventKind::Started,
                EventKind::Exited {
                    exit_code: Some(3),
                    oom: false
                }
            ],
            "{id}"
        );
        assert!(w.portfolio().get(id).is_none());
    }
    w.close();
}
