//! A private, throw-away dockerd for kill/restart tests: its own directory, socket,
//! data-root, exec-root and pidfile. Dropping it removes its containers, stops it, ends
//! every process it left behind (found by the private directory in their command line),
//! unmounts what is left under the directory and removes it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct PrivateDockerd {
    pub dir: PathBuf,
    pub url: String,
    child: Option<Child>,
}

impl PrivateDockerd {
    /// Starts dockerd under `/tmp/ww-restart-<pid>` and imports the busybox images from
    /// the shared engines' tarball. `None` (loudly) when dockerd cannot run here.
    pub fn start() -> PrivateDockerd {
        let dir = PathBuf::from(format!("/tmp/ww-restart-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("unix://{}/docker.sock", dir.display());
        let mut d = PrivateDockerd {
            dir,
            url,
            child: None,
        };
        d.launch();
        let engines = std::env::var("WHALEWATCHER_ENGINES_DIR")
            .unwrap_or_else(|_| "/tmp/whalewatcher-engines".into());
        let tar = format!("{engines}/images/busybox.tar");
        d.docker(&[
            "import",
            "--change",
            r#"ENTRYPOINT ["/bin/sleep","2147483647"]"#,
            &tar,
            "busybox:sleep",
        ])
        .expect("import busybox:sleep");
        d
    }

    /// (Re)starts dockerd with the same flags and waits until it answers.
    pub fn launch(&mut self) {
        self.forget_dead_containerd();
        let p = |s: &str| self.dir.join(s).display().to_string();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log"))
            .unwrap();
        let child = Command::new("dockerd")
            .args([
                "--iptables=false",
                "--ip-masq=false",
                "--bridge=none",
                "--storage-driver=vfs",
                "-H",
                &self.url,
                "--data-root",
                &p("data"),
                "--exec-root",
                &p("exec"),
                "--pidfile",
                &p("docker.pid"),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot run dockerd");
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(60);
        while self.docker(&["version"]).is_err() {
            if Instant::now() > end {
                let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
                let log: Vec<&str> = log.lines().filter(|l| !l.contains("[core]")).collect();
                let tail = log[log.len().saturating_sub(40)..].join("\n");
                panic!("private dockerd did not come up; log tail:\n{tail}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// dockerd reuses the containerd named in its pidfile while that pid exists; after a
    /// SIGKILL its containerd child may linger as an unreaped zombie (this machine's init
    /// does not always reap), which dockerd would wait for forever: drop such a pidfile.
    fn forget_dead_containerd(&self) {
        let pidfile = self.dir.join("exec/containerd/containerd.pid");
        let Ok(pid) = std::fs::read_to_string(&pidfile) else {
            return;
        };
        let dead = match pid.trim().parse() {
            Ok(pid) => crate::support::is_dead(pid),
            Err(_) => true,
        };
        if dead {
            let _ = std::fs::remove_file(&pidfile);
        }
    }

    /// SIGKILLs dockerd and its containerd (the containers' shims live on), as when the
    /// engine crashes. (A containerd left behind keeps dockerd from starting again here.)
    pub fn kill9(&mut self) {
        self.kill9_dockerd();
        self.kill9_containerd();
    }

    /// SIGKILLs dockerd only: its containerd, orphaned, dies of its parent-death signal
    /// (dockerd 20.10 and 26 start it so) or, if not, by [`kill9_containerd`](Self::kill9_containerd).
    pub fn kill9_dockerd(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILLs the containerd that dockerd started (found by its config file).
    /// Returns once each is dead: SIGKILL is delivered asynchronously, and a containerd
    /// still running when [`launch`](Self::launch) reads the pidfile would make the new
    /// dockerd wait for it ("libcontainerd: containerd is still running", then "timeout
    /// waiting for containerd to start"), as CI once saw.
    pub fn kill9_containerd(&mut self) {
        let config = self.dir.join("exec/containerd/containerd.toml");
        let pids = processes_with(&config.display().to_string());
        for pid in &pids {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        crate::support::wait_until(
            Duration::from_secs(30),
            "the SIGKILLed containerd to die",
            || pids.iter().all(|&pid| crate::support::is_dead(pid)),
        );
    }

    /// `docker -H <private socket> args`.
    pub fn docker(&self, args: &[&str]) -> Result<String, String> {
        crate::support::try_run_with("docker", &["-H", &self.url], args)
    }
}

/// PIDs of processes whose command line mentions `dir`.
fn processes_under(dir: &Path) -> Vec<u32> {
    processes_with(&dir.display().to_string())
}

/// PIDs of processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    crate::support::pids()
        .into_iter()
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}

impl Drop for PrivateDockerd {
    fn drop(&mut self) {
        if let Ok(ids) = self.docker(&["ps", "-aq"]) {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids);
                let _ = self.docker(&args);
            }
        }
        if let Some(c) = &self.child {
            let _ = Command::new("kill").arg(c.id().to_string()).status();
        }
        if let Some(mut c) = self.child.take() {
            let end = Instant::now() + Duration::from_secs(15);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // containerd, shims and anything else started for this directory.
        for pid in processes_under(&self.dir) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        for m in crate::support::mount_points_under(&self.dir.display().to_string()) {
            let _ = Command::new("umount").args(["-l", &m]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
