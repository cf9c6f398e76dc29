//! The containerd engine client against the real containerd (WHALEWATCHER_CONTAINERD, a
//! socket path; image WHALEWATCHER_CTR_IMAGE, whose entrypoint blocks).
#![cfg(feature = "containerd")]

mod common;

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use whalewatcher::containerd::{ContainerdClient, RawContainer};
use whalewatcher::{Container, EngineClient, Error, RawEvent, RawEventKind};

const WAIT: Duration = Duration::from_secs(15);

struct Ctr {
    sock: String,
    image: String,
    runc_root: Option<String>,
}

impl Ctr {
    fn from_env() -> Option<Ctr> {
        let sock = common::endpoint("WHALEWATCHER_CONTAINERD")?;
        Some(Ctr {
            sock,
            image: std::env::var("WHALEWATCHER_CTR_IMAGE")
                .unwrap_or_else(|_| "docker.io/library/busybox:sleep".into()),
            runc_root: std::env::var("WHALEWATCHER_CTR_RUNC_ROOT").ok(),
        })
    }

    fn run(&self, ns: &str, args: &[&str]) -> String {
        let mut all = vec!["-a", &self.sock, "-n", ns];
        all.extend_from_slice(args);
        common::run("ctr", &all)
    }

    fn try_run(&self, ns: &str, args: &[&str]) -> bool {
        std::process::Command::new("ctr")
            .args(["-a", &self.sock, "-n", ns])
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Makes sure the test image exists in namespace `ns` (copied from `default`).
    fn ensure_image(&self, ns: &str) {
        static LOCK: Mutex<()> = Mutex::new(());
        let _l = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let have = self.run(ns, &["images", "ls", "-q"]);
        if have.lines().any(|l| l == self.image) {
            return;
        }
        let script = format!(
            "set -o pipefail; ctr -a '{s}' -n default images export {l} - '{i}' | ctr -a '{s}' -n '{ns}' images import {l} -",
            s = self.sock,
            i = self.image,
            l = common::CTR_LOCAL
        );
        common::run("bash", &["-c", &script]);
    }

    /// Creates (and with `start`, starts) container `id` with `labels`; removed on drop.
    fn container(&self, ns: &str, id: &str, labels: &[(&str, &str)], start: bool) -> Cleanup<'_> {
        self.ensure_image(ns);
        let mut args: Vec<String> = vec![if start { "run" } else { "create" }.into()];
        if start {
            args.push("-d".into());
            if let Some(r) = &self.runc_root {
                args.extend(["--runc-root".into(), r.clone()]);
            }
        }
        for (k, v) in labels {
            args.extend(["--label".into(), format!("{k}={v}")]);
        }
        args.extend([self.image.clone(), id.into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        if !start {
            // `ctr c create` is `ctr containers create`.
            let mut a = vec!["c"];
            a.extend_from_slice(&args);
            self.run(ns, &a);
        } else {
            self.run(ns, &args);
        }
        Cleanup {
            ctr: self,
            ns: ns.into(),
            id: id.into(),
        }
    }

    /// PID and status of every task in `ns`, from `ctr tasks ls`.
    fn tasks(&self, ns: &str) -> BTreeMap<String, (u32, String)> {
        self.run(ns, &["tasks", "ls"])
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some((
                    f.first()?.to_string(),
                    (f.get(1)?.parse().ok()?, f.get(2)?.to_string()),
                ))
            })
            .collect()
    }
}

/// Kills and removes a test container.
struct Cleanup<'a> {
    ctr: &'a Ctr,
    ns: String,
    id: String,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let (ns, id) = (self.ns.as_str(), self.id.as_str());
        let _ = self.ctr.try_run(ns, &["tasks", "resume", id]);
        let _ = self.ctr.try_run(ns, &["tasks", "kill", "-s", "KILL", id]);
        for _ in 0..250 {
            if self.ctr.try_run(ns, &["tasks", "rm", id]) || !self.ctr.tasks(ns).contains_key(id) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.ctr.try_run(ns, &["containers", "rm", id]);
    }
}

fn unique(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("wwtest-{what}-{}-{nanos}", std::process::id())
}

fn mine(list: &[Container], tag: &str) -> BTreeMap<String, Container> {
    list.iter()
        .filter(|c| c.id.contains(tag))
        .map(|c| (c.id.clone(), c.clone()))
        .collect()
}

/// The introspection UUID as containerd stores it under its root directory, if found.
fn uuid_on_disk() -> Option<String> {
    let dir = std::env::var("WHALEWATCHER_ENGINES_DIR").ok()?;
    std::fs::read_to_string(format!(
        "{dir}/containerd/root/io.containerd.grpc.v1.introspection/uuid"
    ))
    .ok()
    .map(|s| s.trim().to_string())
}

#[test]
fn lazy_client_fails_typed_when_containerd_is_down() {
    let c = ContainerdClient::new("/nonexistent/whalewatcher/containerd.sock");
    match c.list() {
        Err(Error::Connection { kind, .. }) => assert_eq!(kind, std::io::ErrorKind::NotFound),
        other => panic!("expected a connection error, got {other:?}"),
    }
    c.cancel();
    assert_eq!(c.list().unwrap_err(), Error::Cancelled);
    assert_eq!(c.inspect("x").unwrap_err(), Error::Cancelled);
    assert!(matches!(c.events(), Err(Error::Cancelled)));
}

#[test]
fn info_matches_ctr_and_the_server_uuid() {
    let Some(ctr) = Ctr::from_env() else { return };
    let client = ContainerdClient::new(&ctr.sock).with_pid(4242);
    let info = client.info().unwrap();
    assert_eq!(info.kind, "containerd.io");
    assert_eq!(info.pid, Some(4242));
    assert_eq!(info.api_path, format!("unix://{}", ctr.sock));
    let out = ctr.run("default", &["version"]);
    let server = out
        .split("Server:")
        .nth(1)
        .expect("ctr version shows the server");
    let field = |name: &str| {
        server
            .lines()
            .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("no {name} in {server}"))
    };
    // Debian sid's containerd 2.1 has an empty revision: then the version alone.
    let (version, revision) = (field("Version:"), field("Revision:"));
    if revision.is_empty() {
        assert_eq!(info.version, version);
    } else {
        assert_eq!(info.version, format!("{version} ({revision})"));
    }
    assert_eq!(info.id.len(), 36, "a UUID: {:?}", info.id);
    if let Some(on_disk) = uuid_on_disk() {
        assert_eq!(info.id, on_disk);
    }
}

#[test]
fn list_and_inspect_match_ctr() {
    let Some(ctr) = Ctr::from_env() else { return };
    let tag = unique("list");
    let web = format!("{tag}-web");
    let db = format!("{tag}-db");
    let created = format!("{tag}-created");
    let hidden = format!("{tag}-hidden");
    let _c1 = ctr.container(
        "default",
        &web,
        &[
            ("nerdctl/name", "web"),
            ("com.docker.compose.project", "shop"),
        ],
        true,
    );
    let _c2 = ctr.container(
        "testns",
        &db,
        &[("com.docker.compose.project", "shop")],
        true,
    );
    ctr.run("testns", &["tasks", "pause", &db]);
    let _c3 = ctr.container("default", &created, &[], false);
    let _c4 = ctr.container("wwignored", &hidden, &[], true);

    let ignored = vec!["moby".into(), "k8s.io".into(), "wwignored".into()];
    let client = ContainerdClient::new(&ctr.sock).with_ignored_namespaces(ignored);
    let got = mine(&client.list().unwrap(), &tag);

    // Ground truth from ctr.
    let default_tasks = ctr.tasks("default");
    let testns_tasks = ctr.tasks("testns");
    let (web_pid, web_status) = default_tasks[&web].clone();
    let (db_pid, db_status) = testns_tasks[&db].clone();
    assert_eq!(web_status, "RUNNING");
    assert_eq!(db_status, "PAUSED");
    assert!(!default_tasks.contains_key(&created));

    let ids: Vec<&String> = got.keys().collect();
    let db_id = format!("testns/{db}");
    assert_eq!(ids, {
        let mut v = vec![&web, &db_id];
        v.sort();
        v
    });
    let w = &got[&web];
    assert_eq!(w.name, "web");
    assert_eq!(w.pid, web_pid);
    assert_eq!(w.project, "shop");
    assert!(!w.paused);
    assert_eq!(w.image, ctr.image);
    assert_eq!(w.engine.kind, "containerd.io");
    assert_eq!(
        w.labels.get("nerdctl/name").map(String::as_str),
        Some("web")
    );
    let d = &got[&db_id];
    assert_eq!(d.name, db_id);
    assert_eq!(d.pid, db_pid);
    assert_eq!(d.project, "shop");
    assert!(d.paused);

    // Inspect agrees with list.
    assert_eq!(&client.inspect(&web).unwrap().alive().unwrap(), w);
    assert_eq!(&client.inspect(&db_id).unwrap().alive().unwrap(), d);
    assert_eq!(
        client.inspect(&created).unwrap_err(),
        Error::Processless {
            id: created.clone()
        }
    );
    let nope = format!("{tag}-nope");
    assert_eq!(
        client.inspect(&nope).unwrap_err(),
        Error::NotFound { id: nope.clone() }
    );
    let hidden_id = format!("wwignored/{hidden}");
    assert!(client.inspect(&hidden_id).unwrap_err().is_not_alive());

    // Without the ignore list the hidden namespace shows.
    let all = ContainerdClient::new(&ctr.sock).with_ignored_namespaces(vec![]);
    let got = mine(&all.list().unwrap(), &tag);
    assert!(got.contains_key(&hidden_id), "{got:?}");
    assert_eq!(got[&hidden_id].pid, ctr.tasks("wwignored")[&hidden].0);
}

#[test]
fn rucksack_packer_gets_the_container_record() {
    let Some(ctr) = Ctr::from_env() else { return };
    let tag = unique("rucksack");
    let _c = ctr.container("default", &tag, &[("wwtest", "rucksack")], true);
    let packer = |c: &Container, raw: &dyn std::any::Any| {
        let raw = raw.downcast_ref::<RawContainer>()?;
        Some(Arc::new(format!("{}|{}|{}", c.id, raw.id, raw.image)) as whalewatcher::Rucksack)
    };
    let client = ContainerdClient::new(&ctr.sock).with_rucksack_packer(Arc::new(packer));
    let c = client.inspect(&tag).unwrap().alive().unwrap();
    assert_eq!(
        c.rucksack::<String>().map(String::as_str),
        Some(format!("{tag}|{tag}|{}", ctr.image).as_str())
    );
    let listed = mine(&client.list().unwrap(), &tag);
    assert_eq!(listed[&tag].rucksack::<String>(), c.rucksack::<String>());
}

/// Reads the event stream in a thread; the stream's final result arrives as `Err`.
fn pump(client: &ContainerdClient) -> mpsc::Receiver<Result<RawEvent, Error>> {
    let mut stream = client.events().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || loop {
        match stream.next_event() {
            Ok(Some(ev)) => {
                if tx.send(Ok(ev)).is_err() {
                    return;
                }
            }
            Ok(None) => {
                let _ = tx.send(Err(Error::protocol("test", "stream ended")));
                return;
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        }
    });
    rx
}

/// The next event for container `id` (skipping other containers' events).
fn next_for(rx: &mpsc::Receiver<Result<RawEvent, Error>>, id: &str) -> Option<RawEvent> {
    next_for_within(rx, id, WAIT)
}

#[test]
fn lifecycle_events_pause_resume_exec_kill_and_cancel() {
    let Some(ctr) = Ctr::from_env() else { return };
    let tag = unique("events");
    let x = format!("{tag}-x");
    let y = format!("{tag}-y");
    let hidden = format!("{tag}-hidden");
    let _cx = ctr.container("testns", &x, &[], true);
    let xid = format!("testns/{x}");

    let ignored = vec!["moby".into(), "k8s.io".into(), "wwignored".into()];
    let client = ContainerdClient::new(&ctr.sock).with_ignored_namespaces(ignored);
    let rx = pump(&client);

    // Warm up: the subscription may become active a moment after the call went out.
    let mut warm = false;
    for _ in 0..10 {
        ctr.run("testns", &["tasks", "pause", &x]);
        let ev = next_for_within(&rx, &xid, Duration::from_secs(1));
        ctr.run("testns", &["tasks", "resume", &x]);
        if let Some(ev) = ev {
            assert_eq!(ev.kind, RawEventKind::Paused);
            let ev = next_for(&rx, &xid).expect("unpaused event");
            assert_eq!(ev.kind, RawEventKind::Unpaused);
            warm = true;
            break;
        }
        // The missed pause's resume may or may not show; drain it.
        let _ = next_for_within(&rx, &xid, Duration::from_millis(200));
    }
    assert!(warm, "no paused event arrived after 10 tries");

    // Start, in the default namespace: unprefixed id; time from the engine.
    let before = SystemTime::now() - Duration::from_secs(60);
    let _cy = ctr.container("default", &y, &[], true);
    let ev = next_for(&rx, &y).expect("started event");
    assert_eq!(ev.kind, RawEventKind::Started);
    assert!(ev.time > before && ev.time < SystemTime::now() + Duration::from_secs(60));

    // An ignored namespace stays silent, while a later marker event does arrive.
    let _ch = ctr.container("wwignored", &hidden, &[], true);
    // An exec'd process that ends is no exit of the container.
    ctr.run(
        "testns",
        &[
            "tasks",
            "exec",
            "--exec-id",
            &format!("{tag}-e1"),
            &x,
            "true",
        ],
    );
    ctr.run("testns", &["tasks", "pause", &x]);
    let ev = next_for(&rx, &xid).expect("paused marker event");
    assert_eq!(
        ev.kind,
        RawEventKind::Paused,
        "an exec'd process's exit must not show as the container's exit"
    );
    ctr.run("testns", &["tasks", "resume", &x]);
    let ev = next_for(&rx, &xid).expect("unpaused event");
    assert_eq!(ev.kind, RawEventKind::Unpaused);

    // SIGKILL: exit status 137.
    ctr.run("default", &["tasks", "kill", "-s", "KILL", &y]);
    let ev = next_for(&rx, &y).expect("exited event");
    assert_eq!(
        ev.kind,
        RawEventKind::Exited {
            exit_code: Some(137),
            oom: false
        }
    );

    // No event of the ignored namespace was seen meanwhile.
    while let Ok(r) = rx.try_recv() {
        let ev = r.unwrap();
        assert!(!ev.id.contains(&hidden), "ignored namespace leaked: {ev:?}");
    }

    // Cancel unblocks the reader promptly.
    client.cancel();
    match rx.recv_timeout(WAIT) {
        Ok(Err(Error::Cancelled)) => {}
        Ok(Ok(ev)) => {
            // An event that raced the cancel; the next message must be the cancellation.
            assert!(!ev.id.contains(&hidden));
            assert!(matches!(rx.recv_timeout(WAIT), Ok(Err(Error::Cancelled))));
        }
        other => panic!("expected Cancelled, got {other:?}"),
    }
    assert_eq!(client.list().unwrap_err(), Error::Cancelled);
}

fn next_for_within(
    rx: &mpsc::Receiver<Result<RawEvent, Error>>,
    id: &str,
    within: Duration,
) -> Option<RawEvent> {
    let end = std::time::Instant::now() + within;
    loop {
        let left = end.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(Ok(ev)) if ev.id == id => return Some(ev),
            Ok(Ok(ev)) => assert!(
                !ev.id.starts_with("wwignored/"),
                "an event of an ignored namespace leaked: {ev:?}"
            ),
            Ok(Err(e)) => panic!("event stream failed: {e}"),
            Err(_) => return None,
        }
    }
}
