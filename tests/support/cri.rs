//! Test support for the CRI tests: pods and containers created through the CRI API itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use protobuf::{EnumOrUnknown, Message, MessageField};
use whalewatcher::cri::api::*;
use whalewatcher::cri::CriClient;
use whalewatcher::grpc::Channel;

const DEADLINE: Duration = Duration::from_secs(60);

/// A unary CRI runtime-service call; panics on failure (test support).
pub fn call<Req: Message, Resp: Message>(ch: &Channel, method: &str, req: &Req) -> Resp {
    ch.unary_msg(
        &format!("/runtime.v1.RuntimeService/{method}"),
        &[],
        req,
        Some(DEADLINE),
    )
    .unwrap_or_else(|e| panic!("CRI {method} failed: {e}"))
}

/// A unique name for this test run: `prefix-pid-n`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The container image (entrypoint blocks).
pub fn image() -> String {
    std::env::var("WHALEWATCHER_CRI_IMAGE").expect("WHALEWATCHER_CRI_IMAGE is not set")
}

/// A pod sandbox in the host network namespace; stopped and removed on drop.
pub struct Pod {
    pub ch: Channel,
    pub id: String,
    pub name: String,
    pub uid: String,
    pub namespace: String,
    config: PodSandboxConfig,
}

impl Pod {
    /// Runs a pod named `name` (unique per call) with one label and one annotation.
    pub fn run(cri: &CriClient, name: &str) -> Pod {
        let name = unique(name);
        let uid = format!("uid-{name}");
        let namespace = "wwtest".to_string();
        let mut meta = PodSandboxMetadata::new();
        meta.name = name.clone();
        meta.uid = uid.clone();
        meta.namespace = namespace.clone();
        let mut ns = NamespaceOption::new();
        ns.network = EnumOrUnknown::new(NamespaceMode::NODE);
        let mut sec = LinuxSandboxSecurityContext::new();
        sec.namespace_options = MessageField::some(ns);
        let mut linux = LinuxPodSandboxConfig::new();
        linux.security_context = MessageField::some(sec);
        let mut config = PodSandboxConfig::new();
        config.metadata = MessageField::some(meta);
        config.labels = HashMap::from([("ww-pod".to_string(), name.clone())]);
        config.annotations = HashMap::from([("ww-note".to_string(), "pod".to_string())]);
        config.linux = MessageField::some(linux);
        let mut req = RunPodSandboxRequest::new();
        req.config = MessageField::some(config.clone());
        let r: RunPodSandboxResponse = call(cri.channel(), "RunPodSandbox", &req);
        Pod {
            ch: cri.channel().clone(),
            id: r.pod_sandbox_id,
            name,
            uid,
            namespace,
            config,
        }
    }

    /// Creates (not starts) a container `name` with label `ww-container=name` and
    /// annotation `ww-note=container`.
    pub fn create(&self, name: &str) -> String {
        self.create_cmd(name, &[])
    }

    /// Creates and starts a container `name` that runs `cmd` (e.g. `["sh", "-c", "exit 3"]`).
    pub fn run_cmd(&self, name: &str, cmd: &[&str]) -> String {
        let id = self.create_cmd(name, cmd);
        self.start(&id);
        id
    }

    /// Like [`create`](Self::create), running `cmd` instead of the image's entrypoint when
    /// `cmd` is not empty.
    pub fn create_cmd(&self, name: &str, cmd: &[&str]) -> String {
        let mut meta = ContainerMetadata::new();
        meta.name = name.to_string();
        let mut img = ImageSpec::new();
        img.image = image();
        let mut config = ContainerConfig::new();
        config.metadata = MessageField::some(meta);
        config.image = MessageField::some(img);
        config.labels = HashMap::from([("ww-container".to_string(), name.to_string())]);
        config.annotations = HashMap::from([("ww-note".to_string(), "container".to_string())]);
        config.command = cmd.iter().map(|s| s.to_string()).collect();
        let mut req = CreateContainerRequest::new();
        req.pod_sandbox_id = self.id.clone();
        req.config = MessageField::some(config);
        req.sandbox_config = MessageField::some(self.config.clone());
        let r: CreateContainerResponse = call(&self.ch, "CreateContainer", &req);
        r.container_id
    }

    /// Starts a created container.
    pub fn start(&self, id: &str) {
        let mut req = StartContainerRequest::new();
        req.container_id = id.to_string();
        let _: StartContainerResponse = call(&self.ch, "StartContainer", &req);
    }

    /// Creates and starts a container.
    pub fn run_container(&self, name: &str) -> String {
        let id = self.create(name);
        self.start(&id);
        id
    }

    /// Stops a container at once (SIGKILL).
    pub fn stop(&self, id: &str) {
        self.stop_timeout(id, 0)
    }

    /// Stops a container: its stop signal (SIGTERM), SIGKILL after `timeout` seconds
    /// (at once for 0).
    pub fn stop_timeout(&self, id: &str, timeout: i64) {
        let mut req = StopContainerRequest::new();
        req.container_id = id.to_string();
        req.timeout = timeout;
        let _: StopContainerResponse = call(&self.ch, "StopContainer", &req);
    }

    /// Removes a container.
    pub fn remove(&self, id: &str) {
        let mut req = RemoveContainerRequest::new();
        req.container_id = id.to_string();
        let _: RemoveContainerResponse = call(&self.ch, "RemoveContainer", &req);
    }

    /// Stops and removes the pod now (also done on drop).
    pub fn destroy(&mut self) {
        if self.id.is_empty() {
            return;
        }
        let mut req = StopPodSandboxRequest::new();
        req.pod_sandbox_id = self.id.clone();
        let r: Result<StopPodSandboxResponse, _> = self.ch.unary_msg(
            "/runtime.v1.RuntimeService/StopPodSandbox",
            &[],
            &req,
            Some(DEADLINE),
        );
        if let Err(e) = r {
            eprintln!("StopPodSandbox {}: {e}", self.id);
        }
        let mut req = RemovePodSandboxRequest::new();
        req.pod_sandbox_id = std::mem::take(&mut self.id);
        let r: Result<RemovePodSandboxResponse, _> = self.ch.unary_msg(
            "/runtime.v1.RuntimeService/RemovePodSandbox",
            &[],
            &req,
            Some(DEADLINE),
        );
        if let Err(e) = r {
            eprintln!("RemovePodSandbox {}: {e}", req.pod_sandbox_id);
        }
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.destroy();
    }
}

/// Ground truth: the PID in ContainerStatus(verbose).info["info"], and the state.
pub fn container_truth(ch: &Channel, id: &str) -> (u32, ContainerState) {
    let mut req = ContainerStatusRequest::new();
    req.container_id = id.to_string();
    req.verbose = true;
    let r: ContainerStatusResponse = call(ch, "ContainerStatus", &req);
    let st = r.status.into_option().expect("status");
    (
        info_pid(&r.info),
        st.state.enum_value().expect("known state"),
    )
}

/// Ground truth: the PID in PodSandboxStatus(verbose).info["info"].
pub fn sandbox_pid(ch: &Channel, id: &str) -> u32 {
    let mut req = PodSandboxStatusRequest::new();
    req.pod_sandbox_id = id.to_string();
    req.verbose = true;
    let r: PodSandboxStatusResponse = call(ch, "PodSandboxStatus", &req);
    info_pid(&r.info)
}

fn info_pid(info: &HashMap<String, String>) -> u32 {
    let v: serde_json::Value = serde_json::from_str(&info["info"]).expect("info JSON");
    v["pid"].as_u64().expect("pid") as u32
}

/// Ground truth of an ended container: its state and exit code per ContainerStatus.
pub fn exit_truth(ch: &Channel, id: &str) -> (ContainerState, i32) {
    let mut req = ContainerStatusRequest::new();
    req.container_id = id.to_string();
    let r: ContainerStatusResponse = call(ch, "ContainerStatus", &req);
    let st = r.status.into_option().expect("status");
    (st.state.enum_value().expect("known state"), st.exit_code)
}

/// The runtime's `(name, version)` per CRI Version.
pub fn runtime_version(ch: &Channel) -> (String, String) {
    let v: VersionResponse = call(ch, "Version", &VersionRequest::new());
    (v.runtime_name, v.runtime_version)
}

/// A third-party `GetContainerEvents` subscriber (like `crictl events` or the kubelet's
/// evented PLEG): reads events on its own thread until dropped.
pub struct RawSubscriber {
    cancel: whalewatcher::cancel::CancelSet,
    thread: Option<std::thread::JoinHandle<Vec<ContainerEventResponse>>>,
}

impl RawSubscriber {
    /// Opens the stream on `path` (no deadline).
    pub fn open(path: &str) -> RawSubscriber {
        let cancel = whalewatcher::cancel::CancelSet::new();
        let ch = Channel::new(path, cancel.clone());
        let req = GetEventsRequest::new().write_to_bytes().unwrap();
        let mut s = ch
            .server_streaming(
                "/runtime.v1.RuntimeService/GetContainerEvents",
                &[],
                &req,
                None,
            )
            .expect("GetContainerEvents");
        let thread = std::thread::spawn(move || {
            let mut got = Vec::new();
            while let Ok(Some(e)) = s.next_msg::<ContainerEventResponse>() {
                got.push(e);
            }
            got
        });
        RawSubscriber {
            cancel,
            thread: Some(thread),
        }
    }

    /// Ends the stream; the events it got.
    pub fn close(mut self) -> Vec<ContainerEventResponse> {
        self.cancel.cancel();
        self.thread
            .take()
            .map(|t| t.join().unwrap())
            .unwrap_or_default()
    }
}

impl Drop for RawSubscriber {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
