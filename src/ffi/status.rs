//! Status codes, the thread-local last-error message, and the panic barrier.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::Error;

/// Success.
pub const WW_OK: c_int = 0;
/// Nothing happened within the timeout (not an error).
pub const WW_TIMEOUT: c_int = 1;
/// No alive container with that id or name, or no engine information yet (not an error).
pub const WW_NOT_FOUND: c_int = 2;
/// The subscription has ended because its watcher was closed; nothing more will come.
pub const WW_ENDED: c_int = 3;
/// Some events were lost from the journal; the JSON tells which (`{"type":"gap",...}`).
pub const WW_GAP: c_int = 4;
/// The subscriber fell behind and the subscription ended; the JSON
/// (`{"type":"lagged",...}`) tells where to resubscribe.
pub const WW_LAGGED: c_int = 5;
/// Engine `"auto"`: an engine was attached or has vanished; the JSON
/// (`{"type":"attached"|"vanished","engine":{...}}`) tells which.
pub const WW_ENGINE: c_int = 6;
/// A required pointer argument was NULL.
pub const WW_ERR_NULL: c_int = -1;
/// A string argument was not valid UTF-8.
pub const WW_ERR_UTF8: c_int = -2;
/// An argument was not usable (unknown engine type, malformed endpoint).
pub const WW_ERR_INVALID_ARGUMENT: c_int = -3;
/// Not supported by this build (an engine's cargo feature is off) or by this kind of
/// watcher (e.g. `ww_watcher_subscribe_since` on engine `"auto"`).
pub const WW_ERR_UNSUPPORTED: c_int = -4;
/// The watcher failed (its retry policy gave up) or was closed.
pub const WW_ERR_ENGINE: c_int = -5;
/// A Rust panic was caught at the boundary (a bug: please report it).
pub const WW_ERR_PANIC: c_int = -6;
/// Something that cannot happen happened (e.g. a JSON string with a NUL byte).
pub const WW_ERR_INTERNAL: c_int = -7;

/// A non-OK outcome: its status code and the message for [`ww_last_error`].
#[derive(Debug)]
pub(crate) struct Fail {
    pub(crate) status: c_int,
    pub(crate) message: String,
}

impl Fail {
    pub(crate) fn new(status: c_int, message: impl Into<String>) -> Self {
        Fail {
            status,
            message: message.into(),
        }
    }

    /// A watcher or engine error: timeouts are [`WW_TIMEOUT`], the rest [`WW_ERR_ENGINE`].
    pub(crate) fn engine(e: &Error) -> Self {
        let status = match e {
            Error::Timeout { .. } => WW_TIMEOUT,
            Error::InvalidEndpoint { .. } => WW_ERR_INVALID_ARGUMENT,
            _ => WW_ERR_ENGINE,
        };
        Fail::new(status, e.to_string())
    }
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

fn set_last_error(message: Option<String>) {
    let c = message
        .map(|m| CString::new(m.replace('\0', "\\0")).unwrap_or_else(|_| CString::from(c"error")));
    // try_with: during thread teardown the slot may be gone; then there is nobody to tell.
    let _ = LAST_ERROR.try_with(|slot| {
        if let Ok(mut slot) = slot.try_borrow_mut() {
            *slot = c;
        }
    });
}

/// Runs one ABI call: clears the last error, catches panics, records the message of a
/// non-OK outcome.
pub(crate) fn call(f: impl FnOnce() -> Result<c_int, Fail>) -> c_int {
    set_last_error(None);
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(status)) => status,
        Ok(Err(fail)) => {
            set_last_error(Some(fail.message));
            fail.status
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            set_last_error(Some(format!("internal panic in whalewatcher: {what}")));
            WW_ERR_PANIC
        }
    }
}

/// Like [`call`] for functions without a status (the free functions).
pub(crate) fn call_void(f: impl FnOnce()) {
    let _ = call(|| {
        f();
        Ok(WW_OK)
    });
}

/// The message of the most recent non-OK status returned on the calling thread, or `""`
/// after a call that returned [`WW_OK`]. Never NULL. The string belongs to the library
/// and stays valid until the next whalewatcher call on the same thread: copy it.
#[no_mangle]
pub extern "C" fn ww_last_error() -> *const c_char {
    LAST_ERROR
        .try_with(|slot| match slot.try_borrow() {
            Ok(s) => s.as_ref().map(|c| c.as_ptr()),
            Err(_) => None,
        })
        .ok()
        .flatten()
        .unwrap_or(c"".as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last() -> String {
        // SAFETY: ww_last_error never returns NULL and the string lives until the next call.
        unsafe { CStr::from_ptr(ww_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn panics_become_a_status_and_a_message() {
        assert_eq!(call(|| panic!("boom {}", 42)), WW_ERR_PANIC);
        assert_eq!(last(), "internal panic in whalewatcher: boom 42");
        assert_eq!(call(|| panic!("static")), WW_ERR_PANIC);
        assert!(last().ends_with("static"));
        assert_eq!(call(|| Ok(WW_OK)), WW_OK);
        assert_eq!(last(), "");
    }

    #[test]
    fn messages_with_nul_bytes_survive() {
        assert_eq!(
            call(|| Err(Fail::new(WW_ERR_ENGINE, "a\0b"))),
            WW_ERR_ENGINE
        );
        assert_eq!(last(), "a\\0b");
    }
}
