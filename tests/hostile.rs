//! Hostile endpoints: a missing socket, a regular file or a directory instead of a socket,
//! permission denied (as an unprivileged user in a child process), a socket that accepts
//! and never answers, each client pointed at the other engine's socket, and HTTP servers
//! that answer 500 or HTML. Each must end in a clear typed error within the configured
//! timeouts; through a Watcher, health shows the error, the watcher keeps retrying, and
//! `close()` returns promptly.
#![cfg(all(feature = "docker", feature = "containerd"))]

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use support::http_peer::{answer_all, read_head, response, Server};
use support::TempDir;
use whalewatcher::containerd::ContainerdClient;
use whalewatcher::docker::DockerClient;
use whalewatcher::{EngineClient, Error, ExponentialBackoff, Health, Watcher, WatcherOptions};

const WAIT: Duration = Duration::from_secs(30);

fn url(p: &Path) -> String {
    format!("unix://{}", p.display())
}

fn docker(p: &Path, timeout: Duration) -> DockerClient {
    DockerClient::new(Some(&url(p)))
        .unwrap()
        .with_timeout(timeout)
}

fn fast() -> WatcherOptions {
    WatcherOptions::default().with_retry(|| {
        ExponentialBackoff::new(Duration::from_millis(50), Duration::from_millis(300))
    })
}

/// Runs a watcher on `engine` until its health shows an error `pred` accepts, checks that
/// it keeps retrying (`attempts()` grows by 2, when given), then closes it within 10 s.
fn watch_fails(
    engine: impl EngineClient,
    what: &str,
    pred: impl Fn(&Error) -> bool,
    attempts: Option<&dyn Fn() -> usize>,
) -> Error {
    let w = Watcher::new(engine, fast());
    let end = Instant::now() + WAIT;
    let err = loop {
        match w.health() {
            Health::Reconnecting { last_error, .. } if pred(&last_error) => break last_error,
            Health::Failed(e) => panic!("{what}: watcher gave up: {e}"),
            Health::Synced => panic!("{what}: watcher synced"),
            h => {
                if Instant::now() >= end {
                    panic!("{what}: no matching error in health; last {h:?}");
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if let Some(n) = attempts {
        let before = n();
        support::wait_until(WAIT, &format!("{what}: retries"), || n() >= before + 2);
    }
    assert!(matches!(w.health(), Health::Reconnecting { .. }));
    close_promptly(w, what);
    err
}

fn close_promptly(w: Watcher, what: &str) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        w.close();
        let _ = tx.send(());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{what}: close() hangs"));
}

fn connection(e: &Error, kind: std::io::ErrorKind) -> bool {
    matches!(e, Error::Connection { kind: k, .. } if *k == kind)
}

#[test]
fn missing_socket_is_a_connection_error_and_the_watcher_attaches_when_it_appears() {
    let dir = TempDir::new("hostile-missing");
    let path = dir.join("nope.sock");
    let e = docker(&path, Duration::from_secs(2)).list().unwrap_err();
    assert!(connection(&e, std::io::ErrorKind::NotFound), "{e:?}");
    assert!(e.to_string().contains("no socket at that path"), "{e}");
    let e = ContainerdClient::new(path.to_str())
        .unwrap()
        .list()
        .unwrap_err();
    assert!(connection(&e, std::io::ErrorKind::NotFound), "{e:?}");
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    watch_fails(
        docker(&path, Duration::from_secs(2)),
        "missing docker socket",
        |e| connection(e, std::io::ErrorKind::NotFound),
        None,
    );
    watch_fails(
        ContainerdClient::new(path.to_str()).unwrap(),
        "missing containerd socket",
        |e| connection(e, std::io::ErrorKind::NotFound),
        None,
    );
    // Started before its engine: attaches as soon as the socket appears.
    let Some(real) = support::endpoint("WHALEWATCHER_DOCKER") else {
        return;
    };
    let w = Watcher::new(docker(&path, Duration::from_secs(5)), fast());
    support::wait_until(WAIT, "Reconnecting", || {
        matches!(w.health(), Health::Reconnecting { .. })
    });
    std::os::unix::fs::symlink(real.trim_start_matches("unix://"), &path).unwrap();
    w.wait_ready(WAIT).expect("attaches once the socket exists");
    close_promptly(w, "attached");
}

#[test]
fn a_regular_file_or_a_directory_is_refused() {
    let dir = TempDir::new("hostile-notsock");
    let file = dir.join("file");
    std::fs::write(&file, b"not a socket").unwrap();
    let sub = dir.join("subdir");
    std::fs::create_dir(&sub).unwrap();
    for p in [&file, &sub] {
        let e = docker(p, Duration::from_secs(2)).list().unwrap_err();
        assert!(
            connection(&e, std::io::ErrorKind::ConnectionRefused),
            "{}: {e:?}",
            p.display()
        );
        assert!(e.to_string().contains("nobody listens"), "{e}");
        let e = ContainerdClient::new(p.to_str())
            .unwrap()
            .list()
            .unwrap_err();
        assert!(
            connection(&e, std::io::ErrorKind::ConnectionRefused),
            "{}: {e:?}",
            p.display()
        );
        watch_fails(
            docker(p, Duration::from_secs(2)),
            "not a socket",
            |e| connection(e, std::io::ErrorKind::ConnectionRefused),
            None,
        );
    }
}

/// Child half of [`permission_denied_as_an_unprivileged_user`]: runs only when the parent
/// re-executes this test binary as user nobody with `WW_PERM_CHILD` set.
#[test]
fn permission_child() {
    let Ok(path) = std::env::var("WW_PERM_CHILD") else {
        return;
    };
    let path = PathBuf::from(path);
    let e = docker(&path, Duration::from_secs(2)).list().unwrap_err();
    assert!(
        connection(&e, std::io::ErrorKind::PermissionDenied),
        "{e:?}"
    );
    assert!(e.to_string().contains("permission denied"), "{e}");
    let e = ContainerdClient::new(path.to_str())
        .unwrap()
        .list()
        .unwrap_err();
    assert!(
        connection(&e, std::io::ErrorKind::PermissionDenied),
        "{e:?}"
    );
    watch_fails(
        docker(&path, Duration::from_secs(2)),
        "permission denied",
        |e| connection(e, std::io::ErrorKind::PermissionDenied),
        None,
    );
    println!("WW_PERM_CHILD_OK");
}

/// Root bypasses file permissions, so the client runs as `nobody` in a child process (this
/// test binary re-executed by `setpriv`) against a socket with mode 0600 owned by root.
#[test]
fn permission_denied_as_an_unprivileged_user() {
    use std::os::unix::fs::PermissionsExt;
    if std::process::Command::new("setpriv")
        .arg("--help")
        .output()
        .is_err()
    {
        if support::engines_required() {
            panic!("setpriv is missing");
        }
        eprintln!("*** SKIPPING: no setpriv ***");
        return;
    }
    let s = Server::start(answer_all(response("200 OK", "text/plain", "OK")));
    std::fs::set_permissions(s.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&s.path, std::fs::Permissions::from_mode(0o600)).unwrap();
    // A copy of this test binary that nobody can run wherever the target dir lives.
    let exe = s.dir().join("hostile-test");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&exe)
        .args(["--exact", "permission_child", "--nocapture"])
        .env("WW_PERM_CHILD", &s.path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("WW_PERM_CHILD_OK"),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.accepted.load(Ordering::SeqCst), 0, "nobody got through");
}

#[test]
fn a_socket_that_never_answers_times_out() {
    let s = Server::start(|mut st: UnixStream, _| {
        let mut sink = [0u8; 4096];
        while matches!(st.read(&mut sink), Ok(n) if n > 0) {} // reads, never answers
    });
    let t0 = Instant::now();
    let e = docker(&s.path, Duration::from_millis(500))
        .list()
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    assert!(e.to_string().starts_with("timed out"), "{e}");
    assert!(t0.elapsed() < WAIT, "no hang");
    let e = ContainerdClient::new(s.path.to_str())
        .unwrap()
        .list()
        .unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    let acc = s.accepted.clone();
    watch_fails(
        docker(&s.path, Duration::from_millis(300)),
        "silent docker socket",
        |e| matches!(e, Error::Timeout { .. }),
        Some(&|| acc.load(Ordering::SeqCst)),
    );
    watch_fails(
        ContainerdClient::new(s.path.to_str()).unwrap(),
        "silent containerd socket",
        |e| matches!(e, Error::Timeout { .. }),
        None,
    );
}

#[test]
fn docker_client_on_the_containerd_socket() {
    let Some(p) = support::endpoint("WHALEWATCHER_CONTAINERD") else {
        return;
    };
    let path = PathBuf::from(p);
    // containerd's gRPC server resets a connection whose first bytes are not the HTTP/2
    // preface (or answers with a bare close): a connection error naming the socket.
    let hung_up = |e: &Error| {
        connection(e, std::io::ErrorKind::ConnectionReset)
            || matches!(e, Error::Protocol { layer: "http", .. })
    };
    let e = docker(&path, Duration::from_secs(5)).list().unwrap_err();
    eprintln!("docker client on containerd: {e}");
    assert!(hung_up(&e), "{e:?}");
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    watch_fails(
        docker(&path, Duration::from_secs(5)),
        "docker client on containerd",
        hung_up,
        None,
    );
}

#[test]
fn containerd_client_on_the_docker_socket() {
    let Some(u) = support::endpoint("WHALEWATCHER_DOCKER") else {
        return;
    };
    let path = PathBuf::from(u.trim_start_matches("unix://"));
    let e = ContainerdClient::new(path.to_str())
        .unwrap()
        .list()
        .unwrap_err();
    eprintln!("containerd client on docker: {e}");
    assert!(matches!(e, Error::Protocol { layer: "http2", .. }), "{e:?}");
    watch_fails(
        ContainerdClient::new(path.to_str()).unwrap(),
        "containerd client on docker",
        |e| matches!(e, Error::Protocol { layer: "http2", .. }),
        None,
    );
}

/// Answers `/_ping` like a Docker engine and every other request with `other`.
fn engine_answering(other: String) -> impl Fn(UnixStream, usize) + Send + Sync + 'static {
    let ping = "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: text/plain\r\n\
                Content-Length: 2\r\nConnection: close\r\n\r\nOK"
        .to_string();
    move |mut s: UnixStream, _| {
        let Some(head) = read_head(&mut s) else {
            return;
        };
        let r = if head.starts_with("GET /_ping") {
            &ping
        } else {
            &other
        };
        let _ = s.write_all(r.as_bytes());
    }
}

#[test]
fn an_engine_answering_500_is_a_status_error_with_its_message() {
    let body = r#"{"message":"engine on fire"}"#;
    let s = Server::start(engine_answering(response(
        "500 Internal Server Error",
        "application/json",
        body,
    )));
    let e = docker(&s.path, Duration::from_secs(2)).list().unwrap_err();
    eprintln!("500: {e}");
    assert_eq!(
        e,
        Error::Status {
            code: 500,
            message: "engine on fire".into()
        }
    );
    assert_eq!(e.to_string(), "engine error (status 500): engine on fire");
    let acc = s.accepted.clone();
    watch_fails(
        docker(&s.path, Duration::from_secs(2)),
        "500",
        |e| matches!(e, Error::Status { code: 500, .. }),
        Some(&|| acc.load(Ordering::SeqCst)),
    );
    // A 500 already on /_ping: not a Docker API at all.
    let s = Server::start(answer_all(response(
        "500 Internal Server Error",
        "application/json",
        body,
    )));
    let e = docker(&s.path, Duration::from_secs(2)).list().unwrap_err();
    assert!(
        matches!(
            e,
            Error::Protocol {
                layer: "docker",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("engine on fire"), "{e}");
}

#[test]
fn an_html_502_shows_a_readable_excerpt() {
    let html =
        "<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>";
    let s = Server::start(engine_answering(response(
        "502 Bad Gateway",
        "text/html",
        html,
    )));
    let e = docker(&s.path, Duration::from_secs(2)).list().unwrap_err();
    eprintln!("html 502: {e}");
    assert!(matches!(e, Error::Status { code: 502, .. }), "{e:?}");
    assert!(e.to_string().contains("<h1>Bad Gateway</h1>"), "{e}");
    let s = Server::start(answer_all(response("502 Bad Gateway", "text/html", html)));
    let e = docker(&s.path, Duration::from_secs(2)).list().unwrap_err();
    eprintln!("html 502 on ping: {e}");
    assert!(
        matches!(
            e,
            Error::Protocol {
                layer: "docker",
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("Bad Gateway"), "{e}");
}

#[test]
fn an_html_200_is_a_json_protocol_error_with_the_body_excerpt() {
    let s = Server::start(engine_answering(response(
        "200 OK",
        "text/html",
        "<html><body>Welcome to nginx!</body></html>",
    )));
    let e = docker(&s.path, Duration::from_secs(2)).list().unwrap_err();
    eprintln!("html 200: {e}");
    assert!(matches!(e, Error::Protocol { layer: "json", .. }), "{e:?}");
    assert!(e.to_string().contains("Welcome to nginx"), "{e}");
    let acc = s.accepted.clone();
    watch_fails(
        docker(&s.path, Duration::from_secs(2)),
        "html 200",
        |e| matches!(e, Error::Protocol { .. }),
        Some(&|| acc.load(Ordering::SeqCst)),
    );
}
