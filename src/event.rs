//! Lifecycle events as a watcher delivers them.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::SystemTime;

use crate::container::Container;

/// What happened to a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The container started (or it was already alive when the watcher or the
    /// subscription began). Its `paused` flag tells whether it is paused. A short-lived
    /// container's `Started` is followed at once by its `Exited`: it never enters the
    /// portfolio, and its `pid` is 0 unless the engine still knew it.
    Started,
    /// The container's process ended and it left the portfolio.
    Exited {
        /// The exit code, when the engine reported one. After a resync that found the
        /// container gone without having seen its exit, the one the engine still knows
        /// (for the latest process of that id); `None` when the engine forgot it.
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
    /// sequence number of the last event their snapshot reflects (the first listing's
    /// their own), never more than the next live event's.
    pub seq: u64,
    /// When it happened (engine clock for live events and engine-reported exits, the
    /// watcher's clock otherwise); not monotonic in `seq`.
    pub time: SystemTime,
    /// What happened.
    pub kind: EventKind,
    /// The container as it is after the event (for `Exited`: as it was last seen).
    pub container: Arc<Container>,
    /// True for the `Started` events that describe the portfolio at subscription time,
    /// and for the first listing's `Started` events (they describe the initial
    /// portfolio). They never count against a subscriber's queue capacity.
    pub synthetic: bool,
}

/// Formats a time as RFC 3339 in UTC with nanoseconds, e.g.
/// `2026-12-02T14:10:00.123456789Z` (times before 1970 are clamped to the epoch).
#[cfg(feature = "serde")]
pub(crate) fn rfc3339_nanos(t: SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // civil-from-days (H. Hinnant's algorithm), for days since 1970-01-01
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

#[cfg(feature = "serde")]
impl serde_core::Serialize for ContainerEvent {
    /// The `whalewatch events --json` line: `{"seq", "time", "type", "exit_code", "oom",
    /// "synthetic", "container"}`.
    fn serialize<S: serde_core::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde_core::ser::SerializeStruct;
        let (exit_code, oom) = match self.kind {
            EventKind::Exited { exit_code, oom } => (exit_code, oom),
            _ => (None, false),
        };
        let mut st = s.serialize_struct("ContainerEvent", 7)?;
        st.serialize_field("seq", &self.seq)?;
        st.serialize_field("time", &rfc3339_nanos(self.time))?;
        st.serialize_field("type", self.kind.as_str())?;
        st.serialize_field("exit_code", &exit_code)?;
        st.serialize_field("oom", &oom)?;
        st.serialize_field("synthetic", &self.synthetic)?;
        st.serialize_field("container", &*self.container)?;
        st.end()
    }
}

#[cfg(all(test, feature = "serde"))]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc3339_formats_known_dates() {
        let t = |s: u64, n: u32| UNIX_EPOCH + Duration::new(s, n);
        assert_eq!(rfc3339_nanos(t(0, 0)), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            rfc3339_nanos(t(951_782_400, 5)),
            "2000-02-29T00:00:00.000000005Z"
        );
        assert_eq!(
            rfc3339_nanos(t(1_796_220_451, 789_821_149)),
            "2026-12-02T14:07:31.789821149Z"
        );
        assert_eq!(
            rfc3339_nanos(t(4_102_444_799, 999_999_999)),
            "2099-12-31T23:59:59.999999999Z"
        );
    }
}
