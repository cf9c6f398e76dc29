//! Subscription handles: subscribe, fetch the next event as JSON, free.

use std::ffi::{c_char, c_int};

use super::status::{call, call_void, Fail, WW_ERR_NULL, WW_OK};
use super::strings::{clear_out, out_string};
use super::watched::{Events, Watched};
use super::watcher::{borrow, timeout, WwWatcher};

/// A subscription as C sees it: `ww_subscription`, opaque.
pub struct WwSubscription {
    events: Events,
}

/// # Safety
/// `out` is NULL or writable; `w` is NULL or a live handle.
unsafe fn subscribe(
    w: *const WwWatcher,
    out: *mut *mut WwSubscription,
    f: impl FnOnce(&Watched) -> Result<Events, Fail>,
) -> c_int {
    call(|| {
        // SAFETY: forwarded contracts.
        unsafe { clear_out(out, "out")? };
        let watcher = unsafe { borrow(w)? };
        let handle = Box::into_raw(Box::new(WwSubscription {
            events: f(watcher)?,
        }));
        // SAFETY: checked by clear_out.
        unsafe { out.write(handle) };
        Ok(WW_OK)
    })
}

/// Subscribes to the watcher's events: first a synthetic `started` event for every
/// container in the current portfolio, then live events, with no gap and no duplicate.
/// Free the handle with [`ww_subscription_free`].
///
/// # Safety
/// `w` is NULL or a live handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ww_watcher_subscribe(
    w: *const WwWatcher,
    out: *mut *mut WwSubscription,
) -> c_int {
    // SAFETY: forwarded contracts.
    unsafe { subscribe(w, out, |w| Ok(w.subscribe())) }
}

/// Subscribes to the journal's events after sequence number `seq`, then live events (a
/// [`WW_GAP`](super::WW_GAP) first when some have already fallen out of the journal).
/// After [`WW_LAGGED`](super::WW_LAGGED), resubscribe with `seq = resume_seq - 1`. Not for
/// engine `"auto"` ([`WW_ERR_UNSUPPORTED`](super::WW_ERR_UNSUPPORTED): sequence numbers
/// are per engine).
///
/// # Safety
/// `w` is NULL or a live handle; `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ww_watcher_subscribe_since(
    w: *const WwWatcher,
    seq: u64,
    out: *mut *mut WwSubscription,
) -> c_int {
    // SAFETY: forwarded contracts.
    unsafe { subscribe(w, out, |w| w.subscribe_since(seq)) }
}

/// Waits at most `timeout_ms` milliseconds (0: just look) for the next item.
///
/// - [`WW_OK`](super::WW_OK): `*json_out` is an event in the `whalewatch events --json`
///   schema, `{"seq","time","type":"started"|"exited"|"paused"|"unpaused","exit_code","oom",
///   "synthetic","container":{...}}`.
/// - [`WW_GAP`](super::WW_GAP): `*json_out` is `{"type":"gap","from":SEQ,"to":SEQ}`:
///   events lost.
/// - [`WW_LAGGED`](super::WW_LAGGED): `*json_out` is
///   `{"type":"lagged","missed":N,"resume_seq":SEQ}`: the consumer fell behind and the
///   subscription has ended.
/// - [`WW_ENGINE`](super::WW_ENGINE) (engine `"auto"` only): `*json_out` is
///   `{"type":"attached"|"vanished","engine":{...}}`: an engine was found (its synthetic
///   `started` events follow) or has gone (the `exited` events of its containers came
///   just before, with `seq` 0).
/// - [`WW_TIMEOUT`](super::WW_TIMEOUT): nothing within the timeout; `*json_out` is NULL.
/// - [`WW_ENDED`](super::WW_ENDED): the subscription has ended (watcher closed, or after
///   `WW_LAGGED`).
///
/// For engine `"auto"`, gaps and lags name their engine (`"engine":{...}`), and a lagging
/// engine is resumed from its journal at once: the subscription goes on (`"resumed":true`)
/// and that engine's events from `resume_seq` on may repeat.
///
/// # Safety
/// `s` is NULL or a live subscription handle; `json_out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ww_subscription_next(
    s: *const WwSubscription,
    timeout_ms: u64,
    json_out: *mut *mut c_char,
) -> c_int {
    call(|| {
        // SAFETY: forwarded contract.
        unsafe { clear_out(json_out, "json_out")? };
        if s.is_null() {
            return Err(Fail::new(WW_ERR_NULL, "subscription is NULL"));
        }
        // SAFETY: a live handle per the contract; only shared access.
        let events = unsafe { &(*s).events };
        let (status, json) = events.next(timeout(timeout_ms))?;
        // SAFETY: checked by clear_out.
        unsafe { out_string(json_out, json)? };
        Ok(status)
    })
}

/// Ends and frees a subscription. NULL is ignored.
///
/// # Safety
/// `s` is NULL or a live handle that no other thread is using; it is invalid afterwards.
#[no_mangle]
pub unsafe extern "C" fn ww_subscription_free(s: *mut WwSubscription) {
    if s.is_null() {
        return;
    }
    // SAFETY: a live handle from Box::into_raw, handed back exactly once.
    let handle = unsafe { Box::from_raw(s) };
    call_void(move || drop(handle));
}
