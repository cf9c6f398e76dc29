//! The `whalewatch` example binary, run as a process: `ps --json` vs the docker ground
//! truth, `events --json --count`, and one-line errors with exit status 1.
#![cfg(all(feature = "docker", feature = "serde"))]

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use support::cli::{Cli, Snap};

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

use support::whalewatch_binary as binary;

fn whalewatch(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env_remove("DOCKER_HOST")
        .output()
        .expect("cannot run whalewatch")
}

/// Exit 1, exactly one line on stderr starting with `whalewatch:`, no panic, no stdout.
fn assert_one_line_error(out: &Output, mentions: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "stderr: {err}");
    assert!(err.starts_with("whalewatch: "), "stderr: {err}");
    assert!(!err.contains("panicked") && !err.contains("RUST_BACKTRACE"));
    assert!(
        err.contains(mentions),
        "{err:?} should mention {mentions:?}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn missing_socket_is_one_line_error() {
    let out = whalewatch(&["--docker", "unix:///nonexistent.sock", "ps"]);
    assert_one_line_error(&out, "/nonexistent.sock");
}

#[test]
fn bad_url_is_one_line_error() {
    let out = whalewatch(&["--docker", "gopher://x", "ps"]);
    assert_one_line_error(&out, "gopher://x");
}

#[test]
fn usage_errors() {
    assert_one_line_error(&whalewatch(&["frobnicate"]), "frobnicate");
    assert_one_line_error(&whalewatch(&["ps", "--bogus"]), "--bogus");
    assert_one_line_error(&whalewatch(&["events", "--count", "x"]), "--count");
    assert_one_line_error(&whalewatch(&["--docker"]), "--docker");
    assert_one_line_error(
        &whalewatch(&["--cri", "/nonexistent/cri.sock", "ps"]),
        "/nonexistent/cri.sock",
    );
    assert_one_line_error(
        &whalewatch(&["--auto", "--docker", "unix:///a.sock", "ps"]),
        "--auto does not go with",
    );
    // Not an engine: a socket nobody serves HTTP on is reported, not panicked on.
    let out = whalewatch(&["--docker", "unix:///dev/null", "ps"]);
    assert_one_line_error(&out, "/dev/null");
    let help = whalewatch(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("usage: whalewatch"));
}

fn snap_of(v: &Value) -> (String, Snap) {
    let labels: BTreeMap<String, String> = v["labels"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    (
        v["id"].as_str().unwrap().to_string(),
        Snap {
            name: v["name"].as_str().unwrap().to_string(),
            pid: v["pid"].as_u64().unwrap() as u32,
            paused: v["paused"].as_bool().unwrap(),
            project: v["project"].as_str().unwrap().to_string(),
            labels,
        },
    )
}

#[test]
fn ps_json_equals_docker_ground_truth() {
    let _s = serial();
    let Some(url) = support::endpoint("WHALEWATCHER_DOCKER") else {
        return;
    };
    let e = Cli::docker(url.clone());
    let paused = e.start(
        &e.name("cli-paused"),
        &["--label", "com.docker.compose.project=cliproj"],
    );
    e.run(&["pause", &paused]);
    e.start(&e.name("cli-plain"), &[]);
    support::watch::converge(
        Duration::from_secs(30),
        || e.truth(),
        || {
            let out = whalewatch(&["--docker", &url, "ps", "--json"]);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let all: Vec<Value> = serde_json::from_slice(&out.stdout).expect("ps --json is JSON");
            for v in &all {
                assert_eq!(v["engine"], "docker.com");
                assert!(v["image"].is_string());
            }
            let keys: Vec<(String, String, String)> = all
                .iter()
                .map(|v| {
                    let s = |k: &str| v[k].as_str().unwrap().to_string();
                    (s("engine"), s("project"), s("name"))
                })
                .collect();
            let mut sorted = keys.clone();
            sorted.sort();
            assert_eq!(keys, sorted, "sorted by engine, project, name");
            all.iter().map(snap_of).collect::<BTreeMap<_, _>>()
        },
    );
    // The table form shows the project and the paused state.
    let out = whalewatch(&["--docker", &url, "ps"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("project cliproj") && table.contains(&paused[..12]));
    assert!(table
        .lines()
        .any(|l| l.contains(&paused[..12]) && l.contains("paused")));
}

#[test]
fn events_json_count() {
    let _s = serial();
    let Some(url) = support::endpoint("WHALEWATCHER_DOCKER") else {
        return;
    };
    let e = Cli::docker(url.clone());
    // Count the alive containers first so that --count covers the synthetic events too.
    let alive = loop {
        if let Some(t) = e.truth() {
            break t.len();
        }
    };
    let count = (alive + 2).to_string();
    let mut child = Command::new(binary())
        .args(["--docker", &url, "events", "--json", "--count", &count])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for _ in 0..alive {
        let v: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        assert_eq!(v["type"], "started");
        seen.push(v);
    }
    // Watchdog: a hanging binary fails the test instead of blocking it forever.
    let pid = child.id().to_string();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let dog = std::thread::spawn(move || {
        if done_rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
    });
    let id = e.start(&e.name("cli-ev"), &[]);
    // Kill only after the start is reported: a kill that lands while the watcher still
    // inspects the new container makes it vanish without either event.
    for l in lines.by_ref() {
        let v: Value = serde_json::from_str(&l.unwrap()).expect("a JSON line");
        let ours = v["container"]["id"] == id.as_str();
        seen.push(v);
        if ours {
            break;
        }
    }
    e.run(&["kill", &id]);
    for l in lines {
        seen.push(serde_json::from_str(&l.unwrap()).expect("a JSON line"));
    }
    let st = child.wait().unwrap();
    let _ = done_tx.send(());
    dog.join().unwrap();
    assert!(st.success(), "whalewatch events: {st:?}");
    assert_eq!(seen.len(), alive + 2);
    let ours: Vec<&Value> = seen
        .iter()
        .filter(|v| v["container"]["id"] == id.as_str())
        .collect();
    assert_eq!(ours.len(), 2, "{seen:#?}");
    assert_eq!(ours[0]["type"], "started");
    assert_eq!(ours[0]["exit_code"], Value::Null);
    assert_eq!(ours[1]["type"], "exited");
    assert_eq!(ours[1]["exit_code"], 137);
    assert_eq!(ours[1]["oom"], false);
    assert!(ours[1]["seq"].as_u64().unwrap() > ours[0]["seq"].as_u64().unwrap());
    for v in &seen {
        let t = v["time"].as_str().unwrap();
        // 2026-12-02T14:10:00.123456789Z
        assert_eq!(t.len(), 30, "{t}");
        assert!(t.ends_with('Z') && &t[4..5] == "-" && &t[10..11] == "T" && &t[19..20] == ".");
        assert!(v["container"]["labels"].is_object());
    }
}

/// `--since 0` replays the journal instead of synthetic events: the first line is a
/// journaled (non-synthetic) start, from the initial listing or a later start.
#[test]
fn events_since_skips_synthetic_starts() {
    let _s = serial();
    let Some(url) = support::endpoint("WHALEWATCHER_DOCKER") else {
        return;
    };
    let e = Cli::docker(url.clone());
    // Alive before the CLI: in its first listing, journaled as #1, #2, ... (synthetic).
    // Through `Since::Now` they would come as a snapshot, all with the same seq.
    let early = [
        e.start(&e.name("cli-since-early"), &[]),
        e.start(&e.name("cli-since-early"), &[]),
    ];
    let mut child = Command::new(binary())
        .args(["--docker", &url, "events", "--json", "--since", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let dog = std::thread::spawn(move || {
        if done_rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = Command::new("kill").args(["-9", &pid]).status();
        }
    });
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in lines.map_while(Result::ok) {
            if tx.send(l).is_err() {
                return;
            }
        }
    });
    // The journal replayed from #1: the first listing's Started events of containers
    // alive before (other tests', other benches'), journaled as synthetic; then live
    // events. The CLI subscribes only once synced: keep starting containers until one of
    // ours shows; it must be a live Started (not the snapshot's synthetic one).
    let mut started: Vec<String> = Vec::new();
    let mut before = Vec::new();
    let ours = 'found: loop {
        started.push(e.start(&e.name("cli-since"), &[]));
        let end = std::time::Instant::now() + Duration::from_secs(2);
        while let Ok(l) = rx.recv_timeout(end.saturating_duration_since(std::time::Instant::now()))
        {
            let v: Value = serde_json::from_str(&l).unwrap();
            let id = v["container"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if started.contains(&id) {
                break 'found v;
            }
            before.push(v);
        }
        assert!(
            started.len() < 20,
            "no event line of ours; other lines: {before:#?}"
        );
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = done_tx.send(());
    dog.join().unwrap();
    assert_eq!(ours["type"], "started", "{ours}");
    assert_eq!(ours["synthetic"], false, "{ours}");
    assert!(ours["seq"].as_u64().unwrap() >= 1, "{ours}");
    // The journal from #1 on, in order, without holes: the first listing (the early ones
    // among it, synthetic), then live events.
    let seqs: Vec<u64> = before
        .iter()
        .chain([&ours])
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    if let Some(i) = (0..seqs.len()).find(|&i| seqs[i] != i as u64 + 1) {
        panic!(
            "not the journal from #1 without holes: line {i} has #{}; the first: {:?}",
            seqs[i],
            &seqs[..seqs.len().min(8)]
        );
    }
    for id in &early {
        let v = before
            .iter()
            .find(|v| v["container"]["id"] == id.as_str())
            .unwrap_or_else(|| panic!("no journaled start of {id} in {} lines", before.len()));
        assert_eq!(v["type"], "started", "{v}");
        assert_eq!(v["synthetic"], true, "{v}");
    }
}

/// Several engine flags: one watcher each, outputs merged and sorted by engine.
#[test]
fn ps_json_merges_engines() {
    let _s = serial();
    let (Some(d), Some(p)) = (
        support::endpoint("WHALEWATCHER_DOCKER"),
        support::endpoint("WHALEWATCHER_PODMAN"),
    ) else {
        return;
    };
    let dc = Cli::docker(d.clone());
    let pc = Cli::podman(p.clone());
    let did = dc.start(&dc.name("cli-m"), &[]);
    let pid = pc.start(&pc.name("cli-m"), &[]);
    let mut args = vec!["--docker", d.as_str(), "--docker", p.as_str()];
    let (c, cri) = (
        std::env::var("WHALEWATCHER_CONTAINERD").unwrap_or_default(),
        std::env::var("WHALEWATCHER_CRI").unwrap_or_default(),
    );
    if !c.is_empty() {
        args.extend(["--containerd", c.as_str()]);
    }
    if !cri.is_empty() {
        args.extend(["--cri", cri.as_str()]);
    }
    args.extend(["ps", "--json"]);
    let out = whalewatch(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let engine_of = |id: &str| {
        all.iter()
            .find(|v| v["id"] == id)
            .map(|v| v["engine"].as_str().unwrap().to_string())
    };
    assert_eq!(engine_of(&did).as_deref(), Some("docker.com"));
    assert_eq!(engine_of(&pid).as_deref(), Some("podman.io"));
    let engines: Vec<&str> = all.iter().map(|v| v["engine"].as_str().unwrap()).collect();
    let mut sorted = engines.clone();
    sorted.sort();
    assert_eq!(engines, sorted);
}
