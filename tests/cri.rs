//! Integration tests of the CRI engine against containerd's CRI plugin
//! (`WHALEWATCHER_CRI`; pods in the host network namespace, created through CRI itself).
#![cfg(feature = "cri")]

mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::cri::{container_truth, sandbox_pid, Pod};
use whalewatcher::cri::api::ContainerState;
use whalewatcher::cri::{
    CriClient, EventMode, ANNOTATION_KEY_PREFIX, CONTAINER_NAME_LABEL, POD_NAMESPACE_LABEL,
    POD_NAME_LABEL, POD_UID_LABEL, SANDBOX_LABEL,
};
use whalewatcher::EngineKind;
use whalewatcher::{Container, EngineClient, Error, EventKind, Item, Watcher, WatcherOptions};

fn client() -> Option<CriClient> {
    support::endpoint("WHALEWATCHER_CRI").map(|p| CriClient::new(Some(&p)).unwrap())
}

fn by_id(list: &[Arc<Container>]) -> HashMap<&str, &Container> {
    list.iter().map(|c| (c.id.as_str(), &**c)).collect()
}

fn check_pod_labels(c: &Container, pod: &Pod) {
    assert_eq!(
        c.labels.get(POD_NAME_LABEL),
        Some(pod.name.as_str()),
        "{c:?}"
    );
    assert_eq!(
        c.labels.get(POD_NAMESPACE_LABEL),
        Some(pod.namespace.as_str()),
        "{c:?}"
    );
    assert_eq!(c.labels.get(POD_UID_LABEL), Some(pod.uid.as_str()), "{c:?}");
    assert_eq!(c.project, "");
    assert!(!c.paused);
    assert_eq!(c.engine.kind.as_str(), "k8s.io/cri-api");
}

#[test]
fn list_and_inspect_match_ground_truth() {
    let Some(cri) = client() else { return };
    let pods = [Pod::run(&cri, "list-a"), Pod::run(&cri, "list-b")];
    // Both pods have containers named "web" and "side".
    let mut ids = Vec::new();
    for pod in &pods {
        for name in ["web", "side"] {
            ids.push((pod, name, pod.run_container(name)));
        }
    }
    // A created, never started container is not alive.
    let created = pods[0].create("idle");

    let list = cri.list().expect("list");
    let m = by_id(&list);
    for (pod, name, id) in &ids {
        let c = m.get(id.as_str()).unwrap_or_else(|| panic!("{id} missing"));
        let (pid, state) = container_truth(&pod.ch, id);
        assert_eq!(state, ContainerState::CONTAINER_RUNNING);
        assert_eq!(c.pid, pid);
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        assert_eq!(c.name, *name);
        assert_eq!(c.labels.get(CONTAINER_NAME_LABEL), Some(*name));
        assert_eq!(c.labels.get("ww-container"), Some(*name));
        assert_eq!(
            c.labels.get(&format!("{ANNOTATION_KEY_PREFIX}ww-note")),
            Some("container")
        );
        assert!(!c.labels.contains_key(SANDBOX_LABEL));
        assert!(!c.image.is_empty());
        check_pod_labels(c, pod);
        // inspect agrees with list.
        let i = cri.inspect(id).expect("inspect").alive().expect("alive");
        assert_eq!(&i, *c);
    }
    for pod in &pods {
        let s = m
            .get(pod.id.as_str())
            .unwrap_or_else(|| panic!("sandbox {} missing", pod.id));
        assert_eq!(s.name, pod.id);
        assert_eq!(s.labels.get(SANDBOX_LABEL), Some("true"));
        assert_eq!(s.labels.get("ww-pod"), Some(pod.name.as_str()));
        assert_eq!(
            s.labels.get(&format!("{ANNOTATION_KEY_PREFIX}ww-note")),
            Some("pod")
        );
        assert_eq!(s.pid, sandbox_pid(&pod.ch, &pod.id));
        assert!(std::path::Path::new(&format!("/proc/{}", s.pid)).exists());
        check_pod_labels(s, pod);
        assert_eq!(
            &cri.inspect(&pod.id)
                .expect("inspect sandbox")
                .alive()
                .expect("alive"),
            *s
        );
    }
    assert!(!m.contains_key(created.as_str()));
    assert!(matches!(
        cri.inspect(&created),
        Err(Error::Processless { .. })
    ));
    // A stopped container is exited, with its details and exit code (SIGKILL).
    let (pod, name, stopped) = &ids[0];
    pod.stop(stopped);
    support::wait_until(Duration::from_secs(10), "CRI says exited", || {
        container_truth(&pod.ch, stopped).1 == ContainerState::CONTAINER_EXITED
    });
    match cri.inspect(stopped).expect("inspect stopped") {
        whalewatcher::Inspection::Exited(c, st) => {
            assert_eq!(c.name, *name);
            assert_eq!(c.pid, 0);
            assert_eq!(c.labels.get("ww-container"), Some(*name));
            check_pod_labels(&c, pod);
            assert_eq!(st.exit_code, Some(137));
            assert!(!st.oom);
            assert!(st.time.is_some());
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        cri.inspect("no-such-container-0123456789"),
        Err(Error::NotFound { .. })
    ));
    // Same names in two pods: two distinct containers each.
    let webs: Vec<_> = ids.iter().filter(|(_, n, _)| *n == "web").collect();
    assert_eq!(webs.len(), 2);
    assert_ne!(m[webs[0].2.as_str()].pid, m[webs[1].2.as_str()].pid);
}

#[test]
fn info_reports_the_mode_chosen_by_version() {
    let Some(cri) = client() else { return };
    let info = cri.info().expect("info");
    assert_eq!(info.kind, EngineKind::Cri);
    assert!(info.version.contains("containerd"), "{info:?}");
    assert!(!info.id.is_empty());
    assert!(info.api_path.starts_with("unix://"));
    // Decided from the Version answer, before any event stream: containerd before 2.0
    // gets its native task events, 2.x the CRI events.
    let (name, version) = support::cri::runtime_version(cri.channel());
    let want = EventMode::for_runtime(&name, &version);
    assert_ne!(want, EventMode::Relist);
    assert_eq!(info.mode, want.as_str());
    let t0 = Instant::now();
    let _events = cri.events().expect("events");
    // No probe: the stream opens at once, also on an idle engine.
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    assert_eq!(cri.info().expect("info").mode, want.as_str());
    assert_eq!(cri.info().expect("info").id, info.id);
}

#[test]
fn cancel_unblocks_every_kind_of_stream() {
    let Some(_) = client() else { return };
    for mode in [None, Some(EventMode::Relist)] {
        let mut cri = client()
            .unwrap()
            .with_relist_interval(Duration::from_secs(3600));
        if let Some(m) = mode {
            cri = cri.with_event_mode(m);
        }
        let cri = Arc::new(cri);
        let mut ev = cri.events().expect("events");
        // (Other tests' containers may produce events meanwhile: skip them.)
        let t = std::thread::spawn(move || loop {
            match ev.next_event() {
                Ok(Some(_)) => {}
                r => return r,
            }
        });
        std::thread::sleep(Duration::from_millis(50));
        let t0 = Instant::now();
        cri.cancel();
        assert_eq!(t.join().unwrap(), Err(Error::Cancelled), "{mode:?}");
        assert!(t0.elapsed() < Duration::from_secs(1));
        assert_eq!(cri.list(), Err(Error::Cancelled));
    }
}

/// Collects the events of `ids` until `done` says the collection is complete.
fn collect(
    sub: &whalewatcher::Subscription,
    ids: &BTreeSet<String>,
    timeout: Duration,
    done: impl Fn(&[(String, EventKind)]) -> bool,
) -> Vec<(String, EventKind)> {
    let end = Instant::now() + timeout;
    let mut got = Vec::new();
    while !done(&got) {
        let left = end.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out; got {got:?}");
        match sub.recv_timeout(left) {
            Some(Item::Event(e)) if ids.contains(&e.container.id) => {
                got.push((e.container.id.clone(), e.kind))
            }
            Some(Item::Event(_)) => {}
            Some(other) => panic!("unexpected {other:?}"),
            None => {}
        }
    }
    got
}

fn count(got: &[(String, EventKind)], id: &str, kind: &str) -> usize {
    got.iter()
        .filter(|(i, k)| i == id && k.as_str() == kind)
        .count()
}

#[test]
fn relist_events_through_a_watcher() {
    let Some(cri) = client() else { return };
    let cri = cri
        .with_relist_interval(Duration::from_millis(200))
        .with_event_mode(EventMode::Relist);
    let w = Watcher::new(cri, WatcherOptions::default());
    w.wait_ready(Duration::from_secs(20)).expect("synced");
    assert_eq!(
        w.engine_info().expect("info").mode,
        EventMode::Relist.as_str()
    );
    let sub = w.subscribe();

    let mut pod = Pod::run(&client().unwrap(), "events");
    let a = pod.run_container("web");
    let b = pod.run_container("side");
    let ids: BTreeSet<String> = [pod.id.clone(), a.clone(), b.clone()].into();
    let got = collect(&sub, &ids, Duration::from_secs(20), |g| {
        ids.iter().all(|i| count(g, i, "started") == 1)
    });
    assert_eq!(got.len(), 3, "{got:?}");
    let p = w.portfolio();
    assert_eq!(p.get(&a).expect("a in portfolio").name, "web");
    assert_eq!(
        p.get(&pod.id).expect("sandbox").labels.get(SANDBOX_LABEL),
        Some("true")
    );

    pod.stop(&a);
    let got = collect(&sub, &ids, Duration::from_secs(20), |g| {
        count(g, &a, "exited") == 1
    });
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(w.portfolio().get(&a).is_none());

    let sandbox = pod.id.clone();
    pod.destroy();
    let got = collect(&sub, &ids, Duration::from_secs(20), |g| {
        count(g, &b, "exited") == 1 && count(g, &sandbox, "exited") == 1
    });
    assert_eq!(got.len(), 2, "{got:?}");
    // Nothing more for these containers: each change was reported once.
    let end = Instant::now() + Duration::from_millis(800);
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        if let Some(Item::Event(e)) = sub.recv_timeout(left) {
            assert!(!ids.contains(&e.container.id), "duplicate {e:?}");
        }
    }
    let p = w.portfolio();
    assert!(ids.iter().all(|i| p.get(i).is_none()));
    w.close();
}

#[test]
fn churn_during_initial_sync_converges() {
    churn_converges(None);
}

#[test]
fn churn_during_initial_sync_converges_relisting() {
    churn_converges(Some(EventMode::Relist));
}

fn churn_converges(mode: Option<EventMode>) {
    let Some(cri) = client() else { return };
    let pod = Pod::run(&cri, "churn");
    let churn = {
        let pod_ref = &pod;
        std::thread::scope(|s| {
            let h = s.spawn(move || {
                let mut kept = Vec::new();
                for n in 0..12 {
                    let id = pod_ref.run_container(&format!("c{n}"));
                    if n % 2 == 0 {
                        pod_ref.stop(&id);
                    } else {
                        kept.push(id);
                    }
                }
                kept
            });
            let mut c = CriClient::new(support::endpoint("WHALEWATCHER_CRI").as_deref())
                .unwrap()
                .with_relist_interval(Duration::from_millis(100));
            if let Some(m) = mode {
                c = c.with_event_mode(m);
            }
            let w = Watcher::new(c, WatcherOptions::default());
            w.wait_ready(Duration::from_secs(30)).expect("synced");
            let kept = h.join().unwrap();
            (w, kept)
        })
    };
    let (w, kept) = churn;
    // Ground truth: the pod's running containers per ListContainers (via a fresh list).
    let truth: BTreeSet<String> = cri
        .list()
        .expect("list")
        .into_iter()
        .filter(|c| c.labels.get(POD_NAME_LABEL) == Some(pod.name.as_str()))
        .map(|c| c.id.clone())
        .collect();
    let mut expect: BTreeSet<String> = kept.iter().cloned().collect();
    expect.insert(pod.id.clone());
    assert_eq!(truth, expect);
    support::wait_until(Duration::from_secs(10), "portfolio converges", || {
        let mine: BTreeSet<String> = w
            .portfolio()
            .iter()
            .filter(|c| c.labels.get(POD_NAME_LABEL) == Some(pod.name.as_str()))
            .map(|c| c.id.clone())
            .collect();
        mine == expect
    });
    w.close();
}

#[test]
fn rucksack_packer_gets_the_verbose_info_map() {
    let Some(cri) = client() else { return };
    let packer = |c: &Container, raw: &dyn std::any::Any| -> Option<whalewatcher::Rucksack> {
        let info = raw.downcast_ref::<whalewatcher::cri::RawInfo>()?;
        let v: serde_json::Value = serde_json::from_str(info.get("info")?).ok()?;
        // The packer sees the finished container and the runtime's JSON side by side.
        (v["pid"].as_u64() == Some(c.pid as u64)).then(|| Arc::new(c.id.clone()) as _)
    };
    let cri = cri.with_rucksack_packer(Arc::new(packer));
    let pod = Pod::run(&cri, "rucksack");
    let id = pod.run_container("web");
    let mine: Vec<_> = cri
        .list()
        .expect("list")
        .into_iter()
        .filter(|c| c.id == id || c.id == pod.id)
        .collect();
    assert_eq!(mine.len(), 2);
    for c in mine {
        assert_eq!(c.rucksack::<String>(), Some(&c.id), "{c:?}");
    }
    assert_eq!(
        cri.inspect(&id)
            .expect("inspect")
            .container()
            .rucksack::<String>(),
        Some(&id)
    );
}
