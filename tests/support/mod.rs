//! The integration tests' support tree: each test binary declares `mod support;` and uses
//! the parts it needs.
//!
//! - this file: engine endpoints from the environment, running commands, bounded waiting,
//!   mount points, the `whalewatch` example binary;
//! - [`cli`]: THE docker/podman CLI driver, ground truth from `docker inspect`;
//! - [`docker_api`]: the Docker API checks shared by tests/docker.rs and tests/podman.rs;
//! - [`containerd`]: the `ctr` driver and a private containerd instance;
//! - [`dockerd`], [`podman`]: private dockerd / podman services for kill/restart tests;
//! - [`cri`]: pods and containers made through the CRI API, CRI ground truth;
//! - [`watch`]: the watcher's view, convergence, event collection, exit checks;
//! - [`replay`]: THE event-stream replayer;
//! - [`fault_proxy`]: the fault-injecting Unix-socket proxy;
//! - [`grpc_peer`]: THE fake gRPC (HTTP/2) peer; [`http_peer`]: THE fake HTTP/1.1 peer;
//! - [`ffi`] (and `abi.c`): the C ABI tests' wrappers.
// Each test binary compiles the whole tree and uses a part of it: what one binary leaves
// unused is used by another. This is the only place dead code is allowed.
#![allow(dead_code)]

use std::time::{Duration, Instant};

#[cfg(any(feature = "docker", feature = "serde", feature = "cri"))]
pub mod cli;
pub mod containerd;
#[cfg(feature = "cri")]
pub mod cri;
#[cfg(feature = "docker")]
pub mod docker_api;
pub mod dockerd;
pub mod fault_proxy;
#[cfg(feature = "ffi")]
pub mod ffi;
#[cfg(feature = "grpc")]
pub mod grpc_peer;
pub mod http_peer;
pub mod podman;
pub mod replay;
#[cfg(any(feature = "docker", feature = "serde", feature = "cri"))]
pub mod watch;

/// A JSON object of strings (labels as `docker inspect` and `ctr containers info` print
/// them) as a map; a value that is not a string counts as `""`, anything but an object as
/// no labels.
#[cfg(any(feature = "docker", feature = "serde", feature = "cri"))]
pub fn string_map(v: &serde_json::Value) -> std::collections::BTreeMap<String, String> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// A container's labels as a map, to compare with ground truth built independently of
/// [`whalewatcher::Labels`] (from `inspect` JSON, `ctr`, CRI statuses).
pub fn label_map(labels: &whalewatcher::Labels) -> std::collections::BTreeMap<String, String> {
    labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A private directory under the temp dir (`ww-<what>-<pid>-<n>`), made empty; removed
/// with everything in it on drop.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let d = std::env::temp_dir().join(format!(
            "ww-{what}-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> std::path::PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// True when CI demands that every engine test really runs.
pub fn engines_required() -> bool {
    std::env::var("WHALEWATCHER_REQUIRE_ENGINES").is_ok_and(|v| v == "1")
}

/// The endpoint in env variable `var` (e.g. `WHALEWATCHER_DOCKER`), or `None` after a loud
/// skip message. Under `WHALEWATCHER_REQUIRE_ENGINES=1` a missing variable fails the test.
pub fn endpoint(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            if engines_required() {
                panic!("{var} is not set, but WHALEWATCHER_REQUIRE_ENGINES=1: start the engines with tests/engines/up.sh and source its env file");
            }
            eprintln!("\n*** SKIPPING: {var} is not set (start engines with tests/engines/up.sh and source its env file) ***\n");
            None
        }
    }
}

/// A shell snippet for `ctr images export` and `ctr images import` arguments: `--local`
/// where ctr has it (1.7+). ctr 2.x exports and imports through containerd's transfer
/// service by default, and with a pipe that fails now and then: the export to stdout ends
/// early (2 in 12 here with containerd 2.1), and the import then fails with "short read:
/// expected 2007040 bytes but got 1961984". `--local` does the work in ctr itself, as ctr
/// 1.6 always does.
pub const CTR_LOCAL: &str =
    "$(ctr images export --help 2>/dev/null | grep -q -- --local && echo --local)";

/// Polls `cond` every 20 ms until it is true; panics with `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        if Instant::now() >= end {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// runc 1.1 (Debian 13's) now and then fails to start a container's init process ("waiting
/// for init preliminary setup: read init-p: connection reset by peer"): an engine flake, not
/// what any test checks. `cmd ... run ...` that failed so is to be retried (at most twice),
/// after removing the half-made container; returns the `rm -f` arguments for that.
pub fn runc_init_flake(args: &[&str], stderr: &str) -> Option<Vec<String>> {
    let at = args.iter().position(|a| *a == "run")?;
    if !stderr.contains("read init-p") {
        return None;
    }
    let mut rm: Vec<String> = args[..at].iter().map(|a| a.to_string()).collect();
    rm.extend(["rm".to_string(), "-f".to_string()]);
    let name = args
        .iter()
        .position(|a| *a == "--name")
        .and_then(|i| args.get(i + 1))?;
    rm.push(name.to_string());
    Some(rm)
}

/// THE command-to-result wrapper: `Ok(stdout)` when `cmd` ran and succeeded, else
/// `Err(stderr)` (or why it could not run).
pub fn result_of(cmd: &mut std::process::Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Runs `cmd args` ([`result_of`]). A `run` that hit the runc init flake
/// ([`runc_init_flake`]) is retried, at most twice, after removing the half-made container.
pub fn try_run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let mut attempt = 0;
    loop {
        let r = result_of(std::process::Command::new(cmd).args(args));
        attempt += 1;
        if let Err(stderr) = &r {
            if attempt < 3 {
                if let Some(rm) = runc_init_flake(args, stderr) {
                    let _ = std::process::Command::new(cmd).args(&rm).output();
                    continue;
                }
            }
        }
        return r;
    }
}

/// Runs a command ([`try_run`]), returning its stdout; panics with stderr when it fails.
pub fn run(cmd: &str, args: &[&str]) -> String {
    try_run(cmd, args).unwrap_or_else(|e| panic!("{cmd} {args:?} failed: {e}"))
}

/// [`try_run`] with `prefix` before `args` (e.g. `-H URL`, `-a SOCK -n NS`).
pub fn try_run_with(cmd: &str, prefix: &[&str], args: &[&str]) -> Result<String, String> {
    let all: Vec<&str> = prefix.iter().chain(args).copied().collect();
    try_run(cmd, &all)
}

/// The mount points below directory `dir`, deepest first: `dir` itself and its subpaths,
/// and the same paths under an engine generation's chroot (tests/engines/up.sh binds the
/// host's /tmp at the chroot's /tmp, privately, so the mounts a chrooted engine makes for a
/// test's private dir show as `<chroot>/tmp/...` only; up.sh marks a chroot with a
/// `.whalewatcher-ready` file).
pub fn mount_points_under(dir: &str) -> Vec<String> {
    let dir = dir.trim_end_matches('/');
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<String> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| {
            m.match_indices(dir).any(|(i, _)| {
                let rest = &m[i + dir.len()..];
                (i == 0
                    || std::path::Path::new(&m[..i])
                        .join(".whalewatcher-ready")
                        .exists())
                    && (rest.is_empty() || rest.starts_with('/'))
            })
        })
        .map(str::to_string)
        .collect();
    points.sort_by_key(|m| std::cmp::Reverse(m.len()));
    points
}

/// Builds the `whalewatch` example once per test binary (same target dir as the tests) and returns its path.
pub fn whalewatch_binary() -> std::path::PathBuf {
    static BUILD: std::sync::Once = std::sync::Once::new();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    BUILD.call_once(|| {
        let st = std::process::Command::new(env!("CARGO"))
            .args(["build", "--example", "whalewatch"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("cannot run cargo");
        assert!(st.success(), "cargo build --example whalewatch failed");
    });
    target.join("debug/examples/whalewatch")
}

/// Whether process `pid` is gone or a zombie (dead, not yet reaped).
pub fn is_dead(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().next());
    matches!(state, None | Some("Z") | Some("X"))
}

/// The PIDs in /proc (every process this PID namespace shows), ours included.
pub fn pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}
