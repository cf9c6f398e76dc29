//! What a `ww_watcher` handle watches: one engine ([`Watcher`]), or every engine that
//! discovery finds (engine `"auto"`: a [`Fleet`]). The ABI functions in `watcher.rs` and
//! `subscription.rs` ask this module and need not know which.

use std::ffi::c_int;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};

use super::status::{
    Fail, WW_ENDED, WW_ENGINE, WW_ERR_UNSUPPORTED, WW_GAP, WW_LAGGED, WW_OK, WW_TIMEOUT,
};
use super::strings::to_json;
use super::watcher::{
    WW_HEALTH_CONNECTING, WW_HEALTH_FAILED, WW_HEALTH_RECONNECTING, WW_HEALTH_SYNCED,
    WW_HEALTH_SYNCING,
};
use crate::container::Container;
use crate::event::rfc3339_nanos;
use crate::fleet::{EngineState, Fleet, FleetItem, FleetSubscription};
use crate::watcher::{Health, Item, Subscription, Watcher};

/// One engine or all of them.
pub(crate) enum Watched {
    /// A named engine.
    One(Watcher),
    /// Engine `"auto"`.
    Fleet(Fleet),
}

/// The health of one watcher: its `WW_HEALTH_*` state and JSON.
fn health_json(h: &Health) -> (c_int, Value) {
    let state = match h {
        Health::Connecting => WW_HEALTH_CONNECTING,
        Health::Syncing => WW_HEALTH_SYNCING,
        Health::Synced => WW_HEALTH_SYNCED,
        Health::Reconnecting { .. } => WW_HEALTH_RECONNECTING,
        Health::Failed(_) => WW_HEALTH_FAILED,
    };
    let mut v = json!({"state": state_word(state)});
    match h {
        Health::Reconnecting { since, last_error } => {
            v["since"] = json!(rfc3339_nanos(*since));
            v["error"] = json!(last_error.to_string());
        }
        Health::Failed(e) => v["error"] = json!(e.to_string()),
        _ => {}
    }
    (state, v)
}

/// The JSON word of a `WW_HEALTH_*` state.
fn state_word(state: c_int) -> &'static str {
    match state {
        WW_HEALTH_CONNECTING => "connecting",
        WW_HEALTH_SYNCING => "syncing",
        WW_HEALTH_SYNCED => "synced",
        WW_HEALTH_RECONNECTING => "reconnecting",
        _ => "failed",
    }
}

/// How far a state is from synced: the fleet reports its least healthy engine.
fn badness(state: c_int) -> u8 {
    match state {
        WW_HEALTH_SYNCED => 0,
        WW_HEALTH_SYNCING => 1,
        WW_HEALTH_CONNECTING => 2,
        WW_HEALTH_RECONNECTING => 3,
        _ => 4,
    }
}

/// Adds `"engine": found` to a JSON object.
fn with_engine(mut v: Value, engine: &impl serde_core::Serialize) -> Value {
    if let Value::Object(m) = &mut v {
        m.insert("engine".into(), json!(engine));
    }
    v
}

impl Watched {
    pub(crate) fn wait_ready(&self, timeout: Duration) -> crate::Result<()> {
        match self {
            Watched::One(w) => w.wait_ready(timeout),
            Watched::Fleet(f) => f.wait_ready(timeout),
        }
    }

    /// The `WW_HEALTH_*` state and its JSON. A fleet reports the state of its least healthy
    /// attached engine (synced when it has none) and every engine under `"engines"`.
    pub(crate) fn health(&self) -> (c_int, Value) {
        let f = match self {
            Watched::One(w) => return health_json(&w.health()),
            Watched::Fleet(f) => f,
        };
        let mut worst = WW_HEALTH_SYNCED;
        let engines: Vec<Value> = f
            .engines()
            .into_iter()
            .map(|e| {
                let v = match &e.state {
                    EngineState::Attached(h) => {
                        let (state, v) = health_json(h);
                        if badness(state) > badness(worst) {
                            worst = state;
                        }
                        v
                    }
                    EngineState::Vanished { since } => {
                        json!({"state": "vanished", "since": rfc3339_nanos(*since)})
                    }
                };
                with_engine(v, &e.found)
            })
            .collect();
        (
            worst,
            json!({"state": state_word(worst), "engines": engines}),
        )
    }

    /// Every alive container: a watcher's sorted by project, name and id; a fleet's by
    /// engine type first.
    pub(crate) fn containers(&self) -> Vec<Arc<Container>> {
        match self {
            Watched::One(w) => w.portfolio().sorted(),
            Watched::Fleet(f) => {
                let mut all = f.containers();
                all.sort_by(|a, b| a.listing_order(b));
                all
            }
        }
    }

    /// The container with this id or, failing that, the first one with this name.
    pub(crate) fn lookup(&self, key: &str) -> Option<Arc<Container>> {
        match self {
            Watched::One(w) => w.portfolio().lookup(key).cloned(),
            Watched::Fleet(f) => {
                // Each engine's indices: no listing of everything per lookup.
                let portfolios: Vec<_> = f.watchers().iter().map(|(_, w)| w.portfolio()).collect();
                portfolios
                    .iter()
                    .find_map(|p| p.get(key).cloned())
                    .or_else(|| {
                        portfolios
                            .iter()
                            .flat_map(|p| p.by_name(key).iter().cloned())
                            .min_by(|a, b| a.listing_order(b))
                    })
            }
        }
    }

    /// The engine's self-description; a fleet's is an array of `{"engine": found,
    /// "info": info-or-null}` for every attached engine.
    pub(crate) fn engine_info(&self) -> Option<Value> {
        match self {
            Watched::One(w) => w.engine_info().map(|i| json!(i)),
            Watched::Fleet(f) => Some(Value::Array(
                f.watchers()
                    .into_iter()
                    .map(|(found, w)| json!({"engine": found, "info": w.engine_info()}))
                    .collect(),
            )),
        }
    }

    pub(crate) fn subscribe(&self) -> Events {
        match self {
            Watched::One(w) => Events::One(w.subscribe()),
            Watched::Fleet(f) => Events::Fleet(Mutex::new(f.subscribe())),
        }
    }

    pub(crate) fn subscribe_since(&self, seq: u64) -> Result<Events, Fail> {
        match self {
            Watched::One(w) => Ok(Events::One(
                w.subscribe_from(crate::watcher::Since::Seq(seq)),
            )),
            Watched::Fleet(_) => Err(Fail::new(
                WW_ERR_UNSUPPORTED,
                "engine \"auto\": sequence numbers are per engine, so there is no journal to \
                 resume from; use ww_watcher_subscribe (a lagging engine resumes by itself)",
            )),
        }
    }

    pub(crate) fn close(self) {
        match self {
            Watched::One(w) => w.close(),
            Watched::Fleet(f) => f.close(),
        }
    }
}

/// The event stream behind a `ww_subscription`.
pub(crate) enum Events {
    One(Subscription),
    /// Pulled under a lock: several threads may share the handle.
    Fleet(Mutex<FleetSubscription>),
}

fn timed_out(timeout: Duration) -> Fail {
    Fail::new(
        WW_TIMEOUT,
        format!("no event within {} ms", timeout.as_millis()),
    )
}

fn ended() -> Fail {
    Fail::new(WW_ENDED, "the subscription has ended")
}

impl Events {
    /// The next item as its status and JSON, waiting at most `timeout`.
    pub(crate) fn next(&self, timeout: Duration) -> Result<(c_int, String), Fail> {
        use crossbeam_channel::RecvTimeoutError;
        match self {
            Events::One(sub) => match sub.receiver().recv_timeout(timeout) {
                Ok(Item::Event(ev)) => Ok((WW_OK, to_json(&ev)?)),
                Ok(Item::Gap { from, to }) => Ok((
                    WW_GAP,
                    to_json(&json!({"type": "gap", "from": from, "to": to}))?,
                )),
                Ok(Item::Lagged { missed, resume_seq }) => Ok((
                    WW_LAGGED,
                    to_json(&json!(
                        {"type": "lagged", "missed": missed, "resume_seq": resume_seq}))?,
                )),
                Err(RecvTimeoutError::Timeout) => Err(timed_out(timeout)),
                Err(RecvTimeoutError::Disconnected) => Err(ended()),
            },
            Events::Fleet(sub) => {
                let end = Instant::now() + timeout;
                let sub = sub
                    .try_lock_for(timeout)
                    .ok_or_else(|| timed_out(timeout))?;
                let left = end.saturating_duration_since(Instant::now());
                let (status, v) = match sub.recv_timeout(left) {
                    Some(FleetItem::Event(ev)) => return Ok((WW_OK, to_json(&ev)?)),
                    Some(FleetItem::Attached(f)) => {
                        (WW_ENGINE, with_engine(json!({"type": "attached"}), &*f))
                    }
                    Some(FleetItem::Vanished(f)) => {
                        (WW_ENGINE, with_engine(json!({"type": "vanished"}), &*f))
                    }
                    Some(FleetItem::Lagged {
                        engine,
                        missed,
                        resume_seq,
                    }) => (
                        WW_LAGGED,
                        with_engine(
                            json!({"type": "lagged", "missed": missed,
                                   "resume_seq": resume_seq, "resumed": true}),
                            &*engine,
                        ),
                    ),
                    Some(FleetItem::Gap { engine, from, to }) => (
                        WW_GAP,
                        with_engine(json!({"type": "gap", "from": from, "to": to}), &*engine),
                    ),
                    None if sub.is_ended() => return Err(ended()),
                    None => return Err(timed_out(timeout)),
                };
                Ok((status, to_json(&v)?))
            }
        }
    }
}
