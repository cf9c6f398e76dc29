//! The blocking HTTP/1.1 client: request writing, keep-alive reuse, timeouts, streaming.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use crate::engine::CancelSet;
use crate::error::{Error, Result};
use crate::http::body::{framing, read_all};
use crate::http::conn::{Conn, Pool};
use crate::http::endpoint::Endpoint;
use crate::http::head::{read_head, ResponseHead};
use crate::http::malformed::{malformed, map_io};
use crate::http::response::{BodyReader, Response};

/// Tunables of an [`HttpClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpOptions {
    /// How long a TCP connect may take (Unix socket connects never wait on a live peer).
    pub connect_timeout: Duration,
    /// Read and write timeout of each socket operation of a request; `None` waits forever.
    /// Streaming bodies ([`HttpClient::stream`]) use it only until the response head.
    pub timeout: Option<Duration>,
    /// Largest body [`HttpClient::get`] accepts.
    pub max_body: usize,
    /// Most idle keep-alive connections kept for reuse.
    pub max_idle: usize,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            connect_timeout: Duration::from_secs(5),
            timeout: Some(Duration::from_secs(30)),
            max_body: 64 * 1024 * 1024,
            max_idle: 8,
        }
    }
}

/// A blocking HTTP/1.1 client of one endpoint (Unix socket or plain TCP; no TLS).
///
/// Safe to share between threads: each request takes its own connection, reusing idle
/// keep-alive connections whose previous body was read completely. Every socket is
/// registered in the client's [`CancelSet`]: [`HttpClient::cancel`] aborts blocked reads
/// and makes later requests fail with [`Error::Cancelled`].
pub struct HttpClient {
    endpoint: Endpoint,
    url: String,
    opts: HttpOptions,
    pool: Pool,
    cancel: CancelSet,
}

impl HttpClient {
    /// A client of `endpoint`; does not connect yet.
    pub fn new(endpoint: Endpoint, opts: HttpOptions) -> Self {
        Self::with_cancel(endpoint, opts, CancelSet::new())
    }

    /// A client whose sockets are registered in an existing `cancel` set.
    pub fn with_cancel(endpoint: Endpoint, opts: HttpOptions, cancel: CancelSet) -> Self {
        HttpClient {
            url: endpoint.to_string(),
            pool: Pool::new(opts.max_idle),
            endpoint,
            opts,
            cancel,
        }
    }

    /// The endpoint this client talks to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The options in use.
    pub fn options(&self) -> &HttpOptions {
        &self.opts
    }

    /// The set all of this client's sockets are registered in.
    pub fn cancel_set(&self) -> &CancelSet {
        &self.cancel
    }

    /// Aborts every blocked request and stream; later requests fail with
    /// [`Error::Cancelled`].
    pub fn cancel(&self) {
        self.cancel.cancel();
        self.pool.clear();
    }

    /// Number of idle keep-alive connections (for tests and diagnostics).
    #[cfg(any(test, feature = "unstable"))]
    pub fn idle_connections(&self) -> usize {
        self.pool.idle()
    }

    /// Drops all idle connections (e.g. after the engine restarted).
    pub fn drop_idle(&self) {
        self.pool.clear();
    }

    /// `GET path`, body read completely.
    pub fn get(&self, path: &str) -> Result<Response> {
        self.request("GET", path, None)
    }

    /// `POST path` with a body of `content_type` (for the benchmarks).
    #[cfg(any(test, feature = "unstable"))]
    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Result<Response> {
        self.request("POST", path, Some((content_type, body)))
    }

    /// Sends a request and reads the whole response body (at most
    /// [`HttpOptions::max_body`] bytes). Any status is a successful response here.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
    ) -> Result<Response> {
        let req = build_request(method, path, self.endpoint.host_header(), body)?;
        let what = format!("{method} {path}");
        let idempotent = method == "GET" || method == "HEAD";
        let (mut conn, head) = self.exchange(&req, &what, idempotent, self.opts.timeout)?;
        let (mut framing, reusable) = framing(method, &head).map_err(|e| self.map(&e, &what))?;
        let body = read_all(&mut framing, &mut conn.reader, self.opts.max_body)
            .map_err(|e| self.map(&e, &what))?;
        if reusable
            && framing.is_done()
            && keeps_alive(&head)
            && conn.is_clean()
            && !self.cancel.is_cancelled()
        {
            self.pool.put(conn);
        }
        Ok(Response { head, body })
    }

    /// Pipelined `GET`s on one keep-alive connection (HTTP/1.1 pipelining, RFC 9112
    /// section 9.3.2: a server answers a connection's requests in the order they came).
    ///
    /// Pulls `(tag, path)` pairs from `next` and keeps up to `depth` requests written ahead
    /// of the responses read (refilling, in one write, whenever at most half of them are
    /// left in flight), and hands each response (any status) with its tag to `done`, in
    /// request order. `done` returns `false` to stop early; the connection is then
    /// dropped, as its unread answers would otherwise be read as the answers of later
    /// requests. `depth` 1 is one request per round trip.
    ///
    /// A connection the server ends (`Connection: close`, a stale pooled connection, a
    /// reset after at least one answer) loses only requests that were not answered: they
    /// are sent again on a new connection (GETs are idempotent). A fresh connection that
    /// ends before its first answer, a malformed response, a timeout and cancellation end
    /// the call with their error; the tags handed to `done` so far are the ones answered.
    pub fn get_pipelined<T>(
        &self,
        depth: usize,
        mut next: impl FnMut() -> Option<(T, String)>,
        mut done: impl FnMut(T, Response) -> bool,
    ) -> Result<()> {
        let depth = depth.max(1);
        // Written on the current connection and not answered yet, oldest first.
        let mut sent: VecDeque<(T, String)> = VecDeque::new();
        // Unanswered requests of an ended connection, to write before pulling new ones.
        let mut again: VecDeque<(T, String)> = VecDeque::new();
        let mut exhausted = false;
        let mut conn: Option<Conn> = None;
        // Responses read on the current connection.
        let mut answered = 0usize;
        loop {
            self.cancel.check()?;
            if sent.len() <= depth / 2 {
                let mut req = Vec::new();
                while sent.len() < depth {
                    let item = match again.pop_front() {
                        Some(item) => item,
                        None if exhausted => break,
                        None => match next() {
                            Some(item) => item,
                            None => {
                                exhausted = true;
                                break;
                            }
                        },
                    };
                    req.extend(build_request(
                        "GET",
                        &item.1,
                        self.endpoint.host_header(),
                        None,
                    )?);
                    sent.push_back(item);
                }
                if !req.is_empty() {
                    let mut c = match conn.take() {
                        Some(c) => c,
                        None => {
                            answered = 0;
                            match self.pool.take() {
                                Some(c) => c,
                                None => Conn::open(
                                    &self.endpoint,
                                    self.opts.connect_timeout,
                                    &self.cancel,
                                )?,
                            }
                        }
                    };
                    let what = sent.front().map_or(String::new(), |(_, p)| format!("GET {p}"));
                    let written = c.set_timeouts(self.opts.timeout).and_then(|()| c.send(&req));
                    match written {
                        Ok(()) => conn = Some(c),
                        Err(e) if self.ended(&c, answered, &e) => {
                            requeue(&mut sent, &mut again);
                            continue;
                        }
                        Err(e) => return Err(self.map(&e, &what)),
                    }
                }
            }
            // Whatever is in flight was written on `conn` (an ended connection's requests
            // went back to `again`): nothing in flight means nothing left to send.
            let (Some(c), false) = (conn.as_mut(), sent.is_empty()) else {
                if let Some(c) = conn {
                    if c.is_clean() && !self.cancel.is_cancelled() {
                        self.pool.put(c);
                    }
                }
                return Ok(());
            };
            let Some((tag, path)) = sent.pop_front() else {
                return Ok(());
            };
            let what = format!("GET {path}");
            let (response, keep) = match self.read_response(c) {
                Ok(Some(r)) => r,
                Ok(None) if c.reused || answered > 0 => {
                    sent.push_front((tag, path));
                    requeue(&mut sent, &mut again);
                    conn = None;
                    continue;
                }
                Ok(None) => {
                    if self.cancel.is_cancelled() {
                        return Err(Error::Cancelled);
                    }
                    return Err(Error::protocol(
                        "http",
                        format!(
                            "connection closed without a response ({what} on {})",
                            self.url
                        ),
                    ));
                }
                Err(e) if self.ended(c, answered, &e) => {
                    sent.push_front((tag, path));
                    requeue(&mut sent, &mut again);
                    conn = None;
                    continue;
                }
                Err(e) => return Err(self.map(&e, &what)),
            };
            answered += 1;
            if !keep {
                // The server ends the connection after this answer.
                conn = None;
                requeue(&mut sent, &mut again);
            }
            if !done(tag, response) {
                if sent.is_empty() {
                    if let Some(c) = conn {
                        if c.is_clean() && !self.cancel.is_cancelled() {
                            self.pool.put(c);
                        }
                    }
                }
                return Ok(());
            }
        }
    }

    /// True when `err` on `conn` means the server had closed it, and its unanswered
    /// requests may be sent again on another: a pooled connection, or one that answered
    /// before (a fresh connection that fails at once is the engine's failure).
    fn ended(&self, conn: &Conn, answered: usize, err: &io::Error) -> bool {
        (conn.reused || answered > 0) && stale(err) && !self.cancel.is_cancelled()
    }

    /// Reads one final response (after any 1xx) and its whole body from `conn`; `None`
    /// when the peer closed before sending a byte. The flag: the connection may carry more.
    fn read_response(&self, conn: &mut Conn) -> io::Result<Option<(Response, bool)>> {
        let head = loop {
            let Some(head) = read_head(&mut conn.reader)? else {
                return Ok(None);
            };
            match head.status {
                101 => return Err(malformed("unexpected protocol upgrade (101)")),
                100..=199 => continue,
                _ => break head,
            }
        };
        let (mut framing, reusable) = framing("GET", &head)?;
        let body = read_all(&mut framing, &mut conn.reader, self.opts.max_body)?;
        let keep = reusable && framing.is_done() && keeps_alive(&head);
        Ok(Some((Response { head, body }, keep)))
    }

    /// `GET path` on a dedicated connection, returning the body as it arrives. The
    /// configured timeout applies until the response head; the body has no read timeout.
    pub fn stream(&self, path: &str) -> Result<BodyReader> {
        let req = build_request("GET", path, self.endpoint.host_header(), None)?;
        let what = format!("GET {path}");
        let conn = Conn::open(&self.endpoint, self.opts.connect_timeout, &self.cancel)?;
        let (mut conn, head) = self.exchange_on(conn, &req, &what, self.opts.timeout)?;
        let (framing, _) = framing("GET", &head).map_err(|e| self.map(&e, &what))?;
        conn.set_timeouts(None).map_err(|e| self.map(&e, &what))?;
        Ok(BodyReader::new(
            head,
            conn,
            framing,
            self.cancel.clone(),
            self.url.clone(),
            what,
        ))
    }

    fn map(&self, err: &io::Error, what: &str) -> Error {
        map_io(err, self.cancel.is_cancelled(), &self.url, what)
    }

    /// Sends `req` on a pooled or new connection and reads the final response head. A
    /// pooled connection that turns out to be closed is replaced once (idempotent only).
    fn exchange(
        &self,
        req: &[u8],
        what: &str,
        idempotent: bool,
        timeout: Option<Duration>,
    ) -> Result<(Conn, ResponseHead)> {
        self.cancel.check()?;
        while let Some(conn) = self.pool.take() {
            match self.try_exchange(conn, req, timeout) {
                Ok((conn, Some(head))) => return Ok((conn, head)),
                Ok((_, None)) if idempotent => continue,
                Err(e) if idempotent && stale(&e) && !self.cancel.is_cancelled() => continue,
                Ok((_, None)) => {
                    return Err(Error::protocol(
                        "http",
                        format!(
                            "connection closed without a response ({what} on {})",
                            self.url
                        ),
                    ))
                }
                Err(e) => return Err(self.map(&e, what)),
            }
        }
        let conn = Conn::open(&self.endpoint, self.opts.connect_timeout, &self.cancel)?;
        self.exchange_on(conn, req, what, timeout)
    }

    fn exchange_on(
        &self,
        conn: Conn,
        req: &[u8],
        what: &str,
        timeout: Option<Duration>,
    ) -> Result<(Conn, ResponseHead)> {
        match self.try_exchange(conn, req, timeout) {
            Ok((conn, Some(head))) => Ok((conn, head)),
            Ok((_, None)) => {
                if self.cancel.is_cancelled() {
                    return Err(Error::Cancelled);
                }
                Err(Error::protocol(
                    "http",
                    format!(
                        "connection closed without a response ({what} on {})",
                        self.url
                    ),
                ))
            }
            Err(e) => Err(self.map(&e, what)),
        }
    }

    fn try_exchange(
        &self,
        mut conn: Conn,
        req: &[u8],
        timeout: Option<Duration>,
    ) -> io::Result<(Conn, Option<ResponseHead>)> {
        conn.set_timeouts(timeout)?;
        conn.send(req)?;
        loop {
            let Some(head) = read_head(&mut conn.reader)? else {
                return Ok((conn, None));
            };
            match head.status {
                101 => return Err(malformed("unexpected protocol upgrade (101)")),
                100..=199 => continue,
                _ => return Ok((conn, Some(head))),
            }
        }
    }
}

/// Moves the unanswered requests of an ended connection in front of those waiting to be
/// sent again, keeping their order.
fn requeue<T>(sent: &mut VecDeque<T>, again: &mut VecDeque<T>) {
    while let Some(item) = sent.pop_back() {
        again.push_front(item);
    }
}

/// Errors that mean "this pooled connection was already closed by the peer".
fn stale(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::NotConnected
    )
}

fn keeps_alive(head: &ResponseHead) -> bool {
    head.minor_version == 1 && !head.has_token("connection", "close")
}

/// Serializes a request head (and body).
fn build_request(
    method: &str,
    path: &str,
    host: &str,
    body: Option<(&str, &[u8])>,
) -> Result<Vec<u8>> {
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Error::protocol(
            "http",
            format!("invalid method {method:?}"),
        ));
    }
    if !path.starts_with('/') || !path.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::protocol(
            "http",
            format!("invalid request target {path:?} (must start with '/' and be percent-encoded)"),
        ));
    }
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: whalewatcher/{}\r\nAccept: application/json\r\nConnection: keep-alive\r\n",
        env!("CARGO_PKG_VERSION")
    );
    if let Some((ct, b)) = body {
        if !ct.bytes().all(|c| c.is_ascii_graphic() || c == b' ') {
            return Err(Error::protocol("http", "invalid content type"));
        }
        req.push_str(&format!(
            "Content-Type: {ct}\r\nContent-Length: {}\r\n",
            b.len()
        ));
    } else if method == "POST" || method == "PUT" {
        req.push_str("Content-Length: 0\r\n");
    }
    req.push_str("\r\n");
    let mut out = req.into_bytes();
    if let Some((_, b)) = body {
        out.extend_from_slice(b);
    }
    Ok(out)
}

/// Percent-encodes `s` for use in a path segment or query value (RFC 3986 unreserved
/// characters stay as they are).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn builds_requests_and_rejects_injection() {
        let r = build_request("GET", "/v1.41/info", "localhost", None).unwrap();
        let r = String::from_utf8(r).unwrap();
        assert!(r.starts_with("GET /v1.41/info HTTP/1.1\r\nHost: localhost\r\n"));
        assert!(r.contains("Connection: keep-alive\r\n"));
        assert!(r.ends_with("\r\n\r\n"));
        let r = build_request("POST", "/x", "h", Some(("application/json", b"{}"))).unwrap();
        assert!(String::from_utf8(r)
            .unwrap()
            .ends_with("Content-Length: 2\r\n\r\n{}"));
        assert!(build_request("GET", "/a b", "h", None).is_err());
        assert!(build_request("GET", "/a\r\nX: y", "h", None).is_err());
        assert!(build_request("GET", "a", "h", None).is_err());
        assert!(build_request("G T", "/", "h", None).is_err());
    }

    /// A Unix-socket server in a temp dir: `handler(index, stream)` runs for each of the
    /// first `conns` connections, one thread each.
    struct Server {
        path: std::path::PathBuf,
        accepted: Arc<AtomicUsize>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Drop for Server {
        fn drop(&mut self) {
            // Wakes the acceptor if it still waits, then joins it.
            while self.thread.as_ref().is_some_and(|t| !t.is_finished()) {
                let _ = std::os::unix::net::UnixStream::connect(&self.path);
                std::thread::sleep(Duration::from_millis(1));
            }
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
            let _ = std::fs::remove_dir_all(self.path.parent().unwrap_or(&self.path));
        }
    }

    fn server(
        conns: usize,
        handler: impl Fn(usize, std::os::unix::net::UnixStream) + Send + Sync + 'static,
    ) -> Server {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ww-pipeline-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let handler = Arc::new(handler);
        let thread = std::thread::spawn(move || {
            let mut workers = Vec::new();
            for i in 0..conns {
                let Ok((s, _)) = listener.accept() else { break };
                count.fetch_add(1, Ordering::SeqCst);
                let h = handler.clone();
                workers.push(std::thread::spawn(move || h(i, s)));
            }
            for w in workers {
                let _ = w.join();
            }
        });
        Server {
            path,
            accepted,
            thread: Some(thread),
        }
    }

    /// Reads request heads from `s` into `buf` until at least one is complete; returns the
    /// paths of all complete ones (empty at EOF).
    fn requests(s: &mut std::os::unix::net::UnixStream, buf: &mut Vec<u8>) -> Vec<String> {
        use std::io::Read;
        let mut out = Vec::new();
        loop {
            while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                buf.drain(..end + 4);
                out.push(head.split(' ').nth(1).unwrap_or("").to_string());
            }
            if !out.is_empty() {
                return out;
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return out,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn answer(path: &str, close: bool) -> String {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{}\r\n{path}",
            path.len(),
            if close { "Connection: close\r\n" } else { "" }
        )
    }

    fn client(s: &Server) -> HttpClient {
        let opts = HttpOptions {
            timeout: Some(Duration::from_secs(10)),
            ..HttpOptions::default()
        };
        HttpClient::new(Endpoint::parse(s.path.to_str().unwrap()).unwrap(), opts)
    }

    /// Runs a pipelined batch of `/0`..`/n`: the (tag, body) pairs in arrival order.
    fn batch(c: &HttpClient, depth: usize, n: usize) -> Result<Vec<(usize, String)>> {
        let mut i = 0;
        let mut got = Vec::new();
        c.get_pipelined(
            depth,
            || {
                i += 1;
                (i <= n).then(|| (i - 1, format!("/{}", i - 1)))
            },
            |tag, r| {
                got.push((tag, String::from_utf8_lossy(&r.body).to_string()));
                true
            },
        )?;
        Ok(got)
    }

    fn in_order(n: usize) -> Vec<(usize, String)> {
        (0..n).map(|i| (i, format!("/{i}"))).collect()
    }

    #[test]
    fn pipelined_requests_are_written_ahead_and_answered_in_order() {
        use std::io::Write;
        let most = Arc::new(AtomicUsize::new(0));
        let m = most.clone();
        let s = server(1, move |_, mut st| {
            let mut buf = Vec::new();
            loop {
                let paths = requests(&mut st, &mut buf);
                if paths.is_empty() {
                    return;
                }
                m.fetch_max(paths.len(), Ordering::SeqCst);
                let out: String = paths.iter().map(|p| answer(p, false)).collect();
                if st.write_all(out.as_bytes()).is_err() {
                    return;
                }
            }
        });
        let c = client(&s);
        assert_eq!(batch(&c, 4, 10).unwrap(), in_order(10));
        // Several requests arrived together, all on one connection, which went back to
        // the pool and serves the next batch.
        assert!(most.load(Ordering::SeqCst) >= 2, "never more than one in flight");
        assert!(most.load(Ordering::SeqCst) <= 4, "more than the depth in flight");
        assert_eq!(c.idle_connections(), 1);
        assert_eq!(batch(&c, 1, 3).unwrap(), in_order(3));
        assert_eq!(s.accepted.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn requests_a_closing_server_left_unanswered_are_sent_again() {
        use std::io::Write;
        // Each connection answers two requests, the second with `Connection: close`, and
        // ignores whatever else was written on it.
        let s = server(8, |_, mut st| {
            let mut buf = Vec::new();
            let mut answered = 0;
            while answered < 2 {
                let paths = requests(&mut st, &mut buf);
                if paths.is_empty() {
                    return;
                }
                for p in paths.iter().take(2 - answered) {
                    answered += 1;
                    let _ = st.write_all(answer(p, answered == 2).as_bytes());
                }
            }
        });
        let c = client(&s);
        assert_eq!(batch(&c, 4, 7).unwrap(), in_order(7));
        assert_eq!(s.accepted.load(Ordering::SeqCst), 4);
        // The last connection answered `/6` without closing: it is kept.
        assert_eq!(c.idle_connections(), 1);
    }

    #[test]
    fn a_stale_pooled_connection_is_replaced() {
        use std::io::Write;
        // Connection 0 answers one request keep-alive, then closes silently.
        let s = server(2, |i, mut st| {
            let mut buf = Vec::new();
            loop {
                let paths = requests(&mut st, &mut buf);
                if paths.is_empty() {
                    return;
                }
                for p in &paths {
                    let _ = st.write_all(answer(p, false).as_bytes());
                }
                if i == 0 {
                    return;
                }
            }
        });
        let c = client(&s);
        assert_eq!(c.get("/x").unwrap().body, b"/x");
        assert_eq!(c.idle_connections(), 1);
        assert_eq!(batch(&c, 3, 5).unwrap(), in_order(5));
        assert_eq!(s.accepted.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_fresh_connection_closed_without_an_answer_is_an_error() {
        let s = server(1, |_, mut st| {
            let _ = requests(&mut st, &mut Vec::new());
        });
        let c = client(&s);
        let e = batch(&c, 4, 3).unwrap_err();
        assert!(
            matches!(&e, Error::Protocol { layer: "http", .. })
                && e.to_string().contains("without a response"),
            "{e:?}"
        );
        assert_eq!(s.accepted.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_malformed_answer_ends_the_batch_with_an_error() {
        use std::io::Write;
        let s = server(1, |_, mut st| {
            let paths = requests(&mut st, &mut Vec::new());
            let mut out = answer(&paths[0], false);
            out.push_str("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n");
            let _ = st.write_all(out.as_bytes());
        });
        let c = client(&s);
        let mut got = Vec::new();
        let mut i = 0;
        let e = c
            .get_pipelined(
                2,
                || {
                    i += 1;
                    (i <= 2).then(|| (i, format!("/{i}")))
                },
                |tag, _| {
                    got.push(tag);
                    true
                },
            )
            .unwrap_err();
        assert!(matches!(&e, Error::Protocol { layer: "http", .. }), "{e:?}");
        assert_eq!(got, [1]);
        assert!(build_request("GET", "/a b", "h", None).is_err());
        let mut bad = [(0, "/ok".to_string()), (1, "no-slash".to_string())].into_iter();
        assert!(c.get_pipelined(2, || bad.next(), |_, _| true).is_err());
    }

    #[test]
    fn done_returning_false_stops_pulling_and_drops_the_connection() {
        use std::io::Write;
        let s = server(1, |_, mut st| {
            let mut buf = Vec::new();
            loop {
                let paths = requests(&mut st, &mut buf);
                if paths.is_empty() {
                    return;
                }
                for p in &paths {
                    let _ = st.write_all(answer(p, false).as_bytes());
                }
            }
        });
        let c = client(&s);
        let mut pulled = 0;
        let mut answered = 0;
        c.get_pipelined(
            4,
            || {
                pulled += 1;
                Some((pulled, format!("/{pulled}")))
            },
            |_, _| {
                answered += 1;
                answered < 3
            },
        )
        .unwrap();
        assert_eq!(answered, 3);
        // Refills happen when half the window is answered: never more than 4 + 2 pulled.
        assert!(pulled <= 6, "{pulled}");
        // Unread answers were in flight: the connection is not reused.
        assert_eq!(c.idle_connections(), 0);
    }

    #[test]
    fn percent_encodes() {
        assert_eq!(
            percent_encode(r#"{"status":["running"]}"#),
            "%7B%22status%22%3A%5B%22running%22%5D%7D"
        );
        assert_eq!(percent_encode("abc-1.2_~"), "abc-1.2_~");
    }
}
