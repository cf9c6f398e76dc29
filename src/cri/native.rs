//! containerd's native task events as the CRI event source (containerd before 2.0).
//!
//! containerd 1.6 has no CRI `GetContainerEvents`, and containerd 1.7's hands each CRI
//! event to ONE of its open streams instead of broadcasting it (upstream issue 7318), so
//! any other subscriber (the kubelet's evented PLEG, `crictl events`, a second watcher,
//! or a client that left: its handler lives on until the next event, which it swallows)
//! steals events. containerd's own event service on the same socket
//! (`/containerd.services.events.v1.Events/Subscribe`) broadcasts, so this source
//! subscribes there to the task events of namespace `k8s.io` (where the CRI plugin keeps
//! its containers; a CRI container id or sandbox id IS the containerd container id):
//!
//! - `/tasks/exit` of a container's init process (not of an exec'd process) →
//!   [`EventKind::Exited`] with the task's exit status and exit time; a preceding
//!   `/tasks/oom` sets `oom`.
//! - `/tasks/start` → [`EventKind::Started`], but only for containers the CRI plugin
//!   made (label `io.cri-containerd.kind`), and only once the CRI plugin says so too:
//!   the task starts before the CRI plugin records the container as running (or the
//!   sandbox as ready), so the stream first waits (bounded by [`SETTLE`]) until its CRI
//!   status has caught up. Otherwise the watcher's inspection could find a container
//!   that is still "created".
//! - Pause and resume are not CRI states (CRI lists those containers as running) and are
//!   not subscribed to.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use protobuf::well_known_types::timestamp::Timestamp;
use protobuf::{EnumOrUnknown, Message};

use crate::engine::{EventStream, RawEvent};
use crate::error::{Error, GrpcCode, Result};
use crate::event::EventKind;
use crate::grpc::MessageStream;
use crate::proto::containerd_containers::{GetContainerRequest, GetContainerResponse};
use crate::proto::containerd_events::{Envelope, SubscribeRequest};
use crate::proto::containerd_task_events::{TaskExit, TaskOOM, TaskStart};
use crate::proto::containerd_task_types::Status;
use crate::proto::containerd_tasks::{
    GetRequest, GetResponse, ListTasksRequest, ListTasksResponse,
};
use crate::proto::cri_api::{
    ContainerState, ContainerStatusRequest, ContainerStatusResponse, PodSandboxState,
    PodSandboxStatusRequest, PodSandboxStatusResponse,
};

use super::client::{Rpc, CALL_DEADLINE};
use super::events::{ended, ModeCell};

/// The containerd namespace of the CRI plugin.
pub(crate) const CRI_NAMESPACE: &str = "k8s.io";
/// The label the CRI plugin puts on its containerd containers: `sandbox` or `container`.
pub(crate) const KIND_LABEL: &str = "io.cri-containerd.kind";

const EVENTS_SUBSCRIBE: &str = "/containerd.services.events.v1.Events/Subscribe";
const CONTAINERS_GET: &str = "/containerd.services.containers.v1.Containers/Get";
const TASKS_LIST: &str = "/containerd.services.tasks.v1.Tasks/List";
const TASKS_GET: &str = "/containerd.services.tasks.v1.Tasks/Get";
const NAMESPACE_KEY: &str = "containerd-namespace";

/// The subscribed topics (containerd needs the quotes; unquoted values match nothing).
const TOPICS: [&str; 3] = ["/tasks/start", "/tasks/exit", "/tasks/oom"];

/// How long a start waits for the CRI plugin to catch up before it is reported anyway.
pub(crate) const SETTLE: Duration = Duration::from_secs(3);
/// First and longest pause between two CRI status looks while settling.
const SETTLE_FIRST: Duration = Duration::from_millis(2);
const SETTLE_MAX: Duration = Duration::from_millis(50);

/// How many containers with an OOM but no exit yet we remember.
const MAX_PENDING_OOM: usize = 1024;

/// The subscription filters: each topic, in namespace `k8s.io`.
pub(crate) fn filters() -> Vec<String> {
    TOPICS
        .iter()
        .map(|t| format!(r#"namespace=="{CRI_NAMESPACE}",topic=="{t}""#))
        .collect()
}

/// What an envelope says, as far as we care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Task {
    /// A container's task started.
    Start(String),
    /// A container's init process ended.
    Exit {
        id: String,
        status: u32,
        at: Option<SystemTime>,
    },
    /// The OOM killer hit a container.
    Oom(String),
}

/// True when `type_url` names the protobuf message `full_name`: either bare (containerd
/// 1.6: `containerd.events.TaskExit`) or after a `/` (`types.containerd.io/...`).
fn names(type_url: &str, full_name: &str) -> bool {
    match type_url.strip_suffix(full_name) {
        Some("") => true,
        Some(prefix) => prefix.ends_with('/'),
        None => false,
    }
}

fn parse<M: Message>(value: &[u8]) -> Result<M> {
    M::parse_from_bytes(value).map_err(|e| {
        Error::protocol(
            "protobuf",
            format!("cannot decode containerd event {}: {e}", M::NAME),
        )
    })
}

/// A protobuf timestamp as a time (`None` when unset or out of range).
pub(crate) fn timestamp(ts: Option<&Timestamp>) -> Option<SystemTime> {
    let ts = ts?;
    if ts.seconds <= 0 || !(0..1_000_000_000).contains(&ts.nanos) {
        return None;
    }
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_secs(ts.seconds as u64))?
        .checked_add(Duration::from_nanos(ts.nanos as u64))
}

/// The task event in an envelope of namespace `k8s.io`; `Ok(None)` for anything else
/// (other namespaces, exec'd processes, other types, events without a container id).
pub(crate) fn decode(env: &Envelope) -> Result<Option<Task>> {
    if env.namespace != CRI_NAMESPACE {
        return Ok(None);
    }
    let Some(any) = env.event.as_ref() else {
        return Ok(None);
    };
    let url = any.type_url.as_str();
    let task = if names(url, "containerd.events.TaskStart") {
        let m: TaskStart = parse(&any.value)?;
        Task::Start(m.container_id)
    } else if names(url, "containerd.events.TaskExit") {
        let m: TaskExit = parse(&any.value)?;
        // An exec'd process ended, not the container's init process.
        if !m.id.is_empty() && m.id != m.container_id {
            return Ok(None);
        }
        Task::Exit {
            at: timestamp(m.exited_at.as_ref()).or_else(|| timestamp(env.timestamp.as_ref())),
            id: m.container_id,
            status: m.exit_status,
        }
    } else if names(url, "containerd.events.TaskOOM") {
        let m: TaskOOM = parse(&any.value)?;
        Task::Oom(m.container_id)
    } else {
        return Ok(None);
    };
    let id = match &task {
        Task::Start(id) | Task::Oom(id) | Task::Exit { id, .. } => id,
    };
    Ok((!id.is_empty()).then_some(task))
}

/// What the CRI plugin made a containerd container for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Sandbox,
    Container,
}

/// containerd's task events of namespace `k8s.io` as CRI raw events.
pub(crate) struct TaskEvents {
    stream: MessageStream,
    rpc: Rpc,
    mode: ModeCell,
    got_any: bool,
    since: Instant,
    pending_oom: VecDeque<String>,
}

impl TaskEvents {
    /// Subscribes to containerd's event service on the CRI socket.
    pub(crate) fn open(rpc: Rpc, mode: ModeCell) -> Result<TaskEvents> {
        rpc.cancel.check()?;
        let mut req = SubscribeRequest::new();
        req.filters = filters();
        let bytes = req
            .write_to_bytes()
            .map_err(|e| Error::protocol("protobuf", format!("cannot encode request: {e}")))?;
        let stream = rpc
            .channel
            .server_streaming(EVENTS_SUBSCRIBE, &[], &bytes, None)
            .map_err(|e| rpc.map_err(e))?;
        Ok(TaskEvents {
            stream,
            rpc,
            mode,
            got_any: false,
            since: Instant::now(),
            pending_oom: VecDeque::new(),
        })
    }

    fn ended(&self, r: Result<()>) -> Result<Option<RawEvent>> {
        let what = "containerd's event subscription";
        ended(
            r,
            self.got_any,
            self.since,
            &self.rpc.cancel,
            &self.mode,
            what,
        )
    }

    fn take_oom(&mut self, id: &str) -> bool {
        match self.pending_oom.iter().position(|x| x == id) {
            Some(i) => {
                self.pending_oom.remove(i);
                true
            }
            None => false,
        }
    }

    fn note_oom(&mut self, id: String) {
        if !self.pending_oom.contains(&id) {
            if self.pending_oom.len() >= MAX_PENDING_OOM {
                self.pending_oom.pop_front();
            }
            self.pending_oom.push_back(id);
        }
    }
}

/// Whether containerd container `id` of namespace `k8s.io` is a CRI sandbox or
/// container (`None`: not the CRI plugin's, or gone).
pub(crate) fn kind(rpc: &Rpc, id: &str) -> Result<Option<Kind>> {
    let mut req = GetContainerRequest::new();
    req.id = id.to_string();
    let r: Result<GetContainerResponse> = rpc.channel.unary_msg(
        CONTAINERS_GET,
        &[(NAMESPACE_KEY, CRI_NAMESPACE)],
        &req,
        Some(CALL_DEADLINE),
    );
    match r {
        Ok(r) => Ok(r
            .container
            .as_ref()
            .and_then(|c| c.labels.get(KIND_LABEL))
            .and_then(|k| match k.as_str() {
                "sandbox" => Some(Kind::Sandbox),
                "container" => Some(Kind::Container),
                _ => None,
            })),
        Err(Error::Grpc {
            code: GrpcCode::NOT_FOUND,
            ..
        }) => Ok(None),
        Err(e) => Err(rpc.map_err(e)),
    }
}

/// Whether the CRI plugin has caught up with the start of `id`: `Some(true)` yes,
/// `Some(false)` not yet, `None` it no longer knows the container (report nothing).
fn caught_up(rpc: &Rpc, id: &str, kind: Kind) -> Result<Option<bool>> {
    let r = match kind {
        Kind::Container => {
            let mut req = ContainerStatusRequest::new();
            req.container_id = id.to_string();
            rpc.call::<_, ContainerStatusResponse>("ContainerStatus", &req)
                .map(|r| {
                    let created = r.status.as_ref().map(|s| s.state)
                        == Some(EnumOrUnknown::new(ContainerState::CONTAINER_CREATED));
                    Some(!created)
                })
        }
        Kind::Sandbox => {
            let mut req = PodSandboxStatusRequest::new();
            req.pod_sandbox_id = id.to_string();
            rpc.call::<_, PodSandboxStatusResponse>("PodSandboxStatus", &req)
                .map(|r| {
                    Some(
                        r.status.as_ref().map(|s| s.state)
                            == Some(EnumOrUnknown::new(PodSandboxState::SANDBOX_READY)),
                    )
                })
        }
    };
    match r {
        // A sandbox is registered with the CRI plugin only after its task started.
        Err(Error::Grpc {
            code: GrpcCode::NOT_FOUND,
            ..
        }) if kind == Kind::Sandbox => Ok(Some(false)),
        Err(Error::Grpc {
            code: GrpcCode::NOT_FOUND,
            ..
        }) => Ok(None),
        r => r,
    }
}

/// Waits until the CRI plugin agrees that `id` started (at most [`SETTLE`]); its kind,
/// or `None`: not the CRI plugin's, or gone (report nothing).
pub(crate) fn settle(rpc: &Rpc, id: &str) -> Result<Option<Kind>> {
    let Some(kind) = kind(rpc, id)? else {
        return Ok(None);
    };
    let end = Instant::now() + SETTLE;
    let mut pause = SETTLE_FIRST;
    loop {
        match caught_up(rpc, id, kind)? {
            Some(true) => return Ok(Some(kind)),
            None => return Ok(None),
            Some(false) => {}
        }
        let now = Instant::now();
        if now >= end {
            log::debug!("CRI status of {id} did not catch up with its start in {SETTLE:?}");
            return Ok(Some(kind));
        }
        rpc.cancel.check()?;
        std::thread::sleep(pause.min(end - now));
        pause = (pause * 2).min(SETTLE_MAX);
    }
}

/// The ids of the containers of namespace `k8s.io` whose task is alive (running or
/// paused), and of those whose task has ended but is not yet deleted.
pub(crate) fn tasks(rpc: &Rpc) -> Result<(HashSet<String>, HashSet<String>)> {
    let r: ListTasksResponse = rpc
        .channel
        .unary_msg(
            TASKS_LIST,
            &[(NAMESPACE_KEY, CRI_NAMESPACE)],
            &ListTasksRequest::new(),
            Some(CALL_DEADLINE),
        )
        .map_err(|e| rpc.map_err(e))?;
    let (mut alive, mut ended) = (HashSet::new(), HashSet::new());
    for t in r.tasks {
        let id = if t.container_id.is_empty() {
            t.id
        } else {
            t.container_id
        };
        match t.status.enum_value() {
            Ok(Status::RUNNING | Status::PAUSED | Status::PAUSING) => alive.insert(id),
            Ok(Status::STOPPED) => ended.insert(id),
            _ => false,
        };
    }
    Ok((alive, ended))
}

/// How a container's task stands, per containerd (namespace `k8s.io`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TaskState {
    /// Running or paused.
    Alive,
    /// Ended, not yet deleted: its exit status and time.
    Stopped(u32, Option<SystemTime>),
    /// No task (deleted, never created), or a status we do not interpret.
    Gone,
}

/// The state of container `id`'s task.
pub(crate) fn task_state(rpc: &Rpc, id: &str) -> Result<TaskState> {
    let mut req = GetRequest::new();
    req.container_id = id.to_string();
    let r: Result<GetResponse> = rpc.channel.unary_msg(
        TASKS_GET,
        &[(NAMESPACE_KEY, CRI_NAMESPACE)],
        &req,
        Some(CALL_DEADLINE),
    );
    let p = match r {
        Ok(r) => r.process,
        Err(Error::Grpc {
            code: GrpcCode::NOT_FOUND,
            ..
        }) => return Ok(TaskState::Gone),
        Err(e) => return Err(rpc.map_err(e)),
    };
    let Some(p) = p.as_ref() else {
        return Ok(TaskState::Gone);
    };
    Ok(match p.status.enum_value() {
        Ok(Status::RUNNING | Status::PAUSED | Status::PAUSING | Status::CREATED) => {
            TaskState::Alive
        }
        Ok(Status::STOPPED) => TaskState::Stopped(p.exit_status, timestamp(p.exited_at.as_ref())),
        _ => TaskState::Gone,
    })
}

impl EventStream for TaskEvents {
    fn next_event(&mut self) -> Result<Option<RawEvent>> {
        loop {
            let env = match self.stream.next_msg::<Envelope>() {
                Ok(Some(env)) => env,
                Ok(None) => return self.ended(Ok(())),
                Err(e) => return self.ended(Err(e)),
            };
            self.got_any = true;
            let task = match decode(&env) {
                Ok(Some(t)) => t,
                Ok(None) => continue,
                // One bad event must not end the stream.
                Err(e) => {
                    log::warn!("skipping containerd event {:?}: {e}", env.topic);
                    continue;
                }
            };
            let (kind, id, at) = match task {
                Task::Oom(id) => {
                    self.note_oom(id);
                    continue;
                }
                Task::Start(id) => {
                    self.take_oom(&id);
                    if settle(&self.rpc, &id)?.is_none() {
                        continue;
                    }
                    (EventKind::Started, id, timestamp(env.timestamp.as_ref()))
                }
                Task::Exit { id, status, at } => {
                    let oom = self.take_oom(&id);
                    let kind = EventKind::Exited {
                        exit_code: Some(status as i32),
                        oom,
                    };
                    (kind, id, at)
                }
            };
            let mut ev = RawEvent::new(kind, id);
            if let Some(t) = at {
                ev.time = t;
            }
            return Ok(Some(ev));
        }
    }
}

impl std::fmt::Debug for TaskEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskEvents")
            .field("pending_oom", &self.pending_oom.len())
            .finish()
    }
}

/// An envelope for tests (here and in the fake-server tests of the crate).
#[cfg(test)]
pub(crate) fn envelope<M: Message>(ns: &str, url_prefix: &str, m: &M, secs: i64) -> Envelope {
    let mut e = Envelope::new();
    e.namespace = ns.into();
    e.topic = "/tasks/x".into();
    let mut a = protobuf::well_known_types::any::Any::new();
    a.type_url = format!("{url_prefix}containerd.events.{}", M::NAME);
    a.value = m.write_to_bytes().unwrap();
    e.event = protobuf::MessageField::some(a);
    let mut ts = Timestamp::new();
    ts.seconds = secs;
    e.timestamp = protobuf::MessageField::some(ts);
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(cid: &str, id: &str, status: u32, at: Option<i64>) -> TaskExit {
        let mut m = TaskExit::new();
        m.container_id = cid.into();
        m.id = id.into();
        m.exit_status = status;
        if let Some(s) = at {
            let mut ts = Timestamp::new();
            ts.seconds = s;
            ts.nanos = 5;
            m.exited_at = protobuf::MessageField::some(ts);
        }
        m
    }

    #[test]
    fn filters_name_the_namespace_and_quote_topics() {
        assert_eq!(
            filters(),
            vec![
                r#"namespace=="k8s.io",topic=="/tasks/start""#.to_string(),
                r#"namespace=="k8s.io",topic=="/tasks/exit""#.to_string(),
                r#"namespace=="k8s.io",topic=="/tasks/oom""#.to_string(),
            ]
        );
    }

    #[test]
    fn decodes_k8s_task_events_only() {
        let t0 = SystemTime::UNIX_EPOCH;
        let mut s = TaskStart::new();
        s.container_id = "c1".into();
        assert_eq!(
            decode(&envelope("k8s.io", "", &s, 10)).unwrap(),
            Some(Task::Start("c1".into()))
        );
        assert_eq!(decode(&envelope("default", "", &s, 10)).unwrap(), None);
        // Exit time: the task's, else the envelope's.
        assert_eq!(
            decode(&envelope(
                "k8s.io",
                "types.containerd.io/",
                &exit("c1", "c1", 3, Some(20)),
                10
            ))
            .unwrap(),
            Some(Task::Exit {
                id: "c1".into(),
                status: 3,
                at: Some(t0 + Duration::from_secs(20) + Duration::from_nanos(5)),
            })
        );
        assert_eq!(
            decode(&envelope("k8s.io", "", &exit("c1", "", 137, None), 10)).unwrap(),
            Some(Task::Exit {
                id: "c1".into(),
                status: 137,
                at: Some(t0 + Duration::from_secs(10)),
            })
        );
        // An exec'd process is not the container.
        assert_eq!(
            decode(&envelope("k8s.io", "", &exit("c1", "exec", 0, None), 10)).unwrap(),
            None
        );
        let mut o = TaskOOM::new();
        o.container_id = "c1".into();
        assert_eq!(
            decode(&envelope("k8s.io", "", &o, 10)).unwrap(),
            Some(Task::Oom("c1".into()))
        );
        // No container id, other types, no payload, garbage.
        assert_eq!(
            decode(&envelope("k8s.io", "", &TaskStart::new(), 10)).unwrap(),
            None
        );
        let mut e = envelope("k8s.io", "", &s, 10);
        e.event.as_mut().unwrap().type_url = "containerd.events.TaskCreate".into();
        assert_eq!(decode(&e).unwrap(), None);
        e.event.as_mut().unwrap().type_url = "containerd.events.TaskExit".into();
        e.event.as_mut().unwrap().value = vec![0x0a, 0xff, 0xff];
        assert!(matches!(
            decode(&e),
            Err(Error::Protocol {
                layer: "protobuf",
                ..
            })
        ));
        e.event = protobuf::MessageField::none();
        assert_eq!(decode(&e).unwrap(), None);
    }

    #[test]
    fn timestamps_out_of_range_are_unknown() {
        let mut ts = Timestamp::new();
        assert_eq!(timestamp(Some(&ts)), None);
        ts.seconds = 1;
        ts.nanos = -1;
        assert_eq!(timestamp(Some(&ts)), None);
        ts.nanos = 1_000_000_000;
        assert_eq!(timestamp(Some(&ts)), None);
        ts.seconds = -5;
        ts.nanos = 0;
        assert_eq!(timestamp(Some(&ts)), None);
        assert_eq!(timestamp(None), None);
    }

    #[test]
    fn type_url_matching() {
        assert!(names(
            "containerd.events.TaskExit",
            "containerd.events.TaskExit"
        ));
        assert!(names(
            "types.containerd.io/containerd.events.TaskExit",
            "containerd.events.TaskExit"
        ));
        assert!(!names(
            "xcontainerd.events.TaskExit",
            "containerd.events.TaskExit"
        ));
        assert!(!names(
            "containerd.events.TaskExitX",
            "containerd.events.TaskExit"
        ));
    }
}
