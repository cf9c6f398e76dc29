//! The containerd engine client against the real containerd (WHALEWATCHER_CONTAINERD, a
//! socket path; image WHALEWATCHER_CTR_IMAGE, whose entrypoint blocks).
#![cfg(feature = "containerd")]

mod support;

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use whalewatcher::containerd::{ContainerdClient, RawContainer};
use whalewatcher::{Container, EngineClient, Error, EventKind, RawEvent};

const WAIT: Duration = Duration::from_secs(15);

struct Ctr {
    sock: String,
    image: String,
    runc_root: Option<String>,
}

impl Ctr {
    fn from_env() -> Option<Ctr> {
        let sock = support::endpoint("WHALEWATCHER_CONTAINERD")?;
        Some(Ctr {
            sock,
            image: std::env::var("WHALEWATCHER_CTR_IMAGE")
                .unwrap_or_else(|_| "docker.io/library/busybox:sleep".into()),
            runc_root: std::env::var("WHALEWATCHER_CTR_RUNC_ROOT").ok(),
        })
    }

    fn run(&self, ns: &str, args: &[&str]) -> String {
        support::try_run_with("ctr", &["-a", &self.sock, "-n", ns], args)
            .unwrap_or_else(|e| panic!("ctr -n {ns} {args:?} failed: {e}"))
    }

    fn try_run(&self, ns: &str, args: &[&str]) -> bool {
        support::try_run_with("ctr", &["-a", &self.sock, "-n", ns], args).is_ok()
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
            l = support::CTR_LOCAL
        );
        support::run("bash", &["-c", &script]);
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

fn mine(list: &[Arc<Container>], tag: &str) -> BTreeMap<String, Container> {
    list.iter()
        .filter(|c| c.id.contains(tag))
        .map(|c| (c.id.clone(), Container::clone(c)))
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
    let c = ContainerdClient::new(Some("/nonexistent/whalewatcher/containerd.sock")).unwrap();
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
    let client = ContainerdClient::new(Some(ctr.sock.as_ref()))
        .unwrap()
        .with_pid(4242);
    let info = client.info().unwrap();
    assert_eq!(info.kind.as_str(), "containerd.io");
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
    let client = ContainerdClient::new(Some(ctr.sock.as_ref()))
        .unwrap()
        .with_ignored_namespaces(ignored);
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
    assert_eq!(w.engine.kind.as_str(), "containerd.io");
    assert_eq!(w.labels.get("nerdctl/name"), Some("web"));
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
    let all = ContainerdClient::new(Some(ctr.sock.as_ref()))
        .unwrap()
        .with_ignored_namespaces(vec![]);
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
        let labelled = raw.labels.get("wwtest") == Some("rucksack");
        let fields = [
            c.id.as_str(),
            &raw.namespace,
            &raw.id,
            &raw.image,
            &raw.runtime,
            if labelled { "labelled" } else { "unlabelled" },
        ];
        Some(Arc::new(fields.join("|")) as whalewatcher::Rucksack)
    };
    let client = ContainerdClient::new(Some(ctr.sock.as_ref()))
        .unwrap()
        .with_rucksack_packer(Arc::new(packer));
    // Ground truth: image and runtime as `ctr containers ls` shows them.
    let ls = ctr.run("default", &["containers", "ls"]);
    let row: Vec<&str> = ls
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.first() == Some(&tag.as_str()))
        .expect("ctr containers ls shows the container");
    let (image, runtime) = (row[1], row[2]);
    assert_eq!(image, ctr.image);
    let c = client.inspect(&tag).unwrap().alive().unwrap();
    assert_eq!(
        c.rucksack::<String>().map(String::as_str),
        Some(format!("{tag}|default|{tag}|{image}|{runtime}|labelled").as_str())
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
    let client = ContainerdClient::new(Some(ctr.sock.as_ref()))
        .unwrap()
        .with_ignored_namespaces(ignored);
    let rx = pump(&client);

    // Warm up: the subscription may become active a moment after the call went out.
    let mut warm = false;
    for _ in 0..10 {
        ctr.run("testns", &["tasks", "pause", &x]);
        let ev = next_for_within(&rx, &xid, Duration::from_secs(1));
        ctr.run("testns", &["tasks", "resume", &x]);
        if let Some(ev) = ev {
            assert_eq!(ev.kind, EventKind::Paused);
            let ev = next_for(&rx, &xid).expect("unpaused event");
            assert_eq!(ev.kind, EventKind::Unpaused);
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
    assert_eq!(ev.kind, EventKind::Started);
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
        EventKind::Paused,
        "an exec'd process's exit must not show as the container's exit"
    );
    ctr.run("testns", &["tasks", "resume", &x]);
    let ev = next_for(&rx, &xid).expect("unpaused event");
    assert_eq!(ev.kind, EventKind::Unpaused);

    // SIGKILL: exit status 137.
    ctr.run("default", &["tasks", "kill", "-s", "KILL", &y]);
    let ev = next_for(&rx, &y).expect("exited event");
    assert_eq!(
        ev.kind,
        EventKind::Exited {
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

/// Exits as inspect and the event stream report them (reads `ctr` JSON and RFC 3339 times,
/// which come with the `docker` feature's serde_json and time parser).
#[cfg(feature = "docker")]
mod exits {
    use super::*;

    /// `ctr events` running in the background: the engine's own account of what happened.
    struct CtrEvents {
        child: std::process::Child,
        file: std::path::PathBuf,
    }

    impl CtrEvents {
        fn start(ctr: &Ctr, tag: &str) -> CtrEvents {
            let file = std::env::temp_dir().join(format!("{tag}.events"));
            let out = std::fs::File::create(&file).unwrap();
            let child = std::process::Command::new("ctr")
                .args(["-a", &ctr.sock, "events"])
                .stdout(out)
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            CtrEvents { child, file }
        }

        /// The JSON payloads of `topic` in namespace `ns` seen so far.
        fn payloads(&self, ns: &str, topic: &str) -> Vec<serde_json::Value> {
            std::fs::read_to_string(&self.file)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| {
                    // "<date> <time> <zone> <zone name> <ns> <topic> <json>"
                    let f: Vec<&str> = l.splitn(7, ' ').collect();
                    (f.len() == 7 && f[4] == ns && f[5] == topic)
                        .then(|| serde_json::from_str(f[6]).ok())
                        .flatten()
                })
                .collect()
        }

        /// The `/tasks/exit` of `id`'s init process, waited for (bounded).
        fn exit_of(&self, ns: &str, id: &str) -> serde_json::Value {
            self.exit_of_exec(ns, id, id)
        }

        /// The `/tasks/exit` of process `exec` of container `id`, waited for (bounded).
        fn exit_of_exec(&self, ns: &str, id: &str, exec: &str) -> serde_json::Value {
            let mut found = None;
            support::wait_until(WAIT, "ctr events shows the exit", || {
                found = self
                    .payloads(ns, "/tasks/exit")
                    .into_iter()
                    .find(|p| p["container_id"] == id && p["id"] == exec);
                found.is_some()
            });
            found.unwrap()
        }
    }

    impl Drop for CtrEvents {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_file(&self.file);
        }
    }

    /// The `exited_at` of a `ctr events` payload: RFC 3339 text (containerd 1.6) or
    /// `{"seconds", "nanos"}` (1.7 and later print protobuf timestamps as objects).
    fn exited_at_of(v: &serde_json::Value) -> Option<std::time::SystemTime> {
        if let Some(s) = v.as_str() {
            return whalewatcher::docker::parse_rfc3339(s).unwrap();
        }
        let secs = v["seconds"].as_u64()?;
        let nanos = v["nanos"].as_u64().unwrap_or(0) as u32;
        Some(std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos))
    }

    /// `ctr tasks rm`: the exit code it warns about (0 when it warns of none).
    fn delete_task(ctr: &Ctr, ns: &str, id: &str) -> i32 {
        support::containerd::Ctr::new(&ctr.sock, ns, None, false).delete_task(id)
    }

    /// inspect of containers whose task stopped (`exit 3`, SIGKILL, OOM kill): Exited with
    /// the record's details and the task's exit status and time, agreeing with `ctr tasks
    /// ls`, `ctr events` and `ctr tasks rm`; an exec'd process's exit does not count; after
    /// the task is deleted Processless, after the container is, NotFound. The exit events
    /// carry the same code and time.
    #[test]
    fn inspect_of_stopped_tasks_says_how_they_ended() {
        let Some(ctr) = Ctr::from_env() else { return };
        let plain = std::env::var("WHALEWATCHER_CTR_PLAIN_IMAGE")
            .unwrap_or_else(|_| "docker.io/library/busybox:local".into());
        let tag = unique("exits");
        let ns = "testns";
        let truth = CtrEvents::start(&ctr, &tag);
        let ignored = vec!["moby".into(), "k8s.io".into(), "wwignored".into()];
        let client = ContainerdClient::new(Some(ctr.sock.as_ref()))
            .unwrap()
            .with_ignored_namespaces(ignored);
        let rx = pump(&client);
        // The subscription may become active a moment after the call: wait until a
        // sentinel's start shows.
        let mut warm = false;
        for i in 0..10 {
            let s = format!("{tag}-sentinel{i}");
            let _c = run_sh(&ctr, ns, &s, &plain, &[], "true");
            if next_for_within(&rx, &format!("{ns}/{s}"), Duration::from_secs(2)).is_some() {
                warm = true;
                break;
            }
        }
        assert!(warm, "the event stream never delivered");

        let cases = [
            ("exit3", "exit 3", None::<&str>),
            ("killed", "sleep 100000", None),
            (
                "oom",
                "x=$(head -c 200000000 /dev/zero | tr '\\0' a)",
                Some("33554432"), // 32 MiB: runc 1.1.15 (trixie) charges 11-13 MB while starting
            ),
        ];
        for (what, script, mem) in cases {
            let id = format!("{tag}-{what}");
            let full = format!("{ns}/{id}");
            let extra: Vec<&str> = mem.map(|m| vec!["--memory-limit", m]).unwrap_or_default();
            let _cleanup = run_sh(&ctr, ns, &id, &plain, &extra, script);
            if what == "killed" {
                // An exec'd process that ends is no exit of the container. (ctr exits with
                // the exec'd process's code.)
                let _ = ctr.try_run(
                    ns,
                    &[
                        "tasks",
                        "exec",
                        "--exec-id",
                        "e1",
                        &id,
                        "sh",
                        "-c",
                        "exit 5",
                    ],
                );
                let exec_exit = truth.exit_of_exec(ns, &id, "e1");
                assert_eq!(exec_exit["exit_status"], 5);
                let (pid, status) = ctr.tasks(ns)[&id].clone();
                assert_eq!(status, "RUNNING");
                match client.inspect(&full) {
                    Ok(whalewatcher::Inspection::Alive(c)) => assert_eq!(c.pid, pid),
                    other => panic!("{what}: expected Alive, got {other:?}"),
                }
                ctr.run(ns, &["tasks", "kill", "-s", "KILL", &id]);
            }
            support::wait_until(WAIT, "the task stopped", || {
                ctr.tasks(ns).get(&id).is_some_and(|(_, s)| s == "STOPPED")
            });
            let (got, status) = match client.inspect(&full) {
                Ok(whalewatcher::Inspection::Exited(c, s)) => (c, s),
                other => panic!("{what}: expected Exited, got {other:?}"),
            };
            // The record's details, without a process.
            let info: serde_json::Value =
                serde_json::from_str(&ctr.run(ns, &["containers", "info", &id])).unwrap();
            let want_labels: BTreeMap<String, String> = info["Labels"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            assert_eq!(support::label_map(&got.labels), want_labels, "{what}");
            assert_eq!(
                (got.id.as_str(), got.name.as_str(), got.pid, got.paused),
                (full.as_str(), "testns/job", 0, false),
                "{what}"
            );
            assert_eq!(got.project, "p1");
            assert_eq!(got.image, info["Image"].as_str().unwrap());
            assert_eq!(got.engine.kind.as_str(), "containerd.io");
            // The engine's account of the exit.
            let exit = truth.exit_of(ns, &id);
            assert_eq!(
                status.exit_code.map(i64::from),
                exit["exit_status"].as_i64().or(Some(0)),
                "{what}"
            );
            let exited_at = exited_at_of(&exit["exited_at"]);
            assert!(exited_at.is_some());
            assert_eq!(status.time, exited_at, "{what}");
            assert!(!status.oom, "containerd records no OOM flag on the task");
            // The event stream: the same code and time; OOM as `ctr events` says.
            let ev = loop {
                let ev = next_for(&rx, &full).unwrap_or_else(|| panic!("{what}: no exit event"));
                if matches!(ev.kind, EventKind::Exited { .. }) {
                    break ev;
                }
            };
            let oomed = truth
                .payloads(ns, "/tasks/oom")
                .iter()
                .any(|p| p["container_id"] == id.as_str());
            assert_eq!(
                ev.kind,
                EventKind::Exited {
                    exit_code: status.exit_code,
                    oom: oomed
                },
                "{what}"
            );
            assert_eq!(Some(ev.time), status.time, "{what}");
            let want_code = match what {
                "exit3" => 3,
                _ => 137,
            };
            assert_eq!(status.exit_code, Some(want_code), "{what}");
            if what == "oom" {
                assert!(oomed, "containerd reported no OOM for the OOM-killed task");
            }
            assert!(!mine(&client.list().unwrap(), &tag).contains_key(&full));
            // `ctr tasks rm` reports the same code; then no task: Processless.
            assert_eq!(delete_task(&ctr, ns, &id), want_code, "{what}");
            assert_eq!(
                client.inspect(&full).unwrap_err(),
                Error::Processless { id: full.clone() }
            );
            ctr.run(ns, &["containers", "rm", &id]);
            assert_eq!(
                client.inspect(&full).unwrap_err(),
                Error::NotFound { id: full.clone() }
            );
        }
        client.cancel();
    }

    /// `ctr run -d` of `image` with `sh -c script`; removed on drop.
    fn run_sh<'a>(
        ctr: &'a Ctr,
        ns: &str,
        id: &str,
        image: &str,
        extra: &[&str],
        script: &str,
    ) -> Cleanup<'a> {
        ensure_image_of(ctr, ns, image);
        let mut args = vec!["run", "-d"];
        if let Some(r) = &ctr.runc_root {
            args.extend(["--runc-root", r.as_str()]);
        }
        args.extend([
            "--label",
            "nerdctl/name=job",
            "--label",
            "com.docker.compose.project=p1",
        ]);
        args.extend_from_slice(extra);
        args.extend([image, id, "sh", "-c", script]);
        ctr.run(ns, &args);
        Cleanup {
            ctr,
            ns: ns.into(),
            id: id.into(),
        }
    }

    /// Makes sure `image` exists in namespace `ns` (copied from `default`).
    fn ensure_image_of(ctr: &Ctr, ns: &str, image: &str) {
        static LOCK: Mutex<()> = Mutex::new(());
        let _l = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        if ctr
            .run(ns, &["images", "ls", "-q"])
            .lines()
            .any(|l| l == image)
        {
            return;
        }
        let script = format!(
            "ctr -a '{s}' -n default images export - '{image}' | ctr -a '{s}' -n '{ns}' images import -",
            s = ctr.sock,
        );
        support::run("sh", &["-c", &script]);
    }
}
