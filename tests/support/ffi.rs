//! Support of the C ABI tests: thin safe wrappers around the `ww_*` functions, and where
//! the built libraries are. (Ground truth comes from [`super::cli::Cli`].)

use std::ffi::{c_char, CStr, CString};

use serde_json::Value;
use whalewatcher::ffi::*;

use crate::support;

/// A C string for an argument.
pub fn c(s: &str) -> CString {
    CString::new(s).unwrap()
}

/// Copies a string the library returned and frees it.
pub fn take(p: *mut c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    let s = unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string();
    unsafe { ww_string_free(p) };
    Some(s)
}

/// The calling thread's last error message.
pub fn last_error() -> String {
    let p = ww_last_error();
    assert!(!p.is_null(), "ww_last_error must never return NULL");
    unsafe { CStr::from_ptr(p) }.to_str().unwrap().to_string()
}

/// An owned watcher handle, closed on drop.
pub struct W(pub *mut WwWatcher);

// The C ABI documents watcher handles as usable from several threads at once.
unsafe impl Send for W {}
unsafe impl Sync for W {}

impl W {
    /// `ww_watcher_new`, or the status and message.
    pub fn new(engine: &str, endpoint: Option<&str>) -> Result<W, (i32, String)> {
        let e = c(engine);
        let ep = endpoint.map(c);
        let mut out: *mut WwWatcher = std::ptr::NonNull::dangling().as_ptr();
        let st = unsafe {
            ww_watcher_new(
                e.as_ptr(),
                ep.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
                &mut out,
            )
        };
        if st == WW_OK {
            assert!(!out.is_null());
            Ok(W(out))
        } else {
            assert!(out.is_null(), "out must be NULL after a failure");
            Err((st, last_error()))
        }
    }

    pub fn wait_ready(&self, ms: u64) -> i32 {
        unsafe { ww_watcher_wait_ready(self.0, ms) }
    }

    /// Status and JSON of `ww_watcher_portfolio_json`.
    pub fn portfolio(&self) -> (i32, Option<String>) {
        let mut out = std::ptr::null_mut();
        let st = unsafe { ww_watcher_portfolio_json(self.0, &mut out) };
        (st, take(out))
    }

    /// The portfolio, parsed.
    pub fn portfolio_value(&self) -> Vec<Value> {
        let (st, json) = self.portfolio();
        assert_eq!(st, WW_OK, "{}", last_error());
        serde_json::from_str(&json.unwrap()).unwrap()
    }

    /// Status and JSON of `ww_watcher_lookup_json`.
    pub fn lookup(&self, key: &str) -> (i32, Option<String>) {
        let k = c(key);
        let mut out = std::ptr::null_mut();
        let st = unsafe { ww_watcher_lookup_json(self.0, k.as_ptr(), &mut out) };
        (st, take(out))
    }

    /// State and JSON of `ww_watcher_health`.
    pub fn health(&self) -> (i32, Value) {
        let mut state = -1;
        let mut out = std::ptr::null_mut();
        let st = unsafe { ww_watcher_health(self.0, &mut state, &mut out) };
        assert_eq!(st, WW_OK, "{}", last_error());
        (state, serde_json::from_str(&take(out).unwrap()).unwrap())
    }

    pub fn subscribe(&self) -> S {
        let mut out = std::ptr::null_mut();
        let st = unsafe { ww_watcher_subscribe(self.0, &mut out) };
        assert_eq!(st, WW_OK, "{}", last_error());
        S(out)
    }
}

impl Drop for W {
    fn drop(&mut self) {
        unsafe { ww_watcher_close(self.0) };
    }
}

/// An owned subscription handle, freed on drop.
pub struct S(pub *mut WwSubscription);

unsafe impl Send for S {}
unsafe impl Sync for S {}

impl S {
    /// Status and JSON of `ww_subscription_next`.
    pub fn next(&self, ms: u64) -> (i32, Option<String>) {
        let mut out = std::ptr::null_mut();
        let st = unsafe { ww_subscription_next(self.0, ms, &mut out) };
        (st, take(out))
    }

    /// The next event, parsed; panics on anything else.
    pub fn event(&self, ms: u64) -> Value {
        let (st, json) = self.next(ms);
        assert_eq!(st, WW_OK, "expected an event: {}", last_error());
        serde_json::from_str(&json.unwrap()).unwrap()
    }
}

impl Drop for S {
    fn drop(&mut self) {
        unsafe { ww_subscription_free(self.0) };
    }
}

/// The directory with the built `libwhalewatcher.so` and `.a` (`WHALEWATCHER_FFI_LIB_DIR`,
/// set by tests/run-tests.sh after `cargo rustc --lib --features ffi --crate-type
/// cdylib,staticlib`), or `None` after a loud skip message (a failure under
/// `WHALEWATCHER_REQUIRE_ENGINES=1`).
pub fn lib_dir() -> Option<std::path::PathBuf> {
    match std::env::var("WHALEWATCHER_FFI_LIB_DIR") {
        Ok(d) if !d.is_empty() => {
            let d = std::path::PathBuf::from(d);
            assert!(
                d.join("libwhalewatcher.so").exists() && d.join("libwhalewatcher.a").exists(),
                "no libwhalewatcher.so/.a in {d:?}"
            );
            Some(d)
        }
        _ => {
            let msg = "WHALEWATCHER_FFI_LIB_DIR is not set (build with `cargo rustc --lib --features ffi --crate-type cdylib,staticlib` and point it at target/debug)";
            if support::engines_required() {
                panic!("{msg}, but WHALEWATCHER_REQUIRE_ENGINES=1");
            }
            eprintln!("\n*** SKIPPING: {msg} ***\n");
            None
        }
    }
}

/// The crate's root directory.
pub fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
