//! THE docker/podman CLI driver ([`Cli`]), and ground truth from `docker inspect` JSON.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;
use whalewatcher::container::PRIVILEGED_LABEL;

/// The labels a Docker container should carry in the portfolio: its config labels, plus
/// the privileged marker label for privileged containers.
pub fn docker_labels(v: &Value) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = v["Config"]["Labels"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    if v["HostConfig"]["Privileged"].as_bool() == Some(true) {
        labels.insert(PRIVILEGED_LABEL.to_string(), String::new());
    }
    labels
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

/// A Docker-API engine driven by its CLI (`docker -H URL` or `podman --url URL`); usable
/// from several threads. Containers made through [`Cli::name`] are removed on drop.
pub struct Cli {
    pub cli: &'static str,
    pub flag: &'static str,
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

    /// Runs the CLI: `Ok(stdout)` or `Err(stderr)`.
    pub fn try_run(&self, args: &[&str]) -> Result<String, String> {
        let mut attempt = 0;
        let out = loop {
            let out = std::process::Command::new(self.cli)
                .args([self.flag, self.url.as_str()])
                .args(args)
                .output()
                .map_err(|e| e.to_string())?;
            attempt += 1;
            if !out.status.success() && attempt < 3 {
                let stderr = String::from_utf8_lossy(&out.stderr);
                if let Some(rm) = crate::support::runc_init_flake(args, &stderr) {
                    let _ = std::process::Command::new(self.cli)
                        .args([self.flag, self.url.as_str()])
                        .args(&rm)
                        .output();
                    continue;
                }
            }
            break out;
        };
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs the CLI; panics on failure.
    pub fn run(&self, args: &[&str]) -> String {
        self.try_run(args)
            .unwrap_or_else(|e| panic!("{} {args:?} failed: {e}", self.cli))
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
        let image = std::env::var("WHALEWATCHER_IMAGE").unwrap_or_else(|_| "busybox:sleep".into());
        let mut args = vec!["run", "-d", "--network", "none", "--name", name];
        args.extend_from_slice(extra);
        args.push(&image);
        self.run(&args).trim().to_string()
    }

    /// `run -d` of the plain image with a shell command; returns the id.
    pub fn start_sh(&self, name: &str, script: &str) -> String {
        let image =
            std::env::var("WHALEWATCHER_PLAIN_IMAGE").unwrap_or_else(|_| "busybox:local".into());
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

    /// All running or paused containers, from `ps` + `inspect`; `None` when a container
    /// vanished in between (try again).
    pub fn truth(&self) -> Option<BTreeMap<String, Snap>> {
        let ids = self
            .try_run(&[
                "ps",
                "-a",
                "-q",
                "--no-trunc",
                "--filter",
                "status=running",
                "--filter",
                "status=paused",
            ])
            .ok()?;
        let ids: Vec<&str> = ids.lines().filter(|l| !l.is_empty()).collect();
        if ids.is_empty() {
            return Some(BTreeMap::new());
        }
        let mut args = vec!["inspect"];
        args.extend(&ids);
        let all: Vec<Value> = serde_json::from_str(&self.try_run(&args).ok()?).ok()?;
        let mut out = BTreeMap::new();
        for v in &all {
            let pid = v["State"]["Pid"].as_u64().unwrap_or(0) as u32;
            if pid == 0 {
                return None; // exited in between
            }
            let labels = crate::support::cli::docker_labels(v);
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
            out.insert(v["Id"].as_str()?.to_string(), snap);
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
