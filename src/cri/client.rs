//! The CRI engine client.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use protobuf::{EnumOrUnknown, Message, MessageField};

use crate::container::{Container, EngineRef};
use crate::engine::{
    CancelSet, EngineClient, EngineInfo, EngineKind, EventStream, ExitStatus, Inspection,
    RucksackPacker,
};
use crate::error::{Error, GrpcCode, Result};
use crate::grpc::Channel;
use crate::proto::cri_api::{
    Container as ProtoContainer, ContainerFilter, ContainerState, ContainerStateValue,
    ContainerStatusRequest, ContainerStatusResponse, ListContainersRequest, ListContainersResponse,
    ListPodSandboxRequest, ListPodSandboxResponse, PodSandbox, PodSandboxFilter,
    PodSandboxMetadata, PodSandboxState, PodSandboxStateValue, PodSandboxStatusRequest,
    PodSandboxStatusResponse, VersionRequest, VersionResponse,
};

use super::convert::{self, PodMeta};
use super::events::{self, ModeCell};
use super::mode::EventMode;
use super::native;

pub(crate) const SERVICE: &str = "/runtime.v1.RuntimeService/";

/// Deadline of every unary call.
const CALL_DEADLINE: Duration = Duration::from_secs(30);

/// Verbose status calls in flight at once during a listing.
const STATUS_WORKERS: usize = 4;

/// Well-known CRI sockets, tried in this order when neither an argument nor
/// `CONTAINER_RUNTIME_ENDPOINT` names one.
pub const DEFAULT_ENDPOINTS: [&str; 2] = ["/run/containerd/containerd.sock", "/run/crio/crio.sock"];

/// Default interval of the relisting fallback event source.
pub const DEFAULT_RELIST_INTERVAL: Duration = Duration::from_secs(1);

/// The raw data handed to a [`RucksackPacker`]: the verbose status `info` map
/// (`HashMap<String, String>`; `info["info"]` is the runtime's JSON).
pub type RawInfo = HashMap<String, String>;

/// A client of a CRI runtime service (containerd's CRI plugin, cri-o).
///
/// Lists the running containers and the ready pod sandboxes; sandboxes are containers too
/// (named by their id, marked with [`SANDBOX_LABEL`](super::SANDBOX_LABEL)). See the
/// [module documentation](super) for the label scheme and the event modes.
pub struct CriClient {
    path: PathBuf,
    pub(crate) rpc: Rpc,
    pub(crate) interval: Duration,
    packer: Option<Arc<dyn RucksackPacker>>,
    pid: Option<u32>,
    engine: Mutex<Option<Arc<EngineRef>>>,
    /// The event mode: `None` until [`info`](EngineClient::info) or
    /// [`events`](EngineClient::events) asked the runtime's version (or a builder set it).
    pub(crate) mode: ModeCell,
}

/// The first existing of [`DEFAULT_ENDPOINTS`], else the first of them.
fn default_endpoint() -> String {
    DEFAULT_ENDPOINTS
        .iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or(&DEFAULT_ENDPOINTS[0])
        .to_string()
}

/// The engine id: the host name (`/proc/sys/kernel/hostname`, else `/etc/hostname`), as
/// CRI runtimes have no identity of their own and serve one node each. Empty when unknown.
///
/// The Go original uses the UTS host name of the engine process (switching into its UTS
/// namespace); without `setns` we use our own, which is the same unless the engine runs
/// in another UTS namespace than the watching process.
fn host_id() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| !s.is_empty())
        .unwrap_or_default()
}

fn pod_meta(m: &MessageField<PodSandboxMetadata>) -> PodMeta {
    m.as_ref()
        .map(|m| PodMeta {
            name: m.name.clone(),
            uid: m.uid.clone(),
            namespace: m.namespace.clone(),
        })
        .unwrap_or_default()
}

/// What one verbose status call of a listing is about.
enum Job<'a> {
    Sandbox(&'a PodSandbox),
    Container(&'a ProtoContainer, &'a PodSandbox),
}

/// The calls shared by the client and its relisting event source. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Rpc {
    pub(crate) channel: Channel,
    pub(crate) cancel: CancelSet,
}

impl Rpc {
    pub(crate) fn call<Req: Message, Resp: Message>(
        &self,
        method: &str,
        req: &Req,
    ) -> Result<Resp> {
        self.cancel.check()?;
        let path = format!("{SERVICE}{method}");
        self.channel
            .unary_msg(&path, &[], req, Some(CALL_DEADLINE))
            .map_err(|e| self.cancel.or_cancelled(e))
    }

    pub(crate) fn ready_sandboxes(&self) -> Result<Vec<PodSandbox>> {
        let mut state = PodSandboxStateValue::new();
        state.state = EnumOrUnknown::new(PodSandboxState::SANDBOX_READY);
        let mut filter = PodSandboxFilter::new();
        filter.state = MessageField::some(state);
        let mut req = ListPodSandboxRequest::new();
        req.filter = MessageField::some(filter);
        let r: ListPodSandboxResponse = self.call("ListPodSandbox", &req)?;
        Ok(r.items)
    }

    /// The containers in `state` (any state when `None`), of id `id` when given (a
    /// unique-prefix match in containerd: callers insist on the exact id).
    pub(crate) fn containers(
        &self,
        id: Option<&str>,
        state: Option<ContainerState>,
    ) -> Result<Vec<ProtoContainer>> {
        let mut filter = ContainerFilter::new();
        if let Some(state) = state {
            let mut v = ContainerStateValue::new();
            v.state = EnumOrUnknown::new(state);
            filter.state = MessageField::some(v);
        }
        if let Some(id) = id {
            filter.id = id.to_string();
        }
        let mut req = ListContainersRequest::new();
        req.filter = MessageField::some(filter);
        let r: ListContainersResponse = self.call("ListContainers", &req)?;
        Ok(r.containers)
    }

    /// The running containers.
    pub(crate) fn running_containers(&self) -> Result<Vec<ProtoContainer>> {
        self.containers(None, Some(ContainerState::CONTAINER_RUNNING))
    }

    /// The ids of the running containers and ready sandboxes (the relist source).
    pub(crate) fn alive_ids(&self) -> Result<BTreeSet<String>> {
        let mut ids: BTreeSet<String> = self.ready_sandboxes()?.into_iter().map(|s| s.id).collect();
        ids.extend(self.running_containers()?.into_iter().map(|c| c.id));
        Ok(ids)
    }
}

impl CriClient {
    /// Inspects one container or sandbox, alive or not.
    ///
    /// A container (any state): its pod's metadata from the sandbox status (empty when
    /// the sandbox is gone), then its verbose status: running → alive; exited → its
    /// details with pid 0 and the exit status (code when `finished_at` is set, OOM from
    /// the reason `OOMKilled`, the finish time); created or unknown → processless. A
    /// sandbox: ready → alive; otherwise processless (CRI keeps no exit status of
    /// sandboxes). Neither → not found.
    fn inspect_any(&self, id: &str) -> Result<Inspection> {
        let engine = self.engine_ref();
        if id.is_empty() {
            return Err(Error::NotFound { id: id.into() });
        }
        // (containerd resolves the id filter as a unique prefix: insist on the exact id.)
        let found = self.rpc.containers(Some(id), None)?;
        if let Some(c) = found.into_iter().find(|c| c.id == id) {
            let pod = match self.sandbox_status(&c.pod_sandbox_id) {
                Ok(r) => r.status.as_ref().map(|s| pod_meta(&s.metadata)),
                Err(e) if vanished(&e) => None,
                Err(e) => return Err(e),
            }
            .unwrap_or_default();
            return match self.container_inspection(id, &pod, &engine) {
                Err(Error::Grpc {
                    code: GrpcCode::NOT_FOUND,
                    ..
                }) => Err(Error::NotFound { id: id.into() }),
                Ok(Inspection::Alive(c))
                    if *self.mode.lock() == Some(EventMode::ContainerdEvents) =>
                {
                    self.unless_task_ended(c, &pod)
                }
                r => r,
            };
        }
        match self.sandbox_container(id, &engine) {
            Err(Error::Grpc {
                code: GrpcCode::NOT_FOUND,
                ..
            }) => Err(Error::NotFound { id: id.into() }),
            r => r.map(Inspection::Alive),
        }
    }

    /// A container the CRI plugin says runs, unless its task has ended already (mode
    /// [`ContainerdEvents`](EventMode::ContainerdEvents): the CRI status follows the task
    /// events a moment later, while the listing and the events already say exited). An
    /// ended task's container is looked at again until the CRI plugin has recorded the
    /// exit (exit code, OOM reason, finish time; at most [`native::SETTLE`]); after that,
    /// the task's exit status stands (unknown when the task is already deleted).
    fn unless_task_ended(&self, c: Container, pod: &PodMeta) -> Result<Inspection> {
        let (code, time) = match native::task_state(&self.rpc, &c.id)? {
            native::TaskState::Alive => return Ok(Inspection::Alive(c)),
            native::TaskState::Stopped(code, time) => (Some(code as i32), time),
            native::TaskState::Gone => (None, None),
        };
        let engine = self.engine_ref();
        let exited = native::until_settled(&self.rpc.cancel, || {
            match self.container_inspection(&c.id, pod, &engine) {
                Ok(i @ Inspection::Exited(..)) => Ok(Some(Some(i))),
                Ok(Inspection::Alive(_)) => Ok(None),
                Err(e) if e.is_not_alive() || vanished(&e) => Ok(Some(None)),
                Err(e) => Err(e),
            }
        })?;
        if let Some(Some(i)) = exited {
            return Ok(i);
        }
        let c = Container { pid: 0, ..c };
        let status = ExitStatus {
            exit_code: code,
            oom: false,
            time,
        };
        Ok(Inspection::Exited(c, status))
    }

    /// A client of the CRI socket at `endpoint` (`/path` or `unix:///path`), else of
    /// `CONTAINER_RUNTIME_ENDPOINT`, else of the first existing of [`DEFAULT_ENDPOINTS`]
    /// (else the first of them): the
    /// [constructor contract](crate::connect#the-constructor-contract) of every client.
    /// Lazy: connects on the first call, so this fails only on an unusable address
    /// ([`Error::InvalidEndpoint`]), never because the runtime is down.
    pub fn new(endpoint: Option<&str>) -> Result<Self> {
        let address = crate::endpoint::resolve(EngineKind::Cri, endpoint, default_endpoint);
        let path = crate::endpoint::socket_path(&address)?;
        let cancel = CancelSet::new();
        Ok(CriClient {
            rpc: Rpc {
                channel: Channel::new(path.clone(), cancel.clone()),
                cancel,
            },
            path,
            interval: DEFAULT_RELIST_INTERVAL,
            packer: None,
            pid: None,
            engine: Mutex::new(None),
            mode: Arc::new(Mutex::new(None)),
        })
    }

    /// Sets the event source instead of choosing it by the runtime's version (see
    /// [`EventMode::for_runtime`]). A runtime that refuses the source before sending
    /// anything still makes the client fall back to [`EventMode::Relist`].
    pub fn with_event_mode(self, mode: EventMode) -> Self {
        *self.mode.lock() = Some(mode);
        self
    }

    /// The event mode, asking the runtime's version when it is not decided yet.
    pub(crate) fn event_mode(&self) -> Result<EventMode> {
        if let Some(m) = *self.mode.lock() {
            return Ok(m);
        }
        let v: VersionResponse = self.call("Version", &VersionRequest::new())?;
        Ok(self.decide(&v))
    }

    /// Decides the mode from a `Version` answer unless it is decided already.
    fn decide(&self, v: &VersionResponse) -> EventMode {
        *self
            .mode
            .lock()
            .get_or_insert_with(|| EventMode::for_runtime(&v.runtime_name, &v.runtime_version))
    }

    /// Sets the interval of the relisting fallback event source (default 1 s).
    pub fn with_relist_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Fills each container's rucksack; the packer gets a [`RawInfo`].
    pub fn with_rucksack_packer(mut self, packer: Arc<dyn RucksackPacker>) -> Self {
        self.packer = Some(packer);
        self
    }

    /// Sets the engine's PID, reported by [`info`](EngineClient::info).
    pub fn with_pid(mut self, pid: u32) -> Self {
        self.pid = Some(pid);
        self
    }

    /// The gRPC channel (shared with the test support that creates pods). Feature
    /// `unstable`: not part of the API.
    #[cfg(feature = "unstable")]
    #[doc(hidden)]
    pub fn channel(&self) -> &Channel {
        &self.rpc.channel
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn call<Req: Message, Resp: Message>(&self, method: &str, req: &Req) -> Result<Resp> {
        self.rpc.call(method, req)
    }

    fn engine_ref(&self) -> Arc<EngineRef> {
        let mut e = self.engine.lock();
        e.get_or_insert_with(|| {
            Arc::new(EngineRef {
                kind: EngineKind::Cri,
                id: host_id(),
            })
        })
        .clone()
    }

    fn sandbox_status(&self, id: &str) -> Result<PodSandboxStatusResponse> {
        let mut req = PodSandboxStatusRequest::new();
        req.pod_sandbox_id = id.to_string();
        req.verbose = true;
        self.call("PodSandboxStatus", &req)
    }

    fn container_status(&self, id: &str) -> Result<ContainerStatusResponse> {
        let mut req = ContainerStatusRequest::new();
        req.container_id = id.to_string();
        req.verbose = true;
        self.call("ContainerStatus", &req)
    }

    fn finish(&self, mut c: Container, info: &RawInfo, engine: &Arc<EngineRef>) -> Container {
        c.engine = engine.clone();
        if let Some(p) = &self.packer {
            c.rucksack = p.pack(&c, info);
        }
        c
    }

    /// A ready sandbox as a container, from its verbose status.
    fn sandbox_container(&self, id: &str, engine: &Arc<EngineRef>) -> Result<Container> {
        let r = self.sandbox_status(id)?;
        let st = r.status.as_ref().ok_or_else(|| {
            Error::protocol("cri", format!("{id}: PodSandboxStatus without status"))
        })?;
        if st.state.enum_value() != Ok(PodSandboxState::SANDBOX_READY) {
            return Err(Error::Processless { id: id.into() });
        }
        let pid = convert::pid_from_info(id, &r.info)?;
        let pod = pod_meta(&st.metadata);
        let labels = convert::build_labels(&st.labels, &st.annotations, &pod);
        let c = convert::sandbox(id, pid, labels, convert::time_from_nanos(st.created_at));
        Ok(self.finish(c, &r.info, engine))
    }

    /// A container of pod `pod`, from its verbose status: alive when running, exited
    /// with its exit status, else processless.
    fn container_inspection(
        &self,
        id: &str,
        pod: &PodMeta,
        engine: &Arc<EngineRef>,
    ) -> Result<Inspection> {
        let r = self.container_status(id)?;
        let st = r.status.as_ref().ok_or_else(|| {
            Error::protocol("cri", format!("{id}: ContainerStatus without status"))
        })?;
        let running = match st.state.enum_value() {
            Ok(ContainerState::CONTAINER_RUNNING) => true,
            Ok(ContainerState::CONTAINER_EXITED) => false,
            _ => return Err(Error::Processless { id: id.into() }),
        };
        let pid = if running {
            convert::pid_from_info(id, &r.info)?
        } else {
            0
        };
        let name = st
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let image = st
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .filter(|i| !i.is_empty())
            .unwrap_or_else(|| st.image_ref.clone());
        let labels = convert::build_labels(&st.labels, &st.annotations, pod);
        let c = convert::container(
            id,
            &name,
            pid,
            labels,
            &image,
            convert::time_from_nanos(st.started_at),
        );
        let c = self.finish(c, &r.info, engine);
        if running {
            return Ok(Inspection::Alive(c));
        }
        Ok(Inspection::Exited(c, convert::exit_status(st)))
    }

    /// A running container of pod `pod` (listing).
    fn container_container(
        &self,
        id: &str,
        pod: &PodMeta,
        engine: &Arc<EngineRef>,
    ) -> Result<Container> {
        self.container_inspection(id, pod, engine)?
            .alive()
            .ok_or_else(|| Error::Processless { id: id.into() })
    }

    /// Aligns a CRI listing with containerd's tasks (mode
    /// [`ContainerdEvents`](EventMode::ContainerdEvents), whose events are the tasks'):
    /// the CRI plugin records a task's start and exit a moment after containerd publishes
    /// them, and an event stream opened in between would never see them.
    ///
    /// - A container whose task is gone or stopped has exited (its exit is not recorded
    ///   yet): left out. A sandbox only when its task is listed as stopped (a sandbox
    ///   need not have a task of its own).
    /// - A task of a CRI container or sandbox that the CRI plugin does not list yet is
    ///   waited for (at most [`native::SETTLE`]) and then listed.
    fn align_with_tasks(
        &self,
        sandboxes: &mut Vec<PodSandbox>,
        containers: &mut Vec<ProtoContainer>,
    ) -> Result<()> {
        let (alive, ended) = native::tasks(&self.rpc)?;
        let late: Vec<String> = alive
            .iter()
            .filter(|id| {
                !sandboxes.iter().any(|s| &s.id == *id) && !containers.iter().any(|c| &c.id == *id)
            })
            .cloned()
            .collect();
        sandboxes.retain(|s| !ended.contains(&s.id));
        containers.retain(|c| alive.contains(&c.id));
        for id in late {
            match native::settle(&self.rpc, &id)? {
                Some(native::Kind::Sandbox) => {
                    let mut filter = PodSandboxFilter::new();
                    filter.id = id.clone();
                    let mut req = ListPodSandboxRequest::new();
                    req.filter = MessageField::some(filter);
                    let r: ListPodSandboxResponse = self.call("ListPodSandbox", &req)?;
                    sandboxes.extend(r.items.into_iter().filter(|s| {
                        s.id == id && s.state.enum_value() == Ok(PodSandboxState::SANDBOX_READY)
                    }));
                }
                Some(native::Kind::Container) => containers.extend(
                    self.rpc
                        .containers(Some(&id), Some(ContainerState::CONTAINER_RUNNING))?
                        .into_iter()
                        .filter(|c| c.id == id),
                ),
                None => {}
            }
        }
        Ok(())
    }

    fn run_job(&self, job: &Job<'_>, engine: &Arc<EngineRef>) -> Result<Container> {
        match job {
            Job::Sandbox(s) => self.sandbox_container(&s.id, engine),
            Job::Container(c, s) => self.container_container(&c.id, &pod_meta(&s.metadata), engine),
        }
    }
}

/// Whether an error only says that the thing went away meanwhile.
fn vanished(e: &Error) -> bool {
    e.is_not_alive()
        || matches!(
            e,
            Error::Grpc {
                code: GrpcCode::NOT_FOUND,
                ..
            }
        )
}

impl EngineClient for CriClient {
    fn info(&self) -> Result<EngineInfo> {
        let v: VersionResponse = self.call("Version", &VersionRequest::new())?;
        let engine = self.engine_ref();
        let version = if v.runtime_version.is_empty() {
            v.runtime_name.clone()
        } else {
            format!("{} {}", v.runtime_name, v.runtime_version)
        };
        Ok(EngineInfo {
            id: engine.id.clone(),
            kind: EngineKind::Cri,
            version,
            api_path: self.rpc.channel.endpoint(),
            pid: self.pid,
            mode: self.decide(&v).as_str().to_string(),
        })
    }

    fn list(&self) -> Result<Vec<Arc<Container>>> {
        let engine = self.engine_ref();
        // One sandbox listing per listing; containers of sandboxes that are not ready
        // (going away) are skipped.
        let mut sandboxes = self.rpc.ready_sandboxes()?;
        let mut containers = self.rpc.running_containers()?;
        if *self.mode.lock() == Some(EventMode::ContainerdEvents) {
            self.align_with_tasks(&mut sandboxes, &mut containers)?;
        }
        let by_id: HashMap<&str, &PodSandbox> =
            sandboxes.iter().map(|s| (s.id.as_str(), s)).collect();
        let mut jobs: Vec<Job<'_>> = sandboxes.iter().map(Job::Sandbox).collect();
        jobs.extend(containers.iter().filter_map(|c| {
            by_id
                .get(c.pod_sandbox_id.as_str())
                .map(|s| Job::Container(c, s))
        }));
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<Result<Container>>>> =
            Mutex::new((0..jobs.len()).map(|_| None).collect());
        let workers = STATUS_WORKERS.min(jobs.len());
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    let r = self.run_job(job, &engine);
                    let fatal = r.is_err();
                    results.lock()[i] = Some(r);
                    if fatal && self.rpc.cancel.is_cancelled() {
                        break;
                    }
                });
            }
        });
        let mut out = Vec::with_capacity(jobs.len());
        for r in results.into_inner().into_iter().flatten() {
            match r {
                Ok(c) => out.push(Arc::new(c)),
                Err(e) if vanished(&e) => {}
                Err(e) => return Err(self.rpc.cancel.or_cancelled(e)),
            }
        }
        self.rpc.cancel.check()?;
        Ok(out)
    }

    fn inspect(&self, id: &str) -> Result<Inspection> {
        self.inspect_any(id)
    }

    fn events(&self) -> Result<Box<dyn EventStream>> {
        events::open(self)
    }

    fn cancel(&self) {
        self.rpc.cancel.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_argument_wins_and_loses_its_scheme() {
        let c = CriClient::new(Some("/y/cri.sock")).unwrap();
        assert_eq!(c.path(), Path::new("/y/cri.sock"));
        let c = CriClient::new(Some("unix:///nowhere/cri.sock")).unwrap();
        assert_eq!(c.path(), Path::new("/nowhere/cri.sock"));
        assert!(matches!(
            CriClient::new(Some("tcp://h:1")),
            Err(Error::InvalidEndpoint { .. })
        ));
        assert_eq!(c.interval, DEFAULT_RELIST_INTERVAL);
    }

    #[test]
    fn a_down_engine_fails_calls_not_construction() {
        let c = CriClient::new(Some("/nonexistent/whalewatcher/cri.sock")).unwrap();
        assert!(matches!(c.list(), Err(Error::Connection { .. })));
        c.cancel();
        assert_eq!(c.list(), Err(Error::Cancelled));
        assert!(matches!(c.events(), Err(Error::Cancelled)));
    }
}
