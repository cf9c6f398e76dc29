//! Tests shared by tests/docker.rs and tests/podman.rs: the same Docker API, checked
//! against each engine's own CLI as ground truth.

use std::collections::{BTreeMap, HashSet};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;
use whalewatcher::container::PRIVILEGED_LABEL;
use whalewatcher::docker::DockerClient;
use whalewatcher::{EngineClient, Error, EventKind, RawEvent};

use crate::support;
use crate::support::cli::{image, plain_image, Cli};
use crate::support::watch::ExitTruth;

/// What the ground truth says an alive container looks like.
#[derive(Debug, PartialEq, Eq)]
struct Truth {
    id: String,
    name: String,
    pid: u32,
    paused: bool,
    project: String,
    image: String,
    labels: BTreeMap<String, String>,
}

impl Truth {
    /// From `inspect` JSON.
    fn of_inspect(v: &Value) -> Truth {
        let labels = support::cli::docker_labels(v);
        Truth {
            id: v["Id"].as_str().unwrap().to_string(),
            name: v["Name"]
                .as_str()
                .unwrap()
                .trim_start_matches('/')
                .to_string(),
            pid: v["State"]["Pid"].as_u64().unwrap_or(0) as u32,
            paused: v["State"]["Paused"].as_bool().unwrap_or(false),
            project: labels
                .get("com.docker.compose.project")
                .cloned()
                .unwrap_or_default(),
            image: v["Config"]["Image"]
                .as_str()
                .or(v["ImageName"].as_str())
                .unwrap_or("")
                .to_string(),
            labels,
        }
    }

    /// What the client says about a container, in the same shape.
    fn of(c: &whalewatcher::Container) -> Truth {
        Truth {
            id: c.id.clone(),
            name: c.name.clone(),
            pid: c.pid,
            paused: c.paused,
            project: c.project.clone(),
            image: c.image.clone(),
            labels: support::label_map(&c.labels),
        }
    }
}

/// The truth about an alive container; `None` for one without a process.
fn truth(v: &Value) -> Option<Truth> {
    Some(Truth::of_inspect(v)).filter(|t| t.pid != 0)
}

/// `run` arguments of a container that the OOM killer ends: a 32 MB limit and a shell
/// that needs more.
fn oom_run_args<'a>(name: &'a str, plain_img: &'a str) -> Vec<&'a str> {
    vec![
        "run",
        "--network",
        "none",
        "--name",
        name,
        // Not less: runc 1.1.15 (trixie) charges ~11-13 MB to the container while it
        // starts, and then fails half the time to set an 8 MB limit ("unable to set
        // memory limit to 8388608 (current usage: 13107200 ...)"): never started.
        "-m",
        "32m",
        "--memory-swap",
        "32m",
        plain_img,
        "sh",
        "-c",
        "x=$(head -c 200000000 /dev/zero | tr '\\0' a)",
    ]
}

/// list() equals the ground truth: running, paused, compose-labelled and privileged
/// containers are there; created-but-never-started and exited ones are not.
pub fn list_equals_ground_truth(e: &Cli) {
    let prefix = e.name("x");
    let (plain, paused, composed, privileged, created, exited) = (
        format!("{prefix}-plain"),
        format!("{prefix}-paused"),
        format!("{prefix}-composed"),
        format!("{prefix}-priv"),
        format!("{prefix}-created"),
        format!("{prefix}-exited"),
    );
    for n in [&plain, &paused, &composed, &privileged, &created, &exited] {
        e.name_as(n);
    }
    let project = format!("{prefix}-proj");
    let plabel = format!("com.docker.compose.project={project}");
    let mut ids = vec![
        e.start(&plain, &[]),
        e.start(&paused, &["--label", "tier=db"]),
        e.start(
            &composed,
            &[
                "--label",
                &plabel,
                "--label",
                "com.docker.compose.service=web",
            ],
        ),
    ];
    // Privileged containers need capabilities this machine may not grant.
    let img = image();
    let priv_ok = e
        .try_run(&[
            "run",
            "-d",
            "--network",
            "none",
            "--privileged",
            "--name",
            &privileged,
            &img,
        ])
        .is_ok();
    if !priv_ok {
        eprintln!("\n*** NOTE: cannot run a --privileged container here; its label is checked by unit tests only ***\n");
        e.run_quiet(&["rm", "-f", &privileged]);
    } else {
        ids.push(
            e.run(&["inspect", "--format", "{{.Id}}", &privileged])
                .trim()
                .to_string(),
        );
    }
    e.run(&["pause", &paused]);
    ids.push(
        e.run(&["create", "--network", "none", "--name", &created, &img])
            .trim()
            .to_string(),
    );
    let plain_img = plain_image();
    e.run(&[
        "run",
        "--network",
        "none",
        "--name",
        &exited,
        &plain_img,
        "sh",
        "-c",
        "exit 0",
    ]);
    ids.push(
        e.run(&["inspect", "--format", "{{.Id}}", &exited])
            .trim()
            .to_string(),
    );

    let client = e.client();
    let listed = client.list().unwrap();
    let truths: Vec<Truth> = e.inspect(&ids).iter().filter_map(truth).collect();
    let alive_n = if priv_ok { 4 } else { 3 };
    assert_eq!(truths.len(), alive_n, "ground truth: {alive_n} alive");
    let ours: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let mut got: Vec<Truth> = listed
        .iter()
        .filter(|c| ours.contains(c.id.as_str()))
        .map(|c| {
            assert_eq!(c.engine.kind, e.kind());
            assert!(!c.engine.id.is_empty());
            assert!(c.started_at.is_some(), "{} has no start time", c.name);
            Truth::of(c)
        })
        .collect();
    let mut want = truths;
    got.sort_by(|a, b| a.name.cmp(&b.name));
    want.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(got, want);
    let by_name = |n: &str| got.iter().find(|t| t.name == n).unwrap();
    assert!(by_name(&paused).paused);
    assert_eq!(by_name(&composed).project, project);
    if priv_ok {
        assert!(by_name(&privileged).labels.contains_key(PRIVILEGED_LABEL));
    }
    assert!(!by_name(&plain).labels.contains_key(PRIVILEGED_LABEL));

    // Everything the engine itself calls running or paused is listed, nothing else.
    let alive: HashSet<String> = e
        .run(crate::support::cli::PS_ALIVE)
        .lines()
        .map(str::to_string)
        .collect();
    let listed_ids: HashSet<String> = client
        .list()
        .unwrap()
        .iter()
        .map(|c| c.id.clone())
        .collect();
    let (created_id, exited_id) = (&ids[ids.len() - 2], &ids[ids.len() - 1]);
    for id in ids.iter().filter(|i| *i != created_id && *i != exited_id) {
        assert!(alive.contains(id) && listed_ids.contains(id));
    }
    for id in [created_id, exited_id] {
        assert!(!listed_ids.contains(id), "processless {id} listed");
    }
}

/// inspect: by id, unknown id → NotFound, killed → Exited (137), created → Processless,
/// removed → NotFound.
pub fn inspect_cases(e: &Cli) {
    let name = e.name("insp");
    let id = e.start(&name, &["--label", "a=b"]);
    let c = e.client();
    let got = c.inspect(&id).unwrap().alive().expect("alive");
    let t = truth(&e.inspect(std::slice::from_ref(&id))[0]).unwrap();
    assert_eq!(
        (got.id.as_str(), got.name.as_str(), got.pid),
        (t.id.as_str(), t.name.as_str(), t.pid)
    );
    assert_eq!(got.labels.get("a"), Some("b"));
    let unknown = "0000000000000000000000000000000000000000000000000000000000000bad";
    assert_eq!(
        c.inspect(unknown).unwrap_err(),
        Error::NotFound { id: unknown.into() }
    );
    assert!(matches!(
        c.inspect("../../_ping"),
        Err(Error::NotFound { .. })
    ));
    e.run(&["kill", &id]);
    wait_exited(e, &id);
    let (got, status) = exited_matches_truth(e, &c, &id);
    assert_eq!(status.exit_code, Some(137));
    assert_eq!(got.labels.get("a"), Some("b"));
    // Created, never started: no process and no exit.
    let created = e.name("created");
    let img = image();
    let cid = e
        .run(&["create", "--network", "none", "--name", &created, &img])
        .trim()
        .to_string();
    assert_eq!(
        c.inspect(&cid).unwrap_err(),
        Error::Processless { id: cid.clone() }
    );
    // Removed: unknown.
    e.run(&["rm", &id]);
    assert_eq!(
        c.inspect(&id).unwrap_err(),
        Error::NotFound { id: id.clone() }
    );
}

/// Waits (bounded) until the engine says the container's process is gone.
fn wait_exited(e: &Cli, id: &str) {
    support::wait_until(Duration::from_secs(30), "container exited", || {
        let v = &e.inspect(&[id.to_string()])[0];
        v["State"]["Pid"].as_u64() == Some(0) && v["State"]["Status"] == "exited"
    });
}

/// `client.inspect` of an exited container says `Exited` with everything `inspect` on
/// the CLI says: name, labels, project, image, pid 0, exit code, OOM flag, exit time.
pub fn exited_matches_truth(
    e: &Cli,
    c: &DockerClient,
    id: &str,
) -> (whalewatcher::Container, whalewatcher::ExitStatus) {
    let v = &e.inspect(&[id.to_string()])[0];
    let (got, status) = match c.inspect(id) {
        Ok(whalewatcher::Inspection::Exited(got, status)) => (got, status),
        other => panic!("{id}: expected Exited, got {other:?}"),
    };
    let want = ExitTruth::from_inspect(v);
    let have = ExitTruth {
        id: got.id.clone(),
        name: got.name.clone(),
        project: got.project.clone(),
        labels: support::label_map(&got.labels),
        image: Some(got.image.clone()),
        exit_code: status.exit_code,
        oom: status.oom,
    };
    assert_eq!(
        have,
        ExitTruth {
            image: Some(want.image.clone().unwrap_or_default()),
            ..want
        },
        "{id}: name, labels, project, image, exit code and OOM flag"
    );
    assert_eq!((got.pid, got.paused), (0, false), "{id}");
    assert_eq!(got.engine.kind, e.kind());
    assert!(!got.engine.id.is_empty());
    let state = &v["State"];
    // The CLI's FinishedAt: RFC 3339 in JSON (Docker and Podman alike).
    let finished = state["FinishedAt"].as_str().unwrap();
    let finished = whalewatcher::docker::parse_rfc3339(finished).unwrap();
    assert!(finished.is_some(), "the engine knows when {id} ended");
    assert_eq!(status.time, finished, "exit time of {id}");
    (got, status)
}

/// inspect of containers that exited on their own (`exit 3`), were killed (137) or
/// OOM-killed: `Exited` with the engine's exit code, OOM flag and exit time; the listing
/// still skips them.
pub fn inspect_exits(e: &Cli) {
    let c = e.client();
    let plain_img = plain_image();
    let name = e.name("exit3");
    let project = format!("{name}-proj");
    let plabel = format!("com.docker.compose.project={project}");
    let id = e
        .run(&[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            &name,
            "--label",
            &plabel,
            "--label",
            "job=once",
            &plain_img,
            "sh",
            "-c",
            "exit 3",
        ])
        .trim()
        .to_string();
    wait_exited(e, &id);
    let (got, status) = exited_matches_truth(e, &c, &id);
    assert_eq!(status.exit_code, Some(3));
    assert!(!status.oom);
    assert_eq!(got.project, project);
    assert_eq!(got.labels.get("job"), Some("once"));
    assert!(got.started_at.is_some());
    assert!(
        !c.list().unwrap().iter().any(|l| l.id == id),
        "exited {id} listed"
    );

    let killed = e.name("killed");
    let kid = e.start(&killed, &[]);
    e.run(&["kill", &kid]);
    wait_exited(e, &kid);
    let (_, status) = exited_matches_truth(e, &c, &kid);
    assert_eq!(status.exit_code, Some(137));
    assert!(
        !c.list().unwrap().iter().any(|l| l.id == kid),
        "exited {kid} listed"
    );

    // OOM: the engine's own flag, whatever it says (podman 4.3 on cgroup v1 never sets
    // it); dockerd must flag at least one of a few tries.
    let mut flagged = false;
    for _ in 0..3 {
        let n = e.name("oom");
        let mut args = oom_run_args(&n, &plain_img);
        args.insert(1, "-d");
        let oid = e.run(&args).trim().to_string();
        wait_exited(e, &oid);
        let (_, status) = exited_matches_truth(e, &c, &oid);
        assert_eq!(status.exit_code, Some(137), "OOM-killed {n}");
        if status.oom {
            flagged = true;
            break;
        }
        if e.cli == "podman" {
            break;
        }
    }
    if e.cli == "docker" {
        assert!(flagged, "dockerd flagged no OOM kill");
    } else {
        eprintln!("podman's OOMKilled for an OOM-killed container: {flagged}");
    }
}

/// info: type, id and version match the CLI's.
pub fn info_matches(e: &Cli) {
    let client = e.client();
    let info = client.info().unwrap();
    assert_eq!(info.kind, e.kind());
    // The negotiated API version: the server's own (its /_ping header, read here without
    // the library), capped at the newest the client knows.
    let server = server_api_version(&e.url);
    assert_eq!(
        client.api_version(),
        Some(server.min(whalewatcher::docker::API_VERSION)),
        "server API {server:?}"
    );
    let truth: Value = serde_json::from_str(&e.run(&["info", "--format", "{{json .}}"])).unwrap();
    let (id, version) = if e.cli == "podman" {
        // podman's own info has no engine ID; the compat /info invents a UUID per start.
        (
            None,
            truth["version"]["Version"].as_str().map(str::to_string),
        )
    } else {
        (
            truth["ID"].as_str().map(str::to_string),
            truth["ServerVersion"].as_str().map(str::to_string),
        )
    };
    if let Some(id) = id {
        assert_eq!(info.id, id);
    }
    assert!(!info.id.is_empty());
    assert_eq!(Some(info.version), version);
    assert_eq!(info.api_path, e.url);
}

/// The `API-Version` header of the engine's `GET /_ping` answer, over a plain socket.
fn server_api_version(url: &str) -> (u32, u32) {
    use std::io::{Read, Write};
    let path = url.strip_prefix("unix://").expect("a unix:// endpoint");
    let mut s = std::os::unix::net::UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let v = answer
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("api-version")
                .then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no API-Version in {answer:?}"));
    let (a, b) = v.split_once('.').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

/// A live event stream read on its own thread.
pub struct Watch {
    pub client: std::sync::Arc<DockerClient>,
    rx: mpsc::Receiver<Result<RawEvent, Error>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    /// Opens the stream and makes sure the engine delivers to it: the engine may subscribe
    /// us only after sending the response head, so start sentinels until one's start
    /// event arrives.
    pub fn open(e: &Cli) -> Watch {
        let client = std::sync::Arc::new(e.client());
        let mut stream = client.events().unwrap();
        let (tx, rx) = mpsc::channel::<Result<RawEvent, Error>>();
        let reader = std::thread::spawn(move || loop {
            let r = stream.next_event();
            let end = !matches!(r, Ok(Some(_)));
            let _ = tx.send(r.map(|o| o.expect("the engine ended the event stream")));
            if end {
                return;
            }
        });
        let w = Watch {
            client,
            rx,
            reader: Some(reader),
        };
        let plain_img = plain_image();
        for _ in 0..10 {
            let n = e.name("sentinel");
            let id = e.run(&[
                "run",
                "-d",
                "--network",
                "none",
                "--name",
                &n,
                &plain_img,
                "true",
            ]);
            let id = id.trim().to_string();
            let end = Instant::now() + Duration::from_secs(3);
            while Instant::now() < end {
                if let Some(ev) = w.next(Duration::from_millis(100)) {
                    if ev.id == id && ev.kind == EventKind::Started {
                        return w;
                    }
                }
            }
        }
        panic!("never saw a sentinel's start event");
    }

    /// The next event, or `None` after `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<RawEvent> {
        match self.rx.recv_timeout(timeout) {
            Ok(Ok(ev)) => Some(ev),
            Ok(Err(err)) => panic!("event stream failed: {err}"),
            Err(_) => None,
        }
    }

    /// Runs a marker container and collects events until its exit: then everything the
    /// engine sent before has arrived too.
    pub fn collect_until_marker(&self, e: &Cli) -> Vec<RawEvent> {
        let plain_img = plain_image();
        let z = e.name("marker");
        e.run_quiet(&["run", "--network", "none", "--name", &z, &plain_img, "true"]);
        let zid = e
            .run(&["inspect", "--format", "{{.Id}}", &z])
            .trim()
            .to_string();
        let mut seen: Vec<RawEvent> = Vec::new();
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            assert!(Instant::now() < end, "timed out; saw {seen:#?}");
            let Some(ev) = self.next(Duration::from_millis(200)) else {
                continue;
            };
            let done = ev.id == zid && matches!(ev.kind, EventKind::Exited { .. });
            seen.push(ev);
            if done {
                return seen;
            }
        }
    }

    /// Cancels the client; the blocked reader must end with `Cancelled` promptly.
    pub fn cancel(mut self) {
        let t0 = Instant::now();
        self.client.cancel();
        loop {
            match self.rx.recv_timeout(Duration::from_secs(5)) {
                Ok(Err(Error::Cancelled)) => break,
                Ok(Ok(_)) => continue,
                other => panic!("expected Cancelled after cancel, got {other:?}"),
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(5));
        self.reader.take().unwrap().join().unwrap();
        assert!(matches!(self.client.list(), Err(Error::Cancelled)));
    }
}

fn kinds_of(seen: &[RawEvent], id: &str) -> Vec<EventKind> {
    seen.iter().filter(|e| e.id == id).map(|e| e.kind).collect()
}

/// Events: start, pause, unpause, kill (137), `exit 3`; each once, in order, right ids.
pub fn lifecycle_events(e: &Cli) {
    let w = Watch::open(e);
    let plain_img = plain_image();
    let x = e.name("life");
    let project = format!("{x}-proj");
    let xid = e.start(
        &x,
        &["--label", &format!("com.docker.compose.project={project}")],
    );
    e.run(&["pause", &x]);
    e.run(&["unpause", &x]);
    e.run(&["kill", &x]);
    let y = e.name("exit3");
    e.run_quiet(&[
        "run",
        "--network",
        "none",
        "--name",
        &y,
        &plain_img,
        "sh",
        "-c",
        "exit 3",
    ]);
    let yid = e
        .run(&["inspect", "--format", "{{.Id}}", &y])
        .trim()
        .to_string();
    // `run --rm`: gone before anyone can inspect it; its exit event tells who it was.
    let r = e.name("rm");
    let rm_project = format!("{r}-proj");
    let rid = e
        .run(&[
            "run",
            "-d",
            "--rm",
            "--network",
            "none",
            "--name",
            &r,
            "--label",
            &format!("com.docker.compose.project={rm_project}"),
            "--label",
            "job=once",
            &plain_img,
            "sh",
            "-c",
            "exit 3",
        ])
        .trim()
        .to_string();
    let seen = w.collect_until_marker(e);
    let rm_exit = seen
        .iter()
        .find(|ev| ev.id == rid && matches!(ev.kind, EventKind::Exited { .. }))
        .unwrap_or_else(|| panic!("no exit of {r}: {seen:#?}"));
    assert_eq!(
        rm_exit.kind,
        EventKind::Exited {
            exit_code: Some(3),
            oom: false
        }
    );
    let d = rm_exit.details.as_deref().expect("details on the exit");
    assert_eq!(d.name, r);
    assert!(d.image.ends_with(&plain_img), "{d:?}");
    assert_eq!(
        support::label_map(&d.labels),
        BTreeMap::from([
            ("com.docker.compose.project".to_string(), rm_project),
            ("job".to_string(), "once".to_string()),
        ])
    );
    let xd = seen
        .iter()
        .find(|ev| ev.id == xid && matches!(ev.kind, EventKind::Exited { .. }))
        .and_then(|ev| ev.details.as_deref())
        .expect("details on x's exit");
    assert_eq!(xd.name, x);
    assert_eq!(
        xd.labels.get("com.docker.compose.project"),
        Some(project.as_str())
    );
    assert!(seen
        .iter()
        .filter(|ev| ev.kind == EventKind::Started)
        .all(|ev| ev.details.is_none()));
    assert_eq!(
        kinds_of(&seen, &xid),
        vec![
            EventKind::Started,
            EventKind::Paused,
            EventKind::Unpaused,
            EventKind::Exited {
                exit_code: Some(137),
                oom: false
            },
        ]
    );
    assert_eq!(
        kinds_of(&seen, &yid),
        vec![
            EventKind::Started,
            EventKind::Exited {
                exit_code: Some(3),
                oom: false
            },
        ]
    );
    let xev: Vec<&RawEvent> = seen.iter().filter(|ev| ev.id == xid).collect();
    assert!(xev
        .iter()
        .all(|ev| ev.project.as_deref() == Some(project.as_str())));
    assert!(xev.windows(2).all(|w| w[0].time <= w[1].time));
    let now = std::time::SystemTime::now();
    assert!(xev.iter().all(|ev| now
        .duration_since(ev.time)
        .is_ok_and(|d| d < Duration::from_secs(120))));
    w.cancel();
}

/// A container killed by the OOM killer exits with `oom: true` (Docker sends `oom`
/// before `die`); the flag agrees with `State.OOMKilled`. (dockerd on cgroup v1 sometimes
/// misses an OOM kill itself; then it says neither, and we try another container.)
pub fn oom_exit_is_flagged(e: &Cli) {
    let w = Watch::open(e);
    let plain_img = plain_image();
    let mut flagged = false;
    for _ in 0..5 {
        let n = e.name("oom");
        e.run_quiet(&oom_run_args(&n, &plain_img));
        let id = e
            .run(&["inspect", "--format", "{{.Id}}", &n])
            .trim()
            .to_string();
        let truth = e.run(&["inspect", "--format", "{{.State.OOMKilled}}", &n]);
        let oom = truth.trim() == "true";
        let seen = w.collect_until_marker(e);
        assert_eq!(
            kinds_of(&seen, &id),
            vec![
                EventKind::Started,
                EventKind::Exited {
                    exit_code: Some(137),
                    oom
                },
            ]
        );
        if oom {
            flagged = true;
            break;
        }
    }
    assert!(
        flagged,
        "no container was OOM-killed according to the engine"
    );
    w.cancel();
}
