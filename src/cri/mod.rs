//! The CRI engine adaptor (Kubernetes Container Runtime Interface, `runtime.v1`):
//! containerd's CRI plugin, cri-o.
//!
//! [`CriClient`] lists the running containers and the ready pod sandboxes over the
//! runtime service (one `ListPodSandbox` and one `ListContainers` per listing, then the
//! verbose status calls concurrently, for the PIDs).
//!
//! - Containers are named by their CRI metadata name (names repeat across pods); pod
//!   sandboxes are containers too, named by their id and marked with [`SANDBOX_LABEL`].
//! - Labels: the CRI labels, the annotations prefixed with [`ANNOTATION_KEY_PREFIX`], and
//!   the pod metadata under [`POD_NAME_LABEL`], [`POD_NAMESPACE_LABEL`],
//!   [`POD_UID_LABEL`] (containers also [`CONTAINER_NAME_LABEL`]). No composer project,
//!   never paused.
//! - The engine id is the host name: a CRI runtime serves one node and has no identity
//!   of its own.
//! - Events: the source is chosen by the runtime's `Version` answer
//!   ([`EventMode::for_runtime`], reported as the engine info's `mode`; no probe stream,
//!   so a one-shot [`list`](crate::EngineClient::list) or [`info`](crate::EngineClient::info)
//!   opens no event stream at all):
//!   - [`EventMode::Evented`]: `GetContainerEvents` (containerd 2.0 and later, cri-o, unknown
//!     runtimes). Exits carry the exit code and OOM flag of the event's container status.
//!   - [`EventMode::ContainerdEvents`]: containerd's own event service on the same socket,
//!     task start/exit/OOM events of namespace `k8s.io` (containerd 1.6 and 1.7). Exits
//!     carry the task's exit status and exit time.
//!   - [`EventMode::Relist`]: a relist every interval, diffed against the previous one, for
//!     runtimes that refuse both (UNIMPLEMENTED or an immediate end before any event
//!     switches the client to it; the stream ends, and the watcher reconnects): new ids
//!     are starts, vanished ones exits with an unknown exit code. Short-lived containers
//!     between two listings go unseen.
//! - [`inspect`](crate::EngineClient::inspect) of a container that exists but has ended
//!   gives [`Inspection::Exited`](crate::Inspection::Exited) from its `ContainerStatus`
//!   (exit code when `finished_at` is set, OOM from the reason `OOMKilled`, the finish
//!   time; name, labels, image and pod labels; pid 0); a created, never started
//!   container and a sandbox that is no longer ready are
//!   [`Processless`](crate::Error::Processless) (CRI keeps no exit status of sandboxes);
//!   [`NotFound`](crate::Error::NotFound) once the runtime forgot it.
//!
//! # Known problems
//!
//! - **containerd 1.7 does not broadcast CRI events.** Its `GetContainerEvents` hands each
//!   event to ONE of the open streams (upstream containerd issue 7318, fixed in 2.x), and
//!   a stream whose client went away keeps its server-side handler until the next event,
//!   which it swallows. Every other subscriber (the kubelet's evented PLEG, `crictl
//!   events`, another watcher, an earlier short-lived client) steals events: two watchers
//!   and one `ps` between them once reported 0 of 4 exits. The client therefore never
//!   opens `GetContainerEvents` on containerd before 2.0 and takes containerd's task
//!   events instead, which are broadcast (mode [`EventMode::ContainerdEvents`]).
//! - **Task events run ahead of the CRI status** (mode [`EventMode::ContainerdEvents`]): a task
//!   starts a moment before the CRI plugin records the container as running (the sandbox
//!   as ready), and exits a moment before its CRI status says exited. A start is
//!   reported only once the CRI status agrees (waiting at most 3 s). So that a stream
//!   (re)opened inside such a window cannot leave the portfolio behind for good,
//!   listings and inspections in this mode follow containerd's tasks: a container whose
//!   task has ended is left out of listings, and inspected as exited (with the exit
//!   status the CRI plugin records a moment later, waited for at most 3 s; else the
//!   task's); a CRI container or sandbox whose task runs before the CRI plugin lists it
//!   is waited for (at most 3 s) and listed. A
//!   sandbox whose task is already deleted while the CRI plugin still says ready is
//!   listed all the same (a sandbox need not have a task of its own).
//! - The event stream goes live a moment after [`events`](crate::EngineClient::events)
//!   returns (neither containerd service confirms a subscription before its first
//!   event), as with the [`containerd`](crate::containerd) client.
//! - containerd's task exit events arrive some tens of milliseconds after the exit time
//!   they carry (1.6, 1.7 and 2.1 alike); containerd 2.x's CRI exit events carry a later
//!   time, when the CRI plugin handled the exit, and arrive about 1 ms after it.
//! - **containerd 2.x**: the `GetContainerEvents` handler blocks while nothing happens and
//!   answers an expired request deadline with RST_STREAM(CANCEL) a few milliseconds
//!   before a client's own timer fires; the stream is therefore opened without a
//!   deadline (and no probe). It keeps CRI events for up to 5 minutes while nobody
//!   subscribes and hands that backlog to the next subscriber: events created before the
//!   stream was opened are dropped (the listing that follows the open is fresher).
//! - cri-o's `GetContainerEvents` is untested here (Debian ships no cri-o); a refusal
//!   with UNKNOWN, FAILED_PRECONDITION or UNIMPLEMENTED before any event (e.g. pod events
//!   not enabled) makes the client fall back to relisting.
//! - Pause and unpause are no CRI states: CRI containers are never reported paused.
#![forbid(unsafe_code)]

mod client;
pub(crate) mod convert;
pub(crate) mod events;
mod mode;
pub(crate) mod native;
pub(crate) mod relist;

pub use client::{CriClient, RawInfo, DEFAULT_ENDPOINTS, DEFAULT_RELIST_INTERVAL};
pub use convert::{
    ANNOTATION_KEY_PREFIX, CONTAINER_NAME_LABEL, POD_NAMESPACE_LABEL, POD_NAME_LABEL,
    POD_UID_LABEL, SANDBOX_LABEL,
};
pub use mode::EventMode;

/// The generated CRI `runtime.v1` message types (a minimal subset), for tests and tools
/// that drive a runtime through `CriClient::channel`. Feature `unstable`: not part of the
/// API.
#[cfg(feature = "unstable")]
#[doc(hidden)]
pub mod api {
    pub use crate::proto::cri_api::*;
}

/// The containerd messages of the [`EventMode::ContainerdEvents`] source, for tests that
/// fake a containerd. Feature `unstable`: not part of the API.
#[cfg(feature = "unstable")]
#[doc(hidden)]
pub mod containerd_api {
    pub use crate::proto::containerd_containers::{
        Container, GetContainerRequest, GetContainerResponse,
    };
    pub use crate::proto::containerd_events::{Envelope, SubscribeRequest};
    pub use crate::proto::containerd_task_events::{TaskExit, TaskOOM, TaskStart};
    pub use crate::proto::containerd_task_types::{Process, Status as TaskStatus};
    pub use crate::proto::containerd_tasks::{
        GetRequest, GetResponse, ListTasksRequest, ListTasksResponse,
    };
}
