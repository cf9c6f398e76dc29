//! Watcher handles: create, wait, health, portfolio and lookup as JSON, close.

use std::ffi::{c_char, c_int};
use std::time::Duration;

use super::status::{
    call, call_void, Fail, WW_ERR_INVALID_ARGUMENT, WW_ERR_NULL, WW_ERR_UNSUPPORTED, WW_NOT_FOUND,
    WW_OK,
};
use super::strings::{clear_out, in_opt_str, in_str, out_string, to_json};
use crate::event::rfc3339_nanos;
use crate::watcher::{Health, Watcher, WatcherOptions};

/// Health state: connecting for the first time.
pub const WW_HEALTH_CONNECTING: c_int = 0;
/// Health state: connected, listing the containers.
pub const WW_HEALTH_SYNCING: c_int = 1;
/// Health state: the portfolio is current and events flow.
pub const WW_HEALTH_SYNCED: c_int = 2;
/// Health state: the connection was lost; retrying.
pub const WW_HEALTH_RECONNECTING: c_int = 3;
/// Health state: the watcher gave up or was closed; final.
pub const WW_HEALTH_FAILED: c_int = 4;

/// The longest timeout honoured (longer ones are clamped): about 31 years.
const MAX_TIMEOUT: Duration = Duration::from_secs(1 << 30);

/// A watcher as C sees it: `ww_watcher`, opaque.
pub struct WwWatcher {
    pub(crate) watcher: Watcher,
}

/// A timeout in milliseconds, clamped so that deadlines cannot overflow.
pub(crate) fn timeout(ms: u64) -> Duration {
    Duration::from_millis(ms).min(MAX_TIMEOUT)
}

/// Borrows the watcher behind a handle.
///
/// # Safety
/// `w` is NULL or a live handle from [`ww_watcher_new`].
pub(crate) unsafe fn borrow<'a>(w: *const WwWatcher) -> Result<&'a Watcher, Fail> {
    if w.is_null() {
        return Err(Fail::new(WW_ERR_NULL, "watcher is NULL"));
    }
    // SAFETY: a live handle per the caller's contract; only shared access.
    Ok(unsafe { &(*w).watcher })
}

#[cfg_attr(
    not(any(feature = "docker", feature = "containerd", feature = "cri")),
    allow(unused_variables)
)]
fn start(engine: &str, endpoint: Option<&str>) -> Result<Watcher, Fail> {
    let options = WatcherOptions::default().with_name(format!("ww-{engine}"));
    match engine {
        #[cfg(feature = "docker")]
        "docker" | "podman" => {
            let client =
                crate::docker::DockerClient::new(endpoint).map_err(|e| Fail::engine(&e))?;
            Ok(Watcher::new(client, options))
        }
        #[cfg(feature = "containerd")]
        "containerd" => {
            let path = endpoint.unwrap_or(DEFAULT_CONTAINERD);
            let path = path.strip_prefix("unix://").unwrap_or(path);
            let client = crate::containerd::ContainerdClient::new(path);
            Ok(Watcher::new(client, options))
        }
        #[cfg(feature = "cri")]
        "cri" => {
            let path = endpoint.map(|p| p.strip_prefix("unix://").unwrap_or(p));
            Ok(Watcher::new(crate::cri::CriClient::new(path), options))
        }
        "auto" => Err(Fail::new(
            WW_ERR_UNSUPPORTED,
            "engine \"auto\" (engine discovery) is not supported yet: name the engine",
        )),
        // Reachable only when an engine feature is off.
        #[allow(unreachable_patterns)]
        "docker" | "podman" | "containerd" | "cri" => Err(Fail::new(
            WW_ERR_UNSUPPORTED,
            format!("engine {engine:?} is not compiled into this library (cargo feature)"),
        )),
        other => Err(Fail::new(
            WW_ERR_INVALID_ARGUMENT,
            format!(
                "unknown engine {other:?}: expected \"docker\", \"podman\", \"containerd\", \"cri\" or \"auto\""
            ),
        )),
    }
}

#[cfg(feature = "containerd")]
const DEFAULT_CONTAINERD: &str = "/run/containerd/containerd.sock";

/// Starts watching an engine and returns at once (see [`ww_watcher_wait_ready`]).
///
/// `engine` is `"docker"` or `"podman"` (Docker API; `endpoint` a URL such as
/// `unix:///var/run/docker.sock`, default `DOCKER_HOST` or that socket), `"containerd"`
/// (`endpoint` the socket path, default `/run/containerd/containerd.sock`), `"cri"`
/// (`endpoint` the socket path, default `CONTAINER_RUNTIME_ENDPOINT` or the first existing
/// well-known socket), or `"auto"` (not supported yet: [`WW_ERR_UNSUPPORTED`]). `endpoint`
/// may be NULL or `""` for the default. The handle goes to `*out`; close it with
/// [`ww_watcher_close`].
///
/// # Safety
/// `engine` and `endpoint` are NULL or NUL-terminated strings; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ww_watcher_new(
    engine: *const c_char,
    endpoint: *const c_char,
    out: *mut *mut WwWatcher,
) -> c_int {
    call(|| {
        // SAFETY: forwarded contracts.
        unsafe { clear_out(out, "out")? };
        let engine = unsafe { in_str(engine, "engine")? };
        let endpoint = unsafe { in_opt_str(endpoint, "endpoint")? };
        let watcher = start(engine, endpoint)?;
        let handle = Box::into_raw(Box::new(WwWatcher { watcher }));
        // SAFETY: checked by clear_out.
        unsafe { out.write(handle) };
        Ok(WW_OK)
    })
}

/// Stops watching and frees the handle: cancels blocked engine calls, joins the watcher's
/// threads and ends its subscriptions. NULL is ignored.
///
/// # Safety
/// `w` is NULL or a live handle that no other thread is using; it is invalid afterwards.
#[no_mangle]
pub unsafe extern "C" fn ww_watcher_close(w: *mut WwWatcher) {
    if w.is_null() {
        return;
    }
    // SAFETY: a live handle from Box::into_raw, handed back exactly once.
    let handle = unsafe { Box::from_raw(w) };
    call_void(move || handle.watcher.close());
}

/// Waits at most `timeout_ms` milliseconds for the first complete picture: [`WW_OK`] when
/// synced, [`WW_TIMEOUT`](super::WW_TIMEOUT) (the message names the last connection error), or
/// [`WW_ERR_ENGINE`](super::WW_ERR_ENGINE) when the watcher failed.
///
/// # Safety
/// `w` is NULL or a live handle.
#[no_mangle]
pub unsafe extern "C" fn ww_watcher_wait_ready(w: *const WwWatcher, timeout_ms: u64) -> c_int {
    call(|| {
        // SAFETY: forwarded contract.
        let watcher = unsafe { borrow(w)? };
        watcher
            .wait_ready(timeout(timeout_ms))
            .map_err(|e| Fail::engine(&e))?;
        Ok(WW_OK)
    })
}

fn health_json(h: &Health) -> (c_int, serde_json::Value) {
    use serde_json::json;
    match h {
        Health::Connecting => (WW_HEALTH_CONNECTING, json!({"state": "connecting"})),
        Health::Syncing => (WW_HEALTH_SYNCING, json!({"state": "syncing"})),
        Health::Synced => (WW_HEALTH_SYNCED, json!({"state": "synced"})),
        Health::Reconnecting { since, last_error } => (
            WW_HEALTH_RECONNECTING,
            json!({"state": "reconnecting", "since": rfc3339_nanos(*since),
                   "error": last_error.to_string()}),
        ),
        Health::Failed(e) => (
            WW_HEALTH_FAILED,
            json!({"state": "failed", "error": e.to_string()}),
        ),
    }
}

/// The watcher's health: one of the `WW_HEALTH_*` states into `*state_out`, and as JSON
/// into `*json_out`: `{"state":"connecting"|"syncing"|"synced"}`,
/// `{"state":"reconnecting","since":RFC3339,"error":MESSAGE}` or
/// `{"state":"failed","error":MESSAGE}`. Either out-parameter may be NULL.
///
/// # Safety
/// `w` is NULL or a live handle; the out-parameters are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ww_watcher_health(
    w: *const WwWatcher,
    state_out: *mut c_int,
    json_out: *mut *mut c_char,
) -> c_int {
    call(|| {
        if !json_out.is_null() {
            // SAFETY: non-null and writable per the contract.
            unsafe { clear_out(json_out, "json_out")? };
        }
        // SAFETY: forwarded contract.
        let watcher = unsafe { borrow(w)? };
        let (state, json) = health_json(&watcher.health());
        if !state_out.is_null() {
            // SAFETY: non-null and writable per the contract.
            unsafe { state_out.write(state) };
        }
        if !json_out.is_null() {
            // SAFETY: checked above.
            unsafe { out_string(json_out, to_json(&json)?)? };
        }
        Ok(WW_OK)
    })
}

/// The current portfolio as a JSON array of containers (the `whalewatch ps --json`
/// schema), sorted by project, name and id. Never waits on the engine.
///
/// # Safety
/// `w` is NULL or a live handle; `json_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ww_watcher_portfolio_json(
    w: *const WwWatcher,
    json_out: *mut *mut c_char,
) -> c_int {
    call(|| {
        // SAFETY: forwarded contracts.
        unsafe { clear_out(json_out, "json_out")? };
        let watcher = unsafe { borrow(w)? };
        let json = to_json(&*watcher.portfolio())?;
        unsafe { out_string(json_out, json)? };
        Ok(WW_OK)
    })
}

/// The alive container with this id or, failing that, the first one with this name, as a
/// JSON object (an element of `whalewatch ps --json`); [`WW_NOT_FOUND`] when there is none.
///
/// # Safety
/// `w` is NULL or a live handle; `id_or_name` is NULL or a NUL-terminated string;
/// `json_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ww_watcher_lookup_json(
    w: *const WwWatcher,
    id_or_name: *const c_char,
    json_out: *mut *mut c_char,
) -> c_int {
    call(|| {
        // SAFETY: forwarded contracts.
        unsafe { clear_out(json_out, "json_out")? };
        let watcher = unsafe { borrow(w)? };
        let key = unsafe { in_str(id_or_name, "id_or_name")? };
        let portfolio = watcher.portfolio();
        let Some(c) = portfolio.lookup(key) else {
            return Err(Fail::new(
                WW_NOT_FOUND,
                format!("no alive container with id or name {key:?}"),
            ));
        };
        let json = to_json(&**c)?;
        unsafe { out_string(json_out, json)? };
        Ok(WW_OK)
    })
}

/// What the engine said about itself at the last listing, as JSON
/// (`{"id","type","version","api_path","pid","mode"}`); [`WW_NOT_FOUND`] before the first
/// listing.
///
/// # Safety
/// `w` is NULL or a live handle; `json_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ww_watcher_engine_info_json(
    w: *const WwWatcher,
    json_out: *mut *mut c_char,
) -> c_int {
    call(|| {
        // SAFETY: forwarded contracts.
        unsafe { clear_out(json_out, "json_out")? };
        let watcher = unsafe { borrow(w)? };
        let Some(info) = watcher.engine_info() else {
            return Err(Fail::new(
                WW_NOT_FOUND,
                "the watcher has not listed the engine yet",
            ));
        };
        let json = to_json(&info)?;
        unsafe { out_string(json_out, json)? };
        Ok(WW_OK)
    })
}
