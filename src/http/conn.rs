//! One connection to the engine, and the pool of idle keep-alive connections.

use std::io::{self, BufReader, Write};
use std::time::Duration;

use parking_lot::Mutex;

use crate::cancel::{CancelGuard, CancelSet};
use crate::error::Result;
use crate::http::endpoint::Endpoint;
use crate::http::stream::Stream;

/// Read buffer of a connection: a whole inspect answer (head and a 4–12 KiB chunked body)
/// arrives in one `recvfrom`.
const READ_BUFFER: usize = 16 * 1024;

/// A connection, registered in the client's [`CancelSet`] for as long as it lives.
pub(crate) struct Conn {
    pub(crate) reader: BufReader<Stream>,
    /// True when the connection came out of the keep-alive pool.
    pub(crate) reused: bool,
    /// The socket's read and write timeouts as last set (`None`: not set yet), so that a
    /// reused connection does not pay two `setsockopt` calls per request.
    timeouts: Option<Option<Duration>>,
    _guard: CancelGuard,
}

impl Conn {
    /// Connects to `endpoint` and registers the socket in `cancel`.
    pub(crate) fn open(
        endpoint: &Endpoint,
        connect_timeout: Duration,
        cancel: &CancelSet,
    ) -> Result<Self> {
        cancel.check()?;
        let stream = endpoint.connect(connect_timeout)?;
        let handle = stream
            .shutdown_handle()
            .map_err(|e| crate::Error::connection(&endpoint.to_string(), &e))?;
        let guard = cancel.register(handle)?;
        Ok(Conn {
            reader: BufReader::with_capacity(READ_BUFFER, stream),
            reused: false,
            timeouts: None,
            _guard: guard,
        })
    }

    /// Sets the socket's read and write timeouts (no system call when they are set so).
    pub(crate) fn set_timeouts(&mut self, t: Option<Duration>) -> io::Result<()> {
        if self.timeouts != Some(t) {
            // Forget the old value first: a failure in between leaves them unknown.
            self.timeouts = None;
            self.reader.get_ref().set_timeouts(t)?;
            self.timeouts = Some(t);
        }
        Ok(())
    }

    /// Writes a whole request.
    pub(crate) fn send(&mut self, request: &[u8]) -> io::Result<()> {
        let s = self.reader.get_mut();
        s.write_all(request)?;
        s.flush()
    }

    /// True when no unread bytes wait in the buffer (a precondition for reuse).
    pub(crate) fn is_clean(&self) -> bool {
        self.reader.buffer().is_empty()
    }
}

/// Idle keep-alive connections.
pub(crate) struct Pool {
    idle: Mutex<Vec<Conn>>,
    max_idle: usize,
}

impl Pool {
    pub(crate) fn new(max_idle: usize) -> Self {
        Pool {
            idle: Mutex::new(Vec::new()),
            max_idle,
        }
    }

    /// An idle connection, most recently used first.
    pub(crate) fn take(&self) -> Option<Conn> {
        self.idle.lock().pop().map(|mut c| {
            c.reused = true;
            c
        })
    }

    /// Returns a fully drained connection; drops it when the pool is full.
    pub(crate) fn put(&self, conn: Conn) {
        let mut idle = self.idle.lock();
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
    }

    /// Number of idle connections.
    #[cfg(any(test, feature = "unstable"))]
    pub(crate) fn idle(&self) -> usize {
        self.idle.lock().len()
    }

    /// Drops every idle connection.
    pub(crate) fn clear(&self) {
        self.idle.lock().clear();
    }
}
