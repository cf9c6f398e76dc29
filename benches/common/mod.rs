//! What the real-engine benches (engine, burst, cri_scale) share: the engine address or a
//! loud skip, numeric settings from the environment, the machine's load and the time for
//! the report, percentiles, and an HTTP client of the engine for what the library does not
//! offer. Each bench uses a part of it.
#![allow(dead_code)]

use std::time::Duration;

#[cfg(feature = "docker")]
use whalewatcher::http::{Endpoint, HttpClient, HttpOptions};

/// The first of `vars` that is set and not empty; else `None` after a loud SKIPPED message
/// (a panic when `WHALEWATCHER_REQUIRE_ENGINES=1`, so that CI cannot skip silently).
pub fn engine_or_skip(bench: &str, vars: &[&str], hint: &str) -> Option<String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let Some(v) = vars.iter().find_map(|k| var(k)) {
        return Some(v);
    }
    let msg = format!("benches/{bench}: SKIPPED — no engine configured ({hint})");
    if var("WHALEWATCHER_REQUIRE_ENGINES").as_deref() == Some("1") {
        panic!("{msg}, but WHALEWATCHER_REQUIRE_ENGINES=1");
    }
    eprintln!("\n************************************************************");
    eprintln!("*** {msg}");
    eprintln!("************************************************************\n");
    None
}

/// `var` as a number, `default` when unset or empty; panics on anything else.
pub fn env_usize(var: &str, default: usize) -> usize {
    match std::env::var(var) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .unwrap_or_else(|_| panic!("{var}={v:?} is not a number")),
        _ => default,
    }
}

/// `uptime`'s load averages.
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Now, as `date -u +%FT%TZ` prints it.
pub fn utc_now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%FT%TZ"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The `p` quantile (0 to 1) of sorted, non-empty `sorted`.
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// An HTTP client of the engine at `url` (requests time out after `timeout`), for what the
/// library does not offer (ids-only listings, create, kill, pause).
#[cfg(feature = "docker")]
pub fn http(url: &str, timeout: Duration) -> HttpClient {
    HttpClient::new(
        Endpoint::parse(url).expect("unusable engine address"),
        HttpOptions {
            timeout: Some(timeout),
            ..HttpOptions::default()
        },
    )
}
