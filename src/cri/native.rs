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

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use protobuf::{EnumOrUnknown, Message};

use crate::containerd::api::{
    self, filter, known_time, subscribe, task_container_id, OomMarks, Task, TaskEvent,
    CONTAINERS_GET, TASKS_GET, TASKS_LIST, TOPIC_EXIT, TOPIC_OOM, TOPIC_START,
};
use crate::engine::{CancelSet, EventStream, RawEvent};
use crate::error::{Error, GrpcCode, Result};
use crate::event::EventKind;
use crate::proto::containerd_containers::{GetContainerRequest, GetContainerResponse};
use crate::proto::containerd_events::Envelope;
use crate::proto::containerd_task_types::Status;
use crate::proto::containerd_tasks::{
    GetRequest, GetResponse, ListTasksRequest, ListTasksResponse,
};
use crate::proto::cri_api::{
    ContainerState, ContainerStatusRequest, ContainerStatusResponse, PodSandboxState,
    PodSandboxStatusRequest, PodSandboxStatusResponse,
};

use super::client::Rpc;
use super::events::{ModeCell, Opened};

/// The containerd namespace of the CRI plugin.
pub(crate) const CRI_NAMESPACE: &str = "k8s.io";
/// The label the CRI plugin puts on its containerd containers: `sandbox` or `container`.
pub(crate) const KIND_LABEL: &str = "io.cri-containerd.kind";

/// The subscribed topics.
const TOPICS: [&str; 3] = [TOPIC_START, TOPIC_EXIT, TOPIC_OOM];

/// How long a start waits for the CRI plugin to catch up before it is reported anyway.
pub(crate) const SETTLE: Duration = Duration::from_secs(3);
/// First and longest pause between two CRI status looks while settling.
const SETTLE_FIRST: Duration = Duration::from_millis(2);
const SETTLE_MAX: Duration = Duration::from_millis(50);

/// The subscription filters: each topic, in namespace `k8s.io`.
pub(crate) fn filters() -> Vec<String> {
    TOPICS
        .iter()
        .map(|t| filter(Some(CRI_NAMESPACE), t))
        .collect()
}

/// The task event in an envelope of namespace `k8s.io`; `Ok(None)` for anything else
/// (other namespaces, exec'd processes, other types, events without a container id).
pub(crate) fn decode(env: &Envelope) -> Result<Option<TaskEvent>> {
    if env.namespace != CRI_NAMESPACE {
        return Ok(None);
    }
    Ok(api::decode(env)?.filter(|t| !t.container_id.is_empty()))
}

/// What the CRI plugin made a containerd container for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Sandbox,
    Container,
}

/// containerd's task events of namespace `k8s.io` as CRI raw events.
pub(crate) struct TaskEvents {
    stream: Opened,
    rpc: Rpc,
    ooms: OomMarks,
}

impl TaskEvents {
    /// Subscribes to containerd's event service on the CRI socket.
    pub(crate) fn open(rpc: Rpc, mode: ModeCell) -> Result<TaskEvents> {
        let stream = subscribe(&rpc.channel, &rpc.cancel, filters())?;
        let what = "containerd's event subscription";
        Ok(TaskEvents {
            stream: Opened::new(stream, rpc.cancel.clone(), mode, what),
            rpc,
            ooms: OomMarks::default(),
        })
    }
}

/// A call of containerd's own API in namespace `k8s.io`.
fn containerd<Req: Message, Resp: Message>(rpc: &Rpc, method: &str, req: &Req) -> Result<Resp> {
    api::call(&rpc.channel, &rpc.cancel, Some(CRI_NAMESPACE), method, req)
}

/// Whether containerd container `id` of namespace `k8s.io` is a CRI sandbox or
/// container (`None`: not the CRI plugin's, or gone).
pub(crate) fn kind(rpc: &Rpc, id: &str) -> Result<Option<Kind>> {
    let mut req = GetContainerRequest::new();
    req.id = id.to_string();
    match containerd::<_, GetContainerResponse>(rpc, CONTAINERS_GET, &req) {
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
        Err(e) => Err(e),
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
    let settled = until_settled(&rpc.cancel, || {
        Ok(match caught_up(rpc, id, kind)? {
            Some(true) => Some(Some(kind)),
            None => Some(None),
            Some(false) => None,
        })
    })?;
    Ok(settled.unwrap_or_else(|| {
        log::debug!("CRI status of {id} did not catch up with its start in {SETTLE:?}");
        Some(kind)
    }))
}

/// Looks (`look`) until the CRI plugin has caught up with containerd's tasks (`look` has
/// an answer), pausing 2 ms, doubling up to 50 ms, for at most [`SETTLE`]; `None` when it
/// did not catch up in time.
pub(crate) fn until_settled<T>(
    cancel: &CancelSet,
    mut look: impl FnMut() -> Result<Option<T>>,
) -> Result<Option<T>> {
    let end = Instant::now() + SETTLE;
    let mut pause = SETTLE_FIRST;
    loop {
        if let Some(answer) = look()? {
            return Ok(Some(answer));
        }
        let now = Instant::now();
        if now >= end {
            return Ok(None);
        }
        cancel.check()?;
        std::thread::sleep(pause.min(end - now));
        pause = (pause * 2).min(SETTLE_MAX);
    }
}

/// The ids of the containers of namespace `k8s.io` whose task is alive (running or
/// paused), and of those whose task has ended but is not yet deleted.
pub(crate) fn tasks(rpc: &Rpc) -> Result<(HashSet<String>, HashSet<String>)> {
    let r: ListTasksResponse = containerd(rpc, TASKS_LIST, &ListTasksRequest::new())?;
    let (mut alive, mut ended) = (HashSet::new(), HashSet::new());
    for t in r.tasks {
        let id = task_container_id(&t).to_string();
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
    let p = match containerd::<_, GetResponse>(rpc, TASKS_GET, &req) {
        Ok(r) => r.process,
        Err(Error::Grpc {
            code: GrpcCode::NOT_FOUND,
            ..
        }) => return Ok(TaskState::Gone),
        Err(e) => return Err(e),
    };
    let Some(p) = p.as_ref() else {
        return Ok(TaskState::Gone);
    };
    Ok(match p.status.enum_value() {
        Ok(Status::RUNNING | Status::PAUSED | Status::PAUSING | Status::CREATED) => {
            TaskState::Alive
        }
        Ok(Status::STOPPED) => TaskState::Stopped(p.exit_status, known_time(p.exited_at.as_ref())),
        _ => TaskState::Gone,
    })
}

impl EventStream for TaskEvents {
    fn next_event(&mut self) -> Result<Option<RawEvent>> {
        loop {
            let Some(env) = self.stream.next::<Envelope>()? else {
                return Ok(None);
            };
            let t = match decode(&env) {
                Ok(Some(t)) => t,
                Ok(None) => continue,
                // One bad event must not end the stream.
                Err(e) => {
                    log::warn!("skipping containerd event {:?}: {e}", env.topic);
                    continue;
                }
            };
            // Pause and resume are not CRI states (and not subscribed to).
            if matches!(t.task, Task::Paused | Task::Resumed) {
                continue;
            }
            let Some(kind) = self.ooms.kind(&t.container_id, t.task) else {
                continue;
            };
            if kind == EventKind::Started && settle(&self.rpc, &t.container_id)?.is_none() {
                continue;
            }
            let mut ev = RawEvent::new(kind, t.container_id);
            if let Some(time) = t.time {
                ev.time = time;
            }
            return Ok(Some(ev));
        }
    }
}

impl std::fmt::Debug for TaskEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskEvents")
            .field("pending_oom", &self.ooms.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::containerd::api::{envelope, task_exit};
    use crate::proto::containerd_task_events::{TaskOOM, TaskPaused, TaskStart};

    fn ev(task: Task, id: &str, at: Duration) -> Option<TaskEvent> {
        Some(TaskEvent {
            task,
            container_id: id.into(),
            time: Some(SystemTime::UNIX_EPOCH + at),
        })
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
        let ten = Duration::from_secs(10);
        let mut s = TaskStart::new();
        s.container_id = "c1".into();
        assert_eq!(
            decode(&envelope("k8s.io", "", &s, 10)).unwrap(),
            ev(Task::Start, "c1", ten)
        );
        assert_eq!(decode(&envelope("default", "", &s, 10)).unwrap(), None);
        // Exit time: the task's, else the envelope's.
        assert_eq!(
            decode(&envelope(
                "k8s.io",
                "types.containerd.io/",
                &task_exit("c1", "c1", 3, Some(20)),
                10
            ))
            .unwrap(),
            ev(Task::Exit(3), "c1", Duration::new(20, 5))
        );
        assert_eq!(
            decode(&envelope("k8s.io", "", &task_exit("c1", "", 137, None), 10)).unwrap(),
            ev(Task::Exit(137), "c1", ten)
        );
        // An exec'd process is not the container.
        assert_eq!(
            decode(&envelope(
                "k8s.io",
                "",
                &task_exit("c1", "exec", 0, None),
                10
            ))
            .unwrap(),
            None
        );
        let mut o = TaskOOM::new();
        o.container_id = "c1".into();
        assert_eq!(
            decode(&envelope("k8s.io", "", &o, 10)).unwrap(),
            ev(Task::Oom, "c1", ten)
        );
        // Pause is decoded (the stream skips it: not a CRI state).
        let mut p = TaskPaused::new();
        p.container_id = "c1".into();
        assert_eq!(
            decode(&envelope("k8s.io", "", &p, 10)).unwrap(),
            ev(Task::Paused, "c1", ten)
        );
        // No container id.
        assert_eq!(
            decode(&envelope("k8s.io", "", &TaskStart::new(), 10)).unwrap(),
            None
        );
        // Other types, no payload and garbage as the shared decoder says (its tests).
        let mut e = envelope("k8s.io", "", &s, 10);
        e.event.as_mut().unwrap().value = vec![0x0a, 0xff, 0xff];
        assert!(decode(&e).is_err());
    }
}
