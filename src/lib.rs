//! # whalewatcher
//!
//! A synchronous library that keeps an always-current, nearly free-to-query picture of
//! the **alive** (running or paused) containers of container engines, grouped by composer
//! project (`com.docker.compose.project`), plus a lifecycle event stream (started, exited,
//! paused, unpaused) that begins with the correct current picture.
//!
//! Engines: Docker and Podman (`docker`, HTTP/1.1 on a Unix socket), containerd
//! (`containerd`, native gRPC API), CRI engines (`cri`: containerd's CRI plugin, cri-o).
//! No async runtime: blocking engine clients feed ONE sync thread per [`Watcher`] that
//! owns the state and publishes immutable [`Portfolio`] snapshots; queries never touch the
//! engine. [`connect`] makes the client of any [`EngineKind`] (each engine's client takes
//! the same endpoint contract: the address given, else the engine's environment variable,
//! else its default socket). [`discover`] finds a node's engines and a [`fleet::Fleet`] watches all of them
//! at once (one merged view and event stream). The `ffi` feature adds a C ABI.
//!
//! ## Example
//!
//! ```no_run
//! use std::time::Duration;
//! use whalewatcher::{docker::DockerClient, Item, Watcher, WatcherOptions};
//!
//! # fn main() -> Result<(), whalewatcher::Error> {
//! let engine = DockerClient::new(None)?; // DOCKER_HOST or /var/run/docker.sock
//! let watcher = Watcher::new(engine, WatcherOptions::default());
//! watcher.wait_ready(Duration::from_secs(10))?;
//! for name in watcher.portfolio().project_names() {
//!     println!("project {name:?}");
//! }
//! let events = watcher.subscribe(); // first: Started for every alive container
//! while let Some(Item::Event(ev)) = events.recv_timeout(Duration::from_secs(1)) {
//!     println!("{} {} {}", ev.seq, ev.kind.as_str(), ev.container.name);
//! }
//! # Ok(()) }
//! ```
//!
//! Portfolios are plain values, cheap to clone and to query:
//!
//! ```
//! use std::sync::Arc;
//! use whalewatcher::{Container, Portfolio};
//!
//! let mut p = Portfolio::new();
//! p.insert(Arc::new(Container::new("c1", "web", 4242)));
//! let snapshot = p.clone(); // a few reference-count increments
//! p.remove("c1");
//! assert_eq!(snapshot.get("c1").unwrap().pid, 4242);
//! assert!(p.lookup("web").is_none());
//! assert_eq!(snapshot.project("").unwrap().len(), 1); // "" = standalone containers
//! ```
//!
//! ## Stability and the `unstable` feature
//!
//! Everything in these docs is the public API, under semver. The wire layers underneath
//! (the HTTP/1.1 client, the HTTP/2 + gRPC client with its frames, HPACK and limits, the
//! cancellation plumbing, the generated protobuf messages and the fuzzing entry points)
//! are ours: private, so that a new transport, a protobuf upgrade or a tuned limit is never
//! a breaking change. The cargo feature `unstable` makes them reachable (as
//! `whalewatcher::{http, grpc, cancel, fuzzing}`, `cri::api`, `cri::containerd_api`,
//! `docker::parse_rfc3339`, hidden from these docs) for our own integration tests, benchmarks
//! and fuzz targets, in the manner of h2's `unstable` and ureq's `unversioned`: no
//! compatibility promise of any kind, any release may change or remove them. We chose a
//! feature over moving those tests into the crate because they are black-box tests of the
//! wire layers against real engines and hostile peers; the crate's own dev-dependency on
//! itself with `unstable` switches it on for `cargo test`, never for dependents.
//!
//! ## Testing your code: the `test-util` feature
//!
//! With the cargo feature `test-util` (meant for your `[dev-dependencies]`), the module
//! `scripted` provides a scripted engine: an [`EngineClient`] whose containers, events,
//! outages and failures your test decides, to test code that uses a [`Watcher`] without a
//! real engine. It is part of the public API, under semver, when the feature is on.
//!
//! ## Known problems
//!
//! - Docker drops an event listener that does not take an event within 100 ms; the
//!   watcher's event reader therefore never waits on anything but the socket.
//! - Podman's compat `/events` filter matches its internal action name `died`, not `die`:
//!   the Docker client asks for both. Podman 4.3 sends no `oom` events, so its exits never
//!   carry the OOM flag.
//! - Podman closes a rootless `/events` stream after about 90 s; reconnecting (with a
//!   resync diff) is normal operation. Podman 4.3's compat `/events` stream may also go live
//!   a second or so after it answered; events in that window reach no client.
//! - containerd publishes `/tasks/exit` for exec'd processes too; only an exit whose
//!   process id equals the container id ends a container.
//! - CRI events differ by containerd generation: 1.6 has no `GetContainerEvents`
//!   (UNIMPLEMENTED), 1.7's hands each event to ONE open stream (no broadcast), 2.x blocks
//!   idle streams, resets a stream at its deadline and hands a backlog of up to 5 minutes
//!   to a new subscriber. The CRI client therefore picks its event source by the
//!   runtime's version (containerd before 2.0: containerd's own task events) and drops
//!   backlog events; see [`cri`](crate::cri#known-problems).
//! - A container that restarts while the watcher is disconnected keeps its id but gets a
//!   new PID: the resync reports Exited + Started for it.
//! - A pause or unpause that happens while the watcher is still inspecting a newly
//!   started container is folded into its `Started` event (see its `paused` flag).
//! - Names are not unique (CRI names repeat across pods): look containers up by id.
// `deny`, not `forbid`: the C ABI in `ffi` needs `unsafe`; every other top-level module
// forbids it itself.
#![deny(unsafe_code)]
#![deny(missing_docs)]

/// Declares a module of the wire layers and plumbing: public (but hidden from the docs)
/// with the `unstable` feature, for our own tests, benchmarks and fuzz targets; private
/// without it.
macro_rules! unstable_mod {
    ($(#[$attr:meta])* mod $name:ident;) => {
        $(#[$attr])*
        #[cfg(feature = "unstable")]
        #[doc(hidden)]
        pub mod $name;
        $(#[$attr])*
        #[cfg(not(feature = "unstable"))]
        mod $name;
    };
}

unstable_mod! {
    #[cfg(any(feature = "docker", feature = "grpc"))]
    mod cancel;
}
pub mod container;
pub mod discover;
mod endpoint;
pub mod engine;
pub mod error;
pub mod event;
pub mod fleet;
#[cfg(feature = "unstable")]
#[doc(hidden)]
pub mod fuzzing;
mod grpc_code;
pub mod labels;
pub mod portfolio;
pub mod retry;
#[cfg(feature = "test-util")]
pub mod scripted;
#[cfg(feature = "serde")]
mod ser;
#[cfg(test)]
mod sim_rng;
pub mod watcher;

#[cfg(feature = "docker")]
pub mod docker;
unstable_mod! {
    #[cfg(feature = "docker")]
    mod http;
}

#[cfg(feature = "containerd")]
pub mod containerd;
/// Without the `containerd` feature, the part of it that the CRI adaptor needs (containerd's
/// task events, its event source on containerd before 2.0), private.
#[cfg(all(feature = "cri", not(feature = "containerd")))]
mod containerd;
#[cfg(feature = "cri")]
pub mod cri;
unstable_mod! {
    #[cfg(feature = "grpc")]
    mod grpc;
}
/// Generated from proto/*.proto by rust-protobuf's pure-Rust codegen and checked in
/// (`tests/proto_codegen.rs` keeps it current): no build script, no protoc.
#[cfg(feature = "grpc")]
#[allow(missing_docs, clippy::all, unused)]
#[forbid(unsafe_code)]
mod proto;

#[cfg(feature = "ffi")]
pub mod ffi;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use container::{Container, EngineRef, Rucksack, PRIVILEGED_LABEL, PROJECT_LABEL};
pub use endpoint::connect;
pub use engine::{
    EngineClient, EngineInfo, EngineKind, EventStream, ExitStatus, Inspection, RawEvent,
    RucksackPacker,
};
pub use error::{Error, Result};
pub use event::{ContainerEvent, EventKind};
pub use labels::Labels;
pub use portfolio::{Portfolio, Project};
pub use retry::{ExponentialBackoff, NoRetry, RetryPolicy};
pub use watcher::{
    Health, Item, Latency, Metrics, PortfolioReader, Since, Subscription, Watcher, WatcherOptions,
};
