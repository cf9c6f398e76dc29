//! The watcher against the real dockerd and podman (WHALEWATCHER_DOCKER,
//! WHALEWATCHER_PODMAN): portfolio vs `inspect` ground truth, lifecycle events, churn
//! during the initial sync. Tests run one at a time (they compare the whole engine).
#![cfg(feature = "docker")]

mod common;
mod watcher_shared;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use watcher_shared::{collect, converge, drain, kinds, replay, view, Cli};
use whalewatcher::docker::DockerClient;
use whalewatcher::{EventKind, Watcher, WatcherOptions};

const WAIT: Duration = Duration::from_secs(30);

/// Serialises the tests of this binary: each compares the engine's whole alive set.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn docker() -> Option<Cli> {
    common::endpoint("WHALEWATCHER_DOCKER").map(|u| Cli::new("docker", "-H", u))
}

fn podman() -> Option<Cli> {
    common::endpoint("WHALEWATCHER_PODMAN").map(|u| Cli::new("podman", "--url", u))
}

fn watch(e: &Cli) -> Watcher {
    let w = Watcher::new(
        DockerClient::new(Some(&e.url)).unwrap(),
        WatcherOptions::default(),
    );
    w.wait_ready(WAIT).expect("watcher syncs");
    w
}

fn ps_equals_ground_truth(e: &Cli) {
    let p = e.name("p");
    let project = format!("{p}-proj");
    let plabel = format!("com.docker.compose.project={project}");
    let plain = e.start(&e.name("plain"), &["--label", "tier=db"]);
    let paused = e.start(&e.name("paused"), &[]);
    e.run(&["pause", &paused]);
    let composed = e.start(
        &e.name("web"),
        &[
            "--label",
            &plabel,
            "--label",
            "com.docker.compose.service=web",
        ],
    );
    let w = watch(e);
    let t = converge(WAIT, || e.truth(), || view(&w));
    assert!(t.contains_key(&plain) && t.contains_key(&composed));
    assert!(t[&paused].paused);
    let pf = w.portfolio();
    assert_eq!(pf.get(&composed).unwrap().project, project);
    assert_eq!(
        pf.project(&project).map(|p| p.container_ids()),
        Some(vec![composed.as_str()])
    );
    // Changes after the sync are followed, too.
    e.run(&["unpause", &paused]);
    e.run(&["kill", &plain]);
    let t = converge(WAIT, || e.truth(), || view(&w));
    assert!(!t[&paused].paused && !t.contains_key(&plain));
    w.close();
}

#[test]
fn docker_ps_equals_ground_truth() {
    let _s = serial();
    if let Some(e) = docker() {
        ps_equals_ground_truth(&e);
    }
}

#[test]
fn podman_ps_equals_ground_truth() {
    let _s = serial();
    if let Some(e) = podman() {
        ps_equals_ground_truth(&e);
    }
}

/// start, pause, unpause, kill (137) and a normal exit (3), each seen once.
fn lifecycle(e: &Cli) {
    let w = watch(e);
    let sub = w.subscribe();
    warm_up(e, &sub);
    // Each step waits for its event: a pause that lands while the watcher still inspects
    // the new container is folded into its Started (by design), not reported separately.
    let a = e.start(&e.name("a"), &[]);
    let mut got = collect(&sub, WAIT, |ev| ev.container.id == a);
    e.run(&["pause", &a]);
    got.extend(collect(&sub, WAIT, |ev| ev.container.id == a));
    e.run(&["unpause", &a]);
    got.extend(collect(&sub, WAIT, |ev| ev.container.id == a));
    e.run(&["kill", &a]);
    got.extend(collect(&sub, WAIT, |ev| ev.container.id == a));
    let b = e.start_sh(&e.name("b"), "sleep 1; exit 3");
    got.extend(collect(&sub, WAIT, |ev| {
        ev.container.id == b && matches!(ev.kind, EventKind::Exited { .. })
    }));
    // A marker: once its start shows, everything before it has been delivered.
    let m = e.start(&e.name("marker"), &[]);
    got.extend(collect(&sub, WAIT, |ev| ev.container.id == m));
    assert_eq!(
        kinds(&got, &a),
        vec![
            EventKind::Started,
            EventKind::Paused,
            EventKind::Unpaused,
            EventKind::Exited {
                exit_code: Some(137),
                oom: false
            }
        ]
    );
    assert_eq!(
        kinds(&got, &b),
        vec![
            EventKind::Started,
            EventKind::Exited {
                exit_code: Some(3),
                oom: false
            }
        ]
    );
    let ev_a = got.iter().find(|ev| ev.container.id == a).unwrap();
    assert!(!ev_a.synthetic && ev_a.container.pid > 0);
    let ours: Vec<_> = got
        .into_iter()
        .filter(|ev| ev.container.id == a || ev.container.id == b)
        .collect();
    replay(&ours);
    w.close();
}

/// Podman's event stream may go live a moment (seen: over a second) after the watcher is
/// synced; events before that are lost to every client. Wait until a marker container's
/// start shows before the real test.
fn warm_up(e: &Cli, sub: &whalewatcher::Subscription) {
    for _ in 0..10 {
        let id = e.start(&e.name("warm"), &[]);
        let end = std::time::Instant::now() + Duration::from_secs(2);
        while let Some(left) = end.checked_duration_since(std::time::Instant::now()) {
            match sub.recv_timeout(left) {
                Some(whalewatcher::Item::Event(ev)) if ev.container.id == id && !ev.synthetic => {
                    e.run(&["kill", &id]);
                    return;
                }
                Some(_) => {}
                None => break,
            }
        }
        let _ = e.try_run(&["kill", &id]);
    }
    panic!("no event arrived for 10 marker containers");
}

#[test]
fn docker_lifecycle_events() {
    let _s = serial();
    if let Some(e) = docker() {
        lifecycle(&e);
    }
}

#[test]
fn podman_lifecycle_events() {
    let _s = serial();
    if let Some(e) = podman() {
        lifecycle(&e);
    }
}

/// Starts `n` containers from `threads` threads; returns their ids.
fn start_many(e: &Arc<Cli>, n: usize, what: &str) -> Vec<String> {
    let names: Vec<String> = (0..n).map(|i| e.name(&format!("{what}{i}"))).collect();
    let mut handles = Vec::new();
    for chunk in names.chunks(n.div_ceil(4).max(1)) {
        let (e, chunk) = (e.clone(), chunk.to_vec());
        handles.push(std::thread::spawn(move || {
            chunk.iter().map(|n| e.start(n, &[])).collect::<Vec<_>>()
        }));
    }
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect()
}

/// With ~30 containers present, two threads start, pause, unpause and kill others while
/// the watcher makes its first listing; afterwards the portfolio equals the ground truth
/// and every container's event sequence is valid and ends in its true state.
#[test]
fn docker_churn_during_initial_sync() {
    let _s = serial();
    let Some(e) = docker() else { return };
    let e = Arc::new(e);
    let base = start_many(&e, 30, "base");
    for round in 0..3 {
        // Churn material: some running containers to pause/kill, names for new ones.
        let victims = start_many(&e, 6, &format!("v{round}-"));
        let fresh: Vec<String> = (0..6).map(|i| e.name(&format!("n{round}-{i}"))).collect();
        let w = Watcher::new(
            DockerClient::new(Some(&e.url)).unwrap(),
            WatcherOptions::default(),
        );
        let sub = w.subscribe();
        let t1 = {
            let (e, v) = (e.clone(), victims.clone());
            std::thread::spawn(move || {
                for id in &v[..3] {
                    e.run(&["pause", id]);
                }
                e.run(&["unpause", &v[0]]);
                e.run(&["kill", &v[1]]); // paused: kill thaws and kills
                e.run(&["kill", &v[3]]);
            })
        };
        let t2 = {
            let (e, f, v) = (e.clone(), fresh.clone(), victims.clone());
            std::thread::spawn(move || {
                for n in &f {
                    e.start(n, &[]);
                }
                e.run(&["kill", &f[0]]);
                e.run(&["pause", &f[1]]);
                e.run(&["kill", &v[4]]);
            })
        };
        t1.join().unwrap();
        t2.join().unwrap();
        w.wait_ready(WAIT).expect("watcher syncs");
        let truth = converge(WAIT, || e.truth(), || view(&w));
        for id in &base {
            assert!(truth.contains_key(id), "base container {id} died");
        }
        let events = drain(&sub, Duration::from_millis(500));
        let state = replay(&events);
        for (id, (alive, paused)) in &state {
            match truth.get(id) {
                Some(t) => assert!(*alive && *paused == t.paused, "round {round}: events end with alive={alive} paused={paused} for {} but truth is {t:?}", id),
                None => assert!(!alive, "round {round}: events leave {id} alive but it is gone"),
            }
        }
        for id in truth.keys() {
            assert!(
                state.get(id).is_some_and(|s| s.0),
                "round {round}: no Started for {id}"
            );
        }
        w.close();
        // Clean up this round's killed containers' stragglers: leave the rest alive.
        for id in victims.iter().chain(&fresh) {
            let _ = e.try_run(&["rm", "-f", id]);
        }
    }
}

/// A private dockerd is SIGKILLed and restarted while a watcher watches it: the watcher
/// reports Reconnecting, re-attaches by itself and converges to the ground truth, with
/// Exited events for the containers that died meanwhile and, for the `--restart always`
/// one, Exited and Started with a new pid.
#[test]
fn dockerd_killed_and_restarted() {
    let _s = serial();
    if common::endpoint("WHALEWATCHER_DOCKER").is_none() {
        return; // no engines set up here: no busybox tarball either
    }
    let mut d = watcher_shared::dockerd::PrivateDockerd::start();
    let e = Cli::new("docker", "-H", d.url.clone());
    let plain = e.start(&e.name("plain"), &[]);
    let always = e.start(&e.name("always"), &["--restart", "always"]);
    let old_pid = e.truth().unwrap()[&always].pid;
    let w = Watcher::new(
        DockerClient::new(Some(&d.url)).unwrap(),
        WatcherOptions::default().with_retry(|| {
            whalewatcher::ExponentialBackoff::new(Duration::from_millis(50), Duration::from_secs(1))
        }),
    );
    let sub = w.subscribe();
    w.wait_ready(WAIT).expect("watcher syncs");
    converge(WAIT, || e.truth(), || view(&w));

    d.kill9();
    common::wait_until(WAIT, "Health::Reconnecting", || {
        matches!(w.health(), whalewatcher::Health::Reconnecting { .. })
    });
    d.launch();
    w.wait_ready(Duration::from_secs(60))
        .expect("watcher re-attaches");
    let t = converge(Duration::from_secs(60), || e.truth(), || view(&w));
    assert!(
        !t.contains_key(&plain),
        "plain container survived a dockerd restart"
    );
    let new_pid = t
        .get(&always)
        .expect("restart-always container is back")
        .pid;
    assert_ne!(new_pid, old_pid);

    let events = drain(&sub, Duration::from_millis(500));
    replay(&events);
    let k = kinds(&events, &plain);
    assert_eq!(k.first(), Some(&EventKind::Started));
    assert!(matches!(k.last(), Some(EventKind::Exited { .. })), "{k:?}");
    let a: Vec<_> = events
        .iter()
        .filter(|ev| ev.container.id == always)
        .collect();
    let n = a.len();
    assert!(n >= 3, "{:?}", kinds(&events, &always));
    assert!(matches!(a[n - 2].kind, EventKind::Exited { .. }));
    assert_eq!(a[n - 2].container.pid, old_pid);
    assert_eq!(a[n - 1].kind, EventKind::Started);
    assert_eq!(a[n - 1].container.pid, new_pid);
    w.close();
    drop(e);
}
