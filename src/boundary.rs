//! The panic boundary every exported function runs behind (the interposed
//! libc/liburing/libaio functions, the Rust functions src/c/shim.c calls,
//! and the C API): a panic never unwinds into C, where it would abort the
//! application.
//!
//! `boundary!` runs the function's body under `catch_unwind`. The body
//! makes the application's real call through `Made::call` (or notes it with
//! `Made::note`), which keeps its result and errno. After a panic:
//! - if the real call was made, the application gets its result and errno;
//! - if not, the fallback runs: the application's call with its own
//!   arguments for a hook (so the application's write still happens), a
//!   fixed value for the API;
//! - the running backup fails with an internal error (a panic while a hook
//!   holds the capture guard fails it before capture can stop, see
//!   `session::Capture`), and the application goes on.
//!
//! Not covered: a forced unwind (pthread_cancel of a thread inside a hooked
//! cancellation point) still aborts the process, as it did before the
//! boundary: the hooks are `extern "C"`.

use crate::gate::{Gate, KIND_NO_CHANGE};
use crate::{session, sys};
use core::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU8, Ordering::*};

/// The application's real call, once made: its result and the errno it
/// left.
pub struct Made<R: Copy>(Cell<Option<(R, libc::c_int)>>);

impl<R: Copy> Made<R> {
    #[inline(always)]
    pub fn new() -> Made<R> {
        Made(Cell::new(None))
    }

    /// Keep the result of a real call just made, with the errno it left
    /// (for hooks that make the real call first and work afterwards).
    #[inline(always)]
    pub fn note(&self, r: R) -> R {
        self.0.set(Some((r, sys::errno())));
        r
    }

    /// Make the real call and keep its result and errno for the boundary.
    #[inline(always)]
    pub fn call(&self, real: impl FnOnce() -> R) -> R {
        test_panic(TEST_BEFORE);
        let r = real();
        self.0.set(Some((r, sys::errno())));
        test_panic(TEST_AFTER);
        r
    }
}

/// `boundary!(name, |made| body, fallback)`: run `body` (which makes the
/// real call through `made.call`) behind the panic boundary; after a panic,
/// return what the real call returned or, if it was not made, `fallback`.
///
/// `boundary!(name, gate: what, idle: call, |made, gate| body, fallback)`,
/// for a hook that passes the gate and, when no backup captures, only makes
/// the real call `call`: that idle path stays outside `catch_unwind`
/// (`catch_unwind` adds no instruction itself, but a body inside it keeps
/// the hook's arguments in memory for the fallback: 16 to 23 more
/// instructions per idle pwrite; this way 6, register saves; callgrind,
/// BENCHMARKS.md). It cannot panic:
/// `Gate::enter` writes the thread's own slot (its index checked first) and
/// reads a flag, `capturing` reads a flag and a const thread-local, the real
/// call goes to libc through a cached pointer. Everything else, from the
/// first step of capture on, runs behind the boundary, out of line.
macro_rules! boundary {
    ($name:expr, |$made:ident| $body:expr, $fallback:expr) => {{
        let $made = $crate::boundary::Made::new();
        $crate::boundary::run($name, &$made, || $body, || $fallback)
    }};
    ($name:expr, gate: $what:expr, idle: $idle:expr, |$made:ident, $gate:ident| $body:expr, $fallback:expr) => {{
        let $gate = $crate::gate::Gate::enter($what);
        if !$gate.capturing() {
            return $idle;
        }
        $crate::boundary::capturing($name, $gate, move |$made, $gate| $body, move || $fallback)
    }};
}
pub(crate) use boundary;

/// The capturing part of a gated hook (see `boundary!`), out of line; its
/// closures take the hook's arguments by value, so that the idle path
/// leaves them in registers. The gate is held until the fallback is done.
#[inline(never)]
pub fn capturing<R: Copy>(
    name: &'static str,
    gate: Gate,
    body: impl FnOnce(&Made<R>, &Gate) -> R,
    fallback: impl FnOnce() -> R,
) -> R {
    let made = Made::new();
    match catch_unwind(AssertUnwindSafe(|| body(&made, &gate))) {
        Ok(r) => r,
        Err(payload) => caught(name, &made, payload, Some(&gate), fallback),
    }
}

#[inline(always)]
pub fn run<R: Copy>(
    name: &'static str,
    made: &Made<R>,
    body: impl FnOnce() -> R,
    fallback: impl FnOnce() -> R,
) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(payload) => caught(name, made, payload, None, fallback),
    }
}

#[cold]
#[inline(never)]
fn caught<R: Copy>(
    name: &'static str,
    made: &Made<R>,
    payload: Box<dyn std::any::Any + Send>,
    gate: Option<&Gate>,
    fallback: impl FnOnce() -> R,
) -> R {
    // A payload's destructor is arbitrary code that could panic again.
    quietly(|| drop(payload));
    let made = made.0.get();
    let saved = sys::errno();
    quietly(|| fail_backup(name, made.is_some(), gate));
    match made {
        Some((r, errno)) => {
            sys::set_errno(errno);
            r
        }
        None => {
            sys::set_errno(saved);
            fallback()
        }
    }
}

/// Run `f`, swallowing a panic in it (the boundary's own work after one);
/// the payload of such a second panic is leaked, not dropped.
fn quietly(f: impl FnOnce()) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(f)) {
        std::mem::forget(payload);
    }
}

/// Fail the running backup, if any: the application's call went through,
/// but its change may not be in the copy. Through the hook's own `gate`
/// when it still holds one (a gate entered in here would be nested in it,
/// and a nested gate never enters the session).
fn fail_backup(name: &str, made: bool, gate: Option<&Gate>) {
    let own;
    let gate = match gate {
        Some(g) => g,
        None => {
            own = Gate::enter(KIND_NO_CHANGE);
            &own
        }
    };
    if let Some((_capture, s)) = session::enter(gate) {
        let when = if made { "after" } else { "before" };
        s.fail_raw(
            libc::EIO,
            format!("internal error in libHotBackup: a panic in {name}() {when} the application's call, which was completed"),
        );
    }
}

// ---- a panic on purpose, for the tests ----

const TEST_OFF: u8 = 0;
const TEST_BEFORE: u8 = 1;
const TEST_AFTER: u8 = 2;
/// One panic armed by HOTBACKUP_TEST_PANIC when a backup starts.
static TEST_PANIC: AtomicU8 = AtomicU8::new(TEST_OFF);

/// At the start of a backup: HOTBACKUP_TEST_PANIC=before_real_call or
/// after_real_call in the environment makes the next real call a hook makes
/// through `Made::call` during the backup panic before or after it (the
/// engine tests prove the boundary with it; nothing else sets it).
pub fn arm_test_panic() {
    let mode = match std::env::var("HOTBACKUP_TEST_PANIC").as_deref() {
        Ok("before_real_call") => TEST_BEFORE,
        Ok("after_real_call") => TEST_AFTER,
        _ => TEST_OFF,
    };
    TEST_PANIC.store(mode, Relaxed);
}

#[inline(always)]
fn test_panic(when: u8) {
    if TEST_PANIC.load(Relaxed) == when
        && TEST_PANIC
            .compare_exchange(when, TEST_OFF, Relaxed, Relaxed)
            .is_ok()
    {
        panic!("HOTBACKUP_TEST_PANIC: a panic on purpose");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(made_first: bool, panic: bool) -> i64 {
        boundary!(
            "test",
            |made| {
                let r = if made_first {
                    made.call(|| {
                        sys::set_errno(libc::ENOSPC);
                        -1
                    })
                } else {
                    0
                };
                if panic {
                    sys::set_errno(libc::EPERM);
                    panic!("in the hook");
                }
                r
            },
            {
                sys::set_errno(libc::EAGAIN);
                7
            }
        )
    }

    #[test]
    fn no_panic_returns_the_body() {
        sys::set_errno(0);
        assert_eq!(hook(true, false), -1);
        assert_eq!(sys::errno(), libc::ENOSPC);
    }

    #[test]
    fn panic_after_the_real_call_returns_its_result_and_errno() {
        assert_eq!(hook(true, true), -1);
        assert_eq!(sys::errno(), libc::ENOSPC);
    }

    #[test]
    fn panic_before_the_real_call_makes_the_fallback() {
        assert_eq!(hook(false, true), 7);
        assert_eq!(sys::errno(), libc::EAGAIN);
    }
}
