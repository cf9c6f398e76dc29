//! The watcher's two engine-facing threads: the event reader (never waits on anything
//! downstream: it forwards into an unbounded channel) and the worker (listings and
//! inspects, so that neither stalls event processing).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::Mutex;

use super::metrics::MetricsCell;
use super::state::{Input, Job};
use super::sync::{Msg, MIN_RECONNECT};
use crate::engine::{EngineClient, EngineInfo};
use crate::error::Error;
use crate::retry::RetryPolicy;

/// A stream that delivered events or lived this long counts as a success for the retry
/// policy.
const HEALTHY_STREAM: Duration = Duration::from_secs(5);

pub(crate) fn reader(
    engine: Arc<dyn EngineClient>,
    tx: Sender<Msg>,
    mut retry: Box<dyn RetryPolicy>,
    stop: Arc<AtomicBool>,
    wake: Receiver<()>,
    metrics: Arc<MetricsCell>,
) {
    let mut gen = 0u64;
    let mut first = true;
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if !std::mem::take(&mut first) {
            metrics.reconnect_attempt();
        }
        let opened = Instant::now();
        let mut delivered = false;
        let error = match engine.events() {
            Ok(mut stream) => {
                gen += 1;
                if tx.send(Msg::In(Input::StreamOpened { gen })).is_err() {
                    return;
                }
                loop {
                    match stream.next_event() {
                        Ok(Some(event)) => {
                            delivered = true;
                            if tx.send(Msg::In(Input::Event { gen, event })).is_err() {
                                return;
                            }
                        }
                        Ok(None) => {
                            break Error::protocol("events", "the engine ended the event stream")
                        }
                        Err(e) => break e,
                    }
                }
            }
            Err(e) => e,
        };
        if stop.load(Ordering::SeqCst) {
            return;
        }
        log::info!("event stream lost: {error}");
        if delivered || opened.elapsed() >= HEALTHY_STREAM {
            retry.reset();
        }
        let _ = tx.send(Msg::In(Input::StreamLost {
            gen,
            error: error.clone(),
        }));
        let Some(delay) = retry.next_delay() else {
            let _ = tx.send(Msg::In(Input::GaveUp { error }));
            return;
        };
        match wake.recv_timeout(delay.max(MIN_RECONNECT)) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return, // the watcher closes
        }
    }
}

pub(crate) fn worker(
    engine: Arc<dyn EngineClient>,
    jobs: Receiver<Job>,
    tx: Sender<Msg>,
    info: Arc<Mutex<Option<EngineInfo>>>,
    metrics: Arc<MetricsCell>,
) {
    for job in jobs {
        let began = Instant::now();
        let msg = match job {
            Job::List { token } => {
                // The listing first: a Docker client fetches the engine's identity beside
                // its listing and `info()` then needs no round trip of its own (dockerd's
                // `/info` runs two external commands; before the listing it delayed Ready by
                // as much as listing 50 containers). The identity is in place before the
                // listing reaches the sync thread, so Ready never comes without it.
                let result = engine.list();
                metrics.list_took(began.elapsed());
                if let Ok(i) = engine.info() {
                    *info.lock() = Some(i);
                }
                Input::Listed { token, result }
            }
            Job::Inspect { token, id } => {
                let result = engine.inspect(&id);
                metrics.inspect_took(began.elapsed());
                Input::Inspected { token, id, result }
            }
            Job::ExitStatuses { token, ids, budget } => {
                // One inspect per vanished container while the budget lasts; the ones
                // not asked in time get no exit status.
                let mut results = Vec::new();
                for id in ids {
                    if began.elapsed() >= budget {
                        break;
                    }
                    let t = Instant::now();
                    let result = engine.inspect(&id);
                    metrics.inspect_took(t.elapsed());
                    if result.as_ref().is_err_and(|e| e.is_cancelled()) {
                        break;
                    }
                    results.push((id, result));
                }
                Input::ExitStatuses { token, results }
            }
        };
        let msg = Msg::In(msg);
        if tx.send(msg).is_err() {
            return;
        }
    }
}
