//! The CRI client's event-mode choice and evented path against a scripted fake CRI server
//! (a minimal HTTP/2 + gRPC peer on a Unix socket).
#![cfg(feature = "cri")]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use protobuf::{EnumOrUnknown, Message};
use whalewatcher::cri::api::{
    ContainerEventResponse, ContainerEventType, ContainerStatus, VersionResponse,
};
use whalewatcher::cri::{CriClient, MODE_EVENTED, MODE_RELIST};
use whalewatcher::grpc::frame::{self, Frame};
use whalewatcher::{EngineClient, Error, RawEventKind};

/// How the fake answers `GetContainerEvents`.
#[derive(Clone, Copy)]
enum Events {
    /// Streams the scripted events, then ends with status OK.
    Script,
    /// Trailers-only UNIMPLEMENTED (containerd 1.6).
    Unimplemented,
    /// Trailers-only OK: the stream ends at once.
    EndsAtOnce,
}

fn io_err(e: std::io::Error) -> Error {
    Error::connection("fake", &e)
}

/// HPACK literals without indexing (short strings only).
fn block(h: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in h {
        out.push(0);
        out.push(n.len() as u8);
        out.extend_from_slice(n.as_bytes());
        out.push(v.len() as u8);
        out.extend_from_slice(v.as_bytes());
    }
    out
}

fn headers(stream: u32, end: Option<&str>) -> Vec<u8> {
    let mut h = vec![(":status", "200"), ("content-type", "application/grpc")];
    let mut flags = frame::END_HEADERS;
    if let Some(status) = end {
        h.push(("grpc-status", status));
        flags |= frame::END_STREAM;
    }
    Frame::new(frame::HEADERS, flags, stream, block(&h)).encode()
}

fn trailers(stream: u32) -> Vec<u8> {
    Frame::new(
        frame::HEADERS,
        frame::END_HEADERS | frame::END_STREAM,
        stream,
        block(&[("grpc-status", "0")]),
    )
    .encode()
}

fn data(stream: u32, m: &[u8]) -> Vec<u8> {
    let mut v = vec![0];
    v.extend_from_slice(&(m.len() as u32).to_be_bytes());
    v.extend_from_slice(m);
    Frame::new(frame::DATA, 0, stream, v).encode()
}

fn event(id: &str, t: ContainerEventType, exit: Option<i32>) -> Vec<u8> {
    let mut e = ContainerEventResponse::new();
    e.container_id = id.into();
    e.container_event_type = EnumOrUnknown::new(t);
    e.created_at = 1_700_000_000_000_000_000;
    if let Some(code) = exit {
        let mut s = ContainerStatus::new();
        s.id = id.into();
        s.finished_at = 1_700_000_000_000_000_001;
        s.exit_code = code;
        e.containers_statuses.push(s);
    }
    e.write_to_bytes().unwrap()
}

fn script() -> Vec<Vec<u8>> {
    use ContainerEventType::*;
    vec![
        event("a", CONTAINER_CREATED_EVENT, None),
        event("a", CONTAINER_STARTED_EVENT, None),
        event("a", CONTAINER_STOPPED_EVENT, Some(3)),
        event("a", CONTAINER_DELETED_EVENT, None),
        event("c", CONTAINER_DELETED_EVENT, None),
    ]
}

fn answer(s: &mut UnixStream, stream: u32, path: &str, mode: Events) -> std::io::Result<()> {
    if path.ends_with("/GetContainerEvents") {
        match mode {
            Events::Unimplemented => s.write_all(&headers(stream, Some("12"))),
            Events::EndsAtOnce => s.write_all(&headers(stream, Some("0"))),
            Events::Script => {
                s.write_all(&headers(stream, None))?;
                for m in script() {
                    s.write_all(&data(stream, &m))?;
                }
                s.write_all(&trailers(stream))
            }
        }
    } else {
        let body = if path.ends_with("/Version") {
            let mut v = VersionResponse::new();
            v.runtime_name = "fake".into();
            v.runtime_version = "1.0".into();
            v.write_to_bytes().unwrap()
        } else {
            // ListPodSandbox, ListContainers: empty responses.
            Vec::new()
        };
        s.write_all(&headers(stream, None))?;
        s.write_all(&data(stream, &body))?;
        s.write_all(&trailers(stream))
    }
}

fn connection(mut s: UnixStream, mode: Events) {
    let mut pre = [0u8; 24];
    if s.read_exact(&mut pre).is_err() {
        return;
    }
    let _ = s.write_all(&frame::settings(&[]).encode());
    let _ = s.write_all(&Frame::new(frame::SETTINGS, frame::ACK, 0, vec![]).encode());
    let mut paths: HashMap<u32, String> = HashMap::new();
    const METHODS: [&str; 4] = [
        "GetContainerEvents",
        "Version",
        "ListPodSandbox",
        "ListContainers",
    ];
    loop {
        let f = match frame::read_frame(&mut s, 1 << 24, &io_err) {
            Ok(f) => f,
            Err(_) => return,
        };
        if f.kind == frame::HEADERS {
            let p = String::from_utf8_lossy(&f.payload).into_owned();
            let m = METHODS.iter().find(|m| p.contains(*m)).unwrap_or(&"Other");
            paths.insert(f.stream, format!("/runtime.v1.RuntimeService/{m}"));
        }
        if f.kind == frame::DATA && f.has(frame::END_STREAM) {
            let path = paths.remove(&f.stream).unwrap_or_default();
            if answer(&mut s, f.stream, &path, mode).is_err() {
                return;
            }
        }
    }
}

fn serve(mode: Events) -> (CriClient, PathBuf) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("ww-cri-fake-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("cri.sock");
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            match s {
                Ok(s) => {
                    std::thread::spawn(move || connection(s, mode));
                }
                Err(_) => return,
            }
        }
    });
    (
        CriClient::new(Some(&path)).with_relist_interval(Duration::from_millis(10)),
        dir,
    )
}

#[test]
fn evented_stream_maps_events_once_each() {
    let (cri, dir) = serve(Events::Script);
    assert_eq!(cri.info().unwrap().mode, "");
    let mut ev = cri.events().expect("events");
    assert_eq!(cri.info().unwrap().mode, MODE_EVENTED);
    assert_eq!(cri.info().unwrap().version, "fake 1.0");
    let mut got = Vec::new();
    while let Some(e) = ev.next_event().expect("event") {
        got.push((e.id, e.kind));
    }
    assert_eq!(
        got,
        vec![
            ("a".to_string(), RawEventKind::Started),
            (
                "a".to_string(),
                RawEventKind::Exited {
                    exit_code: Some(3),
                    oom: false
                }
            ),
            (
                "c".to_string(),
                RawEventKind::Exited {
                    exit_code: None,
                    oom: false
                }
            ),
        ]
    );
    // The mode is kept: the next stream does not probe again, and is evented too.
    assert!(cri.events().is_ok());
    assert_eq!(cri.info().unwrap().mode, MODE_EVENTED);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn unimplemented_or_ended_events_fall_back_to_relisting() {
    for mode in [Events::Unimplemented, Events::EndsAtOnce] {
        let (cri, dir) = serve(mode);
        let _ev = cri.events().expect("events");
        assert_eq!(cri.info().unwrap().mode, MODE_RELIST);
        assert_eq!(cri.list().unwrap(), vec![]);
        let _ = std::fs::remove_dir_all(dir);
    }
}
