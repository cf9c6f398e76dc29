//! The watcher beyond one machine's containers (issue 16): a simulated engine with N = 1,000,
//! 10,000 and 100,000 containers and a realistic per-container inspect latency, driven through
//! the public API only. Prints one table row per N:
//!
//! - time to Ready (the listing, inspects modelled as `INSPECT_LATENCY` each on
//!   `INSPECT_CONCURRENCY` engine threads, plus everything the watcher does with the result),
//! - live heap bytes per container once Ready (a counting global allocator: exact, no RSS noise),
//! - sync-thread throughput: pause/unpause events applied and delivered to one subscriber, per s,
//! - lookup by id on a held snapshot and through a `PortfolioReader` (ns per lookup),
//! - a burst: 10 % of the containers exit at once; time until the portfolio equals the truth.
//!
//! First it prints the heap of ONE container as the Docker client keeps it (two labels, as
//! benches/footprint.sh starts them): allocations, bytes asked for and bytes in glibc chunks,
//! with its labels as `Labels` and, for comparison, as the `BTreeMap<String, String>` that
//! `Container.labels` was before.
//!
//! `cargo bench --bench scale` runs all sizes; `WHALEWATCHER_SCALE_N=1000,10000` picks sizes
//! (`WHALEWATCHER_SCALE_N=` only the one-container breakdown).
//! Under `cargo test` (`--bench` built in test mode) it runs N = 1,000 only, as a smoke test.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use whalewatcher::engine::{EventStream, RawEvent};
use whalewatcher::{
    Container, EngineClient, EngineInfo, Error, EventKind, Inspection, Item, Result, Watcher,
    WatcherOptions,
};

/// Counts live heap bytes, live allocations and their glibc chunk bytes.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static LIVE_COUNT: AtomicIsize = AtomicIsize::new(0);
static LIVE_CHUNKS: AtomicIsize = AtomicIsize::new(0);

/// The bytes of the glibc malloc chunk (64-bit) that an allocation of `size` takes: the
/// size plus the 8-byte header, rounded up to 16, at least 32.
fn chunk(size: usize) -> isize {
    ((size + 8 + 15) & !15).max(32) as isize
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        LIVE_COUNT.fetch_add(1, Ordering::Relaxed);
        LIVE_CHUNKS.fetch_add(chunk(l.size()), Ordering::Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        LIVE_COUNT.fetch_sub(1, Ordering::Relaxed);
        LIVE_CHUNKS.fetch_sub(chunk(l.size()), Ordering::Relaxed);
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        LIVE_CHUNKS.fetch_add(chunk(new) - chunk(l.size()), Ordering::Relaxed);
        System.realloc(p, l, new)
    }
}

/// (allocations, bytes asked for, glibc chunk bytes) that `make` leaves live. Exact only
/// while no other thread allocates (it runs before any watcher starts).
fn heap_of<T>(make: impl FnOnce() -> T) -> (T, [isize; 3]) {
    let before = [&LIVE_COUNT, &LIVE, &LIVE_CHUNKS].map(|a| a.load(Ordering::SeqCst));
    let t = make();
    let after = [&LIVE_COUNT, &LIVE, &LIVE_CHUNKS].map(|a| a.load(Ordering::SeqCst));
    (t, [0, 1, 2].map(|i| after[i] - before[i]))
}

/// The heap of one container as the Docker client keeps it, its labels as `Labels` and,
/// for comparison, as a `BTreeMap<String, String>` (the type of `Container.labels` before).
fn one_container() {
    let engine = Arc::new(whalewatcher::EngineRef {
        kind: whalewatcher::EngineKind::Docker,
        id: "engine".into(),
    });
    let pairs = [
        ("whalewatcher.bench", "footprint"),
        (whalewatcher::PROJECT_LABEL, "whalewatcher-footprint"),
    ];
    // What the inspect decoder builds: exact-capacity strings, labels built once, in an Arc.
    let (c, total) = heap_of(|| {
        let mut c =
            Container::new(format!("{:064x}", 0xc0ffee), "eager_turing", 4242).with_labels(pairs);
        c.image = "busybox:sleep".into();
        c.engine = engine.clone();
        Arc::new(c)
    });
    let (labels, as_labels) = heap_of(|| c.labels.clone());
    let (map, as_map) = heap_of(|| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<String, String>>()
    });
    // The Arc<Container> was 8 bytes smaller with a BTreeMap (24 instead of 32 bytes inline).
    let arc = std::mem::size_of::<Container>() + 16;
    let arc_before = arc - std::mem::size_of::<whalewatcher::Labels>()
        + std::mem::size_of::<BTreeMap<String, String>>();
    let before = [
        total[0] - as_labels[0] + as_map[0],
        total[1] - as_labels[1] + as_map[1] - (arc - arc_before) as isize,
        total[2] - as_labels[2] + as_map[2] - (chunk(arc) - chunk(arc_before)),
    ];
    println!(
        "one Docker container with 2 labels: {} allocations, {} B asked, {} B in glibc chunks \
         (labels {} / {} / {}; Arc<Container> {arc} B)",
        total[0], total[1], total[2], as_labels[0], as_labels[1], as_labels[2]
    );
    println!(
        "  the same with labels: BTreeMap<String, String>: {} allocations, {} B asked, {} B in \
         glibc chunks (labels {} / {} / {}; Arc<Container> {arc_before} B)",
        before[0], before[1], before[2], as_map[0], as_map[1], as_map[2]
    );
    black_box((c, labels, map));
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// What one inspect costs a real engine (dockerd 20.10 answers one in ~180 µs on this machine).
const INSPECT_LATENCY: Duration = Duration::from_micros(150);
/// Engine threads serving inspects at once.
const INSPECT_CONCURRENCY: u32 = 4;

#[derive(Default)]
struct Truth {
    alive: HashMap<String, Container>,
    streams: Vec<Sender<RawEvent>>,
}

/// A simulated engine: the truth in memory, events through channels, a listing that costs
/// what inspecting every container costs.
#[derive(Clone, Default)]
struct SimEngine {
    truth: Arc<Mutex<Truth>>,
    cancelled: Arc<AtomicBool>,
}

impl SimEngine {
    fn container(i: usize) -> Container {
        let mut labels = BTreeMap::new();
        labels.insert(
            whalewatcher::PROJECT_LABEL.to_string(),
            format!("project-{}", i % 50),
        );
        labels.insert(
            "com.docker.compose.service".into(),
            format!("svc-{}", i % 7),
        );
        labels.insert("maintainer".into(), "someone@example.com".into());
        let mut c = Container::new(
            format!("{i:064x}"),
            format!("container-{i}"),
            10_000 + i as u32,
        )
        .with_labels(labels);
        c.image = "registry.example.com/team/app:1.2.3".into();
        c
    }

    fn emit(t: &mut Truth, kind: EventKind, id: &str) {
        let ev = RawEvent::new(kind, id);
        t.streams.retain(|s| s.send(ev.clone()).is_ok());
    }

    fn set_paused(&self, i: usize, paused: bool) {
        let mut t = self.truth.lock();
        let id = format!("{i:064x}");
        if let Some(c) = t.alive.get_mut(&id) {
            c.paused = paused;
            let k = if paused {
                EventKind::Paused
            } else {
                EventKind::Unpaused
            };
            Self::emit(&mut t, k, &id);
        }
    }

    fn exit(&self, i: usize) {
        let mut t = self.truth.lock();
        let id = format!("{i:064x}");
        if t.alive.remove(&id).is_some() {
            let k = EventKind::Exited {
                exit_code: Some(137),
                oom: false,
            };
            Self::emit(&mut t, k, &id);
        }
    }
}

struct SimStream(Receiver<RawEvent>, Arc<AtomicBool>);

impl EventStream for SimStream {
    fn next_event(&mut self) -> Result<Option<RawEvent>> {
        loop {
            if self.1.load(Ordering::SeqCst) {
                return Err(Error::Cancelled);
            }
            match self.0.recv_timeout(Duration::from_millis(50)) {
                Ok(ev) => return Ok(Some(ev)),
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                Err(_) => return Ok(None),
            }
        }
    }
}

impl EngineClient for SimEngine {
    fn info(&self) -> Result<EngineInfo> {
        Ok(EngineInfo {
            id: "sim".into(),
            kind: whalewatcher::EngineKind::Docker, // a simulated engine reports one of the four
            ..Default::default()
        })
    }
    fn list(&self) -> Result<Vec<Arc<Container>>> {
        let list: Vec<Arc<Container>> = (self.truth.lock().alive.values())
            .map(|c| Arc::new(c.clone()))
            .collect();
        std::thread::sleep(INSPECT_LATENCY * list.len() as u32 / INSPECT_CONCURRENCY);
        Ok(list)
    }
    fn inspect(&self, id: &str) -> Result<Inspection> {
        std::thread::sleep(INSPECT_LATENCY);
        let t = self.truth.lock();
        t.alive
            .get(id)
            .cloned()
            .map(Inspection::Alive)
            .ok_or_else(|| Error::NotFound { id: id.into() })
    }
    fn events(&self) -> Result<Box<dyn EventStream>> {
        let (tx, rx) = crossbeam_channel::unbounded();
        self.truth.lock().streams.push(tx);
        Ok(Box::new(SimStream(rx, self.cancelled.clone())))
    }
    fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(600);
    while !f() {
        assert!(Instant::now() < end, "timed out: {what}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn row(n: usize) {
    let engine = SimEngine::default();
    {
        let mut t = engine.truth.lock();
        for i in 0..n {
            let c = SimEngine::container(i);
            t.alive.insert(c.id.clone(), c);
        }
    }
    let modelled = INSPECT_LATENCY * n as u32 / INSPECT_CONCURRENCY;
    let before = LIVE.load(Ordering::SeqCst);
    let began = Instant::now();
    // Room for the synthetic starts and every pause/unpause below: the subscriber must not
    // lag when the machine is loaded (a lagged subscription ends the measurement).
    let events = 20_000.min(4 * n);
    let w = Watcher::new(
        engine.clone(),
        WatcherOptions::default().with_subscriber_capacity(n + events + 1000),
    );
    w.wait_ready(Duration::from_secs(600)).expect("not ready");
    let ready = began.elapsed();
    assert_eq!(w.portfolio().len(), n);
    // Heap held by the watcher per container, beyond the engine's own copy of the truth:
    // measured once Ready, with the listing's temporary data gone.
    std::thread::sleep(Duration::from_millis(50));
    let per_container = (LIVE.load(Ordering::SeqCst) - before) as f64 / n as f64;

    // Sync-thread throughput: pause/unpause events, applied and delivered to one subscriber.
    let sub = w.subscribe();
    for _ in 0..n {
        let _ = sub.recv(); // the synthetic Started events
    }
    let t0 = Instant::now();
    for k in 0..events {
        engine.set_paused(k % n, (k / n) % 2 == 0);
    }
    let mut seen = 0;
    while seen < events {
        match sub.recv_timeout(Duration::from_secs(60)) {
            Some(Item::Event(e)) if !e.synthetic => seen += 1,
            Some(Item::Event(_)) => {}
            other => panic!("subscription ended: {other:?}"),
        }
    }
    let rate = events as f64 / t0.elapsed().as_secs_f64();
    drop(sub);

    // Lookups by id.
    let ids: Vec<String> = (0..1000)
        .map(|i| format!("{:064x}", (i * 7919) % n))
        .collect();
    let snap = w.portfolio();
    let rounds = 200;
    let t0 = Instant::now();
    for _ in 0..rounds {
        for id in &ids {
            black_box(snap.get(id));
        }
    }
    let held_ns = t0.elapsed().as_nanos() as f64 / (rounds * ids.len()) as f64;
    let mut reader = w.reader();
    let t0 = Instant::now();
    for _ in 0..rounds {
        for id in &ids {
            black_box(reader.portfolio().get(id).is_some());
        }
    }
    let reader_ns = t0.elapsed().as_nanos() as f64 / (rounds * ids.len()) as f64;

    // Burst: 10 % exit at once.
    let burst = n / 10;
    let t0 = Instant::now();
    for i in 0..burst {
        engine.exit(i);
    }
    wait_until("portfolio equals truth after the burst", || {
        w.portfolio().len() == n - burst
    });
    let burst_ms = t0.elapsed().as_secs_f64() * 1000.0;
    w.close();
    println!(
        "| {n:>7} | {:>9.1} ms | {:>9.1} ms | {:>8.0} B | {:>9.0} k/s | {:>6.1} ns | {:>6.1} ns | {:>6} in {:>8.1} ms |",
        ready.as_secs_f64() * 1000.0,
        modelled.as_secs_f64() * 1000.0,
        per_container,
        rate / 1000.0,
        held_ns,
        reader_ns,
        burst,
        burst_ms,
    );
}

fn main() {
    // `cargo test --benches` builds and runs benches with --test-ish arguments: keep it short.
    let bench = std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = match std::env::var("WHALEWATCHER_SCALE_N") {
        Ok(s) => s.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) if bench => vec![1_000, 10_000, 100_000],
        Err(_) => vec![1_000],
    };
    one_container();
    println!(
        "simulated engine: inspect {} µs on {INSPECT_CONCURRENCY} engine threads",
        INSPECT_LATENCY.as_micros()
    );
    println!("|       N | to Ready     | engine part  | heap/ctr   | sync events  | get held  | get reader | burst: exits, until exact |");
    println!("|--------:|-------------:|-------------:|-----------:|-------------:|----------:|-----------:|--------------------------:|");
    for n in sizes {
        row(n);
    }
}
