//! Discovery against the engines that tests/engines/up.sh started: every one is found by
//! the /proc scan with the right PID, dockerd's own containerd is recognised and skipped,
//! and a containerd's CRI plugin is only listed when asked.

mod common;

use whalewatcher::discover::{self, DiscoverOptions, Found, Kind, Source};

/// The PID of an engine the engines script started, from its pidfile (an engine may
/// have been restarted since the env file was written), else from the env variable.
fn pid_var(var: &str) -> u32 {
    let dir = std::env::var("WHALEWATCHER_ENGINES_DIR")
        .unwrap_or_else(|_| "/tmp/whalewatcher-engines".into());
    let file = match var {
        "WHALEWATCHER_DOCKERD_PID" => "docker/docker.pid",
        "WHALEWATCHER_PODMAN_PID" => "podman/podman.pid",
        _ => "containerd/containerd.pid",
    };
    if let Some(pid) = std::fs::read_to_string(format!("{dir}/{file}"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        return pid;
    }
    let v = std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set"));
    v.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{var}={v:?} is no pid"))
}

fn path_of(url: &str) -> String {
    let p = url.strip_prefix("unix://").unwrap_or(url);
    std::fs::canonicalize(p).unwrap().display().to_string()
}

fn find<'a>(all: &'a [Found], kind: Kind, path: &str) -> &'a Found {
    all.iter()
        .find(|f| f.kind == kind && f.api_path == path)
        .unwrap_or_else(|| panic!("no {kind:?} at {path} in {all:#?}"))
}

#[test]
fn finds_every_scripted_engine_with_its_pid() {
    let (Some(docker), Some(podman), Some(containerd)) = (
        common::endpoint("WHALEWATCHER_DOCKER"),
        common::endpoint("WHALEWATCHER_PODMAN"),
        common::endpoint("WHALEWATCHER_CONTAINERD"),
    ) else {
        return;
    };
    // Only the /proc scan: the engines run on private sockets.
    let opts = DiscoverOptions {
        env: false,
        well_known: false,
        ..DiscoverOptions::default()
    };
    let all = discover::discover(&opts);
    let d = find(&all, Kind::Docker, &path_of(&docker));
    assert_eq!(d.pid, Some(pid_var("WHALEWATCHER_DOCKERD_PID")));
    assert_eq!(d.source, Source::Process);
    assert!(d.inode.is_some());
    let p = find(&all, Kind::Podman, &path_of(&podman));
    assert_eq!(p.pid, Some(pid_var("WHALEWATCHER_PODMAN_PID")));
    let c = find(&all, Kind::Containerd, &path_of(&containerd));
    assert_eq!(c.pid, Some(pid_var("WHALEWATCHER_CONTAINERD_PID")));
    assert_eq!(c.managed_by, None);
    // No CRI by default; no helper sockets (ttrpc, debug, metrics, libnetwork).
    for f in &all {
        assert_ne!(f.kind, Kind::Cri, "CRI only when asked: {f:?}");
        assert!(
            !f.api_path.ends_with(".ttrpc")
                && !f.api_path.ends_with("-debug.sock")
                && !f.api_path.ends_with("metrics.sock")
                && !f.api_path.contains("/libnetwork/"),
            "helper socket listed: {f:?}"
        );
        assert_eq!(f.managed_by, None);
    }
    // dockerd's own containerd: seen by scan(), marked as dockerd's, left out above.
    let dockerd = pid_var("WHALEWATCHER_DOCKERD_PID");
    let everything = discover::scan(&opts);
    let managed: Vec<&Found> = everything
        .iter()
        .filter(|f| f.managed_by == Some(dockerd))
        .collect();
    assert_eq!(managed.len(), 1, "{everything:#?}");
    assert_eq!(managed[0].kind, Kind::Containerd);
    let engines = std::env::var("WHALEWATCHER_ENGINES_DIR")
        .unwrap_or_else(|_| "/tmp/whalewatcher-engines".into());
    assert!(
        managed[0]
            .api_path
            .starts_with(&format!("{engines}/docker/exec/")),
        "{managed:?}"
    );
    assert!(!all.iter().any(|f| f.api_path == managed[0].api_path));
}

#[test]
fn cri_of_a_standalone_containerd_only_when_asked() {
    let Some(cri) = common::endpoint("WHALEWATCHER_CRI") else {
        return;
    };
    let opts = DiscoverOptions {
        env: false,
        well_known: false,
        ..DiscoverOptions::default()
    }
    .with_cri_for_containerd(true);
    let all = discover::discover(&opts);
    let c = find(&all, Kind::Cri, &path_of(&cri));
    assert_eq!(c.pid, Some(pid_var("WHALEWATCHER_CONTAINERD_PID")));
    // Never for dockerd's containerd.
    let dockerd = pid_var("WHALEWATCHER_DOCKERD_PID");
    assert!(all
        .iter()
        .all(|f| f.kind != Kind::Cri || f.pid != Some(dockerd)));
}

#[test]
fn a_found_engine_client_carries_the_pid() {
    let Some(docker) = common::endpoint("WHALEWATCHER_DOCKER") else {
        return;
    };
    let all = discover::discover(&DiscoverOptions::default());
    let d = find(&all, Kind::Docker, &path_of(&docker));
    // The client fills the PID into the engine info (as the Go original's WithPID).
    let info = d.client().unwrap().info().unwrap();
    assert_eq!(info.pid, d.pid);
    assert!(info.pid.is_some());
    assert_eq!(info.kind, whalewatcher::engine::DOCKER);
}
