//! Symbols of the process (the server and the libraries it loaded), found
//! by name at run time: the bottom layer under `server`, `grants` and
//! `library`, which link against nothing.

use std::ffi::{c_void, CString};

/// Looks a symbol up in the whole process.
pub fn lookup(name: &str) -> *mut c_void {
    let Ok(c) = CString::new(name) else {
        return std::ptr::null_mut();
    };
    // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only reads the
    // loaded objects' symbol tables.
    unsafe { libc::dlsym(libc::RTLD_DEFAULT, c.as_ptr()) }
}

/// The first of `names` the process exports.
pub fn lookup_any(names: &[&str]) -> *mut c_void {
    names
        .iter()
        .map(|n| lookup(n))
        .find(|p| !p.is_null())
        .unwrap_or(std::ptr::null_mut())
}
