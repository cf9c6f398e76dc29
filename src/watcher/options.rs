//! Watcher settings.

use std::sync::Arc;

use crate::retry::{ExponentialBackoff, RetryPolicy};

/// Makes a fresh retry policy; the watcher keeps one for reconnects and one for listings.
pub type RetryFactory = Arc<dyn Fn() -> Box<dyn RetryPolicy> + Send + Sync>;

/// How a [`Watcher`](super::Watcher) behaves.
#[derive(Clone)]
pub struct WatcherOptions {
    /// Retry policy for reconnecting the event stream and for failed listings. Default:
    /// [`ExponentialBackoff::default`], retrying forever (so that an agent started before
    /// its engine attaches as soon as the engine appears).
    pub retry: RetryFactory,
    /// Queue length of each subscriber before it counts as lagging (default 1024).
    pub subscriber_capacity: usize,
    /// Number of past events kept for [`subscribe_from`](super::Watcher::subscribe_from)
    /// (default 4096).
    pub journal_capacity: usize,
    /// How often an inspect that failed for another reason than "container gone" is
    /// tried, with backoff, before the watcher relists the engine's containers to account
    /// for it (default 3).
    pub inspect_attempts: u32,
    /// Most engine events buffered while a listing runs (default 65,536). When more
    /// arrive, the buffer is dropped and the watcher lists again, so memory stays bounded
    /// under an event flood.
    pub max_buffered_events: usize,
    /// A name for the watcher's threads and log messages (default `"whalewatcher"`).
    pub name: String,
}

impl Default for WatcherOptions {
    fn default() -> Self {
        WatcherOptions {
            retry: Arc::new(|| Box::new(ExponentialBackoff::default())),
            subscriber_capacity: 1024,
            journal_capacity: 4096,
            inspect_attempts: 3,
            max_buffered_events: 65_536,
            name: "whalewatcher".into(),
        }
    }
}

impl WatcherOptions {
    /// Uses policies made by `f` for retries.
    pub fn with_retry<P, F>(mut self, f: F) -> Self
    where
        P: RetryPolicy + 'static,
        F: Fn() -> P + Send + Sync + 'static,
    {
        self.retry = Arc::new(move || Box::new(f()));
        self
    }

    /// Sets the per-subscriber queue length.
    pub fn with_subscriber_capacity(mut self, n: usize) -> Self {
        self.subscriber_capacity = n.max(1);
        self
    }

    /// Sets the journal length.
    pub fn with_journal_capacity(mut self, n: usize) -> Self {
        self.journal_capacity = n;
        self
    }

    /// Sets the thread/log name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

impl std::fmt::Debug for WatcherOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatcherOptions")
            .field("subscriber_capacity", &self.subscriber_capacity)
            .field("journal_capacity", &self.journal_capacity)
            .field("inspect_attempts", &self.inspect_attempts)
            .field("max_buffered_events", &self.max_buffered_events)
            .field("name", &self.name)
            .finish()
    }
}
