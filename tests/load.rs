//! Load: N real containers on dockerd churned (kill/start/pause/unpause/restart loops from
//! several threads) while a watcher runs. At the end the watcher's portfolio equals the
//! `docker inspect` ground truth for these containers (foreign containers of other tests
//! are ignored), their composer project lists exactly the alive ones, and every
//! container's event sequence is valid and ends in the true state.
//!
//! Short variant (CI): N=40 for ~20 s. Long variant: `WHALEWATCHER_LONG=1` → N=200 for
//! 180 s (override with `WHALEWATCHER_LOAD_N` and `WHALEWATCHER_LOAD_SECS`).
#![cfg(feature = "docker")]

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::cli::Cli;
use support::replay::replay;
use whalewatcher::docker::DockerClient;
use whalewatcher::{ContainerEvent, Item, Watcher, WatcherOptions};

const WAIT: Duration = Duration::from_secs(60);
const THREADS: usize = 4;

fn env_num(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum St {
    Running,
    Paused,
    Exited,
}

/// id → (pid, paused) of the alive ones among `ids`, from `docker inspect`.
fn truth(cli: &Cli, ids: &[String]) -> Option<BTreeMap<String, (u32, bool)>> {
    let mut out = BTreeMap::new();
    for chunk in ids.chunks(50) {
        let mut args = vec!["inspect"];
        args.extend(chunk.iter().map(String::as_str));
        let all: Vec<Value> = serde_json::from_str(&cli.try_run(&args).ok()?).ok()?;
        for v in &all {
            let pid = v["State"]["Pid"].as_u64().unwrap_or(0) as u32;
            if pid != 0 {
                let paused = v["State"]["Paused"].as_bool().unwrap_or(false);
                out.insert(v["Id"].as_str()?.to_string(), (pid, paused));
            }
        }
    }
    Some(out)
}

fn view(w: &Watcher, ids: &[String]) -> BTreeMap<String, (u32, bool)> {
    let p = w.portfolio();
    ids.iter()
        .filter_map(|id| p.get(id).map(|c| (id.clone(), (c.pid, c.paused))))
        .collect()
}

/// A small xorshift for picking operations (no extra dependency).
struct Rng(u64);
impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn churned_containers_converge_with_valid_event_sequences() {
    let Some(url) = support::endpoint("WHALEWATCHER_DOCKER") else {
        return;
    };
    let long = std::env::var("WHALEWATCHER_LONG").is_ok_and(|v| v == "1");
    let n = env_num("WHALEWATCHER_LOAD_N", if long { 200 } else { 40 }) as usize;
    let secs = env_num("WHALEWATCHER_LOAD_SECS", if long { 180 } else { 20 });
    let cli = Cli::new("docker", "-H", url.clone());
    let project = format!("wwload-{}", std::process::id());
    let w = Watcher::new(
        DockerClient::new(Some(&url)).unwrap(),
        WatcherOptions::default().with_subscriber_capacity(1 << 20),
    );
    w.wait_ready(WAIT).unwrap();
    let sub = w.subscribe();

    // Collect events in the background (the subscription must never lag here).
    let done = AtomicBool::new(false);
    let events = Mutex::new(Vec::<ContainerEvent>::new());
    let ops = AtomicUsize::new(0);
    let failed_ops = AtomicUsize::new(0);
    let ids: Vec<String> = std::thread::scope(|sc| {
        sc.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                match sub.recv_timeout(Duration::from_millis(100)) {
                    Some(Item::Event(e)) => events.lock().unwrap().push(e),
                    Some(other) => panic!("subscriber saw {other:?}"),
                    None => {}
                }
            }
        });
        // Create the containers from several threads.
        let label = format!("com.docker.compose.project={project}");
        let per: Vec<Vec<String>> = std::thread::scope(|cs| {
            let hs: Vec<_> = (0..THREADS)
                .map(|t| {
                    let (cli, label) = (&cli, &label);
                    cs.spawn(move || {
                        (t..n)
                            .step_by(THREADS)
                            .map(|i| cli.start(&cli.name(&format!("load{i}")), &["--label", label]))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        // Churn: each thread owns its containers and knows their state.
        let end = Instant::now() + Duration::from_secs(secs);
        std::thread::scope(|cs| {
            for (t, mine) in per.iter().enumerate() {
                let (cli, ops, failed_ops) = (&cli, &ops, &failed_ops);
                cs.spawn(move || {
                    let mut st = vec![St::Running; mine.len()];
                    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((t as u64 + 1) * 7919));
                    while Instant::now() < end {
                        let i = rng.next(mine.len() as u64) as usize;
                        let id = mine[i].as_str();
                        let (args, next): (Vec<&str>, St) = match (st[i], rng.next(4)) {
                            (St::Running, 0) => (vec!["pause", id], St::Paused),
                            (St::Running, 1) => (vec!["restart", "-t", "0", id], St::Running),
                            (St::Running, _) => (vec!["kill", id], St::Exited),
                            (St::Paused, _) => (vec!["unpause", id], St::Running),
                            (St::Exited, _) => (vec!["start", id], St::Running),
                        };
                        ops.fetch_add(1, Ordering::Relaxed);
                        match cli.try_run(&args) {
                            Ok(_) => st[i] = next,
                            Err(e) => {
                                failed_ops.fetch_add(1, Ordering::Relaxed);
                                eprintln!("{args:?}: {e}");
                                st[i] = match truth(cli, &[id.to_string()]) {
                                    Some(t) => match t.get(id) {
                                        Some((_, true)) => St::Paused,
                                        Some(_) => St::Running,
                                        None => St::Exited,
                                    },
                                    None => st[i],
                                };
                            }
                        }
                    }
                });
            }
        });
        let ids: Vec<String> = per.into_iter().flatten().collect();
        // Convergence: portfolio, project and replayed events all equal one ground truth
        // (a `docker kill` may return before the container is dead: retry until stable).
        let mut last = String::new();
        support::wait_until(
            WAIT,
            "portfolio, project and events equal the ground truth",
            || {
                let Some(t) = truth(&cli, &ids) else {
                    return false;
                };
                let v = view(&w, &ids);
                let mut in_project: Vec<String> = w
                    .portfolio()
                    .project(&project)
                    .map(|p| p.container_ids().iter().map(|s| s.to_string()).collect())
                    .unwrap_or_default();
                in_project.sort();
                let evs: Vec<ContainerEvent> = events
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|e| ids.contains(&e.container.id))
                    .cloned()
                    .collect();
                let replayed: BTreeMap<String, bool> = replay(&evs)
                    .into_iter()
                    .filter(|(_, (alive, _))| *alive)
                    .map(|(id, (_, paused))| (id, paused))
                    .collect();
                let want: BTreeMap<String, bool> =
                    t.iter().map(|(id, (_, p))| (id.clone(), *p)).collect();
                let ok = v == t
                    && in_project == t.keys().cloned().collect::<Vec<_>>()
                    && replayed == want;
                if !ok {
                    let now = format!(
                        "truth {t:?}\nview {v:?}\nproject {in_project:?}\nreplayed {replayed:?}"
                    );
                    if now != last {
                        eprintln!("not yet:\n{now}");
                        last = now;
                    }
                }
                ok
            },
        );
        done.store(true, Ordering::SeqCst);
        ids
    });
    let evs: Vec<ContainerEvent> = events
        .into_inner()
        .unwrap()
        .into_iter()
        .filter(|e| ids.contains(&e.container.id))
        .collect();
    replay(&evs); // panics on an invalid sequence
    eprintln!(
        "load: {n} containers, {secs} s, {} operations ({} failed), {} events",
        ops.load(Ordering::Relaxed),
        failed_ops.load(Ordering::Relaxed),
        evs.len()
    );
    assert!(ops.load(Ordering::Relaxed) >= n, "too little churn");
    w.close();
}
