//! Rendering watcher metrics for `whalewatch stats`.

use std::time::Duration;

use crate::output::rfc3339;
use serde_json::{json, Value};
use whalewatcher::watcher::{Latency, Metrics};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn latency_json(l: &Latency) -> Value {
    json!({"count": l.count, "min_ms": ms(l.min), "avg_ms": ms(l.avg), "max_ms": ms(l.max)})
}

/// One engine's metrics as a JSON object.
pub fn metrics_json(label: &str, health: &str, containers: usize, m: &Metrics) -> Value {
    json!({
        "engine": label,
        "health": health,
        "containers": containers,
        "events": {
            "started": m.started,
            "exited": m.exited,
            "paused": m.paused,
            "unpaused": m.unpaused,
            "raw": m.raw_events,
        },
        "resyncs": m.resyncs,
        "reconnect_attempts": m.reconnect_attempts,
        "list": latency_json(&m.list),
        "inspect": latency_json(&m.inspect),
        "subscribers": m.subscribers,
        "lagged_subscribers": m.lagged_subscribers,
        "last_event": m.last_event.map(rfc3339),
    })
}

fn latency_text(l: &Latency) -> String {
    if l.count == 0 {
        return "none".into();
    }
    format!(
        "{} calls, min {:.1} ms, avg {:.1} ms, max {:.1} ms",
        l.count,
        ms(l.min),
        ms(l.avg),
        ms(l.max)
    )
}

/// One engine's metrics as human text.
pub fn metrics_text(label: &str, health: &str, containers: usize, m: &Metrics) -> String {
    format!(
        "{label}: {health}, {containers} containers\n  \
         events: {} started, {} exited, {} paused, {} unpaused ({} raw)\n  \
         resyncs: {}, reconnect attempts: {}\n  \
         list: {}\n  inspect: {}\n  \
         subscribers: {}, lagged subscribers: {}\n  last event: {}\n",
        m.started,
        m.exited,
        m.paused,
        m.unpaused,
        m.raw_events,
        m.resyncs,
        m.reconnect_attempts,
        latency_text(&m.list),
        latency_text(&m.inspect),
        m.subscribers,
        m.lagged_subscribers,
        m.last_event.map_or_else(|| "never".into(), rfc3339),
    )
}
