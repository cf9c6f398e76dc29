//! A blocking HTTP/2 + gRPC client for Unix sockets, without async runtimes or extra
//! threads.
//!
//! # Design
//! - A [`Channel`] keeps a small pool of idle HTTP/2 connections to one socket path. It
//!   is lazy: it dials on the first call and re-dials by path after failures.
//! - A unary call takes an idle connection (or dials one), runs exactly one stream on it
//!   driven by the calling thread (HEADERS + DATA out, then frames in until END_STREAM
//!   and trailers, answering SETTINGS and PING, honouring WINDOW_UPDATE, GOAWAY and
//!   RST_STREAM), and puts the connection back only when the stream ended cleanly.
//! - A server-streaming call gets a dedicated connection owned by its [`MessageStream`].
//! - Flow control: we advertise a 4 MiB stream and connection window and send
//!   WINDOW_UPDATEs as DATA arrives, so endless event streams never stall; we read only
//!   when the caller wants the next message, which bounds buffering to one message plus
//!   one frame. Sending respects the peer's windows and maximum frame size.
//! - HPACK: loona-hpack decodes with a bounded dynamic table and header list size;
//!   requests are encoded as plain literals (no encoder state).
//! - Every read is bounded (frame size, header block size, message size); malformed
//!   input yields [`Error::Protocol`](crate::Error::Protocol) (layers `"http2"`,
//!   `"hpack"`, `"grpc"`, `"protobuf"`), never a panic or a hang.
//! - Deadlines are sent as `grpc-timeout` and enforced locally with socket timeouts
//!   ([`Error::Timeout`](crate::Error::Timeout)).
//! - Every socket is registered in the [`CancelSet`](crate::cancel::CancelSet), so a
//!   cancel from another thread aborts blocked reads promptly with
//!   [`Error::Cancelled`](crate::Error::Cancelled).
#![forbid(unsafe_code)]

use std::time::Duration;

mod channel;
mod conn;
pub mod frame;
pub(crate) mod hpack;
pub(crate) mod message;
mod status;

pub use channel::{Channel, MessageStream};

/// Tuning of a [`Channel`].
#[derive(Debug, Clone)]
pub struct ChannelOptions {
    /// Bound on dialing plus the HTTP/2 handshake.
    pub connect_timeout: Duration,
    /// Deadline of calls that do not pass one (`None`: no deadline).
    pub default_deadline: Option<Duration>,
    /// Largest gRPC message accepted (default 16 MiB).
    pub max_message_size: usize,
    /// Idle connections kept in the pool (default 4).
    pub max_idle: usize,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            connect_timeout: Duration::from_secs(5),
            default_deadline: None,
            max_message_size: 16 << 20,
            max_idle: 4,
        }
    }
}
