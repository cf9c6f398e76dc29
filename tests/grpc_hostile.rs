//! The gRPC client against hand-scripted, hostile HTTP/2 peers on a Unix socket.
#![cfg(feature = "grpc")]

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use support::grpc_peer::{block, cat, headers, message, trailers, Peer};

use whalewatcher::cancel::CancelSet;
use whalewatcher::error::GrpcCode;
use whalewatcher::grpc::frame::{self, Frame, Kind};
use whalewatcher::grpc::{Channel, ChannelOptions};
use whalewatcher::Error;

const T: Option<Duration> = Some(Duration::from_secs(5));

/// A one-connection peer ([`Peer::once`]) and a channel to it.
fn serve(settings: Frame, script: Vec<u8>) -> (Channel, Peer) {
    let peer = Peer::once(settings, script);
    (Channel::new(peer.path(), CancelSet::new()), peer)
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
    let framed = message(&body);
    let mut fs = vec![headers(1, None)];
    for c in framed.chunks(97) {
        fs.push(Frame::new(Kind::Data, 0, 1, c.to_vec()));
    }
    fs.push(trailers(1, "0"));
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
    let mut f = headers(1, None).encode();
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
    let f = cat(&[
        headers(1, None),
        Frame::new(Kind::Data, 0, 7, message(b"x")),
    ]);
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
        headers(1, None),
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
        headers(1, None),
        Frame::new(Kind::Data, 0, 1, message(b"one")),
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
        headers(1, None),
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
        headers(1, None),
        Frame::new(Kind::Data, 0, 1, message(b"a")),
        Frame::new(Kind::Ping, 0, 0, vec![1; 8]),
        Frame::new(Kind::Data, 0, 1, message(b"b")),
        trailers(1, "0"),
    ]);
    let (ch, _d) = serve(no_settings(), f);
    let mut s = ch.server_streaming("/a.B/C", &[], b"", T).unwrap();
    assert_eq!(s.next_message().unwrap().unwrap(), b"a");
    assert_eq!(s.next_message().unwrap().unwrap(), b"b");
    assert_eq!(s.next_message().unwrap(), None);
}

#[test]
fn oversize_message_is_refused() {
    let f = cat(&[
        headers(1, None),
        Frame::new(Kind::Data, 0, 1, message(&[0; 2000])),
    ]);
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
    let peer = Peer::raw(|mut s| {
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
        let _ = s.write_all(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    });
    let ch = Channel::new(peer.path(), CancelSet::new());
    let e = ch.unary("/a.B/C", &[], b"", T).unwrap_err();
    assert!(
        e.to_string()
            .contains("peer does not speak HTTP/2 (is this a gRPC socket?)"),
        "{e}"
    );
}

#[test]
fn cancel_aborts_a_blocked_stream_read() {
    let (ch, _d) = serve(no_settings(), headers(1, None).encode());
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
