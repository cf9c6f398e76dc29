//! The HTTP/1.1 client against in-process fake servers on Unix sockets.
#![cfg(feature = "docker")]

mod support;

use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::http_peer::{read_head, Server};
use whalewatcher::http::{Endpoint, HttpClient, HttpOptions};
use whalewatcher::Error;

fn client(f: &Server, timeout: Duration) -> HttpClient {
    HttpClient::new(
        Endpoint::Unix(f.path.clone()),
        HttpOptions {
            timeout: Some(timeout),
            ..HttpOptions::default()
        },
    )
}

fn ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn keep_alive_connections_are_reused() {
    let f = Server::start(|mut s, _| {
        while let Some(req) = read_head(&mut s) {
            let path = req.split(' ').nth(1).unwrap_or("").to_string();
            s.write_all(ok(&path).as_bytes()).unwrap();
        }
    });
    let c = client(&f, Duration::from_secs(5));
    for i in 0..5 {
        let r = c.get(&format!("/n/{i}")).unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.body, format!("/n/{i}").as_bytes());
    }
    assert_eq!(f.accepted.load(Ordering::SeqCst), 1);
    assert_eq!(c.idle_connections(), 1);
}

#[test]
fn connection_close_and_close_delimited_bodies_are_not_reused() {
    let f = Server::start(|mut s, i| {
        if read_head(&mut s).is_some() {
            if i % 2 == 0 {
                s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi")
                    .unwrap();
            } else {
                s.write_all(b"HTTP/1.1 200 OK\r\n\r\nuntil the end")
                    .unwrap();
            }
        }
    });
    let c = client(&f, Duration::from_secs(5));
    assert_eq!(c.get("/a").unwrap().body, b"hi");
    assert_eq!(c.idle_connections(), 0);
    assert_eq!(c.get("/b").unwrap().body, b"until the end");
    assert_eq!(c.idle_connections(), 0);
    assert_eq!(f.accepted.load(Ordering::SeqCst), 2);
}

#[test]
fn a_stale_pooled_connection_is_replaced_transparently() {
    // Answers one request per connection, then closes without saying so.
    let f = Server::start(|mut s, i| {
        if read_head(&mut s).is_some() {
            s.write_all(ok(&format!("conn{i}")).as_bytes()).unwrap();
        }
    });
    let c = client(&f, Duration::from_secs(5));
    assert_eq!(c.get("/").unwrap().body, b"conn0");
    assert_eq!(c.get("/").unwrap().body, b"conn1");
    assert_eq!(f.accepted.load(Ordering::SeqCst), 2);
}

#[test]
fn chunked_bodies_split_byte_by_byte() {
    let f = Server::start(|mut s, _| {
        while read_head(&mut s).is_some() {
            let resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\n";
            for b in resp.iter() {
                s.write_all(&[*b]).unwrap();
                s.flush().unwrap();
            }
        }
    });
    let c = client(&f, Duration::from_secs(5));
    for _ in 0..2 {
        let r = c.get("/").unwrap();
        assert_eq!(r.body, b"Wikipedia in\r\n\r\nchunks.");
    }
    assert_eq!(
        f.accepted.load(Ordering::SeqCst),
        1,
        "drained chunked conn reused"
    );
}

fn one_shot(resp: &'static [u8]) -> Server {
    Server::start(move |mut s, _| {
        if read_head(&mut s).is_some() {
            let _ = s.write_all(resp);
        }
    })
}

fn expect_protocol(resp: &'static [u8]) {
    let f = one_shot(resp);
    let c = client(&f, Duration::from_secs(5));
    match c.get("/") {
        Err(Error::Protocol { layer: "http", .. }) => {}
        other => panic!(
            "{:?}: expected an http protocol error, got {other:?}",
            String::from_utf8_lossy(resp)
        ),
    }
}

#[test]
fn malformed_heads_are_protocol_errors() {
    expect_protocol(b"SSH-2.0-OpenSSH_9.2\r\n\r\n");
    expect_protocol(b"HTTP/1.1 2000 OK\r\n\r\n");
    expect_protocol(b"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n");
    expect_protocol(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n");
    expect_protocol(b"HTTP/1.1 200 OK\r\nContent-Len");
    expect_protocol(b"");
}

#[test]
fn bad_chunking_and_truncated_bodies_are_protocol_errors() {
    expect_protocol(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc");
    expect_protocol(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab");
    expect_protocol(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    expect_protocol(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1FFFFFFFFFFFFFFFF\r\n");
    expect_protocol(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n");
    expect_protocol(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n");
}

#[test]
fn oversize_heads_and_bodies_are_refused() {
    let f = Server::start(|mut s, _| {
        if read_head(&mut s).is_some() {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nX-Big: ");
            let junk = vec![b'a'; 1024];
            for _ in 0..100 {
                if s.write_all(&junk).is_err() {
                    return;
                }
            }
        }
    });
    let c = client(&f, Duration::from_secs(5));
    assert!(matches!(c.get("/"), Err(Error::Protocol { .. })));

    let f = Server::start(|mut s, _| {
        if read_head(&mut s).is_some() {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n");
        }
    });
    let c = HttpClient::new(
        Endpoint::Unix(f.path.clone()),
        HttpOptions {
            max_body: 1000,
            ..HttpOptions::default()
        },
    );
    assert!(matches!(c.get("/"), Err(Error::Protocol { .. })));
}

#[test]
fn an_html_500_is_a_response_with_a_readable_message() {
    let f = one_shot(
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/html\r\nContent-Length: 46\r\n\r\n<html><body>upstream exploded</body></html>\r\n\r\n",
    );
    let c = client(&f, Duration::from_secs(5));
    let r = c.get("/").unwrap();
    assert_eq!(r.status(), 500);
    assert!(!r.is_success());
    assert!(r.error_message().contains("upstream exploded"));
}

#[test]
fn a_server_that_never_answers_times_out() {
    let f = Server::start(|mut s, _| {
        let _ = read_head(&mut s);
        let mut b = [0u8; 1];
        let _ = s.read(&mut b); // hold the connection open, say nothing
    });
    let c = client(&f, Duration::from_millis(200));
    match c.get("/") {
        Err(Error::Timeout { what }) => assert!(what.contains("GET /"), "{what}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn a_missing_socket_is_a_connection_error() {
    let c = HttpClient::new(
        Endpoint::Unix("/nonexistent/ww.sock".into()),
        HttpOptions::default(),
    );
    match c.get("/_ping") {
        Err(Error::Connection { endpoint, kind, .. }) => {
            assert_eq!(endpoint, "unix:///nonexistent/ww.sock");
            assert_eq!(kind, std::io::ErrorKind::NotFound);
        }
        other => panic!("expected a connection error, got {other:?}"),
    }
}

#[test]
fn a_stream_delivers_chunks_as_they_come_and_cancel_unblocks_it() {
    let f = Server::start(|mut s, _| {
        if read_head(&mut s).is_some() {
            s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                .unwrap();
            s.write_all(b"6\r\n{\"a\":1\r\n").unwrap();
            s.write_all(b"2\r\n}\n\r\n").unwrap();
            // then hang forever, keeping the connection open
            let mut b = [0u8; 1];
            let _ = s.read(&mut b);
        }
    });
    let c = Arc::new(client(&f, Duration::from_millis(300)));
    let mut body = c.stream("/events").unwrap();
    assert_eq!(body.head().status, 200);
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while !got.ends_with(b"\n") {
        let n = body.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"{\"a\":1}\n");

    // The next read blocks (no read timeout on streams, although the client has 300 ms).
    let c2 = c.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        let at = Instant::now();
        c2.cancel();
        at
    });
    let err = body.read(&mut buf).unwrap_err();
    let returned = Instant::now();
    let cancelled_at = t.join().unwrap();
    assert_eq!(body.error(&err), Error::Cancelled);
    assert!(
        returned >= cancelled_at,
        "read returned before cancel: timeout?"
    );
    assert!(matches!(c.get("/"), Err(Error::Cancelled)));
}

#[test]
fn cancel_unblocks_a_request_waiting_for_its_response() {
    let f = Server::start(|mut s, _| {
        let _ = read_head(&mut s);
        let mut b = [0u8; 1];
        let _ = s.read(&mut b);
    });
    let c = Arc::new(client(&f, Duration::from_secs(60)));
    let c2 = c.clone();
    let t = std::thread::spawn(move || c2.get("/slow"));
    whalewatcher_wait(|| f.accepted.load(Ordering::SeqCst) == 1);
    std::thread::sleep(Duration::from_millis(50));
    c.cancel();
    assert_eq!(t.join().unwrap().unwrap_err(), Error::Cancelled);
}

fn whalewatcher_wait(cond: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting");
        std::thread::sleep(Duration::from_millis(10));
    }
}
