//! The watcher against the real dockerd and podman (WHALEWATCHER_DOCKER,
//! WHALEWATCHER_PODMAN): portfolio vs `inspect` ground truth, lifecycle events, churn
//! during the initial sync. Tests run one at a time (they compare the whole engine).
#![cfg(feature = "docker")]

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use support::cli::Cli;
use support::replay::replay;
use support::watch::{collect, collect_exits, converge, drain, kinds, view};
use whalewatcher::docker::DockerClient;
use whalewatcher::{EventKind, Watcher, WatcherOptions};

const WAIT: Duration = Duration::from_secs(30);

/// Serialises the tests of this binary: each compares the engine's whole alive set.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn docker() -> Option<Cli> {
    Cli::shared_docker()
}

fn podman() -> Option<Cli> {
    Cli::shared_podman()
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
    if support::endpoint("WHALEWATCHER_DOCKER").is_none() {
        return; // no engines set up here: no busybox tarball either
    }
    let mut d = support::dockerd::PrivateDockerd::start();
    let e = Cli::docker(d.url.clone());
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
    support::wait_until(WAIT, "Health::Reconnecting", || {
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

/// `run -d` of the plain image with `sh -c script` and extra args; returns the id (for
/// `--rm`, the container may be gone by then).
fn run_sh(e: &Cli, name: &str, extra: &[&str], script: &str) -> String {
    let image =
        std::env::var("WHALEWATCHER_PLAIN_IMAGE").unwrap_or_else(|_| "busybox:local".into());
    let mut args = vec!["run", "-d", "--network", "none", "--name", name];
    args.extend_from_slice(extra);
    args.extend([image.as_str(), "sh", "-c", script]);
    e.run(&args).trim().to_string()
}

/// Issue 13 item 7: two compose-like projects come up in parallel, each with one-shot
/// services (`sh -c 'exit 3'`, gone before any inspect; and one OOM-killed at once): every
/// one of them appears in the stream as Started + Exited with the exit code and OOM flag
/// `inspect` shows, live, in order, with the name, labels, project and image `inspect`
/// shows, and none ever enters the portfolio without a process or stays in it.
fn short_lived(e: &Arc<Cli>) {
    let w = watch(e);
    let sub = w.subscribe();
    warm_up(e, &sub);
    let tag = e.name("sl");
    let spy = {
        let tag = tag.clone();
        support::watch::PortfolioSpy::start(w.reader(), move |c| c.name.starts_with(&tag))
    };
    let per_project = 3;
    let handles: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|p| {
            let (e, tag) = (e.clone(), tag.clone());
            std::thread::spawn(move || {
                let project = format!("{tag}-{p}");
                let mut names: Vec<String> = (0..per_project)
                    .map(|i| format!("{project}-once-{i}"))
                    .collect();
                // Project a also has a one-shot service that the OOM killer ends at once.
                if p == "a" {
                    names.push(format!("{project}-oom"));
                }
                for n in &names {
                    e.name_as(n);
                    let plabel = format!("com.docker.compose.project={project}");
                    let mut args = vec!["--label", &plabel];
                    let script = if n.ends_with("-oom") {
                        args.extend(["-m", "32m", "--memory-swap", "32m"]);
                        "x=$(head -c 200000000 /dev/zero | tr '\\0' a)"
                    } else {
                        args.extend(["--label", "com.docker.compose.service=once"]);
                        "exit 3"
                    };
                    run_sh(&e, n, &args, script);
                }
                names
            })
        })
        .collect();
    let names: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let events = collect_exits(&sub, &names, WAIT, Duration::from_millis(500));
    let held = spy.finish();
    let mut args = vec!["inspect"];
    args.extend(names.iter().map(String::as_str));
    let truths: Vec<support::watch::ExitTruth> =
        serde_json::from_str::<Vec<serde_json::Value>>(&e.run(&args))
            .unwrap()
            .iter()
            .map(support::watch::ExitTruth::from_inspect)
            .collect();
    assert_eq!(truths.len(), 2 * per_project + 1);
    for t in &truths {
        if t.name.ends_with("-oom") {
            assert_eq!(t.exit_code, Some(137), "{t:?}");
            eprintln!("{}: OOMKilled {}", e.cli, t.oom);
        } else {
            assert_eq!(t.exit_code, Some(3), "{t:?}");
        }
        assert!(t.project.starts_with(&tag));
        // Podman 4.3 sends no `oom` event (crate docs, Known problems): its OOM flag reaches
        // the stream only when the watcher's inspect came after the exit.
        let oom_in_events = !(e.cli == "podman" && t.oom);
        support::watch::check_short_lived_with(&events, t, oom_in_events);
    }
    assert!(
        held.iter().all(|c| c.pid != 0),
        "containers without a process in the portfolio: {held:#?}"
    );
    let pf = w.portfolio();
    for t in &truths {
        assert!(
            pf.get(&t.id).is_none(),
            "{} stayed in the portfolio",
            t.name
        );
    }
    let ours: Vec<_> = events
        .into_iter()
        .filter(|ev| names.contains(&ev.container.name))
        .collect();
    replay(&ours);
    w.close();
}

#[test]
fn docker_short_lived_containers_each_start_and_exit() {
    let _s = serial();
    if let Some(e) = docker() {
        short_lived(&Arc::new(e));
    }
}

#[test]
fn podman_short_lived_containers_each_start_and_exit() {
    let _s = serial();
    if let Some(e) = podman() {
        short_lived(&Arc::new(e));
    }
}

/// Issue 13 item 7 with `run --rm`: the engine forgets the container right after its exit,
/// often before the watcher's inspect. Each still shows Started + Exited(3), live, in
/// order, with its project, and never stays in the portfolio; with `names`, also with the
/// name and labels the engine's exit event carried (`RawEvent::details`).
fn short_lived_rm(e: &Cli, names_too: bool) {
    let w = watch(e);
    let sub = w.subscribe();
    warm_up(e, &sub);
    let tag = e.name("rm");
    let project = format!("{tag}-proj");
    let names: Vec<String> = (0..4).map(|i| format!("{tag}-once-{i}")).collect();
    let mut ids = Vec::new();
    for n in &names {
        e.name_as(n);
        ids.push(run_sh(
            e,
            n,
            &[
                "--rm",
                "--label",
                &format!("com.docker.compose.project={project}"),
                "--label",
                "com.docker.compose.service=once",
            ],
            "exit 3",
        ));
    }
    let events = collect_exits(&sub, &ids, WAIT, Duration::from_millis(500));
    let image =
        std::env::var("WHALEWATCHER_PLAIN_IMAGE").unwrap_or_else(|_| "busybox:local".into());
    let labels = BTreeMap::from([
        ("com.docker.compose.project".to_string(), project.clone()),
        ("com.docker.compose.service".to_string(), "once".to_string()),
    ]);
    for (n, id) in names.iter().zip(&ids) {
        let truth = support::watch::ExitTruth {
            id: id.clone(),
            name: n.clone(),
            project: project.clone(),
            labels: labels.clone(),
            // As the exit event names it: Docker as given, podman fully qualified.
            image: Some(if e.cli == "podman" {
                format!("localhost/{image}")
            } else {
                image.clone()
            }),
            exit_code: Some(3),
            oom: false,
        };
        if names_too {
            support::watch::check_short_lived(&events, &truth);
        } else {
            let mine: Vec<_> = events.iter().filter(|ev| &ev.container.id == id).collect();
            assert_eq!(
                mine.iter().map(|ev| ev.kind).collect::<Vec<_>>(),
                vec![
                    EventKind::Started,
                    EventKind::Exited {
                        exit_code: Some(3),
                        oom: false
                    }
                ],
                "{n} ({id}): {mine:#?}"
            );
            for ev in &mine {
                assert!(!ev.synthetic);
                assert_eq!(ev.container.project, project, "{ev:?}");
            }
        }
        assert!(w.portfolio().get(id).is_none());
    }
    w.close();
}

#[test]
fn docker_short_lived_rm_containers_each_start_and_exit() {
    let _s = serial();
    if let Some(e) = docker() {
        short_lived_rm(&e, false);
    }
}

#[test]
fn podman_short_lived_rm_containers_each_start_and_exit() {
    let _s = serial();
    if let Some(e) = podman() {
        short_lived_rm(&e, false);
    }
}

#[test]
fn docker_short_lived_rm_containers_keep_their_names() {
    let _s = serial();
    if let Some(e) = docker() {
        short_lived_rm(&e, true);
    }
}

#[test]
fn podman_short_lived_rm_containers_keep_their_names() {
    let _s = serial();
    if let Some(e) = podman() {
        short_lived_rm(&e, true);
    }
}

/// A container that exits 3 on SIGTERM (a trap: PID 1 ignores signals it has no handler
/// for), for exits with a code of their own.
const TRAP_EXIT_3: &str = "trap 'exit 3' TERM; while :; do sleep 0.1; done";

/// A container that, on SIGTERM, makes its shell (PID 1) hold 200 MB: under an 8 MiB
/// limit the OOM killer ends it (137).
const TRAP_OOM: &str =
    "trap 'x=$(head -c 200000000 /dev/zero | tr \\\\0 a)' TERM; while :; do sleep 0.1; done";

/// Issue 13 item 8, the common part: `w` (subscribed by `sub`, synced) loses its engine
/// through `break_engine`; meanwhile one container is killed (137) and another ends on
/// SIGTERM with its own code (3), and a third is OOM-killed (137); `heal` brings the
/// engine back. The resync must report each as Exited with the exit code and OOM flag
/// `inspect` shows, not `null`.
fn exits_while_away(
    e: &Cli,
    w: &Watcher,
    sub: &whalewatcher::Subscription,
    break_engine: impl FnOnce(),
    heal: impl FnOnce(),
) {
    let project = e.name("away");
    let plabel = format!("com.docker.compose.project={project}");
    let (kn, tn, on) = (e.name("killed"), e.name("termed"), e.name("oomed"));
    let killed = e.start(&kn, &["--label", &plabel]);
    let termed = run_sh(e, &tn, &["--label", &plabel], TRAP_EXIT_3);
    let oomed = run_sh(
        e,
        &on,
        &["--label", &plabel, "-m", "32m", "--memory-swap", "32m"],
        TRAP_OOM,
    );
    let ids = [killed.clone(), termed.clone(), oomed.clone()];
    support::wait_until(WAIT, "the watcher has the containers", || {
        let pf = w.portfolio();
        ids.iter().all(|id| pf.get(id).is_some())
    });
    break_engine();
    support::wait_until(WAIT, "Health::Reconnecting", || {
        matches!(w.health(), whalewatcher::Health::Reconnecting { .. })
    });
    e.run(&["kill", &killed]);
    e.run(&["kill", "-s", "TERM", &termed]);
    e.run(&["kill", "-s", "TERM", &oomed]);
    let inspect = || -> Vec<serde_json::Value> {
        let mut args = vec!["inspect"];
        args.extend(ids.iter().map(String::as_str));
        serde_json::from_str(&e.run(&args)).unwrap()
    };
    support::wait_until(WAIT, "all exited", || {
        inspect()
            .iter()
            .all(|c| c["State"]["Pid"].as_u64() == Some(0))
    });
    // The watcher is still away: nothing of it may have been reported.
    assert!(
        matches!(w.health(), whalewatcher::Health::Reconnecting { .. }),
        "{:?}",
        w.health()
    );
    heal();
    w.wait_ready(Duration::from_secs(60))
        .expect("watcher re-attaches");
    let events: Vec<_> = collect_exits(sub, &ids, WAIT, Duration::from_millis(300))
        .into_iter()
        .filter(|ev| ids.contains(&ev.container.id))
        .collect();
    replay(&events);
    let truths: Vec<support::watch::ExitTruth> = inspect()
        .iter()
        .map(support::watch::ExitTruth::from_inspect)
        .collect();
    assert_eq!(truths[0].exit_code, Some(137));
    assert_eq!(truths[1].exit_code, Some(3));
    assert_eq!(truths[2].exit_code, Some(137));
    // dockerd flags the OOM kill (podman 4.3 on cgroup v1 never does).
    eprintln!("{}: OOMKilled {}", e.cli, truths[2].oom);
    for t in &truths {
        let exit = events
            .iter()
            .rfind(|ev| ev.container.id == t.id)
            .expect("an event of the container");
        assert_eq!(
            exit.kind,
            EventKind::Exited {
                exit_code: t.exit_code,
                oom: t.oom
            },
            "{} exited while the watcher was away; inspect says {t:?}",
            t.name
        );
        assert_eq!(exit.container.name, t.name);
        assert_eq!(exit.container.project, project);
        assert!(w.portfolio().get(&t.id).is_none());
    }
}

/// Issue 13 item 8 on podman: a private podman API service (over the shared storage) is
/// SIGKILLed while the watcher watches it; the containers live on under conmon; two of
/// them end while it is down; after its restart the resync reports their exit codes as
/// `podman inspect` has them (137, 3).
#[test]
fn podman_exit_codes_survive_a_service_restart() {
    let _s = serial();
    let Some(e) = podman() else { return };
    let mut p = support::podman::PrivatePodman::start();
    let w = Watcher::new(
        DockerClient::new(Some(&p.url)).unwrap(),
        WatcherOptions::default().with_retry(|| {
            whalewatcher::ExponentialBackoff::new(
                Duration::from_millis(50),
                Duration::from_millis(500),
            )
        }),
    );
    let sub = w.subscribe();
    w.wait_ready(WAIT).expect("watcher syncs");
    warm_up(&e, &sub);
    let p = std::cell::RefCell::new(&mut p);
    exits_while_away(
        &e,
        &w,
        &sub,
        || p.borrow_mut().kill9(),
        || p.borrow_mut().launch(),
    );
    w.close();
}

/// Issue 13 item 8 on dockerd, through a fault proxy: the watcher's connections are cut
/// and refused while two containers end; after the proxy heals, the resync reports their
/// exit codes as `docker inspect` has them (137, 3).
#[test]
fn docker_exit_codes_survive_a_lost_connection() {
    let _s = serial();
    let Some(e) = docker() else { return };
    let proxy = support::fault_proxy::Proxy::start(&e.url);
    let w = Watcher::new(
        DockerClient::new(Some(&proxy.url()))
            .unwrap()
            .with_timeout(Duration::from_secs(5)),
        WatcherOptions::default().with_retry(|| {
            whalewatcher::ExponentialBackoff::new(
                Duration::from_millis(50),
                Duration::from_millis(500),
            )
        }),
    );
    let sub = w.subscribe();
    w.wait_ready(WAIT).expect("watcher syncs");
    warm_up(&e, &sub);
    exits_while_away(
        &e,
        &w,
        &sub,
        || {
            proxy.set(support::fault_proxy::Fault::Refuse);
            proxy.cut();
        },
        || proxy.set(support::fault_proxy::Fault::None),
    );
    w.close();
}
