//! cri (work in progress).
