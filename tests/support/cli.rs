//! THE docker/podman CLI driver ([`Cli`]), and ground truth from `docker inspect` JSON.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;
use whalewatcher::container::PRIVILEGED_LABEL;

/// The labels a Docker container should carry in the portfolio: its config labels, plus
/// the privileged marker label for privileged containers.
pub fn docker_labels(v: &Value) -> BTreeMap<String, String> {
    let mut labels = crate::support::string_map(&v["Config"]["Labels"]);
    if v["HostConfig"]["Privileged"].as_bool() == Some(true) {
        labels.insert(PRIVILEGED_LABEL.to_string(), String::new());
    }
    labels
}

/// The blocking test image (`WHALEWATCHER_IMAGE`; its entrypoint sleeps).
pub fn image() -> String {
    std::env::var("WHALEWATCHER_IMAGE").unwrap_or_else(|_| "busybox:sleep".into())
}

/// The plain busybox image (`WHALEWATCHER_PLAIN_IMAGE`), for `sh -c` commands.
pub fn plain_image() -> String {
    std::env::var("WHALEWATCHER_PLAIN_IMAGE").unwrap_or_else(|_| "busybox:local".into())
}

/// What the tests compare of an alive container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snap {
    pub name: String,
    pub pid: u32,
    pub paused: bool,
    pub project: String,
    pub labels: BTreeMap<String, String>,
}

impl Snap {
    /// The container id and what the tests compare, from one `docker inspect` document;
    /// `None` when it has no process (exited or never started) or lacks its id or name.
    pub fn from_inspect(v: &Value) -> Option<(String, Snap)> {
        let pid = v["State"]["Pid"].as_u64().unwrap_or(0) as u32;
        if pid == 0 {
            return None;
        }
        let labels = docker_labels(v);
        let snap = Snap {
            name: v["Name"].as_str()?.trim_start_matches('/').to_string(),
            pid,
            paused: v["State"]["Paused"].as_bool().unwrap_or(false),
            project: labels
                .get("com.docker.compose.project")
                .cloned()
                .unwrap_or_default(),
            labels,
        };
        Some((v["Id"].as_str()?.to_string(), snap))
    }
}

/// The `ps` arguments that list the full ids of every running or paused container: what
/// the engine itself calls alive.
pub const PS_ALIVE: &[&str] = &[
    "ps",
    "-a",
    "-q",
    "--no-trunc",
    "--filter",
    "status=running",
    "--filter",
    "status=paused",
];

/// THE docker/podman driver: a Docker-API engine driven by its CLI (`docker -H URL` or
/// `podman --url URL`), the ground truth of the tests; usable from several threads.
/// Containers named through [`Cli::name`] (or registered with [`Cli::name_as`]) are removed
/// on drop.
pub struct Cli {
    /// `docker` or `podman`.
    pub cli: &'static str,
    /// The CLI flag naming the endpoint (`-H`, `--url`).
    pub flag: &'static str,
    /// The endpoint URL.
    pub url: String,
    names: std::sync::Mutex<Vec<String>>,
}

impl Cli {
    pub fn new(cli: &'static str, flag: &'static str, url: String) -> Cli {
        Cli {
            cli,
            flag,
            url,
            names: Default::default(),
        }
    }

    /// `docker -H url`.
    pub fn docker(url: String) -> Cli {
        Cli::new("docker", "-H", url)
    }

    /// `podman --url url`.
    pub fn podman(url: String) -> Cli {
        Cli::new("podman", "--url", url)
    }

    /// The shared dockerd (`WHALEWATCHER_DOCKER`), or `None` (skipped loudly).
    pub fn shared_docker() -> Option<Cli> {
        crate::support::endpoint("WHALEWATCHER_DOCKER").map(Cli::docker)
    }

    /// The shared podman service (`WHALEWATCHER_PODMAN`), or `None` (skipped loudly).
    pub fn shared_podman() -> Option<Cli> {
        crate::support::endpoint("WHALEWATCHER_PODMAN").map(Cli::podman)
    }

    /// The engine kind the library must report for this engine.
    pub fn kind(&self) -> whalewatcher::EngineKind {
        if self.cli == "podman" {
            whalewatcher::EngineKind::Podman
        } else {
            whalewatcher::EngineKind::Docker
        }
    }

    /// The client under test, on the same endpoint.
    #[cfg(feature = "docker")]
    pub fn client(&self) -> whalewatcher::docker::DockerClient {
        whalewatcher::docker::DockerClient::new(Some(&self.url)).unwrap()
    }

    /// Runs the CLI: `Ok(stdout)` or `Err(stderr)` ([`crate::support::try_run`]).
    pub fn try_run(&self, args: &[&str]) -> Result<String, String> {
        crate::support::try_run_with(self.cli, &[self.flag, &self.url], args)
    }

    /// Runs the CLI; panics on failure.
    pub fn run(&self, args: &[&str]) -> String {
        self.try_run(args)
            .unwrap_or_else(|e| panic!("{} {args:?} failed: {e}", self.cli))
    }

    /// Runs the CLI and ignores failures.
    pub fn run_quiet(&self, args: &[&str]) {
        let _ = self.try_run(args);
    }

    /// A unique container name, removed on drop.
    pub fn name(&self, what: &str) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = format!(
            "wwt-{}-{}-{what}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        self.names.lock().unwrap().push(n.clone());
        n
    }

    /// Registers `name` (chosen by the caller) for removal on drop.
    pub fn name_as(&self, name: &str) {
        self.names.lock().unwrap().push(name.to_string());
    }

    /// `run -d` of the blocking image; returns the id.
    pub fn start(&self, name: &str, extra: &[&str]) -> String {
        let image = image();
        let mut args = vec!["run", "-d", "--network", "none", "--name", name];
        args.extend_from_slice(extra);
        args.push(&image);
        self.run(&args).trim().to_string()
    }

    /// [`start`](Self::start) of a new container named after `what`; returns (id, name).
    pub fn start_new(&self, what: &str) -> (String, String) {
        let name = self.name(what);
        (self.start(&name, &[]), name)
    }

    /// `run -d` of the plain image with a shell command; returns the id.
    pub fn start_sh(&self, name: &str, script: &str) -> String {
        let image = plain_image();
        self.run(&[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            name,
            &image,
            "sh",
            "-c",
            script,
        ])
        .trim()
        .to_string()
    }

    /// `inspect` as JSON.
    pub fn inspect(&self, ids: &[String]) -> Vec<Value> {
        let mut args = vec!["inspect"];
        args.extend(ids.iter().map(String::as_str));
        serde_json::from_str(&self.run(&args)).unwrap()
    }

    /// `inspect` of one container as JSON.
    pub fn inspect_one(&self, id: &str) -> Value {
        self.inspect(&[id.to_string()]).swap_remove(0)
    }

    /// The PID the engine reports for a container (0 when it has no process).
    pub fn pid(&self, id: &str) -> u64 {
        self.inspect_one(id)["State"]["Pid"]
            .as_u64()
            .expect("State.Pid")
    }

    /// All running or paused containers, from `ps` + `inspect`; `None` when a container
    /// vanished in between (try again).
    pub fn truth(&self) -> Option<BTreeMap<String, Snap>> {
        let ids = self.try_run(PS_ALIVE).ok()?;
        let ids: Vec<&str> = ids.lines().filter(|l| !l.is_empty()).collect();
        if ids.is_empty() {
            return Some(BTreeMap::new());
        }
        let mut args = vec!["inspect"];
        args.extend(&ids);
        let all: Vec<Value> = serde_json::from_str(&self.try_run(&args).ok()?).ok()?;
        let mut out = BTreeMap::new();
        for v in &all {
            // None: exited in between (or no id or name).
            let (id, snap) = Snap::from_inspect(v)?;
            out.insert(id, snap);
        }
        Some(out)
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        let names = self.names.lock().unwrap().clone();
        for chunk in names.chunks(50) {
            let mut args = vec!["rm", "-f"];
            if self.cli == "podman" {
                args.extend(["--time", "0"]);
            }
            args.extend(chunk.iter().map(String::as_str));
            let _ = self.try_run(&args);
        }
    }
}
