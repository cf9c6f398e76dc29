//! Cancellation of blocked socket reads from another thread.
#![forbid(unsafe_code)]

use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, Result};

/// A socket that can be shut down from another thread to abort a blocked read.
pub trait Shutdown: Send + Sync {
    /// Shuts both directions down; errors are ignored.
    fn shutdown_both(&self);
}

impl Shutdown for UnixStream {
    fn shutdown_both(&self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
}

impl Shutdown for TcpStream {
    fn shutdown_both(&self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
}

#[derive(Default)]
struct Inner {
    cancelled: bool,
    next: u64,
    sockets: Vec<(u64, Arc<dyn Shutdown>)>,
}

/// The set of sockets an engine client has open; [`CancelSet::cancel`] shuts them all
/// down and refuses new ones. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct CancelSet {
    inner: Arc<Mutex<Inner>>,
}

impl CancelSet {
    /// A fresh, not cancelled set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a socket; it stays registered until the guard drops. Fails with
    /// [`Error::Cancelled`] (and shuts the socket down) once the set is cancelled.
    pub fn register(&self, socket: Arc<dyn Shutdown>) -> Result<CancelGuard> {
        let mut inner = self.inner.lock();
        if inner.cancelled {
            socket.shutdown_both();
            return Err(Error::Cancelled);
        }
        inner.next += 1;
        let key = inner.next;
        inner.sockets.push((key, socket));
        Ok(CancelGuard {
            set: self.clone(),
            key,
        })
    }

    /// Fails with [`Error::Cancelled`] once cancelled.
    pub fn check(&self) -> Result<()> {
        if self.inner.lock().cancelled {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }

    /// True once [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.inner.lock().cancelled
    }

    /// `e`, or [`Error::Cancelled`] once cancelled: what a call failed with is cancellation
    /// when the set was cancelled meanwhile (a shut-down socket fails with an I/O error).
    #[cfg_attr(not(feature = "grpc"), allow(dead_code))]
    pub fn or_cancelled(&self, e: Error) -> Error {
        if self.is_cancelled() {
            Error::Cancelled
        } else {
            e
        }
    }

    /// Shuts every registered socket down and refuses new ones.
    pub fn cancel(&self) {
        let sockets = {
            let mut inner = self.inner.lock();
            inner.cancelled = true;
            std::mem::take(&mut inner.sockets)
        };
        for (_, s) in sockets {
            s.shutdown_both();
        }
    }
}

/// Keeps a socket registered in a [`CancelSet`]; deregisters it on drop.
pub struct CancelGuard {
    set: CancelSet,
    key: u64,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        let mut inner = self.set.inner.lock();
        inner.sockets.retain(|(k, _)| *k != self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn cancel_unblocks_a_read() {
        let (a, _b) = UnixStream::pair().unwrap();
        let set = CancelSet::new();
        let _g = set.register(Arc::new(a.try_clone().unwrap())).unwrap();
        let s2 = set.clone();
        let t = std::thread::spawn(move || {
            let mut a = a;
            let mut buf = [0u8; 8];
            a.read(&mut buf)
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        s2.cancel();
        assert_eq!(t.join().unwrap().unwrap(), 0);
        assert!(set
            .register(Arc::new(UnixStream::pair().unwrap().0))
            .is_err());
    }
}
