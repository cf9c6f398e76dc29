//! containerd's event envelopes to raw lifecycle events.

use std::collections::VecDeque;

use protobuf::Message;

use crate::engine::CancelSet;
use crate::engine::{EventStream, RawEvent};
use crate::error::{Error, Result};
use crate::event::EventKind;
use crate::grpc::MessageStream;
use crate::proto::containerd_events::Envelope;
use crate::proto::containerd_task_events::{TaskExit, TaskOOM, TaskPaused, TaskResumed, TaskStart};

use super::convert::{display_id, exit_time, to_system_time};

/// The subscription filters: task start, exit, pause, resume and OOM. (containerd needs the
/// quotes; unquoted values silently match nothing.)
pub const TOPIC_FILTERS: [&str; 5] = [
    r#"topic=="/tasks/start""#,
    r#"topic=="/tasks/exit""#,
    r#"topic=="/tasks/paused""#,
    r#"topic=="/tasks/resumed""#,
    r#"topic=="/tasks/oom""#,
];

/// How many containers with an OOM but no exit yet we remember.
const MAX_PENDING_OOM: usize = 1024;

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

/// Turns envelopes into raw events; remembers OOMs until the container's exit.
#[derive(Default)]
pub struct Translator {
    ignored: Vec<String>,
    pending_oom: VecDeque<String>,
}

impl Translator {
    /// A translator that drops events of the `ignored` namespaces.
    pub fn new(ignored: Vec<String>) -> Self {
        Translator {
            ignored,
            pending_oom: VecDeque::new(),
        }
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

    /// The raw event an envelope stands for, `Ok(None)` for envelopes that are no lifecycle
    /// event of ours (ignored namespaces, exec'd processes, OOM notes, other types), `Err`
    /// for a payload that does not decode.
    pub fn translate(&mut self, env: &Envelope) -> Result<Option<RawEvent>> {
        if self.ignored.contains(&env.namespace) {
            return Ok(None);
        }
        let Some(any) = env.event.as_ref() else {
            return Ok(None);
        };
        let url = any.type_url.as_str();
        let ns = env.namespace.as_str();
        let mut exited_at = None;
        let (kind, cid) = if names(url, "containerd.events.TaskStart") {
            let m: TaskStart = parse(&any.value)?;
            let id = display_id(ns, &m.container_id);
            self.take_oom(&id);
            (EventKind::Started, id)
        } else if names(url, "containerd.events.TaskExit") {
            let m: TaskExit = parse(&any.value)?;
            // An exec'd process ended, not the container's init process.
            if !m.id.is_empty() && m.id != m.container_id {
                return Ok(None);
            }
            let id = display_id(ns, &m.container_id);
            let oom = self.take_oom(&id);
            exited_at = exit_time(m.exited_at.as_ref());
            let kind = EventKind::Exited {
                exit_code: Some(m.exit_status as i32),
                oom,
            };
            (kind, id)
        } else if names(url, "containerd.events.TaskPaused") {
            let m: TaskPaused = parse(&any.value)?;
            (EventKind::Paused, display_id(ns, &m.container_id))
        } else if names(url, "containerd.events.TaskResumed") {
            let m: TaskResumed = parse(&any.value)?;
            (EventKind::Unpaused, display_id(ns, &m.container_id))
        } else if names(url, "containerd.events.TaskOOM") {
            let m: TaskOOM = parse(&any.value)?;
            let id = display_id(ns, &m.container_id);
            if !self.pending_oom.contains(&id) {
                if self.pending_oom.len() >= MAX_PENDING_OOM {
                    self.pending_oom.pop_front();
                }
                self.pending_oom.push_back(id);
            }
            return Ok(None);
        } else {
            return Ok(None);
        };
        let mut ev = RawEvent::new(kind, cid);
        // An exit's time is when the process ended (as inspect says), else when
        // containerd published the event.
        if let Some(t) = exited_at.or_else(|| to_system_time(env.timestamp.as_ref())) {
            ev.time = t;
        }
        Ok(Some(ev))
    }
}

/// containerd's event subscription as an [`EventStream`].
pub struct ContainerdEvents {
    stream: MessageStream,
    translator: Translator,
    cancel: CancelSet,
}

impl ContainerdEvents {
    /// Wraps an open Subscribe stream.
    pub fn new(stream: MessageStream, ignored: Vec<String>, cancel: CancelSet) -> Self {
        ContainerdEvents {
            stream,
            translator: Translator::new(ignored),
            cancel,
        }
    }
}

impl EventStream for ContainerdEvents {
    fn next_event(&mut self) -> Result<Option<RawEvent>> {
        loop {
            let env = match self.stream.next_msg::<Envelope>() {
                Ok(Some(env)) => env,
                Ok(None) => return Ok(None),
                Err(_) if self.cancel.is_cancelled() => return Err(Error::Cancelled),
                Err(e) => return Err(e),
            };
            match self.translator.translate(&env) {
                Ok(Some(ev)) => return Ok(Some(ev)),
                Ok(None) => {}
                // One bad event must not end the stream.
                Err(e) => log::warn!("skipping containerd event {:?}: {e}", env.topic),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protobuf::well_known_types::any::Any;
    use protobuf::well_known_types::timestamp::Timestamp;
    use std::time::{Duration, UNIX_EPOCH};

    fn env<M: Message>(ns: &str, url_prefix: &str, m: &M) -> Envelope {
        let mut e = Envelope::new();
        e.namespace = ns.into();
        e.topic = "/tasks/x".into();
        let mut a = Any::new();
        a.type_url = format!("{url_prefix}containerd.events.{}", M::NAME);
        a.value = m.write_to_bytes().unwrap();
        e.event = Some(a).into();
        let mut ts = Timestamp::new();
        ts.seconds = 1_700_000_000;
        e.timestamp = Some(ts).into();
        e
    }

    fn exit(cid: &str, id: &str, status: u32) -> TaskExit {
        let mut m = TaskExit::new();
        m.container_id = cid.into();
        m.id = id.into();
        m.exit_status = status;
        m
    }

    fn tr() -> Translator {
        Translator::new(vec!["moby".into(), "k8s.io".into()])
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
    fn start_exit_pause_resume() {
        let mut t = tr();
        let mut s = TaskStart::new();
        s.container_id = "c".into();
        s.pid = 5;
        let ev = t.translate(&env("default", "", &s)).unwrap().unwrap();
        assert_eq!(ev.kind, EventKind::Started);
        assert_eq!(ev.id, "c");
        assert_eq!(ev.time, UNIX_EPOCH + Duration::from_secs(1_700_000_000));

        let ev = t
            .translate(&env("testns", "types.containerd.io/", &exit("c", "c", 137)))
            .unwrap()
            .unwrap();
        assert_eq!(
            ev.kind,
            EventKind::Exited {
                exit_code: Some(137),
                oom: false
            }
        );
        assert_eq!(ev.id, "testns/c");

        let mut p = TaskPaused::new();
        p.container_id = "c".into();
        let ev = t.translate(&env("default", "", &p)).unwrap().unwrap();
        assert_eq!(ev.kind, EventKind::Paused);
        let mut r = TaskResumed::new();
        r.container_id = "c".into();
        let ev = t.translate(&env("default", "", &r)).unwrap().unwrap();
        assert_eq!(ev.kind, EventKind::Unpaused);
    }

    #[test]
    fn an_exit_is_stamped_with_its_exit_time() {
        let mut t = tr();
        let mut m = exit("c", "c", 3);
        let mut at = Timestamp::new();
        at.seconds = 1_700_000_005;
        at.nanos = 7;
        m.exited_at = Some(at).into();
        let ev = t.translate(&env("default", "", &m)).unwrap().unwrap();
        assert_eq!(ev.time, UNIX_EPOCH + Duration::new(1_700_000_005, 7));
        assert_eq!(
            ev.kind,
            EventKind::Exited {
                exit_code: Some(3),
                oom: false
            }
        );
        assert_eq!(ev.details, None);
        // Without one (or with Go's zero time), the envelope's time.
        let mut m = exit("c", "c", 3);
        let mut zero = Timestamp::new();
        zero.seconds = -62_135_596_800;
        m.exited_at = Some(zero).into();
        let ev = t.translate(&env("default", "", &m)).unwrap().unwrap();
        assert_eq!(ev.time, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    }

    #[test]
    fn exec_exit_is_not_the_containers_exit() {
        let mut t = tr();
        assert_eq!(
            t.translate(&env("default", "", &exit("c", "exec1", 0)))
                .unwrap(),
            None
        );
    }

    #[test]
    fn oom_marks_the_next_exit_only() {
        let mut t = tr();
        let mut o = TaskOOM::new();
        o.container_id = "c".into();
        assert_eq!(t.translate(&env("ns", "", &o)).unwrap(), None);
        // An OOM of another namespace's same-named container does not count.
        let ev = t
            .translate(&env("default", "", &exit("c", "c", 137)))
            .unwrap()
            .unwrap();
        assert!(matches!(ev.kind, EventKind::Exited { oom: false, .. }));
        let ev = t
            .translate(&env("ns", "", &exit("c", "c", 137)))
            .unwrap()
            .unwrap();
        assert!(matches!(ev.kind, EventKind::Exited { oom: true, .. }));
        let ev = t
            .translate(&env("ns", "", &exit("c", "c", 137)))
            .unwrap()
            .unwrap();
        assert!(matches!(ev.kind, EventKind::Exited { oom: false, .. }));
    }

    #[test]
    fn pending_ooms_are_bounded() {
        let mut t = tr();
        for i in 0..(MAX_PENDING_OOM + 10) {
            let mut o = TaskOOM::new();
            o.container_id = format!("c{i}");
            t.translate(&env("default", "", &o)).unwrap();
        }
        assert_eq!(t.pending_oom.len(), MAX_PENDING_OOM);
    }

    #[test]
    fn ignored_namespaces_unknown_types_and_garbage() {
        let mut t = tr();
        assert_eq!(
            t.translate(&env("moby", "", &exit("c", "c", 0))).unwrap(),
            None
        );
        let mut e = env("default", "", &exit("c", "c", 0));
        e.event.as_mut().unwrap().type_url = "containerd.events.TaskCreate".into();
        assert_eq!(t.translate(&e).unwrap(), None);
        e.event.as_mut().unwrap().type_url = "containerd.events.TaskExit".into();
        e.event.as_mut().unwrap().value = vec![0x0a, 0xff, 0xff];
        assert!(matches!(
            t.translate(&e),
            Err(Error::Protocol {
                layer: "protobuf",
                ..
            })
        ));
        e.event = protobuf::MessageField::none();
        assert_eq!(t.translate(&e).unwrap(), None);
    }
}
