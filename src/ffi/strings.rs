//! Strings across the boundary: C strings in, owned JSON strings out.

use std::ffi::{c_char, CStr, CString};

use super::status::{call_void, Fail, WW_ERR_INTERNAL, WW_ERR_NULL, WW_ERR_UTF8};

/// Borrows the NUL-terminated UTF-8 string at `p`; `what` names the argument in errors.
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string that outlives the returned borrow.
pub(crate) unsafe fn in_str<'a>(p: *const c_char, what: &str) -> Result<&'a str, Fail> {
    if p.is_null() {
        return Err(Fail::new(WW_ERR_NULL, format!("{what} is NULL")));
    }
    // SAFETY: non-null and NUL-terminated per the caller's contract.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str()
        .map_err(|e| Fail::new(WW_ERR_UTF8, format!("{what} is not valid UTF-8 ({e})")))
}

/// Like [`in_str`], but NULL and `""` are `None`.
///
/// # Safety
/// As for [`in_str`].
pub(crate) unsafe fn in_opt_str<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>, Fail> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: forwarded contract.
    let s = unsafe { in_str(p, what)? };
    Ok(Some(s).filter(|s| !s.is_empty()))
}

/// Checks an out-parameter and sets it to NULL, so that it is NULL on every failure.
///
/// # Safety
/// `out` is NULL or valid for writing one pointer.
pub(crate) unsafe fn clear_out<T>(out: *mut *mut T, what: &str) -> Result<(), Fail> {
    if out.is_null() {
        return Err(Fail::new(WW_ERR_NULL, format!("{what} is NULL")));
    }
    // SAFETY: non-null and writable per the caller's contract.
    unsafe { out.write(std::ptr::null_mut()) };
    Ok(())
}

/// Hands `s` to the caller through `out` (already checked by [`clear_out`]).
///
/// # Safety
/// `out` is valid for writing one pointer.
pub(crate) unsafe fn out_string(out: *mut *mut c_char, s: String) -> Result<(), Fail> {
    let c = CString::new(s)
        .map_err(|_| Fail::new(WW_ERR_INTERNAL, "a returned string contains a NUL byte"))?;
    // SAFETY: writable per the caller's contract.
    unsafe { out.write(c.into_raw()) };
    Ok(())
}

/// JSON of a serializable value.
pub(crate) fn to_json<T: serde_core::Serialize + ?Sized>(v: &T) -> Result<String, Fail> {
    serde_json::to_string(v)
        .map_err(|e| Fail::new(WW_ERR_INTERNAL, format!("cannot render JSON: {e}")))
}

/// Frees a string returned by this library. NULL is ignored.
///
/// # Safety
/// `s` is NULL or a string returned by this library that was not freed yet.
#[no_mangle]
pub unsafe extern "C" fn ww_string_free(s: *mut c_char) {
    if s.is_null() {
        return;
    }
    // SAFETY: `s` came from `CString::into_raw` in `out_string` per the contract.
    call_void(|| drop(unsafe { CString::from_raw(s) }));
}

/// The library version, e.g. `"0.1.0"`: a static string, never to be freed.
#[no_mangle]
pub extern "C" fn ww_version() -> *const c_char {
    const VERSION: &CStr =
        match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
            Ok(v) => v,
            Err(_) => c"unknown",
        };
    VERSION.as_ptr()
}
