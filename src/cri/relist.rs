//! The fallback event source: relist every interval and diff successive listings.
//!
//! CRI engines without `GetContainerEvents` (containerd 1.6 answers UNIMPLEMENTED) are
//! watched by listing the ids of running containers and ready sandboxes every interval.
//! A new id becomes [`EventKind::Started`], a vanished one
//! [`EventKind::Exited`] with an unknown exit code. CRI never reuses ids (a restarted
//! container is a new container), so ids suffice.

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use crate::engine::{CancelSet, EventStream, RawEvent};
use crate::error::Result;
use crate::event::EventKind;

/// Lists the ids of everything alive (running containers and ready sandboxes).
pub(crate) type Lister = Box<dyn FnMut() -> Result<BTreeSet<String>> + Send>;

/// How often a sleeping relist stream looks at the cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(20);

/// The events that turn listing `old` into listing `new`: starts first, then exits,
/// each in id order.
pub(crate) fn diff(old: &BTreeSet<String>, new: &BTreeSet<String>) -> Vec<RawEvent> {
    let started = new
        .difference(old)
        .map(|id| RawEvent::new(EventKind::Started, id.clone()));
    let exited = old.difference(new).map(|id| {
        RawEvent::new(
            EventKind::Exited {
                exit_code: None,
                oom: false,
            },
            id.clone(),
        )
    });
    started.chain(exited).collect()
}

/// An [`EventStream`] that relists and diffs.
pub(crate) struct RelistStream {
    lister: Lister,
    cancel: CancelSet,
    interval: Duration,
    last: BTreeSet<String>,
    pending: VecDeque<RawEvent>,
}

impl RelistStream {
    /// Takes the baseline listing now; changes after this call become events.
    pub(crate) fn new(mut lister: Lister, cancel: CancelSet, interval: Duration) -> Result<Self> {
        cancel.check()?;
        let last = lister()?;
        Ok(RelistStream {
            lister,
            cancel,
            interval,
            last,
            pending: VecDeque::new(),
        })
    }

    /// Sleeps `interval`, waking every [`CANCEL_POLL`] to honour a cancel.
    fn sleep(&self) -> Result<()> {
        let end = Instant::now() + self.interval;
        loop {
            self.cancel.check()?;
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            std::thread::sleep(CANCEL_POLL.min(end - now));
        }
    }
}

impl EventStream for RelistStream {
    fn next_event(&mut self) -> Result<Option<RawEvent>> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Ok(Some(ev));
            }
            self.sleep()?;
            let now = (self.lister)()?;
            self.cancel.check()?;
            self.pending.extend(diff(&self.last, &now));
            self.last = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use std::sync::{Arc, Mutex};

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn diff_reports_each_change_once() {
        let ev = diff(&set(&["a", "b"]), &set(&["b", "c", "d"]));
        let got: Vec<_> = ev.iter().map(|e| (e.kind, e.id.as_str())).collect();
        let exited = EventKind::Exited {
            exit_code: None,
            oom: false,
        };
        assert_eq!(
            got,
            vec![
                (EventKind::Started, "c"),
                (EventKind::Started, "d"),
                (exited, "a")
            ]
        );
        assert!(diff(&set(&["x"]), &set(&["x"])).is_empty());
    }

    #[test]
    fn stream_diffs_successive_listings() {
        let script = Arc::new(Mutex::new(VecDeque::from(vec![
            set(&["a"]),
            set(&["a"]),
            set(&["a", "b"]),
            set(&["b"]),
        ])));
        let s2 = script.clone();
        let lister: Lister = Box::new(move || {
            let mut s = s2.lock().unwrap();
            Ok(s.pop_front().unwrap_or_else(|| set(&["b"])))
        });
        let mut st = RelistStream::new(lister, CancelSet::new(), Duration::from_millis(1)).unwrap();
        let e = st.next_event().unwrap().unwrap();
        assert_eq!((e.kind, e.id.as_str()), (EventKind::Started, "b"));
        let e = st.next_event().unwrap().unwrap();
        assert!(matches!(
            e.kind,
            EventKind::Exited {
                exit_code: None,
                ..
            }
        ));
        assert_eq!(e.id, "a");
    }

    #[test]
    fn cancel_wakes_a_sleeping_stream_promptly() {
        let cancel = CancelSet::new();
        let lister: Lister = Box::new(|| Ok(BTreeSet::new()));
        let mut st = RelistStream::new(lister, cancel.clone(), Duration::from_secs(3600)).unwrap();
        let t = std::thread::spawn(move || st.next_event());
        std::thread::sleep(Duration::from_millis(30));
        let t0 = Instant::now();
        cancel.cancel();
        assert_eq!(t.join().unwrap(), Err(Error::Cancelled));
        assert!(t0.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn lister_errors_propagate() {
        let mut first = true;
        let lister: Lister = Box::new(move || {
            if first {
                first = false;
                Ok(BTreeSet::new())
            } else {
                Err(Error::protocol("cri", "boom"))
            }
        });
        let mut st = RelistStream::new(lister, CancelSet::new(), Duration::ZERO).unwrap();
        assert!(matches!(st.next_event(), Err(Error::Protocol { .. })));
    }
}
