//! The watcher's connection health, and waiting for it to become ready.

use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Condvar, Mutex};

use crate::error::Error;

/// Where a watcher stands with its engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Connecting for the first time; nothing is known yet.
    Connecting,
    /// Connected and listing the containers, or a container the engine reported started
    /// is not accounted for yet (its inspect failed and is retried; then the watcher
    /// relists). The portfolio shows the previous state and may lag behind the engine.
    Syncing,
    /// The portfolio is the engine's truth as of the last event, and events flow.
    Synced,
    /// The event stream or a listing failed; retrying. The portfolio is stale since
    /// `since`: the first loss of this outage (it does not move while retries fail).
    Reconnecting {
        /// When the watcher first lost the engine in this outage.
        since: SystemTime,
        /// Why the last attempt failed.
        last_error: Error,
    },
    /// Terminal. A retry policy gave up ([`Error::GaveUp`]) or the watcher was closed
    /// ([`Error::Cancelled`]): every thread has stopped, every subscription has ended, the
    /// journal is freed; the last portfolio stays readable. Nothing more will happen.
    Failed(Error),
}

impl Health {
    /// True when synced.
    pub fn is_synced(&self) -> bool {
        matches!(self, Health::Synced)
    }
}

pub(crate) struct HealthCell {
    state: Mutex<Health>,
    changed: Condvar,
}

impl HealthCell {
    pub(crate) fn new() -> Self {
        HealthCell {
            state: Mutex::new(Health::Connecting),
            changed: Condvar::new(),
        }
    }

    pub(crate) fn get(&self) -> Health {
        self.state.lock().clone()
    }

    pub(crate) fn set(&self, h: Health) {
        let mut s = self.state.lock();
        if let Health::Failed(_) = *s {
            return; // final
        }
        *s = h;
        self.changed.notify_all();
    }

    pub(crate) fn wait_synced(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let mut s = self.state.lock();
        loop {
            match &*s {
                Health::Synced => return Ok(()),
                Health::Failed(e) => return Err(e.clone()),
                _ => {}
            }
            if self.changed.wait_until(&mut s, deadline).timed_out() {
                let last = match &*s {
                    Health::Synced => return Ok(()),
                    Health::Reconnecting { last_error, .. } => format!(": {last_error}"),
                    _ => String::new(),
                };
                return Err(Error::Timeout {
                    what: format!("waiting {timeout:?} for the watcher to sync{last}"),
                });
            }
        }
    }
}
