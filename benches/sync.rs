//! The sync thread's apply rate with the scripted engine, and subscriber fan-out.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use whalewatcher::{Item, Watcher, WatcherOptions};

const EVENTS: u64 = 20_000;

fn apply(c: &mut Criterion) {
    let mut g = c.benchmark_group("sync");
    g.sample_size(10);
    g.throughput(Throughput::Elements(EVENTS));
    for subs in [1usize, 8, 64] {
        g.bench_function(BenchmarkId::new("pause_events_fanout", subs), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let s = whalewatcher::scripted::Script::new();
                    for i in 0..100 {
                        s.start(&format!("c{i}"), "");
                    }
                    let w = Watcher::new(
                        s.client(),
                        WatcherOptions::default().with_subscriber_capacity(EVENTS as usize + 1000),
                    );
                    w.wait_ready(Duration::from_secs(10)).unwrap();
                    let subs: Vec<_> = (0..subs).map(|_| w.subscribe()).collect();
                    let start = Instant::now();
                    for i in 0..EVENTS {
                        s.set_paused(&format!("c{}", i % 100), (i / 100) % 2 == 0);
                    }
                    // done when the last subscriber has the last event
                    let last = subs.last().unwrap();
                    let mut seen = 0;
                    while seen < EVENTS {
                        match last.recv_timeout(Duration::from_secs(10)) {
                            Some(Item::Event(e)) if !e.synthetic => seen += 1,
                            Some(_) => {}
                            None => panic!("events stopped"),
                        }
                    }
                    total += start.elapsed();
                    w.close();
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, apply);
criterion_main!(benches);
