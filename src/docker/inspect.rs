//! Turning Docker's inspect JSON (`GET /containers/{id}/json`) into a [`Container`].

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::container::{Container, EngineRef, PRIVILEGED_LABEL};
use crate::docker::time::parse_rfc3339;
use crate::engine::RucksackPacker;
use crate::error::{Error, Result};

/// Builds the container from inspect JSON. [`Error::Processless`] when `State.Pid` is 0
/// (created, exited or dead containers).
pub(crate) fn container_from_inspect(
    v: &Value,
    asked: &str,
    engine: &Arc<EngineRef>,
    packer: Option<&Arc<dyn RucksackPacker>>,
) -> Result<Container> {
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
    if pid == 0 {
        return Err(Error::Processless { id: id.to_string() });
    }
    let pid = u32::try_from(pid).map_err(|_| bad("State.Pid out of range"))?;
    let paused = state
        .and_then(|s| s.get("Paused"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let started_at = match state
        .and_then(|s| s.get("StartedAt"))
        .and_then(Value::as_str)
    {
        Some(t) if !t.is_empty() => parse_rfc3339(t).map_err(|e| bad(&e))?,
        _ => None,
    };
    let name = v.get("Name").and_then(Value::as_str).unwrap_or("");
    let name = name.strip_prefix('/').unwrap_or(name);
    let config = v.get("Config");
    let mut labels = BTreeMap::new();
    if let Some(obj) = config
        .and_then(|c| c.get("Labels"))
        .and_then(Value::as_object)
    {
        for (k, val) in obj {
            if let Some(s) = val.as_str() {
                labels.insert(k.clone(), s.to_string());
            }
        }
    }
    let privileged = v
        .get("HostConfig")
        .and_then(|h| h.get("Privileged"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if privileged {
        // As the Go original: the label's mere presence marks privileged containers.
        labels.insert(PRIVILEGED_LABEL.to_string(), String::new());
    }
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
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::PROJECT_LABEL;
    use serde_json::json;

    fn engine() -> Arc<EngineRef> {
        Arc::new(EngineRef {
            kind: crate::engine::DOCKER.into(),
            id: "E".into(),
        })
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
        let c = container_from_inspect(&v, "abc", &engine(), None).unwrap();
        assert_eq!(
            (c.id.as_str(), c.name.as_str(), c.pid),
            ("abc", "web-1", 42)
        );
        assert!(c.paused);
        assert_eq!(c.project, "shop");
        assert_eq!(c.image, "busybox");
        assert_eq!(c.labels.get(PRIVILEGED_LABEL).map(String::as_str), Some(""));
        assert_eq!(c.labels.get("x").map(String::as_str), Some("y"));
        assert!(!c.labels.contains_key("n"));
        assert_eq!(
            c.started_at,
            Some(std::time::UNIX_EPOCH + std::time::Duration::from_millis(1500))
        );
        assert_eq!(c.engine.id, "E");
    }

    #[test]
    fn processless_and_malformed() {
        let v = json!({"Id": "abc", "Name": "/x", "State": {"Pid": 0}, "Config": {"Labels": null}});
        assert_eq!(
            container_from_inspect(&v, "abc", &engine(), None).unwrap_err(),
            Error::Processless { id: "abc".into() }
        );
        for bad in [
            json!({"Name": "/x", "State": {"Pid": 1}}),
            json!({"Id": "a", "State": {"Pid": "1"}}),
            json!({"Id": "a", "State": {"Pid": 99999999999u64}}),
            json!({"Id": "a", "State": {"Pid": 1, "StartedAt": "yesterday"}}),
            json!([1, 2]),
        ] {
            assert!(matches!(
                container_from_inspect(&bad, "a", &engine(), None),
                Err(Error::Protocol { .. })
            ));
        }
    }

    #[test]
    fn the_packer_sees_the_raw_json() {
        let packer: Arc<dyn RucksackPacker> =
            Arc::new(|_c: &Container, raw: &dyn std::any::Any| {
                let v = raw.downcast_ref::<Value>()?;
                let s = v["Config"]["Hostname"].as_str()?.to_string();
                Some(Arc::new(s) as crate::container::Rucksack)
            });
        let v = json!({"Id": "a", "State": {"Pid": 7}, "Config": {"Hostname": "h1"}});
        let c = container_from_inspect(&v, "a", &engine(), Some(&packer)).unwrap();
        assert_eq!(c.rucksack::<String>().map(String::as_str), Some("h1"));
    }
}
