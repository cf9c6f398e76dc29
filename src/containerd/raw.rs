//! [`RawContainer`]: what a rucksack packer gets from containerd.
#![forbid(unsafe_code)]

use std::time::SystemTime;

use crate::labels::Labels;
use crate::proto::containerd_containers::Container as ProtoContainer;

use super::api::to_system_time;

/// containerd's record of a container (its `containers.v1.Container`), as the `raw` data
/// handed to a [`RucksackPacker`](crate::RucksackPacker): our own copy of the fields, so
/// that a protobuf upgrade never changes what packers see. More fields may be added
/// (`#[non_exhaustive]`).
///
/// ```
/// use std::any::Any;
/// use std::sync::Arc;
/// use whalewatcher::containerd::RawContainer;
/// use whalewatcher::{Container, Rucksack};
///
/// // Keeps each container's runtime name (e.g. `io.containerd.runc.v2`).
/// let packer = |_: &Container, raw: &dyn Any| -> Option<Rucksack> {
///     let raw = raw.downcast_ref::<RawContainer>()?;
///     Some(Arc::new(raw.runtime.clone()))
/// };
/// # let _ = packer;
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RawContainer {
    /// The containerd namespace.
    pub namespace: String,
    /// containerd's id of the container, without the namespace (see
    /// [`Container::id`](crate::Container::id) for the qualified one).
    pub id: String,
    /// The container's labels.
    pub labels: Labels,
    /// The image reference the container was created from.
    pub image: String,
    /// The runtime's name, e.g. `io.containerd.runc.v2`.
    pub runtime: String,
    /// The snapshotter of the container's root filesystem, e.g. `overlayfs`.
    pub snapshotter: String,
    /// The key of the root filesystem's snapshot.
    pub snapshot_key: String,
    /// When the record was created, by containerd's clock.
    pub created_at: Option<SystemTime>,
    /// When the record was last updated, by containerd's clock.
    pub updated_at: Option<SystemTime>,
}

impl RawContainer {
    /// Our copy of the record `c` of namespace `ns`.
    pub(crate) fn from_record(ns: &str, c: &ProtoContainer) -> Self {
        RawContainer {
            namespace: ns.to_string(),
            id: c.id.clone(),
            labels: c.labels.iter().collect(),
            image: c.image.clone(),
            runtime: c
                .runtime
                .as_ref()
                .map(|r| r.name.clone())
                .unwrap_or_default(),
            snapshotter: c.snapshotter.clone(),
            snapshot_key: c.snapshot_key.clone(),
            created_at: to_system_time(c.created_at.as_ref()),
            updated_at: to_system_time(c.updated_at.as_ref()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::containerd_containers::container::Runtime;
    use protobuf::well_known_types::timestamp::Timestamp;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn copies_every_field() {
        let mut c = ProtoContainer::new();
        c.id = "web".into();
        c.labels.insert("a".into(), "1".into());
        c.image = "docker.io/library/busybox:latest".into();
        let mut rt = Runtime::new();
        rt.name = "io.containerd.runc.v2".into();
        c.runtime = Some(rt).into();
        c.snapshotter = "overlayfs".into();
        c.snapshot_key = "web".into();
        let mut ts = Timestamp::new();
        ts.seconds = 1_700_000_000;
        ts.nanos = 5;
        c.created_at = Some(ts).into();
        let raw = RawContainer::from_record("ns", &c);
        assert_eq!(
            raw,
            RawContainer {
                namespace: "ns".into(),
                id: "web".into(),
                labels: [("a", "1")].into(),
                image: "docker.io/library/busybox:latest".into(),
                runtime: "io.containerd.runc.v2".into(),
                snapshotter: "overlayfs".into(),
                snapshot_key: "web".into(),
                created_at: Some(UNIX_EPOCH + Duration::new(1_700_000_000, 5)),
                updated_at: None,
            }
        );
        // A record without a runtime (or timestamps) is no problem.
        let bare = RawContainer::from_record("default", &ProtoContainer::new());
        assert_eq!(bare.runtime, "");
        assert_eq!(bare.created_at, None);
    }
}
