//! The gRPC client against the real containerd (WHALEWATCHER_CONTAINERD, a socket path).
#![cfg(feature = "grpc")]

mod support;

use std::time::Duration;

use whalewatcher::cancel::CancelSet;
use whalewatcher::error::GrpcCode;
use whalewatcher::grpc::Channel;
use whalewatcher::Error;

const NS: (&str, &str) = ("containerd-namespace", "default");

fn channel() -> Option<Channel> {
    let path = support::endpoint("WHALEWATCHER_CONTAINERD")?;
    Some(Channel::new(path, CancelSet::new()))
}

/// Reads field 1 (a length-delimited string) of a protobuf message by hand.
fn string_field(msg: &[u8], field: u8) -> Option<String> {
    let mut i = 0;
    while i < msg.len() {
        let key = msg[i];
        i += 1;
        if key & 7 != 2 {
            return None;
        }
        let len = msg[i] as usize;
        i += 1;
        if key >> 3 == field {
            return String::from_utf8(msg.get(i..i + len)?.to_vec()).ok();
        }
        i += len;
    }
    None
}

#[test]
fn version_matches_ctr() {
    let Some(ch) = channel() else { return };
    let resp = ch
        .unary(
            "/containerd.services.version.v1.Version/Version",
            &[],
            &[],
            Some(Duration::from_secs(5)),
        )
        .unwrap();
    let version = string_field(&resp, 1).expect("version field");
    let out = support::run("ctr", &["-a", &ch.endpoint()[7..], "version"]);
    assert!(
        out.contains(&version),
        "ctr says {out:?}, we got {version:?}"
    );
    // The pool reuses the connection: many calls in a row work.
    for _ in 0..20 {
        let again = ch
            .unary(
                "/containerd.services.version.v1.Version/Version",
                &[],
                &[],
                None,
            )
            .unwrap();
        assert_eq!(again, resp);
    }
}

#[test]
fn namespaces_list_and_unknown_method() {
    let Some(ch) = channel() else { return };
    let resp = ch
        .unary(
            "/containerd.services.namespaces.v1.Namespaces/List",
            &[NS],
            &[],
            Some(Duration::from_secs(5)),
        )
        .unwrap();
    assert!(!resp.is_empty());
    assert!(String::from_utf8_lossy(&resp).contains("default"));
    let err = ch
        .unary("/containerd.services.nope.v1.Nope/Nope", &[NS], &[], None)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Grpc {
                code: GrpcCode::UNIMPLEMENTED,
                ..
            }
        ),
        "{err:?}"
    );
    // The channel still works after an error.
    ch.unary(
        "/containerd.services.version.v1.Version/Version",
        &[],
        &[],
        None,
    )
    .unwrap();
}

#[test]
fn events_stream_and_cancel() {
    let Some(ch) = channel() else { return };
    let sock = ch.endpoint()[7..].to_string();
    let mut s = ch
        .server_streaming(
            "/containerd.services.events.v1.Events/Subscribe",
            &[],
            &[],
            None,
        )
        .unwrap();
    let label = format!(
        "whalewatcher-grpc-test={}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    support::run(
        "ctr",
        &[
            "-a",
            &sock,
            "-n",
            "default",
            "namespaces",
            "label",
            "default",
            &label,
        ],
    );
    let msg = s.next_message().unwrap().expect("an event");
    assert!(
        String::from_utf8_lossy(&msg).contains("/namespaces/update"),
        "{:?}",
        String::from_utf8_lossy(&msg)
    );
    // Cancel from another thread aborts the blocked read promptly.
    let cancel = CancelSet::new();
    let ch2 = Channel::new(&sock, cancel.clone());
    let mut s2 = ch2
        .server_streaming(
            "/containerd.services.events.v1.Events/Subscribe",
            &[],
            &[],
            None,
        )
        .unwrap();
    let t = std::thread::spawn(move || s2.next_message());
    std::thread::sleep(Duration::from_millis(100));
    cancel.cancel();
    let r = t.join().unwrap();
    assert_eq!(r, Err(Error::Cancelled));
    assert_eq!(ch2.unary("/x/y", &[], &[], None), Err(Error::Cancelled));
}

#[test]
fn docker_socket_is_not_http2() {
    let Some(d) = support::endpoint("WHALEWATCHER_DOCKER") else {
        return;
    };
    let ch = Channel::new(d.trim_start_matches("unix://"), CancelSet::new());
    let err = ch
        .unary("/a.B/C", &[], &[], Some(Duration::from_secs(5)))
        .unwrap_err();
    assert!(err.to_string().contains("does not speak HTTP/2"), "{err}");
}

#[test]
fn missing_socket_is_connection_error() {
    let ch = Channel::new("/nonexistent/grpc.sock", CancelSet::new());
    let err = ch.unary("/a.B/C", &[], &[], None).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Connection {
                kind: std::io::ErrorKind::NotFound,
                ..
            }
        ),
        "{err:?}"
    );
}
