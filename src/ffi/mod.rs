//! The C ABI: embed a watcher in C, C++, Go, Python or anything else that calls C.
//!
//! Built with the `ffi` feature as a shared and a static library:
//!
//! ```text
//! cargo rustc --lib --release --features ffi --crate-type cdylib,staticlib
//! ```
//!
//! The declarations are in `include/whalewatcher.h` (kept in sync with this module by
//! `tests/ffi_header.rs`). Everything crosses the boundary as an opaque handle, a status
//! code, or a NUL-terminated UTF-8 JSON string in the schemas of `whalewatch ps --json`
//! (containers) and `whalewatch events --json` (events).
//!
//! Conventions:
//!
//! - Every function that can fail returns an `int` status: [`WW_OK`] (0), a positive
//!   outcome that is not an error ([`WW_TIMEOUT`], [`WW_NOT_FOUND`], [`WW_ENDED`],
//!   [`WW_GAP`], [`WW_LAGGED`], [`WW_ENGINE`]), or a negative error. After any non-OK status,
//!   [`ww_last_error`] tells what happened, on that thread.
//! - Out-parameters are set to NULL first, so they are NULL whenever no value was produced.
//! - Strings the library returns belong to the caller: free them with [`ww_string_free`].
//!   Handles are freed with [`ww_watcher_close`] and [`ww_subscription_free`].
//! - No Rust panic crosses the boundary: one is caught and turned into [`WW_ERR_PANIC`].
//!   Null pointers and invalid UTF-8 are errors, never crashes.
//!
//! Thread safety: all functions may be called from any thread. A watcher handle may be
//! used by several threads at once (every function taking a `const ww_watcher *`), and so
//! may a subscription handle (each event goes to exactly one caller). A handle must not be
//! freed while another thread still uses that same handle. Subscriptions are independent
//! of their watcher: closing the watcher ends them (a blocked [`ww_subscription_next`]
//! returns [`WW_ENDED`] promptly), and they stay valid until freed.
#![allow(unsafe_code)]

mod status;
mod strings;
mod subscription;
mod watched;
mod watcher;

pub use status::{
    ww_last_error, WW_ENDED, WW_ENGINE, WW_ERR_ENGINE, WW_ERR_INTERNAL, WW_ERR_INVALID_ARGUMENT,
    WW_ERR_NULL, WW_ERR_PANIC, WW_ERR_UNSUPPORTED, WW_ERR_UTF8, WW_GAP, WW_LAGGED, WW_NOT_FOUND,
    WW_OK, WW_TIMEOUT,
};
pub use strings::{ww_string_free, ww_version};
pub use subscription::{
    ww_subscription_free, ww_subscription_next, ww_watcher_subscribe, ww_watcher_subscribe_since,
    WwSubscription,
};
pub use watcher::{
    ww_watcher_close, ww_watcher_engine_info_json, ww_watcher_health, ww_watcher_lookup_json,
    ww_watcher_new, ww_watcher_portfolio_json, ww_watcher_wait_ready, WwWatcher,
    WW_HEALTH_CONNECTING, WW_HEALTH_FAILED, WW_HEALTH_RECONNECTING, WW_HEALTH_SYNCED,
    WW_HEALTH_SYNCING,
};
