//! The Docker and Podman engine adaptor ([`DockerClient`]), speaking the Docker Engine API
//! over HTTP/1.1 with the crate's own (private) HTTP client.
//!
//! Containers come from `GET /containers/json` (running and paused only), each inspected
//! with `GET /containers/{id}/json`; lifecycle events from the `GET /events` stream
//! (`start`, `die`, `pause`, `unpause`, and `oom` to flag the following `die`). Inspecting
//! a container that has exited gives [`Inspection::Exited`](crate::Inspection::Exited)
//! with `State.ExitCode`, `State.OOMKilled` and `State.FinishedAt`; one created but never
//! started is [`Processless`](crate::Error::Processless). Exit events carry the name, image
//! and labels from the event's attributes ([`EventDetails`](crate::engine::EventDetails)),
//! for containers removed before anyone could inspect them (`run --rm`). Privileged
//! containers get the label [`PRIVILEGED_LABEL`](crate::container::PRIVILEGED_LABEL) with
//! an empty value, as in the Go original.
#![forbid(unsafe_code)]

mod client;
pub(crate) mod events;
pub(crate) mod inspect;
pub(crate) mod json;
mod time;

pub use client::{DockerClient, API_VERSION, DEFAULT_ENDPOINT};
/// Parses Docker's RFC 3339 timestamps (for our tests; not part of the API).
#[cfg(feature = "unstable")]
#[doc(hidden)]
pub use time::parse_rfc3339;
