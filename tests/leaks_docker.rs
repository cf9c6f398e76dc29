//! 50 watcher open/close cycles against the real dockerd leave no thread and no fd
//! behind (a test binary of its own, so nothing else runs in this process meanwhile).
#![cfg(feature = "docker")]

mod support;

use std::time::Duration;

use whalewatcher::docker::DockerClient;
use whalewatcher::{Watcher, WatcherOptions};

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[test]
fn fifty_cycles_on_dockerd_leak_nothing() {
    let Some(ep) = support::endpoint("WHALEWATCHER_DOCKER") else {
        return;
    };
    let cycle = || {
        let w = Watcher::new(
            DockerClient::new(Some(&ep)).unwrap(),
            WatcherOptions::default(),
        );
        w.wait_ready(Duration::from_secs(30)).unwrap();
        let sub = w.subscribe();
        let n = w.portfolio().len();
        for _ in 0..n {
            assert!(sub.try_recv().is_some());
        }
        w.close();
    };
    cycle(); // warm-up
    let (threads, fds) = (count("/proc/self/task"), count("/proc/self/fd"));
    for _ in 0..50 {
        cycle();
    }
    // A joined thread can still be listed in /proc/self/task for a moment while the kernel
    // reaps it (seen under load): wait for the counts, bounded.
    let settled = || count("/proc/self/task") <= threads && count("/proc/self/fd") <= fds;
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while !settled() && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(count("/proc/self/task"), threads, "threads leaked");
    assert_eq!(count("/proc/self/fd"), fds, "fds leaked");
}
