//! The engine-neutral client trait that every engine adaptor implements.
//!
//! An engine client is blocking: every call may wait on the engine's socket. The watcher
//! calls it from its own threads and uses [`EngineClient::cancel`] from another thread to
//! abort calls that are blocked in a read.
#![forbid(unsafe_code)]

use std::any::Any;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use crate::container::{Container, EngineRef, Rucksack};
use crate::error::Result;
use crate::event::EventKind;
use crate::labels::Labels;

#[cfg(any(feature = "docker", feature = "grpc"))]
pub(crate) use crate::cancel::CancelSet;

/// Which kind of container engine, by the API it is watched through.
///
/// One name for one thing: the same type is the engine type of an [`EngineInfo`] and an
/// [`EngineRef`], the kind of a [`discover::Found`](crate::discover::Found), and what
/// [`connect`](crate::connect) takes. [`as_str`](Self::as_str) gives the engine type
/// strings of the Go original (`"docker.com"`, `"podman.io"`, `"containerd.io"`,
/// `"k8s.io/cri-api"`), which are also its `Display` and serde forms; [`name`](Self::name)
/// the short names of the CLI and the C ABI (`"docker"`, `"podman"`, `"containerd"`,
/// `"cri"`). [`FromStr`] takes either.
///
/// There is deliberately no "other" kind: a test's fake engine reports one of the four
/// (the scripted engines of this crate's tests say [`Docker`](Self::Docker)). The
/// `Default` is `Docker`, so that a [`Container::new`] (which has no engine) is a Docker
/// container, as in the Go original's tests.
///
/// The order (`Ord`) is the declaration order, Docker, Podman, containerd, CRI;
/// [`Container::listing_order`] sorts by the engine type strings instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum EngineKind {
    /// Docker/Moby (dockerd), through the Docker API.
    #[default]
    Docker,
    /// Podman, through its Docker-compatible API (served by Libpod).
    Podman,
    /// containerd, through its native gRPC API.
    Containerd,
    /// A CRI engine (containerd's CRI plugin, cri-o), through the Kubernetes CRI API.
    Cri,
}

impl EngineKind {
    /// All kinds, in declaration order.
    pub const ALL: [EngineKind; 4] = [
        EngineKind::Docker,
        EngineKind::Podman,
        EngineKind::Containerd,
        EngineKind::Cri,
    ];

    /// The engine type string: `"docker.com"`, `"podman.io"`, `"containerd.io"` or
    /// `"k8s.io/cri-api"` (the `type` of the JSON forms).
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Docker => "docker.com",
            EngineKind::Podman => "podman.io",
            EngineKind::Containerd => "containerd.io",
            EngineKind::Cri => "k8s.io/cri-api",
        }
    }

    /// The short lowercase name: `"docker"`, `"podman"`, `"containerd"` or `"cri"`.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Docker => "docker",
            EngineKind::Podman => "podman",
            EngineKind::Containerd => "containerd",
            EngineKind::Cri => "cri",
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EngineKind {
    type Err = ParseEngineKindError;

    /// Takes the engine type string ([`as_str`](Self::as_str)) or the short name
    /// ([`name`](Self::name)), exactly.
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        EngineKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s || k.name() == s)
            .ok_or_else(|| ParseEngineKindError {
                given: s.to_string(),
            })
    }
}

/// The error of parsing an [`EngineKind`] from a string that names none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseEngineKindError {
    given: String,
}

impl fmt::Display for ParseEngineKindError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown engine kind {:?}: expected \"docker\", \"podman\", \"containerd\", \"cri\" (or an engine type such as \"docker.com\")",
            self.given
        )
    }
}

impl std::error::Error for ParseEngineKindError {}

#[cfg(feature = "serde")]
impl serde_core::Serialize for EngineKind {
    fn serialize<S: serde_core::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde_core::Deserialize<'de> for EngineKind {
    fn deserialize<D: serde_core::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde_core::de::Visitor<'_> for V {
            type Value = EngineKind;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an engine kind such as \"docker.com\" or \"docker\"")
            }
            fn visit_str<E: serde_core::de::Error>(
                self,
                v: &str,
            ) -> std::result::Result<EngineKind, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// What an engine says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EngineInfo {
    /// The engine's identity; stable across restarts where the engine has one.
    pub id: String,
    /// Which kind of engine (for the Docker API: Docker or Podman, as the server says).
    pub kind: EngineKind,
    /// Engine version (for containerd: version and revision).
    pub version: String,
    /// The API endpoint, e.g. `unix:///var/run/docker.sock`.
    pub api_path: String,
    /// PID of the engine process, when known (discovery fills it in).
    pub pid: Option<u32>,
    /// The client's event source where an engine has several: for CRI the
    /// [`cri::EventMode`](crate::cri::EventMode)'s name (`"evented"`, `"containerd-events"`
    /// or `"relist"`); empty for Docker, Podman and containerd, which have one. A string
    /// (not the enum) because `EngineInfo` is engine-neutral and the CRI client is a cargo
    /// feature; compare with `EventMode::as_str`.
    pub mode: String,
}

/// How a container's process ended, as far as the engine still knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExitStatus {
    /// The exit code, when the engine recorded one.
    pub exit_code: Option<i32>,
    /// Whether the kernel's OOM killer hit the container before it exited.
    pub oom: bool,
    /// When the process ended, by the engine's clock, when the engine says.
    pub time: Option<SystemTime>,
}

/// What [`EngineClient::inspect`] found.
#[derive(Debug, Clone)]
pub enum Inspection {
    /// The container is alive (running or paused).
    Alive(Container),
    /// The container still exists but its process has ended: the container with the
    /// details the engine still has (`pid` 0), and how its process ended.
    Exited(Container, ExitStatus),
}

impl Inspection {
    /// The container, alive or not.
    pub fn container(&self) -> &Container {
        match self {
            Inspection::Alive(c) | Inspection::Exited(c, _) => c,
        }
    }

    /// The container when it is alive.
    pub fn alive(self) -> Option<Container> {
        match self {
            Inspection::Alive(c) => Some(c),
            Inspection::Exited(..) => None,
        }
    }
}

/// A lifecycle event straight from the engine. Its [`EventKind`] is the one a watcher
/// delivers in a [`ContainerEvent`](crate::ContainerEvent): one vocabulary for both layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEvent {
    /// What happened.
    pub kind: EventKind,
    /// The container's id, in the same form as [`Container::id`].
    pub id: String,
    /// The container's project, when the event carries it.
    pub project: Option<String>,
    /// When it happened, by the engine's clock.
    pub time: SystemTime,
    /// What the event itself says about the container, for when the engine forgets the
    /// container before it can be inspected (`docker run --rm`). Docker and Podman set it
    /// on [`Exited`](EventKind::Exited) events only; `None` everywhere else.
    pub details: Option<Box<EventDetails>>,
}

impl RawEvent {
    /// An event of `kind` for container `id`, stamped now.
    pub fn new(kind: EventKind, id: impl Into<String>) -> Self {
        RawEvent {
            kind,
            id: id.into(),
            project: None,
            time: SystemTime::now(),
            details: None,
        }
    }
}

/// The container details an engine event carries (Docker and Podman put the container's
/// name, image and labels into the attributes of each container event).
///
/// The attributes mix labels with the engine's own keys; `labels` holds the attributes
/// without the engine's keys (`name`, `image`, `exitCode`, `containerExitCode`, `podId`),
/// so a label of one of those names is missing here (Docker overwrites such labels in the
/// event anyway).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventDetails {
    /// The container's name.
    pub name: String,
    /// The container's image reference.
    pub image: String,
    /// The container's labels, as far as the event tells.
    pub labels: Labels,
}

impl EventDetails {
    /// The container these details describe, as a container without a process: `pid` 0,
    /// not paused, no start time, project from the labels, on `engine`.
    pub fn to_container(&self, id: &str, engine: Arc<EngineRef>) -> Container {
        let mut c = Container::new(id, self.name.clone(), 0).with_labels(self.labels.clone());
        c.image = self.image.clone();
        c.engine = engine;
        c
    }
}

/// A never-ending stream of raw lifecycle events.
pub trait EventStream: Send {
    /// Blocks until the next event. `Ok(None)` when the engine closed the stream in an
    /// orderly way (callers reconnect); `Err` on failure or cancellation.
    fn next_event(&mut self) -> Result<Option<RawEvent>>;
}

/// A blocking client of one container engine.
pub trait EngineClient: Send + Sync + 'static {
    /// Asks the engine about itself. Also a cheap reachability check.
    fn info(&self) -> Result<EngineInfo>;

    /// Lists the alive (running or paused) containers, fully inspected. Each container
    /// comes behind its own [`Arc`], as a [`Portfolio`](crate::Portfolio) keeps it: a
    /// watcher stores a listing as it is, and a client that builds the containers one by
    /// one never holds a vector of whole containers (issue 16: Docker's held ~380 bytes
    /// per container that the allocator kept after the listing).
    fn list(&self) -> Result<Vec<Arc<Container>>>;

    /// Inspects one container, alive or not. [`Error::NotFound`](crate::Error::NotFound)
    /// when the engine no longer knows it; [`Error::Processless`](crate::Error::Processless)
    /// when it exists without a process and the engine cannot say how the process ended
    /// (or never started it).
    fn inspect(&self, id: &str) -> Result<Inspection>;

    /// Opens the lifecycle event stream (started, exited, paused, unpaused).
    fn events(&self) -> Result<Box<dyn EventStream>>;

    /// Aborts every call of this client that is blocked on the engine (by shutting its
    /// sockets down) and makes later calls fail with [`Error::Cancelled`](crate::Error::Cancelled).
    /// May be called from any thread; idempotent.
    fn cancel(&self);
}

/// Smart pointers to an engine client are engine clients too.
macro_rules! forward_engine_client {
    ($($ptr:ident),*) => {$(
        impl<E: EngineClient + ?Sized> EngineClient for $ptr<E> {
            fn info(&self) -> Result<EngineInfo> {
                (**self).info()
            }
            fn list(&self) -> Result<Vec<Arc<Container>>> {
                (**self).list()
            }
            fn inspect(&self, id: &str) -> Result<Inspection> {
                (**self).inspect(id)
            }
            fn events(&self) -> Result<Box<dyn EventStream>> {
                (**self).events()
            }
            fn cancel(&self) {
                (**self).cancel()
            }
        }
    )*};
}

forward_engine_client!(Arc, Box);

/// Fills a container's rucksack from the engine's raw inspection data.
///
/// `raw` is engine specific: Docker and Podman pass the inspect JSON as
/// `serde_json::Value`; containerd passes a
/// [`containerd::RawContainer`](crate::containerd::RawContainer) (our copy of its container
/// record, never a generated protobuf type); CRI passes the
/// verbose status `info` map as `std::collections::HashMap<String, String>`.
pub trait RucksackPacker: Send + Sync {
    /// Returns the rucksack for `container`, or `None`.
    fn pack(&self, container: &Container, raw: &dyn Any) -> Option<Rucksack>;
}

impl<F> RucksackPacker for F
where
    F: Fn(&Container, &dyn Any) -> Option<Rucksack> + Send + Sync,
{
    fn pack(&self, container: &Container, raw: &dyn Any) -> Option<Rucksack> {
        self(container, raw)
    }
}
