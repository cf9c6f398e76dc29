//! grpc (work in progress).
