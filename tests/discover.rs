//! Discovery against the engines that tests/engines/up.sh started: every one is found by
//! the /proc scan with the right PID, dockerd's own containerd is recognised and skipped,
//! and a containerd's CRI plugin is only listed when asked.

mod support;

use whalewatcher::discover::{self, DiscoverOptions, Found, Source};
use whalewatcher::EngineKind as Kind;

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
        support::endpoint("WHALEWATCHER_DOCKER"),
        support::endpoint("WHALEWATCHER_PODMAN"),
        support::endpoint("WHALEWATCHER_CONTAINERD"),
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
    let Some(cri) = support::endpoint("WHALEWATCHER_CRI") else {
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
    let Some(docker) = support::endpoint("WHALEWATCHER_DOCKER") else {
        return;
    };
    let all = discover::discover(&DiscoverOptions::default());
    let d = find(&all, Kind::Docker, &path_of(&docker));
    // The client fills the PID into the engine info (as the Go original's WithPID).
    let info = d.client().unwrap().info().unwrap();
    assert_eq!(info.pid, d.pid);
    assert!(info.pid.is_some());
    assert_eq!(info.kind, Kind::Docker);
}

// ---- `whalewatch --auto ps --json` vs the union of the engines' ground truths ----

#[cfg(all(feature = "docker", feature = "serde", feature = "containerd"))]
mod cli_auto {
    use std::collections::{BTreeMap, BTreeSet};
    use std::process::Command;

    use super::support;
    use whalewatcher::EngineKind as Kind;

    use crate::support::whalewatch_binary as binary;

    /// `cmd args`, bounded: every engine discovery sees is asked, also other tests'
    /// private engines, and one that hangs (a dockerd stuck removing containers was seen
    /// to hold `docker inspect` for minutes) must fail the call, not hang the test.
    fn try_run(cmd: &str, args: &[&str]) -> Result<String, String> {
        support::try_run_with("timeout", &["20", cmd], args)
    }

    /// Alive container ids -> pid of one engine, or None while it cannot be asked.
    type Truth = BTreeMap<String, u32>;

    /// Docker and Podman alike, through the docker CLI (Podman serves the compat API);
    /// an engine that does not answer (it just went away) has nothing alive.
    fn docker_truth(flag: &str, url: &str) -> Truth {
        let cli = "docker";
        let Ok(ids) = try_run(cli, &[flag, url, "ps", "-q", "--no-trunc"]) else {
            return Truth::new();
        };
        let mut t = Truth::new();
        for id in ids.split_whitespace() {
            // It may exit between ps and inspect: then it is simply not alive.
            if let Ok(pid) = try_run(cli, &[flag, url, "inspect", "-f", "{{.State.Pid}}", id]) {
                if let Ok(pid) = pid.trim().parse::<u32>() {
                    if pid != 0 {
                        t.insert(id.to_string(), pid);
                    }
                }
            }
        }
        t
    }

    /// Tasks of the watched namespaces (containerd's default ignore list: moby, k8s.io),
    /// with the whalewatcher id form: "ns/id", the default namespace unprefixed.
    fn ctr_truth(sock: &str) -> Truth {
        let mut t = Truth::new();
        let Ok(namespaces) = try_run("ctr", &["-a", sock, "namespaces", "ls", "-q"]) else {
            return t;
        };
        for ns in namespaces.split_whitespace() {
            if ns == "moby" || ns == "k8s.io" {
                continue;
            }
            let Ok(tasks) = try_run("ctr", &["-a", sock, "-n", ns, "tasks", "ls"]) else {
                continue;
            };
            for line in tasks.lines().skip(1) {
                let f: Vec<&str> = line.split_whitespace().collect();
                if f.len() >= 3 && (f[2] == "RUNNING" || f[2] == "PAUSED") {
                    let id = if ns == "default" {
                        f[0].to_string()
                    } else {
                        format!("{ns}/{}", f[0])
                    };
                    if let Ok(pid) = f[1].parse::<u32>() {
                        t.insert(id, pid);
                    }
                }
            }
        }
        t
    }

    struct Mine {
        docker: String,
        podman: String,
        ctr_sock: String,
        ctr_id: String,
        ids: Vec<String>,
    }

    impl Drop for Mine {
        fn drop(&mut self) {
            if let Some(id) = self.ids.first() {
                let _ = try_run("docker", &["-H", &self.docker, "rm", "-f", id]);
            }
            if let Some(id) = self.ids.get(1) {
                let _ = try_run(
                    "podman",
                    &["--url", &self.podman, "rm", "-f", "-t", "0", id],
                );
            }
            let a = ["-a", self.ctr_sock.as_str(), "-n", "default"];
            let _ = try_run(
                "ctr",
                &[&a[..], &["tasks", "kill", "-s", "KILL", &self.ctr_id]].concat(),
            );
            for _ in 0..100 {
                if try_run("ctr", &[&a[..], &["tasks", "rm", &self.ctr_id]].concat()).is_ok()
                    || try_run("ctr", &[&a[..], &["tasks", "ls", "-q"]].concat())
                        .is_ok_and(|l| !l.lines().any(|x| x == self.ctr_id))
                {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let _ = try_run(
                "ctr",
                &[&a[..], &["containers", "rm", &self.ctr_id]].concat(),
            );
        }
    }

    #[test]
    fn auto_ps_json_is_the_union_of_the_engines_ground_truths() {
        let (Some(docker), Some(podman), Some(sock)) = (
            support::endpoint("WHALEWATCHER_DOCKER"),
            support::endpoint("WHALEWATCHER_PODMAN"),
            support::endpoint("WHALEWATCHER_CONTAINERD"),
        ) else {
            return;
        };
        let image = std::env::var("WHALEWATCHER_IMAGE").unwrap_or_else(|_| "busybox:sleep".into());
        let ctr_image = std::env::var("WHALEWATCHER_CTR_IMAGE")
            .unwrap_or_else(|_| "docker.io/library/busybox:sleep".into());
        let tag = format!("ww-auto-{}", std::process::id());
        let mut mine = Mine {
            docker: docker.clone(),
            podman: podman.clone(),
            ctr_sock: sock.clone(),
            ctr_id: tag.clone(),
            ids: Vec::new(),
        };
        let d = support::run(
            "docker",
            &["-H", &docker, "run", "-d", "--name", &tag, &image],
        );
        mine.ids.push(d.trim().to_string());
        let p = support::run(
            "podman",
            &["--url", &podman, "run", "-d", "--name", &tag, &image],
        );
        mine.ids.push(p.trim().to_string());
        support::run(
            "ctr",
            &["-a", &sock, "-n", "default", "run", "-d", &ctr_image, &tag],
        );
        mine.ids.push(tag.clone());

        // Ground truth before and after, over every engine that discovery sees (other
        // tests run private engines, and containers come and go on the shared ones):
        // whatever was alive all along must be listed with its pid, and whatever is listed
        // must have been alive on some engine at some point.
        let truth = || -> Vec<(&'static str, Truth)> {
            let opts = whalewatcher::discover::DiscoverOptions {
                env: false,
                ..Default::default()
            };
            whalewatcher::discover::discover(&opts)
                .into_iter()
                .filter_map(|f| {
                    let url = f.address();
                    match f.kind {
                        Kind::Docker => Some(("docker.com", docker_truth("-H", &url))),
                        Kind::Podman => Some(("podman.io", docker_truth("-H", &url))),
                        Kind::Containerd => Some(("containerd.io", ctr_truth(&f.api_path))),
                        Kind::Cri => None,
                    }
                })
                .collect()
        };
        let before = truth();
        let out = Command::new(binary())
            .args(["--auto", "ps", "--json"])
            .env_remove("DOCKER_HOST")
            .env_remove("CONTAINERD_ADDRESS")
            .env_remove("CONTAINER_RUNTIME_ENDPOINT")
            .output()
            .unwrap();
        let after = truth();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let listed = listed.as_array().unwrap();
        let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
        let mut pid_of: BTreeMap<(String, String), u64> = BTreeMap::new();
        for c in listed {
            let key = (
                c["engine"].as_str().unwrap().to_string(),
                c["id"].as_str().unwrap().to_string(),
            );
            assert!(seen.insert(key.clone()), "listed twice: {key:?}");
            pid_of.insert(key, c["pid"].as_u64().unwrap());
            // dockerd's own containerd is not watched: no moby namespace.
            assert!(!c["id"].as_str().unwrap().starts_with("moby/"), "{c}");
        }
        // Alive all along: in both scans, on the same engine socket, with the same pid.
        for (kind, b) in &before {
            for (id, pid) in b {
                let stayed = after
                    .iter()
                    .any(|(k, a)| k == kind && a.get(id) == Some(pid));
                if stayed {
                    let key = (kind.to_string(), id.clone());
                    assert_eq!(
                        pid_of.get(&key).copied(),
                        Some(u64::from(*pid)),
                        "{kind} {id} (alive all along) is missing or has the wrong pid"
                    );
                }
            }
        }
        // Listed and seen by a scan: with a pid that scan saw. (A container listed but
        // in neither scan lived only in between, on a shared engine: allowed.)
        for ((kind, id), pid) in &pid_of {
            let seen: Vec<u32> = before
                .iter()
                .chain(after.iter())
                .filter(|(k, _)| k == kind)
                .filter_map(|(_, t)| t.get(id).copied())
                .collect();
            if seen.is_empty() {
                eprintln!("note: {kind} {id} lived between the ground-truth scans");
            } else {
                assert!(
                    seen.iter().any(|p| u64::from(*p) == *pid),
                    "{kind} {id}: listed pid {pid}, engines said {seen:?}"
                );
            }
        }
        // My own containers (one per shared engine) were alive all along, so the check
        // above covered their pids; make sure of that.
        for (id, kind) in mine
            .ids
            .iter()
            .zip(["docker.com", "podman.io", "containerd.io"])
        {
            let pid = after
                .iter()
                .find_map(|(k, t)| (*k == kind).then(|| t.get(id)).flatten())
                .unwrap_or_else(|| panic!("{kind} {id} not in the ground truth"));
            assert_eq!(
                pid_of.get(&(kind.to_string(), id.clone())),
                Some(&u64::from(*pid)),
                "my container {kind} {id}"
            );
        }
    }

    fn whalewatch(args: &[&str]) -> std::process::Output {
        Command::new(binary())
            .args(args)
            .env_remove("DOCKER_HOST")
            .env_remove("CONTAINERD_ADDRESS")
            .env_remove("CONTAINER_RUNTIME_ENDPOINT")
            .output()
            .unwrap()
    }

    #[test]
    fn auto_stats_json_reports_every_shared_engine() {
        let (Some(docker), Some(podman), Some(sock)) = (
            support::endpoint("WHALEWATCHER_DOCKER"),
            support::endpoint("WHALEWATCHER_PODMAN"),
            support::endpoint("WHALEWATCHER_CONTAINERD"),
        ) else {
            return;
        };
        let out = whalewatch(&["--auto", "stats", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let all = v.as_array().unwrap();
        for (kind, path) in [
            ("docker", super::path_of(&docker)),
            ("podman", super::path_of(&podman)),
            ("containerd", super::path_of(&sock)),
        ] {
            let label = format!("{kind} {path} (pid ");
            let e = all
                .iter()
                .find(|e| e["engine"].as_str().unwrap().starts_with(&label))
                .unwrap_or_else(|| panic!("no {label}...) in {v:#}"));
            assert_eq!(e["health"], "synced", "{e:#}");
            assert!(e["resyncs"].as_u64().unwrap() >= 1, "{e:#}");
            assert!(e["list"]["count"].as_u64().unwrap() >= 1, "{e:#}");
            let started = e["events"]["started"].as_u64().unwrap();
            // Every container shown was reported started (metrics are read after the
            // portfolio, and counted before a snapshot is published).
            assert!(started >= e["containers"].as_u64().unwrap(), "{e:#}");
        }
        // CRI only when asked.
        assert!(!all
            .iter()
            .any(|e| e["engine"].as_str().unwrap().starts_with("cri ")));
        let out = whalewatch(&["--auto", "--with-cri", "stats", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let label = format!("cri {} (pid ", super::path_of(&sock));
        assert!(
            v.as_array()
                .unwrap()
                .iter()
                .any(|e| e["engine"].as_str().unwrap().starts_with(&label)),
            "{v:#}"
        );
    }

    /// Kills the child on drop (the events command runs until killed).
    struct Running(std::process::Child);

    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn auto_events_merge_the_engines_streams() {
        use std::io::BufRead;
        let (Some(docker), Some(podman), Some(sock)) = (
            support::endpoint("WHALEWATCHER_DOCKER"),
            support::endpoint("WHALEWATCHER_PODMAN"),
            support::endpoint("WHALEWATCHER_CONTAINERD"),
        ) else {
            return;
        };
        // A sentinel on each engine whose start the stream must replay as synthetic: on a
        // fresh machine no other container may be alive, and a synthetic line per engine is
        // how the test knows each engine's subscription is live.
        let tag = format!("ww-auto-ev-{}", std::process::id());
        let image = std::env::var("WHALEWATCHER_IMAGE").unwrap_or_else(|_| "busybox:sleep".into());
        let sentinel = format!("{tag}-sentinel");
        let mut sentinels = Mine {
            docker: docker.clone(),
            podman: podman.clone(),
            ctr_sock: sock.clone(),
            ctr_id: format!("{sentinel}-none"),
            ids: Vec::new(),
        };
        let d = support::run(
            "docker",
            &["-H", &docker, "run", "-d", "--name", &sentinel, &image],
        );
        sentinels.ids.push(d.trim().to_string());
        let p = support::run(
            "podman",
            &["--url", &podman, "run", "-d", "--name", &sentinel, &image],
        );
        sentinels.ids.push(p.trim().to_string());
        let mut child = Command::new(binary())
            .args(["--auto", "events", "--json"])
            .env_remove("DOCKER_HOST")
            .env_remove("CONTAINERD_ADDRESS")
            .env_remove("CONTAINER_RUNTIME_ENDPOINT")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let _running = Running(child);
        let (tx, rx) = crossbeam_channel::unbounded::<serde_json::Value>();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let v = serde_json::from_str(&line).expect("events --json line is JSON");
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let next = |what: &str, pred: &dyn Fn(&serde_json::Value) -> bool| loop {
            let left = end.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(v) if pred(&v) => return v,
                Ok(_) => {}
                Err(_) => panic!("timed out waiting for {what}"),
            }
        };
        let mut pending: Vec<&String> = sentinels.ids.iter().collect();
        while !pending.is_empty() {
            let v = next("the sentinels' synthetic starts", &|v| {
                v["synthetic"] == true && v["container"]["name"] == sentinel.as_str()
            });
            pending.retain(|id| v["container"]["id"] != id.as_str());
        }
        let mut mine = Mine {
            docker: docker.clone(),
            podman: podman.clone(),
            ctr_sock: sock,
            ctr_id: format!("{tag}-none"),
            ids: Vec::new(),
        };
        let d = support::run(
            "docker",
            &["-H", &docker, "run", "-d", "--name", &tag, &image],
        );
        mine.ids.push(d.trim().to_string());
        let p = support::run(
            "podman",
            &["--url", &podman, "run", "-d", "--name", &tag, &image],
        );
        mine.ids.push(p.trim().to_string());
        // One stream, both engines: a live Started from each, with the id and pid the
        // engine reports.
        let mut want: BTreeMap<String, (String, u64)> = BTreeMap::new();
        for (kind, cli, flag, url, id) in [
            ("docker.com", "docker", "-H", &docker, &mine.ids[0]),
            ("podman.io", "podman", "--url", &podman, &mine.ids[1]),
        ] {
            let pid = support::run(cli, &[flag, url, "inspect", "-f", "{{.State.Pid}}", id]);
            want.insert(kind.to_string(), (id.clone(), pid.trim().parse().unwrap()));
        }
        while !want.is_empty() {
            let v = next("live Started of my containers", &|v| {
                v["type"] == "started"
                    && v["synthetic"] == false
                    && v["container"]["name"] == tag.as_str()
            });
            let kind = v["container"]["engine"].as_str().unwrap().to_string();
            let (id, pid) = want
                .remove(&kind)
                .unwrap_or_else(|| panic!("unexpected or repeated start: {v}"));
            assert_eq!(v["container"]["id"], id.as_str(), "{v}");
            assert_eq!(v["container"]["pid"].as_u64(), Some(pid), "{v}");
        }
    }
}
