//! The CRI engine adaptor (Kubernetes Container Runtime Interface, `runtime.v1`):
//! containerd's CRI plugin, cri-o.
//!
//! Work in progress: label scheme and conversions ([`convert`]) and the relisting
//! fallback event source are done; the client lands once the gRPC transport does.

// Until the client (which needs the gRPC transport) uses them.
#[allow(dead_code)]
pub mod convert;
#[allow(dead_code)]
pub(crate) mod relist;

pub use convert::{
    ANNOTATION_KEY_PREFIX, CONTAINER_NAME_LABEL, POD_NAMESPACE_LABEL, POD_NAME_LABEL,
    POD_UID_LABEL, SANDBOX_LABEL,
};
