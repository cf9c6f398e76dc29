//! [`DockerClient`]: the Docker/Podman engine adaptor.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;

use super::json::{list_ids, parse_json, parse_json_shaped, INSPECT};

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

/// What the engine told us when we first met it: `/_ping` gives the API version and the
/// engine kind, `/info` the identity (fetched later, concurrently with the first listing).
#[derive(Debug, Clone)]
struct Negotiated {
    /// Path prefix, e.g. `/v1.41`.
    prefix: String,
    /// [`DOCKER`] or [`PODMAN`], from the `/_ping` headers.
    kind: EngineKind,
    /// Counts negotiations, so that an identity fetched for an older one is not kept.
    generation: u64,
    /// From `/info`, once known.
    identity: Option<Identity>,
}

/// The engine's identity, from `GET /info`.
#[derive(Debug, Clone)]
struct Identity {
    engine: Arc<EngineRef>,
    version: String,
}

/// A client of a Docker (or Podman, via its Docker-compatible API) engine.
///
/// Construction never connects: the first call does, so a client can be created before
/// the engine runs. The API version is negotiated with `GET /_ping` on first use, after
/// connection failures (the engine may have been replaced), and for every
/// [`info`](EngineClient::info) but the first after a negotiation (a resync must see a
/// replaced engine even when its event stream ended cleanly); the engine type is
/// [`EngineKind::Podman`] when the server is Libpod (`Libpod-Api-Version` or `Server: Libpod/…`),
/// [`EngineKind::Docker`] otherwise. The identity (`GET /info`: `ID`, `ServerVersion`; ~7 ms on dockerd,
/// 125–255 ms on Podman 4.3) is fetched on a thread of its own while
/// [`list`](EngineClient::list) lists and inspects, so it is off a listing's critical path
/// (Podman's comes with its `/_ping` answer; [`without_identity`](Self::without_identity)
/// skips it). A first listing writes `/_ping` and the listing together (one round trip);
/// its inspects are pipelined on a few keep-alive connections
/// ([`with_pipeline_depth`](Self::with_pipeline_depth)).
pub struct DockerClient {
    http: HttpClient,
    packer: Option<Arc<dyn RucksackPacker>>,
    pid: Option<u32>,
    /// The last negotiation, and whether an `info()` has reported it yet.
    negotiated: Mutex<Option<(Negotiated, Reported)>>,
    /// Number of negotiations so far.
    generations: AtomicU64,
    /// On how many connections `list` inspects; `None`: [`inspect_connections`].
    inspect_concurrency: Option<usize>,
    /// How many inspects `list` keeps in flight per connection; `None`: [`PIPELINE_DEPTH`].
    pipeline_depth: Option<usize>,
    /// False: `list` and `inspect` leave the engine's id empty rather than ask `/info`.
    identify: bool,
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
            generations: AtomicU64::new(0),
            inspect_concurrency: None,
            pipeline_depth: None,
            identify: true,
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

    /// Sets on how many connections [`list`](EngineClient::list) inspects (at least 1;
    /// one thread each, the calling thread being one of them). The default: see
    /// [`with_pipeline_depth`](Self::with_pipeline_depth).
    pub fn with_inspect_concurrency(mut self, n: usize) -> Self {
        self.inspect_concurrency = Some(n.max(1));
        self
    }

    /// Sets how many inspects [`list`](EngineClient::list) keeps in flight on each
    /// connection (HTTP/1.1 pipelining; at least 1, which is one request per round trip).
    ///
    /// The engine answers a connection's requests one after another, with no round trip
    /// in between; it works on its connections in parallel. The default: 4 requests deep,
    /// on as many connections as the host has cores for Docker (1–8) and four times as
    /// many for Podman (4–32), fewer for fewer containers.
    pub fn with_pipeline_depth(mut self, n: usize) -> Self {
        self.pipeline_depth = Some(n.max(1));
        self
    }

    /// Makes [`list`](EngineClient::list) and [`inspect`](EngineClient::inspect) leave
    /// the containers' [`EngineRef::id`] empty when the engine's identity is not known yet,
    /// instead of asking `GET /info` for it; [`info`](EngineClient::info) still asks. For
    /// one-shot listings that show no engine id (the CLI's `ps`): dockerd 20.10 runs
    /// `runc --version` and `docker-init --version` for every `/info`, which costs it as
    /// much CPU as listing and inspecting 50 containers (8 vs 7.5 ms, 2 cores). Podman's
    /// identity comes with its `/_ping` answer, so it keeps its id either way.
    pub fn without_identity(mut self) -> Self {
        self.identify = false;
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

    /// The Docker API version in use: the server's `API-Version` (from `GET /_ping`) capped
    /// at [`API_VERSION`], e.g. `(1, 45)` with docker 26, `(1, 47)` with docker 28 (API
    /// 1.51), `(1, 41)` with podman 4.3 and 5.4, `(1, 44)` with podman 5.8. `None` until a
    /// call has negotiated it, and again after a connection failure.
    pub fn api_version(&self) -> Option<(u32, u32)> {
        let n = self.negotiated.lock();
        let (n, _) = n.as_ref()?;
        parse_version(n.prefix.strip_prefix("/v")?)
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
        Ok(self.adopt(n))
    }

    fn negotiate(&self) -> Result<Negotiated> {
        let ping = self.http.get("/_ping")?;
        self.negotiation(&ping)
    }

    /// Records negotiation `n` unless another thread negotiated meanwhile; the one kept.
    fn adopt(&self, n: Negotiated) -> Negotiated {
        let mut slot = self.negotiated.lock();
        // Keep the first (and its identity).
        match &*slot {
            Some((cur, _)) => cur.clone(),
            None => {
                *slot = Some((n.clone(), Reported::No));
                n
            }
        }
    }

    /// The negotiation a `GET /_ping` answer gives.
    fn negotiation(&self, ping: &Response) -> Result<Negotiated> {
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
        // Podman's compat /info invents a new UUID as `ID` on every call and reports the
        // Podman version, which `/_ping` already says (`Libpod-Api-Version`, or the
        // `Server: Libpod/4.3.1 (linux)` header): no /info (125-255 ms on Podman 4.3,
        // serialized with the inspects) is needed at all.
        let identity = if kind == EngineKind::Podman {
            podman_version(ping).map(|version| Identity {
                engine: Arc::new(EngineRef {
                    kind,
                    id: random_uuid(),
                }),
                version,
            })
        } else {
            None
        };
        Ok(Negotiated {
            prefix: format!("/v{major}.{minor}"),
            kind,
            generation: self.generations.fetch_add(1, Ordering::Relaxed) + 1,
            identity,
        })
    }

    /// `GET /info`: the engine's identity.
    fn identify(&self, n: &Negotiated) -> Result<Identity> {
        let info = self.get_json(&format!("{}/info", n.prefix), "info")?;
        let text = |key: &str| {
            info.get(key)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        Ok(Identity {
            engine: Arc::new(EngineRef {
                kind: n.kind,
                id: text("ID"),
            }),
            version: text("ServerVersion"),
        })
    }

    /// Records the identity found for negotiation `n`, unless a newer negotiation (or a
    /// connection failure) replaced it meanwhile.
    fn remember(&self, n: &Negotiated, identity: &Identity) {
        if let Some((cur, _)) = &mut *self.negotiated.lock() {
            if cur.generation == n.generation {
                cur.identity = Some(identity.clone());
            }
        }
    }

    /// The identity of negotiation `n`, asking `/info` when it is not known yet.
    fn identity(&self, n: &Negotiated) -> Result<Identity> {
        if let Some(i) = &n.identity {
            return Ok(i.clone());
        }
        let i = self.check(self.identify(n))?;
        self.remember(n, &i);
        Ok(i)
    }

    /// Lists and inspects; `engine` is the identity the containers get.
    fn list_with(&self, n: &Negotiated, engine: &Arc<EngineRef>) -> Result<Vec<Arc<Container>>> {
        let ids = self.check(self.list_ids(n))?;
        self.check(self.inspect_all(n, engine, ids))
    }

    /// GET returning the parsed JSON of a 2xx response.
    fn get_json(&self, path: &str, what: &str) -> Result<Value> {
        let r = self.http.get(path)?;
        if !r.is_success() {
            return Err(status_error(&r));
        }
        parse_json(&r.body, what)
    }

    fn inspect_with(
        &self,
        n: &Negotiated,
        engine: &Arc<EngineRef>,
        id: &str,
    ) -> Result<Inspection> {
        let path = inspect_path(n, id)?;
        let r = self.http.get(&path)?;
        let body = inspect_body(r, id)?;
        self.decode_inspect(&body, engine, id)
    }

    /// The container in an inspect answer.
    fn decode_inspect(&self, body: &[u8], engine: &Arc<EngineRef>, id: &str) -> Result<Inspection> {
        // The packer gets the whole tree; without one, only what a container keeps is built.
        let v = match &self.packer {
            Some(_) => parse_json(body, "container inspect")?,
            None => parse_json_shaped(body, INSPECT, "container inspect")?,
        };
        container_from_inspect(&v, id, engine, self.packer.as_ref())
    }

    fn list_ids(&self, n: &Negotiated) -> Result<Vec<String>> {
        let r = self.http.get(&format!("{}{LIST_PATH}", n.prefix))?;
        if !r.is_success() {
            return Err(status_error(&r));
        }
        list_ids(&r.body)
    }

    /// Negotiates and lists in one round trip: `GET /_ping` and the unversioned listing
    /// (the server's own API version; only the ids are read from it, which every version
    /// has) written together on one connection, answered in order.
    fn negotiate_and_list(
        &self,
        on_ping: &mut dyn FnMut(&Negotiated),
    ) -> Result<(Negotiated, Vec<String>)> {
        let mut requests = ["/_ping".to_string(), LIST_PATH.to_string()].into_iter();
        let mut negotiated: Option<Result<Negotiated>> = None;
        let mut list: Option<Response> = None;
        self.http.get_pipelined(
            2,
            || requests.next().map(|p| ((), p)),
            |(), r| match negotiated {
                None => {
                    let n = self.negotiation(&r).map(|n| self.adopt(n));
                    if let Ok(n) = &n {
                        on_ping(n);
                    }
                    let ok = n.is_ok();
                    negotiated = Some(n);
                    ok
                }
                Some(_) => {
                    list = Some(r);
                    true
                }
            },
        )?;
        let missing = || {
            Error::protocol(
                "docker",
                format!("{}: no answer to the listing", self.endpoint()),
            )
        };
        let n = negotiated.ok_or_else(missing)??;
        let list = list.ok_or_else(missing)?;
        if !list.is_success() {
            return Err(status_error(&list));
        }
        Ok((n, list_ids(&list.body)?))
    }

    /// Inspects `ids` with HTTP/1.1 pipelining on a few keep-alive connections (one thread
    /// each, the calling thread being one of them); skips containers that are no longer
    /// alive.
    ///
    /// The pipelines only fetch; the calling thread decodes every answer as it comes. So
    /// everything that outlives the listing (the containers' strings and label maps) is
    /// allocated by one thread, and the fetching threads' allocator arenas hold only answers
    /// in flight: decoded on the fetching threads, the containers were scattered over their
    /// arenas between freed bodies and JSON trees, which glibc kept (issue 16: ~2.5 KiB of
    /// anonymous memory per container beyond the live heap).
    fn inspect_all(
        &self,
        n: &Negotiated,
        engine: &Arc<EngineRef>,
        ids: Vec<String>,
    ) -> Result<Vec<Arc<Container>>> {
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let count = ids.len();
        let (connections, depth) = self.inspect_plan(n.kind, count);
        // Each id is read to ask for its inspect and then taken by the decoding (the
        // container keeps it), so the listing's id strings are not left freed among the
        // containers (~64 KB per 1,000 containers, issue 16).
        let ids = Mutex::new(ids);
        // One connection's pipeline: hands each answer's body (or why there is none) to
        // `sink`; ends with how the pipeline ended.
        let fetch = |sink: &mut dyn FnMut(usize, Result<Vec<u8>>)| -> Result<()> {
            let mut invalid = Vec::new();
            let ended = self.http.get_pipelined(
                depth,
                || loop {
                    if failed.load(Ordering::Relaxed) {
                        return None;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let path = inspect_path(n, ids.lock().get(i)?);
                    match path {
                        Ok(path) => return Some((i, path)),
                        Err(e) => invalid.push((i, e)),
                    }
                },
                |i, r| {
                    let body = inspect_body(r, ids.lock().get(i).map_or("", String::as_str));
                    let hard = matches!(&body, Err(e) if !e.is_not_alive());
                    if hard {
                        failed.store(true, Ordering::Relaxed);
                    }
                    sink(i, body);
                    !hard
                },
            );
            if ended.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            for (i, e) in invalid {
                sink(i, Err(e));
            }
            ended
        };
        // What each answer leaves: an alive container, wrapped in the `Arc` a watcher keeps
        // as soon as it is built (with its index in `ids`, to restore the listing's order),
        // or the first hard error (by index). No per-answer results vector: at 1,000
        // containers one of 208-byte results and one of 176-byte containers were ~380 KB
        // that the allocator kept after the listing (issue 16).
        let mut alive: Vec<(usize, Arc<Container>)> = Vec::new();
        let mut hard: Option<(usize, Error)> = None;
        let mut answered = 0usize;
        let mut ends: Vec<Result<()>> = Vec::with_capacity(connections);
        let mut keep = |i: usize, body: Result<Vec<u8>>| {
            answered += 1;
            let mut id = ids
                .lock()
                .get_mut(i)
                .map(std::mem::take)
                .unwrap_or_default();
            match body.and_then(|b| self.decode_inspect(&b, engine, &id)) {
                Ok(Inspection::Alive(mut c)) => {
                    if c.id == id {
                        c.id = std::mem::take(&mut id);
                    }
                    alive.push((i, Arc::new(c)));
                }
                // Exited between the list and its inspect: its die event tells.
                Ok(Inspection::Exited(..)) => {}
                Err(e) if e.is_not_alive() => {}
                Err(e) => {
                    failed.store(true, Ordering::Relaxed);
                    if hard.as_ref().is_none_or(|(first, _)| i < *first) {
                        hard = Some((i, e));
                    }
                }
            }
        };
        std::thread::scope(|s| {
            // Bounded: at most a few bodies wait for this thread at any time.
            let (tx, rx) = crossbeam_channel::bounded::<(usize, Result<Vec<u8>>)>(
                connections.saturating_mul(depth),
            );
            let handles: Vec<_> = (1..connections)
                .map(|_| {
                    let tx = tx.clone();
                    let fetch = &fetch;
                    s.spawn(move || {
                        fetch(&mut |i, b| {
                            let _ = tx.send((i, b));
                        })
                    })
                })
                .collect();
            drop(tx);
            let own = fetch(&mut |i, b| {
                keep(i, b);
                while let Ok((i, b)) = rx.try_recv() {
                    keep(i, b);
                }
            });
            // Until every other pipeline has ended (their senders are dropped then).
            for (i, b) in rx.iter() {
                keep(i, b);
            }
            ends.push(own);
            for h in handles {
                ends.push(h.join().unwrap_or_else(|_| {
                    Err(Error::protocol("docker", "an inspect worker panicked"))
                }));
            }
        });
        for ended in ends {
            ended?;
        }
        if let Some((_, e)) = hard {
            return Err(e);
        }
        if answered != count {
            return Err(Error::protocol(
                "docker",
                format!("{answered} of {count} inspects answered"),
            ));
        }
        alive.sort_unstable_by_key(|(i, _)| *i);
        Ok(alive.into_iter().map(|(_, c)| c).collect())
    }

    /// How many connections a listing of `count` containers inspects on, and how many
    /// inspects each keeps in flight.
    fn inspect_plan(&self, kind: EngineKind, count: usize) -> (usize, usize) {
        let connections = self
            .inspect_concurrency
            .unwrap_or_else(|| inspect_connections(kind));
        let depth = self.pipeline_depth.unwrap_or(PIPELINE_DEPTH);
        // Few containers: fewer connections, and the pipelines shortened so that every
        // connection gets a share (the engine works on its connections in parallel).
        let connections = connections.min(count).max(1);
        (connections, depth.min(count.div_ceil(connections)).max(1))
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
        // (re)connecting) is current: only its identity may still be missing (a listing
        // fetches it concurrently). Otherwise a fresh negotiation doubles as reachability
        // check and picks up engine changes.
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
        let i = self.identity(&n)?;
        Ok(EngineInfo {
            id: i.engine.id.clone(),
            kind: n.kind,
            version: i.version,
            api_path: self.endpoint(),
            pid: self.pid,
            mode: String::new(),
        })
    }

    fn list(&self) -> Result<Vec<Arc<Container>>> {
        let cached = self.negotiated.lock().as_ref().map(|(n, _)| n.clone());
        std::thread::scope(|s| {
            // The identity, when not known yet: `/info` on a thread of its own while the
            // listing and the inspects run (dockerd's /info costs it as much CPU as a
            // listing of 50 containers, and it runs external commands).
            let mut info = None;
            let mut ask_info = |n: &Negotiated| {
                if n.identity.is_none() && self.identify {
                    let n = n.clone();
                    info = std::thread::Builder::new()
                        .name("whalewatch-info".into())
                        .spawn_scoped(s, move || self.identity(&n))
                        .ok();
                }
            };
            let (n, ids) = match cached {
                Some(n) => {
                    ask_info(&n);
                    (n, None)
                }
                // Not negotiated yet: `/_ping` and the listing in one round trip; `/info`
                // starts as soon as the ping's answer is in.
                None => {
                    let (n, ids) = self.check(self.negotiate_and_list(&mut ask_info))?;
                    (n, Some(ids))
                }
            };
            let mut identity = || match info.take() {
                Some(h) => h.join().unwrap_or_else(|_| {
                    Err(Error::protocol("docker", "the /info thread panicked"))
                }),
                // Known already, or no thread to be had: ask here.
                None => self.identity(&n),
            };
            // A packer sees each container as it is built: with its engine's identity.
            let known = match (&n.identity, &self.packer) {
                (Some(i), _) => Some(i.clone()),
                (None, _) if !self.identify => None,
                (None, Some(_)) => Some(identity()?),
                (None, None) => None,
            };
            let provisional = Arc::new(EngineRef {
                kind: n.kind,
                id: String::new(),
            });
            let engine = known.as_ref().map_or(&provisional, |i| &i.engine);
            let listed = match ids {
                Some(ids) => self.check(self.inspect_all(&n, engine, ids)),
                None => self.list_with(&n, engine),
            };
            if known.is_some() || !self.identify {
                return listed;
            }
            let identity = identity();
            let mut listed = listed?;
            let identity = identity?;
            for c in &mut listed {
                Arc::make_mut(c).engine = identity.engine.clone();
            }
            Ok(listed)
        })
    }

    fn inspect(&self, id: &str) -> Result<Inspection> {
        let n = self.negotiated()?;
        let engine = match &n.identity {
            None if !self.identify => Arc::new(EngineRef {
                kind: n.kind,
                id: String::new(),
            }),
            _ => self.identity(&n)?.engine,
        };
        self.check(self.inspect_with(&n, &engine, id))
    }

    fn events(&self) -> Result<Box<dyn EventStream>> {
        let n = self.negotiated()?;
        self.check(self.open_events(&n))
    }

    fn cancel(&self) {
        self.http.cancel();
    }
}

/// How many inspects a listing keeps in flight on each connection by default.
const PIPELINE_DEPTH: usize = 4;

/// The listing of alive containers, after the version prefix.
const LIST_PATH: &str =
    "/containers/json?filters=%7B%22status%22%3A%5B%22running%22%2C%22paused%22%5D%7D";

/// On how many connections a listing inspects by default.
fn inspect_connections(kind: EngineKind) -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    // (std reads the cgroup's CPU quota files on every call.)
    let cores = *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if kind == EngineKind::Podman {
        (4 * cores).clamp(4, 32)
    } else {
        cores.clamp(1, 8)
    }
}

/// The inspect path of container `id`. Ids and names are `[A-Za-z0-9][A-Za-z0-9_.-]*`;
/// anything else cannot name a container, and must not reach the path (the engine's
/// router cleans `../`): [`Error::NotFound`].
fn inspect_path(n: &Negotiated, id: &str) -> Result<String> {
    let valid = id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if !valid {
        return Err(Error::NotFound { id: id.to_string() });
    }
    Ok(format!(
        "{}/containers/{}/json",
        n.prefix,
        percent_encode(id)
    ))
}

/// Podman's version from its `/_ping` headers: `Libpod-Api-Version` (the Podman version
/// since 4.0), else the `Server: Libpod/4.3.1 (linux)` product token.
fn podman_version(ping: &Response) -> Option<String> {
    let plausible = |v: &str| {
        !v.is_empty()
            && v.len() <= 64
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'~'))
    };
    if let Some(v) = ping.header("libpod-api-version").map(str::trim) {
        if plausible(v) {
            return Some(v.to_string());
        }
    }
    let server = ping.header("server")?.trim().strip_prefix("Libpod/")?;
    let v = server.split_whitespace().next()?;
    plausible(v).then(|| v.to_string())
}

/// A random (version 4) UUID: the engine ID of a Podman negotiation, as Podman's own
/// compat `/info` makes one up for every call.
fn random_uuid() -> String {
    use std::hash::{BuildHasher, Hasher};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let word = |i: u64| {
        // RandomState is seeded from the OS once per thread and stepped per instance.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(i);
        h.write_u128(nanos);
        h.write_u32(std::process::id());
        u128::from(h.finish())
    };
    let b = (word(0) << 64) | word(1);
    let b = (b & !(0xF << 76)) | (0x4 << 76); // version 4
    let b = (b & !(0x3 << 62)) | (0x2 << 62); // RFC 4122 variant
    let h = format!("{b:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Parses `"1.41"`.
fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (a, b) = v.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The body of an inspect answer for container `id`: 404 is [`Error::NotFound`], any other
/// answer but 2xx a status error.
fn inspect_body(r: Response, id: &str) -> Result<Vec<u8>> {
    if r.status() == 404 {
        return Err(Error::NotFound { id: id.to_string() });
    }
    if !r.is_success() {
        return Err(status_error(&r));
    }
    Ok(r.body)
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
    fn podman_identity_from_the_ping_headers() {
        let ping = |headers: &[(&str, &str)]| Response {
            head: crate::http::head::ResponseHead {
                status: 200,
                reason: "OK".into(),
                minor_version: 1,
                headers: headers
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
            },
            body: b"OK".to_vec(),
        };
        let both = ping(&[
            ("Libpod-Api-Version", "4.3.1"),
            ("Server", "Libpod/9.9 (linux)"),
        ]);
        assert_eq!(podman_version(&both).as_deref(), Some("4.3.1"));
        let server = ping(&[("Server", "Libpod/5.4.2 (linux)")]);
        assert_eq!(podman_version(&server).as_deref(), Some("5.4.2"));
        assert_eq!(podman_version(&ping(&[("Server", "Docker/20.10")])), None);
        assert_eq!(
            podman_version(&ping(&[("Libpod-Api-Version", "4 3")])),
            None
        );
        assert_eq!(podman_version(&ping(&[])), None);
        let (a, b) = (random_uuid(), random_uuid());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.as_bytes()[14], b'4');
        assert!(matches!(a.as_bytes()[19], b'8' | b'9' | b'a' | b'b'), "{a}");
        assert!(a.split('-').map(str::len).eq([8, 4, 4, 4, 12]));
    }

    #[test]
    fn the_listing_path_filters_running_and_paused() {
        let filters = percent_encode(r#"{"status":["running","paused"]}"#);
        assert_eq!(LIST_PATH, format!("/containers/json?filters={filters}"));
    }

    #[test]
    fn inspect_plans_share_the_containers_among_the_connections() {
        let c = DockerClient::new(Some("/x.sock"))
            .unwrap()
            .with_inspect_concurrency(4)
            .with_pipeline_depth(8);
        assert_eq!(c.inspect_plan(EngineKind::Docker, 1), (1, 1));
        assert_eq!(c.inspect_plan(EngineKind::Docker, 3), (3, 1));
        assert_eq!(c.inspect_plan(EngineKind::Docker, 10), (4, 3));
        assert_eq!(c.inspect_plan(EngineKind::Podman, 1000), (4, 8));
        let c = DockerClient::new(Some("/x.sock")).unwrap();
        let (conns, depth) = c.inspect_plan(EngineKind::Docker, 1000);
        assert!((1..=8).contains(&conns) && depth == PIPELINE_DEPTH);
        let (conns, _) = c.inspect_plan(EngineKind::Podman, 1000);
        assert!((4..=32).contains(&conns));
    }

    /// A fake dockerd on a Unix socket: answers pipelined requests in order (`/_ping`,
    /// the listing of `n` containers `c0`..`c{n-1}`, their inspects, `/info`), counting
    /// each path's requests. Ends with the test process.
    fn fake_engine(n: usize) -> (String, Arc<Mutex<Vec<String>>>) {
        use std::io::{Read, Write};
        use std::os::unix::net::UnixListener;
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ww-fake-dockerd-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("docker.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(mut s) = s else { return };
                let log = log.clone();
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_string();
                            buf.drain(..end + 4);
                            let path = head.split(' ').nth(1).unwrap_or("").to_string();
                            log.lock().push(path.clone());
                            let body = if path == "/_ping" {
                                "OK".to_string()
                            } else if path.ends_with("/info") {
                                r#"{"ID":"ENGINE-ID","ServerVersion":"20.10"}"#.to_string()
                            } else if path.starts_with("/containers/json")
                                || path.starts_with("/v1.41/containers/json")
                            {
                                let ids: Vec<String> =
                                    (0..n).map(|i| format!(r#"{{"Id":"c{i}"}}"#)).collect();
                                format!("[{}]", ids.join(","))
                            } else {
                                let id = path.split('/').nth(3).unwrap_or("");
                                format!(
                                    r#"{{"Id":"{id}","Name":"/{id}","State":{{"Pid":7,"StartedAt":"2026-01-01T00:00:00Z"}},"Config":{{"Image":"busybox"}}}}"#
                                )
                            };
                            let answer = format!(
                                "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if s.write_all(answer.as_bytes()).is_err() {
                                return;
                            }
                        }
                        match s.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(k) => buf.extend_from_slice(&chunk[..k]),
                        }
                    }
                });
            }
        });
        (path.to_string_lossy().to_string(), seen)
    }

    #[test]
    fn a_listing_pipelines_its_requests_and_asks_info_once_or_not_at_all() {
        let count = |seen: &Arc<Mutex<Vec<String>>>, f: &dyn Fn(&str) -> bool| {
            seen.lock().iter().filter(|p| f(p)).count()
        };
        let (path, seen) = fake_engine(23);
        let c = DockerClient::new(Some(&path))
            .unwrap()
            .with_inspect_concurrency(3)
            .with_pipeline_depth(4);
        let listed = c.list().unwrap();
        let ids: Vec<&str> = listed.iter().map(|c| c.id.as_str()).collect();
        let want: Vec<String> = (0..23).map(|i| format!("c{i}")).collect();
        assert_eq!(ids, want);
        assert!(listed
            .iter()
            .all(|c| c.engine.id == "ENGINE-ID" && c.pid == 7));
        assert_eq!(c.api_version(), Some((1, 41)));
        assert_eq!(count(&seen, &|p| p == "/_ping"), 1);
        assert_eq!(count(&seen, &|p| p.starts_with("/containers/json?")), 1);
        assert_eq!(count(&seen, &|p| p.ends_with("/info")), 1);
        assert_eq!(count(&seen, &|p| p.starts_with("/v1.41/containers/c")), 23);
        // Negotiated and identified: the next listing asks neither again.
        assert_eq!(c.list().unwrap().len(), 23);
        assert_eq!(count(&seen, &|p| p == "/_ping"), 1);
        assert_eq!(count(&seen, &|p| p.ends_with("/info")), 1);
        assert_eq!(
            count(&seen, &|p| p.starts_with("/v1.41/containers/json?")),
            1
        );

        let first = path;
        let (path, seen) = fake_engine(5);
        let c = DockerClient::new(Some(&path)).unwrap().without_identity();
        let listed = c.list().unwrap();
        assert_eq!(listed.len(), 5);
        assert!(listed.iter().all(|c| c.engine.id.is_empty()));
        assert!(matches!(c.inspect("c1"), Ok(Inspection::Alive(x)) if x.engine.id.is_empty()));
        assert_eq!(count(&seen, &|p| p.ends_with("/info")), 0);
        // info() still asks.
        assert_eq!(c.info().unwrap().id, "ENGINE-ID");
        assert_eq!(count(&seen, &|p| p.ends_with("/info")), 1);
        for p in [&first, &path] {
            if let Some(dir) = std::path::Path::new(p).parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
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
