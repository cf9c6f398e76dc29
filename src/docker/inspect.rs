//! Turning Docker's inspect JSON (`GET /containers/{id}/json`) into an [`Inspection`].

use std::sync::Arc;

use serde_json::Value;

use crate::container::{Container, EngineRef, PRIVILEGED_LABEL};
use crate::docker::time::parse_rfc3339;
use crate::engine::{ExitStatus, Inspection, RucksackPacker};
use crate::error::{Error, Result};
use crate::labels::Labels;

/// Reads a container's inspect JSON (Docker's, or Podman's compat API's, which has the
/// same fields).
///
/// - `State.Pid` not 0: [`Inspection::Alive`].
/// - `State.Pid` 0 and the container has run (`State.StartedAt` set and `State.Status` not
///   `created`/`configured`): [`Inspection::Exited`], the container with its details and
///   `pid` 0, and how it ended: `State.ExitCode`, `State.OOMKilled`, `State.FinishedAt`
///   (Docker's zero time `0001-01-01T00:00:00Z` means unknown). This covers `exited`,
///   `dead`, `removing` and `restarting` (between two runs) containers.
/// - Otherwise (created, never started): [`Error::Processless`].
pub(crate) fn container_from_inspect(
    v: &Value,
    asked: &str,
    engine: &Arc<EngineRef>,
    packer: Option<&Arc<dyn RucksackPacker>>,
) -> Result<Inspection> {
    let bad = |what: &str| Error::protocol("json", format!("inspect of {asked}: {what}"));
    let id = v
        .get("Id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| bad("no Id"))?;
    let state = v.get("State").filter(|s| s.is_object());
    let pid = match state.and_then(|s| s.get("Pid")) {
        None | Some(Value::Null) => 0,
        Some(p) => p
            .as_u64()
            .or_else(|| p.as_i64().filter(|&n| n <= 0).map(|_| 0))
            .ok_or_else(|| bad("State.Pid is not a number"))?,
    };
    let pid = u32::try_from(pid).map_err(|_| bad("State.Pid out of range"))?;
    let time = |key: &str| -> Result<_> {
        match state.and_then(|s| s.get(key)).and_then(Value::as_str) {
            Some(t) if !t.is_empty() => parse_rfc3339(t).map_err(|e| bad(&e)),
            _ => Ok(None),
        }
    };
    let started_at = time("StartedAt")?;
    let exit = if pid == 0 {
        let status = state
            .and_then(|s| s.get("Status"))
            .and_then(Value::as_str)
            .unwrap_or("");
        if started_at.is_none() || matches!(status, "created" | "configured") {
            return Err(Error::Processless { id: id.to_string() });
        }
        let exit_code = match state.and_then(|s| s.get("ExitCode")) {
            None | Some(Value::Null) => None,
            Some(c) => Some(
                c.as_i64()
                    .and_then(|c| i32::try_from(c).ok())
                    .ok_or_else(|| bad("State.ExitCode is not a 32-bit integer"))?,
            ),
        };
        Some(ExitStatus {
            exit_code,
            oom: state
                .and_then(|s| s.get("OOMKilled"))
                .and_then(Value::as_bool)
                .unwrap_or(false),
            time: time("FinishedAt")?,
        })
    } else {
        None
    };
    let paused = exit.is_none()
        && state
            .and_then(|s| s.get("Paused"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
    let name = v.get("Name").and_then(Value::as_str).unwrap_or("");
    let name = name.strip_prefix('/').unwrap_or(name);
    let config = v.get("Config");
    let privileged = v
        .get("HostConfig")
        .and_then(|h| h.get("Privileged"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    // Borrowed from the parsed body and built in one go (two allocations). As the Go
    // original: the privileged label's mere presence marks privileged containers (last,
    // so it wins over a configured label of that name).
    let labels: Labels = config
        .and_then(|c| c.get("Labels"))
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, val)| Some((k.as_str(), val.as_str()?)))
        .chain(privileged.then_some((PRIVILEGED_LABEL, "")))
        .collect();
    let image = config
        .and_then(|c| c.get("Image"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut c = Container::new(id, name, pid).with_labels(labels);
    c.paused = paused;
    c.image = image;
    c.started_at = started_at;
    c.engine = engine.clone();
    if let Some(p) = packer {
        c.rucksack = p.pack(&c, v);
    }
    Ok(match exit {
        None => Inspection::Alive(c),
        Some(status) => Inspection::Exited(c, status),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::PROJECT_LABEL;
    use serde_json::json;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    fn engine() -> Arc<EngineRef> {
        Arc::new(EngineRef {
            kind: crate::engine::EngineKind::Docker,
            id: "E".into(),
        })
    }

    fn alive(v: &Value) -> Container {
        match container_from_inspect(v, "abc", &engine(), None).unwrap() {
            Inspection::Alive(c) => c,
            other => panic!("expected Alive, got {other:?}"),
        }
    }

    fn at(secs: u64, nanos: u32) -> Option<SystemTime> {
        Some(UNIX_EPOCH + Duration::new(secs, nanos))
    }

    #[test]
    fn maps_the_fields() {
        let v = json!({
            "Id": "abc", "Name": "/web-1",
            "State": {"Pid": 42, "Paused": true, "StartedAt": "1970-01-01T00:00:01.5Z"},
            "Config": {"Image": "busybox", "Labels": {PROJECT_LABEL: "shop", "x": "y", "n": 1}},
            "HostConfig": {"Privileged": true},
            "Extra": {"ignored": [1, 2]}
        });
        let c = alive(&v);
        assert_eq!(
            (c.id.as_str(), c.name.as_str(), c.pid),
            ("abc", "web-1", 42)
        );
        assert!(c.paused);
        assert_eq!(c.project, "shop");
        assert_eq!(c.image, "busybox");
        assert_eq!(c.labels.get(PRIVILEGED_LABEL), Some(""));
        assert_eq!(c.labels.get("x"), Some("y"));
        assert!(!c.labels.contains_key("n"));
        assert_eq!(c.started_at, at(1, 500_000_000));
        assert_eq!(c.engine.id, "E");
    }

    /// The privileged marker is added last: it wins over a configured label of its name
    /// (as the map insert did before `Labels`); non-string label values are dropped.
    #[test]
    fn privileged_marker_wins_over_a_configured_label() {
        let v = json!({
            "Id": "abc", "Name": "/p", "State": {"Pid": 1},
            "Config": {"Labels": {PRIVILEGED_LABEL: "configured", "b": "2", "a": null}},
            "HostConfig": {"Privileged": true}
        });
        let c = alive(&v);
        assert_eq!(
            c.labels.iter().collect::<Vec<_>>(),
            [("b", "2"), (PRIVILEGED_LABEL, "")]
        );
        let v = json!({"Id": "abc", "Name": "/p", "State": {"Pid": 1},
                       "Config": {"Labels": {PRIVILEGED_LABEL: "configured"}}});
        assert_eq!(alive(&v).labels.get(PRIVILEGED_LABEL), Some("configured"));
        let v = json!({"Id": "abc", "Name": "/p", "State": {"Pid": 1}, "Config": {"Labels": null}});
        assert!(alive(&v).labels.is_empty());
    }

    /// State objects as Docker 20.10 and Podman 4.3's compat API write them (captured
    /// from the engines here), and what each must give.
    #[test]
    fn state_table() {
        const ZERO: &str = "0001-01-01T00:00:00Z";
        // (what, State, Some(exit status) for Exited, None for Alive; Err for Processless)
        type Want = std::result::Result<Option<ExitStatus>, ()>;
        let exited = |code: Option<i32>, oom: bool, time| -> Want {
            Ok(Some(ExitStatus {
                exit_code: code,
                oom,
                time,
            }))
        };
        let table: Vec<(&str, Value, Want)> = vec![
            (
                "docker: running",
                json!({"Status": "running", "Running": true, "Pid": 7, "ExitCode": 0,
                       "StartedAt": "2026-12-06T15:36:52.54500939Z", "FinishedAt": ZERO}),
                Ok(None),
            ),
            (
                "docker: exit 3 (FinishedAt may precede StartedAt)",
                json!({"Status": "exited", "Running": false, "OOMKilled": false, "Dead": false,
                       "Pid": 0, "ExitCode": 3, "Error": "",
                       "StartedAt": "2026-12-06T15:36:52.54500939Z",
                       "FinishedAt": "2026-12-06T15:36:52.544033536Z"}),
                exited(Some(3), false, at(1_796_571_412, 544_033_536)),
            ),
            (
                "docker: OOM-killed",
                json!({"Status": "exited", "OOMKilled": true, "Pid": 0, "ExitCode": 137,
                       "StartedAt": "2026-12-06T15:37:02.1Z",
                       "FinishedAt": "2026-12-06T15:37:02.718210142Z"}),
                exited(Some(137), true, at(1_796_571_422, 718_210_142)),
            ),
            (
                "podman compat: killed, with Health",
                json!({"Status": "exited", "Running": false, "Paused": false, "OOMKilled": false,
                       "Dead": false, "Pid": 0, "ExitCode": 137, "Error": "",
                       "StartedAt": "2026-12-06T15:37:08.90819278Z",
                       "FinishedAt": "2026-12-06T15:37:08.957761772Z",
                       "Health": {"Status": "", "FailingStreak": 0, "Log": null}}),
                exited(Some(137), false, at(1_796_571_428, 957_761_772)),
            ),
            (
                "dead, exit time unknown, no exit code",
                json!({"Status": "dead", "Dead": true, "Pid": 0, "ExitCode": null,
                       "StartedAt": "2026-12-06T15:37:08Z", "FinishedAt": ZERO}),
                exited(None, false, None),
            ),
            (
                "restarting between two runs: the last run's exit",
                json!({"Status": "restarting", "Restarting": true, "Pid": 0, "ExitCode": 1,
                       "StartedAt": "2026-12-06T15:37:08Z",
                       "FinishedAt": "2026-12-06T15:37:09Z"}),
                exited(Some(1), false, at(1_796_571_429, 0)),
            ),
            (
                "a paused flag on a processless container is not believed",
                json!({"Status": "exited", "Paused": true, "Pid": 0, "ExitCode": -1,
                       "StartedAt": "2026-12-06T15:37:08Z"}),
                exited(Some(-1), false, None),
            ),
            (
                "docker: created, never started",
                json!({"Status": "created", "Pid": 0, "ExitCode": 0,
                       "StartedAt": ZERO, "FinishedAt": ZERO}),
                Err(()),
            ),
            (
                "docker: start failed (created, exit code set)",
                json!({"Status": "created", "Pid": 0, "ExitCode": 127,
                       "Error": "exec: \"nope\": not found",
                       "StartedAt": ZERO, "FinishedAt": ZERO}),
                Err(()),
            ),
            (
                "podman: configured",
                json!({"Status": "configured", "Pid": 0, "StartedAt": "2026-12-06T15:37:08Z"}),
                Err(()),
            ),
            ("no State at all", json!(null), Err(())),
            (
                "no StartedAt",
                json!({"Status": "exited", "Pid": 0, "ExitCode": 2}),
                Err(()),
            ),
        ];
        for (what, state, want) in table {
            let v = json!({"Id": "abc", "Name": "/job", "State": state,
                           "Config": {"Image": "busybox:local",
                                      "Labels": {PROJECT_LABEL: "p1", "a": "b"}}});
            let got = container_from_inspect(&v, "abc", &engine(), None);
            match (got, want) {
                (Ok(Inspection::Alive(c)), Ok(None)) => assert_ne!(c.pid, 0, "{what}"),
                (Ok(Inspection::Exited(c, status)), Ok(Some(want))) => {
                    assert_eq!(status, want, "{what}");
                    // Every detail the engine still has, without a process.
                    assert_eq!(
                        (c.id.as_str(), c.name.as_str(), c.pid, c.paused),
                        ("abc", "job", 0, false),
                        "{what}"
                    );
                    assert_eq!(c.project, "p1", "{what}");
                    assert_eq!(c.image, "busybox:local", "{what}");
                    assert_eq!(c.labels.get("a"), Some("b"), "{what}");
                    assert_eq!(c.engine.id, "E", "{what}");
                }
                (Err(Error::Processless { id }), Err(())) => assert_eq!(id, "abc", "{what}"),
                (got, want) => panic!("{what}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn malformed() {
        for bad in [
            json!({"Name": "/x", "State": {"Pid": 1}}),
            json!({"Id": "a", "State": {"Pid": "1"}}),
            json!({"Id": "a", "State": {"Pid": 99999999999u64}}),
            json!({"Id": "a", "State": {"Pid": 1, "StartedAt": "yesterday"}}),
            json!({"Id": "a", "State": {"Pid": 0, "StartedAt": "2026-12-06T15:37:08Z",
                                        "ExitCode": "3"}}),
            json!({"Id": "a", "State": {"Pid": 0, "StartedAt": "2026-12-06T15:37:08Z",
                                        "ExitCode": 4294967296u64}}),
            json!({"Id": "a", "State": {"Pid": 0, "StartedAt": "2026-12-06T15:37:08Z",
                                        "FinishedAt": "later"}}),
            json!([1, 2]),
        ] {
            assert!(
                matches!(
                    container_from_inspect(&bad, "a", &engine(), None),
                    Err(Error::Protocol { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_packer_sees_the_raw_json_alive_or_exited() {
        let packer: Arc<dyn RucksackPacker> =
            Arc::new(|_c: &Container, raw: &dyn std::any::Any| {
                let v = raw.downcast_ref::<Value>()?;
                let s = v["Config"]["Hostname"].as_str()?.to_string();
                Some(Arc::new(s) as crate::container::Rucksack)
            });
        let v = json!({"Id": "a", "State": {"Pid": 7}, "Config": {"Hostname": "h1"}});
        let i = container_from_inspect(&v, "a", &engine(), Some(&packer)).unwrap();
        assert!(matches!(i, Inspection::Alive(_)));
        assert_eq!(
            i.container().rucksack::<String>().map(String::as_str),
            Some("h1")
        );
        let v = json!({"Id": "a", "State": {"Pid": 0, "ExitCode": 0,
                       "StartedAt": "2026-12-06T15:37:08Z"},
                       "Config": {"Hostname": "h2"}});
        let i = container_from_inspect(&v, "a", &engine(), Some(&packer)).unwrap();
        assert!(matches!(i, Inspection::Exited(..)));
        assert_eq!(
            i.container().rucksack::<String>().map(String::as_str),
            Some("h2")
        );
    }
}
