//! The sync algorithm: ONE thread owns the state, applies engine events and listings,
//! and publishes portfolio snapshots and container events.
//!
//! Per event-stream generation (each (re)connection of the event stream):
//! 1. The reader opens the event stream, then says `StreamOpened`; the sync thread asks the
//!    worker for a listing and buffers this generation's events meanwhile.
//! 2. When the listing arrives, the buffered events are replayed onto it silently:
//!    containers that died during the listing are dropped, pause changes are applied, and a
//!    start for a container that the listing lacks becomes a pending inspect (a start for
//!    one it has is no duplicate).
//! 3. The result is diffed against what the watcher showed before (empty at first): Exited
//!    for containers that vanished (with the exit code if a buffered exit event had it), an
//!    Exited + Started pair for a container that came back with a new PID, Paused/Unpaused
//!    for changed state, Started for new ones — never a second Started for a survivor.
//! 4. Live: a start triggers an inspect on the worker thread (other events keep flowing); a
//!    die for that container while the inspect is in flight wins (the result is dropped).
//!
//! After each batch of messages the new snapshot and its events are published together
//! under the hub lock, and only then does health say Synced.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::{Mutex, RwLock};

use super::health::{Health, HealthCell};
use super::hub::Hub;
use super::metrics::MetricsCell;
use crate::container::Container;
use crate::engine::{Inspection, RawEvent, RawEventKind};
use crate::error::{Error, Result};
use crate::event::{ContainerEvent, EventKind};
use crate::portfolio::Portfolio;
use crate::retry::RetryPolicy;

/// Messages to the sync thread.
pub(crate) enum Msg {
    StreamOpened {
        gen: u64,
    },
    Event {
        gen: u64,
        event: RawEvent,
    },
    StreamLost {
        gen: u64,
        error: Error,
    },
    GaveUp {
        error: Error,
    },
    Listed {
        gen: u64,
        result: Result<Vec<Container>>,
    },
    Inspected {
        token: u64,
        id: String,
        result: Result<Inspection>,
    },
    Shutdown,
}

/// Work for the worker thread.
pub(crate) enum Job {
    List { gen: u64 },
    Inspect { token: u64, id: String },
}

struct Pending {
    token: u64,
    paused: Option<bool>,
    attempts: u32,
}

enum Phase {
    Down,
    Listing { buffered: Vec<RawEvent> },
    Live,
}

pub(crate) struct Shared {
    pub(crate) hub: Mutex<Hub>,
    pub(crate) portfolio: RwLock<Arc<Portfolio>>,
    /// Bumped after each new portfolio snapshot (for [`PortfolioReader`](super::PortfolioReader)).
    pub(crate) generation: AtomicU64,
    pub(crate) health: HealthCell,
    pub(crate) metrics: Arc<MetricsCell>,
}

pub(crate) struct SyncThread {
    shared: Arc<Shared>,
    jobs: Sender<Job>,
    list_retry: Box<dyn RetryPolicy>,
    inspect_attempts: u32,
    gen: u64,
    phase: Phase,
    state: Portfolio,
    pending: HashMap<String, Pending>,
    next_token: u64,
    seq: u64,
    out: Vec<ContainerEvent>,
    dirty: bool,
    became_synced: bool,
    relist_at: Option<(Instant, u64)>,
}

/// Longest a batch grows before it is published.
const BATCH: usize = 256;

impl SyncThread {
    pub(crate) fn new(
        shared: Arc<Shared>,
        jobs: Sender<Job>,
        list_retry: Box<dyn RetryPolicy>,
        inspect_attempts: u32,
    ) -> Self {
        SyncThread {
            shared,
            jobs,
            list_retry,
            inspect_attempts: inspect_attempts.max(1),
            gen: 0,
            phase: Phase::Down,
            state: Portfolio::new(),
            pending: HashMap::new(),
            next_token: 0,
            seq: 0,
            out: Vec::new(),
            dirty: false,
            became_synced: false,
            relist_at: None,
        }
    }

    pub(crate) fn run(mut self, rx: Receiver<Msg>) {
        loop {
            let first = match self.relist_at {
                Some((at, _)) => {
                    match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
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
            match first {
                None => self.relist_due(),
                Some(Msg::Shutdown) => return,
                Some(m) => self.handle(m),
            }
            for _ in 0..BATCH {
                match rx.try_recv() {
                    Ok(Msg::Shutdown) => return,
                    Ok(m) => self.handle(m),
                    Err(_) => break,
                }
            }
            self.publish();
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::StreamOpened { gen } => {
                self.gen = gen;
                self.phase = Phase::Listing {
                    buffered: Vec::new(),
                };
                self.pending.clear();
                self.relist_at = None;
                self.shared.health.set(Health::Syncing);
                let _ = self.jobs.send(Job::List { gen });
            }
            Msg::Event { gen, event } if gen == self.gen => {
                self.shared.metrics.raw_event();
                match &mut self.phase {
                    Phase::Listing { buffered } => buffered.push(event),
                    Phase::Live => self.apply_live(event),
                    Phase::Down => {}
                }
            }
            Msg::Event { .. } => {}
            Msg::StreamLost { gen, error } => {
                if gen == self.gen {
                    self.phase = Phase::Down;
                    self.pending.clear();
                    self.relist_at = None;
                    self.became_synced = false;
                    self.shared.health.lost(error);
                }
            }
            Msg::GaveUp { error } => {
                self.phase = Phase::Down;
                self.shared.health.set(Health::Failed(Error::GaveUp {
                    last: Box::new(error),
                }));
            }
            Msg::Listed { gen, result } => {
                if gen != self.gen || !matches!(self.phase, Phase::Listing { .. }) {
                    return;
                }
                match result {
                    Ok(list) => {
                        self.list_retry.reset();
                        self.resync(list);
                    }
                    Err(e) if e.is_cancelled() => {}
                    Err(e) => {
                        log::warn!("listing containers failed: {e}");
                        match self.list_retry.next_delay() {
                            Some(d) => {
                                self.shared.health.lost(e);
                                self.relist_at = Some((Instant::now() + d, gen));
                            }
                            None => self
                                .shared
                                .health
                                .set(Health::Failed(Error::GaveUp { last: Box::new(e) })),
                        }
                    }
                }
            }
            Msg::Inspected { token, id, result } => self.inspected(token, id, result),
            Msg::Shutdown => {}
        }
    }

    fn relist_due(&mut self) {
        if let Some((_, gen)) = self.relist_at.take() {
            if gen == self.gen && matches!(self.phase, Phase::Listing { .. }) {
                let _ = self.jobs.send(Job::List { gen });
            }
        }
    }

    fn emit(&mut self, kind: EventKind, container: Arc<Container>, time: SystemTime) {
        self.seq += 1;
        self.shared.metrics.event(&kind);
        self.out.push(ContainerEvent {
            seq: self.seq,
            time,
            kind,
            container,
            synthetic: false,
        });
        self.dirty = true;
    }

    fn start_inspect(&mut self, id: &str, paused: Option<bool>) {
        self.next_token += 1;
        let token = self.next_token;
        self.pending.insert(
            id.to_string(),
            Pending {
                token,
                paused,
                attempts: 1,
            },
        );
        let _ = self.jobs.send(Job::Inspect {
            token,
            id: id.to_string(),
        });
    }

    /// Steps 2 and 3 of the algorithm: replay the buffered events onto the listing, then
    /// emit the diff against what was shown before.
    fn resync(&mut self, list: Vec<Container>) {
        let buffered = match std::mem::replace(&mut self.phase, Phase::Live) {
            Phase::Listing { buffered } => buffered,
            _ => Vec::new(),
        };
        let mut fresh: Portfolio = list.into_iter().filter(|c| c.pid != 0).collect();
        let mut exits: HashMap<String, (Option<i32>, bool, SystemTime)> = HashMap::new();
        let mut starts: Vec<(String, Option<bool>)> = Vec::new();
        for ev in buffered {
            match ev.kind {
                RawEventKind::Started => {
                    if fresh.get(&ev.id).is_none() && !starts.iter().any(|(id, _)| *id == ev.id) {
                        starts.push((ev.id, None));
                    }
                }
                RawEventKind::Exited { exit_code, oom } => {
                    starts.retain(|(id, _)| *id != ev.id);
                    fresh.remove(&ev.id);
                    exits.insert(ev.id, (exit_code, oom, ev.time));
                }
                RawEventKind::Paused | RawEventKind::Unpaused => {
                    let p = ev.kind == RawEventKind::Paused;
                    if let Some(c) = fresh.get(&ev.id) {
                        if c.paused != p {
                            let n = Arc::new(c.with_paused(p));
                            fresh.insert(n);
                        }
                    } else if let Some(s) = starts.iter_mut().find(|(id, _)| *id == ev.id) {
                        s.1 = Some(p);
                    }
                }
            }
        }
        let old = std::mem::replace(&mut self.state, fresh);
        let now = SystemTime::now();
        let mut old_sorted = old.sorted();
        old_sorted.sort_by(|a, b| a.id.cmp(&b.id));
        for c in old_sorted {
            let exited = |exits: &HashMap<String, (Option<i32>, bool, SystemTime)>| {
                let (exit_code, oom, time) =
                    exits.get(&c.id).copied().unwrap_or((None, false, now));
                (EventKind::Exited { exit_code, oom }, time)
            };
            match self.state.get(&c.id).cloned() {
                None => {
                    let (k, t) = exited(&exits);
                    self.emit(k, c, t);
                }
                Some(n) if n.pid != c.pid => {
                    let (k, t) = exited(&exits);
                    self.emit(k, c, t);
                    self.emit(EventKind::Started, n, now);
                }
                Some(n) if n.paused != c.paused => {
                    let k = if n.paused {
                        EventKind::Paused
                    } else {
                        EventKind::Unpaused
                    };
                    self.emit(k, n, now);
                }
                Some(_) => {}
            }
        }
        let mut new: Vec<_> = self
            .state
            .iter()
            .filter(|n| old.get(&n.id).is_none())
            .cloned()
            .collect();
        new.sort_by(|a, b| a.id.cmp(&b.id));
        for n in new {
            self.emit(EventKind::Started, n, now);
        }
        for (id, paused) in starts {
            self.start_inspect(&id, paused);
        }
        self.dirty = true;
        self.became_synced = true;
        self.shared.metrics.resync();
    }

    /// Step 4: one live event.
    fn apply_live(&mut self, ev: RawEvent) {
        match ev.kind {
            RawEventKind::Started => {
                if self.state.get(&ev.id).is_none() && !self.pending.contains_key(&ev.id) {
                    self.start_inspect(&ev.id, None);
                }
            }
            RawEventKind::Exited { exit_code, oom } => {
                self.pending.remove(&ev.id);
                if let Some(c) = self.state.remove(&ev.id) {
                    self.emit(EventKind::Exited { exit_code, oom }, c, ev.time);
                }
            }
            RawEventKind::Paused | RawEventKind::Unpaused => {
                let p = ev.kind == RawEventKind::Paused;
                if let Some(c) = self.state.get(&ev.id) {
                    if c.paused != p {
                        let n = Arc::new(c.with_paused(p));
                        self.state.insert(n.clone());
                        let k = if p {
                            EventKind::Paused
                        } else {
                            EventKind::Unpaused
                        };
                        self.emit(k, n, ev.time);
                    }
                } else if let Some(pe) = self.pending.get_mut(&ev.id) {
                    pe.paused = Some(p);
                }
            }
        }
    }

    fn inspected(&mut self, token: u64, id: String, result: Result<Inspection>) {
        let Some(p) = self.pending.get_mut(&id) else {
            return;
        };
        if p.token != token {
            return;
        }
        let result = result.and_then(|i| {
            i.alive()
                .ok_or_else(|| Error::Processless { id: id.clone() })
        });
        match result {
            Ok(mut c) => {
                let p = self.pending.remove(&id);
                if let Some(paused) = p.and_then(|p| p.paused) {
                    c.paused = paused;
                }
                if c.pid == 0 {
                    return;
                }
                let c = Arc::new(c);
                self.state.insert(c.clone());
                self.emit(EventKind::Started, c, SystemTime::now());
            }
            Err(e) if e.is_not_alive() || e.is_cancelled() => {
                self.pending.remove(&id);
            }
            Err(e) => {
                if p.attempts < self.inspect_attempts {
                    p.attempts += 1;
                    let _ = self.jobs.send(Job::Inspect { token, id });
                } else {
                    log::warn!("giving up inspecting container {id}: {e}");
                    self.pending.remove(&id);
                }
            }
        }
    }

    fn publish(&mut self) {
        if self.dirty {
            let mut p = self.state.clone();
            p.set_seq(self.seq);
            let p = Arc::new(p);
            let mut hub = self.shared.hub.lock();
            {
                let mut slot = self.shared.portfolio.write();
                *slot = p.clone();
                // Under the lock: whoever has read this snapshot through the lock sees
                // the new generation too, so a PortfolioReader is never behind it.
                self.shared.generation.fetch_add(1, Ordering::Release);
            }
            let lagged = hub.publish(p, &self.out);
            self.shared.metrics.lagged(lagged);
            drop(hub);
            self.out.clear();
            self.dirty = false;
        }
        if self.became_synced && matches!(self.phase, Phase::Live) {
            self.became_synced = false;
            self.shared.health.set(Health::Synced);
        }
    }
}

/// How long the reader waits before the first reconnect, at least (keeps a flapping
/// engine from spinning the CPU even with a zero-delay policy).
pub(crate) const MIN_RECONNECT: Duration = Duration::from_millis(10);
