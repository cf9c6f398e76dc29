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
//! - Events: `GetContainerEvents` where the runtime implements it (mode
//!   [`MODE_EVENTED`]); otherwise (containerd 1.6 answers UNIMPLEMENTED) a relist every
//!   interval, diffed against the previous one (mode [`MODE_RELIST`]): new ids are
//!   starts, vanished ones exits with an unknown exit code.
#![forbid(unsafe_code)]

mod client;
pub mod convert;
pub(crate) mod events;
pub(crate) mod relist;

pub use client::{
    resolve_endpoint, CriClient, RawInfo, DEFAULT_ENDPOINTS, DEFAULT_RELIST_INTERVAL,
};
pub use convert::{
    ANNOTATION_KEY_PREFIX, CONTAINER_NAME_LABEL, POD_NAMESPACE_LABEL, POD_NAME_LABEL,
    POD_UID_LABEL, SANDBOX_LABEL,
};
pub use events::{MODE_EVENTED, MODE_RELIST};

/// The generated CRI `runtime.v1` message types (a minimal subset), for tests and tools
/// that drive a runtime through [`CriClient::channel`]. Unstable: not part of the API.
#[doc(hidden)]
pub mod api {
    pub use crate::proto::cri_api::*;
}
