//! Entry points for the fuzz targets under fuzz/ (not a stable API). Each feeds arbitrary
//! bytes to one parser of peer input; none may panic, hang or allocate without bound.
#![forbid(unsafe_code)]

#[cfg(feature = "docker")]
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

/// Docker inspect JSON to a container.
#[cfg(feature = "docker")]
pub fn docker_inspect(data: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
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
            crate::grpc::frame::HEADERS | crate::grpc::frame::CONTINUATION => {
                let _ = hpack.decode(content);
            }
            crate::grpc::frame::DATA => {
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
