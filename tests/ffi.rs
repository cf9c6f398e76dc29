//! The C ABI (src/ffi), called as C would call it: argument errors, the last-error
//! message, and a watcher of the real dockerd checked against `docker inspect`.

mod support;

use std::ffi::{c_char, CStr};
use std::time::Duration;

use serde_json::Value;
use support::cli::Cli;
use support::ffi::{c, last_error, take, W};
use whalewatcher::ffi::*;

#[test]
fn version_is_the_crate_version() {
    let v = unsafe { CStr::from_ptr(ww_version()) };
    assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
}

#[test]
fn bad_arguments_are_errors_with_messages() {
    let mut out: *mut WwWatcher = std::ptr::NonNull::dangling().as_ptr();
    let st = unsafe { ww_watcher_new(std::ptr::null(), std::ptr::null(), &mut out) };
    assert_eq!(st, WW_ERR_NULL);
    assert!(out.is_null());
    assert!(last_error().contains("engine is NULL"), "{}", last_error());

    let docker = c("docker");
    let st = unsafe { ww_watcher_new(docker.as_ptr(), std::ptr::null(), std::ptr::null_mut()) };
    assert_eq!(st, WW_ERR_NULL);
    assert!(last_error().contains("out is NULL"));

    let bad = [0xffu8, 0xfe, b'x', 0];
    let st = unsafe { ww_watcher_new(bad.as_ptr() as *const c_char, std::ptr::null(), &mut out) };
    assert_eq!(st, WW_ERR_UTF8);
    assert!(last_error().contains("not valid UTF-8"), "{}", last_error());
    let st = unsafe { ww_watcher_new(docker.as_ptr(), bad.as_ptr() as *const c_char, &mut out) };
    assert_eq!(st, WW_ERR_UTF8);
    assert!(last_error().contains("endpoint"), "{}", last_error());

    let (st, msg) = W::new("rocket", None).err().unwrap();
    assert_eq!(st, WW_ERR_INVALID_ARGUMENT);
    assert!(msg.contains("unknown engine \"rocket\""), "{msg}");
    let (st, msg) = W::new("docker", Some("ftp://example.com")).err().unwrap();
    assert_eq!(st, WW_ERR_INVALID_ARGUMENT);
    assert!(msg.contains("ftp://example.com"), "{msg}");

    // NULL handles and out-parameters, for every function that takes them.
    let mut json: *mut c_char = std::ptr::NonNull::dangling().as_ptr();
    let null_w: *const WwWatcher = std::ptr::null();
    unsafe {
        assert_eq!(ww_watcher_wait_ready(null_w, 0), WW_ERR_NULL);
        assert_eq!(ww_watcher_portfolio_json(null_w, &mut json), WW_ERR_NULL);
        assert!(json.is_null());
        assert_eq!(ww_watcher_engine_info_json(null_w, &mut json), WW_ERR_NULL);
        let key = c("x");
        assert_eq!(
            ww_watcher_lookup_json(null_w, key.as_ptr(), &mut json),
            WW_ERR_NULL
        );
        assert_eq!(
            ww_watcher_health(null_w, std::ptr::null_mut(), &mut json),
            WW_ERR_NULL
        );
        let mut sub: *mut WwSubscription = std::ptr::NonNull::dangling().as_ptr();
        assert_eq!(ww_watcher_subscribe(null_w, &mut sub), WW_ERR_NULL);
        assert!(sub.is_null());
        assert_eq!(ww_watcher_subscribe_since(null_w, 0, &mut sub), WW_ERR_NULL);
        assert_eq!(
            ww_subscription_next(std::ptr::null(), 0, &mut json),
            WW_ERR_NULL
        );
        assert!(last_error().contains("subscription is NULL"));
        // The free functions ignore NULL.
        ww_string_free(std::ptr::null_mut());
        ww_subscription_free(std::ptr::null_mut());
        ww_watcher_close(std::ptr::null_mut());
    }
}

#[test]
fn last_error_is_per_thread_and_cleared_by_success() {
    assert!(W::new("nope", None).is_err());
    assert!(last_error().contains("nope"));
    let other = std::thread::spawn(last_error).join().unwrap();
    assert_eq!(other, "", "another thread must not see this thread's error");
    assert!(
        last_error().contains("nope"),
        "reading it must not clear it"
    );
    let _w = W::new("docker", Some("unix:///nonexistent/ffi.sock")).unwrap();
    assert_eq!(last_error(), "");
}

#[test]
fn unreachable_engine_times_out_and_reports_why() {
    let w = W::new("docker", Some("unix:///nonexistent/ffi.sock")).unwrap();
    assert_eq!(w.wait_ready(300), WW_TIMEOUT);
    assert!(
        last_error().contains("/nonexistent/ffi.sock"),
        "{}",
        last_error()
    );
    support::wait_until(Duration::from_secs(10), "reconnecting health", || {
        w.health().0 == WW_HEALTH_RECONNECTING
    });
    let (_, h) = w.health();
    assert_eq!(h["state"], "reconnecting");
    assert!(h["error"]
        .as_str()
        .unwrap()
        .contains("/nonexistent/ffi.sock"));
    assert!(h["since"].as_str().unwrap().ends_with('Z'));
    assert_eq!(w.portfolio_value(), Vec::<Value>::new());
    assert_eq!(w.lookup("anything").0, WW_NOT_FOUND);
    let mut json = std::ptr::null_mut();
    assert_eq!(
        unsafe { ww_watcher_engine_info_json(w.0, &mut json) },
        WW_NOT_FOUND
    );
    assert!(json.is_null());
    // A subscription of an empty portfolio has nothing to say yet.
    let s = w.subscribe();
    assert_eq!(s.next(0).0, WW_TIMEOUT);
    assert_eq!(s.next(50), (WW_TIMEOUT, None));
}

fn find<'a>(p: &'a [Value], id: &str) -> Option<&'a Value> {
    p.iter().find(|c| c["id"] == id)
}

/// Portfolio, lookup and events from the real dockerd, against `docker inspect`.
#[test]
fn docker_portfolio_lookup_and_events() {
    let Some(docker) = Cli::shared_docker() else {
        return;
    };
    let (id1, name1) = docker.start_new("a");
    let w = W::new("docker", Some(&docker.url)).unwrap();
    assert_eq!(w.wait_ready(30_000), WW_OK, "{}", last_error());
    assert_eq!(w.health().0, WW_HEALTH_SYNCED);
    assert_eq!(w.health().1["state"], "synced");

    let mut info = std::ptr::null_mut();
    assert_eq!(
        unsafe { ww_watcher_engine_info_json(w.0, &mut info) },
        WW_OK
    );
    let info: Value = serde_json::from_str(&take(info).unwrap()).unwrap();
    assert_eq!(info["type"], "docker.com");
    let daemon_id = docker.run(&["info", "-f", "{{.ID}}"]);
    assert_eq!(info["id"], daemon_id.trim());

    support::wait_until(
        Duration::from_secs(20),
        "own container in the portfolio",
        || find(&w.portfolio_value(), &id1).is_some(),
    );
    let p = w.portfolio_value();
    let c1 = find(&p, &id1).unwrap();
    let truth = docker.inspect_one(&id1);
    assert_eq!(c1["pid"].as_u64(), Some(docker.pid(&id1)));
    assert_eq!(c1["name"], name1.as_str());
    assert_eq!(c1["engine"], "docker.com");
    assert_eq!(c1["paused"], false);
    assert_eq!(c1["image"], truth["Config"]["Image"]);
    assert_eq!(
        serde_json::to_value(support::cli::docker_labels(&truth)).unwrap(),
        c1["labels"]
    );

    // Lookup by id and by name gives the same object as the portfolio.
    for key in [id1.as_str(), name1.as_str()] {
        let (st, json) = w.lookup(key);
        assert_eq!(st, WW_OK, "{}", last_error());
        let got: Value = serde_json::from_str(&json.unwrap()).unwrap();
        assert_eq!(&got, c1);
    }
    assert_eq!(w.lookup("ffi-no-such-container"), (WW_NOT_FOUND, None));
    assert!(last_error().contains("ffi-no-such-container"));

    // Subscribe: synthetic started events for the portfolio, ours among them.
    let s = w.subscribe();
    let mut saw_ours = false;
    loop {
        match s.next(0) {
            (WW_OK, Some(json)) => {
                let ev: Value = serde_json::from_str(&json).unwrap();
                if ev["synthetic"] == false {
                    break;
                }
                assert_eq!(ev["type"], "started");
                if ev["container"]["id"] == id1.as_str() {
                    assert_eq!(&ev["container"], c1);
                    saw_ours = true;
                }
            }
            (WW_TIMEOUT, None) => break,
            other => panic!("unexpected {other:?}: {}", last_error()),
        }
    }
    assert!(saw_ours, "no synthetic started event for our container");

    // Live events: a new container starts; the first one is stopped.
    let (id2, _) = docker.start_new("b");
    let pid2 = docker.pid(&id2);
    let ev = next_for(&s, &id2);
    assert_eq!(ev["type"], "started");
    assert_eq!(ev["synthetic"], false);
    assert_eq!(ev["container"]["pid"].as_u64(), Some(pid2));
    assert!(ev["seq"].as_u64().unwrap() > 0);
    assert!(ev["time"].as_str().unwrap().ends_with('Z'));

    docker.run(&["kill", "-s", "KILL", &id1]);
    let ev = next_for(&s, &id1);
    assert_eq!(ev["type"], "exited");
    let code = docker.inspect_one(&id1)["State"]["ExitCode"]
        .as_i64()
        .unwrap();
    assert_eq!(ev["exit_code"].as_i64(), Some(code));
    assert_eq!(ev["oom"], false);
    support::wait_until(Duration::from_secs(10), "exited container leaves", || {
        w.lookup(&id1).0 == WW_NOT_FOUND
    });
}

/// The next event of container `id` (others, from foreign tests, are skipped).
fn next_for(s: &support::ffi::S, id: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        match s.next(500) {
            (WW_OK, Some(json)) => {
                let ev: Value = serde_json::from_str(&json).unwrap();
                if ev["container"]["id"] == id {
                    return ev;
                }
            }
            (WW_TIMEOUT, None) | (WW_GAP | WW_ENGINE | WW_LAGGED, Some(_)) => {}
            other => panic!("unexpected {other:?}: {}", last_error()),
        }
    }
    panic!("no event for {id} within 30 s");
}

/// Concurrent readers of one watcher, and a subscriber blocked in next() while another
/// thread closes the watcher: it returns WW_ENDED promptly.
#[test]
fn concurrent_use_and_close_ends_blocked_subscribers() {
    let Some(docker) = Cli::shared_docker() else {
        return;
    };
    let w = W::new("docker", Some(&docker.url)).unwrap();
    assert_eq!(w.wait_ready(30_000), WW_OK, "{}", last_error());
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..200 {
                    let (st, json) = w.portfolio();
                    assert_eq!(st, WW_OK);
                    let v: Value = serde_json::from_str(&json.unwrap()).unwrap();
                    assert!(v.is_array());
                    assert_eq!(w.health().0, WW_HEALTH_SYNCED);
                }
            });
        }
    });

    let s = w.subscribe();
    while s.next(0).0 == WW_OK {} // drain the synthetic events
    let (tx, rx) = std::sync::mpsc::channel();
    let blocked = std::thread::spawn(move || {
        // Ends by the close below, long before this timeout.
        let r = loop {
            let r = s.next(600_000);
            if r.0 != WW_OK {
                break r;
            }
        };
        tx.send(r).unwrap();
        s
    });
    std::thread::sleep(Duration::from_millis(100)); // let it block (not an assertion)
    drop(w); // ww_watcher_close
    let r = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("ww_subscription_next did not return after ww_watcher_close");
    assert_eq!(r, (WW_ENDED, None));
    let s = blocked.join().unwrap();
    assert_eq!(
        s.next(0),
        (WW_ENDED, None),
        "an ended subscription stays ended"
    );
}

/// `ctr -a SOCK -n default ARGS...`, success or not.
#[cfg(feature = "containerd")]
fn ctr(sock: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new("ctr")
        .args(["-a", sock, "-n", "default"])
        .args(args)
        .output()
        .expect("cannot run ctr")
}

/// A containerd watcher through the C ABI sees an own container with the PID `ctr` reports.
#[cfg(feature = "containerd")]
#[test]
fn containerd_portfolio_matches_ctr() {
    let Some(sock) = support::endpoint("WHALEWATCHER_CONTAINERD") else {
        return;
    };
    let image = std::env::var("WHALEWATCHER_CTR_IMAGE")
        .unwrap_or_else(|_| "docker.io/library/busybox:sleep".into());
    let id = format!("ffi-ctr-{}", std::process::id());
    struct Cleanup<'a>(&'a str, &'a str);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            let _ = ctr(self.0, &["tasks", "kill", "-s", "KILL", self.1]);
            for _ in 0..250 {
                if ctr(self.0, &["tasks", "rm", self.1]).status.success()
                    || !ctr(self.0, &["tasks", "ls", "-q"])
                        .stdout
                        .split(|b| *b == b'\n')
                        .any(|l| l == self.1.as_bytes())
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = ctr(self.0, &["containers", "rm", self.1]);
        }
    }
    let mut args = vec!["run", "-d"];
    let runc_root = std::env::var("WHALEWATCHER_CTR_RUNC_ROOT").ok();
    if let Some(r) = &runc_root {
        args.extend(["--runc-root", r]);
    }
    args.extend([image.as_str(), id.as_str()]);
    let _cleanup = Cleanup(&sock, &id);
    support::run(
        "ctr",
        &[&["-a", sock.as_str(), "-n", "default"][..], &args].concat(),
    );
    let out = String::from_utf8(ctr(&sock, &["tasks", "ls"]).stdout).unwrap();
    let pid: u64 = out
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id.as_str())).then(|| f[1].parse().unwrap())
        })
        .expect("own task in ctr tasks ls");

    let w = W::new("containerd", Some(&sock)).unwrap();
    assert_eq!(w.wait_ready(30_000), WW_OK, "{}", last_error());
    support::wait_until(
        Duration::from_secs(20),
        "own container in the portfolio",
        || w.lookup(&id).0 == WW_OK,
    );
    let c: Value = serde_json::from_str(&w.lookup(&id).1.unwrap()).unwrap();
    assert_eq!(c["pid"].as_u64(), Some(pid));
    assert_eq!(c["engine"], "containerd.io");
    assert_eq!(c["id"], id.as_str()); // the default namespace is unprefixed
    let mut info = std::ptr::null_mut();
    assert_eq!(
        unsafe { ww_watcher_engine_info_json(w.0, &mut info) },
        WW_OK
    );
    let info: Value = serde_json::from_str(&take(info).unwrap()).unwrap();
    assert_eq!(info["type"], "containerd.io");
}

/// A CRI watcher through the C ABI syncs and reports CRI containers only.
#[cfg(feature = "cri")]
#[test]
fn cri_watcher_syncs() {
    let Some(sock) = support::endpoint("WHALEWATCHER_CRI") else {
        return;
    };
    let w = W::new("cri", Some(&sock)).unwrap();
    assert_eq!(w.wait_ready(30_000), WW_OK, "{}", last_error());
    let mut info = std::ptr::null_mut();
    assert_eq!(
        unsafe { ww_watcher_engine_info_json(w.0, &mut info) },
        WW_OK
    );
    let info: Value = serde_json::from_str(&take(info).unwrap()).unwrap();
    assert_eq!(info["type"], "k8s.io/cri-api");
    for c in w.portfolio_value() {
        assert_eq!(c["engine"], "k8s.io/cri-api", "{c}");
    }
}

/// Engine "auto": discovery finds the test dockerd by its process; its containers,
/// health, engine info and events come through the fleet, checked against `docker`.
#[test]
fn auto_watches_the_discovered_dockerd() {
    let Some(docker) = Cli::shared_docker() else {
        return;
    };
    let sock = docker.url.strip_prefix("unix://").unwrap().to_string();
    let (st, msg) = W::new("auto", Some("/run/docker.sock")).err().unwrap();
    assert_eq!(st, WW_ERR_INVALID_ARGUMENT);
    assert!(msg.contains("with-cri"), "{msg}");

    let (id1, name1) = docker.start_new("auto");
    let w = W::new("auto", None).unwrap();
    assert_eq!(w.wait_ready(60_000), WW_OK, "{}", last_error());
    support::wait_until(Duration::from_secs(30), "own container via auto", || {
        find(&w.portfolio_value(), &id1).is_some()
    });
    let p = w.portfolio_value();
    let c1 = find(&p, &id1).unwrap();
    assert_eq!(c1["pid"].as_u64(), Some(docker.pid(&id1)));
    assert_eq!(c1["name"], name1.as_str());
    assert_eq!(c1["engine"], "docker.com");
    let (st, json) = w.lookup(&name1);
    assert_eq!(st, WW_OK, "{}", last_error());
    assert_eq!(&serde_json::from_str::<Value>(&json.unwrap()).unwrap(), c1);

    // Health: every engine listed; ours attached and synced, with the dockerd's PID.
    let (state, h) = w.health();
    let engines = h["engines"].as_array().expect("engines array");
    let ours = engines
        .iter()
        .find(|e| e["engine"]["api_path"] == sock.as_str())
        .unwrap_or_else(|| panic!("{sock} not among {h}"));
    assert_eq!(ours["engine"]["kind"], "docker");
    assert_eq!(ours["state"], "synced");
    let dockerd_pid: u64 =
        std::fs::read_to_string(std::path::Path::new(&sock).with_file_name("docker.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
    assert_eq!(ours["engine"]["pid"].as_u64(), Some(dockerd_pid));
    assert_eq!(h["state"].as_str(), Some(health_word(state)), "{h}");

    let mut info = std::ptr::null_mut();
    assert_eq!(
        unsafe { ww_watcher_engine_info_json(w.0, &mut info) },
        WW_OK
    );
    let info: Value = serde_json::from_str(&take(info).unwrap()).unwrap();
    let ours = info
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["engine"]["api_path"] == sock.as_str())
        .unwrap_or_else(|| panic!("{sock} not in {info}"));
    assert_eq!(ours["info"]["type"], "docker.com");
    assert_eq!(
        ours["info"]["id"],
        docker.run(&["info", "-f", "{{.ID}}"]).trim()
    );

    // No journal across engines.
    let mut sub = std::ptr::null_mut();
    assert_eq!(
        unsafe { ww_watcher_subscribe_since(w.0, 0, &mut sub) },
        WW_ERR_UNSUPPORTED
    );
    assert!(sub.is_null());
    assert!(last_error().contains("per engine"), "{}", last_error());

    // The merged stream: our container's synthetic start, then a live pause of it.
    let s = w.subscribe();
    let ev = next_for(&s, &id1);
    assert_eq!(ev["type"], "started");
    assert_eq!(ev["synthetic"], true);
    assert_eq!(&ev["container"], c1);
    docker.run(&["pause", &id1]);
    let ev = next_for(&s, &id1);
    assert_eq!(ev["type"], "paused");
    assert_eq!(ev["synthetic"], false);
    assert_eq!(
        docker.inspect_one(&id1)["State"]["Status"],
        "paused",
        "ground truth"
    );
    docker.run(&["unpause", &id1]);

    // Closing the fleet ends the subscription.
    drop(w);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match s.next(1000) {
            (WW_ENDED, None) => break,
            (WW_OK | WW_ENGINE | WW_GAP | WW_LAGGED, Some(_)) | (WW_TIMEOUT, None) => {}
            other => panic!("unexpected {other:?}: {}", last_error()),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no WW_ENDED after close"
        );
    }
}

fn health_word(state: i32) -> &'static str {
    ["connecting", "syncing", "synced", "reconnecting", "failed"][state as usize]
}
