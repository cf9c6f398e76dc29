//! containerd's native API as both its users speak it: the containerd client and the CRI
//! adaptor's `containerd-events` mode (containerd before 2.0, see
//! `cri::native`).
//!
//! The method paths and namespace header, the task-event subscription, one decoder of the
//! task events (start, exit, pause, resume, OOM: their container, exit status and time),
//! the OOM marks that turn them into lifecycle events, and the reading of protobuf times.
//! Compiled with the `containerd` or the `cri` feature (the CRI adaptor must not need the
//! containerd client).

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use protobuf::well_known_types::timestamp::Timestamp;
use protobuf::Message;

use crate::cancel::CancelSet;
use crate::error::{Error, Result};
use crate::event::EventKind;
use crate::grpc::{Channel, MessageStream};
use crate::proto::containerd_events::{Envelope, SubscribeRequest};
use crate::proto::containerd_task_events::{TaskExit, TaskOOM, TaskPaused, TaskResumed, TaskStart};
use crate::proto::containerd_task_types::Process;

/// `Containers/Get`.
pub(crate) const CONTAINERS_GET: &str = "/containerd.services.containers.v1.Containers/Get";
/// `Tasks/List`.
pub(crate) const TASKS_LIST: &str = "/containerd.services.tasks.v1.Tasks/List";
/// `Tasks/Get`.
pub(crate) const TASKS_GET: &str = "/containerd.services.tasks.v1.Tasks/Get";
/// `Events/Subscribe`.
const EVENTS_SUBSCRIBE: &str = "/containerd.services.events.v1.Events/Subscribe";

/// The metadata key that selects a containerd namespace.
const NAMESPACE_KEY: &str = "containerd-namespace";

/// Deadline of every unary call.
const CALL_DEADLINE: Duration = Duration::from_secs(30);

/// The topic of a task start.
pub(crate) const TOPIC_START: &str = "/tasks/start";
/// The topic of a task exit.
pub(crate) const TOPIC_EXIT: &str = "/tasks/exit";
/// The topic of a task pause.
#[cfg_attr(not(feature = "containerd"), allow(dead_code))]
pub(crate) const TOPIC_PAUSED: &str = "/tasks/paused";
/// The topic of a task resume.
#[cfg_attr(not(feature = "containerd"), allow(dead_code))]
pub(crate) const TOPIC_RESUMED: &str = "/tasks/resumed";
/// The topic of an OOM kill in a task.
pub(crate) const TOPIC_OOM: &str = "/tasks/oom";

/// How many containers with an OOM but no exit yet we remember.
const MAX_PENDING_OOM: usize = 1024;

/// The subscription filter of `topic`, in `namespace` when given (containerd needs the
/// quotes; unquoted values silently match nothing).
pub(crate) fn filter(namespace: Option<&str>, topic: &str) -> String {
    match namespace {
        Some(ns) => format!(r#"namespace=="{ns}",topic=="{topic}""#),
        None => format!(r#"topic=="{topic}""#),
    }
}

/// A unary call of `method` in `namespace` (none: calls that are not per namespace). A
/// failure after `cancel` is [`Error::Cancelled`].
pub(crate) fn call<Req: Message, Resp: Message>(
    channel: &Channel,
    cancel: &CancelSet,
    namespace: Option<&str>,
    method: &str,
    req: &Req,
) -> Result<Resp> {
    cancel.check()?;
    let md: Vec<(&str, &str)> = namespace.map(|n| (NAMESPACE_KEY, n)).into_iter().collect();
    channel
        .unary_msg(method, &md, req, Some(CALL_DEADLINE))
        .map_err(|e| cancel.or_cancelled(e))
}

/// Opens an `Events/Subscribe` stream with `filters`. No namespace metadata: a namespace
/// is chosen by the filters, else containerd sends the events of all namespaces. A
/// failure after `cancel` is [`Error::Cancelled`].
pub(crate) fn subscribe(
    channel: &Channel,
    cancel: &CancelSet,
    filters: Vec<String>,
) -> Result<MessageStream> {
    cancel.check()?;
    let mut req = SubscribeRequest::new();
    req.filters = filters;
    let bytes = req
        .write_to_bytes()
        .map_err(|e| Error::protocol("protobuf", format!("cannot encode request: {e}")))?;
    channel
        .server_streaming(EVENTS_SUBSCRIBE, &[], &bytes, None)
        .map_err(|e| cancel.or_cancelled(e))
}

/// A protobuf time: `None` when absent, unset (zero), out of range, or not after the epoch
/// (Go's zero time, year 1, is how containerd says "never").
pub(crate) fn known_time(ts: Option<&Timestamp>) -> Option<SystemTime> {
    to_system_time(ts).filter(|t| *t > UNIX_EPOCH)
}

/// A protobuf time as it is, before the epoch too; `None` when absent or out of range.
pub(crate) fn to_system_time(ts: Option<&Timestamp>) -> Option<SystemTime> {
    let ts = ts?;
    if !(0..1_000_000_000).contains(&ts.nanos) {
        return None;
    }
    let nanos = Duration::from_nanos(ts.nanos as u64);
    if ts.seconds >= 0 {
        UNIX_EPOCH
            .checked_add(Duration::from_secs(ts.seconds as u64))?
            .checked_add(nanos)
    } else {
        UNIX_EPOCH
            .checked_sub(Duration::from_secs(ts.seconds.unsigned_abs()))?
            .checked_add(nanos)
    }
}

/// The container id a task belongs to: `container_id` where set, else the task's `id` (the
/// init process of a task carries the container's id).
pub(crate) fn task_container_id(p: &Process) -> &str {
    if p.container_id.is_empty() {
        &p.id
    } else {
        &p.container_id
    }
}

/// What happened to a container's task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Task {
    /// The task started.
    Start,
    /// The container's init process ended with this exit status.
    Exit(u32),
    /// The task was paused.
    Paused,
    /// The task was resumed.
    Resumed,
    /// The OOM killer hit the task.
    Oom,
}

/// A task event of an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaskEvent {
    /// What happened.
    pub(crate) task: Task,
    /// The containerd container id (of the envelope's namespace; may be empty).
    pub(crate) container_id: String,
    /// An exit's exit time, else (and for every other event) the envelope's time.
    pub(crate) time: Option<SystemTime>,
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

/// The task event in an envelope (of any namespace: callers choose theirs); `Ok(None)` for
/// anything else (exec'd processes, other types, no payload), `Err` for a payload that
/// does not decode.
pub(crate) fn decode(env: &Envelope) -> Result<Option<TaskEvent>> {
    let Some(any) = env.event.as_ref() else {
        return Ok(None);
    };
    let url = any.type_url.as_str();
    let mut exited_at = None;
    let (task, container_id) = if names(url, "containerd.events.TaskStart") {
        let m: TaskStart = parse(&any.value)?;
        (Task::Start, m.container_id)
    } else if names(url, "containerd.events.TaskExit") {
        let m: TaskExit = parse(&any.value)?;
        // An exec'd process ended, not the container's init process.
        if !m.id.is_empty() && m.id != m.container_id {
            return Ok(None);
        }
        exited_at = known_time(m.exited_at.as_ref());
        (Task::Exit(m.exit_status), m.container_id)
    } else if names(url, "containerd.events.TaskPaused") {
        let m: TaskPaused = parse(&any.value)?;
        (Task::Paused, m.container_id)
    } else if names(url, "containerd.events.TaskResumed") {
        let m: TaskResumed = parse(&any.value)?;
        (Task::Resumed, m.container_id)
    } else if names(url, "containerd.events.TaskOOM") {
        let m: TaskOOM = parse(&any.value)?;
        (Task::Oom, m.container_id)
    } else {
        return Ok(None);
    };
    Ok(Some(TaskEvent {
        task,
        container_id,
        // An exit's time is when the process ended (as inspect says), else when
        // containerd published the event.
        time: exited_at.or_else(|| known_time(env.timestamp.as_ref())),
    }))
}

/// Turns task events into lifecycle event kinds: remembers a container's OOM until its
/// exit (which it marks `oom: true`) or its next start (which forgets it).
#[derive(Debug, Default)]
pub(crate) struct OomMarks {
    pending: VecDeque<String>,
}

impl OomMarks {
    /// The lifecycle event of `task` for container `id` (the key of the OOM marks), `None`
    /// for an OOM (remembered instead).
    pub(crate) fn kind(&mut self, id: &str, task: Task) -> Option<EventKind> {
        Some(match task {
            Task::Start => {
                self.take(id);
                EventKind::Started
            }
            Task::Exit(status) => EventKind::Exited {
                exit_code: Some(status as i32),
                oom: self.take(id),
            },
            Task::Paused => EventKind::Paused,
            Task::Resumed => EventKind::Unpaused,
            Task::Oom => {
                self.note(id);
                return None;
            }
        })
    }

    /// The number of containers with an OOM but no exit yet.
    #[cfg_attr(not(any(test, feature = "cri")), allow(dead_code))]
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    fn take(&mut self, id: &str) -> bool {
        match self.pending.iter().position(|x| x == id) {
            Some(i) => {
                self.pending.remove(i);
                true
            }
            None => false,
        }
    }

    fn note(&mut self, id: &str) {
        if !self.pending.iter().any(|x| x == id) {
            if self.pending.len() >= MAX_PENDING_OOM {
                self.pending.pop_front();
            }
            self.pending.push_back(id.to_string());
        }
    }
}

/// An envelope of task event `m` for tests: namespace `ns`, the type URL
/// `{url_prefix}containerd.events.{name}`, published at `secs`.
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

/// A `TaskExit` for tests: container `cid`, exec id `id`, exit status, and the exit time
/// `at` seconds (and 5 ns) after the epoch when given.
#[cfg(test)]
pub(crate) fn task_exit(cid: &str, id: &str, status: u32, at: Option<i64>) -> TaskExit {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(task: Task, id: &str, secs: u64, nanos: u32) -> Option<TaskEvent> {
        Some(TaskEvent {
            task,
            container_id: id.into(),
            time: Some(UNIX_EPOCH + Duration::new(secs, nanos)),
        })
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

    #[test]
    fn filters_quote_topic_and_namespace() {
        assert_eq!(filter(None, TOPIC_EXIT), r#"topic=="/tasks/exit""#);
        assert_eq!(
            filter(Some("k8s.io"), TOPIC_OOM),
            r#"namespace=="k8s.io",topic=="/tasks/oom""#
        );
    }

    #[test]
    fn decodes_every_task_event_of_any_namespace() {
        let mut s = TaskStart::new();
        s.container_id = "c1".into();
        s.pid = 5;
        assert_eq!(
            decode(&envelope("k8s.io", "", &s, 10)).unwrap(),
            ev(Task::Start, "c1", 10, 0)
        );
        assert_eq!(
            decode(&envelope("default", "types.containerd.io/", &s, 10)).unwrap(),
            ev(Task::Start, "c1", 10, 0)
        );
        let mut p = TaskPaused::new();
        p.container_id = "c1".into();
        let mut r = TaskResumed::new();
        r.container_id = "c1".into();
        let mut o = TaskOOM::new();
        o.container_id = "c1".into();
        let envelopes = [
            (envelope("ns", "", &p, 10), Task::Paused),
            (envelope("ns", "", &r, 10), Task::Resumed),
            (envelope("ns", "", &o, 10), Task::Oom),
        ];
        for (e, task) in envelopes {
            assert_eq!(decode(&e).unwrap(), ev(task, "c1", 10, 0));
        }
        // No container id: decoded all the same (callers decide).
        assert_eq!(
            decode(&envelope("ns", "", &TaskStart::new(), 10)).unwrap(),
            ev(Task::Start, "", 10, 0)
        );
    }

    #[test]
    fn an_exit_has_its_exit_time_else_the_envelopes() {
        assert_eq!(
            decode(&envelope("ns", "", &task_exit("c1", "c1", 3, Some(20)), 10)).unwrap(),
            ev(Task::Exit(3), "c1", 20, 5)
        );
        // The init process's exec id may be empty.
        assert_eq!(
            decode(&envelope("ns", "", &task_exit("c1", "", 137, None), 10)).unwrap(),
            ev(Task::Exit(137), "c1", 10, 0)
        );
        // Go's zero time is no exit time.
        assert_eq!(
            decode(&envelope(
                "ns",
                "",
                &task_exit("c1", "c1", 3, Some(-62_135_596_800)),
                10
            ))
            .unwrap(),
            ev(Task::Exit(3), "c1", 10, 0)
        );
        // An unset envelope time is no time at all.
        assert_eq!(
            decode(&envelope("ns", "", &task_exit("c1", "c1", 3, None), 0)).unwrap(),
            Some(TaskEvent {
                task: Task::Exit(3),
                container_id: "c1".into(),
                time: None,
            })
        );
    }

    #[test]
    fn exec_exits_other_types_and_garbage() {
        // An exec'd process is not the container.
        assert_eq!(
            decode(&envelope("ns", "", &task_exit("c1", "exec", 0, None), 10)).unwrap(),
            None
        );
        let mut e = envelope("ns", "", &task_exit("c1", "c1", 0, None), 10);
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
    fn oom_marks_the_next_exit_only_and_a_start_forgets_it() {
        let mut m = OomMarks::default();
        let exited = |oom| {
            Some(EventKind::Exited {
                exit_code: Some(137),
                oom,
            })
        };
        assert_eq!(m.kind("a", Task::Oom), None);
        assert_eq!(m.kind("a", Task::Oom), None);
        assert_eq!(m.len(), 1);
        assert_eq!(m.kind("b", Task::Exit(137)), exited(false));
        assert_eq!(m.kind("a", Task::Exit(137)), exited(true));
        assert_eq!(m.kind("a", Task::Exit(137)), exited(false));
        assert_eq!(m.kind("a", Task::Oom), None);
        assert_eq!(m.kind("a", Task::Start), Some(EventKind::Started));
        assert_eq!(m.kind("a", Task::Exit(137)), exited(false));
        assert_eq!(m.kind("a", Task::Paused), Some(EventKind::Paused));
        assert_eq!(m.kind("a", Task::Resumed), Some(EventKind::Unpaused));
        assert_eq!(m.len(), 0);
    }

    #[test]
    fn pending_ooms_are_bounded() {
        let mut m = OomMarks::default();
        for i in 0..(MAX_PENDING_OOM + 10) {
            m.kind(&format!("c{i}"), Task::Oom);
        }
        assert_eq!(m.len(), MAX_PENDING_OOM);
        // The oldest were forgotten.
        assert!(!m.take("c0"));
        assert!(m.take(&format!("c{}", MAX_PENDING_OOM + 9)));
    }

    #[test]
    fn task_container_id_prefers_container_id() {
        let mut p = Process::new();
        p.id = "x".into();
        assert_eq!(task_container_id(&p), "x");
        p.container_id = "y".into();
        assert_eq!(task_container_id(&p), "y");
    }

    #[test]
    fn times() {
        let mut ts = Timestamp::new();
        ts.seconds = 1_700_000_000;
        ts.nanos = 5;
        let t = Some(UNIX_EPOCH + Duration::new(1_700_000_000, 5));
        assert_eq!(to_system_time(Some(&ts)), t);
        assert_eq!(known_time(Some(&ts)), t);
        ts.nanos = -1;
        assert_eq!(to_system_time(Some(&ts)), None);
        ts.nanos = 1_000_000_000;
        assert_eq!(known_time(Some(&ts)), None);
        ts.nanos = 0;
        ts.seconds = i64::MIN;
        let _ = to_system_time(Some(&ts)); // must not panic
        ts.seconds = i64::MAX;
        let _ = to_system_time(Some(&ts));
        // Before the epoch: a time, but not a known one.
        ts.seconds = -5;
        assert_eq!(
            to_system_time(Some(&ts)),
            Some(UNIX_EPOCH - Duration::from_secs(5))
        );
        assert_eq!(known_time(Some(&ts)), None);
        ts.seconds = 0;
        assert_eq!(known_time(Some(&ts)), None);
        assert_eq!(to_system_time(None), None);
        assert_eq!(known_time(None), None);
    }
}
