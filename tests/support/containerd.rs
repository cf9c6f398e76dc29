//! containerd for the watcher tests: [`Ctr`] drives one namespace through the `ctr` CLI
//! (ground truth from `ctr tasks ls`), [`PrivateContainerd`] is a throw-away containerd
//! instance for kill/restart tests.
//!
//! Both clean up on drop: every task of the namespace is killed and deleted, its
//! containers, images and the namespace removed; a private instance is also stopped, and
//! whatever it left behind (shims, task processes, mounts, cgroups, its directory) removed,
//! even after a failed test that left it down.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use whalewatcher::Watcher;

/// The test image (imported into namespace `default` of the shared containerd).
pub fn image() -> String {
    std::env::var("WHALEWATCHER_CTR_IMAGE")
        .unwrap_or_else(|_| "docker.io/library/busybox:sleep".into())
}

/// `ctr -a SOCK -n NS` for one namespace.
pub struct Ctr {
    pub sock: String,
    pub ns: String,
    pub image: String,
    runc_root: Option<String>,
    cleanup: Cleanup,
}

/// What a [`Ctr`] removes when dropped.
enum Cleanup {
    Nothing,
    /// The namespace's contents and the namespace itself.
    Namespace,
    /// The containers started through it (in a shared namespace).
    Started(std::sync::Mutex<Vec<String>>),
}

/// (pid, paused) by display id (`ns/id`).
pub type Tasks = BTreeMap<String, (u32, bool)>;

impl Ctr {
    /// A driver of namespace `ns` at `sock`, whose tasks use `runc_root`; with
    /// `clean_on_drop` it empties and removes the namespace when dropped.
    pub fn new(sock: &str, ns: &str, runc_root: Option<String>, clean_on_drop: bool) -> Ctr {
        assert!(
            !(clean_on_drop && (ns == "default" || ns == "k8s.io" || ns == "moby")),
            "refusing to clear shared namespace {ns}"
        );
        Ctr {
            sock: sock.into(),
            ns: ns.into(),
            image: image(),
            runc_root,
            cleanup: if clean_on_drop {
                Cleanup::Namespace
            } else {
                Cleanup::Nothing
            },
        }
    }

    /// A driver of namespace `default` of the shared containerd at `sock` (runc root
    /// `WHALEWATCHER_CTR_RUNC_ROOT`) that removes the containers started through it when
    /// dropped.
    pub fn shared(sock: &str) -> Ctr {
        Ctr {
            sock: sock.into(),
            ns: "default".into(),
            image: image(),
            runc_root: std::env::var("WHALEWATCHER_CTR_RUNC_ROOT").ok(),
            cleanup: Cleanup::Started(Default::default()),
        }
    }

    /// Registers container `id` for removal on drop (for a [`Ctr::shared`] driver).
    fn started(&self, id: &str) {
        if let Cleanup::Started(ids) = &self.cleanup {
            ids.lock().unwrap().push(id.to_string());
        }
    }

    /// Runs `ctr -a SOCK -n NS args`: `Ok(stdout)` or `Err(stderr)`.
    pub fn try_run(&self, args: &[&str]) -> Result<String, String> {
        crate::support::try_run_with("ctr", &["-a", &self.sock, "-n", &self.ns], args)
    }

    /// Runs `ctr`; panics on failure.
    pub fn run(&self, args: &[&str]) -> String {
        self.try_run(args)
            .unwrap_or_else(|e| panic!("ctr -n {} {args:?} failed: {e}", self.ns))
    }

    /// True when containerd answers.
    pub fn alive(&self) -> bool {
        self.try_run(&["version"]).is_ok()
    }

    /// Copies the test image from namespace `from_ns` of the containerd at `from_sock`
    /// into this namespace.
    pub fn import_image(&self, from_sock: &str, from_ns: &str) {
        let script = format!(
            "set -o pipefail; ctr -a '{fs}' -n '{fns}' images export {l} - '{i}' | ctr -a '{s}' -n '{ns}' images import {l} -",
            l = crate::support::CTR_LOCAL,
            fs = from_sock,
            fns = from_ns,
            i = self.image,
            s = self.sock,
            ns = self.ns
        );
        crate::support::run("bash", &["-c", &script]);
    }

    /// The display id of container `id` of this namespace, as the watcher shows it.
    pub fn display(&self, id: &str) -> String {
        if self.ns == "default" {
            id.to_string()
        } else {
            format!("{}/{id}", self.ns)
        }
    }

    /// `ctr run -d` of the blocking image as container `id` with `labels`.
    pub fn start(&self, id: &str, labels: &[(&str, &str)]) {
        self.started(id);
        let mut args: Vec<String> = vec!["run".into(), "-d".into()];
        if let Some(r) = &self.runc_root {
            args.extend(["--runc-root".into(), r.clone()]);
        }
        for (k, v) in labels {
            args.extend(["--label".into(), format!("{k}={v}")]);
        }
        args.extend([self.image.clone(), id.into()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&args);
    }

    /// `ctr run -d` of the test image as container `id` with `labels`, running
    /// `sh -c script` instead of the image's entrypoint.
    pub fn start_sh(&self, id: &str, labels: &[(&str, &str)], script: &str) {
        self.started(id);
        let mut args: Vec<String> = vec!["run".into(), "-d".into()];
        if let Some(r) = &self.runc_root {
            args.extend(["--runc-root".into(), r.clone()]);
        }
        for (k, v) in labels {
            args.extend(["--label".into(), format!("{k}={v}")]);
        }
        args.extend([
            self.image.clone(),
            id.into(),
            "sh".into(),
            "-c".into(),
            script.into(),
        ]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run(&args);
    }

    /// Deletes the stopped task of `id` with `ctr tasks rm` and returns the exit code it
    /// reports (ctr warns of non-zero ones; no warning means 0).
    pub fn delete_task(&self, id: &str) -> i32 {
        let out = Command::new("ctr")
            .args(["-a", &self.sock, "-n", &self.ns, "tasks", "rm", id])
            .output()
            .unwrap();
        assert!(out.status.success(), "ctr tasks rm {id}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        match err.split("exit with non-zero exit code ").nth(1) {
            Some(rest) => rest
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap_or_else(|_| panic!("cannot read the exit code in {err:?}")),
            None => 0,
        }
    }

    /// The labels of container `id`, from `ctr containers info`.
    #[cfg(any(feature = "docker", feature = "serde", feature = "cri"))]
    pub fn labels(&self, id: &str) -> BTreeMap<String, String> {
        let info: serde_json::Value =
            serde_json::from_str(&self.run(&["containers", "info", id])).unwrap();
        crate::support::string_map(&info["Labels"])
    }

    /// Every task of the namespace: id → (pid, status), from `ctr tasks ls`.
    pub fn tasks(&self) -> Option<BTreeMap<String, (u32, String)>> {
        let out = self.try_run(&["tasks", "ls"]).ok()?;
        let mut tasks = BTreeMap::new();
        for line in out.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if let [id, pid, status] = f[..] {
                tasks.insert(id.to_string(), (pid.parse().ok()?, status.to_string()));
            }
        }
        Some(tasks)
    }

    /// Ground truth: the RUNNING and PAUSED tasks by display id; `None` while a task is in
    /// a passing state (created, pausing) or `ctr` fails.
    pub fn truth(&self) -> Option<Tasks> {
        let mut alive = BTreeMap::new();
        for (id, (pid, status)) in self.tasks()? {
            match status.as_str() {
                "RUNNING" => alive.insert(self.display(&id), (pid, false)),
                "PAUSED" => alive.insert(self.display(&id), (pid, true)),
                "STOPPED" => None,
                _ => return None,
            };
        }
        Some(alive)
    }

    /// Kills the task of `id` (thawing it first) and deletes task and container.
    pub fn remove(&self, id: &str) {
        let _ = self.try_run(&["tasks", "resume", id]);
        let _ = self.try_run(&["tasks", "kill", "-s", "KILL", id]);
        self.delete_when_stopped(id);
    }

    fn delete_when_stopped(&self, id: &str) {
        let end = Instant::now() + Duration::from_secs(10);
        while self.try_run(&["tasks", "rm", id]).is_err()
            && self
                .tasks()
                .is_some_and(|t| t.contains_key(id) && t[id].1 != "STOPPED")
            && Instant::now() < end
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.try_run(&["tasks", "rm", id]);
        let _ = self.try_run(&["containers", "rm", id]);
    }

    /// Kills and deletes every task and container of the namespace, its images, and the
    /// namespace itself (with its cgroup).
    pub fn clear_namespace(&self) {
        let ids = self
            .try_run(&["containers", "ls", "-q"])
            .unwrap_or_default();
        let ids: Vec<&str> = ids.lines().filter(|l| !l.is_empty()).collect();
        for id in &ids {
            let _ = self.try_run(&["tasks", "resume", id]);
            let _ = self.try_run(&["tasks", "kill", "-s", "KILL", id]);
        }
        for id in &ids {
            self.delete_when_stopped(id);
        }
        let _ = self.try_run(&["images", "rm", "--sync", &self.image]);
        let end = Instant::now() + Duration::from_secs(10);
        // Garbage collection of content and snapshots may lag the image removal.
        while self
            .try_run(&["namespaces", "rm", "--cgroup", &self.ns])
            .is_err()
            && Instant::now() < end
        {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Ctr {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Nothing => {}
            Cleanup::Namespace => {
                if self.alive() {
                    self.clear_namespace();
                }
            }
            Cleanup::Started(ids) => {
                for id in ids.lock().unwrap().iter() {
                    self.remove(id);
                }
            }
        }
    }
}

/// The watcher's containers of namespace `ns` in the shape of [`Ctr::truth`].
pub fn view_ns(w: &Watcher, ns: &str) -> Tasks {
    let prefix = format!("{ns}/");
    w.portfolio()
        .iter()
        .filter(|c| c.id.starts_with(&prefix))
        .map(|c| (c.id.clone(), (c.pid, c.paused)))
        .collect()
}

/// A private containerd under `/tmp/ww-ctrd-<pid>-<n>`: own root, state, runc root, gRPC
/// and ttrpc sockets, no CRI plugin. Its tests use namespace `wwr-<pid>-<n>` only, so that
/// container cgroups (`/<ns>/<id>`, shared by all containerd instances) never collide.
pub struct PrivateContainerd {
    pub dir: PathBuf,
    pub sock: String,
    pub ns: String,
    child: Option<Child>,
}

impl PrivateContainerd {
    /// Writes the config, starts containerd and imports the test image from the shared
    /// containerd at `shared_sock` (namespace `default`).
    pub fn start(shared_sock: &str) -> PrivateContainerd {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let pid = std::process::id();
        let dir = PathBuf::from(format!("/tmp/ww-ctrd-{pid}-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display().to_string();
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{d}/opt"
"#
        );
        std::fs::write(dir.join("config.toml"), config).unwrap();
        let mut p = PrivateContainerd {
            sock: format!("{d}/containerd.sock"),
            ns: format!("wwr-{pid}-{n}"),
            dir,
            child: None,
        };
        if let Err(e) = p.try_launch() {
            panic!("{e}");
        }
        p.ctr().import_image(shared_sock, "default");
        p
    }

    /// A driver of the private namespace (cleaned up by this instance's drop).
    pub fn ctr(&self) -> Ctr {
        let runc = self.dir.join("runc").display().to_string();
        Ctr::new(&self.sock, &self.ns, Some(runc), false)
    }

    /// (Re)starts containerd with the same config and waits until it answers.
    pub fn launch(&mut self) {
        if let Err(e) = self.try_launch() {
            panic!("{e}");
        }
    }

    fn try_launch(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log"))
            .map_err(|e| e.to_string())?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(self.dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run containerd: {e}"))?;
        self.child = Some(child);
        let ctr = self.ctr();
        let end = Instant::now() + Duration::from_secs(60);
        while !ctr.alive() {
            if Instant::now() > end {
                let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                return Err(format!(
                    "private containerd did not come up; log tail:\n{tail}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// SIGKILLs containerd, as when it crashes; the shims and their tasks live on.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The PID of the shim of task `id` (of this instance's namespace), from /proc.
    pub fn shim_pid(&self, id: &str) -> Option<u32> {
        let want = ["-namespace", &self.ns, "-id", id, "-address", &self.sock];
        crate::support::pids().into_iter().find(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
            args.first()
                .is_some_and(|a| a.ends_with(b"containerd-shim-runc-v2"))
                && want.windows(2).step_by(2).all(|kv| {
                    args.windows(2)
                        .any(|a| a[0] == kv[0].as_bytes() && a[1] == kv[1].as_bytes())
                })
        })
    }

    /// Ends our containerd child: SIGTERM, then SIGKILL after 10 s.
    fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill").arg(c.id().to_string()).status();
        let end = Instant::now() + Duration::from_secs(10);
        while c.try_wait().ok().flatten().is_none() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// PIDs (other than ours) whose command line contains `needle`, or which live in a cgroup
/// whose path starts with `cgroup_prefix`.
fn leftovers(needle: &str, cgroup_prefix: &str) -> Vec<u32> {
    let me = std::process::id();
    crate::support::pids()
        .into_iter()
        .filter(|&pid| pid != me)
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            String::from_utf8_lossy(&cmd).contains(needle)
                || cg.lines().any(|l| {
                    l.splitn(3, ':')
                        .nth(2)
                        .is_some_and(|p| p.starts_with(cgroup_prefix))
                })
        })
        .collect()
}

impl Drop for PrivateContainerd {
    fn drop(&mut self) {
        // A test that failed while containerd was down: bring it back to clean up properly.
        if self.child.is_none() {
            let _ = self.try_launch();
        }
        let ctr = self.ctr();
        let ids = ctr.try_run(&["containers", "ls", "-q"]).unwrap_or_default();
        if ctr.alive() {
            ctr.clear_namespace();
        }
        self.stop();
        // Whatever survived: task processes (by cgroup), shims and containerd (by dir).
        let dir = self.dir.display().to_string();
        let cgroup = format!("/{}/", self.ns);
        for pid in leftovers(&dir, &cgroup) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        for m in crate::support::mount_points_under(&dir) {
            let _ = Command::new("umount").args(["-l", &m]).status();
        }
        // Empty cgroups of the namespace, children first.
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let ns_dir = hierarchy.path().join(&self.ns);
            for sub in std::fs::read_dir(&ns_dir).into_iter().flatten().flatten() {
                if sub.path().is_dir() {
                    let _ = std::fs::remove_dir(sub.path());
                }
            }
            let _ = std::fs::remove_dir(&ns_dir);
        }
        // A shim that was killed leaves its socket behind.
        for id in ids.lines().filter(|l| !l.is_empty()) {
            if let Some(path) = shim_socket(&self.sock, &self.ns, id) {
                let _ = std::fs::remove_file(path);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// containerd 1.6 puts a shim's socket at /run/containerd/s/<sha256 of "address/ns/id">.
fn shim_socket(address: &str, ns: &str, id: &str) -> Option<PathBuf> {
    let out = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin
                .take()
                .expect("piped stdin")
                .write_all(format!("{address}/{ns}/{id}").as_bytes())?;
            c.wait_with_output()
        })
        .ok()?;
    let hex = String::from_utf8_lossy(&out.stdout);
    let hex = hex.split_whitespace().next()?;
    (hex.len() == 64).then(|| PathBuf::from(format!("/run/containerd/s/{hex}")))
}
