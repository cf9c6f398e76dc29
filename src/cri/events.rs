//! The CRI event sources, chosen by [`EventMode`] (from the runtime's `Version` answer,
//! see [`EventMode::for_runtime`]), without any probe stream:
//!
//! - [`EventMode::Evented`]: one `GetContainerEvents` stream without a deadline (a
//!   containerd 2.x handler blocks while idle; a deadline would only make it reset the
//!   stream). Events created before the stream was opened are dropped: containerd 2.x
//!   hands a backlog of up to 5 minutes of old events to a new subscriber, and the
//!   listing that follows the open already reflects them. A runtime that refuses the
//!   call before sending anything (UNIMPLEMENTED; or at once: an orderly end, UNKNOWN,
//!   FAILED_PRECONDITION) switches the client to [`EventMode::Relist`], and the stream
//!   ends so that the watcher reconnects.
//! - [`EventMode::ContainerdEvents`]: containerd's own task events, see
//!   [`native`](super::native).
//! - [`EventMode::Relist`]: the relisting [`RelistStream`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use protobuf::Message;

use crate::engine::{CancelSet, EventStream, RawEvent};
use crate::error::{Error, GrpcCode, Result};
use crate::event::EventKind;
use crate::grpc::MessageStream;
use crate::proto::cri_api::{ContainerEventResponse, ContainerEventType, GetEventsRequest};

use super::client::{CriClient, SERVICE};
use super::convert::time_from_nanos;
use super::mode::EventMode;
use super::native::TaskEvents;
use super::relist::RelistStream;

/// gRPC status codes that, answered to a new event stream at once, also mean "no such
/// event source here" (a handler that refuses with a plain error, e.g. pod events that
/// are not enabled): UNKNOWN, FAILED_PRECONDITION.
const REFUSED_AT_ONCE: [GrpcCode; 2] = [GrpcCode::UNKNOWN, GrpcCode::FAILED_PRECONDITION];
/// How soon after the open an end or one of [`REFUSED_AT_ONCE`] counts as a refusal
/// (later, it is a failure like any other: the watcher reconnects).
const AT_ONCE: Duration = Duration::from_secs(2);

/// Most exited ids remembered to report an exit only once (stopped, then deleted).
const MAX_EXITED: usize = 4096;

/// The client's event mode, shared with its streams (a refusal switches it to relist).
pub(crate) type ModeCell = Arc<Mutex<Option<EventMode>>>;

fn request() -> Result<Vec<u8>> {
    GetEventsRequest::new()
        .write_to_bytes()
        .map_err(|e| Error::protocol("protobuf", format!("cannot encode request: {e}")))
}

/// Nanoseconds since the epoch of `t` (saturating; 0 before the epoch).
pub(crate) fn nanos(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Opens the client's event stream in its mode (deciding the mode first when no
/// [`info`](crate::EngineClient::info) call has yet).
pub(crate) fn open(client: &CriClient) -> Result<Box<dyn EventStream>> {
    let rpc = &client.rpc;
    rpc.cancel.check()?;
    let mode = client.event_mode()?;
    match mode {
        EventMode::Evented => {
            let opened = SystemTime::now();
            let stream = rpc
                .channel
                .server_streaming(
                    &format!("{SERVICE}GetContainerEvents"),
                    &[],
                    &request()?,
                    None,
                )
                .map_err(|e| rpc.cancel.or_cancelled(e))?;
            Ok(Box::new(EventedStream {
                stream: Opened::new(
                    stream,
                    rpc.cancel.clone(),
                    client.mode.clone(),
                    "GetContainerEvents",
                ),
                exited: HashSet::new(),
                opened: nanos(opened),
            }))
        }
        EventMode::ContainerdEvents => Ok(Box::new(TaskEvents::open(
            rpc.clone(),
            client.mode.clone(),
        )?)),
        EventMode::Relist => {
            let lister_rpc = rpc.clone();
            let s = RelistStream::new(
                Box::new(move || lister_rpc.alive_ids()),
                rpc.cancel.clone(),
                client.interval,
            )?;
            Ok(Box::new(s))
        }
    }
}

/// Handles the end or failure of an event stream opened at `opened`: a refusal before
/// the first message (UNIMPLEMENTED; or, at once, an orderly end or one of
/// [`REFUSED_AT_ONCE`]) switches `mode` to relist and ends the stream (`Ok(None)`: the
/// watcher reconnects).
pub(crate) fn ended(
    r: Result<()>,
    got_any: bool,
    opened: Instant,
    cancel: &CancelSet,
    mode: &ModeCell,
    what: &str,
) -> Result<Option<RawEvent>> {
    if cancel.is_cancelled() {
        return Err(Error::Cancelled);
    }
    let at_once = opened.elapsed() < AT_ONCE;
    let refused = match &r {
        Ok(()) => at_once,
        Err(Error::Grpc {
            code: GrpcCode::UNIMPLEMENTED,
            ..
        }) => true,
        Err(Error::Grpc { code, .. }) => at_once && REFUSED_AT_ONCE.contains(code),
        Err(_) => false,
    };
    if !got_any && refused {
        log::info!(
            "CRI runtime refused {what} ({}); falling back to relisting",
            r.as_ref()
                .err()
                .map_or("ended at once".into(), |e| e.to_string())
        );
        *mode.lock() = Some(EventMode::Relist);
        return Ok(None);
    }
    r.map(|_| None)
}

/// An open event stream of the CRI adaptor ([`EventMode::Evented`] or
/// [`EventMode::ContainerdEvents`]), which tells a refusal from a failure when it ends
/// (see [`ended`]).
pub(crate) struct Opened {
    stream: MessageStream,
    cancel: CancelSet,
    mode: ModeCell,
    /// The stream, for the log.
    what: &'static str,
    got_any: bool,
    /// When the stream was opened.
    since: Instant,
}

impl Opened {
    /// An event stream opened just now.
    pub(crate) fn new(
        stream: MessageStream,
        cancel: CancelSet,
        mode: ModeCell,
        what: &'static str,
    ) -> Self {
        Opened {
            stream,
            cancel,
            mode,
            what,
            got_any: false,
            since: Instant::now(),
        }
    }

    /// The next message; `Ok(None)` once the stream has ended (or was refused: then
    /// `mode` is relist now).
    pub(crate) fn next<M: Message>(&mut self) -> Result<Option<M>> {
        let r = match self.stream.next_msg::<M>() {
            Ok(Some(m)) => {
                self.got_any = true;
                return Ok(Some(m));
            }
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        let (got_any, since, what) = (self.got_any, self.since, self.what);
        ended(r, got_any, since, &self.cancel, &self.mode, what).map(|_| None)
    }
}

/// The `GetContainerEvents` stream mapped to raw events.
pub(crate) struct EventedStream {
    stream: Opened,
    exited: HashSet<String>,
    /// When the stream was opened (nanoseconds since the epoch): older events are a
    /// backlog that the listing after the open already reflects.
    opened: i64,
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
            EventKind::Started
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
            EventKind::Exited {
                exit_code: status.filter(|s| s.finished_at > 0).map(|s| s.exit_code),
                oom: status.is_some_and(|s| s.reason == super::convert::OOM_REASON),
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
            let Some(ev) = self.stream.next::<ContainerEventResponse>()? else {
                return Ok(None);
            };
            // A backlog event (containerd 2.x keeps events for a while when nobody
            // listens): the listing made after the open is fresher.
            if ev.created_at > 0 && ev.created_at < self.opened {
                continue;
            }
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
    fn refusals_switch_to_relisting_failures_do_not() {
        let grpc = |code| {
            Err(Error::Grpc {
                code,
                message: "x".into(),
            })
        };
        let now = Instant::now();
        let late = now - Duration::from_secs(60);
        let cancel = CancelSet::new();
        let run = |r: Result<()>, got_any, opened| {
            let mode: ModeCell = Arc::new(Mutex::new(Some(EventMode::Evented)));
            let out = ended(r, got_any, opened, &cancel, &mode, "test");
            let relist = *mode.lock() == Some(EventMode::Relist);
            (out, relist)
        };
        // Refusals before any event: relist, and the stream ends.
        assert_eq!(
            run(grpc(GrpcCode::UNIMPLEMENTED), false, late),
            (Ok(None), true)
        );
        assert_eq!(run(grpc(GrpcCode::UNKNOWN), false, now), (Ok(None), true));
        assert_eq!(
            run(grpc(GrpcCode::FAILED_PRECONDITION), false, now),
            (Ok(None), true)
        );
        assert_eq!(run(Ok(()), false, now), (Ok(None), true));
        // Not refusals: a late UNKNOWN, a late end, other codes, anything after an event.
        assert_eq!(
            run(grpc(GrpcCode::UNKNOWN), false, late),
            (grpc(GrpcCode::UNKNOWN).map(|_| None), false)
        );
        assert_eq!(run(Ok(()), false, late), (Ok(None), false));
        assert_eq!(
            run(grpc(GrpcCode::UNAVAILABLE), false, now),
            (grpc(GrpcCode::UNAVAILABLE).map(|_| None), false)
        );
        assert_eq!(
            run(grpc(GrpcCode::UNIMPLEMENTED), true, now),
            (grpc(GrpcCode::UNIMPLEMENTED).map(|_| None), false)
        );
        assert_eq!(run(Ok(()), true, now), (Ok(None), false));
        cancel.cancel();
        assert_eq!(
            run(grpc(GrpcCode::UNIMPLEMENTED), false, now),
            (Err(Error::Cancelled), false)
        );
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
        assert_eq!(s.kind, EventKind::Started);
        let mut stop = ev("a", CONTAINER_STOPPED_EVENT);
        let mut st = ContainerStatus::new();
        st.id = "a".into();
        st.finished_at = 5;
        st.exit_code = 137;
        st.reason = crate::cri::convert::OOM_REASON.into();
        stop.containers_statuses.push(st);
        let x = map_event(&stop, &mut seen).unwrap();
        assert_eq!(
            x.kind,
            EventKind::Exited {
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
            EventKind::Exited {
                exit_code: None,
                oom: false
            }
        );
        assert!(seen.is_empty());
        assert_eq!(map_event(&ev("", CONTAINER_STARTED_EVENT), &mut seen), None);
    }
}
