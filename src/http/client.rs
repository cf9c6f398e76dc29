//! The blocking HTTP/1.1 client: request writing, keep-alive reuse, timeouts, streaming.

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

    #[test]
    fn percent_encodes() {
        assert_eq!(
            percent_encode(r#"{"status":["running"]}"#),
            "%7B%22status%22%3A%5B%22running%22%5D%7D"
        );
        assert_eq!(percent_encode("abc-1.2_~"), "abc-1.2_~");
    }
}
