//! THE fake gRPC peer: an HTTP/2 server on a Unix socket in a private temp dir, written
//! frame by frame, so that a test says exactly what the client gets: hostile scripts for
//! the gRPC client (tests/grpc_hostile.rs) and a fake CRI / containerd runtime answering
//! request by request (tests/cri_evented.rs).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use whalewatcher::grpc::frame::{self, Frame, Kind};
use whalewatcher::Error;

use crate::support::TempDir;

/// The error a fake turns a socket error into.
pub fn io_err(e: std::io::Error) -> Error {
    Error::connection("fake", &e)
}

/// An HPACK block of literals without indexing (short strings only).
pub fn block(h: &[(&str, &str)]) -> Vec<u8> {
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

/// The response HEADERS of `stream` (`:status 200`, `application/grpc`); with a
/// `grpc_status` a trailers-only response that ends the stream.
pub fn headers(stream: u32, grpc_status: Option<&str>) -> Frame {
    let mut h = vec![(":status", "200"), ("content-type", "application/grpc")];
    let mut flags = frame::END_HEADERS;
    if let Some(status) = grpc_status {
        h.push(("grpc-status", status));
        flags |= frame::END_STREAM;
    }
    Frame::new(Kind::Headers, flags, stream, block(&h))
}

/// The trailers that end `stream` with `grpc-status: status`.
pub fn trailers(stream: u32, status: &str) -> Frame {
    Frame::new(
        Kind::Headers,
        frame::END_HEADERS | frame::END_STREAM,
        stream,
        block(&[("grpc-status", status)]),
    )
}

/// A gRPC length-prefixed message (uncompressed).
pub fn message(m: &[u8]) -> Vec<u8> {
    let mut v = vec![0];
    v.extend_from_slice(&(m.len() as u32).to_be_bytes());
    v.extend_from_slice(m);
    v
}

/// A DATA frame of `stream` carrying one gRPC message.
pub fn data(stream: u32, m: &[u8]) -> Frame {
    Frame::new(Kind::Data, 0, stream, message(m))
}

/// Frames, encoded one after the other.
pub fn cat(frames: &[Frame]) -> Vec<u8> {
    frames.iter().flat_map(|f| f.encode()).collect()
}

/// A complete request the client sent: its stream, its raw HEADERS block and its body.
pub struct Request {
    pub stream: u32,
    pub headers: Vec<u8>,
    pub body: Vec<u8>,
}

impl Request {
    /// True when the request's header block mentions `what` (the fakes' HPACK decoder: the
    /// client sends the path as a literal, so a method name is found in the raw block).
    pub fn mentions(&self, what: &str) -> bool {
        String::from_utf8_lossy(&self.headers).contains(what)
    }
}

/// A listening fake peer. Dropping it removes its directory and socket.
pub struct Peer {
    _dir: TempDir,
    path: PathBuf,
}

impl Peer {
    fn bind(tag: &str) -> (Peer, UnixListener) {
        let dir = TempDir::new(tag);
        let path = dir.join("s.sock");
        let l = UnixListener::bind(&path).unwrap();
        (Peer { _dir: dir, path }, l)
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A one-connection peer that hands the connection to `talk` as it is (for peers
    /// that do not even speak HTTP/2).
    pub fn raw(talk: impl FnOnce(UnixStream) + Send + 'static) -> Peer {
        let (peer, l) = Peer::bind("grpc");
        std::thread::spawn(move || {
            if let Ok((s, _)) = l.accept() {
                talk(s);
            }
        });
        peer
    }

    /// A one-connection peer: sends `settings`, waits for the client's complete request,
    /// then writes `script` and holds the connection until the client leaves.
    pub fn once(settings: Frame, script: Vec<u8>) -> Peer {
        Peer::raw(move |mut s| {
            if !handshake(&mut s, &settings) {
                return;
            }
            if next_request(&mut s, &mut Pending::default()).is_none() {
                return;
            }
            let _ = s.write_all(&script);
            // Hold the connection open; drain until the client closes it.
            let _ = std::io::copy(&mut s, &mut std::io::sink());
        })
    }

    /// A peer serving every connection on its own thread: empty settings, then each
    /// complete request to `answer`, which writes the response; a connection ends when
    /// `answer` fails or the client leaves.
    pub fn serve(
        tag: &str,
        answer: impl Fn(&mut UnixStream, Request) -> std::io::Result<()> + Send + Sync + 'static,
    ) -> Peer {
        let (peer, l) = Peer::bind(tag);
        let answer = Arc::new(answer);
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                let answer = answer.clone();
                std::thread::spawn(move || {
                    if !handshake(&mut s, &frame::settings(&[])) {
                        return;
                    }
                    let mut pending = Pending::default();
                    while let Some(r) = next_request(&mut s, &mut pending) {
                        if answer(&mut s, r).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        peer
    }
}

/// Reads the client preface, sends `settings` and the ACK of the client's; false when the
/// client left.
fn handshake(s: &mut UnixStream, settings: &Frame) -> bool {
    let mut pre = [0u8; 24];
    if s.read_exact(&mut pre).is_err() {
        return false;
    }
    let _ = s.write_all(&settings.encode());
    let _ = s.write_all(&Frame::new(Kind::Settings, frame::ACK, 0, vec![]).encode());
    true
}

/// Header blocks and bodies of the requests not complete yet, by stream.
#[derive(Default)]
struct Pending {
    headers: HashMap<u32, Vec<u8>>,
    bodies: HashMap<u32, Vec<u8>>,
}

/// Reads frames until a request is complete (its DATA with END_STREAM); `None` when the
/// connection ends or breaks first.
fn next_request(s: &mut UnixStream, p: &mut Pending) -> Option<Request> {
    loop {
        let f = frame::read_frame(s, 1 << 24, &io_err).ok()?;
        match f.kind {
            Kind::Headers => {
                p.headers.insert(f.stream, f.payload);
            }
            Kind::Data => {
                let end = f.has(frame::END_STREAM);
                p.bodies
                    .entry(f.stream)
                    .or_default()
                    .extend_from_slice(&f.payload);
                if end {
                    return Some(Request {
                        stream: f.stream,
                        headers: p.headers.remove(&f.stream).unwrap_or_default(),
                        body: p.bodies.remove(&f.stream).unwrap_or_default(),
                    });
                }
            }
            _ => {}
        }
    }
}
