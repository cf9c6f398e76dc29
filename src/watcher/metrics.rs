//! Per-watcher counters: cheap atomics bumped by the watcher's threads, read as a
//! [`Metrics`] snapshot with [`Watcher::metrics`](super::Watcher::metrics).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::event::EventKind;

/// Latency of one kind of engine call: count, min, average, max.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Latency {
    /// Number of calls measured.
    pub count: u64,
    /// Fastest call (zero when none).
    pub min: Duration,
    /// Average call.
    pub avg: Duration,
    /// Slowest call.
    pub max: Duration,
}

/// A snapshot of a watcher's counters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metrics {
    /// `Started` events emitted (not counting the synthetic ones of new subscriptions).
    pub started: u64,
    /// `Exited` events emitted.
    pub exited: u64,
    /// `Paused` events emitted.
    pub paused: u64,
    /// `Unpaused` events emitted.
    pub unpaused: u64,
    /// Raw engine events received.
    pub raw_events: u64,
    /// Completed resyncs (listing + diff), the first sync included.
    pub resyncs: u64,
    /// Attempts to reopen the event stream after it was lost.
    pub reconnect_attempts: u64,
    /// Listing latency (info + list).
    pub list: Latency,
    /// Inspect latency.
    pub inspect: Latency,
    /// Subscriptions active now.
    pub subscribers: usize,
    /// Subscriptions ended because they fell behind ([`Item::Lagged`](super::Item::Lagged)).
    pub lagged_subscribers: u64,
    /// When the last engine event arrived.
    pub last_event: Option<SystemTime>,
}

#[derive(Default)]
struct LatencyCell {
    count: AtomicU64,
    sum_ns: AtomicU64,
    min_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl LatencyCell {
    fn record(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let n = self.count.fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
        if n == 0 {
            self.min_ns.store(ns, Relaxed);
        } else {
            self.min_ns.fetch_min(ns, Relaxed);
        }
        self.max_ns.fetch_max(ns, Relaxed);
    }

    fn get(&self) -> Latency {
        let count = self.count.load(Relaxed);
        if count == 0 {
            return Latency::default();
        }
        Latency {
            count,
            min: Duration::from_nanos(self.min_ns.load(Relaxed)),
            avg: Duration::from_nanos(self.sum_ns.load(Relaxed) / count),
            max: Duration::from_nanos(self.max_ns.load(Relaxed)),
        }
    }
}

/// The live counters.
#[derive(Default)]
pub(crate) struct MetricsCell {
    started: AtomicU64,
    exited: AtomicU64,
    paused: AtomicU64,
    unpaused: AtomicU64,
    raw_events: AtomicU64,
    resyncs: AtomicU64,
    reconnects: AtomicU64,
    lagged: AtomicU64,
    /// Nanoseconds since the epoch; 0 = never.
    last_event_ns: AtomicU64,
    list: LatencyCell,
    inspect: LatencyCell,
}

impl MetricsCell {
    pub(crate) fn event(&self, kind: &EventKind) {
        let c = match kind {
            EventKind::Started => &self.started,
            EventKind::Exited { .. } => &self.exited,
            EventKind::Paused => &self.paused,
            EventKind::Unpaused => &self.unpaused,
        };
        c.fetch_add(1, Relaxed);
    }

    pub(crate) fn raw_event(&self) {
        self.raw_events.fetch_add(1, Relaxed);
        let ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        self.last_event_ns.store(ns.max(1), Relaxed);
    }

    pub(crate) fn resync(&self) {
        self.resyncs.fetch_add(1, Relaxed);
    }

    pub(crate) fn reconnect_attempt(&self) {
        self.reconnects.fetch_add(1, Relaxed);
    }

    pub(crate) fn lagged(&self, n: usize) {
        self.lagged.fetch_add(n as u64, Relaxed);
    }

    pub(crate) fn list_took(&self, d: Duration) {
        self.list.record(d);
    }

    pub(crate) fn inspect_took(&self, d: Duration) {
        self.inspect.record(d);
    }

    pub(crate) fn snapshot(&self, subscribers: usize) -> Metrics {
        let last = self.last_event_ns.load(Relaxed);
        Metrics {
            started: self.started.load(Relaxed),
            exited: self.exited.load(Relaxed),
            paused: self.paused.load(Relaxed),
            unpaused: self.unpaused.load(Relaxed),
            raw_events: self.raw_events.load(Relaxed),
            resyncs: self.resyncs.load(Relaxed),
            reconnect_attempts: self.reconnects.load(Relaxed),
            list: self.list.get(),
            inspect: self.inspect.get(),
            subscribers,
            lagged_subscribers: self.lagged.load(Relaxed),
            last_event: (last != 0).then(|| UNIX_EPOCH + Duration::from_nanos(last)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_latency() {
        let m = MetricsCell::default();
        assert_eq!(m.snapshot(0), Metrics::default());
        m.event(&EventKind::Started);
        m.event(&EventKind::Started);
        m.event(&EventKind::Exited {
            exit_code: Some(1),
            oom: false,
        });
        m.event(&EventKind::Paused);
        m.raw_event();
        m.resync();
        m.reconnect_attempt();
        m.lagged(2);
        m.list_took(Duration::from_millis(30));
        m.list_took(Duration::from_millis(10));
        m.list_took(Duration::from_millis(20));
        let s = m.snapshot(3);
        assert_eq!((s.started, s.exited, s.paused, s.unpaused), (2, 1, 1, 0));
        assert_eq!((s.raw_events, s.resyncs, s.reconnect_attempts), (1, 1, 1));
        assert_eq!((s.subscribers, s.lagged_subscribers), (3, 2));
        assert!(s.last_event.is_some());
        assert_eq!(
            s.list,
            Latency {
                count: 3,
                min: Duration::from_millis(10),
                avg: Duration::from_millis(20),
                max: Duration::from_millis(30),
            }
        );
        assert_eq!(s.inspect, Latency::default());
    }
}
