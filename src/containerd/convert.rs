//! Pure conversions: containerd's protobuf messages to the crate's container model.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use protobuf::well_known_types::timestamp::Timestamp;

use crate::container::{Container, EngineRef};
use crate::proto::containerd_containers::Container as ProtoContainer;
use crate::proto::containerd_task_types::{Process, Status};

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

/// The container id a task belongs to: `container_id` where set, else the task's `id` (the
/// init process of a task carries the container's id).
pub fn task_container_id(p: &Process) -> &str {
    if p.container_id.is_empty() {
        &p.id
    } else {
        &p.container_id
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
    let labels: BTreeMap<String, String> = c
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let id = display_id(ns, &c.id);
    let name = match labels.get(NERDCTL_NAME_LABEL) {
        Some(n) if !n.is_empty() => display_id(ns, n),
        _ => id.clone(),
    };
    let mut out = Container::new(id, name, task.pid).with_labels(labels);
    out.paused = paused;
    out.image = c.image.clone();
    out.engine = engine.clone();
    Some(out)
}

/// A protobuf timestamp as system time; `None` when absent or out of range.
pub fn to_system_time(ts: Option<&Timestamp>) -> Option<SystemTime> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use protobuf::EnumOrUnknown;

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
            kind: "containerd.io".into(),
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
        assert_eq!(got.engine.kind, "containerd.io");
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

    #[test]
    fn task_container_id_prefers_container_id() {
        let mut t = task("x", 1, Status::RUNNING);
        assert_eq!(task_container_id(&t), "x");
        t.container_id = "y".into();
        assert_eq!(task_container_id(&t), "y");
    }

    #[test]
    fn timestamps() {
        let mut ts = Timestamp::new();
        ts.seconds = 1_700_000_000;
        ts.nanos = 5;
        assert_eq!(
            to_system_time(Some(&ts)),
            Some(UNIX_EPOCH + Duration::new(1_700_000_000, 5))
        );
        ts.nanos = -1;
        assert_eq!(to_system_time(Some(&ts)), None);
        ts.nanos = 0;
        ts.seconds = i64::MIN;
        let _ = to_system_time(Some(&ts)); // must not panic
        ts.seconds = i64::MAX;
        let _ = to_system_time(Some(&ts));
        assert_eq!(to_system_time(None), None);
    }
}
