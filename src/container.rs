//! The container model: immutable, shared as `Arc<Container>`.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

/// The label that names a container's composer project.
pub const PROJECT_LABEL: &str = "com.docker.compose.project";

/// The label that marks privileged containers (set by the Docker engine adaptor, as in the
/// Go original).
pub const PRIVILEGED_LABEL: &str = "com.github.thediveo.whalewatcher/privileged";

/// Application data attached to a container by a [`RucksackPacker`](crate::RucksackPacker).
pub type Rucksack = Arc<dyn Any + Send + Sync>;

/// The engine a container lives on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct EngineRef {
    /// Engine type, such as `"docker.com"`, `"podman.io"`, `"containerd.io"`, `"k8s.io/cri-api"`.
    #[cfg_attr(feature = "serde", serde(rename = "type"))]
    pub kind: String,
    /// The engine's identity (Docker's `ID`, containerd's server UUID, ...).
    pub id: String,
}

/// An alive (running or paused) container.
///
/// Containers are immutable: a state change (pause, unpause) produces a new `Container`.
#[derive(Clone, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Container {
    /// Unique id on its engine (containerd: namespace-qualified, `"ns/id"`, the default
    /// namespace unprefixed).
    pub id: String,
    /// Name; not necessarily unique (CRI names repeat across pods).
    pub name: String,
    /// PID of the container's initial process, as seen from the engine's PID namespace.
    pub pid: u32,
    /// Labels (for CRI also annotations and pod metadata).
    pub labels: BTreeMap<String, String>,
    /// Composer project (`com.docker.compose.project`); `""` for standalone containers.
    pub project: String,
    /// Whether the container is paused.
    pub paused: bool,
    /// Image reference as the engine reports it.
    pub image: String,
    /// When the container's process started, if the engine says.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub started_at: Option<SystemTime>,
    /// The engine this container lives on.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub engine: Arc<EngineRef>,
    /// Application data filled in by a rucksack packer.
    #[cfg_attr(feature = "serde", serde(skip))]
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

    /// Sets the labels and derives the project from [`PROJECT_LABEL`].
    pub fn with_labels(mut self, labels: BTreeMap<String, String>) -> Self {
        self.project = labels.get(PROJECT_LABEL).cloned().unwrap_or_default();
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

    /// The engine type this container lives on (shortcut for `engine.kind`).
    pub fn engine_type(&self) -> &str {
        &self.engine.kind
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
