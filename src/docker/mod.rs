//! docker (work in progress).
