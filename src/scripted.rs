//! A scripted engine, for testing code that uses a [`Watcher`](crate::Watcher) without a
//! real engine (cargo feature `test-util`, in the manner of notify's null watcher and
//! ureq's test transport).
//!
//! The test plays the engine through a [`Script`]: it starts, pauses, ends and removes
//! containers (each change emits the event a real engine would), changes the truth
//! silently (as while the watcher is disconnected), breaks the event streams or takes the
//! engine down, makes listings and inspects fail, and can run code in the middle of a
//! listing or an inspect to stage races. [`Script::client`] is the [`EngineClient`] to
//! give the watcher. Every scripted engine reports itself as Docker, id `scripted`;
//! a container started as `ID` is named `name-ID`.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use whalewatcher::scripted::Script;
//! use whalewatcher::{Watcher, WatcherOptions};
//!
//! # fn main() -> Result<(), whalewatcher::Error> {
//! let script = Script::new();
//! script.start("web", "shop");
//! let w = Watcher::new(script.client(), WatcherOptions::default());
//! w.wait_ready(Duration::from_secs(10))?;
//! assert_eq!(w.portfolio().get("web").unwrap().project, "shop");
//!
//! script.exit("web", 3); // the engine says: web exited with code 3
//! let end = Instant::now() + Duration::from_secs(10);
//! while w.portfolio().get("web").is_some() {
//!     assert!(Instant::now() < end, "the watcher never saw the exit");
//!     std::thread::sleep(Duration::from_millis(10));
//! }
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::container::{Container, PROJECT_LABEL};
use crate::engine::{
    EngineClient, EngineInfo, EngineKind, EventStream, ExitStatus, Inspection, RawEvent,
};
use crate::error::{Error, Result};
use crate::event::EventKind;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;

type Hook = Box<dyn FnMut(&Script) + Send>;

#[derive(Default)]
struct State {
    alive: HashMap<String, Container>,
    /// Exited containers the engine still knows (until `remove`), with their status.
    exited: HashMap<String, (Container, ExitStatus)>,
    streams: Vec<Sender<Option<RawEvent>>>,
    next_pid: u32,
}

/// The engine's side: its truth (alive and exited containers), its open event streams,
/// and the faults and hooks the test sets. Clones share the same engine.
#[derive(Clone, Default)]
pub struct Script {
    state: Arc<Mutex<State>>,
    hooks: Arc<Mutex<Hooks>>,
    /// Events emitted to the newest stream, taken from it, and polls of it.
    emitted: Arc<AtomicUsize>,
    taken: Arc<AtomicUsize>,
    polls: Arc<AtomicUsize>,
    lists: Arc<AtomicUsize>,
    inspects: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
    /// The next this many inspects fail with a connection error.
    fail_inspects: Arc<AtomicUsize>,
    /// The next this many listings fail with a connection error.
    fail_lists: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Script {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Script")
            .field("alive", &self.alive_ids())
            .field("down", &self.down.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Hooks {
    before_list_snapshot: Option<Hook>,
    after_list_snapshot: Option<Hook>,
    before_inspect: Option<Hook>,
}

impl Script {
    /// An engine with no containers.
    pub fn new() -> Self {
        Self::default()
    }

    /// A client of this engine, to give a [`Watcher`](crate::Watcher) (each client can be
    /// cancelled on its own).
    pub fn client(&self) -> ScriptedEngine {
        ScriptedEngine {
            script: self.clone(),
            cancelled: Arc::new(AtomicBool::new(false)),
        }
    }

    fn emit(&self, st: &mut State, kind: EventKind, id: &str) {
        let mut ev = RawEvent::new(kind, id);
        ev.project = st
            .alive
            .get(id)
            .or(st.exited.get(id).map(|e| &e.0))
            .map(|c| c.project.clone());
        st.streams.retain(|s| s.send(Some(ev.clone())).is_ok());
        if !st.streams.is_empty() {
            self.emitted.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Starts container `id` (a new pid each time) in compose project `project` (none when
    /// empty), emitting Started.
    pub fn start(&self, id: &str, project: &str) {
        let mut st = self.state.lock();
        st.next_pid += 1;
        let labels: crate::Labels = (!project.is_empty())
            .then_some((PROJECT_LABEL, project))
            .into_iter()
            .collect();
        let c = Container::new(id, format!("name-{id}"), 1000 + st.next_pid).with_labels(labels);
        st.alive.insert(id.to_string(), c);
        st.exited.remove(id);
        self.emit(&mut st, EventKind::Started, id);
    }

    /// Ends a container, emitting Exited with `code`.
    pub fn exit(&self, id: &str, code: i32) {
        self.exit_with(id, code, false, true)
    }

    /// Ends a container; the engine keeps it (inspect says Exited with `code` and `oom`)
    /// until [`remove`](Self::remove), and emits the Exited event when `event` (as when the
    /// watcher is away and misses it).
    pub fn exit_with(&self, id: &str, code: i32, oom: bool, event: bool) {
        let mut st = self.state.lock();
        if let Some(mut c) = st.alive.remove(id) {
            c.pid = 0;
            let status = ExitStatus {
                exit_code: Some(code),
                oom,
                time: Some(std::time::SystemTime::now()),
            };
            st.exited.insert(id.to_string(), (c, status));
            if event {
                self.emit(
                    &mut st,
                    EventKind::Exited {
                        exit_code: Some(code),
                        oom,
                    },
                    id,
                );
            }
        }
    }

    /// Removes an exited container: the engine no longer knows it.
    pub fn remove(&self, id: &str) {
        self.state.lock().exited.remove(id);
    }

    /// Pauses or unpauses, emitting the event.
    pub fn set_paused(&self, id: &str, paused: bool) {
        let mut st = self.state.lock();
        let Some(c) = st.alive.get_mut(id) else {
            return;
        };
        if c.paused == paused {
            return;
        }
        c.paused = paused;
        let k = if paused {
            EventKind::Paused
        } else {
            EventKind::Unpaused
        };
        self.emit(&mut st, k, id);
    }

    /// Changes the alive containers silently, no event (as while the watcher is
    /// disconnected).
    pub fn silently(&self, f: impl FnOnce(&mut HashMap<String, Container>)) {
        f(&mut self.state.lock().alive)
    }

    /// Ends every open event stream with an error; with `down`, every call fails with a
    /// connection error too until [`set_up`](Self::set_up).
    pub fn break_streams(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        let mut st = self.state.lock();
        for s in st.streams.drain(..) {
            let _ = s.send(None);
        }
    }

    /// Brings the engine back after [`break_streams`](Self::break_streams)`(true)`.
    pub fn set_up(&self) {
        self.down.store(false, Ordering::SeqCst);
    }

    /// The alive containers, by id: the ground truth.
    pub fn truth(&self) -> HashMap<String, Container> {
        self.state.lock().alive.clone()
    }

    /// The ids of the alive containers, sorted.
    pub fn alive_ids(&self) -> Vec<String> {
        let mut v: Vec<_> = self.state.lock().alive.keys().cloned().collect();
        v.sort();
        v
    }

    /// Waits (up to 10 s) until the reader of the newest event stream has taken every
    /// event emitted to it and asked for the next one, so that the test controls the
    /// order in which the watcher sees events and listing results. Returns false when it
    /// did not happen in time.
    #[must_use = "false means the events were not delivered in time"]
    pub fn wait_delivered(&self) -> bool {
        let end = std::time::Instant::now() + Duration::from_secs(10);
        while !(self.taken.load(Ordering::SeqCst) >= self.emitted.load(Ordering::SeqCst)
            && self.polls.load(Ordering::SeqCst) > self.taken.load(Ordering::SeqCst))
        {
            if std::time::Instant::now() >= end {
                return false;
            }
            std::thread::yield_now();
        }
        true
    }

    /// The event streams open now.
    pub fn open_streams(&self) -> usize {
        self.state.lock().streams.len()
    }

    /// Listings asked for so far (failed ones too).
    pub fn lists(&self) -> usize {
        self.lists.load(Ordering::SeqCst)
    }

    /// Inspects asked for so far (failed ones too).
    pub fn inspects(&self) -> usize {
        self.inspects.load(Ordering::SeqCst)
    }

    /// The next `n` listings fail with a connection error.
    pub fn fail_next_lists(&self, n: usize) {
        self.fail_lists.store(n, Ordering::SeqCst);
    }

    /// The next `n` inspects fail with a connection error.
    pub fn fail_next_inspects(&self, n: usize) {
        self.fail_inspects.store(n, Ordering::SeqCst);
    }

    /// Runs `f` in every listing from now on, before the engine takes its snapshot of the
    /// alive containers (what `f` changes is in the listing).
    pub fn before_list_snapshot(&self, f: impl FnMut(&Script) + Send + 'static) {
        self.hooks.lock().before_list_snapshot = Some(Box::new(f));
    }

    /// Runs `f` in every listing from now on, after the snapshot and before the listing
    /// returns (what `f` changes is not in the listing, but its events may come first).
    pub fn after_list_snapshot(&self, f: impl FnMut(&Script) + Send + 'static) {
        self.hooks.lock().after_list_snapshot = Some(Box::new(f));
    }

    /// Runs `f` at the start of every inspect from now on.
    pub fn before_inspect(&self, f: impl FnMut(&Script) + Send + 'static) {
        self.hooks.lock().before_inspect = Some(Box::new(f));
    }

    /// Removes every hook.
    pub fn clear_hooks(&self) {
        *self.hooks.lock() = Hooks::default();
    }

    fn run_hook(&self, pick: fn(&mut Hooks) -> &mut Option<Hook>) {
        let hook = pick(&mut self.hooks.lock()).take();
        if let Some(mut h) = hook {
            h(self);
            let mut hooks = self.hooks.lock();
            let slot = pick(&mut hooks);
            if slot.is_none() {
                *slot = Some(h);
            }
        }
    }

    fn check(&self) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(scripted_error("scripted engine is down"));
        }
        Ok(())
    }
}

fn scripted_error(message: &str) -> Error {
    Error::Connection {
        endpoint: "scripted".into(),
        kind: std::io::ErrorKind::ConnectionRefused,
        message: message.into(),
    }
}

/// Decrements `n` if it is positive; true if it did.
fn take_one(n: &AtomicUsize) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

/// The client side of a [`Script`]: the [`EngineClient`] to watch.
#[derive(Debug)]
pub struct ScriptedEngine {
    script: Script,
    cancelled: Arc<AtomicBool>,
}

impl ScriptedEngine {
    fn check(&self) -> Result<()> {
        if self.cancelled.load(Ordering::SeqCst) {
            return Err(Error::Cancelled);
        }
        self.script.check()
    }
}

struct Stream {
    rx: Receiver<Option<RawEvent>>,
    cancelled: Arc<AtomicBool>,
    taken: Arc<AtomicUsize>,
    polls: Arc<AtomicUsize>,
}

impl EventStream for Stream {
    fn next_event(&mut self) -> Result<Option<RawEvent>> {
        self.polls.fetch_add(1, Ordering::SeqCst);
        loop {
            if self.cancelled.load(Ordering::SeqCst) {
                return Err(Error::Cancelled);
            }
            match self.rx.recv_timeout(Duration::from_millis(5)) {
                Ok(Some(e)) => {
                    self.taken.fetch_add(1, Ordering::SeqCst);
                    return Ok(Some(e));
                }
                Ok(None) | Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::protocol("scripted", "stream broken"))
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }
}

impl EngineClient for ScriptedEngine {
    fn info(&self) -> Result<EngineInfo> {
        self.check()?;
        Ok(EngineInfo {
            id: "scripted".into(),
            kind: EngineKind::Docker, // a scripted engine reports one of the four kinds
            ..Default::default()
        })
    }

    fn list(&self) -> Result<Vec<Arc<Container>>> {
        self.check()?;
        self.script.lists.fetch_add(1, Ordering::SeqCst);
        if take_one(&self.script.fail_lists) {
            return Err(scripted_error("listing failed"));
        }
        self.script.run_hook(|h| &mut h.before_list_snapshot);
        let snap: Vec<_> = (self.script.state.lock().alive.values())
            .map(|c| Arc::new(c.clone()))
            .collect();
        self.script.run_hook(|h| &mut h.after_list_snapshot);
        self.check()?;
        Ok(snap)
    }

    fn inspect(&self, id: &str) -> Result<Inspection> {
        self.check()?;
        self.script.inspects.fetch_add(1, Ordering::SeqCst);
        self.script.run_hook(|h| &mut h.before_inspect);
        if take_one(&self.script.fail_inspects) {
            return Err(scripted_error("inspect failed"));
        }
        let st = self.script.state.lock();
        if let Some(c) = st.alive.get(id) {
            return Ok(Inspection::Alive(c.clone()));
        }
        match st.exited.get(id) {
            Some((c, status)) => Ok(Inspection::Exited(c.clone(), *status)),
            None => Err(Error::NotFound { id: id.into() }),
        }
    }

    fn events(&self) -> Result<Box<dyn EventStream>> {
        self.check()?;
        let (tx, rx) = crossbeam_channel::unbounded();
        {
            let mut st = self.script.state.lock();
            st.streams.push(tx);
            self.script.emitted.store(0, Ordering::SeqCst);
            self.script.taken.store(0, Ordering::SeqCst);
            self.script.polls.store(0, Ordering::SeqCst);
        }
        Ok(Box::new(Stream {
            rx,
            cancelled: self.cancelled.clone(),
            taken: self.script.taken.clone(),
            polls: self.script.polls.clone(),
        }))
    }

    fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }
}
