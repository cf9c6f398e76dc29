//! Burst queries on portfolios of 100 .. 100k containers, compared with the Go original's
//! algorithm (`Portfolio.Container` scans every project's containers linearly).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use parking_lot::RwLock;
use whalewatcher::{Container, Portfolio, PROJECT_LABEL};

fn container(i: usize) -> Container {
    let mut labels = BTreeMap::new();
    labels.insert(PROJECT_LABEL.to_string(), format!("project-{}", i % 20));
    let mut c =
        Container::new(format!("{i:064x}"), format!("name-{i}"), i as u32 + 1).with_labels(labels);
    c.image = "busybox:local".into();
    c
}

fn portfolio(n: usize) -> Portfolio {
    (0..n).map(container).collect()
}

/// The Go original's shape: projects holding lists, lookup scans all of them.
fn go_lookup<'a>(projects: &'a [Vec<Arc<Container>>], id: &str) -> Option<&'a Arc<Container>> {
    projects.iter().flat_map(|p| p.iter()).find(|c| c.id == id)
}

fn queries(c: &mut Criterion) {
    let mut g = c.benchmark_group("portfolio");
    for n in [100usize, 1_000, 10_000, 100_000] {
        let p = portfolio(n);
        let ids: Vec<String> = (0..1024)
            .map(|i| format!("{:064x}", (i * 7919) % n))
            .collect();
        let names: Vec<String> = (0..1024)
            .map(|i| format!("name-{}", (i * 7919) % n))
            .collect();
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(BenchmarkId::new("get_by_id", n), &n, |b, _| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & 1023;
                black_box(p.get(&ids[i]))
            })
        });
        g.bench_with_input(BenchmarkId::new("by_name", n), &n, |b, _| {
            let mut i = 0;
            b.iter(|| {
                i = (i + 1) & 1023;
                black_box(p.by_name(&names[i]).len())
            })
        });
        g.bench_with_input(BenchmarkId::new("project_names", n), &n, |b, _| {
            b.iter(|| black_box(p.project_names().len()))
        });
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("iterate_all", n), &n, |b, _| {
            b.iter(|| black_box(p.iter().map(|c| c.pid as u64).sum::<u64>()))
        });
        if n <= 10_000 {
            let mut go: Vec<Vec<Arc<Container>>> = vec![Vec::new(); 20];
            for i in 0..n {
                go[i % 20].push(Arc::new(container(i)));
            }
            g.throughput(Throughput::Elements(1));
            g.bench_with_input(BenchmarkId::new("go_original_lookup", n), &n, |b, _| {
                let mut i = 0;
                b.iter(|| {
                    i = (i + 1) & 1023;
                    black_box(go_lookup(&go, &ids[i]))
                })
            });
        }
    }
    g.finish();
}

/// Lookups from 1 and 2 reader threads (each taking the current snapshot per burst of
/// 1000 lookups, as a real reader would) while a writer publishes 10k updates/s.
fn contended(c: &mut Criterion) {
    let mut g = c.benchmark_group("contended_10k");
    g.sample_size(10);
    let n = 10_000;
    for readers in [1usize, 2] {
        g.throughput(Throughput::Elements(1000 * readers as u64));
        g.bench_function(BenchmarkId::new("lookups_while_updating", readers), |b| {
            b.iter_custom(|iters| {
                let shared = Arc::new(RwLock::new(Arc::new(portfolio(n))));
                let stop = Arc::new(AtomicBool::new(false));
                let writer = {
                    let (shared, stop) = (shared.clone(), stop.clone());
                    std::thread::spawn(move || {
                        let mut p = (**shared.read()).clone();
                        let mut i = 0usize;
                        let start = Instant::now();
                        while !stop.load(Ordering::Relaxed) {
                            let mut c = container(i % n);
                            c.paused = !c.paused;
                            p.insert(Arc::new(c));
                            *shared.write() = Arc::new(p.clone());
                            i += 1;
                            // 10k updates per second: 10 per millisecond, sleeping in
                            // between (as a sync thread blocks on its channel; spinning
                            // would take a core from the readers on a 2-core machine)
                            if i % 10 == 0 {
                                let due = start + Duration::from_millis(i as u64 / 10);
                                let now = Instant::now();
                                if due > now {
                                    std::thread::sleep(due - now);
                                }
                            }
                        }
                        (i, start.elapsed())
                    })
                };
                let ids: Arc<Vec<String>> = Arc::new(
                    (0..1000)
                        .map(|i| format!("{:064x}", (i * 7919) % n))
                        .collect(),
                );
                let start = Instant::now();
                let hs: Vec<_> = (0..readers)
                    .map(|_| {
                        let (shared, ids) = (shared.clone(), ids.clone());
                        std::thread::spawn(move || {
                            for _ in 0..iters {
                                let p = shared.read().clone();
                                for id in ids.iter() {
                                    black_box(p.get(id));
                                }
                            }
                        })
                    })
                    .collect();
                for h in hs {
                    h.join().unwrap();
                }
                let elapsed = start.elapsed();
                stop.store(true, Ordering::Relaxed);
                let (updates, took) = writer.join().unwrap();
                RATE.with(|r| r.set(updates as f64 / took.as_secs_f64()));
                elapsed
            })
        });
    }
    g.finish();
    RATE.with(|r| eprintln!("writer's update rate in the last sample: {:.0}/s", r.get()));
}

thread_local! {
    static RATE: std::cell::Cell<f64> = const { std::cell::Cell::new(0.0) };
}

criterion_group!(benches, queries, contended);
criterion_main!(benches);
