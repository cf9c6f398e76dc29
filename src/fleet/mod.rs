//! Many engines at once: a [`Fleet`] discovers the node's engines, runs one [`Watcher`] per
//! engine, and offers one view of all their containers and one merged event stream.
//!
//! A supervisor thread rescans every [`FleetOptions::rescan`]:
//! - an engine found for the first time — or found again with another PID or socket
//!   inode ([`Found::identity`]), i.e. restarted — gets a new watcher (attached); fleet
//!   subscriptions get [`FleetItem::Attached`] at once, and a subscription to the watcher
//!   once it has synced for the first time, i.e. synthetic `Started` events for every
//!   container of its first listing, however many (they are the subscription's snapshot,
//!   not live events through its bounded queue);
//! - an engine no longer found (its process ended) is detached: its watcher is closed,
//!   [`Fleet::engines`] shows it as [`EngineState::Vanished`], and every fleet subscription
//!   gets an `Exited` event (`synthetic: true`, no exit code, `seq` 0) for each container
//!   of that engine it was told is alive, then [`FleetItem::Vanished`]. A restarted engine
//!   therefore shows as Exited for the old incarnation's containers, then Started
//!   (synthetic) for what the new one runs.
//!
//! A fleet subscription gets every engine's events exactly (in order, each once) or a
//! [`FleetItem::Gap`] naming the engine and the sequence numbers it lost; a subscription
//! that falls behind on an engine is resumed from that engine's journal
//! ([`FleetItem::Lagged`]). The merge logic is a pure state machine (`merge.rs`), tested by
//! tables and by a seeded simulation (`sim.rs`; `WHALEWATCHER_SIM_SEEDS=N` runs N seeds,
//! `WHALEWATCHER_SIM_SEED=S` replays one).
//!
//! Containers are tagged with their engine by [`Container::engine`] (type and engine id).
//! The sync algorithm stays in the watcher: the fleet only composes watchers.
//!
//! ```no_run
//! use std::time::Duration;
//! use whalewatcher::fleet::{Fleet, FleetItem, FleetOptions};
//!
//! let fleet = Fleet::new(FleetOptions::default()); // discovers the node's engines
//! fleet.wait_ready(Duration::from_secs(10)).ok();
//! for status in fleet.engines() {
//!     println!("{:?} {} pid {:?}: {:?}", status.found.kind, status.found.api_path,
//!         status.found.pid, status.state);
//! }
//! let mut events = fleet.subscribe();
//! while let Some(item) = events.recv_timeout(Duration::from_secs(1)) {
//!     if let FleetItem::Event(e) = item {
//!         println!("{} {} on {}", e.kind.as_str(), e.container.name, e.container.engine_kind());
//!     }
//! }
//! ```
#![forbid(unsafe_code)]

mod merge;
#[cfg(test)]
mod sim;
mod subscription;

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

pub use subscription::{FleetItem, FleetSubscription};

use crate::container::Container;
use crate::discover::{self, DiscoverOptions, Found};
use crate::engine::{EngineClient, EngineInfo};
use crate::error::{Error, Result};
use crate::portfolio::Portfolio;
use crate::watcher::{Health, Metrics, Watcher, WatcherOptions};
use subscription::Control;

/// Finds the engines to watch; called at start and at every rescan.
pub type Scanner = Box<dyn Fn() -> Vec<Found> + Send>;

/// Makes the client of a found engine (by default [`Found::client`]); called once per
/// attachment, under the fleet's lock.
pub type Connector = Box<dyn Fn(&Found) -> Result<Box<dyn EngineClient>> + Send>;

/// How long the supervisor first waits before looking again whether a new engine's
/// watcher has synced; doubled up to [`SYNC_POLL_MAX`] while one has not.
const SYNC_POLL_MIN: Duration = Duration::from_millis(5);
const SYNC_POLL_MAX: Duration = Duration::from_millis(250);

/// How many vanished engines [`Fleet::engines`] remembers.
const VANISHED_KEPT: usize = 16;

/// How a [`Fleet`] behaves.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// What discovery looks at (default: everything; containerd natively, no CRI).
    pub discover: DiscoverOptions,
    /// How often engines are looked for again (default 2 s).
    pub rescan: Duration,
    /// Options for every engine's watcher (its name gets the engine kind and index added).
    pub watcher: WatcherOptions,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            discover: DiscoverOptions::default(),
            rescan: Duration::from_secs(2),
            watcher: WatcherOptions::default(),
        }
    }
}

/// Whether an engine is watched or has gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineState {
    /// Watched; the watcher's health.
    Attached(Health),
    /// The engine's process is no longer found (since then); its containers were reported
    /// as exited.
    Vanished {
        /// When the fleet noticed.
        since: SystemTime,
    },
}

/// One engine of the fleet.
#[derive(Debug, Clone)]
pub struct EngineStatus {
    /// How discovery found it.
    pub found: Found,
    /// What the engine said about itself at the last listing (with the PID filled in).
    pub info: Option<EngineInfo>,
    /// Watched or gone.
    pub state: EngineState,
    /// Its containers (empty once vanished).
    pub portfolio: Arc<Portfolio>,
    /// Its watcher's counters (the last ones, for a vanished engine).
    pub metrics: Metrics,
}

pub(crate) struct Member {
    /// This attachment's number (1 for the first engine attached).
    key: merge::Key,
    pub(crate) found: Arc<Found>,
    pub(crate) watcher: Arc<Watcher>,
    /// The watcher has synced (or failed) once: fleet subscriptions subscribe to it.
    ready: bool,
}

#[derive(Default)]
struct State {
    members: Vec<Member>,
    vanished: VecDeque<EngineStatus>,
    subscribers: Vec<Sender<Control>>,
    attached_total: u64,
}

impl State {
    /// Subscribes every fleet subscription to the watchers that synced (or failed) for the
    /// first time since the last call. True while some watcher has not yet.
    fn promote(&mut self) -> bool {
        let mut waiting = false;
        let State {
            members,
            subscribers,
            ..
        } = self;
        for m in members.iter_mut().filter(|m| !m.ready) {
            if !matches!(m.watcher.health(), Health::Synced | Health::Failed(_)) {
                waiting = true;
                continue;
            }
            m.ready = true;
            subscribers.retain(|s| {
                s.send(Control::Synced {
                    key: m.key,
                    engine: m.found.clone(),
                    watcher: Arc::downgrade(&m.watcher),
                    sub: m.watcher.subscribe(),
                })
                .is_ok()
            });
        }
        waiting
    }
}

struct Inner {
    state: Mutex<State>,
    scanner: Mutex<Scanner>,
    connector: Mutex<Connector>,
    /// Wakes the supervisor to watch a new engine's first sync.
    wake: Sender<()>,
    options: FleetOptions,
}

/// Closes a detached watcher (when the fleet held the last reference) and returns the
/// sequence number of the last event it published.
fn close_watcher(watcher: Arc<Watcher>) -> u64 {
    let mut reader = watcher.reader();
    drop(watcher);
    reader.portfolio().seq()
}

/// Watches every engine discovery finds; dropping it closes it.
pub struct Fleet {
    inner: Arc<Inner>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Fleet {
    /// Discovers engines with `options.discover` now and every `options.rescan`.
    pub fn new(options: FleetOptions) -> Fleet {
        let d = options.discover.clone();
        Self::with_scanner(Box::new(move || discover::discover(&d)), options)
    }

    /// Like [`new`](Self::new), with another way to find the engines (e.g. a fixed list, or
    /// discovery narrowed down).
    pub fn with_scanner(scanner: Scanner, options: FleetOptions) -> Fleet {
        Self::with_connector(scanner, Box::new(|f: &Found| f.client()), options)
    }

    /// Like [`with_scanner`](Self::with_scanner), with another way to make the engines'
    /// clients (e.g. a test double, or a client with other settings).
    pub fn with_connector(scanner: Scanner, connector: Connector, options: FleetOptions) -> Fleet {
        let (wake, woken) = crossbeam_channel::bounded::<()>(1);
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            scanner: Mutex::new(scanner),
            connector: Mutex::new(connector),
            wake,
            options,
        });
        inner.scan();
        let (stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let i = inner.clone();
        let thread = std::thread::Builder::new()
            .name(format!("{}-fleet", i.options.watcher.name))
            .spawn(move || supervise(i, stopped, woken))
            .expect("cannot spawn the fleet thread");
        Fleet {
            inner,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Looks for engines now instead of at the next rescan.
    pub fn rescan_now(&self) {
        self.inner.scan();
    }

    /// The attached engines and their watchers.
    pub fn watchers(&self) -> Vec<(Found, Arc<Watcher>)> {
        let st = self.inner.state.lock();
        st.members
            .iter()
            .map(|m| ((*m.found).clone(), m.watcher.clone()))
            .collect()
    }

    /// Every engine: the attached ones (sorted by kind and path), then the vanished ones
    /// (latest first).
    pub fn engines(&self) -> Vec<EngineStatus> {
        let st = self.inner.state.lock();
        let mut out: Vec<EngineStatus> = st
            .members
            .iter()
            .map(|m| EngineStatus {
                found: (*m.found).clone(),
                info: m.watcher.engine_info(),
                state: EngineState::Attached(m.watcher.health()),
                portfolio: m.watcher.portfolio(),
                metrics: m.watcher.metrics(),
            })
            .collect();
        out.extend(st.vanished.iter().cloned());
        out
    }

    /// The containers of every attached engine.
    pub fn containers(&self) -> Vec<Arc<Container>> {
        let st = self.inner.state.lock();
        st.members
            .iter()
            .flat_map(|m| m.watcher.portfolio().iter().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// How many engines were attached since the fleet started (restarts included).
    pub fn attached_total(&self) -> u64 {
        self.inner.state.lock().attached_total
    }

    /// Waits until every attached engine is synced. `Err` is the first engine's error,
    /// of its own kind: [`Error::Timeout`] (whose `what` names the engine) when it did not
    /// sync in time, its watcher's final error ([`Error::GaveUp`], [`Error::Cancelled`])
    /// when it failed ([`engines`](Self::engines) tells which). Once it returns `Ok`,
    /// every fleet subscription is subscribed to every attached engine.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let end = Instant::now() + timeout;
        for (found, w) in self.watchers() {
            let left = end.saturating_duration_since(Instant::now());
            w.wait_ready(left).map_err(|e| match e {
                Error::Timeout { what } => Error::Timeout {
                    what: format!("{} {}: {what}", found.kind.name(), found.api_path),
                },
                other => other,
            })?;
        }
        self.inner.state.lock().promote();
        Ok(())
    }

    /// One merged stream: for each attached engine whose watcher has synced, synthetic
    /// `Started` events for its current containers, then the live events of all engines;
    /// an engine that has not synced yet (and one attached later) joins with synthetic
    /// `Started` events for its containers once it has; `Exited` for the containers of
    /// engines that vanish. See [`FleetItem`] for what each item means.
    pub fn subscribe(&self) -> FleetSubscription {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut st = self.inner.state.lock();
        st.promote();
        let subs = st
            .members
            .iter()
            .filter(|m| m.ready)
            .map(|m| {
                (
                    m.key,
                    m.found.clone(),
                    Arc::downgrade(&m.watcher),
                    m.watcher.subscribe(),
                )
            })
            .collect();
        st.subscribers.push(tx);
        FleetSubscription::new(subs, rx)
    }

    /// Stops the supervisor and every watcher; subscriptions end.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let (members, subscribers) = {
            let mut st = self.inner.state.lock();
            (
                std::mem::take(&mut st.members),
                std::mem::take(&mut st.subscribers),
            )
        };
        for m in members {
            // The last reference closes the watcher; subscriptions still drain it, and
            // learn where it stopped (for the Gap of one that lagged on it too late).
            let last_seq = close_watcher(m.watcher);
            for s in &subscribers {
                let _ = s.send(Control::Closed {
                    key: m.key,
                    last_seq,
                });
            }
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("engines", &self.inner.state.lock().members.len())
            .finish()
    }
}

/// Rescans every `options.rescan`; meanwhile, while a new engine's watcher has not synced
/// yet, looks often (backing off) whether it has, to subscribe the fleet subscriptions.
/// `woken` says that an engine was attached (by any thread).
fn supervise(inner: Arc<Inner>, stopped: Receiver<()>, woken: Receiver<()>) {
    let mut next_scan = Instant::now() + inner.options.rescan;
    let mut poll = SYNC_POLL_MIN;
    loop {
        let waiting = inner.state.lock().promote();
        let now = Instant::now();
        let mut wait = next_scan.saturating_duration_since(now);
        if waiting {
            wait = wait.min(poll);
            poll = (poll * 2).min(SYNC_POLL_MAX);
        }
        crossbeam_channel::select! {
            recv(stopped) -> _ => return,
            recv(woken) -> _ => poll = SYNC_POLL_MIN,
            default(wait) => {
                if Instant::now() >= next_scan {
                    inner.scan();
                    next_scan = Instant::now() + inner.options.rescan;
                }
            }
        }
    }
}

impl Inner {
    fn scan(&self) {
        let found = (self.scanner.lock())();
        self.rescan(&found);
    }

    /// Detaches what is gone or changed, attaches what is new.
    fn rescan(&self, found: &[Found]) {
        let mut attached = false;
        let mut st = self.state.lock();
        let (keep, gone): (Vec<Member>, Vec<Member>) = std::mem::take(&mut st.members)
            .into_iter()
            .partition(|m| found.iter().any(|f| f.identity() == m.found.identity()));
        st.members = keep;
        for m in gone {
            log::info!(
                "engine {} {} (pid {:?}) vanished",
                m.found.kind.name(),
                m.found.api_path,
                m.found.pid
            );
            st.vanished.push_front(EngineStatus {
                found: (*m.found).clone(),
                info: m.watcher.engine_info(),
                state: EngineState::Vanished {
                    since: SystemTime::now(),
                },
                portfolio: Arc::new(Portfolio::new()),
                metrics: m.watcher.metrics(),
            });
            st.vanished.truncate(VANISHED_KEPT);
            // Closed first, so that every subscription's queue holds all the watcher
            // published and `last_seq` is final. Closing waits for the watcher's threads:
            // off the lock's critical path would be nicer, but the engine is gone, so its
            // calls fail fast.
            let last_seq = close_watcher(m.watcher);
            st.subscribers.retain(|s| {
                s.send(Control::Vanished {
                    key: m.key,
                    engine: m.found.clone(),
                    last_seq,
                })
                .is_ok()
            });
        }
        for f in found {
            if st
                .members
                .iter()
                .any(|m| m.found.identity() == f.identity())
            {
                continue;
            }
            let client = match (self.connector.lock())(f) {
                Ok(c) => c,
                Err(e) => {
                    log::warn!("cannot watch {} {}: {e}", f.kind.name(), f.api_path);
                    continue;
                }
            };
            st.attached_total += 1;
            attached = true;
            let key = st.attached_total;
            let mut options = self.options.watcher.clone();
            options.name = format!("{}-{}{}", options.name, f.kind.name(), key);
            let watcher = Arc::new(Watcher::new(client, options));
            let found = Arc::new(f.clone());
            // Subscribing waits for the first sync (see `State::promote`): a subscription
            // made now would get the first listing as live events through its bounded
            // queue.
            st.subscribers.retain(|s| {
                s.send(Control::Attached {
                    key,
                    engine: found.clone(),
                })
                .is_ok()
            });
            // Remove a vanished entry of the same engine: it is back.
            st.vanished
                .retain(|v| !(v.found.kind == f.kind && v.found.api_path == f.api_path));
            st.members.push(Member {
                key,
                found,
                watcher,
                ready: false,
            });
        }
        st.members.sort_by(|a, b| {
            (a.found.kind, &a.found.api_path).cmp(&(b.found.kind, &b.found.api_path))
        });
        st.promote();
        if attached {
            let _ = self.wake.try_send(());
        }
    }
}
