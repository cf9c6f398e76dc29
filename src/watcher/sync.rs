//! The sync thread: moves messages from the event reader and the worker into the state
//! machine ([`state`](super::state), where the algorithm and its documentation live),
//! hands the jobs it asks for to the worker, runs its timers, and publishes the new
//! snapshot and its events together under the hub lock — only then does health change,
//! so `Synced` is never visible before the portfolio it stands for.
//!
//! When the state machine says stop (the watcher failed for good), this thread stops the
//! reader and the worker (cancelling the engine client), ends every subscription and
//! frees the journal: `Failed` is terminal.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::{Mutex, RwLock};

use super::health::{Health, HealthCell};
use super::hub::Hub;
use super::metrics::MetricsCell;
use super::state::{Effects, Input, Job, SyncState};
use crate::engine::EngineClient;
use crate::portfolio::Portfolio;

/// Messages to the sync thread (each moved once; boxing would cost an allocation per event).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Msg {
    In(Input),
    Shutdown,
}

pub(crate) struct Shared {
    pub(crate) hub: Mutex<Hub>,
    pub(crate) portfolio: RwLock<Arc<Portfolio>>,
    /// Bumped after each new portfolio snapshot (for [`PortfolioReader`](super::PortfolioReader)).
    pub(crate) generation: AtomicU64,
    pub(crate) health: HealthCell,
    pub(crate) metrics: Arc<MetricsCell>,
}

/// What the sync thread needs to stop the other threads on its own.
pub(crate) struct Stopper {
    pub(crate) engine: Arc<dyn EngineClient>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) wake: Sender<()>,
}

pub(crate) struct SyncThread {
    shared: Arc<Shared>,
    jobs: Sender<Job>,
    state: SyncState,
    stopper: Stopper,
    shown: Health,
}

/// Most messages handled before a batch is published.
const BATCH: usize = 256;

impl SyncThread {
    pub(crate) fn new(
        shared: Arc<Shared>,
        jobs: Sender<Job>,
        state: SyncState,
        stopper: Stopper,
    ) -> Self {
        SyncThread {
            shared,
            jobs,
            state,
            stopper,
            shown: Health::Connecting,
        }
    }

    pub(crate) fn run(mut self, rx: Receiver<Msg>) {
        loop {
            let first = match self.state.next_deadline() {
                Some(at) => {
                    let wait = at.saturating_duration_since(Instant::now());
                    match rx.recv_timeout(wait.max(Duration::from_micros(100))) {
                        Ok(m) => Some(m),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
                None => match rx.recv() {
                    Ok(m) => Some(m),
                    Err(_) => return,
                },
            };
            let mut fx = Effects::default();
            match first {
                None => fx.extend(self.step(Input::Tick)),
                Some(Msg::Shutdown) => return,
                Some(Msg::In(i)) => fx.extend(self.step(i)),
            }
            for _ in 0..BATCH {
                if fx.stop {
                    break;
                }
                match rx.try_recv() {
                    Ok(Msg::Shutdown) => return,
                    Ok(Msg::In(i)) => fx.extend(self.step(i)),
                    Err(_) => break,
                }
            }
            if self
                .state
                .next_deadline()
                .is_some_and(|t| t <= Instant::now())
            {
                fx.extend(self.step(Input::Tick));
            }
            let stop = fx.stop;
            self.apply(fx);
            if stop {
                self.fail();
                return;
            }
        }
    }

    fn step(&mut self, input: Input) -> Effects {
        self.state.handle(input, Instant::now(), SystemTime::now())
    }

    fn apply(&mut self, fx: Effects) {
        for job in fx.jobs {
            let _ = self.jobs.send(job);
        }
        let m = &self.shared.metrics;
        for _ in 0..fx.raw_events {
            m.raw_event();
        }
        for _ in 0..fx.resyncs {
            m.resync();
        }
        if fx.changed || !fx.events.is_empty() {
            for ev in &fx.events {
                m.event(&ev.kind);
            }
            let mut p = self.state.portfolio().clone();
            p.set_seq(self.state.seq());
            let p = Arc::new(p);
            let mut hub = self.shared.hub.lock();
            {
                let mut slot = self.shared.portfolio.write();
                *slot = p.clone();
                // Under the lock: whoever has read this snapshot through the lock sees
                // the new generation too, so a PortfolioReader is never behind it.
                self.shared.generation.fetch_add(1, Ordering::Release);
            }
            let lagged = hub.publish(p, fx.events);
            m.lagged(lagged);
        }
        let h = self.state.health();
        if *h != self.shown {
            self.shown = h.clone();
            self.shared.health.set(h.clone());
        }
    }

    /// Failed for good: stop the reader and the worker, end every subscription.
    fn fail(&mut self) {
        self.stopper.stop.store(true, Ordering::SeqCst);
        let _ = self.stopper.wake.try_send(());
        self.stopper.engine.cancel();
        self.shared.hub.lock().close();
    }
}

/// How long the reader waits before the first reconnect, at least (keeps a flapping
/// engine from spinning the CPU even with a zero-delay policy).
pub(crate) const MIN_RECONNECT: Duration = Duration::from_millis(10);
