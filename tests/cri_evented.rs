//! The CRI client's event-mode choice, its evented path and its containerd-events path
//! against a scripted fake CRI server (a minimal HTTP/2 + gRPC peer on a Unix socket).
#![cfg(feature = "cri")]

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use protobuf::well_known_types::any::Any;
use protobuf::well_known_types::timestamp::Timestamp;
use protobuf::{EnumOrUnknown, Message, MessageField};
use support::grpc_peer::{data, headers, trailers, Peer};
use whalewatcher::cri::api::{
    Container as ProtoContainer, ContainerEventResponse, ContainerEventType, ContainerMetadata,
    ContainerState, ContainerStatus, ContainerStatusRequest, ContainerStatusResponse,
    ListContainersRequest, ListContainersResponse, ListPodSandboxResponse, PodSandbox,
    PodSandboxState, PodSandboxStatus, PodSandboxStatusResponse, VersionResponse,
};
use whalewatcher::cri::containerd_api::{
    Container as NativeContainer, Envelope, GetContainerRequest, GetContainerResponse,
    GetRequest as TaskGetRequest, GetResponse as TaskGetResponse, ListTasksResponse, Process,
    SubscribeRequest, TaskExit, TaskOOM, TaskStart, TaskStatus,
};
use whalewatcher::cri::{CriClient, EventMode};
use whalewatcher::{EngineClient, EventKind, Inspection};

/// How the fake answers `GetContainerEvents` (and which runtime it claims to be).
#[derive(Clone, Copy, PartialEq)]
enum Events {
    /// Streams the scripted events, then ends with status OK.
    Script,
    /// Streams an old backlog event, then the scripted events.
    Backlog,
    /// containerd 1.7: streams scripted native task events on Subscribe.
    Native,
    /// Trailers-only UNIMPLEMENTED (containerd 1.6).
    Unimplemented,
    /// Trailers-only OK: the stream ends at once.
    EndsAtOnce,
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

fn event(id: &str, t: ContainerEventType, exit: Option<i32>) -> Vec<u8> {
    event_at(id, t, exit, now_nanos())
}

fn event_at(id: &str, t: ContainerEventType, exit: Option<i32>, created_at: i64) -> Vec<u8> {
    let mut e = ContainerEventResponse::new();
    e.container_id = id.into();
    e.container_event_type = EnumOrUnknown::new(t);
    e.created_at = created_at;
    if let Some(code) = exit {
        let mut s = ContainerStatus::new();
        s.id = id.into();
        s.finished_at = 1_700_000_000_000_000_001;
        s.exit_code = code;
        e.containers_statuses.push(s);
    }
    e.write_to_bytes().unwrap()
}

fn script() -> Vec<Vec<u8>> {
    use ContainerEventType::*;
    vec![
        event("a", CONTAINER_CREATED_EVENT, None),
        event("a", CONTAINER_STARTED_EVENT, None),
        event("a", CONTAINER_STOPPED_EVENT, Some(3)),
        event("a", CONTAINER_DELETED_EVENT, None),
        event("c", CONTAINER_DELETED_EVENT, None),
    ]
}

fn envelope<M: Message>(ns: &str, m: &M) -> Vec<u8> {
    let mut e = Envelope::new();
    e.namespace = ns.into();
    e.topic = "/tasks/x".into();
    let mut a = Any::new();
    a.type_url = format!("types.containerd.io/containerd.events.{}", M::NAME);
    a.value = m.write_to_bytes().unwrap();
    e.event = MessageField::some(a);
    let mut ts = Timestamp::new();
    ts.seconds = 1_700_000_000;
    e.timestamp = MessageField::some(ts);
    e.write_to_bytes().unwrap()
}

fn task_start(id: &str) -> TaskStart {
    let mut m = TaskStart::new();
    m.container_id = id.into();
    m.pid = 42;
    m
}

fn task_exit(cid: &str, id: &str, status: u32) -> TaskExit {
    let mut m = TaskExit::new();
    m.container_id = cid.into();
    m.id = id.into();
    m.exit_status = status;
    m
}

/// containerd 1.7's task events: a CRI container "c1" and sandbox "s1" start (their CRI
/// status lags behind), an OOM, an exec's exit, c1's exit; "x" of another namespace and
/// "plain" (no CRI container) start too.
fn native_script() -> Vec<Vec<u8>> {
    let mut oom = TaskOOM::new();
    oom.container_id = "c1".into();
    vec![
        envelope("default", &task_start("x")),
        envelope("k8s.io", &task_start("plain")),
        envelope("k8s.io", &task_start("s1")),
        envelope("k8s.io", &task_start("c1")),
        envelope("k8s.io", &oom),
        envelope("k8s.io", &task_exit("c1", "exec1", 0)),
        envelope("k8s.io", &task_exit("c1", "c1", 137)),
    ]
}

/// One fake server: how it answers, and how often it answered a status call by id.
struct Fake {
    mode: Events,
    looks: Mutex<HashMap<String, u32>>,
}

impl Fake {
    /// Counts a status look at `id`; the number of earlier looks.
    fn look(&self, id: &str) -> u32 {
        let mut l = self.looks.lock().unwrap();
        let n = l.entry(id.to_string()).or_default();
        *n += 1;
        *n - 1
    }
}

/// A verbose status `info` map with `pid`.
fn info(pid: u32) -> HashMap<String, String> {
    HashMap::from([("info".to_string(), format!(r#"{{"pid": {pid}}}"#))])
}

/// A CRI container `id` of sandbox `s1` (for ListContainers).
fn cri_container(id: &str) -> ProtoContainer {
    let mut c = ProtoContainer::new();
    c.id = id.into();
    c.pod_sandbox_id = "s1".into();
    c.state = EnumOrUnknown::new(ContainerState::CONTAINER_RUNNING);
    c
}

/// The request message of a unary call (one gRPC message in `body`).
fn request<M: Message>(body: &[u8]) -> M {
    M::parse_from_bytes(&body[5..]).unwrap()
}

fn answer(
    s: &mut UnixStream,
    stream: u32,
    path: &str,
    body: &[u8],
    fake: &Fake,
) -> std::io::Result<()> {
    let mode = fake.mode;
    if path.ends_with("/GetContainerEvents") {
        match mode {
            Events::Unimplemented => s.write_all(&headers(stream, Some("12")).encode()),
            Events::EndsAtOnce => s.write_all(&headers(stream, Some("0")).encode()),
            Events::Native => panic!("the containerd-events mode asked for CRI events"),
            Events::Script | Events::Backlog => {
                s.write_all(&headers(stream, None).encode())?;
                if mode == Events::Backlog {
                    // Older than the stream: a backlog the listing already reflects.
                    let old = event_at(
                        "old",
                        ContainerEventType::CONTAINER_STARTED_EVENT,
                        None,
                        now_nanos() - 60_000_000_000,
                    );
                    s.write_all(&data(stream, &old).encode())?;
                }
                for m in script() {
                    s.write_all(&data(stream, &m).encode())?;
                }
                s.write_all(&trailers(stream, "0").encode())
            }
        }
    } else if path.ends_with("/Subscribe") {
        let req: SubscribeRequest = request(body);
        assert!(req
            .filters
            .iter()
            .all(|f| f.contains(r#"namespace=="k8s.io""#)));
        s.write_all(&headers(stream, None).encode())?;
        for m in native_script() {
            s.write_all(&data(stream, &m).encode())?;
        }
        s.write_all(&trailers(stream, "0").encode())
    } else {
        let body = if path.ends_with("/Version") {
            let mut v = VersionResponse::new();
            if mode == Events::Native {
                v.runtime_name = "containerd".into();
                v.runtime_version = "v1.7.24".into();
            } else {
                v.runtime_name = "fake".into();
                v.runtime_version = "1.0".into();
            }
            v.write_to_bytes().unwrap()
        } else if path.ends_with("/Containers/Get") {
            let req: GetContainerRequest = request(body);
            let mut c = NativeContainer::new();
            c.id = req.id.clone();
            let kind = match req.id.as_str() {
                "c1" | "run" | "late" | "gone" => Some("container"),
                "s1" => Some("sandbox"),
                _ => None,
            };
            if let Some(k) = kind {
                c.labels.insert("io.cri-containerd.kind".into(), k.into());
            }
            let mut r = GetContainerResponse::new();
            r.container = MessageField::some(c);
            r.write_to_bytes().unwrap()
        } else if path.ends_with("/ContainerStatus") {
            let req: ContainerStatusRequest = request(body);
            let id = req.container_id;
            // "c1" and "late" lag behind their tasks: created for the first two looks.
            let lags = id == "c1" || id == "late";
            let mut st = ContainerStatus::new();
            st.id = id.clone();
            let mut meta = ContainerMetadata::new();
            meta.name = format!("name-{id}");
            st.metadata = MessageField::some(meta);
            st.state = EnumOrUnknown::new(if lags && fake.look(&id) < 2 {
                ContainerState::CONTAINER_CREATED
            } else {
                ContainerState::CONTAINER_RUNNING
            });
            // "gone" ran out of memory: its CRI status records the exit after one look.
            if id == "gone" && fake.look(&id) >= 1 {
                st.state = EnumOrUnknown::new(ContainerState::CONTAINER_EXITED);
                st.exit_code = 137;
                st.finished_at = 1_700_000_000_000_000_000;
                st.reason = "OOMKilled".into();
            }
            let mut r = ContainerStatusResponse::new();
            r.status = MessageField::some(st);
            r.info = info(7);
            r.write_to_bytes().unwrap()
        } else if path.ends_with("/PodSandboxStatus") {
            let mut st = PodSandboxStatus::new();
            st.id = "s1".into();
            st.state = EnumOrUnknown::new(PodSandboxState::SANDBOX_READY);
            let mut r = PodSandboxStatusResponse::new();
            r.status = MessageField::some(st);
            r.info = info(6);
            r.write_to_bytes().unwrap()
        } else if path.ends_with("/ListPodSandbox") && mode == Events::Native {
            let mut sb = PodSandbox::new();
            sb.id = "s1".into();
            sb.state = EnumOrUnknown::new(PodSandboxState::SANDBOX_READY);
            let mut r = ListPodSandboxResponse::new();
            r.items.push(sb);
            r.write_to_bytes().unwrap()
        } else if path.ends_with("/ListContainers") && mode == Events::Native {
            // Running per CRI: "run", and "gone" whose task has ended already; "late"
            // once it is asked for by id.
            let req: ListContainersRequest = request(body);
            let mut r = ListContainersResponse::new();
            let id = req
                .filter
                .as_ref()
                .map(|f| f.id.clone())
                .unwrap_or_default();
            if id.is_empty() {
                r.containers = vec![cri_container("run"), cri_container("gone")];
            } else if ["late", "run", "gone"].contains(&id.as_str()) {
                r.containers = vec![cri_container(&id)];
            }
            r.write_to_bytes().unwrap()
        } else if path.ends_with("/Tasks/Get") {
            // "run" runs; "gone" has ended with 137 (not yet deleted); others: no task.
            let req: TaskGetRequest = request(body);
            let mut r = TaskGetResponse::new();
            let mut p = Process::new();
            p.id = req.container_id.clone();
            match req.container_id.as_str() {
                "run" => p.status = EnumOrUnknown::new(TaskStatus::RUNNING),
                "gone" => {
                    p.status = EnumOrUnknown::new(TaskStatus::STOPPED);
                    p.exit_status = 137;
                }
                _ => {}
            }
            if !p.status.enum_value_or_default().eq(&TaskStatus::UNKNOWN) {
                r.process = MessageField::some(p);
            }
            r.write_to_bytes().unwrap()
        } else if path.ends_with("/Tasks/List") {
            let mut r = ListTasksResponse::new();
            for (id, status) in [
                ("s1", TaskStatus::RUNNING),
                ("run", TaskStatus::RUNNING),
                ("late", TaskStatus::RUNNING),
                ("other", TaskStatus::RUNNING),
                ("x", TaskStatus::STOPPED),
            ] {
                let mut p = Process::new();
                p.id = id.into();
                p.status = EnumOrUnknown::new(status);
                r.tasks.push(p);
            }
            r.write_to_bytes().unwrap()
        } else {
            // ListPodSandbox, ListContainers: empty responses.
            Vec::new()
        };
        s.write_all(&headers(stream, None).encode())?;
        s.write_all(&data(stream, &body).encode())?;
        s.write_all(&trailers(stream, "0").encode())
    }
}

/// The methods the fake answers, found in a request's header block.
const METHODS: [&str; 10] = [
    "GetContainerEvents",
    "Version",
    "ListPodSandbox",
    "ListContainers",
    "ContainerStatus",
    "PodSandboxStatus",
    "Subscribe",
    "Containers/Get",
    "Tasks/List",
    "Tasks/Get",
];

fn serve(mode: Events) -> (CriClient, Peer) {
    let (cri, peer, _) = serve_fake(mode);
    (cri, peer)
}

fn serve_fake(mode: Events) -> (CriClient, Peer, Arc<Fake>) {
    let fake = Arc::new(Fake {
        mode,
        looks: Mutex::new(HashMap::new()),
    });
    let f2 = fake.clone();
    let peer = Peer::serve("cri-fake", move |s, r| {
        let m = METHODS.iter().find(|m| r.mentions(m)).unwrap_or(&"Other");
        answer(s, r.stream, &format!("/fake/{m}"), &r.body, &f2)
    });
    (
        CriClient::new(peer.path().to_str())
            .unwrap()
            .with_relist_interval(Duration::from_millis(10)),
        peer,
        fake,
    )
}

fn collect(cri: &CriClient) -> Vec<(String, EventKind)> {
    let mut ev = cri.events().expect("events");
    let mut got = Vec::new();
    while let Some(e) = ev.next_event().expect("event") {
        got.push((e.id, e.kind));
    }
    got
}

fn scripted() -> Vec<(String, EventKind)> {
    vec![
        ("a".to_string(), EventKind::Started),
        (
            "a".to_string(),
            EventKind::Exited {
                exit_code: Some(3),
                oom: false,
            },
        ),
        (
            "c".to_string(),
            EventKind::Exited {
                exit_code: None,
                oom: false,
            },
        ),
    ]
}

#[test]
fn evented_stream_maps_events_once_each() {
    let (cri, dir) = serve(Events::Script);
    // Decided from the Version answer: no probe, no event stream needed.
    assert_eq!(cri.info().unwrap().mode, EventMode::Evented.as_str());
    assert_eq!(cri.info().unwrap().version, "fake 1.0");
    assert_eq!(collect(&cri), scripted());
    // The mode is kept: the next stream is evented too.
    assert!(cri.events().is_ok());
    assert_eq!(cri.info().unwrap().mode, EventMode::Evented.as_str());
    drop(dir);
}

#[test]
fn a_backlog_older_than_the_stream_is_dropped() {
    let (cri, dir) = serve(Events::Backlog);
    assert_eq!(collect(&cri), scripted());
    drop(dir);
}

#[test]
fn unimplemented_or_ended_events_fall_back_to_relisting() {
    for mode in [Events::Unimplemented, Events::EndsAtOnce] {
        let (cri, dir) = serve(mode);
        assert_eq!(cri.info().unwrap().mode, EventMode::Evented.as_str());
        // The refusal ends the stream (the watcher reconnects) and switches the mode.
        let mut ev = cri.events().expect("events");
        assert_eq!(ev.next_event(), Ok(None));
        assert_eq!(cri.info().unwrap().mode, EventMode::Relist.as_str());
        let _relisting = cri.events().expect("events");
        assert_eq!(cri.list().unwrap(), vec![]);
        drop(dir);
    }
}

#[test]
fn containerd_before_2_gets_its_native_task_events() {
    let (cri, dir, fake) = serve_fake(Events::Native);
    assert_eq!(
        cri.info().unwrap().mode,
        EventMode::ContainerdEvents.as_str()
    );
    let cri = Arc::new(cri);
    let got = collect(&cri);
    assert_eq!(
        got,
        vec![
            ("s1".to_string(), EventKind::Started),
            ("c1".to_string(), EventKind::Started),
            (
                "c1".to_string(),
                EventKind::Exited {
                    exit_code: Some(137),
                    oom: true
                }
            ),
        ]
    );
    // c1's start was reported only once its CRI status said running.
    assert!(fake.look("c1") >= 3);
    // A forced mode is kept.
    let (cri, dir2) = serve(Events::Script);
    let cri = cri.with_event_mode(EventMode::Relist);
    assert_eq!(cri.info().unwrap().mode, EventMode::Relist.as_str());
    drop(dir);
    drop(dir2);
}

#[test]
fn containerd_events_listings_follow_the_tasks() {
    let (cri, dir, fake) = serve_fake(Events::Native);
    assert_eq!(
        cri.info().unwrap().mode,
        EventMode::ContainerdEvents.as_str()
    );
    let mut ids: Vec<String> = cri.list().unwrap().iter().map(|c| c.id.clone()).collect();
    ids.sort();
    // "gone": CRI still says running, but its task has ended: left out. "late": its task
    // runs, CRI catches up after two looks: listed. "other": no CRI container.
    assert_eq!(ids, vec!["late", "run", "s1"]);
    assert!(fake.look("late") >= 3);
    // inspect agrees: "gone" has exited (with the exit the CRI status records a moment
    // after its task ended), "run" is alive.
    assert!(matches!(cri.inspect("run").unwrap(), Inspection::Alive(c) if c.pid == 7));
    match cri.inspect("gone").unwrap() {
        Inspection::Exited(c, st) => {
            assert_eq!(
                (c.id.as_str(), c.pid, c.name.as_str()),
                ("gone", 0, "name-gone")
            );
            assert_eq!(st.exit_code, Some(137));
            assert!(st.oom);
            assert!(st.time.is_some());
        }
        other => panic!("{other:?}"),
    }
    // Forced relisting does not consult the tasks: CRI's word only.
    let (cri, dir2) = serve(Events::Native);
    let cri = cri.with_event_mode(EventMode::Relist);
    let mut ids: Vec<String> = cri.list().unwrap().iter().map(|c| c.id.clone()).collect();
    ids.sort();
    assert_eq!(ids, vec!["gone", "run", "s1"]);
    drop(dir);
    drop(dir2);
}
