//! The channel: a lazily dialed pool of idle connections to one socket path.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::cancel::CancelSet;
use crate::error::{Error, Result};

use super::conn::Conn;
use super::{message, status, ChannelOptions};

struct Shared {
    path: PathBuf,
    cancel: CancelSet,
    opts: ChannelOptions,
    idle: Mutex<Vec<Conn>>,
}

/// A gRPC channel to a Unix socket. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct Channel {
    shared: Arc<Shared>,
}

impl Channel {
    /// A channel to the socket at `path`. Lazy: connects on the first call and re-dials
    /// by path after failures. Every socket is registered in `cancel`.
    pub fn new(path: impl Into<PathBuf>, cancel: CancelSet) -> Channel {
        Channel {
            shared: Arc::new(Shared {
                path: path.into(),
                cancel,
                opts: ChannelOptions::default(),
                idle: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The same channel with other options (drops pooled connections).
    #[cfg(any(test, feature = "unstable"))]
    pub fn with_options(self, opts: ChannelOptions) -> Channel {
        Channel {
            shared: Arc::new(Shared {
                path: self.shared.path.clone(),
                cancel: self.shared.cancel.clone(),
                opts,
                idle: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The endpoint, `unix:///path`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.shared.path.display())
    }

    fn deadline(&self, deadline: Option<Duration>) -> Option<Duration> {
        deadline.or(self.shared.opts.default_deadline)
    }

    fn headers<'a>(
        method: &'a str,
        metadata: &'a [(&'a str, &'a str)],
        timeout: &'a Option<String>,
    ) -> Result<Vec<(&'a str, &'a str)>> {
        if !method.starts_with('/') {
            return Err(Error::InvalidEndpoint {
                endpoint: method.to_string(),
                reason: "a gRPC method path must start with '/'".into(),
            });
        }
        let mut h = vec![
            (":method", "POST"),
            (":scheme", "http"),
            (":path", method),
            (":authority", "localhost"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            (
                "user-agent",
                concat!("whalewatcher/", env!("CARGO_PKG_VERSION")),
            ),
        ];
        if let Some(t) = timeout {
            h.push(("grpc-timeout", t.as_str()));
        }
        for (n, v) in metadata {
            if n.is_empty() || n.starts_with(':') || n.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(Error::protocol(
                    "grpc",
                    format!("metadata name {n:?} must be lowercase and not a pseudo-header"),
                ));
            }
            h.push((n, v));
        }
        Ok(h)
    }

    /// Takes a pooled connection (`true`) when `pooled_ok` and there is one, else dials a
    /// new one (`false`).
    fn take(&self, pooled_ok: bool) -> Result<(Conn, bool)> {
        self.shared.cancel.check()?;
        if pooled_ok {
            if let Some(c) = self.shared.idle.lock().pop() {
                return Ok((c, true));
            }
        }
        Ok((
            Conn::dial(&self.shared.path, &self.shared.cancel, &self.shared.opts)?,
            false,
        ))
    }

    fn give_back(&self, c: Conn) {
        if c.reusable() && !self.shared.cancel.is_cancelled() {
            let mut idle = self.shared.idle.lock();
            if idle.len() < self.shared.opts.max_idle {
                idle.push(c);
            }
        }
    }

    fn open(
        &self,
        method: &str,
        metadata: &[(&str, &str)],
        request: &[u8],
        deadline: Option<Duration>,
        pooled_ok: bool,
    ) -> Result<(Conn, bool)> {
        let timeout = self.deadline(deadline);
        let at = timeout.map(|d| Instant::now() + d);
        let th = timeout.map(status::timeout_header);
        let headers = Self::headers(method, metadata, &th)?;
        let body = message::encode(request);
        if body.len() > self.shared.opts.max_message_size + 5 {
            return Err(Error::protocol(
                "grpc",
                "request message exceeds max_message_size",
            ));
        }
        let (mut c, pooled) = self.take(pooled_ok)?;
        c.set_deadline(at);
        c.start(&headers, &body)?;
        Ok((c, pooled))
    }

    /// A unary call with raw request and response bytes.
    pub fn unary(
        &self,
        method: &str,
        metadata: &[(&str, &str)],
        request: &[u8],
        deadline: Option<Duration>,
    ) -> Result<Vec<u8>> {
        let r = self.unary_once(method, metadata, request, deadline, true);
        match r {
            // A pooled connection the server closed while idle: one retry on a fresh one.
            Err((Error::Connection { .. }, true)) => self
                .unary_once(method, metadata, request, deadline, false)
                .map_err(|(e, _)| e),
            r => r.map_err(|(e, _)| e),
        }
    }

    fn unary_once(
        &self,
        method: &str,
        metadata: &[(&str, &str)],
        request: &[u8],
        deadline: Option<Duration>,
        pooled_ok: bool,
    ) -> std::result::Result<Vec<u8>, (Error, bool)> {
        let (c, pooled) = self
            .open(method, metadata, request, deadline, pooled_ok)
            .map_err(|e| (e, false))?;
        let mut s = MessageStream {
            conn: Some(c),
            done: false,
        };
        let first = s.next_message();
        let fresh = |e: Error, _: &MessageStream| (e, pooled);
        let msg = match first {
            Ok(Some(m)) => m,
            Ok(None) => {
                return Err((
                    Error::protocol("grpc", "unary call ended without a response message"),
                    false,
                ))
            }
            Err(e) => return Err(fresh(e, &s)),
        };
        match s.next_message() {
            Ok(None) => {}
            Ok(Some(_)) => {
                return Err((
                    Error::protocol("grpc", "unary call returned more than one message"),
                    false,
                ))
            }
            Err(e) => return Err((e, false)),
        }
        if let Some(c) = s.conn.take() {
            self.give_back(c);
        }
        Ok(msg)
    }

    /// A server-streaming call on a dedicated connection.
    pub fn server_streaming(
        &self,
        method: &str,
        metadata: &[(&str, &str)],
        request: &[u8],
        deadline: Option<Duration>,
    ) -> Result<MessageStream> {
        let (c, _) = self.open(method, metadata, request, deadline, false)?;
        Ok(MessageStream {
            conn: Some(c),
            done: false,
        })
    }

    /// A unary call with protobuf messages.
    pub fn unary_msg<Req: protobuf::Message, Resp: protobuf::Message>(
        &self,
        method: &str,
        metadata: &[(&str, &str)],
        req: &Req,
        deadline: Option<Duration>,
    ) -> Result<Resp> {
        let bytes = req
            .write_to_bytes()
            .map_err(|e| Error::protocol("protobuf", format!("cannot encode request: {e}")))?;
        let resp = self.unary(method, metadata, &bytes, deadline)?;
        decode(&resp)
    }
}

fn decode<M: protobuf::Message>(b: &[u8]) -> Result<M> {
    M::parse_from_bytes(b).map_err(|e| {
        Error::protocol(
            "protobuf",
            format!("cannot decode {}: {e}", std::any::type_name::<M>()),
        )
    })
}

/// The response messages of a server-streaming call; owns its connection.
pub struct MessageStream {
    conn: Option<Conn>,
    done: bool,
}

impl MessageStream {
    /// The next message; `Ok(None)` once the server ended the call with status OK,
    /// [`Error::Grpc`] for a non-OK status.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>> {
        if self.done {
            return Ok(None);
        }
        let c = self
            .conn
            .as_mut()
            .ok_or_else(|| Error::protocol("grpc", "stream already failed"))?;
        let r = Self::step(c);
        match &r {
            Ok(None) => {
                self.done = true;
                c.finish();
            }
            Err(_) => {
                self.conn = None;
            }
            _ => {}
        }
        r
    }

    fn step(c: &mut Conn) -> Result<Option<Vec<u8>>> {
        loop {
            let a = c
                .active
                .as_mut()
                .ok_or_else(|| Error::protocol("grpc", "no active stream"))?;
            if let Some(h) = &a.headers {
                status::check_response_headers(h)?;
                if let Some(m) = a.messages.next()? {
                    return Ok(Some(m));
                }
                if a.ended {
                    if !a.messages.is_empty() {
                        return Err(Error::protocol("grpc", "stream ended inside a message"));
                    }
                    // Trailers-only responses carry the status in the headers.
                    let t = a.trailers.as_ref().unwrap_or(h);
                    status::check_status(t)?;
                    return Ok(None);
                }
            } else if a.ended {
                return Err(Error::protocol("grpc", "stream ended without headers"));
            }
            c.poll()?;
        }
    }

    /// The next message decoded as `M`.
    pub fn next_msg<M: protobuf::Message>(&mut self) -> Result<Option<M>> {
        match self.next_message()? {
            Some(b) => decode(&b).map(Some),
            None => Ok(None),
        }
    }
}
