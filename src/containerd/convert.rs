//! Pure conversions: containerd's protobuf messages to the crate's container model.

use std::sync::Arc;

use crate::container::{Container, EngineRef};
use crate::engine::{ExitStatus, Inspection};
use crate::labels::Labels;
use crate::proto::containerd_containers::Container as ProtoContainer;
use crate::proto::containerd_task_types::{Process, Status};

use super::api::known_time;

/// containerd's namespace whose containers get unprefixed ids.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The label in which nerdctl keeps a container's name.
pub const NERDCTL_NAME_LABEL: &str = "nerdctl/name";

/// The id of container `id` in containerd namespace `ns`: `"ns/id"`, or plain `id` in the
/// `default` namespace.
pub fn display_id(ns: &str, id: &str) -> String {
    if ns == DEFAULT_NAMESPACE {
        id.to_string()
    } else {
        format!("{ns}/{id}")
    }
}

/// Splits a display id into namespace and containerd id (the inverse of [`display_id`]).
/// An id without `/` lives in the `default` namespace.
pub fn split_id(display: &str) -> (&str, &str) {
    match display.split_once('/') {
        Some((ns, id)) => (ns, id),
        None => (DEFAULT_NAMESPACE, display),
    }
}

/// Alive and paused flags of a task status: `None` when the task has no running process.
pub fn liveness(p: &Process) -> Option<bool> {
    match p.status.enum_value() {
        Ok(Status::RUNNING) => Some(false),
        Ok(Status::PAUSED) | Ok(Status::PAUSING) => Some(true),
        _ => None,
    }
}

/// Builds the model of an alive container from its containerd record and its task;
/// `None` when the task is not alive (created, stopped, unknown).
///
/// The name comes from nerdctl's `nerdctl/name` label, else the containerd id; like the id,
/// it is prefixed with the namespace outside `default` (as the Go whalewatcher does).
pub fn to_container(
    ns: &str,
    c: &ProtoContainer,
    task: &Process,
    engine: &Arc<EngineRef>,
) -> Option<Container> {
    let paused = liveness(task)?;
    Some(model(ns, c, task.pid, paused, engine))
}

/// What a container's record and its task (the init process, as `Tasks/Get` without an
/// exec id returns it) say: [`Inspection::Alive`] for a running or paused task,
/// [`Inspection::Exited`] for a stopped one (the container with `pid` 0, its
/// `exit_status` and `exited_at`; containerd records no OOM flag), `None` for a task that
/// was created but never started (or whose status is unknown).
pub fn to_inspection(
    ns: &str,
    c: &ProtoContainer,
    task: &Process,
    engine: &Arc<EngineRef>,
) -> Option<Inspection> {
    if let Some(alive) = to_container(ns, c, task, engine) {
        return Some(Inspection::Alive(alive));
    }
    let status = exit_status(task)?;
    Some(Inspection::Exited(model(ns, c, 0, false, engine), status))
}

/// How a stopped task ended; `None` when it is not stopped.
pub fn exit_status(task: &Process) -> Option<ExitStatus> {
    if task.status.enum_value() != Ok(Status::STOPPED) {
        return None;
    }
    Some(ExitStatus {
        exit_code: Some(task.exit_status as i32),
        oom: false,
        time: known_time(task.exited_at.as_ref()),
    })
}

/// The container model of a containerd record with `pid` and `paused` as given.
fn model(
    ns: &str,
    c: &ProtoContainer,
    pid: u32,
    paused: bool,
    engine: &Arc<EngineRef>,
) -> Container {
    let labels: Labels = c.labels.iter().collect();
    let id = display_id(ns, &c.id);
    let name = match labels.get(NERDCTL_NAME_LABEL) {
        Some(n) if !n.is_empty() => display_id(ns, n),
        _ => id.clone(),
    };
    let mut out = Container::new(id, name, pid).with_labels(labels);
    out.paused = paused;
    out.image = c.image.clone();
    out.engine = engine.clone();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use protobuf::well_known_types::timestamp::Timestamp;
    use protobuf::EnumOrUnknown;
    use std::time::{Duration, UNIX_EPOCH};

    fn task(id: &str, pid: u32, status: Status) -> Process {
        let mut p = Process::new();
        p.id = id.into();
        p.pid = pid;
        p.status = EnumOrUnknown::new(status);
        p
    }

    fn record(id: &str, labels: &[(&str, &str)]) -> ProtoContainer {
        let mut c = ProtoContainer::new();
        c.id = id.into();
        c.image = "docker.io/library/busybox:sleep".into();
        for (k, v) in labels {
            c.labels.insert(k.to_string(), v.to_string());
        }
        c
    }

    fn engine() -> Arc<EngineRef> {
        Arc::new(EngineRef {
            kind: crate::engine::EngineKind::Containerd,
            id: "uuid".into(),
        })
    }

    #[test]
    fn ids_round_trip() {
        assert_eq!(display_id("default", "a"), "a");
        assert_eq!(display_id("testns", "a"), "testns/a");
        assert_eq!(split_id("a"), ("default", "a"));
        assert_eq!(split_id("testns/a"), ("testns", "a"));
        assert_eq!(split_id("ns/a/b"), ("ns", "a/b"));
    }

    #[test]
    fn running_container_with_nerdctl_name_and_project() {
        let c = record(
            "c1",
            &[
                ("nerdctl/name", "web"),
                ("com.docker.compose.project", "shop"),
            ],
        );
        let got = to_container("default", &c, &task("c1", 42, Status::RUNNING), &engine()).unwrap();
        assert_eq!(got.id, "c1");
        assert_eq!(got.name, "web");
        assert_eq!(got.pid, 42);
        assert_eq!(got.project, "shop");
        assert!(!got.paused);
        assert_eq!(got.image, "docker.io/library/busybox:sleep");
        assert_eq!(got.engine.kind.as_str(), "containerd.io");
        assert_eq!(got.labels.len(), 2);
    }

    #[test]
    fn namespaced_ids_and_names() {
        let c = record("c2", &[("nerdctl/name", "db")]);
        let got = to_container("testns", &c, &task("c2", 7, Status::PAUSED), &engine()).unwrap();
        assert_eq!(got.id, "testns/c2");
        assert_eq!(got.name, "testns/db");
        assert!(got.paused);
        assert_eq!(got.project, "");
        let c = record("c3", &[]);
        let got = to_container("testns", &c, &task("c3", 8, Status::PAUSING), &engine()).unwrap();
        assert_eq!(got.name, "testns/c3");
        assert!(got.paused);
    }

    #[test]
    fn only_running_and_paused_tasks_are_alive() {
        let c = record("c", &[]);
        for s in [Status::UNKNOWN, Status::CREATED, Status::STOPPED] {
            assert!(to_container("default", &c, &task("c", 1, s), &engine()).is_none());
        }
        let mut t = task("c", 1, Status::RUNNING);
        t.status = EnumOrUnknown::from_i32(99);
        assert!(to_container("default", &c, &t, &engine()).is_none());
    }

    fn ts(seconds: i64, nanos: i32) -> Timestamp {
        let mut t = Timestamp::new();
        t.seconds = seconds;
        t.nanos = nanos;
        t
    }

    /// (what, status, exit_status, exited_at, want: None = no process and no exit,
    /// Some(None) = alive, Some(Some(status)) = exited)
    type Row = (
        &'static str,
        Status,
        u32,
        Option<Timestamp>,
        Option<Option<ExitStatus>>,
    );

    /// Tasks/Get answers (the init process) and what inspect makes of them.
    #[test]
    fn inspection_table() {
        let c = record(
            "c",
            &[
                ("nerdctl/name", "job"),
                ("com.docker.compose.project", "p1"),
            ],
        );
        let at = |s: u64, n: u32| Some(UNIX_EPOCH + Duration::new(s, n));
        let stopped = |code: i32, time| {
            Some(Some(ExitStatus {
                exit_code: Some(code),
                oom: false,
                time,
            }))
        };
        let table: Vec<Row> = vec![
            ("running", Status::RUNNING, 0, None, Some(None)),
            ("paused", Status::PAUSED, 0, None, Some(None)),
            ("pausing", Status::PAUSING, 0, None, Some(None)),
            ("created, never started", Status::CREATED, 0, None, None),
            ("unknown", Status::UNKNOWN, 0, None, None),
            (
                "stopped: exit 3",
                Status::STOPPED,
                3,
                Some(ts(1_796_571_412, 544_033_536)),
                stopped(3, at(1_796_571_412, 544_033_536)),
            ),
            (
                "stopped: killed",
                Status::STOPPED,
                137,
                Some(ts(1_796_571_428, 0)),
                stopped(137, at(1_796_571_428, 0)),
            ),
            (
                "stopped, shim lost (255), no exit time",
                Status::STOPPED,
                255,
                None,
                stopped(255, None),
            ),
            (
                "stopped, Go's zero time",
                Status::STOPPED,
                0,
                Some(ts(-62_135_596_800, 0)),
                stopped(0, None),
            ),
            (
                "stopped, zero timestamp",
                Status::STOPPED,
                1,
                Some(ts(0, 0)),
                stopped(1, None),
            ),
        ];
        for (what, status, code, exited_at, want) in table {
            let mut t = task("c", 4242, status);
            t.exit_status = code;
            t.exited_at = exited_at.into();
            let got = to_inspection("testns", &c, &t, &engine());
            match (got, want) {
                (None, None) => {}
                (Some(Inspection::Alive(a)), Some(None)) => {
                    assert_eq!(a.pid, 4242, "{what}");
                    assert_eq!(a.paused, status != Status::RUNNING, "{what}");
                }
                (Some(Inspection::Exited(x, got)), Some(Some(want))) => {
                    assert_eq!(got, want, "{what}");
                    assert_eq!(
                        (x.id.as_str(), x.name.as_str(), x.pid, x.paused),
                        ("testns/c", "testns/job", 0, false),
                        "{what}"
                    );
                    assert_eq!(x.project, "p1", "{what}");
                    assert_eq!(x.image, "docker.io/library/busybox:sleep", "{what}");
                    assert_eq!(x.engine.id, "uuid", "{what}");
                }
                (got, want) => panic!("{what}: got {got:?}, want {want:?}"),
            }
        }
        let mut t = task("c", 1, Status::STOPPED);
        t.status = EnumOrUnknown::from_i32(99);
        assert!(to_inspection("default", &c, &t, &engine()).is_none());
    }
}
