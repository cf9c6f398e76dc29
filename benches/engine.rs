//! Against the real dockerd named by `WHALEWATCHER_DOCKER` (or `DOCKER_HOST`):
//!
//! a. time to Ready (initial sync) of a [`Watcher`] with N containers, versus the Go
//!    original's algorithm (list, then inspect every container serially, one round trip
//!    after the other) and versus a bare `DockerClient::list` (the same 4 inspect workers,
//!    no watcher);
//! b. one cached query (`watcher.portfolio().get(id)`, `reader.portfolio().get(id)` with a
//!    `PortfolioReader`, and a lookup in a snapshot already held) versus one engine round
//!    trip for the same answer (`DockerClient::inspect`);
//! c. event latency: `POST /containers/ID/pause` (or `unpause`) answered by the engine →
//!    the subscriber holds the `Paused` (`Unpaused`) event; p50 and p99 over M events.
//!
//! Env: `WHALEWATCHER_BENCH_N` (containers, default 50), `WHALEWATCHER_BENCH_EVENTS`
//! (pause/unpause events, default 200), `WHALEWATCHER_IMAGE` (an image whose entrypoint
//! blocks, default `busybox:sleep`). Without an engine it prints a loud skip message and
//! exits 0 (fails under `WHALEWATCHER_REQUIRE_ENGINES=1`). Run by `cargo test` (criterion's
//! test mode) it uses 3 containers and 4 events and prints no timings worth reading.
//!
//! The containers carry the label `whalewatcher.bench=engine` and are removed at the end,
//! also when a measurement panics; leftovers of an interrupted run are removed at the start.

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use criterion::{BenchmarkId, Criterion};
use whalewatcher::docker::DockerClient;
use whalewatcher::http::HttpClient;
use whalewatcher::{EngineClient, EventKind, Item, Watcher, WatcherOptions};

/// The label that marks (and finds) this bench's containers.
const LABEL: &str = "whalewatcher.bench=engine";
/// The compose project of this bench's containers.
const PROJECT: &str = "whalewatcher-bench";
/// Upper bound of every single wait on the engine or the watcher.
mod common;
use common::{env_usize, pct};

const WAIT: Duration = Duration::from_secs(60);
/// Containers started at the same time.
const PARALLEL_STARTS: usize = 4;

fn main() {
    let Some(url) = common::engine_or_skip(
        "engine",
        &["WHALEWATCHER_DOCKER", "DOCKER_HOST"],
        "set WHALEWATCHER_DOCKER=unix:///… or run tests/engines/up.sh and source /tmp/whalewatcher-engines/env",
    ) else {
        return;
    };
    let test_mode = !std::env::args().any(|a| a == "--bench");
    let (n, m) = if test_mode { (3, 4) } else { (50, 200) };
    let (n, m) = (
        env_usize("WHALEWATCHER_BENCH_N", n),
        env_usize("WHALEWATCHER_BENCH_EVENTS", m),
    );
    let image = std::env::var("WHALEWATCHER_IMAGE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "busybox:sleep".into());

    let fleet = Fleet::start(&url, n, &image);
    let mut c = Criterion::default().configure_from_args();
    let mut report = Vec::new();
    time_to_ready(&mut c, &url, &fleet, &mut report);
    cached_vs_round_trip(&mut c, &url, &fleet, &mut report);
    event_latency(&url, &fleet.ids, m, &mut report);
    c.final_summary();
    drop(fleet);

    println!("\n=== benches/engine summary ({url}) ===");
    for line in &report {
        println!("{line}");
    }
    if test_mode {
        println!("(test mode: {n} containers, {m} events; the figures mean nothing)");
    }
}

/// The bench's sleeping containers; dropping it removes them.
struct Fleet {
    url: String,
    ids: Vec<String>,
}

impl Fleet {
    fn start(url: &str, n: usize, image: &str) -> Fleet {
        assert!(n > 0, "WHALEWATCHER_BENCH_N must be at least 1");
        remove_labelled(url); // leftovers of an interrupted run
        let began = Instant::now();
        let mut fleet = Fleet {
            url: url.to_string(),
            ids: Vec::with_capacity(n),
        };
        let next = std::sync::atomic::AtomicUsize::new(0);
        let started = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..PARALLEL_STARTS.min(n) {
                s.spawn(|| {
                    while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                        let label = format!("com.docker.compose.project={PROJECT}");
                        let id = docker(
                            url,
                            &[
                                "run",
                                "-d",
                                "--network",
                                "none",
                                "--label",
                                LABEL,
                                "--label",
                                &label,
                                image,
                            ],
                        );
                        started.lock().unwrap().push(id.trim().to_string());
                    }
                });
            }
        });
        fleet.ids = started.into_inner().unwrap();
        // A `docker run` that panicked re-panics at the end of the scope above; `fleet`
        // exists by then, and its Drop removes whatever did start (by label).
        assert_eq!(fleet.ids.len(), n, "not every container started");
        eprintln!(
            "benches/engine: started {n} containers ({image}) in {:.1} s",
            began.elapsed().as_secs_f64()
        );
        fleet
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let began = Instant::now();
        remove_labelled(&self.url);
        eprintln!(
            "benches/engine: removed the {} containers in {:.1} s",
            self.ids.len(),
            began.elapsed().as_secs_f64()
        );
    }
}

/// `docker -H url ARGS`, returning stdout; panics with stderr on failure.
fn docker(url: &str, args: &[&str]) -> String {
    let mut all = vec!["-H", url];
    all.extend_from_slice(args);
    support::run("docker", &all)
}

/// Removes every container with [`LABEL`]; never panics (it runs in `Drop`).
fn remove_labelled(url: &str) {
    let filter = format!("label={LABEL}");
    let Ok(out) = Command::new("docker")
        .args(["-H", url, "ps", "-aq", "--filter", &filter])
        .output()
    else {
        eprintln!("benches/engine: cannot run docker to remove the containers");
        return;
    };
    let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    for chunk in ids.chunks(50) {
        let status = Command::new("docker")
            .args(["-H", url, "rm", "-f"])
            .args(chunk)
            .stdout(std::process::Stdio::null())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("benches/engine: `docker rm -f` of {chunk:?} failed; remove them by hand (label {LABEL})");
        }
    }
}

fn client(url: &str) -> DockerClient {
    DockerClient::new(Some(url)).expect("unusable engine address")
}

/// The Go original's initial sync: `ContainerList` (alive ones), then `ContainerInspect`
/// of each, serially. The listing goes through the same HTTP client type the `DockerClient`
/// uses; each inspect is the library's `EngineClient::inspect`.
fn serial_sync(engine: &DockerClient, http: &HttpClient) -> usize {
    let filters = whalewatcher::http::percent_encode(r#"{"status":["running","paused"]}"#);
    let r = http
        .get(&format!("/containers/json?filters={filters}"))
        .expect("container list failed");
    assert!(r.is_success(), "container list: {}", r.error_message());
    let list: serde_json::Value = serde_json::from_slice(&r.body).expect("list is not JSON");
    let mut alive = 0;
    for c in list.as_array().expect("list is not an array") {
        let id = c["Id"].as_str().expect("list entry without Id");
        match engine.inspect(id) {
            Ok(c) => alive += usize::from(c.alive().is_some()),
            Err(e) if e.is_not_alive() => {}
            Err(e) => panic!("inspect {id}: {e}"),
        }
    }
    alive
}

/// A watcher from scratch until it is Ready; returns how many containers it holds.
fn watcher_sync(url: &str) -> (Watcher, usize) {
    let w = Watcher::new(client(url), WatcherOptions::default());
    w.wait_ready(WAIT).expect("the watcher did not get ready");
    let len = w.portfolio().len();
    (w, len)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    assert!(!sorted.is_empty());
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Summary of per-run durations: median, p90, min, count.
fn summary(samples: &Mutex<Vec<Duration>>) -> (Duration, String) {
    let mut s = samples.lock().unwrap().clone();
    s.sort();
    let median = percentile(&s, 0.5);
    (
        median,
        format!(
            "median {}  p90 {}  min {}  ({} runs)",
            ms(median),
            ms(percentile(&s, 0.9)),
            ms(s[0]),
            s.len()
        ),
    )
}

/// One way of getting the initial picture: a name and a run that returns how many
/// containers it found (and the watcher, to be closed outside the timing).
type Sync<'a> = (&'static str, Box<dyn Fn() -> (usize, Option<Watcher>) + 'a>);

fn time_to_ready(c: &mut Criterion, url: &str, fleet: &Fleet, report: &mut Vec<String>) {
    let n = fleet.ids.len();
    // How many alive containers the engine has in all (other users' ones count too).
    let (w, total) = watcher_sync(url);
    let ours = fleet
        .ids
        .iter()
        .filter(|id| w.portfolio().get(id).is_some())
        .count();
    assert_eq!(
        ours, n,
        "the watcher does not see all the bench's containers"
    );
    w.close();

    // "cold": a new client, so the run includes version negotiation (GET /_ping and
    // GET /info, ~7 ms on dockerd); "warm": a client that has negotiated already.
    let warm = client(url);
    warm.info().expect("the engine does not answer");
    let warm_http = common::http(url, WAIT);
    let variants: Vec<Sync> = vec![
        (
            "watcher_new_wait_ready",
            Box::new(|| {
                let (w, len) = watcher_sync(url);
                (len, Some(w))
            }),
        ),
        (
            "cold_docker_client_list_4_workers",
            Box::new(|| (client(url).list().expect("list failed").len(), None)),
        ),
        (
            "cold_go_original_serial",
            Box::new(|| (serial_sync(&client(url), &common::http(url, WAIT)), None)),
        ),
        (
            "warm_docker_client_list_4_workers",
            Box::new(|| (warm.list().expect("list failed").len(), None)),
        ),
        (
            "warm_go_original_serial",
            Box::new(|| (serial_sync(&warm, &warm_http), None)),
        ),
    ];
    let mut g = c.benchmark_group("engine/time_to_ready");
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(6));
    let mut medians = Vec::new();
    for (name, run) in &variants {
        let runs = Mutex::new(Vec::new());
        g.bench_function(BenchmarkId::new(*name, n), |b| {
            b.iter_custom(|iters| {
                let mut total_time = Duration::ZERO;
                for _ in 0..iters {
                    let began = Instant::now();
                    let (len, watcher) = black_box(run());
                    let took = began.elapsed();
                    assert!(len >= n, "{name} saw {len} containers, expected ≥ {n}");
                    total_time += took;
                    runs.lock().unwrap().push(took);
                    if let Some(w) = watcher {
                        w.close();
                    }
                }
                total_time
            })
        });
        let (median, line) = summary(&runs);
        medians.push((*name, median, line));
    }
    g.finish();

    report.push(format!(
        "a. time to Ready, {n} bench containers ({total} alive on the engine in all). \
         WatcherOptions has no inspect concurrency setting; DockerClient::list inspects on 4 threads."
    ));
    for (name, _, line) in &medians {
        report.push(format!("   {name:<36} {line}"));
    }
    let m = |k: &str| {
        medians
            .iter()
            .find(|(n, _, _)| *n == k)
            .unwrap()
            .1
            .as_secs_f64()
    };
    report.push(format!(
        "   serial / watcher (cold) = {:.2}x; serial / list, cold = {:.2}x, warm = {:.2}x",
        m("cold_go_original_serial") / m("watcher_new_wait_ready"),
        m("cold_go_original_serial") / m("cold_docker_client_list_4_workers"),
        m("warm_go_original_serial") / m("warm_docker_client_list_4_workers"),
    ));
}

fn cached_vs_round_trip(c: &mut Criterion, url: &str, fleet: &Fleet, report: &mut Vec<String>) {
    let (w, _) = watcher_sync(url);
    let engine = client(url);
    engine.info().expect("the engine does not answer"); // negotiate outside the timing
    let ids = &fleet.ids;
    let mut g = c.benchmark_group("engine/query");
    g.bench_function("cached_portfolio_get", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % ids.len();
            black_box(w.portfolio().get(&ids[i]).map(|c| c.pid))
        })
    });
    g.bench_function("reader_portfolio_get", |b| {
        let mut reader = w.reader();
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % ids.len();
            black_box(reader.portfolio().get(&ids[i]).map(|c| c.pid))
        })
    });
    let trips = Mutex::new(Vec::new());
    g.bench_function("engine_round_trip_inspect", |b| {
        let mut i = 0;
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                i = (i + 1) % ids.len();
                let began = Instant::now();
                let pid = engine
                    .inspect(&ids[i])
                    .expect("inspect failed")
                    .container()
                    .pid;
                let took = began.elapsed();
                black_box(pid);
                total += took;
                trips.lock().unwrap().push(took);
            }
            total
        })
    });
    g.finish();

    // Our own figures for the ratio: cached = median of 21 batches of 100k queries (1k in
    // unoptimized test builds).
    const BATCH: u32 = if cfg!(debug_assertions) {
        1_000
    } else {
        100_000
    };
    let cached = per_query(BATCH, |k| {
        black_box(w.portfolio().get(&ids[k % ids.len()]).map(|c| c.pid));
    });
    let mut reader = w.reader();
    let read = per_query(BATCH, |k| {
        black_box(reader.portfolio().get(&ids[k % ids.len()]).map(|c| c.pid));
    });
    let snapshot = w.portfolio();
    let held = per_query(BATCH, |k| {
        black_box(snapshot.get(&ids[k % ids.len()]).map(|c| c.pid));
    });
    let mut t = trips.lock().unwrap().clone();
    t.sort();
    let trip = percentile(&t, 0.5);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let ns = |d: Duration| d.as_secs_f64() * 1e9;
    report.push(format!(
        "b. one query (medians of 21 batches of {BATCH}) vs one engine round trip \
         (DockerClient::inspect, median of {} = {:.1} µs, p99 {:.1} µs):",
        t.len(),
        us(trip),
        us(percentile(&t, 0.99))
    ));
    report.push(format!(
        "   watcher.portfolio().get(id)      {:>6.1} ns  → round trip / cached = {:>7.0}x",
        ns(cached),
        trip.as_secs_f64() / cached.as_secs_f64().max(1e-12)
    ));
    report.push(format!(
        "   reader.portfolio().get(id)       {:>6.1} ns  → round trip / cached = {:>7.0}x",
        ns(read),
        trip.as_secs_f64() / read.as_secs_f64().max(1e-12)
    ));
    report.push(format!(
        "   held snapshot: portfolio.get(id) {:>6.1} ns  → round trip / cached = {:>7.0}x",
        ns(held),
        trip.as_secs_f64() / held.as_secs_f64().max(1e-12)
    ));
    w.close();
}

/// The time of one query: the median over 21 batches of `batch` calls of `f`.
fn per_query(batch: u32, mut f: impl FnMut(usize)) -> Duration {
    let mut batches = Vec::new();
    for _ in 0..21 {
        let began = Instant::now();
        for k in 0..batch as usize {
            f(k);
        }
        batches.push(began.elapsed() / batch);
    }
    batches.sort();
    percentile(&batches, 0.5)
}

/// What the subscriber thread saw of one event.
struct Seen {
    kind: EventKind,
    seq: u64,
    engine_time: SystemTime,
    at: Instant,
    at_wall: SystemTime,
}

/// Signed microseconds of `a - b`.
fn signed_us(a: Instant, b: Instant) -> f64 {
    match a.checked_duration_since(b) {
        Some(d) => d.as_secs_f64() * 1e6,
        None => -(b.duration_since(a).as_secs_f64() * 1e6),
    }
}

fn signed_wall_us(a: SystemTime, b: SystemTime) -> f64 {
    match a.duration_since(b) {
        Ok(d) => d.as_secs_f64() * 1e6,
        Err(e) => -(e.duration().as_secs_f64() * 1e6),
    }
}

fn line(what: &str, mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    format!(
        "   {what:<44} p50 {:>8.1} µs  p99 {:>8.1} µs  max {:>8.1} µs",
        pct(&v, 0.5),
        pct(&v, 0.99),
        v[v.len() - 1]
    )
}

/// Pauses containers `ids[0..k]` one after the other, then unpauses them in the same order,
/// round after round (k = min(N, M/2)), so that a container is touched again only after
/// 2k-1 other requests: dockerd 20.10 also applies containerd's asynchronous TaskPaused /
/// TaskResumed notifications, and one that arrives after the next unpause (pause) of the
/// same container flips its state back and logs an extra event (seen here as "already
/// paused" errors and duplicate events when the same container was toggled back to back).
fn event_latency(url: &str, ids: &[String], m: usize, report: &mut Vec<String>) {
    let k = ids.len().min(m.div_ceil(2)).max(1);
    let m = m.max(2).next_multiple_of(2 * k); // every container ends unpaused
    let targets: Vec<String> = ids[..k].to_vec();
    let (w, _) = watcher_sync(url);
    let sub = w.subscribe();
    let (tx, rx) = crossbeam_channel::unbounded::<(String, Seen)>();
    let watched: std::collections::HashSet<String> = targets.iter().cloned().collect();
    let reader = std::thread::spawn(move || {
        // Skip the synthetic Started events, then report the targets' live events.
        while let Some(item) = sub.recv() {
            let at = Instant::now();
            let at_wall = SystemTime::now();
            if let Item::Event(e) = item {
                if !e.synthetic && watched.contains(&e.container.id) {
                    let seen = Seen {
                        kind: e.kind,
                        seq: e.seq,
                        engine_time: e.time,
                        at,
                        at_wall,
                    };
                    if tx.send((e.container.id.clone(), seen)).is_err() {
                        return;
                    }
                }
            } else {
                panic!("subscription interrupted: {item:?}");
            }
        }
    });
    let http = common::http(url, WAIT);
    let trace = std::env::var("WHALEWATCHER_BENCH_TRACE").is_ok_and(|v| v == "1");
    let mut stale = 0;
    let mut from_sent = Vec::with_capacity(m);
    let mut from_answer = Vec::with_capacity(m);
    let mut from_engine = Vec::with_capacity(m);
    let mut post_took = Vec::with_capacity(m);
    for i in 0..m {
        let j = i % (2 * k);
        let id = &targets[j % k];
        let (action, want) = if j < k {
            ("pause", EventKind::Paused)
        } else {
            ("unpause", EventKind::Unpaused)
        };
        let sent_wall = SystemTime::now();
        let sent = Instant::now();
        let r = http
            .post(&format!("/containers/{id}/{action}"), "text/plain", b"")
            .unwrap_or_else(|e| panic!("POST {action}: {e}"));
        let answered = Instant::now();
        assert_eq!(
            r.status(),
            204,
            "POST {action} of {id} (request {i}): {}",
            r.error_message()
        );
        // Events stamped before the POST (someone else's, or a duplicate) are skipped.
        let deadline = Instant::now() + WAIT;
        let seen = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let seen = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no {action} event within {WAIT:?} (event {i})"));
            let (of, seen) = seen;
            if of == *id && seen.engine_time >= sent_wall {
                break seen;
            }
            stale += 1;
        };
        assert_eq!(seen.kind, want, "event {i}: expected {want:?}");
        if trace {
            eprintln!(
                "event {i:>4} #{} {action:<7} sent→204 {:>9.1} µs  204→seen {:>9.1} µs  engine→seen {:>9.1} µs",
                seen.seq,
                signed_us(answered, sent),
                signed_us(seen.at, answered),
                signed_wall_us(seen.at_wall, seen.engine_time)
            );
        }
        from_sent.push(signed_us(seen.at, sent));
        from_answer.push(signed_us(seen.at, answered));
        from_engine.push(signed_wall_us(seen.at_wall, seen.engine_time));
        post_took.push(signed_us(answered, sent));
    }
    if trace {
        eprintln!("{:?}", w.metrics());
    }
    w.close();
    reader.join().expect("the subscriber thread panicked");
    report.push(format!(
        "c. event latency, {m} events ({} pauses + {} unpauses of {k} containers in turn; POST over \
         the engine socket with a keep-alive HTTP client; {stale} stale events skipped):",
        m / 2,
        m / 2
    ));
    report.push(line(
        "engine's event timeNano → subscriber has it",
        from_engine,
    ));
    report.push(line("POST sent → subscriber has it", from_sent));
    report.push(line(
        "204 read → subscriber has it (< 0: before)",
        from_answer,
    ));
    report.push(line("(POST sent → 204 read: the engine's work)", post_took));
}
