//! The container model: immutable, shared as `Arc<Container>`.
#![forbid(unsafe_code)]

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use crate::engine::EngineKind;
use crate::labels::Labels;

/// The label that names a container's composer project.
pub const PROJECT_LABEL: &str = "com.docker.compose.project";

/// The label that marks privileged containers (set by the Docker engine adaptor, as in the
/// Go original).
pub const PRIVILEGED_LABEL: &str = "com.github.thediveo.whalewatcher/privileged";

/// Application data attached to a container by a [`RucksackPacker`](crate::RucksackPacker).
pub type Rucksack = Arc<dyn Any + Send + Sync>;

/// The engine a container lives on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct EngineRef {
    /// Which kind of engine.
    pub kind: EngineKind,
    /// The engine's identity (Docker's `ID`, containerd's server UUID, ...).
    pub id: String,
}

/// An alive (running or paused) container.
///
/// Containers are immutable: a state change (pause, unpause) produces a new `Container`.
///
/// With the `serde` feature it serializes as the `whalewatch ps --json` object:
/// `{"engine": TYPE, "id", "name", "pid", "project", "paused", "image", "labels"}`.
#[derive(Clone, Default)]
pub struct Container {
    /// Unique id on its engine (containerd: namespace-qualified, `"ns/id"`, the default
    /// namespace unprefixed).
    pub id: String,
    /// Name; not necessarily unique (CRI names repeat across pods).
    pub name: String,
    /// PID of the container's initial process, as seen from the engine's PID namespace.
    pub pid: u32,
    /// Labels (for CRI also annotations and pod metadata): compact and immutable; set
    /// them with [`with_labels`](Container::with_labels), which also derives the project.
    pub labels: Labels,
    /// Composer project (`com.docker.compose.project`); `""` for standalone containers.
    pub project: String,
    /// Whether the container is paused.
    pub paused: bool,
    /// Image reference as the engine reports it.
    pub image: String,
    /// When the container's process started, if the engine says.
    pub started_at: Option<SystemTime>,
    /// The engine this container lives on.
    pub engine: Arc<EngineRef>,
    /// Application data filled in by a rucksack packer.
    pub rucksack: Option<Rucksack>,
}

impl Container {
    /// A container with id, name and pid; everything else empty.
    pub fn new(id: impl Into<String>, name: impl Into<String>, pid: u32) -> Self {
        Container {
            id: id.into(),
            name: name.into(),
            pid,
            ..Default::default()
        }
    }

    /// Sets the labels (anything that converts into [`Labels`]: `Labels`, an array of
    /// pairs, a `BTreeMap<String, String>`) and derives the project from
    /// [`PROJECT_LABEL`].
    ///
    /// ```
    /// use whalewatcher::{Container, PROJECT_LABEL};
    ///
    /// let c = Container::new("c1", "web", 42).with_labels([(PROJECT_LABEL, "shop"), ("tier", "web")]);
    /// assert_eq!(c.project, "shop");
    /// assert_eq!(c.labels.get("tier"), Some("web"));
    /// ```
    pub fn with_labels(mut self, labels: impl Into<Labels>) -> Self {
        let labels = labels.into();
        self.project = labels.get(PROJECT_LABEL).unwrap_or_default().to_string();
        self.labels = labels;
        self
    }

    /// A copy with `paused` set.
    pub fn with_paused(&self, paused: bool) -> Self {
        Container {
            paused,
            ..self.clone()
        }
    }

    /// The kind of engine this container lives on (shortcut for `engine.kind`).
    pub fn engine_kind(&self) -> EngineKind {
        self.engine.kind
    }

    /// The order of listings that span engines: by engine type string
    /// ([`EngineKind::as_str`]), project, name, then id (a total order).
    /// `all.sort_by(|a, b| a.listing_order(b))`.
    pub fn listing_order(&self, other: &Container) -> std::cmp::Ordering {
        (
            self.engine.kind.as_str(),
            &self.project,
            &self.name,
            &self.id,
        )
            .cmp(&(
                other.engine.kind.as_str(),
                &other.project,
                &other.name,
                &other.id,
            ))
    }

    /// The rucksack downcast to `T`, if there is one of that type.
    pub fn rucksack<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.rucksack.as_deref().and_then(|r| r.downcast_ref::<T>())
    }
}

impl fmt::Debug for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Container")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("pid", &self.pid)
            .field("project", &self.project)
            .field("paused", &self.paused)
            .field("image", &self.image)
            .field("engine", &self.engine.kind)
            .field("labels", &self.labels)
            .field("rucksack", &self.rucksack.is_some())
            .finish()
    }
}

#[cfg(feature = "serde")]
impl serde_core::Serialize for Container {
    fn serialize<S: serde_core::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde_core::ser::SerializeStruct;
        let mut st = s.serialize_struct("Container", 8)?;
        st.serialize_field("engine", &self.engine.kind)?;
        st.serialize_field("id", &self.id)?;
        st.serialize_field("name", &self.name)?;
        st.serialize_field("pid", &self.pid)?;
        st.serialize_field("project", &self.project)?;
        st.serialize_field("paused", &self.paused)?;
        st.serialize_field("image", &self.image)?;
        st.serialize_field("labels", &self.labels)?;
        st.end()
    }
}

impl PartialEq for Container {
    /// Equal when everything but the rucksack is equal.
    fn eq(&self, o: &Self) -> bool {
        self.id == o.id
            && self.name == o.name
            && self.pid == o.pid
            && self.labels == o.labels
            && self.project == o.project
            && self.paused == o.paused
            && self.image == o.image
            && self.started_at == o.started_at
            && self.engine == o.engine
    }
}
