//! Responses: fully read ones, and streaming bodies.

use std::io::{self, Read};

use crate::engine::CancelSet;
use crate::error::Error;
use crate::http::body::{read_all, Framing};
use crate::http::conn::Conn;
use crate::http::head::ResponseHead;
use crate::http::malformed::{map_io, CancelledRead};

/// A response whose body has been read completely.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status line and headers.
    pub head: ResponseHead,
    /// The decoded body.
    pub body: Vec<u8>,
}

impl Response {
    /// The status code.
    pub fn status(&self) -> u16 {
        self.head.status
    }

    /// True for 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.head.status)
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    /// A short, printable excerpt of the body for error messages: the `message` of a JSON
    /// error body when there is one, otherwise the first 200 characters of the text.
    pub fn error_message(&self) -> String {
        error_message(&self.body)
    }
}

/// The `message` of a JSON error body, or the first 200 characters of the text.
pub fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(m) = v.get("message").and_then(|m| m.as_str()) {
            return m.to_string();
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut out: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// A response body read as it arrives, on a dedicated connection without read timeout
/// (for never-ending bodies such as Docker's `/events`). Chunked bodies are decoded.
///
/// Reads fail with an `io::Error`; [`BodyReader::error`] turns one into the crate's
/// [`Error`] (cancellation, framing, connection).
pub struct BodyReader {
    head: ResponseHead,
    conn: Conn,
    framing: Framing,
    cancel: CancelSet,
    endpoint: String,
    what: String,
}

impl BodyReader {
    pub(crate) fn new(
        head: ResponseHead,
        conn: Conn,
        framing: Framing,
        cancel: CancelSet,
        endpoint: String,
        what: String,
    ) -> Self {
        BodyReader {
            head,
            conn,
            framing,
            cancel,
            endpoint,
            what,
        }
    }

    /// Status line and headers.
    pub fn head(&self) -> &ResponseHead {
        &self.head
    }

    /// Maps an error returned by [`Read::read`] to the crate's error.
    pub fn error(&self, err: &io::Error) -> Error {
        map_io(err, self.cancel.is_cancelled(), &self.endpoint, &self.what)
    }

    /// Reads the rest of the body, at most `max` bytes (for error bodies).
    pub fn into_bytes(mut self, max: usize) -> Result<Vec<u8>, Error> {
        read_all(&mut self.framing, &mut self.conn.reader, max).map_err(|e| self.error(&e))
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.is_cancelled() {
            return Err(io::Error::other(CancelledRead));
        }
        match self.framing.read(&mut self.conn.reader, buf) {
            Ok(0) if !buf.is_empty() && self.cancel.is_cancelled() => {
                Err(io::Error::other(CancelledRead))
            }
            Err(_) if self.cancel.is_cancelled() => Err(io::Error::other(CancelledRead)),
            r => r,
        }
    }
}
