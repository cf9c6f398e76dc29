//! Docker's and Podman's `/events` stream: a sequence of JSON objects, decoded as they
//! arrive (objects may be split across chunks or reads).

use std::collections::HashSet;
use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::container::PROJECT_LABEL;
use crate::engine::{EventDetails, EventStream, RawEvent};
use crate::error::{Error, Result};
use crate::event::EventKind;

/// Largest accepted single event object.
pub const MAX_EVENT: usize = 1024 * 1024;
/// Most container ids remembered between an `oom` and its `die` event.
const MAX_OOM_PENDING: usize = 4096;
/// The event attributes that are the engine's own, not the container's labels
/// (`execDuration`: Docker 26 and later, on `die`).
const ENGINE_ATTRIBUTES: [&str; 6] = [
    "name",
    "image",
    "exitCode",
    "containerExitCode",
    "podId",
    "execDuration",
];

/// Decodes a byte stream of concatenated JSON objects into raw lifecycle events.
pub struct EventDecoder<R> {
    reader: R,
    buf: Vec<u8>,
    start: usize,
    oom: HashSet<String>,
    map_err: fn(&R, &std::io::Error) -> Error,
}

impl<R: Read> EventDecoder<R> {
    /// A decoder over `reader`; `map_err` turns read errors into the crate's errors.
    pub fn new(reader: R, map_err: fn(&R, &std::io::Error) -> Error) -> Self {
        EventDecoder {
            reader,
            buf: Vec::new(),
            start: 0,
            oom: HashSet::new(),
            map_err,
        }
    }

    /// The next JSON object; `Ok(None)` at a clean end of the stream.
    fn next_value(&mut self) -> Result<Option<Value>> {
        let mut try_parse = true;
        loop {
            while self.start < self.buf.len() && self.buf[self.start].is_ascii_whitespace() {
                self.start += 1;
            }
            let pending = &self.buf[self.start..];
            if !pending.is_empty() {
                if pending[0] != b'{' {
                    return Err(Error::protocol(
                        "json",
                        "event stream holds something other than JSON objects",
                    ));
                }
                if try_parse {
                    let mut it = serde_json::Deserializer::from_slice(pending).into_iter::<Value>();
                    match it.next() {
                        Some(Ok(_)) if it.byte_offset() > MAX_EVENT => {
                            return Err(Error::protocol(
                                "json",
                                format!("event object larger than {MAX_EVENT} bytes"),
                            ))
                        }
                        Some(Ok(v)) => {
                            self.start += it.byte_offset();
                            return Ok(Some(v));
                        }
                        Some(Err(e)) if e.is_eof() => {}
                        Some(Err(e)) => {
                            return Err(Error::protocol("json", format!("bad event: {e}")))
                        }
                        None => {}
                    }
                }
                if pending.len() > MAX_EVENT {
                    return Err(Error::protocol(
                        "json",
                        format!("event object larger than {MAX_EVENT} bytes"),
                    ));
                }
            }
            // Need more bytes.
            self.buf.drain(..self.start);
            self.start = 0;
            let old = self.buf.len();
            self.buf.resize(old + 16 * 1024, 0);
            let n = loop {
                match self.reader.read(&mut self.buf[old..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.buf.truncate(old);
                        return Err((self.map_err)(&self.reader, &e));
                    }
                }
            };
            self.buf.truncate(old + n);
            if n == 0 {
                if self.buf.iter().all(u8::is_ascii_whitespace) {
                    return Ok(None);
                }
                return Err(Error::protocol(
                    "json",
                    "event stream ended in the middle of an event",
                ));
            }
            // An object can only have completed if a closing brace arrived.
            try_parse = self.buf[old..].contains(&b'}');
        }
    }

    /// Maps one event object; `None` for events that are not lifecycle events.
    fn map(&mut self, v: &Value) -> Option<RawEvent> {
        let typ = v
            .get("Type")
            .or_else(|| v.get("type"))
            .and_then(Value::as_str);
        if typ.is_some_and(|t| t != "container") {
            return None;
        }
        let action = v
            .get("Action")
            .or_else(|| v.get("status"))
            .and_then(Value::as_str)?;
        let actor = v.get("Actor");
        let id = actor
            .and_then(|a| a.get("ID"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .or_else(|| v.get("id").and_then(Value::as_str))
            .filter(|s| !s.is_empty());
        let Some(id) = id else {
            log::warn!("container event {action:?} without an id: ignored");
            return None;
        };
        let attrs = actor.and_then(|a| a.get("Attributes"));
        let attr = |k: &str| attrs.and_then(|a| a.get(k)).and_then(Value::as_str);
        let kind = match action {
            "start" => EventKind::Started,
            "die" | "died" => {
                let exit_code = attr("exitCode")
                    .or_else(|| attr("containerExitCode"))
                    .and_then(|c| c.trim().parse::<i32>().ok());
                EventKind::Exited {
                    exit_code,
                    oom: self.oom.remove(id),
                }
            }
            "pause" => EventKind::Paused,
            "unpause" => EventKind::Unpaused,
            "oom" => {
                if self.oom.len() >= MAX_OOM_PENDING {
                    self.oom.clear();
                }
                self.oom.insert(id.to_string());
                return None;
            }
            _ => return None,
        };
        let time = event_time(v);
        let details = match kind {
            EventKind::Exited { .. } => attrs.and_then(details).map(Box::new),
            _ => None,
        };
        Some(RawEvent {
            kind,
            id: id.to_string(),
            project: attr(PROJECT_LABEL).map(str::to_string),
            time,
            details,
        })
    }
}

/// The container details in an event's `Actor.Attributes` (Docker and Podman: the
/// container's labels, plus `name`, `image` and the exit code under their own keys);
/// `None` without a name (not a container event as the engines write them).
fn details(attrs: &Value) -> Option<EventDetails> {
    let attrs = attrs.as_object()?;
    let text = |k: &str| attrs.get(k).and_then(Value::as_str);
    let name = text("name").filter(|n| !n.is_empty())?;
    let labels = attrs
        .iter()
        .filter(|(k, _)| !ENGINE_ATTRIBUTES.contains(&k.as_str()))
        .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
        .collect();
    Some(EventDetails {
        name: name.strip_prefix('/').unwrap_or(name).to_string(),
        image: text("image").unwrap_or("").to_string(),
        labels,
    })
}

/// `timeNano`, else `time` (seconds), else now. A time beyond what `SystemTime` holds
/// (a hostile or broken peer) counts as absent.
fn event_time(v: &Value) -> SystemTime {
    let nanos = v.get("timeNano").and_then(Value::as_u64).filter(|&n| n > 0);
    if let Some(t) = nanos.and_then(|ns| UNIX_EPOCH.checked_add(Duration::from_nanos(ns))) {
        return t;
    }
    let secs = v.get("time").and_then(Value::as_u64).filter(|&n| n > 0);
    if let Some(t) = secs.and_then(|s| UNIX_EPOCH.checked_add(Duration::from_secs(s))) {
        return t;
    }
    SystemTime::now()
}

impl<R: Read + Send> EventStream for EventDecoder<R> {
    fn next_event(&mut self) -> Result<Option<RawEvent>> {
        loop {
            let Some(v) = self.next_value()? else {
                return Ok(None);
            };
            if let Some(ev) = self.map(&v) {
                return Ok(Some(ev));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Labels;
    use std::io::Cursor;

    /// Hands out the input in pieces of `step` bytes.
    struct Trickle(Vec<u8>, usize, usize);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.1.min(buf.len()).min(self.0.len() - self.2);
            buf[..n].copy_from_slice(&self.0[self.2..self.2 + n]);
            self.2 += n;
            Ok(n)
        }
    }

    fn io_err<R>(_: &R, e: &std::io::Error) -> Error {
        Error::connection("test", e)
    }

    fn all(input: &str, step: usize) -> Result<Vec<RawEvent>> {
        let mut d = EventDecoder::new(Trickle(input.as_bytes().to_vec(), step, 0), io_err);
        let mut out = Vec::new();
        while let Some(e) = d.next_event()? {
            out.push(e);
        }
        Ok(out)
    }

    const DOCKER: &str = r#"{"status":"start","id":"c1","Type":"container","Action":"start","Actor":{"ID":"c1","Attributes":{"com.docker.compose.project":"pp","name":"a"}},"time":1,"timeNano":1000000001}
{"Type":"container","Action":"pause","Actor":{"ID":"c1","Attributes":{}},"timeNano":2}
{"Type":"container","Action":"unpause","Actor":{"ID":"c1"},"time":3}
{"Type":"container","Action":"oom","Actor":{"ID":"c1"}}
{"Type":"container","Action":"die","Actor":{"ID":"c1","Attributes":{"exitCode":"137"}}}{"Type":"container","Action":"die","Actor":{"ID":"c2","Attributes":{"exitCode":"3"}}}
{"Type":"network","Action":"connect","Actor":{"ID":"n"}}
{"Type":"container","Action":"create","Actor":{"ID":"c3"}}
"#;

    #[test]
    fn decodes_events_split_anywhere() {
        for step in [1, 2, 7, 100, 100_000] {
            let evs = all(DOCKER, step).unwrap();
            let kinds: Vec<_> = evs.iter().map(|e| (e.id.as_str(), e.kind)).collect();
            assert_eq!(
                kinds,
                vec![
                    ("c1", EventKind::Started),
                    ("c1", EventKind::Paused),
                    ("c1", EventKind::Unpaused),
                    (
                        "c1",
                        EventKind::Exited {
                            exit_code: Some(137),
                            oom: true
                        }
                    ),
                    (
                        "c2",
                        EventKind::Exited {
                            exit_code: Some(3),
                            oom: false
                        }
                    ),
                ],
                "step {step}"
            );
            assert_eq!(evs[0].project.as_deref(), Some("pp"));
            assert_eq!(
                evs[0].time,
                UNIX_EPOCH + Duration::from_nanos(1_000_000_001)
            );
            assert_eq!(evs[2].time, UNIX_EPOCH + Duration::from_secs(3));
        }
    }

    #[test]
    fn podman_style_events() {
        let p = r#"{"status":"died","id":"p1","Type":"container","Actor":{"ID":"p1","Attributes":{"containerExitCode":"3"}},"timeNano":5}"#;
        let evs = all(p, 3).unwrap();
        assert_eq!(
            evs[0].kind,
            EventKind::Exited {
                exit_code: Some(3),
                oom: false
            }
        );
    }

    const DOCKER_RM_DIE: &str = r#"{"Type":"container","Action":"die","Actor":{"ID":"3615ea","Attributes":{"com.docker.compose.project":"pp","exitCode":"3","image":"busybox:local","name":"rmtest"}}}"#;

    /// Die events as Docker 20.10 and Podman 4.3 wrote them for `run --rm --label
    /// com.docker.compose.project=pp --label a=b --name rmtest busybox:local sh -c 'exit 3'`
    /// (captured here), and others: the details each carries.
    #[test]
    fn exit_events_carry_the_containers_details() {
        let labels = |l: &[(&str, &str)]| -> Labels { l.iter().copied().collect() };
        let rm = |image: &str| {
            Some(EventDetails {
                name: "rmtest".into(),
                image: image.into(),
                labels: labels(&[("a", "b"), (PROJECT_LABEL, "pp")]),
            })
        };
        let table: Vec<(&str, &str, Option<i32>, Option<EventDetails>)> = vec![
            (
                "docker",
                r#"{"status":"die","id":"3615ea","from":"busybox:local","Type":"container","Action":"die","Actor":{"ID":"3615ea","Attributes":{"a":"b","com.docker.compose.project":"pp","exitCode":"3","image":"busybox:local","name":"rmtest"}},"scope":"local","time":1796571440,"timeNano":1796571440782887805}"#,
                Some(3),
                rm("busybox:local"),
            ),
            (
                "docker 26",
                r#"{"status":"die","id":"3615ea","from":"busybox:local","Type":"container","Action":"die","Actor":{"ID":"3615ea","Attributes":{"a":"b","com.docker.compose.project":"pp","execDuration":"0","exitCode":"3","image":"busybox:local","name":"rmtest"}},"scope":"local","time":1796571440,"timeNano":1796571440782887805}"#,
                Some(3),
                rm("busybox:local"),
            ),
            (
                "podman",
                r#"{"status":"die","id":"f1aa1f","from":"localhost/busybox:local","Type":"container","Action":"die","Actor":{"ID":"f1aa1f","Attributes":{"a":"b","com.docker.compose.project":"pp","containerExitCode":"3","exitCode":"3","image":"localhost/busybox:local","name":"rmtest","podId":""}},"scope":"local","time":1796571440,"timeNano":1796571440891776296}"#,
                Some(3),
                rm("localhost/busybox:local"),
            ),
            (
                "no labels, no image",
                r#"{"Type":"container","Action":"die","Actor":{"ID":"c","Attributes":{"exitCode":"0","name":"/x","n":7}}}"#,
                Some(0),
                Some(EventDetails {
                    name: "x".into(),
                    ..Default::default()
                }),
            ),
            (
                "no name: no details",
                r#"{"Type":"container","Action":"die","Actor":{"ID":"c","Attributes":{"exitCode":"1","a":"b"}}}"#,
                Some(1),
                None,
            ),
            (
                "no attributes",
                r#"{"Type":"container","Action":"die","Actor":{"ID":"c"}}"#,
                None,
                None,
            ),
            (
                "attributes not an object",
                r#"{"Type":"container","Action":"died","Actor":{"ID":"c","Attributes":[1]}}"#,
                None,
                None,
            ),
        ];
        for (what, line, code, want) in table {
            let evs = all(line, 7).unwrap();
            assert_eq!(evs.len(), 1, "{what}");
            assert_eq!(
                evs[0].kind,
                EventKind::Exited {
                    exit_code: code,
                    oom: false
                },
                "{what}"
            );
            assert_eq!(evs[0].details.as_deref(), want.as_ref(), "{what}");
        }
        // Only exits carry details (a start's container is inspected while it exists).
        let start = r#"{"Type":"container","Action":"start","Actor":{"ID":"c","Attributes":{"name":"x","image":"i"}}}"#;
        assert_eq!(all(start, 100).unwrap()[0].details, None);
        // The details make the container as the event describes it.
        let evs = all(DOCKER_RM_DIE, 100).unwrap();
        let engine = std::sync::Arc::new(crate::EngineRef {
            kind: crate::engine::EngineKind::Docker,
            id: "E".into(),
        });
        let c = evs[0]
            .details
            .as_ref()
            .unwrap()
            .to_container(&evs[0].id, engine);
        assert_eq!(
            (c.id.as_str(), c.name.as_str(), c.pid, c.project.as_str()),
            ("3615ea", "rmtest", 0, "pp")
        );
        assert_eq!(
            (c.image.as_str(), c.engine.id.as_str()),
            ("busybox:local", "E")
        );
    }

    #[test]
    fn times_beyond_systemtime_do_not_panic() {
        // found by fuzzing: `time` of 1.7e19 s overflowed `UNIX_EPOCH + Duration`
        let e = r#"{"Type":"container","Action":"start","Actor":{"ID":"abc","Attributes":{}},"time":17000000000123456789}"#;
        let evs = all(e, 5).unwrap();
        assert_eq!(evs.len(), 1);
        assert!(evs[0].time > UNIX_EPOCH);
    }

    #[test]
    fn rejects_garbage_truncation_and_giants() {
        assert!(all("[1,2]", 10).is_err());
        assert!(all("{\"a\":", 10).is_err());
        assert!(all("{\"a\" 1}", 10).is_err());
        let giant = format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_EVENT + 10));
        assert!(all(&giant, 1 << 20).is_err());
        assert_eq!(all("  \n ", 1).unwrap().len(), 0);
        let mut d = EventDecoder::new(Cursor::new(Vec::new()), io_err);
        assert!(d.next_event().unwrap().is_none());
    }
}
