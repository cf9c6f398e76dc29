//! Table-driven tests of the sync state machine (message sequence in, events, jobs and
//! health out), one row per race the module docs name, and of the hub.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::health::Health;
use super::hub::{Hub, Item, Since};
use super::state::{Config, Effects, Input, Job, SyncState};
use crate::container::Container;
use crate::engine::{ExitStatus, Inspection, RawEvent};
use crate::error::Error;
use crate::event::{ContainerEvent, EventKind};
use crate::portfolio::Portfolio;
use crate::retry::RetryPolicy;

/// Retries forever with a fixed delay, or gives up at once.
pub(crate) struct Fixed(pub(crate) Option<Duration>);
impl RetryPolicy for Fixed {
    fn next_delay(&mut self) -> Option<Duration> {
        self.0
    }
    fn reset(&mut self) {}
}

/// One step of a table row.
#[derive(Clone)]
enum S {
    /// Stream generation opened.
    Open(u64),
    /// Stream lost.
    Lost,
    Start(&'static str),
    Die(&'static str, i32),
    Pause(&'static str),
    /// Answer the outstanding listing with these (id, pid, paused).
    List(&'static [(&'static str, u32, bool)]),
    ListFails,
    /// Answer the outstanding inspect of id: alive with pid.
    Alive(&'static str, u32),
    /// Answer the outstanding inspect of id: exited with code.
    Exited(&'static str, i32),
    NotFound(&'static str),
    InspectFails(&'static str),
    /// Answer the outstanding exit-status inquiry: (id, Some(code) = exited, None = gone).
    Statuses(&'static [(&'static str, Option<i32>)]),
    /// Answer the FIRST inspect of id asked for (a stale answer): alive with pid.
    Stale(&'static str, u32),
    /// A die of id on the previous stream generation.
    OldGen(&'static str),
    /// Let this many ms pass and tick.
    Wait(u64),
    GaveUp,
}

fn t(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000) + Duration::from_millis(ms)
}

pub(crate) fn container(id: &str, pid: u32, paused: bool) -> Container {
    let mut c = Container::new(id, format!("name-{id}"), pid);
    c.paused = paused;
    c
}

struct Harness {
    s: SyncState,
    gen: u64,
    now: Instant,
    ms: u64,
    events: Vec<ContainerEvent>,
    jobs: Vec<Job>,
    stopped: bool,
    raw_events: u64,
    resyncs: u64,
}

impl Harness {
    fn new(retry: Option<Duration>) -> Self {
        Harness {
            s: SyncState::new(Config::default(), Box::new(Fixed(retry))),
            gen: 0,
            now: Instant::now(),
            ms: 0,
            events: Vec::new(),
            jobs: Vec::new(),
            stopped: false,
            raw_events: 0,
            resyncs: 0,
        }
    }

    fn feed(&mut self, i: Input) {
        self.ms += 1;
        let fx: Effects = self.s.handle(i, self.now, t(self.ms));
        self.events.extend(fx.events);
        self.jobs.extend(fx.jobs);
        self.stopped |= fx.stop;
        self.raw_events += fx.raw_events;
        self.resyncs += fx.resyncs;
    }

    fn raw(&mut self, kind: EventKind, id: &str) {
        let mut event = RawEvent::new(kind, id);
        event.time = t(self.ms);
        self.feed(Input::Event {
            gen: self.gen,
            event,
        });
    }

    fn list_token(&self) -> u64 {
        self.jobs
            .iter()
            .rev()
            .find_map(|j| match j {
                Job::List { token } => Some(*token),
                _ => None,
            })
            .expect("no listing asked for")
    }

    fn inspect_token(&self, id: &str) -> u64 {
        self.jobs
            .iter()
            .rev()
            .find_map(|j| match j {
                Job::Inspect { token, id: i } if i == id => Some(*token),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no inspect of {id} asked for"))
    }

    fn inspected(&mut self, id: &str, result: crate::Result<Inspection>) {
        let token = self.inspect_token(id);
        self.feed(Input::Inspected {
            token,
            id: id.into(),
            result,
        });
    }

    fn step(&mut self, s: S) {
        match s {
            S::Open(g) => {
                self.gen = g;
                self.feed(Input::StreamOpened { gen: g });
            }
            S::Lost => self.feed(Input::StreamLost {
                gen: self.gen,
                error: Error::protocol("test", "lost"),
            }),
            S::Start(id) => self.raw(EventKind::Started, id),
            S::Die(id, code) => self.raw(
                EventKind::Exited {
                    exit_code: Some(code),
                    oom: code == 137,
                },
                id,
            ),
            S::Pause(id) => self.raw(EventKind::Paused, id),
            S::List(l) => {
                let token = self.list_token();
                let list = l
                    .iter()
                    .map(|(i, p, z)| Arc::new(container(i, *p, *z)))
                    .collect();
                self.feed(Input::Listed {
                    token,
                    result: Ok(list),
                })
            }
            S::ListFails => {
                let token = self.list_token();
                self.feed(Input::Listed {
                    token,
                    result: Err(Error::protocol("test", "list failed")),
                })
            }
            S::Alive(id, pid) => {
                self.inspected(id, Ok(Inspection::Alive(container(id, pid, false))))
            }
            S::Exited(id, code) => self.inspected(
                id,
                Ok(Inspection::Exited(
                    container(id, 0, false),
                    ExitStatus {
                        exit_code: Some(code),
                        oom: false,
                        time: Some(t(5)),
                    },
                )),
            ),
            S::Stale(id, pid) => {
                let token = self
                    .jobs
                    .iter()
                    .find_map(|j| match j {
                        Job::Inspect { token, id: i } if i == id => Some(*token),
                        _ => None,
                    })
                    .expect("no inspect");
                self.feed(Input::Inspected {
                    token,
                    id: id.into(),
                    result: Ok(Inspection::Alive(container(id, pid, false))),
                })
            }
            S::OldGen(id) => self.feed(Input::Event {
                gen: self.gen - 1,
                event: RawEvent::new(
                    EventKind::Exited {
                        exit_code: Some(1),
                        oom: false,
                    },
                    id,
                ),
            }),
            S::NotFound(id) => self.inspected(id, Err(Error::NotFound { id: id.into() })),
            S::InspectFails(id) => {
                self.inspected(id, Err(Error::protocol("test", "inspect failed")))
            }
            S::Statuses(st) => {
                let token = self
                    .jobs
                    .iter()
                    .rev()
                    .find_map(|j| match j {
                        Job::ExitStatuses { token, .. } => Some(*token),
                        _ => None,
                    })
                    .expect("no exit statuses asked for");
                let results = st
                    .iter()
                    .map(|(id, code)| {
                        let r = match code {
                            Some(c) => Ok(Inspection::Exited(
                                container(id, 0, false),
                                ExitStatus {
                                    exit_code: Some(*c),
                                    oom: false,
                                    time: None,
                                },
                            )),
                            None => Err(Error::NotFound { id: id.to_string() }),
                        };
                        (id.to_string(), r)
                    })
                    .collect();
                self.feed(Input::ExitStatuses { token, results })
            }
            S::Wait(ms) => {
                self.now += Duration::from_millis(ms);
                self.feed(Input::Tick);
            }
            S::GaveUp => self.feed(Input::GaveUp {
                error: Error::protocol("test", "gave up"),
            }),
        }
    }

    /// The events as short strings: `+x` Started, `-x:3` Exited (code), `-x:?` Exited
    /// (unknown), `=x` Paused, `~x` Unpaused; `*` marks synthetic ones.
    fn log(&self) -> Vec<String> {
        self.events.iter().map(describe).collect()
    }

    fn ids(&self) -> Vec<String> {
        let mut v: Vec<_> = self
            .s
            .portfolio()
            .iter()
            .map(|c| format!("{}/{}", c.id, c.pid))
            .collect();
        v.sort();
        v
    }
}

pub(crate) fn describe(e: &ContainerEvent) -> String {
    let star = if e.synthetic { "*" } else { "" };
    let id = &e.container.id;
    match e.kind {
        EventKind::Started => format!("{star}+{id}"),
        EventKind::Exited { exit_code, .. } => match exit_code {
            Some(c) => format!("-{id}:{c}"),
            None => format!("-{id}:?"),
        },
        EventKind::Paused => format!("={id}"),
        EventKind::Unpaused => format!("~{id}"),
    }
}

use S::*;

/// The connection every row starts from: stream 1 open, listing with `a` (pid 10).
const BASE: &[S] = &[Open(1), List(&[("a", 10, false)])];

struct Row {
    name: &'static str,
    steps: &'static [S],
    /// Events after BASE's.
    events: &'static [&'static str],
    /// The portfolio at the end, as `id/pid`.
    portfolio: &'static [&'static str],
    synced: bool,
}

const ROWS: &[Row] = &[
    Row {
        name: "live start is inspected, then started",
        steps: &[Start("b"), Alive("b", 20)],
        events: &["+b"],
        portfolio: &["a/10", "b/20"],
        synced: true,
    },
    Row {
        name: "live die of a portfolio container",
        steps: &[Die("a", 3)],
        events: &["-a:3"],
        portfolio: &[],
        synced: true,
    },
    Row {
        name: "duplicate start of a known container is ignored",
        steps: &[Start("a")],
        events: &[],
        portfolio: &["a/10"],
        synced: true,
    },
    Row {
        name: "item 7: die while the inspect is in flight, inspect says alive (ran before)",
        steps: &[Start("b"), Die("b", 3), Alive("b", 20)],
        events: &["+b", "-b:3"],
        portfolio: &["a/10"],
        synced: true,
    },
    Row {
        name: "item 7: die while the inspect is in flight, inspect says exited",
        steps: &[Start("b"), Die("b", 3), Exited("b", 3)],
        events: &["+b", "-b:3"],
        portfolio: &["a/10"],
        synced: true,
    },
    Row {
        name: "item 7: die while in flight, engine forgot the container",
        steps: &[Start("b"), Die("b", 4), NotFound("b")],
        events: &["+b", "-b:4"],
        portfolio: &["a/10"],
        synced: true,
    },
    Row {
        name: "item 7: inspect says exited before the die arrives: engine's status",
        steps: &[Start("b"), Exited("b", 5), Die("b", 5)],
        events: &["+b", "-b:5"],
        portfolio: &["a/10"],
        synced: true,
    },
    Row {
        name: "item 7: gone before the die arrives: waits for the die's code",
        steps: &[Start("b"), NotFound("b"), Wait(100), Die("b", 6)],
        events: &["+b", "-b:6"],
        portfolio: &["a/10"],
        synced: true,
    },
    Row {
        name: "item 7: gone and no die within die_wait: exit unknown",
        steps: &[Start("b"), NotFound("b"), Wait(5001)],
        events: &["+b", "-b:?"],
        portfolio: &["a/10"],
        synced: true,
    },
    Row {
        name: "restart while the inspect is in flight: both incarnations",
        steps: &[Start("b"), Die("b", 1), Start("b"), Alive("b", 21)],
        events: &["+b", "-b:1", "+b"],
        portfolio: &["a/10", "b/21"],
        synced: true,
    },
    Row {
        name: "pause while the inspect is in flight applies to the container",
        steps: &[Start("b"), Pause("b"), Alive("b", 20)],
        events: &["+b"],
        portfolio: &["a/10", "b/20"],
        synced: true,
    },
    Row {
        name: "item 1: failed inspect: Syncing while retrying, then started",
        steps: &[Start("b"), InspectFails("b"), Wait(50), Alive("b", 20)],
        events: &["+b"],
        portfolio: &["a/10", "b/20"],
        synced: true,
    },
    Row {
        name: "item 1: failed inspect stays unaccounted for: not Synced",
        steps: &[Start("b"), InspectFails("b")],
        events: &[],
        portfolio: &["a/10"],
        synced: false,
    },
    Row {
        name: "item 1: inspects exhausted: relist instead of forgetting",
        steps: &[
            Start("b"),
            InspectFails("b"),
            Wait(50),
            InspectFails("b"),
            Wait(100),
            InspectFails("b"),
            List(&[("a", 10, false), ("b", 20, false)]),
        ],
        events: &["+b"],
        portfolio: &["a/10", "b/20"],
        synced: true,
    },
    Row {
        name: "die during a reconnect listing: the old container's exit code",
        steps: &[Lost, Open(2), Die("a", 2), List(&[("a", 10, false)])],
        events: &["-a:2"],
        portfolio: &[],
        synced: true,
    },
    Row {
        name: "start during the listing that the listing has: no duplicate",
        steps: &[
            Lost,
            Open(2),
            Start("b"),
            List(&[("a", 10, false), ("b", 20, false)]),
        ],
        events: &["+b"],
        portfolio: &["a/10", "b/20"],
        synced: true,
    },
    Row {
        name: "start during the listing that the listing lacks: inspected",
        steps: &[
            Lost,
            Open(2),
            Start("b"),
            List(&[("a", 10, false)]),
            Alive("b", 20),
        ],
        events: &["+b"],
        portfolio: &["a/10", "b/20"],
        synced: true,
    },
    Row {
        name: "item 9: [die(1), start, die(2)] buffered, listing before the die",
        steps: &[
            Lost,
            Open(2),
            Die("a", 1),
            Start("a"),
            Die("a", 2),
            List(&[("a", 10, false)]),
            Exited("a", 2),
        ],
        events: &["-a:1", "+a", "-a:2"],
        portfolio: &[],
        synced: true,
    },
    Row {
        name: "item 9: [die(1), start, die(2)] buffered, listing between start and die(2)",
        steps: &[
            Lost,
            Open(2),
            Die("a", 1),
            Start("a"),
            Die("a", 2),
            List(&[("a", 11, false)]),
            Exited("a", 2),
        ],
        events: &["-a:1", "+a", "-a:2"],
        portfolio: &[],
        synced: true,
    },
    Row {
        name: "item 9: [die(1), start] buffered, listing has the new incarnation",
        steps: &[
            Lost,
            Open(2),
            Die("a", 1),
            Start("a"),
            List(&[("a", 11, false)]),
            Alive("a", 11),
        ],
        events: &["-a:1", "+a"],
        portfolio: &["a/11"],
        synced: true,
    },
    Row {
        name: "reconnect: restarted container gives an Exited + Started pair",
        steps: &[Lost, Open(2), List(&[("a", 12, false)])],
        events: &["-a:?", "+a"],
        portfolio: &["a/12"],
        synced: true,
    },
    Row {
        name: "reconnect: pause changed while away",
        steps: &[Lost, Open(2), List(&[("a", 10, true)])],
        events: &["=a"],
        portfolio: &["a/10"],
        synced: true,
    },
    Row {
        name: "item 8: vanished while away: exit status asked for",
        steps: &[Lost, Open(2), List(&[]), Statuses(&[("a", Some(137))])],
        events: &["-a:137"],
        portfolio: &[],
        synced: true,
    },
    Row {
        name: "item 8: vanished and forgotten by the engine: exit unknown",
        steps: &[Lost, Open(2), List(&[]), Statuses(&[("a", None)])],
        events: &["-a:?"],
        portfolio: &[],
        synced: true,
    },
    Row {
        name: "item 8: vanished, not inspected in time: exit unknown",
        steps: &[Lost, Open(2), List(&[]), Statuses(&[])],
        events: &["-a:?"],
        portfolio: &[],
        synced: true,
    },
    Row {
        name: "item 8: a die buffered during the inquiry wins over the status",
        steps: &[
            Lost,
            Open(2),
            List(&[]),
            Die("a", 9),
            Statuses(&[("a", Some(137))]),
        ],
        events: &["-a:9"],
        portfolio: &[],
        synced: true,
    },
    Row {
        name: "item 8: not Synced while the statuses are asked for",
        steps: &[Lost, Open(2), List(&[])],
        events: &[],
        portfolio: &["a/10"],
        synced: false,
    },
    Row {
        name: "events of an old stream generation are ignored",
        steps: &[Lost, Open(2), OldGen("a"), List(&[("a", 10, false)])],
        events: &[],
        portfolio: &["a/10"],
        synced: true,
    },
    Row {
        name: "a stale inspect answer (restarted since) is dropped",
        steps: &[
            Start("b"),
            Die("b", 1),
            Start("b"),
            Stale("b", 20),
            Alive("b", 22),
        ],
        events: &["+b", "-b:1", "+b"],
        portfolio: &["a/10", "b/22"],
        synced: true,
    },
    Row {
        name: "stream lost while inspecting a short-lived container: reported bare",
        steps: &[
            Start("b"),
            Die("b", 3),
            Lost,
            Open(2),
            List(&[("a", 10, false)]),
        ],
        events: &["+b", "-b:3"],
        portfolio: &["a/10"],
        synced: true,
    },
    Row {
        name: "a start pending when the stream is lost is carried into the next listing",
        steps: &[
            Start("b"),
            Lost,
            Open(2),
            List(&[("a", 10, false)]),
            Exited("b", 7),
        ],
        events: &["+b", "-b:7"],
        portfolio: &["a/10"],
        synced: true,
    },
    Row {
        name: "stream lost during a listing: the buffered exit keeps its code",
        steps: &[Lost, Open(2), Die("a", 5), Lost],
        events: &["-a:5"],
        portfolio: &[],
        synced: false,
    },
    Row {
        name: "a start after the engine said gone: two incarnations",
        steps: &[Start("b"), NotFound("b"), Start("b"), Alive("b", 21)],
        events: &["+b", "-b:?", "+b"],
        portfolio: &["a/10", "b/21"],
        synced: true,
    },
    Row {
        name: "a repeated start while the inspect runs asks again (stale answer dropped)",
        steps: &[Start("b"), Start("b"), Stale("b", 20), Alive("b", 21)],
        events: &["+b"],
        portfolio: &["a/10", "b/21"],
        synced: true,
    },
    Row {
        name: "a die buffered, the listing shows a newer incarnation, no start follows",
        steps: &[
            Lost,
            Open(2),
            Die("a", 2),
            List(&[("a", 11, false)]),
            Statuses(&[("a", Some(2))]),
        ],
        events: &["-a:2", "+a", "-a:2"],
        portfolio: &[],
        synced: true,
    },
    Row {
        name: "a repeated die after a listed container's exit is ignored",
        steps: &[
            Lost,
            Open(2),
            Start("a"),
            Die("a", 5),
            Die("a", 6),
            List(&[("a", 11, false)]),
            Statuses(&[("a", Some(5))]),
        ],
        events: &["-a:5", "+a", "-a:5"],
        portfolio: &[],
        synced: true,
    },
];

#[test]
fn table() {
    let mut failures = Vec::new();
    for row in ROWS {
        let mut h = Harness::new(Some(Duration::from_millis(10)));
        for s in BASE {
            h.step(s.clone());
        }
        let base = h.events.len();
        for s in row.steps {
            h.step(s.clone());
        }
        let log: Vec<String> = h.log()[base..].to_vec();
        let synced = h.s.health().is_synced();
        if log != row.events || h.ids() != row.portfolio || synced != row.synced {
            failures.push(format!(
                "{}:\n  events    {:?} (want {:?})\n  portfolio {:?} (want {:?})\n  health    {:?} (want synced {})",
                row.name,
                log,
                row.events,
                h.ids(),
                row.portfolio,
                h.s.health(),
                row.synced
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn first_listing_is_synthetic_and_ordered() {
    let mut h = Harness::new(None);
    h.step(Open(1));
    assert_eq!(h.s.health(), &Health::Syncing);
    h.step(List(&[("b", 2, false), ("a", 1, true)]));
    assert_eq!(h.log(), ["*+a", "*+b"]);
    assert!(h.s.health().is_synced());
    h.step(Start("c"));
    h.step(Alive("c", 3));
    assert_eq!(h.log(), ["*+a", "*+b", "+c"]);
    let seqs: Vec<u64> = h.events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3]);
    assert_eq!((h.raw_events, h.resyncs), (1, 1));
    h.step(Pause("c"));
    h.step(OldGen("c"));
    assert_eq!(
        h.raw_events, 2,
        "events of an old generation are not counted"
    );
}

/// Item 4: `Reconnecting.since` is the first loss, through failed listings after the
/// stream reopened, until the next Synced.
#[test]
fn reconnecting_since_is_the_first_loss() {
    let mut h = Harness::new(Some(Duration::from_millis(10)));
    for s in BASE {
        h.step(s.clone());
    }
    h.step(Lost);
    let Health::Reconnecting { since, .. } = h.s.health().clone() else {
        panic!("{:?}", h.s.health())
    };
    h.step(Open(2));
    h.step(ListFails);
    let Health::Reconnecting { since: again, .. } = h.s.health().clone() else {
        panic!("{:?}", h.s.health())
    };
    assert_eq!(since, again);
    h.step(Wait(10));
    h.step(ListFails);
    h.step(Lost);
    h.step(Open(3));
    let Health::Syncing = h.s.health() else {
        panic!()
    };
    h.step(ListFails);
    let Health::Reconnecting { since: third, .. } = h.s.health().clone() else {
        panic!()
    };
    assert_eq!(since, third);
    h.step(Wait(10));
    h.step(List(&[("a", 10, false)]));
    assert!(h.s.health().is_synced());
    h.step(Lost);
    let Health::Reconnecting { since: later, .. } = h.s.health().clone() else {
        panic!()
    };
    assert!(later > since, "a new outage starts a new since");
}

/// Item 2: Failed is terminal; the listing buffer is bounded and overflow relists.
#[test]
fn failed_is_terminal_and_the_buffer_is_bounded() {
    let mut h = Harness::new(None);
    h.step(Open(1));
    h.step(ListFails);
    assert!(matches!(h.s.health(), Health::Failed(Error::GaveUp { .. })));
    assert!(h.stopped, "the state machine says stop");
    let before = h.jobs.len();
    h.step(Start("x"));
    h.step(Open(2));
    assert_eq!(h.jobs.len(), before, "nothing happens after Failed");
    assert_eq!(h.s.buffered(), 0);

    let mut h = Harness::new(None);
    h.step(GaveUp);
    assert!(h.stopped && matches!(h.s.health(), Health::Failed(_)));

    let mut s = SyncState::new(
        Config {
            max_buffered: 4,
            ..Config::default()
        },
        Box::new(Fixed(None)),
    );
    let now = Instant::now();
    let fx = s.handle(Input::StreamOpened { gen: 1 }, now, t(0));
    assert_eq!(fx.jobs, [Job::List { token: 1 }]);
    let mut lists = 1;
    for i in 0..20 {
        let event = RawEvent::new(EventKind::Started, format!("c{i}"));
        let fx = s.handle(Input::Event { gen: 1, event }, now, t(0));
        lists += fx
            .jobs
            .iter()
            .filter(|j| matches!(j, Job::List { .. }))
            .count();
        assert!(s.buffered() <= 4);
    }
    assert_eq!(lists, 5, "each overflow asks for a new listing");
    // the stale listing is ignored
    let fx = s.handle(
        Input::Listed {
            token: 1,
            result: Ok(vec![]),
        },
        now,
        t(0),
    );
    assert!(fx.events.is_empty() && !s.health().is_synced());
}

fn ev(seq: u64, ms: u64, id: &str) -> ContainerEvent {
    ContainerEvent {
        seq,
        time: t(ms),
        kind: EventKind::Started,
        container: Arc::new(container(id, 1, false)),
        synthetic: false,
    }
}

fn drain(sub: &super::Subscription) -> Vec<Item> {
    std::iter::from_fn(|| sub.try_recv()).collect()
}

/// Item 3: journal times are not monotonic in seq; a since-time subscription gets a Gap
/// whenever anything at or after the time fell out of the journal, with exact bounds.
#[test]
fn since_time_gap_is_exact_with_non_monotonic_times() {
    let mut hub = Hub::new(16, 2);
    let p = Arc::new(Portfolio::new());
    // seq 1 at 100 ms, seq 2 (a resync Exited with the engine's older time) at 50 ms,
    // seq 3 at 40 ms, seq 4 at 200 ms: 1, 2 fall out.
    let evs = [
        ev(1, 100, "a"),
        ev(2, 50, "b"),
        ev(3, 40, "c"),
        ev(4, 200, "d"),
    ];
    hub.publish(p, &evs[..]);
    let sub = hub.subscribe(Since::Time(t(90)), None);
    let items = drain(&sub);
    assert!(
        matches!(items.first(), Some(Item::Gap { from: 1, to: 2 })),
        "{items:?}"
    );
    let seqs: Vec<u64> = items
        .iter()
        .filter_map(|i| match i {
            Item::Event(e) => Some(e.seq),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, [3, 4], "everything after the first event at/after t");
    // nothing at or after 150 ms was lost
    let items = drain(&hub.subscribe(Since::Time(t(150)), None));
    assert!(
        matches!(items.as_slice(), [Item::Event(e)] if e.seq == 4),
        "{items:?}"
    );
    // exact from: more events fall out, the first at/after 150 ms is seq 4
    hub.publish(
        Arc::new(Portfolio::new()),
        &[ev(5, 300, "e"), ev(6, 310, "f")],
    );
    let items = drain(&hub.subscribe(Since::Time(t(150)), None));
    assert!(
        matches!(items.first(), Some(Item::Gap { from: 4, to: 4 })),
        "{items:?}"
    );
}

/// Item 9: Lagged.missed counts only the events the filter would deliver; dropped
/// subscriptions stop counting at once.
#[test]
fn lagged_counts_filtered_events_and_drops_count_at_once() {
    let mut hub = Hub::new(1, 100);
    let p = Arc::new(Portfolio::new());
    let one = hub.subscribe(Since::Now, Some("a".into()));
    let gone = hub.subscribe(Since::Now, None);
    assert_eq!(hub.subscriber_count(), 2);
    drop(gone);
    assert_eq!(
        hub.subscriber_count(),
        1,
        "a dropped subscription stops counting"
    );
    let evs: Vec<_> = (1..=10)
        .map(|i| ev(i, i, if i == 2 || i == 4 { "a" } else { "b" }))
        .collect();
    hub.publish(p, &evs[..]);
    let items = drain(&one);
    // a at seq 2 fits, a at seq 4 overflows: one missed (not 7: b's do not count)
    assert!(
        matches!(
            items.as_slice(),
            [Item::Event(e), Item::Lagged { missed: 1, resume_seq: 4 }] if e.seq == 2
        ),
        "{items:?}"
    );
}

/// Item 6: synthetic events (the first listing's Started) reach a subscriber made before
/// the first sync, however many, outside its queue limit; live ones still lag.
#[test]
fn synthetic_events_do_not_count_against_the_queue() {
    let mut hub = Hub::new(2, 100);
    let early = hub.subscribe(Since::Now, None);
    let mut evs: Vec<_> = (1..=50).map(|i| ev(i, i, &format!("c{i}"))).collect();
    for e in &mut evs {
        e.synthetic = true;
    }
    hub.publish(Arc::new(Portfolio::new()), &evs[..]);
    hub.publish(
        Arc::new(Portfolio::new()),
        &[ev(51, 51, "x"), ev(52, 52, "y")],
    );
    let items = drain(&early);
    assert_eq!(items.len(), 52, "{:?}", items.last());
    assert!(items[..50]
        .iter()
        .all(|i| matches!(i, Item::Event(e) if e.synthetic)));
    // The queue may hold capacity + synthetic count live items (memory bounded by the
    // capacity plus the portfolio size); one more lags.
    let live: Vec<_> = (53..113).map(|i| ev(i, i, "x")).collect();
    hub.publish(Arc::new(Portfolio::new()), &live[..]);
    let items = drain(&early);
    assert_eq!(items.len(), 53);
    assert!(
        matches!(
            items.last(),
            Some(Item::Lagged {
                missed: 8,
                resume_seq: 105
            })
        ),
        "{:?}",
        items.last()
    );
}

/// The sync loop batches several inputs' effects into one publication.
#[test]
fn effects_extend_keeps_everything_in_order() {
    let mut a = Effects {
        jobs: vec![Job::List { token: 1 }],
        events: vec![ev(1, 1, "a")],
        changed: false,
        raw_events: 2,
        resyncs: 1,
        stop: false,
    };
    a.extend(Effects {
        jobs: vec![Job::List { token: 2 }],
        events: vec![ev(2, 2, "b")],
        changed: true,
        raw_events: 3,
        resyncs: 2,
        stop: true,
    });
    assert_eq!(a.jobs, [Job::List { token: 1 }, Job::List { token: 2 }]);
    assert_eq!(a.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    assert!(a.changed && a.stop);
    assert_eq!((a.raw_events, a.resyncs), (5, 3));
    a.extend(Effects::default());
    assert!(a.changed && a.stop, "false does not clear");
}

/// Gaps cargo-mutants found: the details of short-lived containers, carried starts, a
/// cancelled listing, the listing retry timer, the incarnation cap.
#[test]
fn details_carry_cancel_and_caps() {
    // A container the engine forgot: id and the event's project, pid 0.
    let mut h = Harness::new(None);
    h.step(Open(1));
    h.step(List(&[]));
    let mut e = RawEvent::new(EventKind::Started, "b");
    e.project = Some("shop".into());
    h.feed(Input::Event { gen: 1, event: e });
    h.step(Die("b", 3));
    h.step(NotFound("b"));
    let c = &h.events[0].container;
    assert_eq!((c.id.as_str(), c.project.as_str(), c.pid), ("b", "shop", 0));
    assert_eq!(c.labels.get(crate::PROJECT_LABEL), Some("shop"));
    let mut e = RawEvent::new(EventKind::Started, "c");
    e.project = Some(String::new());
    h.feed(Input::Event { gen: 1, event: e });
    h.step(Die("c", 3));
    h.step(NotFound("c"));
    assert!(
        h.events[2].container.labels.is_empty(),
        "no project label for \"\""
    );

    // Before the first sync a lost listing carries its starts, one per container.
    let mut h = Harness::new(None);
    h.step(Open(1));
    for s in [Start("b"), Start("b"), Start("c"), Die("c", 1), Pause("b")] {
        h.step(s);
    }
    h.step(Lost);
    h.step(Open(2));
    assert_eq!((h.s.carried(), h.s.buffered()), (2, 0));
    h.step(List(&[]));
    let inspects: Vec<_> = h
        .jobs
        .iter()
        .filter_map(|j| match j {
            Job::Inspect { id, .. } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(inspects, ["b", "c"]);

    // A cancelled listing (the watcher closes) is no loss.
    let mut h = Harness::new(Some(Duration::from_millis(10)));
    h.step(Open(1));
    let token = h.list_token();
    h.feed(Input::Listed {
        token,
        result: Err(Error::Cancelled),
    });
    assert_eq!(h.s.health(), &Health::Syncing);
    assert_eq!(h.s.next_deadline(), None);
    // A failed one is retried after the policy's delay.
    h.step(ListFails);
    assert_eq!(h.s.next_deadline(), Some(h.now + Duration::from_millis(10)));

    // A crash loop faster than the inspect: the oldest incarnations beyond 16 are reported
    // at once without details, the rest with the inspect's.
    let mut h = Harness::new(None);
    for s in BASE {
        h.step(s.clone());
    }
    h.step(Start("b"));
    for i in 0..20 {
        h.step(Die("b", i));
        h.step(Start("b"));
    }
    assert_eq!(
        h.events.len() - 1,
        2 * 4,
        "4 bare incarnations reported early"
    );
    h.step(Alive("b", 50));
    let started: Vec<_> = h.events[1..]
        .iter()
        .filter(|e| e.kind == EventKind::Started)
        .map(|e| e.container.name.as_str())
        .collect();
    assert_eq!(started.len(), 21);
    assert!(started[..4].iter().all(|n| n.is_empty()));
    assert!(started[4..].iter().all(|n| *n == "name-b"));
    assert_eq!(h.ids(), ["a/10", "b/50"]);
}

/// Inspect answers: alive without a pid is not alive; a cancelled inspect drops the
/// container quietly; failed ones back off 50, 100 ms.
#[test]
fn inspect_answers_and_backoff() {
    let mut h = Harness::new(None);
    for s in BASE {
        h.step(s.clone());
    }
    h.step(Start("b"));
    h.step(Alive("b", 0));
    assert_eq!(h.ids(), ["a/10"]);
    h.step(Die("b", 2));
    assert_eq!(h.log()[1..], ["+b", "-b:2"]);

    h.step(Start("c"));
    h.inspected("c", Err(Error::Cancelled));
    assert_eq!((h.s.pending_count(), h.s.next_deadline()), (0, None));
    assert!(h.s.health().is_synced());

    h.step(Start("d"));
    h.step(InspectFails("d"));
    assert_eq!(h.s.next_deadline(), Some(h.now + Duration::from_millis(50)));
    assert_eq!(h.s.health(), &Health::Syncing);
    h.step(Wait(50));
    h.step(InspectFails("d"));
    assert_eq!(
        h.s.next_deadline(),
        Some(h.now + Duration::from_millis(100))
    );
}

/// Short-lived incarnations: which pid, exit code and OOM flag each one carries.
#[test]
fn short_lived_pids_codes_and_oom() {
    let started = |h: &Harness| -> Vec<(u32, Option<i32>, bool)> {
        h.events
            .windows(2)
            .filter(|w| w[0].kind == EventKind::Started && w[0].container.id == "b")
            .filter_map(|w| match w[1].kind {
                EventKind::Exited { exit_code, oom } => Some((w[0].container.pid, exit_code, oom)),
                _ => None,
            })
            .collect()
    };
    let base = || {
        let mut h = Harness::new(None);
        for s in BASE {
            h.step(s.clone());
        }
        h
    };
    // The inspect ran before the die: its pid is this incarnation's.
    let mut h = base();
    h.step(Start("b"));
    h.step(Die("b", 3));
    h.step(Alive("b", 20));
    assert_eq!(started(&h), [(20, Some(3), false)]);
    // A die without a code: the engine's exit status fills it in (and its OOM flag).
    let mut h = base();
    h.step(Start("b"));
    h.raw(
        EventKind::Exited {
            exit_code: None,
            oom: false,
        },
        "b",
    );
    h.inspected(
        "b",
        Ok(Inspection::Exited(
            container("b", 0, false),
            ExitStatus {
                exit_code: Some(7),
                oom: true,
                time: None,
            },
        )),
    );
    assert_eq!(started(&h), [(0, Some(7), true)]);
    // Two incarnations, the second alive: the first has no pid, the second the inspect's.
    let mut h = base();
    h.step(Start("b"));
    h.step(Die("b", 1));
    h.step(Start("b"));
    h.step(Alive("b", 21));
    assert_eq!(started(&h), [(0, Some(1), false)]);
    assert_eq!(h.ids(), ["a/10", "b/21"]);
    // Two short-lived incarnations: the status fills only the last one's missing code.
    let mut h = base();
    h.step(Start("b"));
    h.raw(
        EventKind::Exited {
            exit_code: None,
            oom: false,
        },
        "b",
    );
    h.step(Start("b"));
    h.step(Die("b", 4));
    h.step(Exited("b", 9));
    assert_eq!(started(&h), [(0, None, false), (0, Some(4), false)]);
    // A start buffered during a listing keeps its event's project for a bare report.
    let mut h = base();
    h.step(Lost);
    h.step(Open(2));
    let mut e = RawEvent::new(EventKind::Started, "b");
    e.project = Some("shop".into());
    h.feed(Input::Event { gen: 2, event: e });
    h.step(Die("b", 5));
    h.step(List(&[("a", 10, false)]));
    h.step(NotFound("b"));
    let b = h.events.iter().find(|e| e.container.id == "b").unwrap();
    assert_eq!(b.container.project, "shop");
}

fn seqs_of(items: &[Item]) -> Vec<String> {
    items
        .iter()
        .map(|i| match i {
            Item::Event(e) => format!("{}{}", e.container.id, e.seq),
            Item::Gap { from, to } => format!("gap {from}..={to}"),
            Item::Lagged { missed, resume_seq } => format!("lagged {missed} @{resume_seq}"),
        })
        .collect()
}

/// The journal keeps the last `journal_capacity` events: a subscription from a sequence
/// number or a time replays what is left, after a Gap naming exactly what fell out; the
/// replayed events count as queued, so a live one still fits.
#[test]
fn journal_replay_is_exact_and_bounded() {
    let mut hub = Hub::new(1, 3);
    let none = Arc::new(Portfolio::new());
    let evs: Vec<_> = (1..=5).map(|i| ev(i, i * 10, "a")).collect();
    assert_eq!(hub.publish(none.clone(), &evs[..]), 0);
    assert_eq!(hub.lengths(), (3, 2));
    let from = |hub: &mut Hub, since| seqs_of(&drain(&hub.subscribe(since, None)));
    assert_eq!(
        from(&mut hub, Since::Seq(0)),
        ["gap 1..=2", "a3", "a4", "a5"]
    );
    assert_eq!(
        from(&mut hub, Since::Seq(1)),
        ["gap 2..=2", "a3", "a4", "a5"]
    );
    assert_eq!(from(&mut hub, Since::Seq(2)), ["a3", "a4", "a5"]);
    assert_eq!(from(&mut hub, Since::Seq(3)), ["a4", "a5"]);
    assert!(from(&mut hub, Since::Seq(5)).is_empty());
    assert_eq!(
        from(&mut hub, Since::Time(t(15))),
        ["gap 2..=2", "a3", "a4", "a5"]
    );
    assert_eq!(from(&mut hub, Since::Time(t(35))), ["a4", "a5"]);
    assert!(from(&mut hub, Since::Time(t(60))).is_empty());
    // a filter applies to the replay (not to the Gap)
    let b = hub.subscribe(Since::Seq(0), Some("b".into()));
    // capacity 1 plus the 4 replayed items: one live event fits, the next lags
    let all = hub.subscribe(Since::Seq(1), None);
    assert_eq!(hub.publish(none.clone(), &[ev(6, 60, "b")]), 0);
    assert_eq!(hub.publish(none.clone(), &[ev(7, 70, "a")]), 1);
    assert_eq!(seqs_of(&drain(&b)), ["gap 1..=2", "b6"]);
    assert_eq!(
        seqs_of(&drain(&all)),
        ["gap 2..=2", "a3", "a4", "a5", "b6", "lagged 1 @7"]
    );
    assert!(all.is_ended());
    assert!(!b.is_ended());
}

/// Without a journal every event goes to the dropped index, whose length is bounded
/// (64 entries at least); a time older than the index's floor is a Gap from 1.
#[test]
fn dropped_index_is_bounded_and_its_floor_is_a_gap_from_one() {
    let mut hub = Hub::new(1, 0);
    let evs: Vec<_> = (1..=100).map(|i| ev(i, i * 10, "a")).collect();
    hub.publish(Arc::new(Portfolio::new()), &evs[..]);
    assert_eq!(hub.lengths(), (0, 64));
    let from = |hub: &mut Hub, since| seqs_of(&drain(&hub.subscribe(since, None)));
    assert_eq!(from(&mut hub, Since::Seq(0)), ["gap 1..=100"]);
    assert_eq!(from(&mut hub, Since::Seq(99)), ["gap 100..=100"]);
    assert!(from(&mut hub, Since::Seq(100)).is_empty());
    // entries 1..=36 fell out of the index: its floor is seq 36's time (360 ms)
    assert_eq!(from(&mut hub, Since::Time(t(5))), ["gap 1..=100"]);
    assert_eq!(from(&mut hub, Since::Time(t(360))), ["gap 1..=100"]);
    assert_eq!(from(&mut hub, Since::Time(t(365))), ["gap 37..=100"]);
    assert_eq!(from(&mut hub, Since::Time(t(1000))), ["gap 100..=100"]);
    assert!(from(&mut hub, Since::Time(t(1001))).is_empty());
}

/// A subscription ends when the hub closes, after its queue drains; one made after the
/// close has ended already. Every way of receiving sees the same items.
#[test]
fn subscriptions_end_at_close_after_draining() {
    let mut hub = Hub::new(4, 4);
    let none = Arc::new(Portfolio::new());
    let sub = hub.subscribe(Since::Now, None);
    let mut it = hub.subscribe(Since::Now, None);
    assert!(!sub.is_ended());
    assert!(sub.try_recv().is_none());
    assert!(sub.recv_timeout(Duration::from_millis(1)).is_none());
    hub.publish(
        none.clone(),
        &[ev(1, 10, "a"), ev(2, 20, "b"), ev(3, 30, "c")],
    );
    assert_eq!(hub.subscriber_count(), 2);
    assert!(!sub.is_ended());
    assert!(matches!(sub.recv(), Some(Item::Event(e)) if e.seq == 1));
    hub.close();
    assert_eq!(hub.subscriber_count(), 0);
    assert!(!sub.is_ended(), "ended, but two items are still queued");
    assert!(matches!(sub.try_recv(), Some(Item::Event(e)) if e.seq == 2));
    assert!(matches!(sub.recv_timeout(Duration::from_secs(5)), Some(Item::Event(e)) if e.seq == 3));
    assert!(sub.is_ended());
    assert!(sub.recv().is_none());
    assert_eq!(
        it.next().map(|i| seqs_of(&[i])),
        Some(vec!["a1".to_string()])
    );
    assert_eq!(seqs_of(&it.collect::<Vec<_>>()), ["b2", "c3"]);
    let late = hub.subscribe(Since::Now, None);
    assert!(late.is_ended());
    assert_eq!(hub.subscriber_count(), 0);
    hub.publish(none, &[ev(4, 40, "d")]);
    assert!(late.try_recv().is_none());
}

/// Dropped subscriptions are released by the next publication, whether or not anyone asks
/// for the count: a watcher whose subscribers come and go holds only the live ones.
#[test]
fn publish_releases_dropped_subscriptions() {
    let mut hub = Hub::new(4, 4);
    let kept = hub.subscribe(Since::Now, None);
    for _ in 0..100 {
        drop(hub.subscribe(Since::Now, Some("a".into())));
    }
    assert_eq!(hub.subscribers_held(), 101);
    assert_eq!(
        hub.publish(Arc::new(Portfolio::new()), &[ev(1, 10, "a")]),
        0
    );
    assert_eq!(hub.subscribers_held(), 1);
    assert_eq!(seqs_of(&drain(&kept)), ["a1"]);
}

/// `wait_synced` returns as soon as the watcher is synced (a timeout of an hour never
/// elapses), and a timeout while reconnecting says why the engine is out of reach.
#[test]
fn wait_synced_returns_at_once_and_says_why_it_timed_out() {
    use super::health::HealthCell;
    let cell = HealthCell::new();
    cell.set(Health::Reconnecting {
        since: t(0),
        last_error: Error::Timeout {
            what: "engine socket".into(),
        },
    });
    match cell.wait_synced(Duration::from_millis(20)) {
        Err(Error::Timeout { what }) => assert!(what.contains("engine socket"), "{what}"),
        other => panic!("{other:?}"),
    }
    // Synced while waiting: the wait ends then (the delay only makes it likely that the
    // waiter is blocked already; the test cannot fail on it)
    let cell = Arc::new(cell);
    let setter = std::thread::spawn({
        let cell = cell.clone();
        move || {
            std::thread::sleep(Duration::from_millis(50));
            cell.set(Health::Synced);
        }
    });
    cell.wait_synced(Duration::from_secs(3600)).unwrap();
    setter.join().unwrap();
    cell.wait_synced(Duration::from_secs(3600)).unwrap();
    // Failed is final
    let gave_up = Error::GaveUp {
        last: Box::new(Error::Timeout { what: "x".into() }),
    };
    cell.set(Health::Failed(gave_up.clone()));
    cell.set(Health::Synced);
    assert_eq!(cell.wait_synced(Duration::from_secs(3600)), Err(gave_up));
}

/// A reader answers with the snapshot of the last generation it saw, and the new one as
/// soon as the generation moves.
#[test]
fn reader_follows_the_generation() {
    use super::sync::Shared;
    use std::sync::atomic::Ordering;
    let shared = Arc::new(Shared {
        hub: parking_lot::Mutex::new(Hub::new(1, 1)),
        portfolio: parking_lot::RwLock::new(Arc::new(Portfolio::new())),
        generation: Default::default(),
        health: super::health::HealthCell::new(),
        metrics: Arc::default(),
    });
    let mut reader = super::PortfolioReader::new(shared.clone());
    assert!(reader.portfolio().is_empty());
    let one: Portfolio = [container("a", 1, false)].into_iter().collect();
    *shared.portfolio.write() = Arc::new(one);
    // not published yet: the generation has not moved
    assert!(reader.portfolio().is_empty());
    shared.generation.fetch_add(1, Ordering::Release);
    assert_eq!(reader.portfolio().len(), 1);
    assert_eq!(
        format!("{reader:?}"),
        "PortfolioReader { generation: 1, containers: 1 }"
    );
    // and it keeps answering with it
    assert!(reader.portfolio().get("a").is_some());
}
