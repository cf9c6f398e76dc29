//! Support shared by the integration tests.
#![allow(dead_code)]

use std::time::{Duration, Instant};

#[cfg(feature = "docker")]
pub mod inspect;

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

/// Runs a command, returning its stdout; panics with stderr when it fails.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}
