//! A fault-injecting Unix-socket proxy for tests: listens on a socket in a private temp
//! dir and forwards every connection to a real engine socket (one thread pair per
//! connection). Faults are switched at run time:
//!
//! - [`Proxy::cut`]: shut down every open connection mid-stream (both directions);
//! - [`Fault::Stall`]: stop forwarding responses (bytes wait in the proxy) until cleared;
//! - [`Fault::Truncate`]: close a connection after N response bytes;
//! - [`Fault::CloseBeforeHead`]: read the request, then close without any answer;
//! - [`Fault::Refuse`]: accept and close at once;
//! - [`Proxy::inject_garbage`]: write garbage into each open connection's response stream
//!   before the next bytes from the engine.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::support::TempDir;

/// The fault applied to the response direction (engine → client).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Forward faithfully.
    None,
    /// Hold every response byte until the fault is cleared.
    Stall,
    /// New connections are closed after this many response bytes.
    Truncate(usize),
    /// New connections: the request is read, then the connection is closed.
    CloseBeforeHead,
    /// New connections are closed at once.
    Refuse,
}

struct Conn {
    id: usize,
    client: UnixStream,
    upstream: UnixStream,
    garbage: Arc<Mutex<Option<Vec<u8>>>>,
}

struct State {
    fault: Mutex<Fault>,
    changed: Condvar,
    conns: Mutex<Vec<Conn>>,
    stop: AtomicBool,
    accepted: AtomicUsize,
}

/// The running proxy; dropping it stops it, closes its connections and removes its dir.
pub struct Proxy {
    /// Removed (with the socket) after `drop` has stopped the proxy.
    _dir: TempDir,
    path: PathBuf,
    state: Arc<State>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy to the engine socket at `upstream` (a path; `unix://` is stripped).
    pub fn start(upstream: &str) -> Proxy {
        let upstream = PathBuf::from(upstream.trim_start_matches("unix://"));
        let dir = TempDir::new("proxy");
        let path = dir.join("proxy.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let state = Arc::new(State {
            fault: Mutex::new(Fault::None),
            changed: Condvar::new(),
            conns: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            accepted: AtomicUsize::new(0),
        });
        let st = state.clone();
        let acceptor = std::thread::spawn(move || accept_loop(listener, upstream, st));
        Proxy {
            _dir: dir,
            path,
            state,
            acceptor: Some(acceptor),
        }
    }

    /// The proxy's socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The proxy's socket as a `unix://` URL.
    pub fn url(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Connections currently open.
    pub fn open(&self) -> usize {
        self.state.conns.lock().unwrap().len()
    }

    /// Sets the fault (for new connections; a stall also holds open ones).
    pub fn set(&self, fault: Fault) {
        *self.state.fault.lock().unwrap() = fault;
        self.state.changed.notify_all();
    }

    /// Shuts down every open connection, both directions.
    pub fn cut(&self) {
        let conns = std::mem::take(&mut *self.state.conns.lock().unwrap());
        for c in conns {
            let _ = c.client.shutdown(Shutdown::Both);
            let _ = c.upstream.shutdown(Shutdown::Both);
        }
    }

    /// Arms every open connection to send `bytes` to the client before the next bytes
    /// from the engine. Returns how many connections were armed.
    pub fn inject_garbage(&self, bytes: &[u8]) -> usize {
        let conns = self.state.conns.lock().unwrap();
        for c in conns.iter() {
            *c.garbage.lock().unwrap() = Some(bytes.to_vec());
        }
        conns.len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.set(Fault::None);
        let _ = UnixStream::connect(&self.path); // wakes the acceptor
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        self.cut();
    }
}

fn accept_loop(listener: UnixListener, upstream: PathBuf, st: Arc<State>) {
    for client in listener.incoming() {
        if st.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut client) = client else { continue };
        st.accepted.fetch_add(1, Ordering::SeqCst);
        let fault = st.fault.lock().unwrap().clone();
        match fault {
            Fault::Refuse => continue, // dropped: closed
            Fault::CloseBeforeHead => {
                std::thread::spawn(move || {
                    let _ = client.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut buf = [0u8; 4096];
                    let _ = client.read(&mut buf); // the request (or its first part)
                    let _ = client.shutdown(Shutdown::Both);
                });
                continue;
            }
            _ => {}
        }
        let Ok(up) = UnixStream::connect(&upstream) else {
            continue; // engine down: the client sees a close
        };
        let limit = match fault {
            Fault::Truncate(n) => Some(n),
            _ => None,
        };
        let garbage = Arc::new(Mutex::new(None));
        let (Ok(c2), Ok(u2), Ok(c3), Ok(u3)) = (
            client.try_clone(),
            up.try_clone(),
            client.try_clone(),
            up.try_clone(),
        ) else {
            continue;
        };
        let id = st.accepted.load(Ordering::SeqCst);
        st.conns.lock().unwrap().push(Conn {
            id,
            client: c3,
            upstream: u3,
            garbage: garbage.clone(),
        });
        // client -> engine: faithful
        std::thread::spawn(move || {
            let (mut from, mut to) = (client, up);
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(Shutdown::Write);
        });
        // engine -> client: the faults
        let st2 = st.clone();
        std::thread::spawn(move || {
            downstream(u2, c2, limit, garbage, &st2);
            st2.conns.lock().unwrap().retain(|c| c.id != id);
        });
    }
}

fn downstream(
    mut from: UnixStream,
    mut to: UnixStream,
    limit: Option<usize>,
    garbage: Arc<Mutex<Option<Vec<u8>>>>,
    st: &State,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut sent = 0usize;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // stall: hold the bytes while the fault is set
        {
            let mut f = st.fault.lock().unwrap();
            while *f == Fault::Stall && !st.stop.load(Ordering::SeqCst) {
                f = st.changed.wait(f).unwrap();
            }
        }
        if let Some(g) = garbage.lock().unwrap().take() {
            if to.write_all(&g).is_err() {
                break;
            }
        }
        let mut chunk = &buf[..n];
        let mut last = false;
        if let Some(max) = limit {
            let room = max.saturating_sub(sent);
            if chunk.len() >= room {
                chunk = &chunk[..room];
                last = true;
            }
        }
        if to.write_all(chunk).is_err() {
            break;
        }
        sent += chunk.len();
        if last {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}
