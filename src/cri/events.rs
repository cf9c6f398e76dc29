//! The CRI event source: `GetContainerEvents` where the runtime has it, else relisting.
//!
//! The first [`events`](crate::EngineClient::events) call of a client probes
//! `GetContainerEvents` with a short deadline: UNIMPLEMENTED or an immediate orderly end
//! selects the relisting fallback ([`RelistStream`]); an event or a probe that is still
//! waiting at its deadline selects the evented mode. The choice is kept for later calls
//! and reported as the engine info's `mode`.

use std::collections::HashSet;
use std::time::Duration;

use protobuf::Message;

use crate::engine::{CancelSet, EventStream, RawEvent, RawEventKind};
use crate::error::{Error, Result};
use crate::grpc::MessageStream;
use crate::proto::cri_api::{ContainerEventResponse, ContainerEventType, GetEventsRequest};

use super::client::{CriClient, Rpc, SERVICE};
use super::convert::time_from_nanos;
use super::relist::RelistStream;

/// Mode name of the `GetContainerEvents` stream.
pub const MODE_EVENTED: &str = "evented";
/// Mode name of the relist-and-diff fallback.
pub const MODE_RELIST: &str = "relist";

const UNIMPLEMENTED: u32 = 12;
const DEADLINE_EXCEEDED: u32 = 4;

/// How long the probe waits for `GetContainerEvents` to refuse.
const PROBE_DEADLINE: Duration = Duration::from_millis(1500);

/// Most exited ids remembered to report an exit only once (stopped, then deleted).
const MAX_EXITED: usize = 4096;

fn request() -> Result<Vec<u8>> {
    GetEventsRequest::new()
        .write_to_bytes()
        .map_err(|e| Error::protocol("protobuf", format!("cannot encode request: {e}")))
}

fn open_stream(rpc: &Rpc, deadline: Option<Duration>) -> Result<MessageStream> {
    rpc.cancel.check()?;
    rpc.channel
        .server_streaming(
            &format!("{SERVICE}GetContainerEvents"),
            &[],
            &request()?,
            deadline,
        )
        .map_err(|e| rpc.map_err(e))
}

/// Whether the runtime streams events: probes once.
fn probe(rpc: &Rpc) -> Result<bool> {
    let mut s = open_stream(rpc, Some(PROBE_DEADLINE))?;
    match s.next_message() {
        Ok(Some(_)) => Ok(true),
        Ok(None) => Ok(false),
        Err(Error::Grpc {
            code: UNIMPLEMENTED,
            ..
        }) => Ok(false),
        Err(Error::Timeout { .. })
        | Err(Error::Grpc {
            code: DEADLINE_EXCEEDED,
            ..
        }) => Ok(true),
        Err(e) => Err(rpc.map_err(e)),
    }
}

/// Opens the client's event stream, deciding the mode on first use.
pub(crate) fn open(client: &CriClient) -> Result<Box<dyn EventStream>> {
    let rpc = &client.rpc;
    let decided = client.mode.lock().clone();
    let evented = match decided.as_str() {
        MODE_EVENTED => true,
        MODE_RELIST => false,
        _ => probe(rpc)?,
    };
    *client.mode.lock() = if evented { MODE_EVENTED } else { MODE_RELIST }.to_string();
    if evented {
        let stream = open_stream(rpc, None)?;
        Ok(Box::new(EventedStream {
            stream,
            cancel: rpc.cancel.clone(),
            exited: HashSet::new(),
        }))
    } else {
        let lister_rpc = rpc.clone();
        let s = RelistStream::new(
            Box::new(move || lister_rpc.alive_ids()),
            rpc.cancel.clone(),
            client.interval,
        )?;
        Ok(Box::new(s))
    }
}

/// The `GetContainerEvents` stream mapped to raw events.
pub(crate) struct EventedStream {
    stream: MessageStream,
    cancel: CancelSet,
    exited: HashSet<String>,
}

/// The raw event of one CRI event; `exited` remembers exits so that a stop followed by a
/// delete is one exit.
pub(crate) fn map_event(
    ev: &ContainerEventResponse,
    exited: &mut HashSet<String>,
) -> Option<RawEvent> {
    let id = ev.container_id.as_str();
    if id.is_empty() {
        return None;
    }
    let kind = match ev.container_event_type.enum_value() {
        Ok(ContainerEventType::CONTAINER_STARTED_EVENT) => {
            exited.remove(id);
            RawEventKind::Started
        }
        Ok(ContainerEventType::CONTAINER_STOPPED_EVENT)
        | Ok(ContainerEventType::CONTAINER_DELETED_EVENT) => {
            let deleted = ev.container_event_type.enum_value()
                == Ok(ContainerEventType::CONTAINER_DELETED_EVENT);
            let first = if deleted {
                !exited.remove(id)
            } else {
                if exited.len() >= MAX_EXITED {
                    exited.clear();
                }
                exited.insert(id.to_string())
            };
            if !first {
                return None;
            }
            let status = ev.containers_statuses.iter().find(|s| s.id == id);
            RawEventKind::Exited {
                exit_code: status.filter(|s| s.finished_at > 0).map(|s| s.exit_code),
                oom: status.is_some_and(|s| s.reason == "OOMKilled"),
            }
        }
        _ => return None,
    };
    let mut raw = RawEvent::new(kind, id);
    if let Some(t) = time_from_nanos(ev.created_at) {
        raw.time = t;
    }
    Some(raw)
}

impl EventStream for EventedStream {
    fn next_event(&mut self) -> Result<Option<RawEvent>> {
        loop {
            let msg = self
                .stream
                .next_msg::<ContainerEventResponse>()
                .map_err(|e| {
                    if self.cancel.is_cancelled() {
                        Error::Cancelled
                    } else {
                        e
                    }
                })?;
            let Some(ev) = msg else { return Ok(None) };
            if let Some(raw) = map_event(&ev, &mut self.exited) {
                return Ok(Some(raw));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::cri_api::ContainerStatus;
    use protobuf::EnumOrUnknown;

    fn ev(id: &str, t: ContainerEventType) -> ContainerEventResponse {
        let mut e = ContainerEventResponse::new();
        e.container_id = id.into();
        e.container_event_type = EnumOrUnknown::new(t);
        e.created_at = 1_000_000_000;
        e
    }

    #[test]
    fn started_stopped_deleted_map_to_one_exit() {
        let mut seen = HashSet::new();
        use ContainerEventType::*;
        assert_eq!(
            map_event(&ev("a", CONTAINER_CREATED_EVENT), &mut seen),
            None
        );
        let s = map_event(&ev("a", CONTAINER_STARTED_EVENT), &mut seen).unwrap();
        assert_eq!(s.kind, RawEventKind::Started);
        let mut stop = ev("a", CONTAINER_STOPPED_EVENT);
        let mut st = ContainerStatus::new();
        st.id = "a".into();
        st.finished_at = 5;
        st.exit_code = 137;
        st.reason = "OOMKilled".into();
        stop.containers_statuses.push(st);
        let x = map_event(&stop, &mut seen).unwrap();
        assert_eq!(
            x.kind,
            RawEventKind::Exited {
                exit_code: Some(137),
                oom: true
            }
        );
        assert_eq!(
            map_event(&ev("a", CONTAINER_DELETED_EVENT), &mut seen),
            None
        );
        // Deleted without a stop first: one exit, unknown code.
        let d = map_event(&ev("b", CONTAINER_DELETED_EVENT), &mut seen).unwrap();
        assert_eq!(
            d.kind,
            RawEventKind::Exited {
                exit_code: None,
                oom: false
            }
        );
        assert!(seen.is_empty());
        assert_eq!(map_event(&ev("", CONTAINER_STARTED_EVENT), &mut seen), None);
    }
}
