//! Watcher handles: create, wait, health, portfolio and lookup as JSON, close.

use std::ffi::{c_char, c_int};
use std::time::Duration;

use super::status::{
    call, call_void, Fail, WW_ERR_INVALID_ARGUMENT, WW_ERR_NULL, WW_ERR_UNSUPPORTED, WW_NOT_FOUND,
    WW_OK,
};
use super::strings::{clear_out, in_opt_str, in_str, out_string, to_json};
use super::watched::Watched;
use crate::engine::EngineKind;
use crate::watcher::{Watcher, WatcherOptions};

/// Health state: connecting for the first time.
pub const WW_HEALTH_CONNECTING: c_int = 0;
/// Health state: connected, listing the containers.
pub const WW_HEALTH_SYNCING: c_int = 1;
/// Health state: the portfolio is current and events flow.
pub const WW_HEALTH_SYNCED: c_int = 2;
/// Health state: the connection was lost; retrying.
pub const WW_HEALTH_RECONNECTING: c_int = 3;
/// Health state: the watcher gave up or was closed; final (for engine `"auto"`: an engine
/// did so, and the fleet goes on with the others).
pub const WW_HEALTH_FAILED: c_int = 4;

/// The longest timeout honoured (longer ones are clamped): about 31 years.
const MAX_TIMEOUT: Duration = Duration::from_secs(1 << 30);

/// A watcher as C sees it: `ww_watcher`, opaque.
pub struct WwWatcher {
    pub(crate) watched: Watched,
}

/// A timeout in milliseconds, clamped so that deadlines cannot overflow.
pub(crate) fn timeout(ms: u64) -> Duration {
    Duration::from_millis(ms).min(MAX_TIMEOUT)
}

/// Borrows the watcher behind a handle.
///
/// # Safety
/// `w` is NULL or a live handle from [`ww_watcher_new`].
pub(crate) unsafe fn borrow<'a>(w: *const WwWatcher) -> Result<&'a Watched, Fail> {
    if w.is_null() {
        return Err(Fail::new(WW_ERR_NULL, "watcher is NULL"));
    }
    // SAFETY: a live handle per the caller's contract; only shared access.
    Ok(unsafe { &(*w).watched })
}

#[cfg_attr(
    not(any(feature = "docker", feature = "containerd", feature = "cri")),
    allow(unused_variables)
)]
fn start(engine: &str, endpoint: Option<&str>) -> Result<Watched, Fail> {
    let options = WatcherOptions::default().with_name(format!("ww-{engine}"));
    if engine == "auto" {
        return auto(endpoint, options).map(Watched::Fleet);
    }
    one(engine, endpoint, options).map(Watched::One)
}

/// Engine `"auto"`: every engine that discovery finds, now and later. `endpoint` NULL or
/// `""` for the default discovery, `"with-cri"` to watch a standalone containerd through
/// its CRI plugin too.
fn auto(endpoint: Option<&str>, watcher: WatcherOptions) -> Result<crate::fleet::Fleet, Fail> {
    use crate::fleet::{Fleet, FleetOptions};
    let with_cri = match endpoint {
        None => false,
        Some("with-cri") => true,
        Some(other) => {
            return Err(Fail::new(
                WW_ERR_INVALID_ARGUMENT,
                format!(
                    "engine \"auto\" takes no endpoint but \"with-cri\" (got {other:?}): it finds the engines itself"
                ),
            ))
        }
    };
    let mut options = FleetOptions {
        watcher,
        ..FleetOptions::default()
    };
    options.discover = options.discover.with_cri_for_containerd(with_cri);
    Ok(Fleet::new(options))
}

/// The C ABI's engine names, mapped to [`EngineKind`] in this one place: the short names
/// ([`EngineKind::name`]) exactly.
fn engine_kind(engine: &str) -> Result<EngineKind, Fail> {
    EngineKind::ALL
        .into_iter()
        .find(|k| k.name() == engine)
        .ok_or_else(|| {
            Fail::new(
                WW_ERR_INVALID_ARGUMENT,
                format!(
                    "unknown engine {engine:?}: expected \"docker\", \"podman\", \"containerd\", \"cri\" or \"auto\""
                ),
            )
        })
}

fn one(engine: &str, endpoint: Option<&str>, options: WatcherOptions) -> Result<Watcher, Fail> {
    let kind = engine_kind(engine)?;
    if !crate::endpoint::compiled_in(kind) {
        return Err(Fail::new(
            WW_ERR_UNSUPPORTED,
            format!("engine {engine:?} is not compiled into this library (cargo feature)"),
        ));
    }
    let client = crate::connect(kind, endpoint).map_err(|e| Fail::engine(&e))?;
    Ok(Watcher::new(client, options))
}

/// Starts watching an engine and returns at once (see [`ww_watcher_wait_ready`]).
///
/// `engine` is `"docker"` or `"podman"` (Docker API; `endpoint` a URL such as
/// `unix:///var/run/docker.sock`, default `DOCKER_HOST` or that socket), `"containerd"`
/// (`endpoint` the socket path, default `CONTAINERD_ADDRESS` or
/// `/run/containerd/containerd.sock`), `"cri"`
/// (`endpoint` the socket path, default `CONTAINER_RUNTIME_ENDPOINT` or the first existing
/// well-known socket), or `"auto"`: every engine that discovery finds, now and later (see
/// [`Fleet`](crate::fleet::Fleet); `endpoint` NULL, `""`, or `"with-cri"` to watch a
/// standalone containerd through its CRI plugin too). `endpoint` may be NULL or `""` for
/// the default. The handle goes to `*out`; close it with [`ww_watcher_close`].
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
        let watched = start(engine, endpoint)?;
        let handle = Box::into_raw(Box::new(WwWatcher { watched }));
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
    call_void(move || handle.watched.close());
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

/// The watcher's health: one of the `WW_HEALTH_*` states into `*state_out`, and as JSON
/// into `*json_out`: `{"state":"connecting"|"syncing"|"synced"}`,
/// `{"state":"reconnecting","since":RFC3339,"error":MESSAGE}` or
/// `{"state":"failed","error":MESSAGE}`. Either out-parameter may be NULL.
///
/// For engine `"auto"` the state is that of the least healthy attached engine
/// ([`WW_HEALTH_SYNCED`] while none is found), and the JSON is
/// `{"state":WORD,"engines":[...]}`: one such object per engine with an `"engine"` member
/// (`{"kind","api_path","pid","inode","source","managed_by"}`), vanished engines as
/// `{"state":"vanished","since":RFC3339,"engine":{...}}`.
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
        let (state, json) = watcher.health();
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
/// schema), sorted by project, name and id (for engine `"auto"`: by engine type first).
/// Never waits on the engine.
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
        let all = watcher.containers();
        let json = to_json(&all.iter().map(|c| &**c).collect::<Vec<_>>())?;
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
        let Some(c) = watcher.lookup(key) else {
            return Err(Fail::new(
                WW_NOT_FOUND,
                format!("no alive container with id or name {key:?}"),
            ));
        };
        let json = to_json(&*c)?;
        unsafe { out_string(json_out, json)? };
        Ok(WW_OK)
    })
}

/// What the engine said about itself at the last listing, as JSON
/// (`{"id","type","version","api_path","pid","mode"}`); [`WW_NOT_FOUND`] before the first
/// listing. For engine `"auto"`: an array with one `{"engine":{...},"info":{...}|null}` per
/// attached engine.
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
