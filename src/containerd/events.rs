//! containerd's event envelopes to raw lifecycle events.

use crate::engine::CancelSet;
use crate::engine::{EventStream, RawEvent};
use crate::error::Result;
use crate::grpc::MessageStream;
use crate::proto::containerd_events::Envelope;

use super::api::{
    decode, filter, OomMarks, TOPIC_EXIT, TOPIC_OOM, TOPIC_PAUSED, TOPIC_RESUMED, TOPIC_START,
};
use super::convert::display_id;

/// The subscription filters: task start, exit, pause, resume and OOM, of all namespaces.
pub fn filters() -> Vec<String> {
    [
        TOPIC_START,
        TOPIC_EXIT,
        TOPIC_PAUSED,
        TOPIC_RESUMED,
        TOPIC_OOM,
    ]
    .iter()
    .map(|t| filter(None, t))
    .collect()
}

/// Turns envelopes into raw events; remembers OOMs until the container's exit.
#[derive(Default)]
pub struct Translator {
    ignored: Vec<String>,
    ooms: OomMarks,
}

impl Translator {
    /// A translator that drops events of the `ignored` namespaces.
    pub fn new(ignored: Vec<String>) -> Self {
        Translator {
            ignored,
            ooms: OomMarks::default(),
        }
    }

    /// The raw event an envelope stands for, `Ok(None)` for envelopes that are no lifecycle
    /// event of ours (ignored namespaces, exec'd processes, OOM notes, other types), `Err`
    /// for a payload that does not decode.
    pub fn translate(&mut self, env: &Envelope) -> Result<Option<RawEvent>> {
        if self.ignored.contains(&env.namespace) {
            return Ok(None);
        }
        let Some(t) = decode(env)? else {
            return Ok(None);
        };
        // OOMs are marked by display id: a same-named container of another namespace is
        // another container.
        let id = display_id(&env.namespace, &t.container_id);
        let Some(kind) = self.ooms.kind(&id, t.task) else {
            return Ok(None);
        };
        let mut ev = RawEvent::new(kind, id);
        if let Some(time) = t.time {
            ev.time = time;
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
                Err(e) => return Err(self.cancel.or_cancelled(e)),
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
    use super::super::api::{envelope, task_exit};
    use super::*;
    use crate::error::Error;
    use crate::event::EventKind;
    use crate::proto::containerd_task_events::{
        TaskExit, TaskOOM, TaskPaused, TaskResumed, TaskStart,
    };
    use protobuf::well_known_types::timestamp::Timestamp;
    use protobuf::Message;
    use std::time::{Duration, UNIX_EPOCH};

    fn env<M: Message>(ns: &str, url_prefix: &str, m: &M) -> Envelope {
        envelope(ns, url_prefix, m, 1_700_000_000)
    }

    fn exit(cid: &str, id: &str, status: u32) -> TaskExit {
        task_exit(cid, id, status, None)
    }

    fn tr() -> Translator {
        Translator::new(vec!["moby".into(), "k8s.io".into()])
    }

    #[test]
    fn filters_are_the_five_quoted_topics_of_all_namespaces() {
        assert_eq!(
            filters(),
            [
                r#"topic=="/tasks/start""#,
                r#"topic=="/tasks/exit""#,
                r#"topic=="/tasks/paused""#,
                r#"topic=="/tasks/resumed""#,
                r#"topic=="/tasks/oom""#,
            ]
        );
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
