//! The watcher-level engine checks: the watcher's view in the shape of the ground truth,
//! convergence, event collection, and the checks of short-lived containers' events.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::Value;
use whalewatcher::{ContainerEvent, EventKind, Item, Subscription, Watcher};

use crate::support::cli::Snap;

/// The watcher's portfolio in the shape of the ground truth.
pub fn view(w: &Watcher) -> BTreeMap<String, Snap> {
    w.portfolio()
        .iter()
        .map(|c| {
            (
                c.id.clone(),
                Snap {
                    name: c.name.clone(),
                    pid: c.pid,
                    paused: c.paused,
                    project: c.project.clone(),
                    labels: crate::support::label_map(&c.labels),
                },
            )
        })
        .collect()
}

/// Waits (bounded) until the watcher's view equals `truth()`, and returns that state.
/// Panics with the difference otherwise.
pub fn converge<T: PartialEq + std::fmt::Debug>(
    timeout: Duration,
    mut truth: impl FnMut() -> Option<T>,
    mut view: impl FnMut() -> T,
) -> T {
    let end = Instant::now() + timeout;
    let mut last = None;
    loop {
        if let Some(t) = truth() {
            let v = view();
            if v == t {
                return t;
            }
            last = Some((t, v));
        }
        if Instant::now() >= end {
            let (t, v) = last.expect("no ground truth at all");
            panic!("watcher did not converge in {timeout:?}\n truth: {t:#?}\n watcher: {v:#?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Receives events until `stop` says so (checked on every event) or `timeout` passes.
pub fn collect(
    sub: &Subscription,
    timeout: Duration,
    mut stop: impl FnMut(&ContainerEvent) -> bool,
) -> Vec<ContainerEvent> {
    let end = Instant::now() + timeout;
    let mut got = Vec::new();
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match sub.recv_timeout(left) {
            Some(Item::Event(e)) => {
                let done = stop(&e);
                got.push(e);
                if done {
                    return got;
                }
            }
            Some(other) => panic!("unexpected {other:?}"),
            None => break,
        }
    }
    panic!(
        "timed out after {timeout:?}; got {:#?}",
        got.iter()
            .map(|e| (e.seq, e.kind, &e.container.name))
            .collect::<Vec<_>>()
    );
}

/// Kinds of the events of container `id`.
pub fn kinds(events: &[ContainerEvent], id: &str) -> Vec<EventKind> {
    events
        .iter()
        .filter(|e| e.container.id == id)
        .map(|e| e.kind)
        .collect()
}

/// Drains what the subscription has right now (waits up to `quiet` for each next item).
pub fn drain(sub: &Subscription, quiet: Duration) -> Vec<ContainerEvent> {
    let mut got = Vec::new();
    while let Some(item) = sub.recv_timeout(quiet) {
        match item {
            Item::Event(e) => got.push(e),
            other => panic!("unexpected {other:?}"),
        }
    }
    got
}

/// Watches a portfolio from a thread (polling a [`PortfolioReader`], which costs an atomic
/// load per look) and records every container matching a predicate that it ever holds.
pub struct PortfolioSpy {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<Vec<whalewatcher::Container>>>,
}

impl PortfolioSpy {
    /// Starts looking every millisecond at the portfolio behind `reader`.
    pub fn start(
        mut reader: whalewatcher::PortfolioReader,
        wanted: impl Fn(&whalewatcher::Container) -> bool + Send + 'static,
    ) -> PortfolioSpy {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut seen: Vec<whalewatcher::Container> = Vec::new();
            while !stop2.load(Ordering::SeqCst) {
                for c in reader.portfolio().iter() {
                    if wanted(c) && !seen.iter().any(|s| s.id == c.id && s.pid == c.pid) {
                        seen.push((**c).clone());
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            seen
        });
        PortfolioSpy {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops looking; every matching container the portfolio held meanwhile.
    pub fn finish(mut self) -> Vec<whalewatcher::Container> {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for PortfolioSpy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// What the engine says about a container that has exited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitTruth {
    pub id: String,
    pub name: String,
    pub project: String,
    pub labels: BTreeMap<String, String>,
    /// The image reference, where the truth knows it.
    pub image: Option<String>,
    pub exit_code: Option<i32>,
    pub oom: bool,
}

impl ExitTruth {
    /// From `docker inspect` / `podman inspect` JSON of an exited container.
    pub fn from_inspect(v: &Value) -> ExitTruth {
        assert_eq!(v["State"]["Pid"].as_u64(), Some(0), "not exited: {v}");
        let labels = crate::support::cli::docker_labels(v);
        ExitTruth {
            id: v["Id"].as_str().unwrap().to_string(),
            name: v["Name"]
                .as_str()
                .unwrap()
                .trim_start_matches('/')
                .to_string(),
            project: labels
                .get("com.docker.compose.project")
                .cloned()
                .unwrap_or_default(),
            labels,
            image: v["Config"]["Image"]
                .as_str()
                .or(v["ImageName"].as_str())
                .map(str::to_string),
            exit_code: v["State"]["ExitCode"].as_i64().map(|c| c as i32),
            oom: v["State"]["OOMKilled"].as_bool().unwrap_or(false),
        }
    }
}

/// Issue 13 item 7: the events of a container that exited at once are exactly Started,
/// then Exited with the engine's exit code and OOM flag, both live, in order, each with
/// the container's name, labels, project and image as the engine has them (pid 0 when
/// the watcher never saw a process).
pub fn check_short_lived(events: &[ContainerEvent], t: &ExitTruth) {
    check_short_lived_with(events, t, true)
}

/// [`check_short_lived`]; with `oom_in_events` false the engine's events carry no OOM flag
/// (Podman 4.3 sends no `oom` event): the watcher then has it only when its inspect came
/// after the exit, so the flag is not compared.
pub fn check_short_lived_with(events: &[ContainerEvent], t: &ExitTruth, oom_in_events: bool) {
    let mine: Vec<&ContainerEvent> = events.iter().filter(|e| e.container.id == t.id).collect();
    let kinds: Vec<EventKind> = mine
        .iter()
        .map(|e| match e.kind {
            EventKind::Exited { exit_code, .. } if !oom_in_events => EventKind::Exited {
                exit_code,
                oom: t.oom,
            },
            k => k,
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::Started,
            EventKind::Exited {
                exit_code: t.exit_code,
                oom: t.oom
            }
        ],
        "events of short-lived {} ({})",
        t.name,
        t.id
    );
    assert!(mine[0].seq < mine[1].seq, "{mine:#?}");
    for e in &mine {
        assert!(!e.synthetic, "{e:?}");
        let c = &e.container;
        assert_eq!(
            (&c.name, &c.project, &crate::support::label_map(&c.labels)),
            (&t.name, &t.project, &t.labels),
            "details of {} in its {:?} event",
            t.id,
            e.kind
        );
        assert!(!c.paused);
        if let Some(image) = &t.image {
            assert_eq!(
                &c.image, image,
                "image of {} in its {:?} event",
                t.id, e.kind
            );
        }
    }
}

/// Collects events until every container in `keys` (by name or id) has an Exited event
/// (or `timeout` passes), then whatever follows within `quiet`.
pub fn collect_exits(
    sub: &Subscription,
    keys: &[String],
    timeout: Duration,
    quiet: Duration,
) -> Vec<ContainerEvent> {
    let mut pending: std::collections::BTreeSet<&str> = keys.iter().map(String::as_str).collect();
    let mut got = collect(sub, timeout, |e| {
        if matches!(e.kind, EventKind::Exited { .. }) {
            pending.remove(e.container.name.as_str());
            pending.remove(e.container.id.as_str());
        }
        pending.is_empty()
    });
    got.extend(drain(sub, quiet));
    got
}
