//! Bursts against the real dockerd named by `WHALEWATCHER_DOCKER` (or `DOCKER_HOST`), issue 16:
//!
//! a. `docker kill` of K containers at once (one `docker kill ID…` command with every id;
//!    the CLI sends the kills concurrently);
//! b. a `docker run -d` of R containers in parallel: R threads released together, each
//!    creating and starting its container over the engine socket (the CLI's two API calls,
//!    without R CLI processes competing for the two cores).
//!
//! For each burst: p50/p99/max from the event's engine timestamp (`timeNano`) to the
//! subscriber thread of a [`Watcher`] holding it, and the time from the burst's start until
//! the watcher's portfolio equals the truth (the engine's own listing afterwards). The peer
//! from the same run is a raw `GET /events` stream read on its own thread (the engine's
//! stream with nothing on top: a floor, not a competitor): its latencies and the time until
//! it has every event of the burst.
//!
//! Env: `WHALEWATCHER_BURST_KILL` (K, default 200), `WHALEWATCHER_BURST_RUN` (R, default
//! 200), `WHALEWATCHER_IMAGE` (an image whose entrypoint blocks, default `busybox:sleep`).
//! Containers are created 8 at a time before the kill burst (dockerd 20.10 deadlocked in
//! its network code when many were removed at once, so nothing is done in bulk except the
//! burst itself), carry `--network none` and the label `whalewatcher.bench=burst`, and are
//! removed 2 at a time at the end (also after a panic) and at the start (leftovers): a
//! `docker rm -f` of 50 (50 concurrent removals) deadlocked dockerd 20.10 at 1,000.
//! Without an engine it prints a loud skip message and exits 0 (it panics under
//! `WHALEWATCHER_REQUIRE_ENGINES=1`). Without `--bench` (a `cargo test --benches` run) it
//! uses 4 containers per burst; the figures then mean nothing.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use whalewatcher::docker::DockerClient;
use whalewatcher::http::{percent_encode, HttpClient};
use whalewatcher::{EventKind, Item, Watcher, WatcherOptions};

/// The label that marks (and finds) this bench's containers.
const LABEL_KEY: &str = "whalewatcher.bench";
const LABEL_VALUE: &str = "burst";
/// Upper bound of every single wait on the engine or the watcher.
mod common;
use common::{env_usize, load, pct, utc_now};

const WAIT: Duration = Duration::from_secs(300);
/// Containers created at the same time before the kill burst.
const PARALLEL_CREATES: usize = 8;
/// Containers removed at the same time: dockerd 20.10 deadlocked in libnetwork (sandbox
/// and endpoint deletes against the network store's locks) while the 50 concurrent removals
/// of one `docker rm -f` of 50 containers ran, with 1,000 containers; 2 at a time did not.
const PARALLEL_REMOVES: usize = 2;

fn main() {
    let Some(url) = common::engine_or_skip(
        "burst",
        &["WHALEWATCHER_DOCKER", "DOCKER_HOST"],
        "set WHALEWATCHER_DOCKER=unix:///… or run tests/engines/up.sh and source its env",
    ) else {
        return;
    };
    let test_mode = !std::env::args().any(|a| a == "--bench");
    let (k, r) = if test_mode { (4, 4) } else { (200, 200) };
    let k = env_usize("WHALEWATCHER_BURST_KILL", k);
    let r = env_usize("WHALEWATCHER_BURST_RUN", r);
    let image = std::env::var("WHALEWATCHER_IMAGE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "busybox:sleep".into());
    let cleanup = Cleanup { url: url.clone() };
    cleanup.remove_all(); // leftovers of an interrupted run

    let mut report = vec![format!(
        "=== benches/burst ({url}), {} UTC, load {} ===",
        utc_now(),
        load()
    )];
    if k > 0 {
        kill_burst(&url, &image, k, &mut report);
        cleanup.remove_all();
    }
    if r > 0 {
        run_burst(&url, &image, r, &mut report);
    }
    drop(cleanup);
    report.push(format!("(load after: {})", load()));
    for line in &report {
        println!("{line}");
    }
    if test_mode {
        println!("(test mode: {k} + {r} containers; the figures mean nothing)");
    }
}

/// Removes the bench's containers when dropped (also after a panic).
struct Cleanup {
    url: String,
}

impl Cleanup {
    /// Removes every container with the bench label, [`PARALLEL_REMOVES`] at a time over the
    /// API (`DELETE /containers/ID?force=1`); never panics.
    fn remove_all(&self) {
        let h = common::http(&self.url, WAIT);
        let filters = percent_encode(&format!(r#"{{"label":["{LABEL_KEY}={LABEL_VALUE}"]}}"#));
        let ids: Vec<String> = match h.get(&format!("/containers/json?all=1&filters={filters}")) {
            Ok(r) if r.is_success() => serde_json::from_slice::<serde_json::Value>(&r.body)
                .ok()
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|c| c["Id"].as_str().map(str::to_string))
                .collect(),
            other => {
                eprintln!("benches/burst: cannot list the containers to remove: {other:?}");
                return;
            }
        };
        let began = Instant::now();
        let next = AtomicUsize::new(0);
        let failed = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..PARALLEL_REMOVES {
                s.spawn(|| {
                    let h = common::http(&self.url, WAIT);
                    while let Some(id) = ids.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let path = format!("/containers/{id}?force=1");
                        if !matches!(h.request("DELETE", &path, None), Ok(r) if r.is_success()) {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        let failed = failed.into_inner();
        if failed > 0 {
            eprintln!("benches/burst: {failed} removals failed; remove them by hand (label {LABEL_KEY}={LABEL_VALUE})");
        }
        if !ids.is_empty() {
            eprintln!(
                "benches/burst: removed {} containers in {:.1} s",
                ids.len() - failed,
                began.elapsed().as_secs_f64()
            );
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.remove_all();
    }
}

/// `docker run -d --network none --label … --name NAME IMAGE` over the API: create, start.
fn run_container(http: &HttpClient, name: &str, image: &str) -> String {
    let body = serde_json::json!({
        "Image": image,
        "Labels": { LABEL_KEY: LABEL_VALUE },
        "HostConfig": { "NetworkMode": "none" },
    })
    .to_string();
    let r = http
        .post(
            &format!("/containers/create?name={name}"),
            "application/json",
            body.as_bytes(),
        )
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
    assert!(r.is_success(), "create {name}: {}", r.error_message());
    let v: serde_json::Value = serde_json::from_slice(&r.body).expect("create answer");
    let id = v["Id"]
        .as_str()
        .expect("create answer without Id")
        .to_string();
    let r = http
        .post(&format!("/containers/{id}/start"), "text/plain", b"")
        .unwrap_or_else(|e| panic!("start {name}: {e}"));
    assert!(r.is_success(), "start {name}: {}", r.error_message());
    id
}

/// A watcher of `url` whose subscribers can queue the synthetic `Started` events of `n`
/// containers plus a burst of as many (the default queue holds 1024 events).
fn watcher(url: &str, n: usize) -> Watcher {
    let options = WatcherOptions::default().with_subscriber_capacity(2 * n + 1024);
    Watcher::new(
        DockerClient::new(Some(url)).expect("unusable engine address"),
        options,
    )
}

/// The ids of the engine's running and paused containers: the truth.
fn truth(http: &HttpClient) -> HashSet<String> {
    let filters = percent_encode(r#"{"status":["running","paused"]}"#);
    let r = http
        .get(&format!("/containers/json?filters={filters}"))
        .expect("container list failed");
    assert!(r.is_success(), "container list: {}", r.error_message());
    let list: serde_json::Value = serde_json::from_slice(&r.body).expect("list is not JSON");
    list.as_array()
        .expect("list is not an array")
        .iter()
        .map(|c| c["Id"].as_str().expect("list entry without Id").to_string())
        .collect()
}

/// One event as a receiver saw it.
#[derive(Clone)]
struct Seen {
    id: String,
    engine_time: SystemTime,
    at_wall: SystemTime,
    at: Instant,
}

/// The watcher's subscriber thread: records the live (not synthetic) events of `want`.
fn subscriber(w: &Watcher, want: fn(&EventKind) -> bool) -> std::thread::JoinHandle<Vec<Seen>> {
    let sub = w.subscribe();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        while let Some(item) = sub.recv() {
            let at = Instant::now();
            let at_wall = SystemTime::now();
            match item {
                Item::Event(e) if !e.synthetic && want(&e.kind) => seen.push(Seen {
                    id: e.container.id.clone(),
                    engine_time: e.time,
                    at_wall,
                    at,
                }),
                Item::Event(_) => {}
                other => panic!("subscription interrupted: {other:?}"),
            }
        }
        seen
    })
}

/// The peer: the engine's own `GET /events` stream, read line by line on a thread of its
/// own; records the container events of `action`. Ends when `stop` shuts the socket down.
struct RawStream {
    stop: UnixStream,
    thread: std::thread::JoinHandle<Vec<Seen>>,
}

impl RawStream {
    fn open(url: &str, action: &'static str) -> RawStream {
        let path = url.strip_prefix("unix://").unwrap_or(url);
        let mut s = UnixStream::connect(path).expect("cannot connect to the engine socket");
        let filters = percent_encode(r#"{"type":["container"]}"#);
        write!(
            s,
            "GET /events?filters={filters} HTTP/1.1\r\nHost: docker\r\n\r\n"
        )
        .expect("cannot send the events request");
        let stop = s.try_clone().expect("socket clone");
        let mut r = BufReader::new(s);
        let mut head = String::new();
        r.read_line(&mut head).expect("events: no answer");
        assert!(head.contains(" 200 "), "events: {head}");
        // The head is read before the burst begins: the stream is open.
        loop {
            let mut l = String::new();
            r.read_line(&mut l).expect("events: head");
            if l == "\r\n" || l.is_empty() {
                break;
            }
        }
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut line = String::new();
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => return seen,
                    Ok(_) => {}
                }
                let at = Instant::now();
                let at_wall = SystemTime::now();
                if !line.starts_with('{') {
                    continue; // chunk framing
                }
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if v["Action"] != action {
                    continue;
                }
                let (Some(id), Some(t)) = (v["id"].as_str(), v["timeNano"].as_u64()) else {
                    continue;
                };
                seen.push(Seen {
                    id: id.to_string(),
                    engine_time: UNIX_EPOCH + Duration::from_nanos(t),
                    at_wall,
                    at,
                });
            }
        });
        RawStream { stop, thread }
    }

    fn finish(self) -> Vec<Seen> {
        let _ = self.stop.shutdown(std::net::Shutdown::Both);
        self.thread.join().expect("the raw stream thread panicked")
    }
}

/// Polls `done(portfolio)` every millisecond from now on; the instant it first held.
fn poll_until(
    w: &Watcher,
    stop: &AtomicBool,
    done: impl Fn(&whalewatcher::Portfolio) -> bool,
) -> Option<Instant> {
    let mut reader = w.reader();
    let end = Instant::now() + WAIT;
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        if done(reader.portfolio()) {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

fn ms(d: f64) -> String {
    format!("{d:.1} ms")
}

/// Latencies (ms) from the engine's timestamp to the receiver, of the events of `ids`
/// (the first per id); also the instant the last of them arrived.
fn latencies(seen: &[Seen], ids: &HashSet<String>) -> (Vec<f64>, Option<Instant>, usize) {
    let mut first: HashMap<&str, &Seen> = HashMap::new();
    for s in seen {
        if ids.contains(&s.id) {
            first.entry(&s.id).or_insert(s);
        }
    }
    let mut v: Vec<f64> = first
        .values()
        .map(|s| match s.at_wall.duration_since(s.engine_time) {
            Ok(d) => d.as_secs_f64() * 1e3,
            Err(e) => -e.duration().as_secs_f64() * 1e3,
        })
        .collect();
    v.sort_by(f64::total_cmp);
    let last = first.values().map(|s| s.at).max();
    (v, last, first.len())
}

/// The report lines of one burst.
#[allow(clippy::too_many_arguments)]
fn burst_report(
    report: &mut Vec<String>,
    what: &str,
    n: usize,
    (began, began_wall): (Instant, SystemTime),
    command_took: Duration,
    exact_at: Option<Instant>,
    ours: &[Seen],
    raw: &[Seen],
    ids: &HashSet<String>,
) {
    // The engine's timestamp of each container's event is the one on the raw stream: the
    // watcher's `Started` carries the time its inspect was applied, not the engine's
    // (its `Exited` carries the engine's `timeNano`: the same value).
    let stamp: HashMap<&str, SystemTime> =
        raw.iter().map(|s| (s.id.as_str(), s.engine_time)).collect();
    let ours: Vec<Seen> = ours
        .iter()
        .map(|s| Seen {
            engine_time: stamp.get(s.id.as_str()).copied().unwrap_or(s.engine_time),
            ..s.clone()
        })
        .collect();
    let (lw, last_w, got_w) = latencies(&ours, ids);
    let (lr, last_r, got_r) = latencies(raw, ids);
    // The engine's last timestamp of the burst, as an Instant (through the wall clock at
    // `began`).
    let last_stamp = raw
        .iter()
        .filter(|s| ids.contains(&s.id))
        .map(|s| s.engine_time)
        .max();
    let after_last = |t: Option<Instant>| match (t, last_stamp) {
        (Some(t), Some(last)) => {
            let wall = began_wall + t.duration_since(began);
            match wall.duration_since(last) {
                Ok(d) => ms(d.as_secs_f64() * 1e3),
                Err(e) => format!("-{}", ms(e.duration().as_secs_f64() * 1e3)),
            }
        }
        _ => "?".into(),
    };
    let since = |t: Option<Instant>| {
        t.map(|t| ms(t.duration_since(began).as_secs_f64() * 1e3))
            .unwrap_or_else(|| "never".into())
    };
    report.push(format!(
        "{what}: {n} containers; the command(s) took {} (load {})",
        ms(command_took.as_secs_f64() * 1e3),
        load()
    ));
    let row = |name: &str, v: &[f64], got: usize| {
        if v.is_empty() {
            return format!("   {name:<34} no events ({got} of {n})");
        }
        format!(
            "   {name:<34} p50 {:>9}  p99 {:>9}  max {:>9}  ({got} of {n} events)",
            ms(pct(v, 0.5)),
            ms(pct(v, 0.99)),
            ms(v[v.len() - 1])
        )
    };
    report.push("   engine timeNano → receiver has the event:".into());
    report.push(row("watcher subscriber", &lw, got_w));
    report.push(row("raw GET /events stream (peer)", &lr, got_r));
    if !lw.is_empty() && !lr.is_empty() {
        report.push(format!(
            "   ratio watcher / raw stream: p50 {:.2}x  p99 {:.2}x  max {:.2}x",
            pct(&lw, 0.5) / pct(&lr, 0.5),
            pct(&lw, 0.99) / pct(&lr, 0.99),
            lw[lw.len() - 1] / lr[lr.len() - 1]
        ));
    }
    report.push(format!(
        "   from the burst's start: portfolio equals the truth after {}; the subscriber had the last event after {}; the raw stream after {}",
        since(exact_at),
        since(last_w),
        since(last_r)
    ));
    report.push(format!(
        "   from the engine's last event timestamp: portfolio equals the truth after {}; the subscriber had the last event after {}; the raw stream after {}",
        after_last(exact_at),
        after_last(last_w),
        after_last(last_r)
    ));
}

fn kill_burst(url: &str, image: &str, k: usize, report: &mut Vec<String>) {
    // K sleeping containers, PARALLEL_CREATES at a time.
    let began = Instant::now();
    let next = AtomicUsize::new(0);
    let ids = Mutex::new(Vec::with_capacity(k));
    std::thread::scope(|s| {
        for _ in 0..PARALLEL_CREATES.min(k) {
            s.spawn(|| {
                let h = common::http(url, WAIT);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= k {
                        return;
                    }
                    let id = run_container(&h, &format!("wwburst-kill-{i}"), image);
                    ids.lock().unwrap().push(id);
                }
            });
        }
    });
    let ids: Vec<String> = ids.into_inner().unwrap();
    eprintln!(
        "benches/burst: started {k} containers in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    let h = common::http(url, WAIT);
    let before = truth(&h);
    let killed: HashSet<String> = ids.iter().cloned().collect();
    assert!(killed.is_subset(&before), "not every container runs");
    let expected: HashSet<String> = before.difference(&killed).cloned().collect();

    let w = watcher(url, before.len());
    let ready_began = Instant::now();
    w.wait_ready(WAIT).expect("the watcher did not get ready");
    let ready = ready_began.elapsed();
    let holds = w
        .portfolio()
        .iter()
        .map(|c| c.id.clone())
        .collect::<HashSet<_>>();
    assert_eq!(
        holds, before,
        "the watcher's portfolio is not the truth at Ready"
    );
    report.push(format!(
        "(time to Ready of the watcher with {} containers, before the kill burst: {})",
        before.len(),
        ms(ready.as_secs_f64() * 1e3)
    ));
    let ours = subscriber(&w, |k| matches!(k, EventKind::Exited { .. }));
    let raw = RawStream::open(url, "die");
    let stop = AtomicBool::new(false);

    let began_wall = SystemTime::now();
    let began = Instant::now();
    let (exact_at, command_took) = std::thread::scope(|s| {
        let poller = s.spawn(|| {
            poll_until(&w, &stop, |p| {
                p.len() == expected.len() && expected.iter().all(|id| p.get(id).is_some())
            })
        });
        let out = Command::new("docker")
            .args(["-H", url, "kill"])
            .args(&ids)
            .stdout(Stdio::null())
            .output();
        let took = began.elapsed();
        let ok = matches!(&out, Ok(o) if o.status.success());
        if !ok {
            stop.store(true, Ordering::Relaxed);
        }
        assert!(ok, "docker kill failed: {out:?}");
        (poller.join().expect("poller panicked"), took)
    });
    // The truth afterwards: every killed container has exited.
    let after = truth(&h);
    assert_eq!(after, expected, "the engine did not kill exactly the burst");
    // Give the subscriber and the raw stream the rest (bounded), then stop them.
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end && w.portfolio().len() != expected.len() {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let raw = raw.finish();
    let metrics = format!("{:?}", w.metrics());
    w.close();
    let ours = ours.join().expect("the subscriber panicked");
    burst_report(
        report,
        "a. `docker kill` burst",
        k,
        (began, began_wall),
        command_took,
        exact_at,
        &ours,
        &raw,
        &killed,
    );
    eprintln!("benches/burst: watcher metrics after the kill burst: {metrics}");
}

fn run_burst(url: &str, image: &str, r: usize, report: &mut Vec<String>) {
    let h = common::http(url, WAIT);
    let before = truth(&h);
    let w = watcher(url, before.len());
    w.wait_ready(WAIT).expect("the watcher did not get ready");
    let ours = subscriber(&w, |k| *k == EventKind::Started);
    let raw = RawStream::open(url, "start");
    let names: Vec<String> = (0..r).map(|i| format!("wwburst-run-{i}")).collect();
    let clients: Vec<HttpClient> = (0..r).map(|_| common::http(url, WAIT)).collect();
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(r + 1);
    let ids = Arc::new(Mutex::new(Vec::with_capacity(r)));
    let expected_len = before.len() + r;

    let ((began, began_wall), exact_at, command_took) = std::thread::scope(|s| {
        for (name, client) in names.iter().zip(&clients) {
            let (barrier, ids) = (&barrier, ids.clone());
            s.spawn(move || {
                barrier.wait();
                let id = run_container(client, name, image);
                ids.lock().unwrap().push(id);
            });
        }
        let names = &names;
        let poller = s.spawn(|| {
            poll_until(&w, &stop, |p| {
                p.len() == expected_len
                    && before.iter().all(|id| p.get(id).is_some())
                    && names.iter().all(|n| !p.by_name(n).is_empty())
            })
        });
        barrier.wait();
        let began_wall = SystemTime::now();
        let began = Instant::now();
        // Every create + start answered (the threads push their id when done).
        let end = began + WAIT;
        while ids.lock().unwrap().len() < r && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(1));
        }
        let took = began.elapsed();
        if ids.lock().unwrap().len() < r {
            stop.store(true, Ordering::Relaxed);
        }
        (
            (began, began_wall),
            poller.join().expect("poller panicked"),
            took,
        )
    });
    let ids: HashSet<String> = ids.lock().unwrap().iter().cloned().collect();
    assert_eq!(ids.len(), r, "not every container started");
    let after = truth(&h);
    let expected: HashSet<String> = before.union(&ids).cloned().collect();
    assert_eq!(after, expected, "the engine does not run exactly the burst");
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end && w.portfolio().len() != expected.len() {
        std::thread::sleep(Duration::from_millis(10));
    }
    let holds = w
        .portfolio()
        .iter()
        .map(|c| c.id.clone())
        .collect::<HashSet<_>>();
    assert_eq!(holds, expected, "the watcher's portfolio is not the truth");
    std::thread::sleep(Duration::from_millis(200));
    let raw = raw.finish();
    let metrics = format!("{:?}", w.metrics());
    w.close();
    let ours = ours.join().expect("the subscriber panicked");
    burst_report(
        report,
        "b. `docker run -d` burst (create + start over the API, all threads released at once)",
        r,
        (began, began_wall),
        command_took,
        exact_at,
        &ours,
        &raw,
        &ids,
    );
    eprintln!("benches/burst: watcher metrics after the run burst: {metrics}");
}
