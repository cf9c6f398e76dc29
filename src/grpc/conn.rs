//! One HTTP/2 client connection over a Unix socket, driven by the calling thread: one
//! active stream at a time.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cancel::{CancelGuard, CancelSet};
use crate::error::{Error, Result};

use super::frame::{self, setting, Frame, Kind};
use super::hpack::{self, HeaderDecoder, Headers};
use super::message::MessageDecoder;
use super::ChannelOptions;

/// Our SETTINGS_INITIAL_WINDOW_SIZE and connection window.
const RECV_WINDOW: u32 = 4 << 20;
/// Our SETTINGS_MAX_FRAME_SIZE (the protocol default).
const MAX_FRAME: usize = 16384;
/// Our SETTINGS_MAX_HEADER_LIST_SIZE, also the bound on a collected header block.
const MAX_HEADER_LIST: usize = 64 << 10;
const MAX_WINDOW: i64 = (1 << 31) - 1;

/// The state of the one active stream.
pub struct Active {
    /// Stream id.
    pub id: u32,
    send_window: i64,
    recv_window: i64,
    recv_unacked: u32,
    /// Response headers once received.
    pub headers: Option<Headers>,
    /// Trailers once received.
    pub trailers: Option<Headers>,
    /// Received message bytes.
    pub messages: MessageDecoder,
    /// END_STREAM seen.
    pub ended: bool,
}

/// An HTTP/2 connection.
pub struct Conn {
    sock: UnixStream,
    _guard: CancelGuard,
    cancel: CancelSet,
    endpoint: String,
    decoder: HeaderDecoder,
    next_id: u32,
    peer_max_frame: usize,
    peer_initial_window: i64,
    send_conn_window: i64,
    recv_conn_unacked: u32,
    got_settings: bool,
    goaway: Option<u32>,
    broken: bool,
    max_message: usize,
    deadline: Option<Instant>,
    /// The active stream, if any.
    pub active: Option<Active>,
}

impl Conn {
    /// Dials `path`, sends the preface and our settings. Does not wait for the peer.
    pub fn dial(path: &Path, cancel: &CancelSet, opts: &ChannelOptions) -> Result<Conn> {
        cancel.check()?;
        let endpoint = format!("unix://{}", path.display());
        let sock = UnixStream::connect(path).map_err(|e| Error::connection(&endpoint, &e))?;
        let guard = cancel.register(Arc::new(
            sock.try_clone()
                .map_err(|e| Error::connection(&endpoint, &e))?,
        ))?;
        let mut c = Conn {
            sock,
            _guard: guard,
            cancel: cancel.clone(),
            endpoint,
            decoder: HeaderDecoder::new(MAX_HEADER_LIST),
            next_id: 1,
            peer_max_frame: 16384,
            peer_initial_window: 65535,
            send_conn_window: 65535,
            recv_conn_unacked: 0,
            got_settings: false,
            goaway: None,
            broken: false,
            max_message: opts.max_message_size,
            deadline: Some(Instant::now() + opts.connect_timeout),
            active: None,
        };
        let mut out = frame::PREFACE.to_vec();
        out.extend(
            frame::settings(&[
                (setting::ENABLE_PUSH, 0),
                (setting::INITIAL_WINDOW_SIZE, RECV_WINDOW),
                (setting::MAX_FRAME_SIZE, MAX_FRAME as u32),
                (setting::MAX_HEADER_LIST_SIZE, MAX_HEADER_LIST as u32),
                (setting::HEADER_TABLE_SIZE, hpack::TABLE_SIZE as u32),
            ])
            .encode(),
        );
        out.extend(frame::window_update(0, RECV_WINDOW - 65535).encode());
        c.write_all(&out)?;
        // Wait for the server's SETTINGS so that a non-HTTP/2 peer fails here, clearly.
        while !c.got_settings {
            c.poll().map_err(|e| match e {
                Error::Connection {
                    endpoint,
                    kind: io::ErrorKind::UnexpectedEof,
                    ..
                } => Error::Connection {
                    endpoint,
                    kind: io::ErrorKind::UnexpectedEof,
                    message: "connection closed by the server during the HTTP/2 handshake \
                              (before its SETTINGS)"
                        .into(),
                },
                e => e,
            })?;
        }
        Ok(c)
    }

    /// True when the connection can take another stream.
    pub fn reusable(&self) -> bool {
        !self.broken && self.goaway.is_none() && self.active.is_none() && self.next_id < (1 << 30)
    }

    /// Sets the deadline of the following reads and writes.
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    fn map_io(&self, e: io::Error) -> Error {
        if self.cancel.is_cancelled() {
            return Error::Cancelled;
        }
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout {
                what: format!("gRPC call on {}", self.endpoint),
            },
            io::ErrorKind::UnexpectedEof => Error::Connection {
                endpoint: self.endpoint.clone(),
                kind: io::ErrorKind::UnexpectedEof,
                message: "connection closed by the server".into(),
            },
            _ => Error::connection(&self.endpoint, &e),
        }
    }

    fn arm_timeout(&mut self) -> Result<()> {
        let t = match self.deadline {
            None => None,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    self.broken = true;
                    return Err(Error::Timeout {
                        what: format!("gRPC call on {}", self.endpoint),
                    });
                }
                Some(left.max(Duration::from_millis(1)))
            }
        };
        let r = self
            .sock
            .set_read_timeout(t)
            .and_then(|_| self.sock.set_write_timeout(t));
        r.map_err(|e| self.map_io(e))
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        self.arm_timeout()?;
        let r = self.sock.write_all(bytes);
        r.map_err(|e| {
            self.broken = true;
            self.map_io(e)
        })
    }

    fn send(&mut self, f: Frame) -> Result<()> {
        self.write_all(&f.encode())
    }

    fn fail<T>(&mut self, msg: impl Into<String>) -> Result<T> {
        self.broken = true;
        Err(Error::protocol("http2", msg))
    }

    /// Opens a stream: sends HEADERS (+CONTINUATION) and the request body (one gRPC
    /// message, already framed), respecting the peer's windows and frame size.
    pub fn start(&mut self, headers: &[(&str, &str)], body: &[u8]) -> Result<()> {
        let id = self.next_id;
        self.next_id += 2;
        self.active = Some(Active {
            id,
            send_window: self.peer_initial_window,
            recv_window: RECV_WINDOW as i64,
            recv_unacked: 0,
            headers: None,
            trailers: None,
            messages: MessageDecoder::new(self.max_message),
            ended: false,
        });
        let block = hpack::encode(headers);
        let mut chunks = block.chunks(self.peer_max_frame).peekable();
        let mut first = true;
        let mut out = Vec::new();
        while let Some(c) = chunks.next() {
            let last = chunks.peek().is_none();
            let flags = if last { frame::END_HEADERS } else { 0 };
            let kind = if first {
                Kind::Headers
            } else {
                Kind::Continuation
            };
            out.extend(Frame::new(kind, flags, id, c.to_vec()).encode());
            first = false;
        }
        self.write_all(&out)?;
        let mut sent = 0;
        loop {
            let left = body.len() - sent;
            let win = self
                .send_conn_window
                .min(self.active.as_ref().map_or(0, |a| a.send_window));
            if left > 0 && win <= 0 {
                // Wait for WINDOW_UPDATE (or an early response end).
                self.poll()?;
                if self.active.as_ref().is_none_or(|a| a.ended) {
                    return Ok(());
                }
                continue;
            }
            let n = left.min(win.max(0) as usize).min(self.peer_max_frame);
            let end = n == left;
            let flags = if end { frame::END_STREAM } else { 0 };
            self.send(Frame::new(
                Kind::Data,
                flags,
                id,
                body[sent..sent + n].to_vec(),
            ))?;
            self.send_conn_window -= n as i64;
            if let Some(a) = self.active.as_mut() {
                a.send_window -= n as i64;
            }
            sent += n;
            if end {
                return Ok(());
            }
        }
    }

    /// Marks the active stream finished; the connection may be reused when it ended cleanly.
    pub fn finish(&mut self) {
        match &self.active {
            Some(a) if a.ended && a.messages.is_empty() => self.active = None,
            _ => self.broken = true,
        }
    }

    /// Reads and handles one frame.
    pub fn poll(&mut self) -> Result<()> {
        if self.broken {
            return Err(Error::Connection {
                endpoint: self.endpoint.clone(),
                kind: io::ErrorKind::BrokenPipe,
                message: "connection is unusable after an earlier error".into(),
            });
        }
        let f = self.read_frame()?;
        if !self.got_settings && f.kind != Kind::Settings {
            self.broken = true;
            return Err(frame::not_http2());
        }
        self.handle(f)
    }

    /// Reads the next frame (within the deadline); a failure breaks the connection.
    fn read_frame(&mut self) -> Result<Frame> {
        self.arm_timeout()?;
        let r = {
            let this = &*self;
            let map = |e: io::Error| this.map_io(e);
            frame::read_frame(&mut &self.sock, MAX_FRAME, &map)
        };
        if r.is_err() {
            self.broken = true;
        }
        r
    }

    fn active_id(&self) -> u32 {
        self.active.as_ref().map_or(0, |a| a.id)
    }

    fn handle(&mut self, f: Frame) -> Result<()> {
        match f.kind {
            Kind::Settings => self.on_settings(f),
            Kind::Ping => {
                if f.stream != 0 || f.payload.len() != 8 {
                    return self.fail("malformed PING");
                }
                if !f.has(frame::ACK) {
                    self.send(Frame::new(Kind::Ping, frame::ACK, 0, f.payload))?;
                }
                Ok(())
            }
            Kind::WindowUpdate => self.on_window_update(f),
            Kind::GoAway => {
                if f.stream != 0 || f.payload.len() < 8 {
                    return self.fail("malformed GOAWAY");
                }
                let last = frame::be32(&f.payload, 0) & 0x7fff_ffff;
                let code = frame::be32(&f.payload, 4);
                self.goaway = Some(last);
                let id = self.active_id();
                if id != 0 && id > last || code != frame::reason::NO_ERROR {
                    self.broken = true;
                    let debug = String::from_utf8_lossy(&f.payload[8..]).into_owned();
                    return Err(Error::Connection {
                        endpoint: self.endpoint.clone(),
                        kind: io::ErrorKind::ConnectionAborted,
                        message: format!(
                            "server sent GOAWAY (HTTP/2 error code {code}, last stream {last}): {debug}"
                        ),
                    });
                }
                Ok(())
            }
            Kind::RstStream => {
                if f.stream == 0 || f.payload.len() != 4 {
                    return self.fail("malformed RST_STREAM");
                }
                if f.stream != self.active_id() {
                    return Ok(());
                }
                let code = frame::be32(&f.payload, 0);
                self.broken = true;
                Err(Error::Grpc {
                    code: frame::reset_status(code),
                    message: format!("stream reset by the server (HTTP/2 error code {code})"),
                })
            }
            Kind::Headers => self.on_headers(f),
            Kind::Data => self.on_data(f),
            Kind::Continuation => self.fail("CONTINUATION without a preceding HEADERS"),
            Kind::PushPromise => self.fail("PUSH_PROMISE although push is disabled"),
            Kind::Priority => {
                if f.stream == 0 || f.payload.len() != 5 {
                    return self.fail("malformed PRIORITY");
                }
                Ok(())
            }
            _ => Ok(()), // unknown frame types are ignored (RFC 9113 5.5)
        }
    }

    fn on_settings(&mut self, f: Frame) -> Result<()> {
        if f.stream != 0 {
            return self.fail("SETTINGS on a stream");
        }
        if f.has(frame::ACK) {
            if !f.payload.is_empty() {
                return self.fail("SETTINGS ACK with payload");
            }
            return Ok(());
        }
        if f.payload.len() % 6 != 0 {
            return self.fail("SETTINGS length not a multiple of 6");
        }
        for p in f.payload.chunks(6) {
            let id = u16::from_be_bytes([p[0], p[1]]);
            let v = frame::be32(p, 2);
            match id {
                setting::INITIAL_WINDOW_SIZE => {
                    if v as i64 > MAX_WINDOW {
                        return self.fail("SETTINGS_INITIAL_WINDOW_SIZE too large");
                    }
                    let delta = v as i64 - self.peer_initial_window;
                    self.peer_initial_window = v as i64;
                    if let Some(a) = self.active.as_mut() {
                        a.send_window += delta;
                        if a.send_window > MAX_WINDOW {
                            return self.fail("stream window overflow");
                        }
                    }
                }
                setting::MAX_FRAME_SIZE => {
                    if !(16384..=16_777_215).contains(&v) {
                        return self.fail(format!("bad SETTINGS_MAX_FRAME_SIZE {v}"));
                    }
                    self.peer_max_frame = v as usize;
                }
                _ => {}
            }
        }
        self.got_settings = true;
        self.send(Frame::new(Kind::Settings, frame::ACK, 0, Vec::new()))
    }

    fn on_window_update(&mut self, f: Frame) -> Result<()> {
        if f.payload.len() != 4 {
            return self.fail("malformed WINDOW_UPDATE");
        }
        let inc = (frame::be32(&f.payload, 0) & 0x7fff_ffff) as i64;
        if inc == 0 {
            return self.fail("WINDOW_UPDATE with increment 0");
        }
        if f.stream == 0 {
            self.send_conn_window += inc;
            if self.send_conn_window > MAX_WINDOW {
                return self.fail("connection window overflow");
            }
        } else if f.stream == self.active_id() {
            let over = self.active.as_mut().is_some_and(|a| {
                a.send_window += inc;
                a.send_window > MAX_WINDOW
            });
            if over {
                return self.fail("stream window overflow");
            }
        }
        Ok(())
    }

    fn on_headers(&mut self, f: Frame) -> Result<()> {
        if f.stream == 0 {
            return self.fail("HEADERS on stream 0");
        }
        let mut block = f.content()?.to_vec();
        let mut end_headers = f.has(frame::END_HEADERS);
        while !end_headers {
            let c = self.read_frame()?;
            if c.kind != Kind::Continuation || c.stream != f.stream {
                return self.fail("expected CONTINUATION of the same stream");
            }
            block.extend_from_slice(&c.payload);
            if block.len() > MAX_HEADER_LIST {
                return self.fail("header block too large");
            }
            end_headers = c.has(frame::END_HEADERS);
        }
        let headers = match self.decoder.decode(&block) {
            Ok(h) => h,
            Err(e) => {
                self.broken = true;
                return Err(e);
            }
        };
        if f.stream != self.active_id() {
            if f.stream >= self.next_id || f.stream % 2 == 0 {
                return self.fail(format!("HEADERS on idle stream {}", f.stream));
            }
            return Ok(());
        }
        let end = f.has(frame::END_STREAM);
        let a = self.active.as_mut().expect("active checked");
        if a.ended {
            return self.fail("HEADERS after END_STREAM");
        }
        if a.headers.is_none() {
            a.headers = Some(headers);
        } else if a.trailers.is_none() {
            if !end {
                return self.fail("trailers without END_STREAM");
            }
            a.trailers = Some(headers);
        } else {
            return self.fail("third HEADERS block on a stream");
        }
        a.ended = end;
        Ok(())
    }

    fn on_data(&mut self, f: Frame) -> Result<()> {
        if f.stream == 0 {
            return self.fail("DATA on stream 0");
        }
        let len = f.payload.len() as u32;
        self.recv_conn_unacked += len;
        if self.recv_conn_unacked > RECV_WINDOW {
            return self.fail("peer exceeded the connection flow-control window");
        }
        let mut updates = Vec::new();
        if self.recv_conn_unacked >= RECV_WINDOW / 2 {
            updates.extend(frame::window_update(0, self.recv_conn_unacked).encode());
            self.recv_conn_unacked = 0;
        }
        if f.stream != self.active_id() {
            if f.stream >= self.next_id || f.stream % 2 == 0 {
                return self.fail(format!("DATA on idle stream {}", f.stream));
            }
            return self.flush_updates(updates);
        }
        let content = f.content()?;
        let a = self.active.as_mut().expect("active checked");
        if a.ended || a.headers.is_none() {
            self.broken = true;
            return Err(Error::protocol(
                "http2",
                "DATA before response headers or after END_STREAM",
            ));
        }
        a.recv_window -= len as i64;
        if a.recv_window < 0 {
            self.broken = true;
            return Err(Error::protocol(
                "http2",
                "peer exceeded the stream flow-control window",
            ));
        }
        a.messages.push(content);
        a.recv_unacked += len;
        a.ended = f.has(frame::END_STREAM);
        if !a.ended && a.recv_unacked >= RECV_WINDOW / 2 {
            updates.extend(frame::window_update(a.id, a.recv_unacked).encode());
            a.recv_window += a.recv_unacked as i64;
            a.recv_unacked = 0;
        }
        self.flush_updates(updates)
    }

    fn flush_updates(&mut self, updates: Vec<u8>) -> Result<()> {
        if updates.is_empty() {
            Ok(())
        } else {
            self.write_all(&updates)
        }
    }
}
