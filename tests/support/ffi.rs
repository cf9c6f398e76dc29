//! Support of the C ABI tests: a Docker CLI helper for ground truth, and thin safe
//! wrappers around the `ww_*` functions.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;
use whalewatcher::ffi::*;

use crate::support;

/// The shared dockerd and the containers a test created (removed on drop).
pub struct Docker {
    pub url: String,
    names: RefCell<Vec<String>>,
}

static SERIAL: AtomicUsize = AtomicUsize::new(0);

impl Docker {
    /// The dockerd of `WHALEWATCHER_DOCKER`, or `None` (skipped loudly).
    pub fn from_env() -> Option<Self> {
        Some(Docker {
            url: support::endpoint("WHALEWATCHER_DOCKER")?,
            names: RefCell::default(),
        })
    }

    /// Runs `docker -H URL args...`; stdout, panics on failure.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut all = vec!["-H", self.url.as_str()];
        all.extend_from_slice(args);
        support::run("docker", &all)
    }

    /// Starts a blocking busybox container with a unique name; returns (id, name).
    pub fn start(&self, tag: &str) -> (String, String) {
        let image = std::env::var("WHALEWATCHER_IMAGE").unwrap_or_else(|_| "busybox:sleep".into());
        let name = format!(
            "ffi-{tag}-{}-{}",
            std::process::id(),
            SERIAL.fetch_add(1, Ordering::SeqCst)
        );
        self.names.borrow_mut().push(name.clone());
        let id = self
            .cli(&["run", "-d", "--name", &name, &image])
            .trim()
            .to_string();
        (id, name)
    }

    /// `docker inspect` of one container.
    pub fn inspect(&self, id: &str) -> Value {
        let out = self.cli(&["inspect", id]);
        let v: Value = serde_json::from_str(&out).expect("docker inspect JSON");
        v[0].clone()
    }

    /// The PID docker reports for a running container.
    pub fn pid(&self, id: &str) -> u64 {
        self.inspect(id)["State"]["Pid"]
            .as_u64()
            .expect("State.Pid")
    }

    /// True when docker says the container is running (or paused).
    pub fn is_running(&self, id: &str) -> bool {
        let out = std::process::Command::new("docker")
            .args(["-H", &self.url, "inspect", "-f", "{{.State.Running}}", id])
            .output()
            .expect("docker inspect");
        String::from_utf8_lossy(&out.stdout).trim() == "true"
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        for n in self.names.borrow().iter() {
            let _ = std::process::Command::new("docker")
                .args(["-H", &self.url, "rm", "-f", n])
                .output();
        }
    }
}

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
