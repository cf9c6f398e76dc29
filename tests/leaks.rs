//! Thread and fd leak checks (a test binary of its own, with a single test, so nothing
//! else runs in this process meanwhile).

use std::time::Duration;

use whalewatcher::{Watcher, WatcherOptions};

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[test]
fn thousand_open_close_cycles_leak_nothing() {
    let s = whalewatcher::scripted::Script::new();
    s.start("a", "p");
    // warm up (lazy statics, allocator threads)
    Watcher::new(s.client(), WatcherOptions::default())
        .wait_ready(Duration::from_secs(10))
        .unwrap();
    let (threads, fds) = (count("/proc/self/task"), count("/proc/self/fd"));
    for _ in 0..1000 {
        let w = Watcher::new(s.client(), WatcherOptions::default());
        w.wait_ready(Duration::from_secs(10)).unwrap();
        let sub = w.subscribe();
        assert!(sub.try_recv().is_some());
        w.close();
        assert!(sub.recv_timeout(Duration::from_secs(1)).is_none());
    }
    // A joined thread can still be listed in /proc/self/task for a moment while the kernel
    // reaps it: wait for the counts, bounded.
    let settled = || count("/proc/self/task") <= threads && count("/proc/self/fd") <= fds;
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while !settled() && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(count("/proc/self/task"), threads, "threads leaked");
    assert_eq!(count("/proc/self/fd"), fds, "fds leaked");
    s.start("b", "p"); // prunes the streams whose readers are gone
    assert_eq!(s.open_streams(), 0, "event streams left open");
}
