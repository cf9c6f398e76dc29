//! The sync algorithm as a pure state machine: [`SyncState::handle`] takes one message
//! (stream opened or lost, engine event, listing result, inspect result, exit statuses,
//! timer) and returns [`Effects`] (jobs for the worker thread, events to publish, whether
//! the portfolio changed, whether the watcher must stop). No threads, channels, clocks or
//! locks in here: the caller passes the time, `sync.rs` moves the messages.
//!
//! Per event-stream generation (each (re)connection of the event stream):
//! 1. `StreamOpened`: ask for a listing, buffer this generation's events meanwhile (at
//!    most [`Config::max_buffered`]; on overflow the buffer is salvaged — see 7 — and a
//!    new listing asked for, so memory stays bounded).
//! 2. The listing arrives. Containers of the previous portfolio that the listing (with the
//!    buffered events replayed onto it) lacks and for which no buffered exit says how
//!    they ended are looked up with one [`Job::ExitStatuses`] (inspects in bounded total
//!    time): their `Exited` carries the exit code and OOM flag the engine still has, null
//!    only when it no longer knows. Events keep being buffered meanwhile.
//! 3. The buffered events are replayed onto the listing (see [`fold`]): containers that
//!    died during the listing are dropped, pause changes are applied, a start for a
//!    container the listing lacks becomes a pending inspect (a start for one it has is no
//!    duplicate). The first exit of a container before any start of it in the buffer is
//!    its old incarnation's; a later start/exit pair is a short-lived incarnation of its
//!    own. So `[die(1), start, die(2)]` gives the old container `Exited(1)` and the second
//!    incarnation `Started` + `Exited(2)`, wherever the listing was taken among them. When
//!    the listing shows a newer incarnation than the portfolio and a start follows the
//!    exit, the buffer cannot tell whose exit it is: it goes to the old one, and the start
//!    that follows is inspected (the engine says which incarnation is alive).
//! 4. The result is diffed against what the watcher showed before (empty at first):
//!    `Exited` for containers that vanished, an `Exited` + `Started` pair for a container
//!    that came back with a new PID, `Paused`/`Unpaused` for changed state, `Started` for
//!    new ones (never a second `Started` for a survivor), then `Started` + `Exited` for
//!    short-lived containers the listing saw. The `Started` events of the very first
//!    listing are marked synthetic: they describe the initial portfolio.
//! 5. Live: a start triggers an inspect on the worker thread (other events keep flowing).
//!    A die for that container while the inspect is in flight is recorded; when the
//!    inspect answers, the container is reported `Started` then `Exited` with the die's
//!    exit code and OOM flag, with the details the inspect found (alive or exited), or,
//!    when the engine no longer knows it, with just its id and project (pid 0). It never
//!    enters the portfolio. An inspect that says "exited" before the die arrived reports
//!    `Started` + `Exited` with the engine's exit status; one that says "gone" waits
//!    [`Config::die_wait`] for the die (for its exit code).
//! 6. An inspect that fails for another reason is retried with backoff (a timer), at most
//!    [`Config::inspect_attempts`] times; meanwhile health is `Syncing` (a container the
//!    engine reported started is unaccounted for). When the attempts are exhausted the
//!    watcher relists (anti-entropy, same stream) instead of forgetting the container.
//! 7. Before a new listing (stream lost, relist, buffer overflow) every pending container
//!    is settled: its short-lived incarnations are reported at once (bare: id and
//!    project), its open one is carried into the next listing's buffer as a start. When
//!    the stream is lost or the buffer overflows during a listing, the buffered events are
//!    "salvaged": applied as live events (they follow the portfolio shown, in order), so
//!    exits keep their codes and starts are carried (before the first sync only the
//!    starts, one per container). Carried starts do not count against the cap; there is
//!    at most one per container.
//!
//! Health: `Synced` only in the live phase with no failed inspect outstanding;
//! `Reconnecting { since }` keeps the time of the first loss until the next `Synced`;
//! `Failed` is terminal (effects say stop: the caller ends every thread and subscription).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::health::Health;
use crate::container::{Container, PROJECT_LABEL};
use crate::engine::{ExitStatus, Inspection, RawEvent};
use crate::error::{Error, Result};
use crate::event::{ContainerEvent, EventKind};
use crate::portfolio::Portfolio;
use crate::retry::RetryPolicy;

/// One message to the state machine.
#[derive(Debug)]
pub(crate) enum Input {
    /// The reader opened event stream generation `gen`.
    StreamOpened { gen: u64 },
    /// An engine event of generation `gen`.
    Event { gen: u64, event: RawEvent },
    /// Generation `gen` of the event stream broke (or could not be opened).
    StreamLost { gen: u64, error: Error },
    /// The reader's retry policy gave up.
    GaveUp { error: Error },
    /// The answer to [`Job::List`]: the containers as the engine client built them,
    /// shared from here on, never copied.
    Listed {
        token: u64,
        result: Result<Vec<Arc<Container>>>,
    },
    /// The answer to [`Job::Inspect`].
    Inspected {
        token: u64,
        id: String,
        result: Result<Inspection>,
    },
    /// The answer to [`Job::ExitStatuses`]: ids that were not inspected in time are missing.
    ExitStatuses {
        token: u64,
        results: Vec<(String, Result<Inspection>)>,
    },
    /// A timer set through [`SyncState::next_deadline`] is due (spurious ticks are harmless).
    Tick,
}

/// Work for the worker thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Job {
    /// List the alive containers.
    List { token: u64 },
    /// Inspect one container.
    Inspect { token: u64, id: String },
    /// Inspect these (vanished) containers for their exit status, spending at most
    /// `budget` in all; answer with what was found in time.
    ExitStatuses {
        token: u64,
        ids: Vec<String>,
        budget: Duration,
    },
}

/// What one [`SyncState::handle`] call asks of its caller.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Jobs for the worker, in order.
    pub(crate) jobs: Vec<Job>,
    /// Events to publish (with the new portfolio), in order.
    pub(crate) events: Vec<ContainerEvent>,
    /// The portfolio changed (publish a new snapshot).
    pub(crate) changed: bool,
    /// Raw engine events taken in.
    pub(crate) raw_events: u64,
    /// Resyncs completed.
    pub(crate) resyncs: u64,
    /// The watcher failed for good: stop every thread, end every subscription.
    pub(crate) stop: bool,
}

impl Effects {
    /// Appends `other` (for batching several inputs into one publication).
    pub(crate) fn extend(&mut self, other: Effects) {
        // Taken over rather than copied when this batch has none yet (a resync's events
        // are as many as the containers: a copy is one more transient vector of them).
        if self.jobs.is_empty() {
            self.jobs = other.jobs;
        } else {
            self.jobs.extend(other.jobs);
        }
        if self.events.is_empty() {
            self.events = other.events;
        } else {
            self.events.extend(other.events);
        }
        self.changed |= other.changed;
        self.raw_events += other.raw_events;
        self.resyncs += other.resyncs;
        self.stop |= other.stop;
    }
}

/// Tunables of the state machine.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Attempts per inspect before relisting (at least 1).
    pub(crate) inspect_attempts: u32,
    /// Delay before the first inspect retry; doubles per attempt, capped at 2 s.
    pub(crate) inspect_backoff: Duration,
    /// Most events buffered while listing; overflow drops them and relists.
    pub(crate) max_buffered: usize,
    /// How long a started container that the engine no longer knows waits for its die
    /// (Podman's compat API delivers die events up to ~250 ms late when idle, seconds late
    /// under load; only such containers' reports wait, nothing else does).
    pub(crate) die_wait: Duration,
    /// Time budget of one [`Job::ExitStatuses`].
    pub(crate) status_budget: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            inspect_attempts: 3,
            inspect_backoff: Duration::from_millis(50),
            max_buffered: 65_536,
            die_wait: Duration::from_secs(5),
            status_budget: Duration::from_secs(2),
        }
    }
}

/// Most short-lived incarnations remembered for one container while its inspect runs
/// (a crash loop faster than the engine answers); older ones are reported without details
/// at once.
const MAX_INCARNATIONS: usize = 16;

/// Longest delay between two inspect attempts.
const MAX_INSPECT_BACKOFF: Duration = Duration::from_secs(2);

/// How a process ended, from a die event or an inspect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exit {
    pub(crate) code: Option<i32>,
    pub(crate) oom: bool,
    pub(crate) time: SystemTime,
}

/// A container the engine reported started and the watcher has not accounted for yet.
#[derive(Debug)]
struct Pending {
    token: u64,
    project: Option<String>,
    /// Pause state seen after the start (applies to the open incarnation).
    paused: Option<bool>,
    /// Incarnations that started and exited already, in order.
    done: Vec<Exit>,
    /// The last start has no exit yet.
    open: bool,
    /// Attempts made for the current token.
    attempts: u32,
    /// An attempt failed: try again then.
    retry_at: Option<Instant>,
    /// The engine no longer knows the container while its incarnation is open: wait for
    /// the die until then (with the details the inspect found, if any).
    await_die: Option<(Instant, Option<Container>)>,
    /// What the last exit event said about the container (name, image, labels).
    told: Option<Box<crate::engine::EventDetails>>,
}

enum Phase {
    /// No event stream.
    Down,
    Listing(Listing),
    Live,
    Failed,
}

struct Listing {
    /// Token of the outstanding List or ExitStatuses job.
    token: u64,
    buffered: Vec<RawEvent>,
    /// How many of `buffered` (at its start) are starts carried from before: they do
    /// not count against the cap (at most one per pending container).
    carried: usize,
    /// The listing failed: retry then.
    retry_at: Option<Instant>,
    /// The listing, while its vanished containers' exit statuses are asked for.
    listed: Option<Vec<Arc<Container>>>,
}

/// What an inspect found, for [`SyncState::finalize`].
enum Outcome {
    Alive,
    Exited(ExitStatus),
    Gone,
}

/// The sync algorithm's whole state.
pub(crate) struct SyncState {
    cfg: Config,
    list_retry: Box<dyn RetryPolicy>,
    gen: u64,
    phase: Phase,
    portfolio: Portfolio,
    pending: HashMap<String, Pending>,
    next_token: u64,
    seq: u64,
    health: Health,
    stale_since: Option<SystemTime>,
    synced_once: bool,
    /// Starts of pending containers carried into the next listing's buffer.
    carry: Vec<RawEvent>,
    /// Applying a lost listing's buffer: no inspects.
    salvaging: bool,
    fx: Effects,
}

impl SyncState {
    pub(crate) fn new(cfg: Config, list_retry: Box<dyn RetryPolicy>) -> Self {
        SyncState {
            cfg: Config {
                inspect_attempts: cfg.inspect_attempts.max(1),
                max_buffered: cfg.max_buffered.max(1),
                ..cfg
            },
            list_retry,
            gen: 0,
            phase: Phase::Down,
            portfolio: Portfolio::new(),
            pending: HashMap::new(),
            next_token: 0,
            seq: 0,
            health: Health::Connecting,
            stale_since: None,
            synced_once: false,
            carry: Vec::new(),
            salvaging: false,
            fx: Effects::default(),
        }
    }

    /// The current portfolio (its `seq` is not set: see [`seq`](Self::seq)).
    pub(crate) fn portfolio(&self) -> &Portfolio {
        &self.portfolio
    }

    /// Sequence number of the last event emitted.
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    /// The health the watcher should show once the effects so far are published.
    pub(crate) fn health(&self) -> &Health {
        &self.health
    }

    /// Events buffered while listing.
    #[cfg(test)]
    #[allow(dead_code)]
    pub(crate) fn buffered(&self) -> usize {
        match &self.phase {
            Phase::Listing(l) => l.buffered.len() - l.carried,
            _ => 0,
        }
    }

    /// True in the live phase.
    #[cfg(test)]
    pub(crate) fn is_live(&self) -> bool {
        matches!(self.phase, Phase::Live)
    }

    /// Starts carried into the current listing's buffer.
    #[cfg(test)]
    pub(crate) fn carried(&self) -> usize {
        match &self.phase {
            Phase::Listing(l) => l.carried,
            _ => 0,
        }
    }

    /// Containers started and not yet accounted for.
    #[cfg(test)]
    #[allow(dead_code)]
    pub(crate) fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// When the next [`Input::Tick`] is due, if any timer is set.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let mut d: Option<Instant> = None;
        let mut take = |t: Instant| d = Some(d.map_or(t, |d| d.min(t)));
        if let Phase::Listing(l) = &self.phase {
            if let Some(t) = l.retry_at {
                take(t);
            }
        }
        for p in self.pending.values() {
            if let Some(t) = p.retry_at {
                take(t);
            }
            if let Some((t, _)) = &p.await_die {
                take(*t);
            }
        }
        d
    }

    /// Takes one message; `now` and `wall` are the caller's clocks.
    pub(crate) fn handle(&mut self, input: Input, now: Instant, wall: SystemTime) -> Effects {
        if matches!(self.phase, Phase::Failed) {
            return Effects::default();
        }
        match input {
            Input::StreamOpened { gen } => {
                self.gen = gen;
                self.flush_pending(wall);
                self.start_listing();
                self.health = Health::Syncing;
            }
            Input::Event { gen, event } if gen == self.gen => {
                self.fx.raw_events += 1;
                let max = self.cfg.max_buffered;
                match &mut self.phase {
                    Phase::Listing(l) if l.buffered.len() - l.carried >= max => {
                        // Apply what is buffered as live events (as when the stream is
                        // lost), then list again with an empty buffer.
                        log::warn!("more than {max} events while listing: relisting");
                        let l = std::mem::replace(&mut self.phase, Phase::Down);
                        if let Phase::Listing(l) = l {
                            self.salvage(l.buffered, wall);
                        }
                        self.flush_pending(wall);
                        self.start_listing();
                        if let Phase::Listing(l) = &mut self.phase {
                            l.buffered.push(event);
                        }
                    }
                    Phase::Listing(l) => l.buffered.push(event),
                    Phase::Live => self.apply_live(event, wall),
                    Phase::Down | Phase::Failed => {}
                }
            }
            Input::Event { .. } => {}
            Input::StreamLost { gen, error } => {
                if gen == self.gen {
                    if let Phase::Listing(l) = std::mem::replace(&mut self.phase, Phase::Down) {
                        self.salvage(l.buffered, wall);
                    }
                    self.flush_pending(wall);
                    self.lost(error, wall);
                }
            }
            Input::GaveUp { error } => self.fail(error),
            Input::Listed { token, result } => self.listed(token, result, now, wall),
            Input::ExitStatuses { token, results } => {
                let ok = matches!(&self.phase, Phase::Listing(l)
                    if l.token == token && l.listed.is_some());
                if ok {
                    let statuses: HashMap<String, Result<Inspection>> =
                        results.into_iter().collect();
                    self.resync(None, statuses, wall);
                }
            }
            Input::Inspected { token, id, result } => self.inspected(token, id, result, now, wall),
            Input::Tick => self.tick(now, wall),
        }
        if matches!(self.phase, Phase::Live) {
            self.settle_health();
        }
        std::mem::take(&mut self.fx)
    }

    fn lost(&mut self, error: Error, wall: SystemTime) {
        let since = *self.stale_since.get_or_insert(wall);
        self.health = Health::Reconnecting {
            since,
            last_error: error,
        };
    }

    fn fail(&mut self, error: Error) {
        self.phase = Phase::Failed;
        self.pending = HashMap::new();
        self.carry = Vec::new();
        let error = match error {
            e @ Error::GaveUp { .. } => e,
            e => Error::GaveUp { last: Box::new(e) },
        };
        self.health = Health::Failed(error);
        self.fx.stop = true;
    }

    fn settle_health(&mut self) {
        if self.pending.values().any(|p| p.retry_at.is_some()) {
            self.health = Health::Syncing;
        } else {
            self.health = Health::Synced;
            self.stale_since = None;
        }
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    fn start_listing(&mut self) {
        let token = self.token();
        let buffered = std::mem::take(&mut self.carry);
        self.phase = Phase::Listing(Listing {
            token,
            carried: buffered.len(),
            buffered,
            retry_at: None,
            listed: None,
        });
        self.fx.jobs.push(Job::List { token });
    }

    fn emit(&mut self, kind: EventKind, container: Arc<Container>, time: SystemTime) {
        self.emit_as(kind, container, time, false)
    }

    fn emit_as(
        &mut self,
        kind: EventKind,
        container: Arc<Container>,
        time: SystemTime,
        synthetic: bool,
    ) {
        self.seq += 1;
        self.fx.events.push(ContainerEvent {
            seq: self.seq,
            time,
            kind,
            container,
            synthetic,
        });
        self.fx.changed = true;
    }

    fn emit_exited(&mut self, c: Arc<Container>, exit: Exit) {
        let kind = EventKind::Exited {
            exit_code: exit.code,
            oom: exit.oom,
        };
        self.emit(kind, c, exit.time);
    }

    /// A container known only by id (and its project, when an event carried it).
    fn bare(id: &str, project: Option<&str>) -> Container {
        let c = Container::new(id, "", 0);
        match project.filter(|p| !p.is_empty()) {
            Some(p) => c.with_labels([(PROJECT_LABEL, p)]),
            None => c,
        }
    }

    /// Settles every pending container before a listing (the stream is lost or a relist
    /// begins): its short-lived incarnations are reported at once, without details; its
    /// open one is carried into the next listing's buffer as a start that happened before
    /// the listing (so that it is reported even if it dies before the listing: the
    /// listing covers it, or its inspect then says how it ended).
    fn flush_pending(&mut self, wall: SystemTime) {
        let mut ids: Vec<String> = self.pending.keys().cloned().collect();
        ids.sort();
        for id in ids {
            let Some(mut p) = self.pending.remove(&id) else {
                continue;
            };
            if p.open {
                let mut e = RawEvent::new(EventKind::Started, id.clone());
                e.project = p.project.clone();
                e.time = wall;
                self.carry.push(e);
            }
            if !p.done.is_empty() {
                p.open = false;
                let details = p.await_die.take().and_then(|(_, d)| d);
                self.finalize_pending(&id, p, details, Outcome::Gone, wall);
            }
        }
    }

    /// The stream was lost while listing: the buffered events (they follow the portfolio
    /// shown, in order) are applied as live ones, so that exits are reported with their
    /// codes and starts are carried into the next listing (a short-lived container
    /// reported without details). Before the first sync only the starts are carried.
    fn salvage(&mut self, buffered: Vec<RawEvent>, wall: SystemTime) {
        if !self.synced_once {
            // One start per container: the carry stays bounded by the containers.
            for e in buffered {
                if e.kind == EventKind::Started && !self.carry.iter().any(|c| c.id == e.id) {
                    self.carry.push(e);
                }
            }
            return;
        }
        self.salvaging = true;
        self.phase = Phase::Live;
        for ev in buffered {
            self.apply_live(ev, wall);
        }
        self.phase = Phase::Down;
        self.salvaging = false;
    }

    fn inspect(&mut self, id: &str, project: Option<String>) {
        let token = self.token();
        self.pending.insert(
            id.to_string(),
            Pending {
                token,
                project,
                paused: None,
                done: Vec::new(),
                open: true,
                attempts: 1,
                retry_at: None,
                await_die: None,
                told: None,
            },
        );
        if !self.salvaging {
            self.fx.jobs.push(Job::Inspect {
                token,
                id: id.to_string(),
            });
        }
    }

    fn listed(
        &mut self,
        token: u64,
        result: Result<Vec<Arc<Container>>>,
        now: Instant,
        wall: SystemTime,
    ) {
        let Phase::Listing(l) = &mut self.phase else {
            return;
        };
        // One answer per token: a new token for each List job, and another one while the
        // exit statuses are asked for.
        if l.token != token {
            return;
        }
        match result {
            Ok(list) => {
                self.list_retry.reset();
                // Shared, never copied: the containers stay where the engine client
                // allocated them (one deep copy per container and listing left the client
                // threads' allocator arenas holding freed copies: issue 16).
                let f = fold(&self.portfolio, &list, &l.buffered);
                let mut ids: Vec<String> = self
                    .portfolio
                    .iter()
                    .filter(|c| f.fresh.get(&c.id).is_none() && !f.first_exit.contains_key(&c.id))
                    .map(|c| c.id.clone())
                    .collect();
                if ids.is_empty() {
                    // Nothing buffered since the fold: it stands (built once, not twice:
                    // a second portfolio's allocations left freed memory behind, issue 16).
                    self.resync(Some(f), HashMap::new(), wall);
                } else {
                    l.listed = Some(list);
                    ids.sort();
                    let token = self.token();
                    if let Phase::Listing(l) = &mut self.phase {
                        l.token = token;
                    }
                    self.fx.jobs.push(Job::ExitStatuses {
                        token,
                        ids,
                        budget: self.cfg.status_budget,
                    });
                }
            }
            Err(e) if e.is_cancelled() => {}
            Err(e) => {
                log::warn!("listing containers failed: {e}");
                match self.list_retry.next_delay() {
                    Some(d) => {
                        l.retry_at = Some(now + d);
                        self.lost(e, wall);
                    }
                    None => self.fail(e),
                }
            }
        }
    }

    /// Steps 3 and 4: replay the buffered events onto the listing (unless `folded` did
    /// already, with every buffered event), emit the diff.
    fn resync(
        &mut self,
        folded: Option<Folded>,
        statuses: HashMap<String, Result<Inspection>>,
        wall: SystemTime,
    ) {
        let Phase::Listing(l) = std::mem::replace(&mut self.phase, Phase::Live) else {
            return;
        };
        let f = folded.unwrap_or_else(|| {
            let list = l.listed.unwrap_or_default();
            fold(&self.portfolio, &list, &l.buffered)
        });
        let initial = !self.synced_once;
        let old = std::mem::replace(&mut self.portfolio, f.fresh);
        let vanished_exit = |id: &str| -> Exit {
            if let Some(e) = f.first_exit.get(id) {
                return *e;
            }
            match statuses.get(id) {
                Some(Ok(Inspection::Exited(_, st))) => Exit {
                    code: st.exit_code,
                    oom: st.oom,
                    time: st.time.unwrap_or(wall),
                },
                _ => Exit {
                    code: None,
                    oom: false,
                    time: wall,
                },
            }
        };
        let mut old_sorted: Vec<_> = old.iter().cloned().collect();
        old_sorted.sort_by(|a, b| a.id.cmp(&b.id));
        for c in old_sorted {
            match self.portfolio.get(&c.id).cloned() {
                None => {
                    let e = vanished_exit(&c.id);
                    self.emit_exited(c, e);
                }
                Some(n) if n.pid != c.pid => {
                    let e = vanished_exit(&c.id);
                    self.emit_exited(c, e);
                    self.emit(EventKind::Started, n, wall);
                }
                Some(n) if n.paused != c.paused => {
                    let k = if n.paused {
                        EventKind::Paused
                    } else {
                        EventKind::Unpaused
                    };
                    self.emit(k, n, wall);
                }
                Some(_) => {}
            }
        }
        let mut new: Vec<_> = self
            .portfolio
            .iter()
            .filter(|n| old.get(&n.id).is_none())
            .cloned()
            .collect();
        new.sort_by(|a, b| a.id.cmp(&b.id));
        // One vector of the right size rather than a doubling series (a first listing emits
        // one event per container; the series' freed vectors stayed with the allocator).
        self.fx.events.reserve_exact(new.len());
        for n in new {
            self.emit_as(EventKind::Started, n, wall, initial);
        }
        for (c, exit) in f.listed_short {
            self.emit(EventKind::Started, c.clone(), wall);
            self.emit_exited(c, exit);
        }
        for (id, d) in f.pend {
            self.inspect(&id, d.project);
            if let Some(p) = self.pending.get_mut(&id) {
                p.paused = d.paused;
                p.done = d.done;
                p.open = d.open;
            }
        }
        self.synced_once = true;
        self.fx.changed = true;
        self.fx.resyncs += 1;
    }

    /// Step 5: one live event.
    fn apply_live(&mut self, ev: RawEvent, wall: SystemTime) {
        match ev.kind {
            EventKind::Started => {
                if let Some(p) = self.pending.get_mut(&ev.id) {
                    if p.open && p.await_die.is_some() {
                        // The engine said the open incarnation is gone, and now another
                        // one starts: the die of the first was not seen.
                        p.done.push(Exit {
                            code: None,
                            oom: false,
                            time: wall,
                        });
                        p.open = false;
                    }
                    // A new incarnation (or, with the last one open, a repeated start, or
                    // one whose die was lost while the watcher was away): what an inspect
                    // in flight finds may predate it, so ask again.
                    if !p.open {
                        p.paused = None;
                    }
                    p.open = true;
                    p.attempts = 1;
                    p.retry_at = None;
                    p.await_die = None;
                    self.next_token += 1;
                    p.token = self.next_token;
                    if !self.salvaging {
                        self.fx.jobs.push(Job::Inspect {
                            token: p.token,
                            id: ev.id,
                        });
                    }
                    return;
                }
                if self.portfolio.get(&ev.id).is_none() {
                    self.inspect(&ev.id, ev.project);
                }
            }
            EventKind::Exited { exit_code, oom } => {
                let exit = Exit {
                    code: exit_code,
                    oom,
                    time: ev.time,
                };
                if let Some(p) = self.pending.get_mut(&ev.id) {
                    if ev.details.is_some() {
                        p.told = ev.details.clone();
                    }
                    if p.open {
                        p.open = false;
                        p.done.push(exit);
                        if p.done.len() > MAX_INCARNATIONS {
                            let first = p.done.remove(0);
                            let c = Arc::new(Self::bare(&ev.id, p.project.as_deref()));
                            self.emit(EventKind::Started, c.clone(), wall);
                            self.emit_exited(c, first);
                        }
                    }
                    let waiting = self
                        .pending
                        .get_mut(&ev.id)
                        .and_then(|p| p.await_die.take());
                    if let Some((_, details)) = waiting {
                        self.finalize(&ev.id, details, Outcome::Gone, wall);
                    }
                    return;
                }
                if let Some(c) = self.portfolio.remove(&ev.id) {
                    self.emit_exited(c, exit);
                }
            }
            EventKind::Paused | EventKind::Unpaused => {
                let p = ev.kind == EventKind::Paused;
                if let Some(c) = self.portfolio.get(&ev.id) {
                    if c.paused != p {
                        let n = Arc::new(c.with_paused(p));
                        self.portfolio.insert(n.clone());
                        let k = if p {
                            EventKind::Paused
                        } else {
                            EventKind::Unpaused
                        };
                        self.emit(k, n, ev.time);
                    }
                } else if let Some(pe) = self.pending.get_mut(&ev.id) {
                    if pe.open {
                        pe.paused = Some(p);
                    }
                }
            }
        }
    }

    fn inspected(
        &mut self,
        token: u64,
        id: String,
        result: Result<Inspection>,
        now: Instant,
        wall: SystemTime,
    ) {
        let Some(p) = self.pending.get_mut(&id) else {
            return;
        };
        // One answer per job; a retry or a new incarnation gets a new job (a retry keeps
        // the token: its first answer came already).
        if p.token != token {
            return;
        }
        let die_at = now + self.cfg.die_wait;
        let gone = |p: &mut Pending, details: Option<Container>| {
            if p.open {
                p.await_die = Some((die_at, details));
                None
            } else {
                Some(details)
            }
        };
        let finish = match result {
            Ok(Inspection::Alive(c)) if c.pid != 0 => Some((Some(c), Outcome::Alive)),
            Ok(Inspection::Alive(c)) => gone(p, Some(c)).map(|d| (d, Outcome::Gone)),
            Ok(Inspection::Exited(c, st)) => Some((Some(c), Outcome::Exited(st))),
            Err(e) if e.is_not_alive() => gone(p, None).map(|d| (d, Outcome::Gone)),
            Err(e) if e.is_cancelled() => {
                self.pending.remove(&id);
                return;
            }
            Err(e) => {
                if p.attempts < self.cfg.inspect_attempts {
                    let exp = p.attempts.saturating_sub(1).min(16);
                    let delay = self
                        .cfg
                        .inspect_backoff
                        .saturating_mul(1 << exp)
                        .min(MAX_INSPECT_BACKOFF);
                    p.attempts += 1;
                    p.retry_at = Some(now + delay);
                    log::info!("inspecting container {id} failed, retrying in {delay:?}: {e}");
                } else {
                    log::warn!(
                        "inspecting container {id} failed {} times, relisting: {e}",
                        p.attempts
                    );
                    self.flush_pending(wall);
                    self.start_listing();
                    self.health = Health::Syncing;
                }
                return;
            }
        };
        // None: gone while open, waiting for the die (for its exit code), at most die_wait.
        if let Some((details, outcome)) = finish {
            self.finalize(&id, details, outcome, wall);
        }
    }

    fn finalize(
        &mut self,
        id: &str,
        details: Option<Container>,
        outcome: Outcome,
        wall: SystemTime,
    ) {
        if let Some(p) = self.pending.remove(id) {
            self.finalize_pending(id, p, details, outcome, wall);
        }
    }

    /// Reports a pending container: each short-lived incarnation as `Started` + `Exited`,
    /// then the open one as the inspect found it.
    fn finalize_pending(
        &mut self,
        id: &str,
        p: Pending,
        details: Option<Container>,
        outcome: Outcome,
        wall: SystemTime,
    ) {
        let base = details
            .or_else(|| {
                p.told
                    .as_ref()
                    .map(|d| d.to_container(id, Default::default()))
            })
            .unwrap_or_else(|| Self::bare(id, p.project.as_deref()));
        let n = p.done.len();
        for (i, exit) in p.done.iter().enumerate() {
            let last = i + 1 == n && !p.open;
            let mut exit = *exit;
            let mut c = base.clone();
            match &outcome {
                // The inspect ran before this die: its pid is this incarnation's.
                Outcome::Alive if last => {}
                Outcome::Exited(st) if last => {
                    exit.code = exit.code.or(st.exit_code);
                    exit.oom |= st.oom;
                    c.pid = 0;
                }
                _ => c.pid = 0,
            }
            c.paused = false;
            let c = Arc::new(c);
            self.emit(EventKind::Started, c.clone(), wall);
            self.emit_exited(c, exit);
        }
        if !p.open {
            return;
        }
        let mut c = base;
        match outcome {
            Outcome::Alive => {
                if let Some(paused) = p.paused {
                    c.paused = paused;
                }
                let c = Arc::new(c);
                self.portfolio.insert(c.clone());
                self.emit(EventKind::Started, c, wall);
            }
            Outcome::Exited(st) => {
                c.pid = 0;
                let c = Arc::new(c);
                self.emit(EventKind::Started, c.clone(), wall);
                let exit = Exit {
                    code: st.exit_code,
                    oom: st.oom,
                    time: st.time.unwrap_or(wall),
                };
                self.emit_exited(c, exit);
            }
            Outcome::Gone => {
                c.pid = 0;
                let c = Arc::new(c);
                self.emit(EventKind::Started, c.clone(), wall);
                let exit = Exit {
                    code: None,
                    oom: false,
                    time: wall,
                };
                self.emit_exited(c, exit);
            }
        }
    }

    fn tick(&mut self, now: Instant, wall: SystemTime) {
        if matches!(&self.phase, Phase::Listing(l) if l.retry_at.is_some_and(|t| t <= now)) {
            // Same buffer (its events still follow the stream's opening); health stays
            // Reconnecting (stale since the first loss) until the listing answers.
            let token = self.token();
            if let Phase::Listing(l) = &mut self.phase {
                l.token = token;
                l.retry_at = None;
            }
            self.fx.jobs.push(Job::List { token });
        }
        let mut retry: Vec<(String, u64)> = Vec::new();
        let mut expired: Vec<String> = Vec::new();
        for (id, p) in &mut self.pending {
            if p.retry_at.is_some_and(|t| t <= now) {
                p.retry_at = None;
                retry.push((id.clone(), p.token));
            }
            if p.await_die.as_ref().is_some_and(|(t, _)| *t <= now) {
                expired.push(id.clone());
            }
        }
        retry.sort();
        expired.sort();
        for (id, token) in retry {
            self.fx.jobs.push(Job::Inspect { token, id });
        }
        for id in expired {
            let details = self
                .pending
                .get_mut(&id)
                .and_then(|p| p.await_die.take())
                .and_then(|(_, d)| d);
            self.finalize(&id, details, Outcome::Gone, wall);
        }
    }
}

/// A start seen in the listing buffer for a container the listing lacks.
#[derive(Debug, Default)]
pub(crate) struct Draft {
    project: Option<String>,
    paused: Option<bool>,
    done: Vec<Exit>,
    open: bool,
}

/// The buffered events replayed onto a listing.
pub(crate) struct Folded {
    /// The new portfolio.
    fresh: Portfolio,
    /// The first exit of a container before any start of it: its old incarnation's.
    first_exit: HashMap<String, Exit>,
    /// Containers the listing saw that exited later in the buffer.
    listed_short: Vec<(Arc<Container>, Exit)>,
    /// Containers started in the buffer that the listing lacks, in order of first start.
    pend: Vec<(String, Draft)>,
}

/// Step 3: replays `buffered` (events that arrived while listing; the listing was taken
/// at an unknown point among them) onto `list`, with `old` the portfolio shown before.
pub(crate) fn fold(old: &Portfolio, list: &[Arc<Container>], buffered: &[RawEvent]) -> Folded {
    let mut fresh: Portfolio = list.iter().filter(|c| c.pid != 0).cloned().collect();
    let mut first_exit: HashMap<String, Exit> = HashMap::new();
    let mut listed_short = Vec::new();
    let mut pend: Vec<(String, Draft)> = Vec::new();
    let mut pend_at: HashMap<&str, usize> = HashMap::new();
    let mut seen_start: HashSet<&str> = HashSet::new();
    let mut last_start: HashMap<&str, usize> = HashMap::new();
    for (i, ev) in buffered.iter().enumerate() {
        if ev.kind == EventKind::Started {
            last_start.insert(ev.id.as_str(), i);
        }
    }
    for (i, ev) in buffered.iter().enumerate() {
        let id = ev.id.as_str();
        match ev.kind {
            EventKind::Started => {
                if let Some(&i) = pend_at.get(id) {
                    let d = &mut pend[i].1;
                    if !d.open {
                        d.open = true;
                        d.paused = None;
                    }
                } else if fresh.get(id).is_none() {
                    pend_at.insert(id, pend.len());
                    pend.push((
                        ev.id.clone(),
                        Draft {
                            project: ev.project.clone(),
                            open: true,
                            ..Draft::default()
                        },
                    ));
                }
                seen_start.insert(id);
            }
            EventKind::Exited { exit_code, oom } => {
                let exit = Exit {
                    code: exit_code,
                    oom,
                    time: ev.time,
                };
                if let Some(&i) = pend_at.get(id) {
                    let d = &mut pend[i].1;
                    if d.open {
                        d.open = false;
                        d.done.push(exit);
                    }
                    continue;
                }
                let before_start = !seen_start.contains(id);
                let start_follows = last_start.get(id).is_some_and(|&j| j > i);
                match (fresh.get(id).cloned(), old.get(id)) {
                    // The listing shows the old incarnation: this is its exit.
                    (Some(c), Some(o)) if o.pid == c.pid => {
                        first_exit.entry(ev.id.clone()).or_insert(exit);
                        fresh.remove(id);
                    }
                    // The listing shows a newer incarnation and a start follows in the
                    // buffer: either this exit is the old one's and the listing was taken
                    // after that start, or the listed one started while the watcher was
                    // away and this is its exit, the listing taken before it. The
                    // buffer cannot tell: the exit goes to the old one, and the listed
                    // one is dropped so that the start that follows is inspected (the
                    // engine says which incarnation is alive). (With no start to follow,
                    // the listed one is short-lived: next arm.)
                    (Some(_), Some(_)) if before_start && start_follows => {
                        first_exit.entry(ev.id.clone()).or_insert(exit);
                        fresh.remove(id);
                    }
                    // A container the listing saw, short-lived.
                    (Some(c), _) => {
                        fresh.remove(id);
                        listed_short.push((c, exit));
                    }
                    (None, _) if before_start => {
                        first_exit.entry(ev.id.clone()).or_insert(exit);
                    }
                    (None, _) => {}
                }
            }
            EventKind::Paused | EventKind::Unpaused => {
                let p = ev.kind == EventKind::Paused;
                if let Some(c) = fresh.get(id) {
                    if c.paused != p {
                        let n = Arc::new(c.with_paused(p));
                        fresh.insert(n);
                    }
                } else if let Some(&i) = pend_at.get(id) {
                    let d = &mut pend[i].1;
                    if d.open {
                        d.paused = Some(p);
                    }
                }
            }
        }
    }
    Folded {
        fresh,
        first_exit,
        listed_short,
        pend,
    }
}
