//! Carrying protocol errors through `std::io::Read`, and mapping I/O errors to the
//! crate's [`Error`].

use std::fmt;
use std::io;

use crate::error::Error;

/// A framing error found while reading; travels inside an `io::Error` of kind
/// `InvalidData` so that body readers can implement `std::io::Read`.
#[derive(Debug)]
pub(crate) struct Malformed(pub(crate) String);

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Malformed {}

/// An `io::Error` carrying a [`Malformed`] message.
pub(crate) fn malformed(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, Malformed(msg.into()))
}

/// Marks a read that ended because the client was cancelled.
#[derive(Debug)]
pub(crate) struct CancelledRead;

impl fmt::Display for CancelledRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cancelled")
    }
}

impl std::error::Error for CancelledRead {}

/// Maps an I/O error during `what` on `endpoint` to the crate's error: cancellation wins,
/// then framing errors, then timeouts, then connection errors.
pub(crate) fn map_io(err: &io::Error, cancelled: bool, endpoint: &str, what: &str) -> Error {
    if cancelled || inner_is::<CancelledRead>(err) {
        return Error::Cancelled;
    }
    if let Some(m) = err.get_ref().and_then(|e| e.downcast_ref::<Malformed>()) {
        return Error::protocol("http", format!("{m} ({what} on {endpoint})"));
    }
    match err.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout {
            what: format!("{what} on {endpoint}"),
        },
        io::ErrorKind::UnexpectedEof => Error::protocol(
            "http",
            format!("connection closed mid-response ({what} on {endpoint})"),
        ),
        _ => Error::connection(endpoint, err),
    }
}

fn inner_is<T: std::error::Error + 'static>(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|e| e.is::<T>())
}
