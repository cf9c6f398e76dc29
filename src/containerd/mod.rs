//! containerd (work in progress).
