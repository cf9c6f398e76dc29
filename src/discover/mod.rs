//! Engine discovery: which container engines run on this node, where their API sockets
//! are, and their PIDs — without the user knowing any socket path.
//!
//! Three sources, merged by socket path (after resolving symlinks such as
//! `/var/run` → `/run`):
//! 1. a `/proc` scan: processes named `dockerd`, `containerd`, `crio` and `podman` and the
//!    Unix sockets they listen on (the socket inodes of `/proc/PID/fd` matched against
//!    `/proc/PID/net/unix`); this finds engines on private sockets and gives their PIDs;
//! 2. the environment: `DOCKER_HOST`, `CONTAINERD_ADDRESS`, `CONTAINER_RUNTIME_ENDPOINT`;
//! 3. the well-known sockets ([`WELL_KNOWN`], plus `$XDG_RUNTIME_DIR/podman/podman.sock`).
//!
//! Rules:
//! - A containerd that a dockerd manages (its parent is a dockerd, its socket lies in a
//!   dockerd's exec-root or in a `docker/containerd/` directory, or it runs with the config
//!   file that dockerd writes beside the socket, `containerd.toml`: dockerd's layout, which
//!   also tells a containerd left behind by a crashed dockerd) is watched through Docker,
//!   not twice: it is reported with [`Found::managed_by`] set, and [`discover`] leaves it
//!   out.
//! - **A standalone containerd is watched natively only, by default.** Its CRI plugin (if
//!   any) serves the same containers again, under other ids; set
//!   [`DiscoverOptions::cri_for_containerd`] to also get a [`EngineKind::Cri`] entry on the same
//!   socket. cri-o only speaks CRI and is always a [`EngineKind::Cri`] engine.
//! - dockerd's helper sockets (`metrics.sock`, libnetwork and plugin sockets) and
//!   containerd's ttrpc and debug sockets are not API sockets and are skipped.
//!
//! An engine is identified by its kind, socket path, PID and the socket file's inode
//! ([`Found::identity`]): a restarted engine gets a new PID and a new socket inode.
#![forbid(unsafe_code)]

mod procfs;

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::endpoint;
use crate::engine::{EngineClient, EngineKind};
use crate::error::Result;

/// The well-known API sockets and the engine kind each one belongs to.
pub const WELL_KNOWN: &[(&str, EngineKind)] = &[
    ("/run/docker.sock", EngineKind::Docker),
    ("/var/run/docker.sock", EngineKind::Docker),
    ("/run/containerd/containerd.sock", EngineKind::Containerd),
    (
        "/var/run/containerd/containerd.sock",
        EngineKind::Containerd,
    ),
    (
        "/run/k3s/containerd/containerd.sock",
        EngineKind::Containerd,
    ),
    ("/run/crio/crio.sock", EngineKind::Cri),
    ("/var/run/crio/crio.sock", EngineKind::Cri),
    ("/run/podman/podman.sock", EngineKind::Podman),
];

/// Where an engine was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// A process listening on the socket (the PID is known).
    Process,
    /// An environment variable.
    Env,
    /// A well-known socket path.
    WellKnown,
}

/// One discovered engine API.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Found {
    /// Which API.
    pub kind: EngineKind,
    /// The socket path (or, for a non-Unix `DOCKER_HOST`, the address as given).
    pub api_path: String,
    /// The engine process, when known.
    pub pid: Option<u32>,
    /// The socket file's inode: changes when the engine re-creates its socket.
    pub inode: Option<u64>,
    /// How it was found.
    pub source: Source,
    /// For a containerd that a dockerd manages: that dockerd's PID (0 when only the socket
    /// path or the config file beside it says so, e.g. the containerd of a dockerd that
    /// crashed). Such a containerd is not watched (Docker is).
    pub managed_by: Option<u32>,
}

impl Found {
    /// What tells two incarnations of an engine apart: kind, path, PID, socket inode.
    pub fn identity(&self) -> (EngineKind, &str, Option<u32>, Option<u64>) {
        (self.kind, &self.api_path, self.pid, self.inode)
    }

    /// The address in the form the engine's client takes: `unix://PATH` for the Docker
    /// API, the plain path for gRPC engines.
    pub fn address(&self) -> String {
        match self.kind {
            EngineKind::Docker | EngineKind::Podman if self.api_path.starts_with('/') => {
                format!("unix://{}", self.api_path)
            }
            _ => self.api_path.clone(),
        }
    }

    /// A client of this engine ([`connect`](crate::connect) to [`address`](Self::address)),
    /// with the PID filled into its engine info. Fails with [`Error::InvalidEndpoint`](crate::Error::InvalidEndpoint) when
    /// the crate is built without the engine's feature.
    pub fn client(&self) -> Result<Box<dyn EngineClient>> {
        crate::endpoint::connect_pid(self.kind, Some(&self.address()), self.pid)
    }
}

/// What to look at.
#[derive(Debug, Clone)]
pub struct DiscoverOptions {
    /// Where procfs is mounted (default `/proc`); empty: no process scan.
    pub proc_root: PathBuf,
    /// Look at the environment variables (default true).
    pub env: bool,
    /// Look at the well-known socket paths (default true).
    pub well_known: bool,
    /// Also watch a standalone containerd through its CRI plugin (default **false**: a
    /// containerd is watched natively only).
    pub cri_for_containerd: bool,
}

impl Default for DiscoverOptions {
    fn default() -> Self {
        DiscoverOptions {
            proc_root: PathBuf::from("/proc"),
            env: true,
            well_known: true,
            cri_for_containerd: false,
        }
    }
}

impl DiscoverOptions {
    /// Sets [`cri_for_containerd`](Self::cri_for_containerd).
    pub fn with_cri_for_containerd(mut self, on: bool) -> Self {
        self.cri_for_containerd = on;
        self
    }
}

/// The engines to watch: [`scan`] without dockerd-managed containerds, sorted by kind and
/// path.
pub fn discover(options: &DiscoverOptions) -> Vec<Found> {
    scan(options)
        .into_iter()
        .filter(|f| f.managed_by.is_none())
        .collect()
}

/// Every engine API found, including dockerd-managed containerds (see
/// [`Found::managed_by`]), sorted by kind and path.
pub fn scan(options: &DiscoverOptions) -> Vec<Found> {
    let mut by_key: BTreeMap<(EngineKind, String), Found> = BTreeMap::new();
    let procs = if options.proc_root.as_os_str().is_empty() {
        Vec::new()
    } else {
        procfs::scan(&options.proc_root)
    };
    let dockerd_pids: Vec<u32> = procs
        .iter()
        .filter(|p| p.comm == "dockerd")
        .map(|p| p.pid)
        .collect();
    // Each dockerd's exec-root, where it puts the socket of the containerd it runs.
    let exec_roots: Vec<(u32, String)> = procs
        .iter()
        .filter(|p| p.comm == "dockerd")
        .map(|p| (p.pid, procfs::exec_root(&options.proc_root, p.pid)))
        .collect();
    // socket path -> (pid, kind) of the process listening there.
    let mut listeners: BTreeMap<String, (u32, EngineKind)> = BTreeMap::new();
    for p in &procs {
        let Some(kind) = kind_of_comm(&p.comm) else {
            continue;
        };
        for s in &p.sockets {
            if !is_api_socket(kind, s) {
                continue;
            }
            let path = visible_path(&options.proc_root, p.pid, s);
            listeners.insert(path.clone(), (p.pid, kind));
            let managed_by = if kind == EngineKind::Containerd {
                let under = |root: &str| s.starts_with(format!("{root}/containerd/"));
                if dockerd_pids.contains(&p.ppid) {
                    Some(p.ppid)
                } else if let Some((pid, _)) = exec_roots.iter().find(|(_, r)| under(r)) {
                    Some(*pid)
                } else if in_docker_exec_root(s) || dockerd_layout(s, p.config.as_deref()) {
                    Some(0)
                } else {
                    None
                }
            } else {
                None
            };
            let found = Found {
                kind,
                inode: socket_inode(&path),
                api_path: path.clone(),
                pid: Some(p.pid),
                source: Source::Process,
                managed_by,
            };
            by_key.insert((kind, path), found);
        }
    }
    let mut add = |kind: EngineKind, raw: &str, source: Source| {
        let path = if raw.starts_with('/') {
            if !is_socket(Path::new(raw)) {
                return;
            }
            canonical(raw)
        } else {
            raw.to_string() // e.g. tcp://host:2375
        };
        let (pid, kind) = match listeners.get(&path) {
            // The process knows better (DOCKER_HOST may well point to podman).
            Some(&(pid, pkind)) if pkind == kind || kind_family(pkind) == kind_family(kind) => {
                (Some(pid), pkind)
            }
            Some(&(pid, _)) if kind == EngineKind::Cri => (Some(pid), kind),
            _ => (None, kind),
        };
        by_key.entry((kind, path.clone())).or_insert_with(|| Found {
            kind,
            inode: socket_inode(&path),
            managed_by: (kind == EngineKind::Containerd && in_docker_exec_root(Path::new(&path)))
                .then_some(0),
            api_path: path,
            pid,
            source,
        });
    };
    if options.env {
        for kind in [EngineKind::Docker, EngineKind::Containerd, EngineKind::Cri] {
            if let Some(a) = endpoint::from_env(kind) {
                add(kind, endpoint::strip_unix(&a), Source::Env);
            }
        }
    }
    if options.well_known {
        for (path, kind) in WELL_KNOWN {
            add(*kind, path, Source::WellKnown);
        }
        if let Some(x) = env("XDG_RUNTIME_DIR") {
            add(
                EngineKind::Podman,
                &format!("{x}/podman/podman.sock"),
                Source::WellKnown,
            );
        }
    }
    if options.cri_for_containerd {
        let extra: Vec<Found> = by_key
            .values()
            .filter(|f| f.kind == EngineKind::Containerd && f.managed_by.is_none())
            .map(|f| Found {
                kind: EngineKind::Cri,
                ..f.clone()
            })
            .collect();
        for f in extra {
            by_key
                .entry((EngineKind::Cri, f.api_path.clone()))
                .or_insert(f);
        }
    }
    by_key.into_values().collect()
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn kind_of_comm(comm: &str) -> Option<EngineKind> {
    match comm {
        "dockerd" => Some(EngineKind::Docker),
        "podman" => Some(EngineKind::Podman),
        "containerd" => Some(EngineKind::Containerd),
        "crio" => Some(EngineKind::Cri),
        _ => None,
    }
}

/// Docker and Podman speak the same API.
fn kind_family(k: EngineKind) -> u8 {
    match k {
        EngineKind::Docker | EngineKind::Podman => 0,
        EngineKind::Containerd => 1,
        EngineKind::Cri => 2,
    }
}

/// Whether a socket an engine listens on is its API socket (not a helper socket).
fn is_api_socket(kind: EngineKind, path: &Path) -> bool {
    let s = path.to_string_lossy();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    match kind {
        EngineKind::Docker => {
            !(name == "metrics.sock" || s.contains("/libnetwork/") || s.contains("/plugins/"))
        }
        EngineKind::Containerd => !(name.ends_with(".ttrpc") || name.ends_with("-debug.sock")),
        EngineKind::Podman | EngineKind::Cri => true,
    }
}

/// dockerd starts its own containerd with the socket `<exec-root>/containerd/containerd.sock`,
/// the exec-root being `/var/run/docker` by default: the fallback for a containerd whose
/// dockerd is not (or no longer) seen.
fn in_docker_exec_root(path: &Path) -> bool {
    path.to_string_lossy()
        .ends_with("/docker/containerd/containerd.sock")
}

/// dockerd runs its containerd with `--config <dir>/containerd.toml` and the socket
/// `<dir>/containerd.sock` (`<dir>` = `<exec-root>/containerd`): that layout says "managed
/// by a dockerd" also while no dockerd runs (it crashed; its containerd lives on, and the
/// restarted dockerd takes it over).
fn dockerd_layout(socket: &Path, config: Option<&Path>) -> bool {
    match (socket.parent(), config) {
        (Some(dir), Some(c)) => {
            c.parent() == Some(dir) && c.file_name() == Some("containerd.toml".as_ref())
        }
        _ => false,
    }
}

/// The socket path as this process can dial it: as bound and resolved when that is the
/// engine's own socket file, else (an engine in another mount namespace or a chroot)
/// under `/proc/PID/root`. The bound path existing here is not enough: an engine inside a
/// container typically binds a default path (`/run/containerd/containerd.sock`) that, from
/// here, may be another engine's socket or nothing; the two are the same file only when
/// both lookups give the same device and inode.
fn visible_path(proc_root: &Path, pid: u32, bound: &Path) -> String {
    let root = proc_root.join(pid.to_string()).join("root");
    let inside = resolve_in_root(&root, bound)
        .unwrap_or_else(|| root.join(bound.strip_prefix("/").unwrap_or(bound)));
    match (socket_file(bound), socket_file(&inside)) {
        (Some(here), Some(there)) if here != there => inside.to_string_lossy().into_owned(),
        (None, Some(_)) => inside.to_string_lossy().into_owned(),
        // The same file, or the engine's root is not readable from here.
        (Some(_), _) => canonical(&bound.to_string_lossy()),
        (None, None) => bound.to_string_lossy().into_owned(),
    }
}

/// `path` as the process whose root directory is `root` (`/proc/PID/root`) sees it, with
/// its symlinks resolved inside that root: the kernel resolves an absolute symlink met
/// under `/proc/PID/root` against *our* root, so `/proc/PID/root/var/run/docker.sock`
/// (`/var/run` → `/run`, dockerd's default socket) would name our `/run/docker.sock`.
/// None when a component is missing or there are too many links.
fn resolve_in_root(root: &Path, path: &Path) -> Option<PathBuf> {
    use std::path::Component;
    let mut todo: Vec<std::ffi::OsString> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut done: Vec<std::ffi::OsString> = Vec::new();
    let mut links = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            done.pop(); // never above the root
            continue;
        }
        let here: PathBuf = done.iter().chain(std::iter::once(&c)).collect();
        let meta = std::fs::symlink_metadata(root.join(&here)).ok()?;
        if !meta.file_type().is_symlink() {
            done.push(c);
            continue;
        }
        links += 1;
        if links > 40 {
            return None;
        }
        let target = std::fs::read_link(root.join(&here)).ok()?;
        if target.is_absolute() {
            done.clear();
        }
        for t in target.components().rev() {
            match t {
                Component::Normal(n) => todo.push(n.to_os_string()),
                Component::ParentDir => todo.push("..".into()),
                _ => {}
            }
        }
    }
    Some(done.iter().fold(root.to_path_buf(), |p, c| p.join(c)))
}

/// A socket file's device and inode.
fn socket_file(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path)
        .ok()
        .filter(|m| m.file_type().is_socket())
        .map(|m| (m.dev(), m.ino()))
}

fn canonical(path: &str) -> String {
    std::fs::canonicalize(path)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| path.to_string())
}

fn is_socket(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

fn socket_inode(path: &str) -> Option<u64> {
    std::fs::metadata(path)
        .ok()
        .filter(|m| m.file_type().is_socket())
        .map(|m| m.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_sockets_are_skipped() {
        let p = |s: &str| PathBuf::from(s);
        assert!(is_api_socket(EngineKind::Docker, &p("/run/docker.sock")));
        assert!(!is_api_socket(
            EngineKind::Docker,
            &p("/run/docker/metrics.sock")
        ));
        assert!(!is_api_socket(
            EngineKind::Docker,
            &p("/run/docker/libnetwork/21836e484e83.sock")
        ));
        assert!(is_api_socket(
            EngineKind::Containerd,
            &p("/run/containerd/containerd.sock")
        ));
        assert!(!is_api_socket(
            EngineKind::Containerd,
            &p("/run/containerd/containerd.sock.ttrpc")
        ));
        assert!(!is_api_socket(
            EngineKind::Containerd,
            &p("/run/containerd/containerd-debug.sock")
        ));
        assert!(in_docker_exec_root(&p(
            "/run/docker/containerd/containerd.sock"
        )));
        assert!(!in_docker_exec_root(&p("/run/containerd/containerd.sock")));
    }

    #[test]
    fn addresses() {
        let f = Found {
            kind: EngineKind::Podman,
            api_path: "/run/podman/podman.sock".into(),
            pid: Some(7),
            inode: None,
            source: Source::Process,
            managed_by: None,
        };
        assert_eq!(f.address(), "unix:///run/podman/podman.sock");
        let g = Found {
            kind: EngineKind::Containerd,
            ..f.clone()
        };
        assert_eq!(g.address(), "/run/podman/podman.sock");
        assert_eq!(EngineKind::Cri.as_str(), "k8s.io/cri-api");
    }

    /// An engine whose root is elsewhere (a container's mount namespace, a chroot) is dialed
    /// through `/proc/PID/root`, also when the path it bound names another socket here;
    /// an engine that shares our root is dialed by its path.
    #[test]
    fn socket_in_another_root() {
        use std::os::unix::net::UnixListener;
        let base = std::env::temp_dir().join(format!("ww-visible-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let proc_root = base.join("proc");
        let bound = base.join("run/engine.sock"); // the path the engine bound
        std::fs::create_dir_all(bound.parent().unwrap()).unwrap();
        // PID 7: its root is a directory of its own holding its socket at the bound path.
        let root7 = base.join("container-root");
        let inside = root7.join(bound.strip_prefix("/").unwrap());
        std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
        std::fs::create_dir_all(proc_root.join("7")).unwrap();
        std::os::unix::fs::symlink(&root7, proc_root.join("7/root")).unwrap();
        // PID 8 shares our root.
        std::fs::create_dir_all(proc_root.join("8")).unwrap();
        std::os::unix::fs::symlink("/", proc_root.join("8/root")).unwrap();
        let _engine = UnixListener::bind(&inside).unwrap();
        let via_root = proc_root
            .join("7/root")
            .join(bound.strip_prefix("/").unwrap());
        let via_root = via_root.to_string_lossy().into_owned();
        // Nothing at the bound path here: only through its root.
        assert_eq!(visible_path(&proc_root, 7, &bound), via_root);
        // Another socket at the bound path here (a host engine, a decoy): still its root.
        let _decoy = UnixListener::bind(&bound).unwrap();
        assert_eq!(visible_path(&proc_root, 7, &bound), via_root);
        // Same root: the path as bound.
        let plain = canonical(&bound.to_string_lossy());
        assert_eq!(visible_path(&proc_root, 8, &bound), plain);
        // No /proc/PID/root to look through (unreadable): the path as bound.
        assert_eq!(visible_path(&proc_root, 9, &bound), plain);
        // Bound through an absolute symlink inside its root (`/var/run` -> `/run`): resolved
        // inside that root, not ours (where it leads to the decoy).
        let link = base.join("var/run");
        let in_root = root7.join(link.strip_prefix("/").unwrap());
        std::fs::create_dir_all(in_root.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(bound.parent().unwrap(), &in_root).unwrap();
        std::fs::create_dir_all(link.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(bound.parent().unwrap(), &link).unwrap();
        let via_link = link.join("engine.sock");
        assert_eq!(visible_path(&proc_root, 7, &via_link), via_root);
        assert_eq!(visible_path(&proc_root, 8, &via_link), plain);
        assert_eq!(
            resolve_in_root(&root7, Path::new("/a/../../x/./y")),
            None,
            "x does not exist"
        );
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn nothing_to_scan() {
        let opts = DiscoverOptions {
            proc_root: PathBuf::from("/nonexistent-proc"),
            env: false,
            well_known: false,
            cri_for_containerd: true,
        };
        assert!(scan(&opts).is_empty());
    }

    /// A fake process: pid, ppid, comm, cmdline, [(socket inode, bound path)].
    type FakeProcess<'a> = (u32, u32, &'a str, &'a str, &'a [(u64, &'a str)]);

    /// A fake procfs of these processes, plus one non-engine.
    fn fake_proc(procs: &[FakeProcess]) -> PathBuf {
        let root = std::env::temp_dir().join(format!(
            "ww-fakeproc-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&root);
        for (pid, ppid, comm, cmdline, socks) in procs {
            let d = root.join(pid.to_string());
            std::fs::create_dir_all(d.join("fd")).unwrap();
            std::fs::create_dir_all(d.join("net")).unwrap();
            std::fs::create_dir_all(d.join("ns")).unwrap();
            std::fs::write(d.join("comm"), format!("{comm}\n")).unwrap();
            std::fs::write(d.join("stat"), format!("{pid} ({comm}) S {ppid} 1 1 0")).unwrap();
            std::fs::write(d.join("cmdline"), cmdline.replace(' ', "\0")).unwrap();
            std::os::unix::fs::symlink("net:[4026531840]", d.join("ns/net")).unwrap();
            for (n, (ino, _)) in socks.iter().enumerate() {
                let fd = d.join(format!("fd/{}", n + 3));
                std::os::unix::fs::symlink(format!("socket:[{ino}]"), fd).unwrap();
            }
        }
        // One network namespace: every process sees the same table of all sockets.
        let mut all = String::from("Num RefCount Protocol Flags Type St Inode Path\n");
        for (_, _, _, _, socks) in procs {
            for (ino, path) in socks.iter() {
                all.push_str(&format!(
                    "0: 00000002 00000000 00010000 0001 01 {ino} {path}\n"
                ));
            }
        }
        for (pid, ..) in procs {
            std::fs::write(root.join(pid.to_string()).join("net/unix"), &all).unwrap();
        }
        // Not an engine.
        let d = root.join("99");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("comm"), "bash\n").unwrap();
        root
    }

    #[test]
    fn scan_of_a_fake_proc() {
        let root = fake_proc(&[
            (
                10,
                1,
                "dockerd",
                "dockerd -H unix:///x/docker.sock --exec-root /x/exec",
                &[(100, "/x/docker.sock"), (101, "/x/exec/metrics.sock")],
            ),
            (
                11,
                10,
                "containerd",
                "containerd --config /x/exec/containerd/containerd.toml",
                &[
                    (110, "/x/exec/containerd/containerd.sock"),
                    (111, "/x/exec/containerd/containerd.sock.ttrpc"),
                ],
            ),
            // An orphaned dockerd containerd: found by the exec-root.
            (
                12,
                1,
                "containerd",
                "containerd",
                &[(120, "/x/exec/containerd/containerd2.sock")],
            ),
            (
                20,
                1,
                "containerd",
                "containerd",
                &[
                    (200, "/y/containerd.sock"),
                    (201, "/y/containerd-debug.sock"),
                ],
            ),
            // The containerd of a dockerd that crashed: found by dockerd's config layout.
            (
                13,
                1,
                "containerd",
                "containerd --config /w/exec/containerd/containerd.toml --log-level info",
                &[(130, "/w/exec/containerd/containerd.sock")],
            ),
            // A standalone containerd with a config of its own.
            (
                21,
                1,
                "containerd",
                "containerd -c /v/containerd.toml",
                &[(210, "/v/run/containerd.sock")],
            ),
            (
                30,
                1,
                "podman",
                "podman system service",
                &[(300, "/z/podman.sock")],
            ),
            (31, 1, "podman", "podman ps", &[]),
        ]);
        let opts = DiscoverOptions {
            proc_root: root.clone(),
            env: false,
            well_known: false,
            cri_for_containerd: false,
        };
        let all = scan(&opts);
        let got: Vec<(EngineKind, &str, Option<u32>, Option<u32>)> = all
            .iter()
            .map(|f| (f.kind, f.api_path.as_str(), f.pid, f.managed_by))
            .collect();
        assert_eq!(
            got,
            vec![
                (EngineKind::Docker, "/x/docker.sock", Some(10), None),
                (EngineKind::Podman, "/z/podman.sock", Some(30), None),
                (
                    EngineKind::Containerd,
                    "/v/run/containerd.sock",
                    Some(21),
                    None
                ),
                (
                    EngineKind::Containerd,
                    "/w/exec/containerd/containerd.sock",
                    Some(13),
                    Some(0)
                ),
                (
                    EngineKind::Containerd,
                    "/x/exec/containerd/containerd.sock",
                    Some(11),
                    Some(10)
                ),
                (
                    EngineKind::Containerd,
                    "/x/exec/containerd/containerd2.sock",
                    Some(12),
                    Some(10)
                ),
                (EngineKind::Containerd, "/y/containerd.sock", Some(20), None),
            ]
        );
        let watched: Vec<String> = discover(&opts).into_iter().map(|f| f.address()).collect();
        assert_eq!(
            watched,
            vec![
                "unix:///x/docker.sock",
                "unix:///z/podman.sock",
                "/v/run/containerd.sock",
                "/y/containerd.sock"
            ]
        );
        let with_cri = discover(&opts.clone().with_cri_for_containerd(true));
        assert_eq!(with_cri.len(), 6);
        let cri: Vec<_> = with_cri
            .iter()
            .filter(|f| f.kind == EngineKind::Cri)
            .map(|f| (f.api_path.as_str(), f.pid))
            .collect();
        assert_eq!(
            cri,
            [
                ("/v/run/containerd.sock", Some(21)),
                ("/y/containerd.sock", Some(20))
            ]
        );
        let _ = std::fs::remove_dir_all(root);
    }
}
