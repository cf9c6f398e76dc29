//! Which event source a CRI runtime gets, decided from its `Version` answer.

/// The event source of a [`CriClient`](super::CriClient): one type for the CRI mode.
/// Its [`as_str`](Self::as_str) name is the engine info's
/// [`mode`](crate::EngineInfo::mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventMode {
    /// CRI `GetContainerEvents` (`"evented"`): containerd 2.0 and later, cri-o, and
    /// runtimes the client does not know.
    Evented,
    /// containerd's own event service (`/containerd.services.events.v1.Events/Subscribe`
    /// on the same socket), task events of namespace `k8s.io`
    /// (`"containerd-events"`): containerd before 2.0, whose CRI events are missing
    /// (1.6) or not broadcast (1.7).
    ContainerdEvents,
    /// A listing every interval, diffed against the previous one (`"relist"`):
    /// runtimes that refuse both.
    Relist,
}

impl EventMode {
    /// The mode's name: `"evented"`, `"containerd-events"` or `"relist"`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventMode::Evented => "evented",
            EventMode::ContainerdEvents => "containerd-events",
            EventMode::Relist => "relist",
        }
    }

    /// The mode for a runtime by its CRI `Version` answer (`runtime_name`,
    /// `runtime_version`): containerd before 2.0 gets [`ContainerdEvents`](Self::ContainerdEvents),
    /// everything else [`Evented`](Self::Evented) (a runtime that then refuses
    /// `GetContainerEvents` falls back to [`Relist`](Self::Relist)).
    pub fn for_runtime(name: &str, version: &str) -> EventMode {
        if name.eq_ignore_ascii_case("containerd") {
            if let Some((major, _)) = major_minor(version) {
                if major < 2 {
                    return EventMode::ContainerdEvents;
                }
            }
        }
        EventMode::Evented
    }
}

/// `(major, minor)` of a version such as `v1.7.24`, `1.6.20~ds1` or `2.1.9`.
pub(crate) fn major_minor(version: &str) -> Option<(u32, u32)> {
    let v = version.trim();
    let v = v.strip_prefix(['v', 'V']).unwrap_or(v);
    let mut parts = v.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    // The separator after the major must be a dot.
    let rest = &v[v.find(|c: char| !c.is_ascii_digit())?..];
    if !rest.starts_with('.') {
        return None;
    }
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_leniently() {
        assert_eq!(major_minor("v1.7.24"), Some((1, 7)));
        assert_eq!(major_minor("1.6.20~ds1"), Some((1, 6)));
        assert_eq!(major_minor(" 2.1.9 "), Some((2, 1)));
        assert_eq!(major_minor("2.0"), Some((2, 0)));
        assert_eq!(major_minor("2"), None);
        assert_eq!(major_minor("2-1"), None);
        assert_eq!(major_minor(""), None);
        assert_eq!(major_minor("vx.1"), None);
        assert_eq!(major_minor("99999999999.1"), None);
    }

    #[test]
    fn modes_by_runtime() {
        use EventMode::*;
        assert_eq!(
            EventMode::for_runtime("containerd", "v1.6.20"),
            ContainerdEvents
        );
        assert_eq!(
            EventMode::for_runtime("containerd", "1.7.24~ds1"),
            ContainerdEvents
        );
        assert_eq!(EventMode::for_runtime("containerd", "2.1.9"), Evented);
        assert_eq!(EventMode::for_runtime("containerd", "v2.0.0-rc.1"), Evented);
        assert_eq!(EventMode::for_runtime("containerd", "garbage"), Evented);
        assert_eq!(EventMode::for_runtime("cri-o", "1.28.1"), Evented);
        assert_eq!(EventMode::for_runtime("fake", "1.0"), Evented);
        assert_eq!(Evented.as_str(), "evented");
        assert_eq!(ContainerdEvents.as_str(), "containerd-events");
        assert_eq!(Relist.as_str(), "relist");
    }
}
