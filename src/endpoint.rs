//! Where an engine's API is: the one constructor contract of the three engine clients,
//! and [`connect`].
//!
//! The contract is documented on [`connect`].
#![forbid(unsafe_code)]

#[cfg(any(feature = "containerd", feature = "cri"))]
use std::path::PathBuf;

use crate::engine::{EngineClient, EngineKind};
use crate::error::{Error, Result};

/// The environment variable of the engine's address convention.
pub(crate) fn env_var(kind: EngineKind) -> &'static str {
    match kind {
        EngineKind::Docker | EngineKind::Podman => "DOCKER_HOST",
        EngineKind::Containerd => "CONTAINERD_ADDRESS",
        EngineKind::Cri => "CONTAINER_RUNTIME_ENDPOINT",
    }
}

/// The value of the engine's environment variable, when set and not empty.
pub(crate) fn from_env(kind: EngineKind) -> Option<String> {
    std::env::var(env_var(kind)).ok().filter(|v| !v.is_empty())
}

/// `given`, else the engine's environment variable, else `default()`.
#[cfg_attr(
    not(any(feature = "docker", feature = "containerd", feature = "cri")),
    allow(dead_code)
)]
pub(crate) fn resolve(
    kind: EngineKind,
    given: Option<&str>,
    default: impl FnOnce() -> String,
) -> String {
    match given {
        Some(g) => g.to_string(),
        None => from_env(kind).unwrap_or_else(default),
    }
}

/// The path of a Unix socket address: `unix:///path` or `/path`.
pub(crate) fn strip_unix(address: &str) -> &str {
    address.strip_prefix("unix://").unwrap_or(address)
}

/// The socket path of a gRPC engine's endpoint: `unix:///path` or a path; any other
/// scheme is an [`Error::InvalidEndpoint`].
#[cfg(any(feature = "containerd", feature = "cri"))]
pub(crate) fn socket_path(endpoint: &str) -> Result<PathBuf> {
    let path = strip_unix(endpoint);
    if path.is_empty() || path.contains("://") {
        return Err(Error::InvalidEndpoint {
            endpoint: endpoint.to_string(),
            reason: "expected a Unix socket path, /path or unix:///path".into(),
        });
    }
    Ok(PathBuf::from(path))
}

/// Whether this build has the client of `kind` (its cargo feature).
pub(crate) fn compiled_in(kind: EngineKind) -> bool {
    match kind {
        EngineKind::Docker | EngineKind::Podman => cfg!(feature = "docker"),
        EngineKind::Containerd => cfg!(feature = "containerd"),
        EngineKind::Cri => cfg!(feature = "cri"),
    }
}

/// A client of the engine of `kind` at `endpoint` (`None`: the engine's environment
/// variable or default socket).
///
/// # The constructor contract
///
/// `connect` and every client constructor (`DockerClient::new`, `ContainerdClient::new`,
/// `CriClient::new`) take an `Option<&str>` endpoint and resolve it the same way:
/// 1. the endpoint given, when `Some`;
/// 2. else the environment variable of the engine's own convention, when set and not
///    empty: `DOCKER_HOST` for Docker and Podman (both speak the Docker API),
///    `CONTAINERD_ADDRESS` for containerd, `CONTAINER_RUNTIME_ENDPOINT` for CRI;
/// 3. else the default socket: `unix:///var/run/docker.sock`,
///    `/run/containerd/containerd.sock`, and for CRI the first existing of
///    `cri::DEFAULT_ENDPOINTS`.
///
/// A Unix socket is written as a plain absolute path or as `unix:///path`, for every
/// engine; the Docker API also takes `tcp://host:port`, the gRPC engines only Unix
/// sockets.
///
/// # Errors and laziness
///
/// The client is lazy: it connects on its first call, so this fails only on an unusable
/// address, or when the crate is built without the engine's feature
/// ([`Error::InvalidEndpoint`] both). Docker and Podman share one client (the Docker API);
/// its [`info`](EngineClient::info) tells which one answered. For builder options of one
/// engine (a rucksack packer, containerd's ignored namespaces, the CRI event mode) make
/// the client itself, with the same contract.
///
/// ```no_run
/// use whalewatcher::{connect, EngineKind, Watcher, WatcherOptions};
///
/// # fn main() -> Result<(), whalewatcher::Error> {
/// let client = connect(EngineKind::Containerd, None)?; // CONTAINERD_ADDRESS or the default
/// let watcher = Watcher::new(client, WatcherOptions::default());
/// # Ok(()) }
/// ```
pub fn connect(kind: EngineKind, endpoint: Option<&str>) -> Result<Box<dyn EngineClient>> {
    connect_pid(kind, endpoint, None)
}

/// [`connect`], with the engine's PID (from discovery) for its engine info.
#[cfg_attr(
    not(all(feature = "docker", feature = "containerd", feature = "cri")),
    allow(unused_variables)
)]
pub(crate) fn connect_pid(
    kind: EngineKind,
    endpoint: Option<&str>,
    pid: Option<u32>,
) -> Result<Box<dyn EngineClient>> {
    if !compiled_in(kind) {
        return Err(Error::InvalidEndpoint {
            endpoint: endpoint.unwrap_or_default().to_string(),
            reason: format!(
                "whalewatcher was built without the {} feature",
                feature_of(kind)
            ),
        });
    }
    match kind {
        #[cfg(feature = "docker")]
        EngineKind::Docker | EngineKind::Podman => {
            use crate::docker::DockerClient as C;
            Ok(boxed(C::new(endpoint)?, pid, C::with_pid))
        }
        #[cfg(feature = "containerd")]
        EngineKind::Containerd => {
            use crate::containerd::ContainerdClient as C;
            Ok(boxed(C::new(endpoint)?, pid, C::with_pid))
        }
        #[cfg(feature = "cri")]
        EngineKind::Cri => {
            use crate::cri::CriClient as C;
            Ok(boxed(C::new(endpoint)?, pid, C::with_pid))
        }
        #[allow(unreachable_patterns)] // every feature on
        _ => unreachable!("compiled_in checked the feature"),
    }
}

/// `client`, with the engine's PID when known, as a trait object.
#[cfg_attr(
    not(any(feature = "docker", feature = "containerd", feature = "cri")),
    allow(dead_code)
)]
fn boxed<C: EngineClient + 'static>(
    client: C,
    pid: Option<u32>,
    with_pid: fn(C, u32) -> C,
) -> Box<dyn EngineClient> {
    Box::new(match pid {
        Some(pid) => with_pid(client, pid),
        None => client,
    })
}

/// The cargo feature of an engine's client.
fn feature_of(kind: EngineKind) -> &'static str {
    match kind {
        EngineKind::Docker | EngineKind::Podman => "docker",
        EngineKind::Containerd => "containerd",
        EngineKind::Cri => "cri",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_prefix_and_schemes() {
        assert_eq!(strip_unix("unix:///x/y.sock"), "/x/y.sock");
        assert_eq!(strip_unix("/x/y.sock"), "/x/y.sock");
        #[cfg(any(feature = "containerd", feature = "cri"))]
        {
            assert_eq!(
                socket_path("unix:///a.sock").unwrap(),
                PathBuf::from("/a.sock")
            );
            assert_eq!(socket_path("/a.sock").unwrap(), PathBuf::from("/a.sock"));
            for bad in ["tcp://h:1", "", "unix://"] {
                assert!(
                    matches!(socket_path(bad), Err(Error::InvalidEndpoint { .. })),
                    "{bad:?}"
                );
            }
        }
        assert_eq!(resolve(EngineKind::Cri, Some("/g"), || "/d".into()), "/g");
    }

    #[test]
    fn every_kind_connects_lazily() {
        for kind in EngineKind::ALL {
            let r = connect(kind, Some("/nonexistent/whalewatcher/engine.sock"));
            assert_eq!(r.is_ok(), compiled_in(kind), "{kind}");
        }
        #[cfg(feature = "containerd")]
        assert!(matches!(
            connect(EngineKind::Containerd, Some("tcp://h:1")),
            Err(Error::InvalidEndpoint { .. })
        ));
    }
}
