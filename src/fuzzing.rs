//! Entry points for the fuzz targets under fuzz/ (not a stable API). Each feeds arbitrary
//! bytes to one parser of peer input; none may panic, hang or allocate without bound.
#![forbid(unsafe_code)]

#[cfg(any(feature = "docker", feature = "containerd"))]
use std::sync::Arc;

/// The HTTP/1.1 response head parser and body framing (Content-Length, chunked, close).
#[cfg(feature = "docker")]
pub fn http_response(data: &[u8]) {
    let mut r = std::io::BufReader::new(data);
    if let Ok(Some(head)) = crate::http::head::read_head(&mut r) {
        if let Ok((mut framing, _)) = crate::http::body::framing("GET", &head) {
            let _ = crate::http::body::read_all(&mut framing, &mut r, 1 << 20);
        }
    }
}

/// The Docker event stream decoder (JSON objects split anywhere).
#[cfg(feature = "docker")]
pub fn docker_events(data: &[u8]) {
    fn map(_: &&[u8], e: &std::io::Error) -> crate::Error {
        crate::Error::protocol("io", e.to_string())
    }
    let mut d = crate::docker::events::EventDecoder::new(data, map);
    use crate::engine::EventStream;
    for _ in 0..10_000 {
        match d.next_event() {
            Ok(Some(_)) => {}
            _ => break,
        }
    }
}

/// A Docker container list body (JSON, or garbage quoted in the error) to ids.
#[cfg(feature = "docker")]
pub fn docker_list(data: &[u8]) {
    let _ = crate::docker::json::list_ids(data);
}

/// Docker inspect JSON to a container.
#[cfg(feature = "docker")]
pub fn docker_inspect(data: &[u8]) {
    if let Ok(v) = crate::docker::json::parse_json(data, "fuzz") {
        let engine = Arc::new(crate::EngineRef::default());
        let _ = crate::docker::inspect::container_from_inspect(&v, "fuzz", &engine, None);
    }
}

/// HTTP/2 frames, their padding, HPACK header blocks and gRPC message framing.
#[cfg(feature = "grpc")]
pub fn http2_frames(data: &[u8]) {
    let mut r = data;
    let map = |e: std::io::Error| crate::Error::protocol("io", e.to_string());
    let mut hpack = crate::grpc::hpack::HeaderDecoder::new(64 * 1024);
    let mut msgs = crate::grpc::message::MessageDecoder::new(1 << 20);
    for _ in 0..10_000 {
        let Ok(f) = crate::grpc::frame::read_frame(&mut r, 16_384, &map) else {
            break;
        };
        let Ok(content) = f.content() else { continue };
        match f.kind {
            crate::grpc::frame::Kind::Headers | crate::grpc::frame::Kind::Continuation => {
                let _ = hpack.decode(content);
            }
            crate::grpc::frame::Kind::Data => {
                msgs.push(content);
                while let Ok(Some(_)) = msgs.next() {}
            }
            _ => {}
        }
    }
}

/// HPACK header block decoding alone.
#[cfg(feature = "grpc")]
pub fn hpack(data: &[u8]) {
    let _ = crate::grpc::hpack::HeaderDecoder::new(64 * 1024).decode(data);
}

/// containerd event envelopes (protobuf, with `Any` payloads) to raw events.
#[cfg(feature = "containerd")]
pub fn containerd_envelope(data: &[u8]) {
    use protobuf::Message;
    if let Ok(env) = crate::proto::containerd_events::Envelope::parse_from_bytes(data) {
        let _ = crate::containerd::events::Translator::new(Vec::new()).translate(&env);
    }
}

/// Splits fuzz input in two at the position its first byte names.
#[cfg(feature = "containerd")]
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((&at, rest)) = data.split_first() else {
        return (&[], &[]);
    };
    rest.split_at(usize::from(at).min(rest.len()))
}

/// A containerd listing (ListTasksResponse, ListContainersResponse; protobuf) to
/// containers, joined by id as the client does.
#[cfg(feature = "containerd")]
pub fn containerd_records(data: &[u8]) {
    use crate::proto::containerd_containers::ListContainersResponse;
    use crate::proto::containerd_tasks::ListTasksResponse;
    use protobuf::Message;
    let (tasks, records) = split(data);
    let (Ok(tasks), Ok(records)) = (
        ListTasksResponse::parse_from_bytes(tasks),
        ListContainersResponse::parse_from_bytes(records),
    ) else {
        return;
    };
    let engine = Arc::new(crate::EngineRef::default());
    for t in &tasks.tasks {
        let id = crate::containerd::api::task_container_id(t);
        for c in records.containers.iter().filter(|c| c.id == id) {
            let _ = crate::containerd::convert::to_container("fuzz", c, t, &engine);
        }
    }
}

/// CRI messages (protobuf): a container event to a raw event, a verbose container
/// status to its PID (JSON inside), and the container and sandbox lists.
#[cfg(feature = "cri")]
pub fn cri_messages(data: &[u8]) {
    use crate::proto::cri_api::{
        ContainerEventResponse, ContainerStatusResponse, ListContainersResponse,
        ListPodSandboxResponse,
    };
    use protobuf::Message;
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            if let Ok(ev) = ContainerEventResponse::parse_from_bytes(rest) {
                let mut exited = std::collections::HashSet::new();
                let _ = crate::cri::events::map_event(&ev, &mut exited);
                let _ = crate::cri::events::map_event(&ev, &mut exited);
            }
        }
        1 => {
            if let Ok(st) = ContainerStatusResponse::parse_from_bytes(rest) {
                let _ = crate::cri::convert::pid_from_info("fuzz", &st.info);
            }
        }
        2 => {
            let _ = ListContainersResponse::parse_from_bytes(rest);
        }
        _ => {
            let _ = ListPodSandboxResponse::parse_from_bytes(rest);
        }
    }
}
