//! [`DockerClient`]: the Docker/Podman engine adaptor.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;

use super::json::{list_ids, parse_json};

use crate::container::{Container, EngineRef};
use crate::docker::events::EventDecoder;
use crate::docker::inspect::container_from_inspect;
use crate::engine::{
    EngineClient, EngineInfo, EngineKind, EventStream, Inspection, RucksackPacker,
};
use crate::error::{Error, Result};
use crate::http::{
    error_message, percent_encode, BodyReader, Endpoint, HttpClient, HttpOptions, Response,
};

/// The default Docker endpoint.
pub const DEFAULT_ENDPOINT: &str = "unix:///var/run/docker.sock";
/// The newest API version this client asks for; older servers get their own version.
pub const API_VERSION: (u32, u32) = (1, 47);
/// The version assumed when a server does not say (Docker's own fallback).
const FALLBACK_VERSION: (u32, u32) = (1, 24);
/// How many containers `list` inspects at the same time.
const INSPECT_WORKERS: usize = 4;

/// What the engine told us when we first met it.
#[derive(Debug, Clone)]
struct Negotiated {
    /// Path prefix, e.g. `/v1.41`.
    prefix: String,
    engine: Arc<EngineRef>,
    version: String,
}

/// A client of a Docker (or Podman, via its Docker-compatible API) engine.
///
/// Construction never connects: the first call does, so a client can be created before
/// the engine runs. The API version is negotiated with `GET /_ping` and `GET /info` on
/// first use, after connection failures (the engine may have been replaced), and for every
/// [`info`](EngineClient::info) but the first after a negotiation (a resync must see a
/// replaced engine even when its event stream ended cleanly); the engine type is
/// [`EngineKind::Podman`] when the server is Libpod, [`EngineKind::Docker`] otherwise.
pub struct DockerClient {
    http: HttpClient,
    packer: Option<Arc<dyn RucksackPacker>>,
    pid: Option<u32>,
    /// The last negotiation, and whether an `info()` has reported it yet.
    negotiated: Mutex<Option<(Negotiated, Reported)>>,
}

/// Whether `info()` has reported a negotiation (then the next `info()` negotiates anew).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reported {
    No,
    Yes,
}

impl DockerClient {
    /// A client of `endpoint` (`unix:///path`, `/path` or `tcp://host:port`), else of
    /// `DOCKER_HOST`, else of [`DEFAULT_ENDPOINT`]: the
    /// [constructor contract](crate::connect#the-constructor-contract) of every client.
    /// Lazy: fails only on an unusable address ([`Error::InvalidEndpoint`]).
    pub fn new(endpoint: Option<&str>) -> Result<Self> {
        let addr = crate::endpoint::resolve(EngineKind::Docker, endpoint, || {
            DEFAULT_ENDPOINT.to_string()
        });
        let endpoint = Endpoint::parse(&addr)?;
        Ok(DockerClient {
            http: HttpClient::new(endpoint, HttpOptions::default()),
            packer: None,
            pid: None,
            negotiated: Mutex::new(None),
        })
    }

    /// Sets the rucksack packer; it gets the raw inspect JSON as `serde_json::Value`.
    pub fn with_rucksack_packer(mut self, packer: Arc<dyn RucksackPacker>) -> Self {
        self.packer = Some(packer);
        self
    }

    /// Sets the per-operation socket timeout of requests (the event stream has none).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        let opts = HttpOptions {
            timeout: Some(timeout),
            connect_timeout: timeout,
            ..self.http.options().clone()
        };
        self.http = HttpClient::with_cancel(
            self.http.endpoint().clone(),
            opts,
            self.http.cancel_set().clone(),
        );
        self
    }

    /// Sets the engine's PID, reported by [`EngineClient::info`].
    pub fn with_pid(mut self, pid: u32) -> Self {
        self.pid = Some(pid);
        self
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> String {
        self.http.endpoint().to_string()
    }

    /// Forgets the negotiated version after a connection failure.
    fn check<T>(&self, r: Result<T>) -> Result<T> {
        if let Err(Error::Connection { .. }) = &r {
            *self.negotiated.lock() = None;
            self.http.drop_idle();
        }
        r
    }

    fn negotiated(&self) -> Result<Negotiated> {
        if let Some((n, _)) = self.negotiated.lock().clone() {
            return Ok(n);
        }
        let n = self.check(self.negotiate())?;
        *self.negotiated.lock() = Some((n.clone(), Reported::No));
        Ok(n)
    }

    fn negotiate(&self) -> Result<Negotiated> {
        let ping = self.http.get("/_ping")?;
        if !ping.is_success() {
            return Err(Error::protocol(
                "docker",
                format!(
                    "{} does not look like a Docker API: GET /_ping answered {} ({})",
                    self.endpoint(),
                    ping.status(),
                    ping.error_message()
                ),
            ));
        }
        let server = match ping.header("api-version") {
            Some(v) => parse_version(v).ok_or_else(|| {
                Error::protocol("docker", format!("unparsable API-Version header {v:?}"))
            })?,
            None => FALLBACK_VERSION,
        };
        let (major, minor) = server.min(API_VERSION);
        let kind = if ping.header("libpod-api-version").is_some()
            || ping
                .header("server")
                .is_some_and(|s| s.starts_with("Libpod"))
        {
            EngineKind::Podman
        } else {
            EngineKind::Docker
        };
        let prefix = format!("/v{major}.{minor}");
        let info = self.get_json(&format!("{prefix}/info"), "info")?;
        let id = info
            .get("ID")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let version = info
            .get("ServerVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        Ok(Negotiated {
            prefix,
            engine: Arc::new(EngineRef { kind, id }),
            version,
        })
    }

    /// GET returning the parsed JSON of a 2xx response.
    fn get_json(&self, path: &str, what: &str) -> Result<Value> {
        let r = self.http.get(path)?;
        if !r.is_success() {
            return Err(status_error(&r));
        }
        parse_json(&r.body, what)
    }

    fn inspect_with(&self, n: &Negotiated, id: &str) -> Result<Inspection> {
        // Ids and names are [A-Za-z0-9][A-Za-z0-9_.-]*; anything else cannot name a
        // container, and must not reach the path (the engine's router cleans "../").
        let valid = id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !valid {
            return Err(Error::NotFound { id: id.to_string() });
        }
        let r = self.http.get(&format!(
            "{}/containers/{}/json",
            n.prefix,
            percent_encode(id)
        ))?;
        if r.status() == 404 {
            return Err(Error::NotFound { id: id.to_string() });
        }
        if !r.is_success() {
            return Err(status_error(&r));
        }
        let v = parse_json(&r.body, "container inspect")?;
        container_from_inspect(&v, id, &n.engine, self.packer.as_ref())
    }

    fn list_ids(&self, n: &Negotiated) -> Result<Vec<String>> {
        let filters = percent_encode(r#"{"status":["running","paused"]}"#);
        let r = self
            .http
            .get(&format!("{}/containers/json?filters={filters}", n.prefix))?;
        if !r.is_success() {
            return Err(status_error(&r));
        }
        list_ids(&r.body)
    }

    /// Inspects `ids` on a few threads; skips containers that are no longer alive.
    fn inspect_all(&self, n: &Negotiated, ids: &[String]) -> Result<Vec<Container>> {
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let workers = INSPECT_WORKERS.min(ids.len());
        let mut results: Vec<(usize, Result<Inspection>)> = Vec::with_capacity(ids.len());
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    s.spawn(|| {
                        let mut out = Vec::new();
                        while !failed.load(Ordering::Relaxed) {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(id) = ids.get(i) else { break };
                            let r = self.inspect_with(n, id);
                            if matches!(&r, Err(e) if !e.is_not_alive()) {
                                failed.store(true, Ordering::Relaxed);
                            }
                            out.push((i, r));
                        }
                        out
                    })
                })
                .collect();
            for h in handles {
                match h.join() {
                    Ok(out) => results.extend(out),
                    Err(_) => results.push((
                        usize::MAX,
                        Err(Error::protocol("docker", "an inspect worker panicked")),
                    )),
                }
            }
        });
        results.sort_by_key(|(i, _)| *i);
        let mut alive = Vec::with_capacity(results.len());
        for (_, r) in results {
            match r {
                Ok(Inspection::Alive(c)) => alive.push(c),
                // Exited between the list and its inspect: its die event tells.
                Ok(Inspection::Exited(..)) => {}
                Err(e) if e.is_not_alive() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(alive)
    }

    fn open_events(&self, n: &Negotiated) -> Result<Box<dyn EventStream>> {
        let filters = percent_encode(
            r#"{"type":["container"],"event":["start","die","died","pause","unpause","oom"]}"#,
        );
        let body = self
            .http
            .stream(&format!("{}/events?filters={filters}", n.prefix))?;
        if !(200..300).contains(&body.head().status) {
            let status = body.head().status;
            let text = body.into_bytes(64 * 1024).unwrap_or_default();
            return Err(Error::Status {
                code: u32::from(status),
                message: error_message(&text),
            });
        }
        Ok(Box::new(EventDecoder::new(body, BodyReader::error)))
    }
}

impl EngineClient for DockerClient {
    fn info(&self) -> Result<EngineInfo> {
        // A negotiation not yet reported (typically the one the event stream just made on
        // (re)connecting) is current; otherwise a fresh one doubles as reachability check
        // and picks up engine changes. This saves the second /_ping + /info round trips
        // (~7 ms on dockerd) before the first sync.
        let unreported = match &mut *self.negotiated.lock() {
            Some((n, r @ Reported::No)) => {
                *r = Reported::Yes;
                Some(n.clone())
            }
            _ => None,
        };
        let n = match unreported {
            Some(n) => n,
            None => {
                let n = self.check(self.negotiate())?;
                *self.negotiated.lock() = Some((n.clone(), Reported::Yes));
                n
            }
        };
        Ok(EngineInfo {
            id: n.engine.id.clone(),
            kind: n.engine.kind,
            version: n.version.clone(),
            api_path: self.endpoint(),
            pid: self.pid,
            mode: String::new(),
        })
    }

    fn list(&self) -> Result<Vec<Container>> {
        let n = self.negotiated()?;
        let ids = self.check(self.list_ids(&n))?;
        self.check(self.inspect_all(&n, &ids))
    }

    fn inspect(&self, id: &str) -> Result<Inspection> {
        let n = self.negotiated()?;
        self.check(self.inspect_with(&n, id))
    }

    fn events(&self) -> Result<Box<dyn EventStream>> {
        let n = self.negotiated()?;
        self.check(self.open_events(&n))
    }

    fn cancel(&self) {
        self.http.cancel();
    }
}

/// Parses `"1.41"`.
fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn status_error(r: &Response) -> Error {
    Error::Status {
        code: u32::from(r.status()),
        message: r.error_message(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("1.41"), Some((1, 41)));
        assert_eq!(parse_version(" 1.9 "), Some((1, 9)));
        assert_eq!(parse_version("1"), None);
        assert_eq!(parse_version("x.y"), None);
        assert_eq!((1, 9).min(API_VERSION), (1, 9));
        assert!((1, 52) > API_VERSION && (1, 100) > (1, 52));
    }

    #[test]
    fn new_is_lazy_and_checks_the_address() {
        let c = DockerClient::new(Some("unix:///nonexistent/docker.sock")).unwrap();
        assert!(matches!(c.list(), Err(Error::Connection { .. })));
        assert!(matches!(
            DockerClient::new(Some("ftp://x")),
            Err(Error::InvalidEndpoint { .. })
        ));
    }
}
