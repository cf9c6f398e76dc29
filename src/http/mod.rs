//! A small blocking HTTP/1.1 client for container engine APIs.
//!
//! Talks to Unix sockets (`unix:///path` or `/path`) and plain TCP (`tcp://host:port`).
//! **TLS is not supported.** Features: keep-alive connection reuse (a connection goes back
//! to the pool only when its response body was read completely), `Content-Length`,
//! strict `chunked` and close-delimited bodies, limits on head size, header count and body
//! size, per-operation socket timeouts, streaming bodies for never-ending responses, and
//! cancellation of blocked reads from another thread through a
//! [`CancelSet`](crate::cancel::CancelSet).
#![forbid(unsafe_code)]

pub(crate) mod body;
mod chunked;
mod client;
mod conn;
mod endpoint;
pub(crate) mod head;
mod malformed;
mod response;
mod stream;

pub use client::{percent_encode, HttpClient, HttpOptions};
pub use endpoint::Endpoint;
pub use response::{error_message, BodyReader, Response};
