//! The watcher's connection health, and waiting for it to become ready.

use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Condvar, Mutex};

use crate::error::Error;

/// Where a watcher stands with its engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Connecting for the first time; nothing is known yet.
    Connecting,
    /// Connected; listing the containers (the portfolio shows the previous state, if any).
    Syncing,
    /// The portfolio is current and events flow.
    Synced,
    /// The connection was lost; retrying. The portfolio is stale since `since`.
    Reconnecting {
        /// When the watcher lost the engine.
        since: SystemTime,
        /// Why the last attempt failed.
        last_error: Error,
    },
    /// The retry policy gave up, or the watcher was closed; nothing more will happen.
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
