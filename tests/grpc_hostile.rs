//! The gRPC client against hand-scripted, hostile HTTP/2 peers on a Unix socket.
#![cfg(feature = "grpc")]

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use whalewatcher::cancel::CancelSet;
use whalewatcher::error::GrpcCode;
use whalewatcher::grpc::frame::{self, Frame, Kind};
use whalewatcher::grpc::{Channel, ChannelOptions};
use whalewatcher::Error;

const T: Option<Duration> = Some(Duration::from_secs(5));

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

fn ok_headers() -> Frame {
    Frame::new(
        Kind::Headers,
        frame::END_HEADERS,
        1,
        block(&[(":status", "200"), ("content-type", "application/grpc")]),
    )
}

fn trailers(status: &str) -> Frame {
    Frame::new(
        Kind::Headers,
        frame::END_HEADERS | frame::END_STREAM,
        1,
        block(&[("grpc-status", status)]),
    )
}

fn msg(m: &[u8]) -> Vec<u8> {
    let mut v = vec![0];
    v.extend_from_slice(&(m.len() as u32).to_be_bytes());
    v.extend_from_slice(m);
    v
}

/// A one-connection fake server: sends `settings`, waits for the client's complete
/// request, then writes `script` and holds the connection until the client leaves.
fn serve(settings: Frame, script: Vec<u8>) -> (Channel, PathBuf) {
    let dir = std::env::temp_dir().join(format!("ww-grpc-{}-{}", std::process::id(), rand_ish()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut pre = [0u8; 24];
        if s.read_exact(&mut pre).is_err() {
            return;
        }
        let _ = s.write_all(&settings.encode());
        let _ = s.write_all(&Frame::new(Kind::Settings, frame::ACK, 0, vec![]).encode());
        loop {
            match frame::read_frame(&mut s, 1 << 24, &io_err) {
                Ok(f) if f.kind == Kind::Data && f.has(frame::END_STREAM) => break,
                Ok(_) => {}
                Err(_) => return,
            }
        }
        let _ = s.write_all(&script);
        // Hold the connection open; drain until the client closes it.
        let _ = std::io::copy(&mut s, &mut std::io::sink());
    });
    (Channel::new(&path, CancelSet::new()), dir)
}

fn rand_ish() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed) as u128
}

fn cat(frames: &[Frame]) -> Vec<u8> {
    frames.iter().flat_map(|f| f.encode()).collect()
}

fn no_settings() -> Frame {
    frame::settings(&[])
}

fn protocol(e: &Error, layer: &str, needle: &str) {
    match e {
        Error::Protocol { layer: l, message } => {
            assert_eq!(*l, layer, "{e}");
            assert!(message.contains(needle), "{e}");
        }
        _ => panic!("expected a {layer} protocol error, got {e:?}"),
    }
}

#[test]
fn good_response_split_across_many_data_frames() {
    let body: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    let framed = msg(&body);
    let mut fs = vec![ok_headers()];
    for c in framed.chunks(97) {
        fs.push(Frame::new(Kind::Data, 0, 1, c.to_vec()));
    }
    fs.push(trailers("0"));
    let (ch, _d) = serve(no_settings(), cat(&fs));
    assert_eq!(ch.unary("/a.B/C", &[], b"req", T).unwrap(), body);
}

#[test]
fn bad_frame_length() {
    let (ch, _d) = serve(
        no_settings(),
        Frame::new(Kind::Ping, 0, 0, vec![0; 7]).encode(),
    );
    protocol(
        &ch.unary("/a.B/C", &[], b"", T).unwrap_err(),
        "http2",
        "PING",
    );
}

#[test]
fn oversize_frame() {
    let mut f = ok_headers().encode();
    f.extend(Frame::new(Kind::Data, 0, 1, vec![0; 20_000]).encode());
    let (ch, _d) = serve(no_settings(), f);
    protocol(
        &ch.unary("/a.B/C", &[], b"", T).unwrap_err(),
        "http2",
        "exceeds",
    );
}

#[test]
fn bad_hpack_block() {
    let f = Frame::new(
        Kind::Headers,
        frame::END_HEADERS,
        1,
        vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
    );
    let (ch, _d) = serve(no_settings(), f.encode());
    protocol(&ch.unary("/a.B/C", &[], b"", T).unwrap_err(), "hpack", "");
    let f = Frame::new(Kind::Headers, frame::END_HEADERS, 1, vec![0x3f]);
    let (ch, _d) = serve(no_settings(), f.encode());
    protocol(&ch.unary("/a.B/C", &[], b"", T).unwrap_err(), "hpack", "");
}

#[test]
fn data_on_unknown_stream() {
    let f = cat(&[ok_headers(), Frame::new(Kind::Data, 0, 7, msg(b"x"))]);
    let (ch, _d) = serve(no_settings(), f);
    protocol(
        &ch.unary("/a.B/C", &[], b"", T).unwrap_err(),
        "http2",
        "idle stream 7",
    );
}

#[test]
fn continuation_out_of_order() {
    let f = Frame::new(Kind::Continuation, frame::END_HEADERS, 1, vec![]);
    let (ch, _d) = serve(no_settings(), f.encode());
    protocol(
        &ch.unary("/a.B/C", &[], b"", T).unwrap_err(),
        "http2",
        "CONTINUATION",
    );
}

#[test]
fn bad_padding() {
    let f = cat(&[
        ok_headers(),
        Frame::new(Kind::Data, frame::PADDED, 1, vec![200, 1, 2]),
    ]);
    let (ch, _d) = serve(no_settings(), f);
    protocol(
        &ch.unary("/a.B/C", &[], b"", T).unwrap_err(),
        "http2",
        "padding",
    );
}

#[test]
fn window_overflow() {
    let f = frame::window_update(0, 0x7fff_ffff).encode();
    let (ch, _d) = serve(no_settings(), f);
    protocol(
        &ch.unary("/a.B/C", &[], b"", T).unwrap_err(),
        "http2",
        "overflow",
    );
}

#[test]
fn peer_that_grants_no_window_hits_the_deadline() {
    // Initial stream window 0: the request body can never be sent.
    let (ch, _d) = serve(
        frame::settings(&[(frame::setting::INITIAL_WINDOW_SIZE, 0)]),
        vec![],
    );
    let t0 = Instant::now();
    let e = ch
        .unary(
            "/a.B/C",
            &[],
            b"some request",
            Some(Duration::from_millis(300)),
        )
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    assert!(t0.elapsed() < Duration::from_secs(10));
}

#[test]
fn goaway_mid_stream() {
    let mut ga = 0u32.to_be_bytes().to_vec();
    ga.extend(0u32.to_be_bytes());
    ga.extend(b"bye");
    let f = cat(&[
        ok_headers(),
        Frame::new(Kind::Data, 0, 1, msg(b"one")),
        Frame::new(Kind::GoAway, 0, 0, ga),
    ]);
    let (ch, _d) = serve(no_settings(), f);
    let mut s = ch.server_streaming("/a.B/C", &[], b"", T).unwrap();
    assert_eq!(s.next_message().unwrap().unwrap(), b"one");
    let e = s.next_message().unwrap_err();
    assert!(
        matches!(&e, Error::Connection { kind: std::io::ErrorKind::ConnectionAborted, message, .. } if message.contains("GOAWAY")),
        "{e:?}"
    );
}

#[test]
fn rst_stream() {
    let f = cat(&[
        ok_headers(),
        Frame::new(Kind::RstStream, 0, 1, 2u32.to_be_bytes().to_vec()),
    ]);
    let (ch, _d) = serve(no_settings(), f);
    let e = ch.unary("/a.B/C", &[], b"", T).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Grpc {
                code: GrpcCode::INTERNAL,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn trailers_only_error() {
    let f = Frame::new(
        Kind::Headers,
        frame::END_HEADERS | frame::END_STREAM,
        1,
        block(&[
            (":status", "200"),
            ("content-type", "application/grpc"),
            ("grpc-status", "5"),
            ("grpc-message", "no%20such%20thing"),
        ]),
    );
    let (ch, _d) = serve(no_settings(), f.encode());
    let mut s = ch.server_streaming("/a.B/C", &[], b"", T).unwrap();
    assert_eq!(
        s.next_message(),
        Err(Error::Grpc {
            code: GrpcCode::NOT_FOUND,
            message: "no such thing".into()
        })
    );
}

#[test]
fn stream_ends_ok() {
    let f = cat(&[
        ok_headers(),
        Frame::new(Kind::Data, 0, 1, msg(b"a")),
        Frame::new(Kind::Ping, 0, 0, vec![1; 8]),
        Frame::new(Kind::Data, 0, 1, msg(b"b")),
        trailers("0"),
    ]);
    let (ch, _d) = serve(no_settings(), f);
    let mut s = ch.server_streaming("/a.B/C", &[], b"", T).unwrap();
    assert_eq!(s.next_message().unwrap().unwrap(), b"a");
    assert_eq!(s.next_message().unwrap().unwrap(), b"b");
    assert_eq!(s.next_message().unwrap(), None);
}

#[test]
fn oversize_message_is_refused() {
    let f = cat(&[ok_headers(), Frame::new(Kind::Data, 0, 1, msg(&[0; 2000]))]);
    let (ch, _d) = serve(no_settings(), f);
    let ch = ch.with_options(ChannelOptions {
        max_message_size: 1000,
        ..Default::default()
    });
    protocol(
        &ch.unary("/a.B/C", &[], b"", T).unwrap_err(),
        "grpc",
        "exceeds",
    );
}

#[test]
fn http1_peer() {
    let dir = std::env::temp_dir().join(format!("ww-grpc-h1-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("h1.sock");
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
        let _ = s.write_all(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    });
    let ch = Channel::new(&path, CancelSet::new());
    let e = ch.unary("/a.B/C", &[], b"", T).unwrap_err();
    assert!(
        e.to_string()
            .contains("peer does not speak HTTP/2 (is this a gRPC socket?)"),
        "{e}"
    );
}

#[test]
fn cancel_aborts_a_blocked_stream_read() {
    let (ch, _d) = serve(no_settings(), ok_headers().encode());
    let path = ch.endpoint()[7..].to_string();
    let cancel = CancelSet::new();
    let ch = Channel::new(path, cancel.clone());
    let mut s = ch.server_streaming("/a.B/C", &[], b"", None).unwrap();
    let t = std::thread::spawn(move || {
        let t0 = Instant::now();
        (s.next_message(), t0)
    });
    std::thread::sleep(Duration::from_millis(100));
    let c0 = Instant::now();
    cancel.cancel();
    let (r, _) = t.join().unwrap();
    assert_eq!(r, Err(Error::Cancelled));
    assert!(c0.elapsed() < Duration::from_secs(5));
}

#[allow(dead_code)]
fn _unused(_: UnixStream) {}
