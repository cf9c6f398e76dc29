//! Churn during the initial sync against the shared containerd (WHALEWATCHER_CONTAINERD):
//! in a private namespace with ~20 containers present, two threads start, pause, resume,
//! exec into and kill others while a fresh watcher makes its first listing. Afterwards the
//! watcher's containers of that namespace equal `ctr tasks ls` (ids, pids, paused), and
//! every container's event sequence is valid and ends in its true state. Three rounds.
//! Only this namespace is compared: other tests may use the same containerd meanwhile.
#![cfg(all(feature = "containerd", feature = "docker"))]

mod support;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use support::containerd::{view_ns, Ctr};
use support::replay::replay;
use support::watch::{converge, drain, kinds};
use whalewatcher::containerd::ContainerdClient;
use whalewatcher::{EventKind, Watcher, WatcherOptions};

const WAIT: Duration = Duration::from_secs(30);

/// Starts containers `ids` from 4 threads.
fn start_many(ctr: &Arc<Ctr>, ids: &[String]) {
    let mut handles = Vec::new();
    for chunk in ids.chunks(ids.len().div_ceil(4).max(1)) {
        let (ctr, chunk) = (ctr.clone(), chunk.to_vec());
        handles.push(std::thread::spawn(move || {
            for id in &chunk {
                ctr.start(id, &[("nerdctl/name", id)]);
            }
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn containerd_churn_during_initial_sync() {
    let Some(sock) = support::endpoint("WHALEWATCHER_CONTAINERD") else {
        return;
    };
    let ns = format!("churn-{}", std::process::id());
    let runc = std::env::var("WHALEWATCHER_CTR_RUNC_ROOT").ok();
    let ctr = Arc::new(Ctr::new(&sock, &ns, runc, true));
    ctr.import_image(&sock, "default");
    let base: Vec<String> = (0..20).map(|i| format!("base{i}")).collect();
    start_many(&ctr, &base);
    for round in 0..3 {
        // Churn material: running containers to pause, exec into, kill and re-create under
        // the same id; ids of new ones.
        let victims: Vec<String> = (0..7).map(|i| format!("v{round}-{i}")).collect();
        let fresh: Vec<String> = (0..6).map(|i| format!("n{round}-{i}")).collect();
        start_many(&ctr, &victims);
        let old_pid = ctr.truth().unwrap()[&ctr.display(&victims[6])].0;
        let go = Arc::new(Barrier::new(3));
        let t1 = {
            let (ctr, v, go) = (ctr.clone(), victims.clone(), go.clone());
            std::thread::spawn(move || {
                go.wait();
                // Same id, new task: to the watcher an exit and a start, never one container.
                ctr.remove(&v[6]);
                ctr.start(&v[6], &[("nerdctl/name", &v[6])]);
                for id in &v[..3] {
                    ctr.run(&["tasks", "pause", id]);
                }
                ctr.run(&["tasks", "resume", &v[0]]);
                ctr.run(&["tasks", "resume", &v[2]]);
                ctr.run(&["tasks", "kill", "-s", "KILL", &v[2]]);
                ctr.run(&["tasks", "kill", "-s", "KILL", &v[3]]);
                // An exec'd process that ends is no exit of its container.
                let exec = format!("x{round}");
                ctr.run(&["tasks", "exec", "--exec-id", &exec, &v[4], "true"]);
            })
        };
        // The watcher starts when t2 has started 0, 1 or 3 new containers: its listing
        // falls at a different point of the churn each round.
        let (at_tx, at_rx) = std::sync::mpsc::channel();
        let at = [0, 1, 3][round];
        let t2 = {
            let (ctr, f, v, go) = (ctr.clone(), fresh.clone(), victims.clone(), go.clone());
            std::thread::spawn(move || {
                go.wait();
                for (i, id) in f.iter().enumerate() {
                    if i == at {
                        at_tx.send(()).unwrap();
                    }
                    ctr.start(id, &[("nerdctl/name", id)]);
                }
                ctr.run(&["tasks", "kill", "-s", "KILL", &f[0]]);
                ctr.run(&["tasks", "pause", &f[1]]);
                ctr.run(&["tasks", "kill", "-s", "KILL", &v[5]]);
            })
        };
        go.wait();
        at_rx.recv().unwrap();
        let w = Watcher::new(
            ContainerdClient::new(Some(sock.as_ref())).unwrap(),
            WatcherOptions::default(),
        );
        let sub = w.subscribe();
        t1.join().unwrap();
        t2.join().unwrap();
        // Quiescence: `ctr tasks kill` returns before the task is dead.
        let killed = [&victims[2], &victims[3], &victims[5], &fresh[0]];
        support::wait_until(WAIT, "killed tasks stopped", || {
            ctr.tasks().is_some_and(|t| {
                killed
                    .iter()
                    .all(|id| t.get(id.as_str()).is_some_and(|s| s.1 == "STOPPED"))
            })
        });
        w.wait_ready(WAIT).expect("watcher syncs");
        let truth = converge(WAIT, || ctr.truth(), || view_ns(&w, &ns));
        let d = |id: &str| ctr.display(id);
        for id in &base {
            assert!(truth.contains_key(&d(id)), "round {round}: base {id} died");
        }
        for id in killed {
            assert!(
                !truth.contains_key(&d(id)),
                "round {round}: {id} survived a kill"
            );
        }
        assert!(truth[&d(&victims[1])].1 && truth[&d(&fresh[1])].1);
        assert!(!truth[&d(&victims[0])].1 && !truth[&d(&victims[4])].1);
        assert_ne!(
            truth[&d(&victims[6])].0,
            old_pid,
            "round {round}: not re-created"
        );
        let pf = w.portfolio();
        for (id, _) in truth.iter() {
            let c = pf.get(id).unwrap();
            assert_eq!(&c.name, id, "name from the nerdctl/name label, ns-prefixed");
        }

        // Every event of every container (other namespaces included) forms a valid
        // sequence; those of this namespace end in the true state, with the true pid.
        let events = drain(&sub, Duration::from_millis(500));
        let state = replay(&events);
        // Informative: fewer events when more of the churn came before the listing.
        let n = events
            .iter()
            .filter(|e| e.container.id.starts_with(&format!("{ns}/")))
            .count();
        eprintln!("round {round}: {n} events in {ns}");
        for (id, (alive, paused)) in state
            .iter()
            .filter(|(id, _)| id.starts_with(&format!("{ns}/")))
        {
            match truth.get(id) {
                Some(t) => assert!(
                    *alive && *paused == t.1,
                    "round {round}: events end with alive={alive} paused={paused} for {id}, truth {t:?}"
                ),
                None => assert!(!alive, "round {round}: events leave {id} alive but it is gone"),
            }
        }
        for (id, (pid, _)) in &truth {
            assert!(
                state.get(id).is_some_and(|s| s.0),
                "round {round}: no Started for {id}"
            );
            let started = events
                .iter()
                .rfind(|e| &e.container.id == id && e.kind == EventKind::Started)
                .unwrap();
            assert_eq!(started.container.pid, *pid, "round {round}: pid of {id}");
        }
        let v6 = kinds(&events, &d(&victims[6]));
        let exited = |k: &EventKind| matches!(k, EventKind::Exited { .. });
        assert!(
            matches!(v6[..], [EventKind::Started]) || (v6.len() == 3 && exited(&v6[1])),
            "round {round}: re-created container: {v6:?}"
        );
        let v4 = kinds(&events, &d(&victims[4]));
        assert_eq!(v4, [EventKind::Started], "round {round}: exec leaked");
        for id in killed {
            let k = kinds(&events, &d(id));
            let want = EventKind::Exited {
                exit_code: Some(137),
                oom: false,
            };
            // Killed before the listing: no events at all; else Started ... Exited(137).
            assert!(
                k.is_empty() || k.last() == Some(&want),
                "round {round}: {id}: {k:?}"
            );
        }
        w.close();
        // This round's containers go; the base stays for the next round.
        for id in victims.iter().chain(&fresh) {
            ctr.remove(id);
        }
    }
}
