//! # whalewatcher
//!
//! A synchronous library that keeps an always-current, nearly free-to-query picture of
//! the **alive** (running or paused) containers of container engines, grouped by composer
//! project, plus a lifecycle event stream that begins with the correct current picture.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cancel;
pub mod container;
pub mod engine;
pub mod error;
pub mod event;
pub mod portfolio;
pub mod retry;
pub mod watcher;

#[cfg(feature = "docker")]
pub mod docker;
#[cfg(feature = "docker")]
pub mod http;

#[cfg(feature = "grpc")]
pub mod grpc;
#[cfg(feature = "grpc")]
#[allow(missing_docs, clippy::all, unused)]
mod proto {
    include!(concat!(env!("OUT_DIR"), "/proto/mod.rs"));
}
#[cfg(feature = "containerd")]
pub mod containerd;
#[cfg(feature = "cri")]
pub mod cri;

pub use container::{Container, EngineRef, Rucksack, PROJECT_LABEL};
pub use engine::{EngineClient, EngineInfo, EventStream, RawEvent, RawEventKind, RucksackPacker};
pub use error::{Error, Result};
pub use event::{ContainerEvent, EventKind};
pub use portfolio::{Portfolio, Project};
pub use retry::{ExponentialBackoff, RetryPolicy};
pub use watcher::{Health, Item, Since, Subscription, Watcher, WatcherOptions};
