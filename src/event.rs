//! Lifecycle events as a watcher delivers them.

use std::sync::Arc;
use std::time::SystemTime;

use crate::container::Container;

/// What happened to a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The container appeared in the portfolio (it started, or it was already alive when
    /// the watcher or the subscription began). Its `paused` flag tells whether it is paused.
    Started,
    /// The container's process ended and it left the portfolio.
    Exited {
        /// The exit code, when the engine reported one (not after a resync that found the
        /// container gone without having seen its exit).
        exit_code: Option<i32>,
        /// Whether the OOM killer hit the container before it exited.
        oom: bool,
    },
    /// The container was paused.
    Paused,
    /// The container was unpaused.
    Unpaused,
}

impl EventKind {
    /// `"started"`, `"exited"`, `"paused"` or `"unpaused"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::Exited { .. } => "exited",
            EventKind::Paused => "paused",
            EventKind::Unpaused => "unpaused",
        }
    }
}

/// A lifecycle event of one container, as seen by a watcher.
#[derive(Debug, Clone)]
pub struct ContainerEvent {
    /// Strictly increasing per watcher for live events. Synthetic events carry the
    /// sequence number of the last live event their snapshot reflects.
    pub seq: u64,
    /// When it happened (engine clock for live events, the watcher's clock otherwise).
    pub time: SystemTime,
    /// What happened.
    pub kind: EventKind,
    /// The container as it is after the event (for `Exited`: as it was last seen).
    pub container: Arc<Container>,
    /// True for the `Started` events that describe the portfolio at subscription time.
    pub synthetic: bool,
}
