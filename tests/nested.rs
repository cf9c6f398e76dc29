//! Engines inside containers (issue 14, part 5; what the Go original's companion
//! turtlefinder does): a containerd (or a dockerd with its containerd) of the trixie
//! chroot runs in a mount namespace of its own (`unshare --mount --propagation private`,
//! the chroot bound at a private root with tmpfs on /run and /tmp), so its API socket
//! exists only in that namespace. Discovery must find it by its process and dial it through
//! `/proc/PID/root`, and a watcher on it (and `whalewatch --auto ps --json`) must list its
//! container with the PID the engine reports, which we check against the host's view of
//! that process:
//!
//! - engine in the host's PID namespace: the PID is the host PID of the container's init;
//! - engine in a PID (and network) namespace of its own (`unshare --pid --fork --net`): the
//!   PID is the one in the *engine's* namespace; the host PID differs, and the host's
//!   `/proc/<host pid>/status` `NSpid:` line reads `host engine-ns container-ns` (e.g.
//!   `28448 66 1`).
//!
//! Needs root, unshare/nsenter and the trixie chroot (`bash tests/engines/up.sh trixie
//! --chroot-only`); runs only with WHALEWATCHER_NESTED=1:
//!
//!     WHALEWATCHER_NESTED=1 cargo test --test nested -- --nocapture
#![cfg(all(feature = "containerd", feature = "serde"))]

mod support;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use whalewatcher::discover::{self, DiscoverOptions, Found, Source};
use whalewatcher::{EngineKind, Watcher, WatcherOptions};

const WAIT: Duration = Duration::from_secs(30);
/// The containerd namespace of the nested containers.
const NS: &str = "nested-test";

/// Mounts (inside the new mount namespace only) and starts the chroot's containerd.
/// $1 = chroot, $2 = private dir (its `root` is the mount point), $3 = socket address,
/// $4 = containerd or dockerd, $5 = dockerd's cgroup parent.
const SETUP: &str = r#"set -eu
R=$1 N=$2 A=$3 E=$4 G=$5
mount --bind "$R" "$N/root"
mount --make-private "$N/root"
mount -t proc proc "$N/root/proc"
mount --rbind /sys "$N/root/sys"; mount --make-rslave "$N/root/sys"
mount --rbind /dev "$N/root/dev"; mount --make-rslave "$N/root/dev"
for d in run tmp; do mount -t tmpfs -o mode=755 tmpfs "$N/root/$d"; done
F=$N/root/tmp/rootfs
mkdir -p "$F/bin" "$F/proc" "$F/dev" "$F/sys"
cp "$N/root/bin/busybox" "$F/bin/busybox"
ln -s busybox "$F/bin/sleep"
cd /
P=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
if [ "$E" = dockerd ]; then
  tar -C "$F" -cf "$N/root/tmp/rootfs.tar" .
  # Its default socket /var/run/docker.sock (/var/run -> /run inside: an absolute link).
  exec chroot "$N/root" env PATH=$P dockerd --iptables=false --ip6tables=false \
    --ip-masq=false --bridge=none --storage-driver=vfs --data-root /run/docker-data \
    --cgroup-parent "$G"
fi
exec chroot "$N/root" env PATH=$P \
  containerd --root /run/containerd-root --state /run/containerd-state --address "$A"
"#;

fn enabled() -> bool {
    if std::env::var("WHALEWATCHER_NESTED").as_deref() == Ok("1") {
        return true;
    }
    eprintln!(
        "nested: not part of the default run (needs root and the trixie chroot); \
         run `bash tests/engines/up.sh trixie --chroot-only` then \
         `WHALEWATCHER_NESTED=1 cargo test --test nested`"
    );
    false
}

fn chroot() -> PathBuf {
    let base = std::env::var("WHALEWATCHER_CHROOTS")
        .unwrap_or_else(|_| "/var/cache/whalewatcher/chroots".into());
    let r = PathBuf::from(base).join("trixie");
    assert!(
        r.join(".whalewatcher-ready").exists(),
        "no trixie chroot at {}: run `bash tests/engines/up.sh trixie --chroot-only`",
        r.display()
    );
    r
}

fn is_socket(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

fn poll<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `/proc/PID/status` field `name`.
fn status_field(pid: u32, name: &str) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// A containerd or dockerd in a mount namespace (and optionally a PID namespace) of its
/// own.
struct Nested {
    dir: PathBuf,
    /// "containerd" or "dockerd".
    engine: &'static str,
    /// The socket path as the engine binds it (inside).
    address: String,
    /// dockerd's cgroup parent.
    cgroup_parent: String,
    child: Child,
    /// The engine's PID in the host's PID namespace.
    pid: u32,
    /// Its mount namespace (`mnt:[…]`).
    mnt_ns: String,
    /// The containers started in it: (name, cgroup path).
    ids: Mutex<Vec<(String, String)>>,
}

impl Nested {
    fn start(tag: &str, engine: &'static str, own_pid_ns: bool, address: Option<&str>) -> Nested {
        let dir = PathBuf::from(format!(
            "/tmp/whalewatcher-nested-{}-{tag}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("root")).unwrap();
        std::fs::write(dir.join("setup.sh"), SETUP).unwrap();
        let address = address.map(str::to_string).unwrap_or_else(|| {
            match engine {
                "dockerd" => "/var/run/docker.sock",
                _ => "/run/containerd/containerd.sock",
            }
            .into()
        });
        let cgroup_parent = format!("/whalewatcher-nested-{}-{tag}", std::process::id());
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private"]);
        if own_pid_ns {
            cmd.args(["--pid", "--fork", "--kill-child", "--net"]);
        }
        let child = cmd
            .arg("sh")
            .arg(dir.join("setup.sh"))
            .arg(chroot())
            .arg(&dir)
            .arg(&address)
            .arg(engine)
            .arg(&cgroup_parent)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("unshare");
        let root = dir.join("root");
        let mut n = Nested {
            dir,
            engine,
            address,
            cgroup_parent,
            child,
            pid: 0,
            mnt_ns: String::new(),
            ids: Mutex::new(Vec::new()),
        };
        // The engine: a process of that name whose root is our private root.
        n.pid = poll("the nested engine", || {
            if let Ok(Some(st)) = n.child.try_wait() {
                let log = std::fs::read_to_string(n.dir.join("log")).unwrap_or_default();
                panic!("unshare exited ({st}): {log}");
            }
            support::pids().into_iter().find(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == engine)
                    && std::fs::read_link(format!("/proc/{p}/root")).is_ok_and(|r| r == root)
            })
        });
        n.mnt_ns = std::fs::read_link(format!("/proc/{}/ns/mnt", n.pid))
            .unwrap()
            .display()
            .to_string();
        let inside = n.via_root();
        poll("its socket", || is_socket(&inside).then_some(()));
        poll("its API", || n.cli(&["version"]).ok());
        n
    }

    /// The socket as the host reaches it (inside, /var/run is a link to /run).
    fn via_root(&self) -> PathBuf {
        let path = self.address.replacen("/var/run/", "/run/", 1);
        PathBuf::from(format!("/proc/{}/root{path}", self.pid))
    }

    /// The chroot's ctr (namespace NS) or docker, run in the engine's mount and PID
    /// namespaces and root.
    fn cli(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.pid.to_string(), "-m", "-p", "-r", "-w"]);
        if self.engine == "dockerd" {
            cmd.args(["docker", "-H", &format!("unix://{}", self.address)]);
        } else {
            cmd.args(["ctr", "-a", &self.address, "-n", NS]);
        }
        support::result_of(cmd.args(args).current_dir("/"))
    }

    /// Starts a sleeping container: its id as the engine lists it and its PID as the
    /// engine reports it (`docker inspect`, `ctr tasks ls`).
    fn run(&self, id: &str) -> (String, u32) {
        if self.engine == "dockerd" {
            self.ids
                .lock()
                .unwrap()
                .push((id.to_string(), String::new()));
            if self.cli(&["image", "inspect", "nested:local"]).is_err() {
                self.cli(&["import", "/tmp/rootfs.tar", "nested:local"])
                    .unwrap_or_else(|e| panic!("docker import: {e}"));
            }
            let full = self
                .cli(&[
                    "run",
                    "-d",
                    "--name",
                    id,
                    "--network",
                    "none",
                    "nested:local",
                    "/bin/sleep",
                    "100000",
                ])
                .unwrap_or_else(|e| panic!("docker run {id}: {e}"))
                .trim()
                .to_string();
            self.ids.lock().unwrap().last_mut().unwrap().1 =
                format!("{}/{full}", self.cgroup_parent);
            let pid = self
                .cli(&["inspect", "-f", "{{.State.Pid}}", id])
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            return (full, pid);
        }
        self.ids
            .lock()
            .unwrap()
            .push((id.to_string(), format!("/{NS}/{id}")));
        self.cli(&[
            "run",
            "-d",
            "--rootfs",
            "/tmp/rootfs",
            id,
            "/bin/sleep",
            "100000",
        ])
        .unwrap_or_else(|e| panic!("ctr run {id}: {e}"));
        let ls = self.cli(&["tasks", "ls"]).unwrap();
        let pid = ls
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.first() == Some(&id)).then(|| f.get(1)?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("no task {id} in {ls}"));
        (format!("{NS}/{id}"), pid)
    }
}

impl Drop for Nested {
    fn drop(&mut self) {
        // Containers first (through the engine), then the engine, then what is left of
        // ours: shims (in the engine's mount namespace AND under our root: a namespace inode
        // is reused once the namespace dies) and container processes (in our cgroups).
        let ids = std::mem::take(&mut *self.ids.lock().unwrap());
        for (id, _) in &ids {
            if self.engine == "dockerd" {
                let _ = self.cli(&["rm", "-f", id]);
            } else {
                let _ = self.cli(&["tasks", "kill", "-s", "KILL", id]);
            }
        }
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end
            && ids
                .iter()
                .any(|(_, cg)| !cg.is_empty() && !host_pids_of(cg).is_empty())
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        if self.engine == "containerd" {
            for (id, _) in &ids {
                let _ = self.cli(&["tasks", "delete", id]);
                let _ = self.cli(&["containers", "delete", id]);
            }
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end && Path::new(&format!("/proc/{}", self.pid)).exists() {
            std::thread::sleep(Duration::from_millis(100));
        }
        let root = self.dir.join("root");
        let mut ours: Vec<String> = support::pids()
            .into_iter()
            .filter(|p| {
                !self.mnt_ns.is_empty()
                    && std::fs::read_link(format!("/proc/{p}/ns/mnt"))
                        .is_ok_and(|l| l.display().to_string() == self.mnt_ns)
                    && std::fs::read_link(format!("/proc/{p}/root")).is_ok_and(|r| r == root)
            })
            .chain(
                ids.iter()
                    .filter(|(_, cg)| !cg.is_empty())
                    .flat_map(|(_, cg)| host_pids_of(cg)),
            )
            .map(|p| p.to_string())
            .collect();
        ours.dedup();
        if !ours.is_empty() {
            eprintln!("nested: killing leftovers {ours:?}");
            let _ = Command::new("kill").arg("-KILL").args(&ours).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // The cgroups containerd made (`/NS/id` per controller), if `tasks delete` did not.
        if let Ok(ctls) = std::fs::read_dir("/sys/fs/cgroup") {
            for ctl in ctls.flatten() {
                for (_, cg) in ids.iter().filter(|(_, cg)| !cg.is_empty()) {
                    let _ = std::fs::remove_dir(ctl.path().join(cg.trim_start_matches('/')));
                }
                let parent = if self.engine == "dockerd" {
                    self.cgroup_parent.trim_start_matches('/')
                } else {
                    NS
                };
                let _ = std::fs::remove_dir(ctl.path().join(parent)); // fails while in use
            }
        }
        // Nothing was mounted here in the host's namespace: plain files only.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn find_engine(n: &Nested) -> Found {
    let all = discover::discover(&DiscoverOptions {
        env: false,
        well_known: false,
        ..DiscoverOptions::default()
    });
    all.iter()
        .find(|f| f.pid == Some(n.pid))
        .cloned()
        .unwrap_or_else(|| panic!("nested containerd {} not discovered: {all:#?}", n.pid))
}

/// The watcher's view of container `id` (as listed): its PID.
fn watched_pid(f: &Found, id: &str) -> u32 {
    let w = Watcher::new(f.client().expect("client"), WatcherOptions::default());
    w.wait_ready(WAIT)
        .expect("watcher on the nested engine syncs");
    let pid = poll("the watcher to list the nested container", || {
        let p = w.portfolio();
        let c = p.iter().find(|c| c.id == id)?;
        Some(c.pid)
    });
    w.close();
    pid
}

/// The PID `whalewatch --auto ps --json` (the CLI example, built here) gives container
/// `id` (as listed).
fn cli_pid(id: &str) -> u64 {
    let out = Command::new(support::whalewatch_binary())
        .args(["--auto", "ps", "--json"])
        .current_dir("/")
        .output()
        .expect("whalewatch");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let want = id;
    all.as_array()
        .and_then(|a| a.iter().find(|c| c["id"] == want))
        .and_then(|c| c["pid"].as_u64())
        .unwrap_or_else(|| panic!("{want} not in `whalewatch --auto ps --json`: {all}"))
}

/// The host PIDs of the processes in a cgroup (a container's: `/NS/id` for containerd).
fn host_pids_of(cgroup: &str) -> Vec<u32> {
    let needle = format!(":{cgroup}\n");
    support::pids()
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cgroup"))
                .is_ok_and(|c| format!("{c}\n").contains(&needle))
        })
        .collect()
}

#[test]
fn nested_engine_in_the_host_pid_namespace() {
    if !enabled() {
        return;
    }
    let n = Nested::start("shared", "containerd", false, None);
    // From the host the bound path is not this engine's socket (nothing, or another).
    let bound = Path::new(&n.address);
    let inside = n.via_root();
    assert!(
        !is_socket(bound)
            || std::fs::metadata(bound).unwrap().ino() != std::fs::metadata(&inside).unwrap().ino(),
        "{} is reachable from the host mount namespace",
        n.address
    );
    let f = find_engine(&n);
    eprintln!("nested (host PID ns): found {f:?}");
    assert_eq!(f.kind, EngineKind::Containerd);
    assert_eq!(f.api_path, inside.display().to_string());
    assert_eq!(f.source, Source::Process);
    assert_eq!(f.managed_by, None);
    let id = format!("ww-nested-{}", std::process::id());
    let (listed, reported) = n.run(&id);
    let watched = watched_pid(&f, &listed);
    assert_eq!(
        cli_pid(&listed),
        u64::from(reported),
        "whalewatch --auto ps --json"
    );
    let host = host_pids_of(&format!("/{NS}/{id}"));
    let nspid = status_field(reported, "NSpid");
    eprintln!(
        "nested (host PID ns): ctr says pid {reported}, watcher {watched}, host processes \
         of the container {host:?}, /proc/{reported}/status NSpid: {nspid:?}"
    );
    assert_eq!(watched, reported);
    // Same PID namespace: the engine's PID is the host's.
    assert_eq!(host, vec![reported], "the container's only process");
    // runc's `start` returns when its init is about to exec: the command shortly after.
    poll("the container's process to be sleep", || {
        std::fs::read_to_string(format!("/proc/{reported}/comm"))
            .is_ok_and(|c| c.trim() == "sleep")
            .then_some(())
    });
    // host PID, then 1 in the container's own PID namespace.
    assert_eq!(nspid, Some(format!("{reported} 1")));
}

#[test]
fn nested_engine_in_its_own_pid_namespace() {
    if !enabled() {
        return;
    }
    // The engine binds a path that, from the host, is another socket (a decoy): discovery
    // must still dial the engine's own socket through /proc/PID/root.
    let decoy_dir = TempDir(PathBuf::from(format!(
        "/tmp/whalewatcher-nested-{}-decoy",
        std::process::id()
    )));
    let _ = std::fs::remove_dir_all(&decoy_dir.0);
    std::fs::create_dir_all(&decoy_dir.0).unwrap();
    let address = decoy_dir.0.join("containerd.sock").display().to_string();
    let _decoy = UnixListener::bind(&address).unwrap();
    let n = Nested::start("pidns", "containerd", true, Some(&address));
    let inside = n.via_root();
    assert_ne!(
        std::fs::metadata(&address).unwrap().ino(),
        std::fs::metadata(&inside).unwrap().ino()
    );
    let engine_nspid = status_field(n.pid, "NSpid").unwrap();
    let f = find_engine(&n);
    eprintln!("nested (own PID ns, engine NSpid {engine_nspid}): found {f:?}");
    assert_eq!(
        engine_nspid,
        format!("{} 1", n.pid),
        "containerd is PID 1 inside"
    );
    assert_eq!(f.kind, EngineKind::Containerd);
    assert_eq!(f.api_path, inside.display().to_string());
    assert_eq!(f.source, Source::Process);
    // Its network namespace is its own too: its listening socket is in another
    // /proc/PID/net/unix table than ours.
    assert_ne!(
        std::fs::read_link(format!("/proc/{}/ns/net", n.pid)).unwrap(),
        std::fs::read_link("/proc/self/ns/net").unwrap()
    );
    let id = format!("ww-nested-pidns-{}", std::process::id());
    let (listed, reported) = n.run(&id);
    let watched = watched_pid(&f, &listed);
    assert_eq!(
        cli_pid(&listed),
        u64::from(reported),
        "whalewatch --auto ps --json"
    );
    let host = host_pids_of(&format!("/{NS}/{id}"));
    assert_eq!(host.len(), 1, "the container's only process: {host:?}");
    let host_pid = host[0];
    let nspid = status_field(host_pid, "NSpid");
    eprintln!(
        "nested (own PID ns): ctr says pid {reported}, watcher {watched}, host PID {host_pid}, \
         /proc/{host_pid}/status NSpid: {nspid:?}"
    );
    assert_eq!(watched, reported);
    // The reported PID is the engine namespace's: host PID, engine-ns PID, container PID 1.
    assert_eq!(nspid, Some(format!("{host_pid} {reported} 1")));
    assert_ne!(host_pid, reported);
    // /proc/<reported> on the host is not the container (another process, or none).
    assert!(!host_pids_of(&format!("/{NS}/{id}")).contains(&reported));
}

/// Docker-in-docker: a dockerd of the trixie chroot (with the containerd it runs) in a
/// mount namespace of its own, on its default socket `/var/run/docker.sock`: inside,
/// `/var/run` is an absolute link to `/run`, which discovery must resolve inside the
/// engine's root (the kernel would resolve it against ours).
#[test]
fn nested_dockerd() {
    if !enabled() {
        return;
    }
    let n = Nested::start("dockerd", "dockerd", false, None);
    let inside = n.via_root();
    let f = find_engine(&n);
    eprintln!("nested dockerd: found {f:?}");
    assert_eq!(f.kind, EngineKind::Docker);
    assert_eq!(f.api_path, inside.display().to_string());
    assert_eq!(f.source, Source::Process);
    // Its containerd: seen by scan(), managed by the nested dockerd, not watched twice.
    let all = discover::scan(&DiscoverOptions {
        env: false,
        well_known: false,
        ..DiscoverOptions::default()
    });
    let managed = all
        .iter()
        .find(|g| g.managed_by == Some(n.pid))
        .unwrap_or_else(|| panic!("no containerd managed by {}: {all:#?}", n.pid));
    eprintln!("nested dockerd: its containerd {managed:?}");
    assert_eq!(managed.kind, EngineKind::Containerd);
    assert!(managed.api_path.starts_with("/proc/"), "{managed:?}");
    let id = format!("ww-nested-dind-{}", std::process::id());
    let (listed, reported) = n.run(&id);
    let watched = watched_pid(&f, &listed);
    assert_eq!(
        cli_pid(&listed),
        u64::from(reported),
        "whalewatch --auto ps --json"
    );
    let host = host_pids_of(&format!("{}/{listed}", n.cgroup_parent));
    eprintln!(
        "nested dockerd: docker inspect says pid {reported}, watcher {watched}, host processes \
         of the container {host:?}"
    );
    assert_eq!(watched, reported);
    assert_eq!(host, vec![reported], "host PID namespace: the host's PID");
}

/// A directory removed on drop (also when the test panics).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
