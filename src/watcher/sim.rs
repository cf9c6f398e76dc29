//! Deterministic simulation of the sync state machine and the hub with real subscribers.
//!
//! A seeded PRNG drives random interleavings of engine truth changes (start, die, pause,
//! remove, engine restarts that kill everything silently, ids reused), event delivery,
//! worker jobs (listings, inspects, exit-status inquiries: run against the truth of the
//! moment they run, answered later, sometimes failing, sometimes cut short), stream
//! breaks and reconnects, timers, and subscribers (plain, slow with small queues that lag
//! and resubscribe, filtered, since-seq, since-time). After every step it checks:
//! 1. the published stream replayed from the start equals the published portfolio, and
//!    every subscriber that has drained its queue, replayed onto its starting snapshot,
//!    equals the portfolio (restricted to its container when filtered);
//! 2. live seqs strictly increase per subscriber; synthetic ones never exceed the first
//!    live one;
//! 3. never two Started without an Exited between (nor Exited/Paused of a dead one);
//! 4. health is truthful: `Reconnecting.since` is the first loss since the last
//!    `Synced`; `Synced` only with the stream up; after `Failed` nothing happens and every
//!    subscription ends;
//! 5. the listing buffer, the journal, the dropped-seq index and every queue stay within
//!    their bounds;
//! 6. an `Exited` with an exit code carries one the engine really gave that container;
//!    since-time subscriptions miss nothing at or after their time without a `Gap` whose
//!    bounds are exact;
//!
//! and at the end of each seed, once the engine is healed and quiet, that health is
//! `Synced` and the portfolio equals the engine's truth.
//!
//! `cargo test --lib sim` runs 2,000 seeds; `WHALEWATCHER_SIM_SEEDS=100000` runs more;
//! `WHALEWATCHER_SIM_SEED=N` replays one (a failure prints the command).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::health::Health;
use super::hub::{Hub, Item, Since, Subscription};
use super::state::{Config, Input, Job, SyncState};
use crate::container::{Container, PROJECT_LABEL};
use crate::engine::{ExitStatus, Inspection, RawEvent};
use crate::error::Error;
use crate::event::{ContainerEvent, EventKind};
use crate::portfolio::Portfolio;
use crate::retry::RetryPolicy;

use crate::sim_rng::Rng;

/// Retries with a fixed delay; gives up after `limit` consecutive failures, if set.
struct SimRetry {
    limit: Option<u32>,
    failures: u32,
}

impl RetryPolicy for SimRetry {
    fn next_delay(&mut self) -> Option<Duration> {
        self.failures += 1;
        match self.limit {
            Some(l) if self.failures > l => None,
            _ => Some(Duration::from_millis(20)),
        }
    }
    fn reset(&mut self) {
        self.failures = 0;
    }
}

type Model = BTreeMap<String, (u32, bool)>;

const IDS: u64 = 8;
const CAPACITY: usize = 4;
const JOURNAL: usize = 16;
const MAX_BUFFERED: usize = 12;

/// Applies one event to a model, checking that the sequence is valid (invariant 3).
fn apply(m: &mut Model, e: &ContainerEvent) -> Result<(), String> {
    let id = &e.container.id;
    match e.kind {
        EventKind::Started => {
            if m.insert(id.clone(), (e.container.pid, e.container.paused))
                .is_some()
            {
                return Err(format!("second Started for {id} (seq {})", e.seq));
            }
        }
        EventKind::Exited { .. } => {
            if m.remove(id).is_none() {
                return Err(format!("Exited without Started for {id} (seq {})", e.seq));
            }
        }
        EventKind::Paused | EventKind::Unpaused => {
            let p = e.kind == EventKind::Paused;
            match m.get_mut(id) {
                Some(s) if s.1 != p => s.1 = p,
                _ => return Err(format!("bad {:?} for {id} (seq {})", e.kind, e.seq)),
            }
        }
    }
    Ok(())
}

fn model_of(p: &Portfolio) -> Model {
    p.iter()
        .map(|c| (c.id.clone(), (c.pid, c.paused)))
        .collect()
}

fn restrict(m: &Model, filter: &Option<String>) -> Model {
    m.iter()
        .filter(|(k, _)| filter.as_ref().is_none_or(|f| f == *k))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Plain,
    Slow,
    Filtered,
    SinceSeq,
    SinceTime(SystemTime),
}

struct Sub {
    kind: Kind,
    rx: Subscription,
    filter: Option<String>,
    /// None until the starting snapshot is known (since-subscriptions: at the first item).
    model: Option<Model>,
    /// Seq of the portfolio when subscribed.
    at: u64,
    last_live: u64,
    synthetic_max: u64,
    /// Unreplayable (a Gap, or history too short): no more checks.
    broken: bool,
    ended: bool,
}

struct Truth {
    alive: BTreeMap<String, Container>,
    exited: BTreeMap<String, (Container, ExitStatus)>,
    next_pid: u32,
    codes: HashMap<String, Vec<i32>>,
}

struct Sim {
    rng: Rng,
    state: SyncState,
    hub: Hub,
    truth: Truth,
    start: Instant,
    ms: u64,
    gen: u64,
    up: bool,
    wire: VecDeque<RawEvent>,
    jobs: VecDeque<Job>,
    results: VecDeque<Input>,
    /// The published stream replayed from the start, and its model after each seq.
    reference: Model,
    history: BTreeMap<u64, Model>,
    /// (seq, time) of every published event.
    times: Vec<(u64, SystemTime)>,
    subs: Vec<Sub>,
    first_loss: Option<SystemTime>,
    failed: bool,
    inspect_fail: u64,
    list_fail: u64,
    status_cut: u64,
    max_portfolio: usize,
    cov: Coverage,
    /// Containers whose start the live watcher took and has not reported yet.
    owed: std::collections::BTreeSet<String>,
    /// Keep a log of inputs and events (when replaying one seed).
    verbose: bool,
    log: Vec<String>,
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed);
        let give_up = rng.chance(5).then_some(3);
        let inspect_fail = [0, 10, 40][rng.below(3) as usize];
        let list_fail = [0, 0, 25][rng.below(3) as usize];
        let status_cut = [0, 30][rng.below(2) as usize];
        let cfg = Config {
            max_buffered: MAX_BUFFERED,
            ..Config::default()
        };
        Sim {
            rng,
            state: SyncState::new(
                cfg,
                Box::new(SimRetry {
                    limit: give_up,
                    failures: 0,
                }),
            ),
            hub: Hub::new(CAPACITY, JOURNAL),
            truth: Truth {
                alive: BTreeMap::new(),
                exited: BTreeMap::new(),
                next_pid: 100,
                codes: HashMap::new(),
            },
            start: Instant::now(),
            ms: 0,
            gen: 0,
            up: false,
            wire: VecDeque::new(),
            jobs: VecDeque::new(),
            results: VecDeque::new(),
            reference: Model::new(),
            history: BTreeMap::from([(0, Model::new())]),
            times: Vec::new(),
            subs: Vec::new(),
            first_loss: None,
            failed: false,
            inspect_fail,
            list_fail,
            status_cut,
            max_portfolio: 0,
            owed: Default::default(),
            cov: Coverage::default(),
            verbose: false,
            log: Vec::new(),
        }
    }

    fn wall(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000) + Duration::from_millis(self.ms)
    }

    fn now(&self) -> Instant {
        self.start + Duration::from_millis(self.ms)
    }

    fn emit(&mut self, kind: EventKind, id: &str, project: &str) {
        if self.up {
            let mut e = RawEvent::new(kind, id);
            e.time = self.wall();
            e.project = Some(project.to_string());
            self.wire.push_back(e);
        }
    }

    // ---- the engine ----

    fn engine_op(&mut self) {
        let id = format!("c{}", self.rng.below(IDS));
        let project = if id.len() % 2 == 0 { "p" } else { "" };
        match self.rng.below(10) {
            0..=3 => {
                if !self.truth.alive.contains_key(&id) {
                    self.truth.next_pid += 1;
                    let mut c = Container::new(&id, format!("name-{id}"), self.truth.next_pid);
                    if !project.is_empty() {
                        c = c.with_labels([(PROJECT_LABEL, project)]);
                    }
                    self.truth.alive.insert(id.clone(), c);
                    self.truth.exited.remove(&id);
                    self.emit(EventKind::Started, &id, project);
                }
            }
            4..=6 => {
                let code = self.rng.below(256) as i32;
                let oom = self.rng.chance(10);
                self.die(&id, code, oom, true);
            }
            7 | 8 => {
                let p = self.rng.chance(50);
                if let Some(c) = self.truth.alive.get_mut(&id) {
                    if c.paused != p {
                        c.paused = p;
                        let k = if p {
                            EventKind::Paused
                        } else {
                            EventKind::Unpaused
                        };
                        self.emit(k, &id, project);
                    }
                }
            }
            _ => {
                self.truth.exited.remove(&id);
            }
        }
    }

    fn die(&mut self, id: &str, code: i32, oom: bool, event: bool) {
        if let Some(mut c) = self.truth.alive.remove(id) {
            let project = c.project.clone();
            c.pid = 0;
            c.paused = false;
            let st = ExitStatus {
                exit_code: Some(code),
                oom,
                time: Some(self.wall()),
            };
            self.truth.exited.insert(id.to_string(), (c, st));
            self.truth
                .codes
                .entry(id.to_string())
                .or_default()
                .push(code);
            if event {
                self.emit(
                    EventKind::Exited {
                        exit_code: Some(code),
                        oom,
                    },
                    id,
                    &project,
                );
            }
        }
    }

    /// The engine restarts: its stream breaks and its containers die silently.
    fn engine_restart(&mut self) {
        self.break_stream();
        let ids: Vec<String> = self.truth.alive.keys().cloned().collect();
        for id in ids {
            if self.rng.chance(70) {
                self.die(&id, 137, false, false);
            }
        }
    }

    fn break_stream(&mut self) {
        if self.up {
            self.up = false;
            self.wire.clear();
            self.feed(Input::StreamLost {
                gen: self.gen,
                error: Error::protocol("sim", "stream broke"),
            });
        }
    }

    fn reconnect(&mut self) {
        if !self.up {
            if self.rng.chance(30) {
                // a failed attempt
                self.feed(Input::StreamLost {
                    gen: self.gen,
                    error: Error::protocol("sim", "refused"),
                });
                return;
            }
            self.gen += 1;
            self.up = true;
            self.feed(Input::StreamOpened { gen: self.gen });
        }
    }

    fn inspect(&mut self, id: &str) -> crate::Result<Inspection> {
        if let Some(c) = self.truth.alive.get(id) {
            return Ok(Inspection::Alive(c.clone()));
        }
        match self.truth.exited.get(id) {
            Some((c, st)) => Ok(Inspection::Exited(c.clone(), *st)),
            None => Err(Error::NotFound { id: id.into() }),
        }
    }

    /// The worker runs the next job against the truth of this moment.
    fn run_job(&mut self) {
        let Some(job) = self.jobs.pop_front() else {
            return;
        };
        let input = match job {
            Job::List { token } => {
                let result = if self.rng.chance(self.list_fail) {
                    Err(Error::protocol("sim", "list failed"))
                } else {
                    Ok(self.truth.alive.values().cloned().map(Arc::new).collect())
                };
                Input::Listed { token, result }
            }
            Job::Inspect { token, id } => {
                let result = if self.rng.chance(self.inspect_fail) {
                    self.cov.inspect_retries += 1;
                    Err(Error::protocol("sim", "inspect failed"))
                } else {
                    self.inspect(&id)
                };
                Input::Inspected { token, id, result }
            }
            Job::ExitStatuses { token, ids, .. } => {
                let mut results = Vec::new();
                for id in ids {
                    if self.rng.chance(self.status_cut) {
                        break; // out of time
                    }
                    let r = self.inspect(&id);
                    results.push((id, r));
                }
                Input::ExitStatuses { token, results }
            }
        };
        self.results.push_back(input);
    }

    // ---- the watcher ----

    fn feed(&mut self, input: Input) {
        if self.failed {
            let fx = self.state.handle(input, self.now(), self.wall());
            assert!(
                fx.jobs.is_empty() && fx.events.is_empty() && !fx.changed,
                "effects after Failed"
            );
            return;
        }
        let loss = matches!(
            &input,
            Input::StreamLost { gen, .. } if *gen == self.gen
        ) || matches!(&input, Input::Listed { result: Err(e), .. } if !e.is_cancelled());
        if self.verbose {
            self.log.push(describe_input(&input));
        }
        let wall = self.wall();
        // Item 7: a start the live watcher takes for a container it does not show is owed
        // a Started event.
        if let Input::Event { gen, event } = &input {
            if *gen == self.gen
                && event.kind == EventKind::Started
                && self.state.is_live()
                && self.state.portfolio().get(&event.id).is_none()
            {
                self.owed.insert(event.id.clone());
            }
        }
        let buffered = self.state.buffered();
        let event_in = matches!(&input, Input::Event { gen, .. } if *gen == self.gen);
        let fx = self.state.handle(input, self.now(), wall);
        if event_in
            && buffered == MAX_BUFFERED
            && fx.jobs.iter().any(|j| matches!(j, Job::List { .. }))
        {
            self.cov.overflows += 1;
        }
        self.cov.resyncs += fx.resyncs;
        for j in &fx.jobs {
            if let Job::ExitStatuses { .. } = j {
                self.cov.status_inquiries += 1;
            }
        }
        for w in fx.events.windows(2) {
            if w[0].kind == EventKind::Started
                && matches!(w[1].kind, EventKind::Exited { .. })
                && Arc::ptr_eq(&w[0].container, &w[1].container)
            {
                self.cov.short_lived += 1;
            }
        }
        // The first loss since the last Synced (a stale listing answer is no loss: the
        // machine ignores it and health does not change).
        if loss && self.first_loss.is_none() {
            if let Health::Reconnecting { .. } = self.state.health() {
                self.first_loss = Some(wall);
            }
        }
        self.jobs.extend(fx.jobs);
        if fx.changed || !fx.events.is_empty() {
            let mut p = self.state.portfolio().clone();
            p.set_seq(self.state.seq());
            self.max_portfolio = self.max_portfolio.max(p.len());
            self.hub.publish(Arc::new(p), &fx.events[..]);
            for e in &fx.events {
                if self.verbose {
                    self.log.push(format!("  {}", super::tests::describe(e)));
                }
                if let Err(m) = apply(&mut self.reference, e) {
                    panic!("published stream: {m}");
                }
                if let EventKind::Exited {
                    exit_code: Some(c), ..
                } = e.kind
                {
                    let known = self.truth.codes.get(&e.container.id);
                    assert!(
                        known.is_some_and(|k| k.contains(&c)),
                        "Exited {} with code {c} the engine never gave it ({known:?})",
                        e.container.id
                    );
                }
                if e.kind == EventKind::Started {
                    self.owed.remove(&e.container.id);
                }
                self.history.insert(e.seq, self.reference.clone());
                self.times.push((e.seq, e.time));
            }
            while self.history.len() > 4 * JOURNAL {
                self.history.pop_first();
            }
            assert_eq!(
                self.reference,
                model_of(&self.hub.portfolio),
                "published stream replayed != published portfolio"
            );
        }
        if fx.stop {
            assert!(matches!(self.state.health(), Health::Failed(_)));
            self.failed = true;
            self.hub.close();
        }
        self.check_health();
    }

    fn check_health(&mut self) {
        match self.state.health() {
            Health::Synced => {
                assert!(self.up, "Synced with the stream down");
                self.first_loss = None;
            }
            Health::Reconnecting { since, .. } => {
                assert_eq!(Some(*since), self.first_loss, "Reconnecting.since");
            }
            Health::Failed(_) => assert!(self.failed, "Failed without stop"),
            _ => {}
        }
        assert!(
            self.state.buffered() <= MAX_BUFFERED,
            "listing buffer bound"
        );
        let (j, d) = self.hub.lengths();
        assert!(j <= JOURNAL && d <= JOURNAL.max(64), "journal bounds");
        assert!(self.state.pending_count() <= IDS as usize);
    }

    fn tick(&mut self) {
        self.ms += 1 + self.rng.below(60);
        if self.state.next_deadline().is_some_and(|t| t <= self.now()) {
            self.feed(Input::Tick);
        }
    }

    // ---- subscribers ----

    fn subscribe(&mut self) {
        let kinds = [
            Kind::Plain,
            Kind::Slow,
            Kind::Filtered,
            Kind::SinceSeq,
            Kind::SinceTime(self.wall()),
        ];
        let mut kind = kinds[self.rng.below(5) as usize];
        let at = self.hub.portfolio.seq();
        let (rx, filter, model) = match kind {
            Kind::Plain | Kind::Slow => (
                self.hub.subscribe(Since::Now, None),
                None,
                Some(Model::new()),
            ),
            Kind::Filtered => {
                let id = format!("c{}", self.rng.below(IDS));
                let rx = self.hub.subscribe(Since::Now, Some(id.clone()));
                (rx, Some(id), Some(Model::new()))
            }
            Kind::SinceSeq => {
                let back = self.rng.below(2 * JOURNAL as u64);
                (
                    self.hub
                        .subscribe(Since::Seq(at.saturating_sub(back)), None),
                    None,
                    None,
                )
            }
            Kind::SinceTime(_) => {
                let t = self.wall() - Duration::from_millis(self.rng.below(2000));
                kind = Kind::SinceTime(t);
                (self.hub.subscribe(Since::Time(t), None), None, None)
            }
        };
        self.subs.push(Sub {
            kind,
            rx,
            filter,
            model,
            at,
            last_live: 0,
            synthetic_max: 0,
            broken: false,
            ended: false,
        });
    }

    /// Reads subscriber `i`'s queue; checks invariants 1, 2, 6.
    fn read(&mut self, i: usize) {
        let mut resub = None;
        {
            let s = &mut self.subs[i];
            if s.ended {
                return;
            }
            let mut first = s.model.is_none() && !s.broken;
            while let Some(item) = s.rx.try_recv() {
                match item {
                    Item::Event(e) => {
                        if first {
                            first = false;
                            // the starting snapshot of a since-subscription
                            match self.history.get(&(e.seq - 1)) {
                                Some(m) => s.model = Some(m.clone()),
                                None => s.broken = true,
                            }
                            if let Kind::SinceTime(t) = s.kind {
                                self.cov.since_checked += 1;
                                for (seq, time) in &self.times {
                                    if *seq < e.seq {
                                        assert!(
                                            *time < t,
                                            "since-time missed seq {seq} without a Gap"
                                        );
                                    }
                                }
                            }
                        }
                        if e.synthetic {
                            assert!(
                                s.last_live == 0 || e.seq <= s.last_live,
                                "synthetic seq {} after live {}",
                                e.seq,
                                s.last_live
                            );
                            assert_eq!(e.kind, EventKind::Started);
                            s.synthetic_max = s.synthetic_max.max(e.seq);
                        } else {
                            assert!(
                                e.seq > s.last_live,
                                "live seq {} after {}",
                                e.seq,
                                s.last_live
                            );
                            assert!(
                                e.seq > s.synthetic_max,
                                "live seq {} not above synthetic {}",
                                e.seq,
                                s.synthetic_max
                            );
                            s.last_live = e.seq;
                        }
                        if let (Some(f), false) = (&s.filter, s.broken) {
                            assert_eq!(&e.container.id, f, "filter");
                        }
                        if !s.broken {
                            if let Some(m) = &mut s.model {
                                if let Err(msg) = apply(m, &e) {
                                    panic!("subscriber {:?}: {msg}", s.kind);
                                }
                            }
                        }
                    }
                    Item::Gap { from, to } => {
                        self.cov.gaps += 1;
                        assert!(first || s.model.is_none(), "Gap not first");
                        if let Kind::SinceTime(t) = s.kind {
                            let exact = self.times.iter().find(|(_, time)| *time >= t).map(|x| x.0);
                            // exact unless the first one fell out of the dropped index
                            if from != 1 {
                                assert_eq!(Some(from), exact, "Gap.from for since-time");
                            }
                            let _ = to;
                        }
                        s.broken = true;
                        first = false;
                    }
                    Item::Lagged { missed, resume_seq } => {
                        self.cov.lagged += 1;
                        assert!(missed >= 1 && resume_seq >= 1);
                        s.ended = true;
                        if s.kind == Kind::Slow && !s.broken {
                            resub = Some(resume_seq - 1);
                        }
                    }
                }
            }
            if !s.ended && s.rx.is_ended() {
                s.ended = true;
            }
            if first && !s.ended {
                // nothing from the journal yet: it starts at its subscription snapshot
                if let Some(m) = self.history.get(&s.at) {
                    if s.at == self.hub.portfolio.seq() {
                        s.model = Some(m.clone());
                    }
                }
            }
            if !s.broken && !s.ended {
                if let Some(m) = &s.model {
                    assert_eq!(
                        *m,
                        restrict(&self.reference, &s.filter),
                        "subscriber {:?} replayed != portfolio",
                        s.kind
                    );
                }
            }
        }
        if let Some(seq) = resub {
            let at = self.hub.portfolio.seq();
            let rx = self.hub.subscribe(Since::Seq(seq), None);
            self.subs.push(Sub {
                kind: Kind::SinceSeq,
                rx,
                filter: None,
                model: None,
                at,
                last_live: 0,
                synthetic_max: 0,
                broken: false,
                ended: false,
            });
        }
    }

    fn read_some(&mut self) {
        for i in 0..self.subs.len() {
            let slow = self.subs[i].kind == Kind::Slow;
            if !slow || self.rng.chance(10) {
                self.read(i);
            }
        }
        self.subs.retain(|s| !s.ended || !s.rx.is_ended());
        if self.subs.len() > 12 {
            self.subs.remove(0);
        }
    }

    // ---- the run ----

    fn step(&mut self) {
        match self.rng.below(100) {
            0..=29 => self.engine_op(),
            30..=54 => {
                if let Some(e) = self.wire.pop_front() {
                    let gen = self.gen;
                    self.feed(Input::Event { gen, event: e });
                }
            }
            55..=67 => self.run_job(),
            68..=80 => {
                if let Some(r) = self.results.pop_front() {
                    self.feed(r);
                }
            }
            81..=87 => self.tick(),
            88 => self.break_stream(),
            89 => {
                if self.rng.chance(30) {
                    self.engine_restart()
                } else if !self.up && self.rng.chance(2) {
                    // the reader's retry policy gives up
                    self.feed(Input::GaveUp {
                        error: Error::protocol("sim", "refused"),
                    });
                }
            }
            90..=94 => self.reconnect(),
            95 | 96 => self.subscribe(),
            _ => {}
        }
        self.read_some();
    }

    /// Heals the engine and runs until quiet; then checks convergence.
    fn settle(&mut self) {
        self.inspect_fail = 0;
        self.list_fail = 0;
        self.status_cut = 0;
        for _ in 0..100_000 {
            if self.failed {
                break;
            }
            if !self.up {
                self.gen += 1;
                self.up = true;
                self.feed(Input::StreamOpened { gen: self.gen });
            } else if let Some(e) = self.wire.pop_front() {
                let gen = self.gen;
                self.feed(Input::Event { gen, event: e });
            } else if !self.jobs.is_empty() {
                self.run_job();
            } else if let Some(r) = self.results.pop_front() {
                self.feed(r);
            } else if let Some(t) = self.state.next_deadline() {
                self.ms += t.saturating_duration_since(self.now()).as_millis() as u64 + 1;
                self.feed(Input::Tick);
            } else {
                break;
            }
        }
        for i in 0..self.subs.len() {
            self.read(i);
        }
        if self.failed {
            assert!(
                self.subs.iter().all(|s| s.rx.is_ended()),
                "subscriptions end on Failed"
            );
            return;
        }
        assert!(
            self.state.health().is_synced(),
            "not Synced when quiet: {:?}",
            self.state.health()
        );
        let truth: Model = self
            .truth
            .alive
            .values()
            .map(|c| (c.id.clone(), (c.pid, c.paused)))
            .collect();
        assert_eq!(
            model_of(self.state.portfolio()),
            truth,
            "portfolio != truth when quiet"
        );
        assert_eq!(self.reference, truth);
        assert!(
            self.owed.is_empty(),
            "starts never reported: {:?}",
            self.owed
        );
    }
}

fn describe_input(i: &Input) -> String {
    match i {
        Input::StreamOpened { gen } => format!("open {gen}"),
        Input::Event { gen, event } => format!("event {gen} {:?} {}", event.kind, event.id),
        Input::StreamLost { gen, .. } => format!("lost {gen}"),
        Input::GaveUp { .. } => "gave up".into(),
        Input::Listed { token, result } => format!(
            "listed {token} {:?}",
            result.as_ref().map(|l| l
                .iter()
                .map(|c| format!("{}/{}", c.id, c.pid))
                .collect::<Vec<_>>())
        ),
        Input::Inspected { token, id, result } => format!(
            "inspected {token} {id} {}",
            match result {
                Ok(Inspection::Alive(c)) => format!("alive {}", c.pid),
                Ok(Inspection::Exited(_, st)) => format!("exited {:?}", st.exit_code),
                Err(e) => format!("{e}"),
            }
        ),
        Input::ExitStatuses { token, results } => format!("statuses {token} ({})", results.len()),
        Input::Tick => "tick".into(),
    }
}

/// What the seeds exercised (so that the simulation cannot silently become vacuous).
#[derive(Debug, Default)]
struct Coverage {
    failed: u64,
    lagged: u64,
    gaps: u64,
    short_lived: u64,
    resyncs: u64,
    status_inquiries: u64,
    overflows: u64,
    inspect_retries: u64,
    since_checked: u64,
}

fn run_seed(seed: u64, steps: usize, verbose: bool, cov: &mut Coverage) {
    let mut sim = Sim::new(seed);
    sim.verbose = verbose;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        sim.reconnect();
        for _ in 0..steps {
            sim.step();
            if sim.failed {
                break;
            }
        }
        sim.settle();
    }));
    cov.failed += u64::from(sim.failed);
    cov.lagged += sim.cov.lagged;
    cov.gaps += sim.cov.gaps;
    cov.short_lived += sim.cov.short_lived;
    cov.resyncs += sim.cov.resyncs;
    cov.status_inquiries += sim.cov.status_inquiries;
    cov.overflows += sim.cov.overflows;
    cov.inspect_retries += sim.cov.inspect_retries;
    cov.since_checked += sim.cov.since_checked;
    if let Err(e) = result {
        if verbose {
            let tail: Vec<_> = sim.log.iter().rev().take(300).rev().cloned().collect();
            eprintln!(
                "--- last inputs and events of seed {seed}:\n{}",
                tail.join("\n")
            );
        }
        eprintln!(
            "simulation failed with seed {seed}; replay it (with a log of the inputs) with\n  WHALEWATCHER_SIM_SEED={seed} cargo test --lib watcher::sim -- --nocapture"
        );
        std::panic::resume_unwind(e);
    }
}

/// Random steps per seed.
const STEPS: usize = 300;

#[test]
fn simulation() {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let mut cov = Coverage::default();
    if let Some(seed) = env("WHALEWATCHER_SIM_SEED") {
        run_seed(seed, STEPS, true, &mut cov);
        eprintln!("{cov:?}");
        return;
    }
    let seeds = env("WHALEWATCHER_SIM_SEEDS").unwrap_or(2000);
    for seed in 1..=seeds {
        run_seed(seed, STEPS, false, &mut cov);
    }
    eprintln!("{seeds} seeds: {cov:?}");
    if seeds >= 1000 {
        let c = &cov;
        for (what, n) in [
            ("failed watchers", c.failed),
            ("lagged subscribers", c.lagged),
            ("gaps", c.gaps),
            ("short-lived containers", c.short_lived),
            ("resyncs", c.resyncs),
            ("exit-status inquiries", c.status_inquiries),
            ("buffer overflows", c.overflows),
            ("inspect retries", c.inspect_retries),
            ("since-time checks", c.since_checked),
        ] {
            assert!(n > 0, "the simulation never exercised {what}: {cov:?}");
        }
    }
}
