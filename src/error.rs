//! The crate's one error type.
#![forbid(unsafe_code)]

use std::fmt;
use std::io;

pub use crate::grpc_code::GrpcCode;

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when talking to a container engine or using a watcher.
///
/// Errors are cheap to clone so that a watcher can keep the last one in its
/// [`Health`](crate::Health) and hand copies to every caller.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The engine does not know a container with this id.
    NotFound {
        /// The container id asked for.
        id: String,
    },
    /// The container exists but has no process (created, exited or dead): it is not alive.
    Processless {
        /// The container id asked for.
        id: String,
    },
    /// The engine's endpoint could not be reached or the connection broke.
    Connection {
        /// The endpoint, e.g. `unix:///var/run/docker.sock`.
        endpoint: String,
        /// What the operating system said.
        kind: io::ErrorKind,
        /// A human-readable description.
        message: String,
    },
    /// The peer spoke something that is not the expected protocol (malformed HTTP,
    /// chunked framing, JSON, HTTP/2 frames, HPACK, protobuf, ...).
    Protocol {
        /// Which layer found the problem, e.g. `"http"`, `"json"`, `"http2"`, `"protobuf"`.
        layer: &'static str,
        /// What exactly was wrong.
        message: String,
    },
    /// The engine answered with an HTTP error status (the Docker API; gRPC engines report
    /// [`Error::Grpc`]).
    Status {
        /// The HTTP status code.
        code: u32,
        /// The engine's own error message.
        message: String,
    },
    /// A gRPC call ended with a non-OK `grpc-status`.
    Grpc {
        /// The gRPC status code (e.g. [`GrpcCode::NOT_FOUND`], [`GrpcCode::UNIMPLEMENTED`],
        /// [`GrpcCode::UNAVAILABLE`]).
        code: GrpcCode,
        /// The `grpc-message`, percent-decoded.
        message: String,
    },
    /// An operation did not finish within its deadline.
    Timeout {
        /// What timed out.
        what: String,
    },
    /// The operation was cancelled (the client or watcher was closed).
    Cancelled,
    /// The endpoint address is not usable (bad URL, unsupported scheme, missing feature).
    InvalidEndpoint {
        /// The address as given.
        endpoint: String,
        /// Why it is not usable.
        reason: String,
    },
    /// The retry policy gave up; the last error it saw is inside.
    GaveUp {
        /// The last error before giving up.
        last: Box<Error>,
    },
}

impl Error {
    /// Builds a [`Error::Protocol`].
    pub fn protocol(layer: &'static str, message: impl Into<String>) -> Self {
        Error::Protocol {
            layer,
            message: message.into(),
        }
    }

    /// Builds a [`Error::Connection`] from an I/O error on `endpoint`.
    pub fn connection(endpoint: &str, err: &io::Error) -> Self {
        Error::Connection {
            endpoint: endpoint.to_string(),
            kind: err.kind(),
            message: err.to_string(),
        }
    }

    /// True for [`Error::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Error::Cancelled)
    }

    /// True when the container is gone or has no process: not an engine failure.
    pub fn is_not_alive(&self) -> bool {
        matches!(self, Error::NotFound { .. } | Error::Processless { .. })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound { id } => write!(f, "no such container: {id}"),
            Error::Processless { id } => write!(f, "container {id} has no process"),
            Error::Connection {
                endpoint,
                kind,
                message,
            } => {
                let hint = match kind {
                    io::ErrorKind::NotFound => " (no socket at that path: is the engine running?)",
                    io::ErrorKind::PermissionDenied => {
                        " (permission denied: run as root or join the engine's group)"
                    }
                    io::ErrorKind::ConnectionRefused => " (nobody listens on that socket)",
                    _ => "",
                };
                write!(f, "cannot talk to {endpoint}: {message}{hint}")
            }
            Error::Protocol { layer, message } => write!(f, "{layer} protocol error: {message}"),
            Error::Status { code, message } => write!(f, "engine error (status {code}): {message}"),
            Error::Grpc { code, message } => {
                write!(f, "gRPC status {} ({code}): {message}", code.as_u32())
            }
            Error::Timeout { what } => write!(f, "timed out: {what}"),
            Error::Cancelled => write!(f, "cancelled"),
            Error::InvalidEndpoint { endpoint, reason } => {
                write!(f, "invalid endpoint {endpoint:?}: {reason}")
            }
            Error::GaveUp { last } => write!(f, "gave up retrying; last error: {last}"),
        }
    }
}

/// [`Error::GaveUp`] chains the error it gave up on as its `source()` (its `Display`
/// also names it, as it always did).
impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::GaveUp { last } => Some(&**last),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn gave_up_chains_its_last_error() {
        let inner = Error::Timeout { what: "x".into() };
        let e = Error::GaveUp {
            last: Box::new(inner.clone()),
        };
        let source = e.source().expect("a source");
        assert_eq!(source.to_string(), inner.to_string());
        assert!(source.source().is_none());
        assert!(Error::Cancelled.source().is_none());
    }
}
