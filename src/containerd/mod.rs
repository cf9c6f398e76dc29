//! The containerd engine: containerd's native gRPC API on its Unix socket.
//!
//! [`ContainerdClient`] lists the alive (running or paused) containers of every containerd
//! namespace except the ignored ones (by default `moby` and `k8s.io`, which Docker and the
//! CRI plugin own: watch those through [`docker`](crate::docker) and [`cri`](crate::cri)),
//! and streams the task start, exit, pause and resume events of all namespaces.
//!
//! - Ids are namespace-qualified, `"ns/id"`; containers of the `default` namespace keep
//!   their plain id. Names come from nerdctl's `nerdctl/name` label (else the id), prefixed
//!   the same way; the project from `com.docker.compose.project` (which nerdctl compose
//!   sets too).
//! - The engine id is the server UUID from the introspection API (containerd 1.5 and
//!   later; empty for older releases).
//! - Inspecting a container whose task has stopped gives
//!   [`Inspection::Exited`](crate::Inspection::Exited) with the task's exit status and
//!   exit time (containerd records no OOM flag: only the `/tasks/oom` event tells);
//!   without a task (never started, or the stopped task was deleted) it is
//!   [`Processless`](crate::Error::Processless); without the container record,
//!   [`NotFound`](crate::Error::NotFound). Exit events are stamped with the exit time.
//! - The exit of an exec'd process (`/tasks/exit` whose `id` is not the container's) is
//!   not the container's exit and produces no event. A `/tasks/oom` marks the container's
//!   next exit with `oom: true`.
#![forbid(unsafe_code)]

// With the `cri` feature alone, the module is private and holds only `api`: containerd's
// task events are the CRI adaptor's event source on containerd before 2.0.
pub(crate) mod api;
#[cfg(feature = "containerd")]
mod client;
#[cfg(feature = "containerd")]
pub(crate) mod convert;
#[cfg(feature = "containerd")]
pub(crate) mod events;
#[cfg(feature = "containerd")]
mod raw;

#[cfg(feature = "containerd")]
pub use client::{ContainerdClient, DEFAULT_ENDPOINT, DEFAULT_IGNORED_NAMESPACES};
#[cfg(feature = "containerd")]
pub use convert::{DEFAULT_NAMESPACE, NERDCTL_NAME_LABEL};
#[cfg(feature = "containerd")]
pub use raw::RawContainer;
