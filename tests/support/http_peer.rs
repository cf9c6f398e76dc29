//! THE fake HTTP/1.1 peer: a server on a Unix socket in a private temp dir that runs a
//! handler per connection, for the HTTP client's and the Docker client's hostile-engine
//! tests (tests/http.rs, tests/hostile.rs).

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::support::TempDir;

/// A listening fake; dropping it removes its directory and socket.
pub struct Server {
    dir: TempDir,
    /// The socket's path.
    pub path: PathBuf,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
}

impl Server {
    /// Starts serving: `handler(stream, connection_index)` runs per accepted connection, in
    /// a thread of its own.
    pub fn start(handler: impl Fn(UnixStream, usize) + Send + Sync + 'static) -> Server {
        let dir = TempDir::new("http");
        let path = dir.join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let acc = accepted.clone();
        let handler = Arc::new(handler);
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(s) = s else { return };
                let i = acc.fetch_add(1, Ordering::SeqCst);
                let h = handler.clone();
                std::thread::spawn(move || h(s, i));
            }
        });
        Server {
            dir,
            path,
            accepted,
        }
    }
}

impl Server {
    /// The server's private directory (holding the socket; removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Reads one request head (up to the empty line); `None` at EOF.
pub fn read_head(s: &mut UnixStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut b = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => buf.push(b[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// A handler that answers the connection's first request head with `response`, then
/// closes it (so that every request is a connection of its own and the server's count
/// counts requests).
pub fn answer_all(response: String) -> impl Fn(UnixStream, usize) + Send + Sync + 'static {
    move |mut s: UnixStream, _| {
        if read_head(&mut s).is_some() {
            let _ = s.write_all(response.as_bytes());
        }
    }
}

/// A complete response that closes the connection.
pub fn response(status: &str, ctype: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}
