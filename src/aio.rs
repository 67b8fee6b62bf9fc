//! What the library does with the process's asynchronous I/O: io_uring
//! rings set up through liburing are followed (`uring`) unless they cannot
//! be captured or the environment says otherwise; Linux native AIO
//! (libaio) is refused, so that its writes go through pwrite. The hooks in
//! hooks.rs are the doors; this is the policy behind them.

use crate::{real, sys, uring};
use libc::{c_int, c_uint, c_void};

/// Whether the process asked to keep io_uring/libaio unfollowed (backups are
/// then refused while a ring or context exists).
fn native_aio_allowed() -> bool {
    env_flag(c"HOTBACKUP_NATIVE_AIO", b"1")
}

/// Whether io_uring is to be turned off (the process then falls back to
/// its synchronous writes), as before rings could be followed.
fn io_uring_off() -> bool {
    env_flag(c"HOTBACKUP_IO_URING", b"off")
}

fn env_flag(name: &'static core::ffi::CStr, value: &[u8]) -> bool {
    // SAFETY: getenv with a NUL-terminated name; it returns NULL or a
    // NUL-terminated string that lives as long as the environment is not
    // changed, which processes do not do while setting up I/O.
    let v = unsafe { libc::getenv(name.as_ptr()) };
    // SAFETY: as above.
    !v.is_null() && unsafe { std::ffi::CStr::from_ptr(v) }.to_bytes() == value
}

fn refuse(what: &str, why: &str) {
    sys::say(&format!("{what} refused so that every write can be captured for hot backups: {why} (set HOTBACKUP_NATIVE_AIO=1 to keep it and disable backups)"));
}

/// Set a ring up and follow it, or refuse it (liburing's callers then fall
/// back to synchronous I/O) when it could not be captured.
///
/// # Safety
/// `ring` is the application's `struct io_uring`, which `init` (liburing's
/// function) sets up.
pub unsafe fn init_ring(
    ring: *mut c_void,
    setup_flags: c_uint,
    init: impl FnOnce() -> c_int,
) -> c_int {
    if native_aio_allowed() {
        return init();
    }
    if io_uring_off() {
        refuse("io_uring", "HOTBACKUP_IO_URING=off");
        return -libc::ENOSYS;
    }
    if let Err(why) = uring::capturable(setup_flags) {
        refuse("io_uring", &why);
        return -libc::ENOSYS;
    }
    let r = init();
    // SAFETY: liburing set the ring up (r == 0).
    if r == 0 && !unsafe { uring::register(ring) } {
        // SAFETY: the ring liburing just set up, not yet used.
        unsafe { real::io_uring_queue_exit(ring) };
        refuse("io_uring", &format!("more than {} rings", uring::MAX_RINGS));
        return -libc::ENOSYS;
    }
    r
}

/// Submit what a followed ring has queued through `submit` (the
/// `io_uring_submit` hook, inside the gate), then make the application's
/// waiting call `wait` outside it, which finds nothing more to submit.
/// `counts`: the call returns how many entries it submitted, to which ours
/// are added.
pub fn submit_then_wait(
    ring: *mut c_void,
    counts: bool,
    submit: impl FnOnce() -> c_int,
    wait: impl FnOnce() -> c_int,
) -> c_int {
    let first = if uring::queued(ring) == 0 {
        0
    } else {
        submit()
    };
    if first < 0 {
        return first;
    }
    let r = wait();
    if counts && r >= 0 {
        first + r
    } else {
        r
    }
}

/// The setup flags in the application's `struct io_uring_params` (0 for
/// none).
///
/// # Safety
/// `params` is null or what liburing requires: a valid, readable
/// `io_uring_params`.
pub unsafe fn setup_flags(params: *const c_void) -> c_uint {
    if params.is_null() {
        return 0;
    }
    // SAFETY: per the contract, a valid io_uring_params, which liburing
    // reads itself before any system call; its head is `ParamsHead`.
    unsafe { (*params.cast::<crate::liburing::ParamsHead>()).flags }
}

/// Linux native AIO (libaio's io_setup): refused, so that the application
/// writes with pwrite instead, unless HOTBACKUP_NATIVE_AIO=1 keeps it
/// (`setup` is the application's call).
pub fn io_setup(setup: impl FnOnce() -> c_int) -> c_int {
    if native_aio_allowed() {
        return setup();
    }
    refuse(
        "Linux native AIO (io_setup)",
        "its writes are invisible to the library",
    );
    -libc::ENOSYS
}
