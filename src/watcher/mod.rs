//! The watcher: keeps a portfolio of one engine's alive containers current and fans its
//! lifecycle events out to subscribers.
//!
//! Threads (three per engine): the event reader, the worker (listings and inspects) and
//! ONE sync thread that owns all state. The algorithm is a pure state machine in
//! `state.rs` (no threads, clocks or locks; its module docs describe every race it
//! handles); `sync.rs` only moves messages, runs its timers and publishes.
//!
//! # What the watcher promises
//! - **Exactness**: when [`Health::Synced`], the portfolio is the engine's truth as of the
//!   last event it delivered, and every subscription's stream replayed onto its starting
//!   snapshot (empty for [`Watcher::subscribe`], the portfolio at `seq` for
//!   [`Watcher::subscribe_from`]) gives the portfolio. Every container the engine reports
//!   started appears in the stream: a short-lived one as `Started` + `Exited` (exit code,
//!   OOM flag, the details the engine still had; `pid` 0 when none), never in the
//!   portfolio. Never two `Started` of a container without an `Exited` between.
//! - **Health** ([`Health`]): `Syncing` while listing, and while a container the engine
//!   reported started is unaccounted for (its inspect failed and is retried with backoff;
//!   after [`WatcherOptions::inspect_attempts`] the watcher relists). `Reconnecting
//!   { since }`: the portfolio is stale since `since`, the first loss of the outage.
//!   `Failed` is terminal: a retry policy gave up, all threads have stopped, every
//!   subscription has ended and the journal is freed (the last portfolio stays readable).
//! - **Bounded memory**: each subscriber's queue holds at most its capacity plus the
//!   synthetic `Started` events describing the portfolio; the journal its capacity; the
//!   events buffered during a listing at most [`WatcherOptions::max_buffered_events`]
//!   (overflow drops them and relists).
//!
//! # Subscriber policy
//! Each subscriber has a bounded queue ([`WatcherOptions::subscriber_capacity`]). The
//! sync thread never blocks on a subscriber: when a queue is full, that subscription ends
//! with an explicit [`Item::Lagged`] while everyone else goes on; the lagging subscriber
//! resubscribes with [`Watcher::subscribe_from`] to replay what it missed from the
//! journal, and gets an [`Item::Gap`] first when part of it has already fallen out.
//! Synthetic `Started` events (a new subscription's picture of the portfolio, and the
//! first listing's events for a subscription made before it) never count against the
//! queue.
#![forbid(unsafe_code)]

mod health;
mod hub;
mod metrics;
mod options;
mod reader;
#[cfg(test)]
mod sim;
mod state;
mod sync;
#[cfg(test)]
mod tests;
mod threads;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use parking_lot::{Mutex, RwLock};

pub use health::Health;
pub use hub::{Item, Since, Subscription};
pub use metrics::{Latency, Metrics};
pub use options::{RetryFactory, WatcherOptions};
pub use reader::PortfolioReader;

use crate::engine::{EngineClient, EngineInfo};
use crate::error::{Error, Result};
use crate::portfolio::Portfolio;
use sync::{Msg, Shared, Stopper, SyncThread};

/// Watches one container engine. Dropping it closes it.
pub struct Watcher {
    shared: Arc<Shared>,
    engine: Arc<dyn EngineClient>,
    info: Arc<Mutex<Option<EngineInfo>>>,
    tx: Sender<Msg>,
    stop: Arc<AtomicBool>,
    wake: Option<Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

impl Watcher {
    /// Starts watching `engine`. Returns at once; use [`wait_ready`](Self::wait_ready) to
    /// wait for the first complete picture. The watcher owns the client: closing the
    /// watcher cancels it for good.
    pub fn new<E: EngineClient>(engine: E, options: WatcherOptions) -> Watcher {
        let engine: Arc<dyn EngineClient> = Arc::new(engine);
        let shared = Arc::new(Shared {
            hub: Mutex::new(hub::Hub::new(
                options.subscriber_capacity,
                options.journal_capacity,
            )),
            portfolio: RwLock::new(Arc::new(Portfolio::new())),
            generation: Default::default(),
            health: health::HealthCell::new(),
            metrics: Arc::default(),
        });
        let info = Arc::new(Mutex::new(None));
        let (tx, rx) = crossbeam_channel::unbounded();
        let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded();
        let (wake_tx, wake_rx) = crossbeam_channel::bounded::<()>(1);
        let stop = Arc::new(AtomicBool::new(false));
        let name = &options.name;
        let state = state::SyncState::new(
            state::Config {
                inspect_attempts: options.inspect_attempts,
                max_buffered: options.max_buffered_events,
                ..state::Config::default()
            },
            (options.retry)(),
        );
        let stopper = Stopper {
            engine: engine.clone(),
            stop: stop.clone(),
            wake: wake_tx.clone(),
        };
        let sync = SyncThread::new(shared.clone(), jobs_tx, state, stopper);
        let spawn = |suffix: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(format!("{name}-{suffix}"))
                .spawn(f)
                .expect("cannot spawn a watcher thread")
        };
        let threads = vec![
            spawn("sync", Box::new(move || sync.run(rx))),
            {
                let (e, t, i) = (engine.clone(), tx.clone(), info.clone());
                let m = shared.metrics.clone();
                spawn(
                    "worker",
                    Box::new(move || threads::worker(e, jobs_rx, t, i, m)),
                )
            },
            {
                let (e, t, s, r) = (engine.clone(), tx.clone(), stop.clone(), (options.retry)());
                let m = shared.metrics.clone();
                spawn(
                    "events",
                    Box::new(move || threads::reader(e, t, r, s, wake_rx, m)),
                )
            },
        ];
        Watcher {
            shared,
            engine,
            info,
            tx,
            stop,
            wake: Some(wake_tx),
            threads,
        }
    }

    /// The current snapshot: a pointer copy, never waits on the engine.
    pub fn portfolio(&self) -> Arc<Portfolio> {
        self.shared.portfolio.read().clone()
    }

    /// A cached view of the portfolio for a thread that queries often: one atomic load per
    /// query while nothing changes (see [`PortfolioReader`]).
    pub fn reader(&self) -> PortfolioReader {
        PortfolioReader::new(self.shared.clone())
    }

    /// Where the watcher stands with its engine.
    pub fn health(&self) -> Health {
        self.shared.health.get()
    }

    /// Waits until the portfolio is synced. `Err` with the final error when the watcher
    /// failed, or [`Error::Timeout`] (naming the last connection error) on timeout.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        self.shared.health.wait_synced(timeout)
    }

    /// What the engine said about itself at the last listing.
    pub fn engine_info(&self) -> Option<EngineInfo> {
        self.info.lock().clone()
    }

    /// Synthetic `Started` events for exactly the current portfolio, then live events,
    /// with no gap and no duplicate (`subscribe_from(Since::Now)`). Made before the first
    /// sync, it receives the first listing's `Started` events, marked synthetic, however
    /// many there are.
    pub fn subscribe(&self) -> Subscription {
        self.subscribe_from(Since::Now)
    }

    /// The one way to say where a subscription starts: [`Since::Now`] (as
    /// [`subscribe`](Self::subscribe)), [`Since::Seq`] (journal events after a sequence
    /// number, then live events) or [`Since::Time`] (journal events from the first one that
    /// happened at or after a time on, in seq order; event times are not monotonic: a
    /// resync's `Exited` carries the engine's exit time). An [`Item::Gap`] comes first when
    /// some of the journal events asked for have already fallen out of the journal; for
    /// `Since::Time` its `from` is the first lost one, exactly (1 when the time lies
    /// further back than twice the journal capacity).
    pub fn subscribe_from(&self, since: Since) -> Subscription {
        self.shared.hub.lock().subscribe(since, None)
    }

    /// [`subscribe_from`](Self::subscribe_from), for the events of one container id only.
    pub fn subscribe_container(&self, since: Since, id: &str) -> Subscription {
        self.shared
            .hub
            .lock()
            .subscribe(since, Some(id.to_string()))
    }

    /// The watcher's counters: events by kind, resyncs, reconnect attempts, list and
    /// inspect latency, subscribers, lagged subscribers, last event time.
    pub fn metrics(&self) -> Metrics {
        let subscribers = self.shared.hub.lock().subscriber_count();
        self.shared.metrics.snapshot(subscribers)
    }

    /// Number of active subscriptions (a dropped one stops counting at once).
    pub fn subscriber_count(&self) -> usize {
        self.shared.hub.lock().subscriber_count()
    }

    /// Stops watching: cancels blocked engine calls, joins every thread, ends every
    /// subscription. Returns promptly.
    pub fn close(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        self.stop.store(true, Ordering::SeqCst);
        if let Some(w) = self.wake.take() {
            let _ = w.try_send(());
        }
        self.engine.cancel();
        let _ = self.tx.send(Msg::Shutdown);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.shared.hub.lock().close();
        self.shared.health.set(Health::Failed(Error::Cancelled));
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("health", &self.health())
            .field("containers", &self.portfolio().len())
            .finish()
    }
}
