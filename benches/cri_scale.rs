//! containerd and CRI at scale (issue 16), against the containerd named by `WHALEWATCHER_CRI`
//! (its CRI plugin and its native API share the socket):
//!
//! a. N containers in N / `PER_POD` pod sandboxes, created through the CRI API (host
//!    network, the image's blocking entrypoint): N + N / `PER_POD` tasks in namespace
//!    `k8s.io`;
//! b. time to Ready (median, min and max of `ROUNDS` watchers from scratch; containerd's CPU
//!    per watcher, median) of a watcher on the CRI client in its default mode for this
//!    runtime (containerd 1.x: containerd's native task events; 2.x: CRI
//!    `GetContainerEvents`), with relisting forced, and of a watcher on the native
//!    containerd client; each checked against the CRI listing;
//! c. containerd's CPU (utime + stime of `/proc/PID/stat`, PID from
//!    `WHALEWATCHER_CONTAINERD_PID`) in CPU seconds per minute over `CPU_SECS` each: idle
//!    (nothing of ours connected), while a CRI watcher relists (every second, the default
//!    interval), while the bench itself relists every second without a watcher, while a
//!    CRI watcher runs in its default mode, and while a native containerd watcher runs; our
//!    own process's CPU over the same windows, and each watcher's mode at
//!    the end of its window with its reconnects (a client that fell back to relisting
//!    would be measured in the wrong mode; the time-to-Ready watchers assert their mode);
//!    and one relist's round trips (ListPodSandbox + ListContainers, state-filtered), timed
//!    on their own, with containerd's CPU per relist; and one status call per sandbox and
//!    container (verbose, as a listing asks for the pid, and not), with containerd's CPU
//!    per call.
//!
//! Env: `WHALEWATCHER_CRI_SCALE_N` (default 1000; 4 without `--bench`),
//! `WHALEWATCHER_CRI_SCALE_PER_POD` (default 20), `WHALEWATCHER_CRI_SCALE_CPU_SECS` (default
//! 60; 2 without `--bench`), `WHALEWATCHER_CRI_IMAGE` (the image whose entrypoint blocks; the
//! pod sandbox image is containerd's configured one). Without `WHALEWATCHER_CRI` it prints a
//! loud skip message and exits 0 (it panics under `WHALEWATCHER_REQUIRE_ENGINES=1`). The pods
//! carry the label `whalewatcher.bench=cri-scale` and are stopped and removed at the end
//! (also after a panic) and at the start (leftovers), four at a time.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use protobuf::{EnumOrUnknown, Message, MessageField};
use whalewatcher::cancel::CancelSet;
use whalewatcher::containerd::ContainerdClient;
use whalewatcher::cri::api::*;
use whalewatcher::cri::{CriClient, EventMode};
use whalewatcher::grpc::Channel;
use whalewatcher::{EngineClient, Watcher, WatcherOptions};

mod common;
use common::{env_usize, load, utc_now};

const LABEL_KEY: &str = "whalewatcher.bench";
const LABEL_VALUE: &str = "cri-scale";
const DEADLINE: Duration = Duration::from_secs(120);
/// Pods created or removed at the same time.
const PARALLEL: usize = 4;
/// Watchers from scratch per time-to-Ready figure.
const ROUNDS: usize = 5;
/// Relists timed on their own.
const RELISTS: usize = 51;

fn main() {
    let Some(path) = common::engine_or_skip(
        "cri_scale",
        &["WHALEWATCHER_CRI"],
        "set WHALEWATCHER_CRI=/path/containerd.sock or run tests/engines/up.sh and source its env",
    ) else {
        return;
    };
    let path = path.strip_prefix("unix://").unwrap_or(&path).to_string();
    let test_mode = !std::env::args().any(|a| a == "--bench");
    let n = env_usize("WHALEWATCHER_CRI_SCALE_N", if test_mode { 4 } else { 1000 });
    let per_pod = env_usize("WHALEWATCHER_CRI_SCALE_PER_POD", 20).max(1);
    let cpu_secs = env_usize(
        "WHALEWATCHER_CRI_SCALE_CPU_SECS",
        if test_mode { 2 } else { 60 },
    );
    let image = std::env::var("WHALEWATCHER_CRI_IMAGE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "docker.io/library/busybox:sleep".into());
    let pid: Option<u32> = std::env::var("WHALEWATCHER_CONTAINERD_PID")
        .ok()
        .and_then(|p| p.parse().ok());

    let cleanup = Cleanup { path: path.clone() };
    cleanup.remove_all();
    let ch = channel(&path);
    let v: VersionResponse = call(&ch, "Version", &VersionRequest::new());
    let mut report = vec![format!(
        "=== benches/cri_scale ({path}: {} {}), {} UTC, load {} ===",
        v.runtime_name,
        v.runtime_version,
        utc_now(),
        load()
    )];

    // a. The pods and containers.
    let pods = n.div_ceil(per_pod);
    let began = Instant::now();
    create(&path, &image, n, per_pod);
    let truth = alive(&ch);
    report.push(format!(
        "a. {n} containers in {pods} pods ({} alive in all: containers and sandboxes) created in {:.1} s",
        truth.len(),
        began.elapsed().as_secs_f64()
    ));
    assert!(truth.len() >= n + pods, "not every container runs");

    // b. Time to Ready.
    report.push(format!(
        "b. time to Ready, {} containers and sandboxes ({ROUNDS} watchers from scratch each; load {}):",
        truth.len(),
        load()
    ));
    let cri_default = || CriClient::new(Some(&path)).expect("unusable CRI address");
    let cri_relist = || cri_default().with_event_mode(EventMode::Relist);
    // Every namespace, `k8s.io` (the CRI plugin's, skipped by default) included.
    let native = || {
        ContainerdClient::new(Some(&path))
            .expect("unusable containerd address")
            .with_ignored_namespaces(Vec::new())
    };
    let mode = {
        let c = cri_default();
        c.info().expect("CRI info").mode.to_string()
    };
    report.push(ready_row(&format!("CRI, {mode} (default)"), pid, || {
        held(
            Watcher::new(cri_default(), WatcherOptions::default()),
            &truth,
            &mode,
        )
    }));
    report.push(ready_row("CRI, relist (forced)", pid, || {
        held(
            Watcher::new(cri_relist(), WatcherOptions::default()),
            &truth,
            "relist",
        )
    }));
    report.push(ready_row(
        "containerd native (k8s.io included)",
        pid,
        || {
            let w = Watcher::new(native(), WatcherOptions::default());
            let t0 = Instant::now();
            w.wait_ready(DEADLINE).expect("not ready");
            let took = t0.elapsed();
            // Native ids are `namespace/id`.
            let ids: BTreeSet<String> = w
                .portfolio()
                .iter()
                .filter_map(|c| c.id.strip_prefix("k8s.io/").map(str::to_string))
                .collect();
            let missing: Vec<_> = truth.difference(&ids).take(3).collect();
            assert!(
                missing.is_empty(),
                "the native watcher misses tasks: {missing:?}, holds {:?}…",
                ids.iter().take(3).collect::<Vec<_>>()
            );
            w.close();
            took
        },
    ));

    // One relist's round trips, on their own.
    // containerd's CPU over them too (back to back: its idle CPU adds a few per cent).
    let engine_cpu = || pid.map(|p| cpu_of(&p.to_string()));
    let mut trips = Vec::new();
    let (e0, w0) = (engine_cpu(), Instant::now());
    for _ in 0..RELISTS {
        let t0 = Instant::now();
        let got = alive(&ch);
        trips.push(t0.elapsed());
        assert_eq!(got.len(), truth.len());
    }
    let (e1, wall) = (engine_cpu(), w0.elapsed());
    trips.sort();
    report.push(format!(
        "   one relist (ListPodSandbox ready + ListContainers running, {} ids; {RELISTS} back to back in {:.2} s): median {:.1} ms, min {:.1} ms, containerd CPU {}",
        truth.len(),
        wall.as_secs_f64(),
        trips[trips.len() / 2].as_secs_f64() * 1e3,
        trips[0].as_secs_f64() * 1e3,
        match (e0, e1) {
            (Some(a), Some(b)) => format!("{:.1} ms per relist", (b - a) * 1e3 / RELISTS as f64),
            _ => "unknown (no WHALEWATCHER_CONTAINERD_PID)".into(),
        }
    ));

    // What a CRI listing costs containerd per sandbox or container: its status calls.
    let (pods_alive, containers_alive) = alive_split(&ch);
    for verbose in [true, false] {
        let (wall, cpu, bytes) = statuses(&ch, pid, verbose, &pods_alive, &containers_alive);
        report.push(format!(
            "   one status call ({}, {} one after another): {:.2} ms wall, containerd CPU {}, info {bytes} bytes",
            if verbose { "verbose, as a listing asks" } else { "not verbose" },
            pods_alive.len() + containers_alive.len(),
            wall.as_secs_f64() * 1e3,
            cpu.map_or("unknown".into(), |c| format!("{:.2} ms", c * 1e3)),
        ));
    }

    // c. containerd's CPU.
    if let Some(pid) = pid {
        report.push(format!(
            "c. containerd (PID {pid}) CPU over {cpu_secs} s each, CPU seconds per minute (ours: this process):"
        ));
        let window = Duration::from_secs(cpu_secs as u64);
        let idle = cpu_window(pid, window);
        report.push(cpu_row("idle (no watcher)", idle, None));
        let (relist, what) = watched_window(
            pid,
            window,
            Watcher::new(cri_relist(), WatcherOptions::default()),
        );
        report.push(cpu_row("CRI watcher, relist every 1 s", relist, Some(idle)));
        report.push(format!(
            "     ({what}; {:.1} ms of containerd CPU per relist over idle)",
            (relist.engine - idle.engine) * 1e3 / 60.0
        ));
        // The same relists without a watcher, on the bench's own channel: the floor.
        let raw = cpu_while(pid, || {
            let t0 = Instant::now();
            let mut k = 0u32;
            while t0.elapsed() < window {
                assert_eq!(alive(&ch).len(), truth.len());
                k += 1;
                let next = Duration::from_secs(k.into());
                if let Some(rest) = next.checked_sub(t0.elapsed()) {
                    std::thread::sleep(rest.min(window.saturating_sub(t0.elapsed())));
                }
            }
            k
        });
        report.push(cpu_row(
            "raw relists every 1 s (no watcher)",
            raw.0,
            Some(idle),
        ));
        report.push(format!(
            "     ({} relists; {:.1} ms of containerd CPU per relist over idle)",
            raw.1,
            (raw.0.engine - idle.engine) * 1e3 / 60.0
        ));
        let (evented, what) = watched_window(
            pid,
            window,
            Watcher::new(cri_default(), WatcherOptions::default()),
        );
        report.push(cpu_row(
            &format!("CRI watcher, {mode} (default)"),
            evented,
            Some(idle),
        ));
        report.push(format!("     ({what})"));
        let (nat, what) = watched_window(
            pid,
            window,
            Watcher::new(native(), WatcherOptions::default()),
        );
        report.push(cpu_row("containerd native watcher", nat, Some(idle)));
        report.push(format!("     ({what})"));
        report.push(format!("   (load after: {})", load()));
    } else {
        report.push("c. skipped: WHALEWATCHER_CONTAINERD_PID is not set".into());
    }

    drop(cleanup);
    for line in &report {
        println!("{line}");
    }
    if test_mode {
        println!("(test mode: {n} containers, {cpu_secs} s windows; the figures mean nothing)");
    }
}

fn channel(path: &str) -> Channel {
    Channel::new(path, CancelSet::new())
}

/// A unary CRI runtime-service call; panics on failure (bench support).
fn call<Req: Message, Resp: Message>(ch: &Channel, method: &str, req: &Req) -> Resp {
    try_call(ch, method, req).unwrap_or_else(|e| panic!("CRI {method} failed: {e}"))
}

fn try_call<Req: Message, Resp: Message>(
    ch: &Channel,
    method: &str,
    req: &Req,
) -> whalewatcher::Result<Resp> {
    ch.unary_msg(
        &format!("/runtime.v1.RuntimeService/{method}"),
        &[],
        req,
        Some(DEADLINE),
    )
}

/// The ids of the ready sandboxes and running containers: the truth (and what a relist asks).
fn alive(ch: &Channel) -> BTreeSet<String> {
    let (pods, containers) = alive_split(ch);
    pods.into_iter().chain(containers).collect()
}

/// The ids of the ready sandboxes, and those of the running containers.
fn alive_split(ch: &Channel) -> (Vec<String>, Vec<String>) {
    let mut sf = PodSandboxStateValue::new();
    sf.state = EnumOrUnknown::new(PodSandboxState::SANDBOX_READY);
    let mut f = PodSandboxFilter::new();
    f.state = MessageField::some(sf);
    let mut req = ListPodSandboxRequest::new();
    req.filter = MessageField::some(f);
    let r: ListPodSandboxResponse = call(ch, "ListPodSandbox", &req);
    let pods = r.items.into_iter().map(|s| s.id).collect();
    let mut cf = ContainerStateValue::new();
    cf.state = EnumOrUnknown::new(ContainerState::CONTAINER_RUNNING);
    let mut f = ContainerFilter::new();
    f.state = MessageField::some(cf);
    let mut req = ListContainersRequest::new();
    req.filter = MessageField::some(f);
    let r: ListContainersResponse = call(ch, "ListContainers", &req);
    (pods, r.containers.into_iter().map(|c| c.id).collect())
}

/// One status call per sandbox and container, one after another (verbose: what a listing
/// asks, for the pid in the `info` map; or not): the wall time and containerd's CPU per
/// call (`None` without its PID), and the `info` maps' bytes per call.
fn statuses(
    ch: &Channel,
    pid: Option<u32>,
    verbose: bool,
    pods: &[String],
    containers: &[String],
) -> (Duration, Option<f64>, usize) {
    let engine_cpu = || pid.map(|p| cpu_of(&p.to_string()));
    let size = |info: &HashMap<String, String>| info.values().map(String::len).sum::<usize>();
    let (e0, t0) = (engine_cpu(), Instant::now());
    let mut bytes = 0;
    for id in pods {
        let mut req = PodSandboxStatusRequest::new();
        req.pod_sandbox_id = id.clone();
        req.verbose = verbose;
        let r: PodSandboxStatusResponse = call(ch, "PodSandboxStatus", &req);
        bytes += size(&r.info);
    }
    for id in containers {
        let mut req = ContainerStatusRequest::new();
        req.container_id = id.clone();
        req.verbose = verbose;
        let r: ContainerStatusResponse = call(ch, "ContainerStatus", &req);
        bytes += size(&r.info);
    }
    let calls = (pods.len() + containers.len()).max(1);
    let cpu = match (e0, engine_cpu()) {
        (Some(a), Some(b)) => Some((b - a) / calls as f64),
        _ => None,
    };
    (t0.elapsed() / calls as u32, cpu, bytes / calls)
}

fn pod_config(i: usize) -> PodSandboxConfig {
    let name = format!("wwscale-{}-{i}", std::process::id());
    let mut meta = PodSandboxMetadata::new();
    meta.name = name.clone();
    meta.uid = format!("uid-{name}");
    meta.namespace = "wwscale".into();
    let mut ns = NamespaceOption::new();
    ns.network = EnumOrUnknown::new(NamespaceMode::NODE);
    let mut sec = LinuxSandboxSecurityContext::new();
    sec.namespace_options = MessageField::some(ns);
    let mut linux = LinuxPodSandboxConfig::new();
    linux.security_context = MessageField::some(sec);
    let mut config = PodSandboxConfig::new();
    config.metadata = MessageField::some(meta);
    config.labels = HashMap::from([(LABEL_KEY.to_string(), LABEL_VALUE.to_string())]);
    config.linux = MessageField::some(linux);
    config
}

/// `n` running containers in pods of `per_pod`, `PARALLEL` pods at a time.
fn create(path: &str, image: &str, n: usize, per_pod: usize) {
    let pods = n.div_ceil(per_pod);
    let next = AtomicUsize::new(0);
    let failed = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..PARALLEL.min(pods) {
            s.spawn(|| {
                let ch = channel(path);
                loop {
                    let p = next.fetch_add(1, Ordering::Relaxed);
                    if p >= pods || failed.lock().unwrap().is_some() {
                        return;
                    }
                    let config = pod_config(p);
                    let mut req = RunPodSandboxRequest::new();
                    req.config = MessageField::some(config.clone());
                    let r: RunPodSandboxResponse = call(&ch, "RunPodSandbox", &req);
                    let count = per_pod.min(n - p * per_pod);
                    for c in 0..count {
                        let mut meta = ContainerMetadata::new();
                        meta.name = format!("c{c}");
                        let mut img = ImageSpec::new();
                        img.image = image.to_string();
                        let mut cc = ContainerConfig::new();
                        cc.metadata = MessageField::some(meta);
                        cc.image = MessageField::some(img);
                        cc.labels =
                            HashMap::from([(LABEL_KEY.to_string(), LABEL_VALUE.to_string())]);
                        let mut req = CreateContainerRequest::new();
                        req.pod_sandbox_id = r.pod_sandbox_id.clone();
                        req.config = MessageField::some(cc);
                        req.sandbox_config = MessageField::some(config.clone());
                        let created: CreateContainerResponse = call(&ch, "CreateContainer", &req);
                        let mut req = StartContainerRequest::new();
                        req.container_id = created.container_id;
                        if let Err(e) =
                            try_call::<_, StartContainerResponse>(&ch, "StartContainer", &req)
                        {
                            *failed.lock().unwrap() = Some(format!("StartContainer: {e}"));
                            return;
                        }
                    }
                    if (p + 1) % 10 == 0 {
                        eprintln!("benches/cri_scale: {} pods up", p + 1);
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().unwrap() {
        panic!("creating the containers failed: {e}");
    }
}

/// Stops and removes the bench's pods when dropped (also after a panic).
struct Cleanup {
    path: String,
}

impl Cleanup {
    /// Stops and removes every pod with the bench label (their containers with them),
    /// `PARALLEL` at a time; never panics.
    fn remove_all(&self) {
        let ch = channel(&self.path);
        let mut f = PodSandboxFilter::new();
        f.label_selector = HashMap::from([(LABEL_KEY.to_string(), LABEL_VALUE.to_string())]);
        let mut req = ListPodSandboxRequest::new();
        req.filter = MessageField::some(f);
        let pods: Vec<String> =
            match try_call::<_, ListPodSandboxResponse>(&ch, "ListPodSandbox", &req) {
                Ok(r) => r.items.into_iter().map(|s| s.id).collect(),
                Err(e) => {
                    eprintln!("benches/cri_scale: cannot list the pods to remove: {e}");
                    return;
                }
            };
        if pods.is_empty() {
            return;
        }
        let began = Instant::now();
        let next = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..PARALLEL {
                s.spawn(|| {
                    let ch = channel(&self.path);
                    while let Some(id) = pods.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let mut req = StopPodSandboxRequest::new();
                        req.pod_sandbox_id = id.clone();
                        if let Err(e) =
                            try_call::<_, StopPodSandboxResponse>(&ch, "StopPodSandbox", &req)
                        {
                            eprintln!("benches/cri_scale: StopPodSandbox {id}: {e}");
                        }
                        let mut req = RemovePodSandboxRequest::new();
                        req.pod_sandbox_id = id.clone();
                        if let Err(e) =
                            try_call::<_, RemovePodSandboxResponse>(&ch, "RemovePodSandbox", &req)
                        {
                            eprintln!("benches/cri_scale: RemovePodSandbox {id}: {e}");
                        }
                    }
                });
            }
        });
        eprintln!(
            "benches/cri_scale: removed {} pods in {:.1} s",
            pods.len(),
            began.elapsed().as_secs_f64()
        );
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.remove_all();
    }
}

/// Time to Ready of `w`, after checking that it holds exactly `truth` and runs in `mode`
/// (a client that fell back to relisting would measure the wrong thing).
fn held(w: Watcher, truth: &BTreeSet<String>, mode: &str) -> Duration {
    let t0 = Instant::now();
    w.wait_ready(DEADLINE).expect("not ready");
    let took = t0.elapsed();
    let ids: BTreeSet<String> = w.portfolio().iter().map(|c| c.id.clone()).collect();
    assert_eq!(
        &ids, truth,
        "the watcher's portfolio is not the CRI listing"
    );
    assert_eq!(
        mode_of(&w),
        mode,
        "the CRI watcher is not in the mode measured"
    );
    w.close();
    took
}

/// The event mode the watcher's client is in now (from the engine info of its last
/// listing; a fallback to relisting reconnects, so it lists again).
fn mode_of(w: &Watcher) -> String {
    w.engine_info().map(|i| i.mode).unwrap_or_default()
}

/// A watcher's CPU window: the engine's and our CPU, and what the watcher did meanwhile
/// (its mode at the end, reconnects, resyncs, raw events), to show it stayed in its mode.
fn watched_window(pid: u32, window: Duration, w: Watcher) -> (Cpu, String) {
    w.wait_ready(DEADLINE).expect("not ready");
    let m0 = w.metrics();
    let cpu = cpu_window(pid, window);
    let m1 = w.metrics();
    let mode = mode_of(&w);
    let what = format!(
        "mode at the end: {}, {} reconnects, {} resyncs, {} raw events in the window",
        if mode.is_empty() { "-" } else { &mode },
        m1.reconnect_attempts - m0.reconnect_attempts,
        m1.resyncs - m0.resyncs,
        m1.raw_events - m0.raw_events
    );
    w.close();
    (cpu, what)
}

/// Runs `once` `ROUNDS` times; median, min and max, and the median of containerd's CPU
/// per round (from the watcher's creation to its close) when its PID is known.
fn ready_row(what: &str, pid: Option<u32>, once: impl Fn() -> Duration) -> String {
    let engine_cpu = || pid.map(|p| cpu_of(&p.to_string()));
    let mut v = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..ROUNDS {
        let e0 = engine_cpu();
        v.push(once());
        if let (Some(a), Some(b)) = (e0, engine_cpu()) {
            cpu.push(b - a);
        }
    }
    v.sort();
    cpu.sort_by(f64::total_cmp);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let cpu = cpu
        .get(cpu.len() / 2)
        .map(|c| format!("  containerd CPU median {:.0} ms", c * 1e3))
        .unwrap_or_default();
    format!(
        "   {what:<40} median {:>8.1} ms  min {:>8.1} ms  max {:>8.1} ms{cpu}",
        ms(v[v.len() / 2]),
        ms(v[0]),
        ms(v[v.len() - 1])
    )
}

/// utime + stime of `pid` in seconds.
fn cpu_of(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
    // Fields after the command (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): utime is field 14, stime 15.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / clock_ticks()
}

fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU seconds per minute of the engine and of this process over `window`.
#[derive(Clone, Copy)]
struct Cpu {
    engine: f64,
    ours: f64,
}

fn cpu_window(pid: u32, window: Duration) -> Cpu {
    cpu_while(pid, || std::thread::sleep(window)).0
}

/// The engine's and our CPU per minute while `work` runs, and what `work` returned.
fn cpu_while<T>(pid: u32, work: impl FnOnce() -> T) -> (Cpu, T) {
    let pid = pid.to_string();
    let (e0, o0, t0) = (cpu_of(&pid), cpu_of("self"), Instant::now());
    let out = work();
    let (e1, o1, secs) = (cpu_of(&pid), cpu_of("self"), t0.elapsed().as_secs_f64());
    (
        Cpu {
            engine: (e1 - e0) * 60.0 / secs,
            ours: (o1 - o0) * 60.0 / secs,
        },
        out,
    )
}

fn cpu_row(what: &str, c: Cpu, idle: Option<Cpu>) -> String {
    let extra = idle
        .map(|i| {
            // No ratio to an idle figure below the clock tick's resolution.
            let ratio = if i.engine >= 0.05 {
                format!(", {:.2}x idle", c.engine / i.engine)
            } else {
                String::new()
            };
            format!("  ({:+.2} s/min over idle{ratio})", c.engine - i.engine)
        })
        .unwrap_or_default();
    format!(
        "   {what:<40} containerd {:>6.2} s/min  ours {:>6.2} s/min (load {}){extra}",
        c.engine,
        c.ours,
        load()
    )
}
