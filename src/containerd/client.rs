//! The containerd engine client.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use protobuf::well_known_types::empty::Empty;
use protobuf::Message;

use crate::container::{Container, EngineRef};
use crate::engine::{
    CancelSet, EngineClient, EngineInfo, EngineKind, EventStream, Inspection, RucksackPacker,
};
use crate::error::{Error, GrpcCode, Result};
use crate::grpc::Channel;
use crate::proto::containerd_containers::{
    Container as ProtoContainer, GetContainerRequest, GetContainerResponse, ListContainersRequest,
    ListContainersResponse,
};
use crate::proto::containerd_introspection::ServerResponse;
use crate::proto::containerd_namespaces::{ListNamespacesRequest, ListNamespacesResponse};
use crate::proto::containerd_task_types::Process;
use crate::proto::containerd_tasks::{
    GetRequest, GetResponse, ListTasksRequest, ListTasksResponse,
};
use crate::proto::containerd_version::VersionResponse;

use super::api::{self, subscribe, task_container_id, CONTAINERS_GET, TASKS_GET, TASKS_LIST};
use super::convert::{split_id, to_container, to_inspection};
use super::events::{filters, ContainerdEvents};
use super::raw::RawContainer;

const NAMESPACES_LIST: &str = "/containerd.services.namespaces.v1.Namespaces/List";
const CONTAINERS_LIST: &str = "/containerd.services.containers.v1.Containers/List";
const VERSION: &str = "/containerd.services.version.v1.Version/Version";
const INTROSPECTION_SERVER: &str = "/containerd.services.introspection.v1.Introspection/Server";

/// The default containerd socket.
pub const DEFAULT_ENDPOINT: &str = "/run/containerd/containerd.sock";

/// The namespaces skipped by default: `moby` belongs to Docker (use the Docker client: only
/// it knows the container names) and `k8s.io` to the CRI plugin (use the CRI client: only it
/// knows pods).
pub const DEFAULT_IGNORED_NAMESPACES: [&str; 2] = ["moby", "k8s.io"];

/// A client of containerd's native gRPC API, watching every namespace except the ignored
/// ones.
///
/// Container ids are namespace-qualified, `"ns/id"`, with the `default` namespace
/// unprefixed; so are names, which come from nerdctl's `nerdctl/name` label or else are the
/// id.
pub struct ContainerdClient {
    path: PathBuf,
    channel: Channel,
    cancel: CancelSet,
    ignored: Vec<String>,
    packer: Option<Arc<dyn RucksackPacker>>,
    pid: Option<u32>,
    engine: Mutex<Option<Arc<EngineRef>>>,
}

impl ContainerdClient {
    /// A client of the containerd socket at `endpoint` (`/path` or `unix:///path`), else
    /// of `CONTAINERD_ADDRESS`, else of [`DEFAULT_ENDPOINT`]: the
    /// [constructor contract](crate::connect#the-constructor-contract) of every client.
    /// Lazy: connects on the first call, so this fails only on an unusable address
    /// ([`Error::InvalidEndpoint`]), never because containerd is down.
    pub fn new(endpoint: Option<&str>) -> Result<Self> {
        let address = crate::endpoint::resolve(EngineKind::Containerd, endpoint, || {
            DEFAULT_ENDPOINT.to_string()
        });
        let path = crate::endpoint::socket_path(&address)?;
        let cancel = CancelSet::new();
        Ok(ContainerdClient {
            channel: Channel::new(path.clone(), cancel.clone()),
            path,
            cancel,
            ignored: DEFAULT_IGNORED_NAMESPACES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            packer: None,
            pid: None,
            engine: Mutex::new(None),
        })
    }

    /// Replaces the list of namespaces to skip (default [`DEFAULT_IGNORED_NAMESPACES`]).
    pub fn with_ignored_namespaces(mut self, namespaces: Vec<String>) -> Self {
        self.ignored = namespaces;
        self
    }

    /// Fills each container's rucksack; the packer gets a [`RawContainer`](super::RawContainer).
    pub fn with_rucksack_packer(mut self, packer: Arc<dyn RucksackPacker>) -> Self {
        self.packer = Some(packer);
        self
    }

    /// Sets the engine's PID, reported by [`info`](EngineClient::info).
    pub fn with_pid(mut self, pid: u32) -> Self {
        self.pid = Some(pid);
        self
    }

    /// The socket path.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    fn call<Req: Message, Resp: Message>(
        &self,
        method: &str,
        ns: Option<&str>,
        req: &Req,
    ) -> Result<Resp> {
        api::call(&self.channel, &self.cancel, ns, method, req)
    }

    fn is_ignored(&self, ns: &str) -> bool {
        self.ignored.iter().any(|n| n == ns)
    }

    /// The server's UUID; `""` for containerd before 1.5 (no introspection Server call).
    fn server_uuid(&self) -> Result<String> {
        match self.call::<_, ServerResponse>(INTROSPECTION_SERVER, None, &Empty::new()) {
            Ok(r) => Ok(r.uuid),
            Err(Error::Grpc {
                code: GrpcCode::UNIMPLEMENTED,
                ..
            }) => Ok(String::new()),
            Err(e) => Err(e),
        }
    }

    /// The engine reference, fetched once.
    fn engine_ref(&self) -> Result<Arc<EngineRef>> {
        if let Some(e) = self.engine.lock().as_ref() {
            return Ok(e.clone());
        }
        let e = Arc::new(EngineRef {
            kind: EngineKind::Containerd,
            id: self.server_uuid()?,
        });
        *self.engine.lock() = Some(e.clone());
        Ok(e)
    }

    fn finish(&self, mut c: Container, ns: &str, rec: &ProtoContainer) -> Container {
        if let Some(p) = &self.packer {
            c.rucksack = p.pack(&c, &RawContainer::from_record(ns, rec));
        }
        c
    }

    fn list_namespace(
        &self,
        ns: &str,
        engine: &Arc<EngineRef>,
        out: &mut Vec<Arc<Container>>,
    ) -> Result<()> {
        // Tasks first: a task whose container then vanished has died (and its exit event
        // tells); a container started after the task list is announced by its start event.
        let tasks: ListTasksResponse = self.call(TASKS_LIST, Some(ns), &ListTasksRequest::new())?;
        let alive: Vec<&Process> = tasks
            .tasks
            .iter()
            .filter(|t| super::convert::liveness(t).is_some())
            .collect();
        if alive.is_empty() {
            return Ok(());
        }
        let records: ListContainersResponse =
            self.call(CONTAINERS_LIST, Some(ns), &ListContainersRequest::new())?;
        let by_id: HashMap<&str, &ProtoContainer> = records
            .containers
            .iter()
            .map(|c| (c.id.as_str(), c))
            .collect();
        for t in alive {
            if let Some(rec) = by_id.get(task_container_id(t)) {
                if let Some(c) = to_container(ns, rec, t, engine) {
                    out.push(Arc::new(self.finish(c, ns, rec)));
                }
            }
        }
        Ok(())
    }
}

impl EngineClient for ContainerdClient {
    fn info(&self) -> Result<EngineInfo> {
        let v: VersionResponse = self.call(VERSION, None, &Empty::new())?;
        let engine = self.engine_ref()?;
        let version = if v.revision.is_empty() {
            v.version
        } else {
            format!("{} ({})", v.version, v.revision)
        };
        Ok(EngineInfo {
            id: engine.id.clone(),
            kind: EngineKind::Containerd,
            version,
            api_path: self.channel.endpoint(),
            pid: self.pid,
            mode: String::new(),
        })
    }

    fn list(&self) -> Result<Vec<Arc<Container>>> {
        let engine = self.engine_ref()?;
        let nss: ListNamespacesResponse =
            self.call(NAMESPACES_LIST, None, &ListNamespacesRequest::new())?;
        let mut out = Vec::new();
        for ns in &nss.namespaces {
            if self.is_ignored(&ns.name) {
                continue;
            }
            match self.list_namespace(&ns.name, &engine, &mut out) {
                // The namespace went away meanwhile.
                Err(Error::Grpc {
                    code: GrpcCode::NOT_FOUND,
                    ..
                }) => {}
                r => r?,
            }
        }
        Ok(out)
    }

    fn inspect(&self, id: &str) -> Result<Inspection> {
        let (ns, cid) = split_id(id);
        let not_found = || Error::NotFound { id: id.to_string() };
        if self.is_ignored(ns) || cid.is_empty() || ns.is_empty() {
            return Err(not_found());
        }
        let engine = self.engine_ref()?;
        let mut req = GetContainerRequest::new();
        req.id = cid.to_string();
        let rec: GetContainerResponse = match self.call(CONTAINERS_GET, Some(ns), &req) {
            Err(Error::Grpc {
                code: GrpcCode::NOT_FOUND,
                ..
            }) => return Err(not_found()),
            r => r?,
        };
        let rec = rec
            .container
            .into_option()
            .ok_or_else(|| Error::protocol("containerd", "Containers/Get without a container"))?;
        let mut req = GetRequest::new();
        req.container_id = cid.to_string();
        let processless = || Error::Processless { id: id.to_string() };
        let task: GetResponse = match self.call(TASKS_GET, Some(ns), &req) {
            Err(Error::Grpc {
                code: GrpcCode::NOT_FOUND,
                ..
            }) => return Err(processless()),
            r => r?,
        };
        let task = task
            .process
            .into_option()
            .ok_or_else(|| Error::protocol("containerd", "Tasks/Get without a process"))?;
        Ok(
            match to_inspection(ns, &rec, &task, &engine).ok_or_else(processless)? {
                Inspection::Alive(c) => Inspection::Alive(self.finish(c, ns, &rec)),
                Inspection::Exited(c, status) => {
                    Inspection::Exited(self.finish(c, ns, &rec), status)
                }
            },
        )
    }

    fn events(&self) -> Result<Box<dyn EventStream>> {
        let stream = subscribe(&self.channel, &self.cancel, filters())?;
        Ok(Box::new(ContainerdEvents::new(
            stream,
            self.ignored.clone(),
            self.cancel.clone(),
        )))
    }

    fn cancel(&self) {
        self.cancel.cancel();
    }
}
