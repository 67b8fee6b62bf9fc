//! Which descriptor numbers are the library's own, so that an application
//! closing its descriptors wholesale (`closefrom`, `close_range`) closes
//! around them instead of pulling the mirror's, the copier's or an io_uring
//! worker's descriptor from under it.
//!
//! A number is recorded from the moment the kernel gives it to the library
//! until the library closes it: opening and closing happen inside
//! `changing()`, a shared hold on the table. `close_around` holds it
//! exclusively while it closes the application's ranges between the
//! recorded numbers, so no number of the library's changes meanwhile (one
//! being opened could otherwise land in a range being closed). The hold is
//! two atomic operations on a word only the library's own opens and closes
//! and the application's `closefrom`/`close_range` touch: nothing on the
//! path of a write.

use core::cell::Cell;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::time::Duration;

/// Numbers the table can hold. The library's descriptors start at half the
/// soft limit, itself at most 2^20 there (see `sys::place_own_fds`): a
/// number above this would need a process with a million descriptors above
/// the library's, and is refused (EMFILE) rather than left unprotected.
pub const MAX_FD: usize = 1 << 21;
const WORDS: usize = MAX_FD / 64;

/// One bit per number; a bit of `SUMMARY` per word of `BITS` that may be
/// non-zero (set when a bit is, cleared only by `after_fork_child`), so
/// that a scan skips empty stretches 4096 numbers at a time.
static BITS: [AtomicU64; WORDS] = [const { AtomicU64::new(0) }; WORDS];
static SUMMARY: [AtomicU64; WORDS / 64] = [const { AtomicU64::new(0) }; WORDS / 64];
/// One past the highest word ever set: scans stop there.
static HIGH_WORD: AtomicUsize = AtomicUsize::new(0);

/// Shared holds in the low bits, `EXCLUSIVE` while `close_around` runs.
static HOLD: AtomicU32 = AtomicU32::new(0);
const EXCLUSIVE: u32 = 1 << 31;

thread_local! {
    /// Shared holds this thread has: an application's signal handler that
    /// calls `closefrom` on a thread inside `changing()` must not wait for
    /// itself.
    static HELD: Cell<u32> = const { Cell::new(0) };
}

fn pause() {
    std::thread::sleep(Duration::from_micros(20));
}

/// A shared hold on the table, taken around every open and close of a
/// descriptor of the library's; waits while `close_around` runs.
pub struct Changing(());

pub fn changing() -> Changing {
    loop {
        if HOLD.fetch_add(1, Acquire) & EXCLUSIVE == 0 {
            HELD.set(HELD.get() + 1);
            return Changing(());
        }
        HOLD.fetch_sub(1, Relaxed);
        while HOLD.load(Relaxed) & EXCLUSIVE != 0 {
            pause();
        }
    }
}

impl Drop for Changing {
    fn drop(&mut self) {
        HELD.set(HELD.get() - 1);
        HOLD.fetch_sub(1, Release);
    }
}

impl Changing {
    /// Record `fd` as the library's; false if it is beyond the table (the
    /// caller then closes it).
    pub fn record(&self, fd: i32) -> bool {
        let Ok(n) = usize::try_from(fd) else {
            return false;
        };
        if n >= MAX_FD {
            return false;
        }
        let w = n / 64;
        BITS[w].fetch_or(1 << (n % 64), Relaxed);
        SUMMARY[w / 64].fetch_or(1 << (w % 64), Relaxed);
        HIGH_WORD.fetch_max(w + 1, Relaxed);
        true
    }

    /// The library is about to close `fd`.
    pub fn forget(&self, fd: i32) {
        if let Ok(n) = usize::try_from(fd) {
            if n < MAX_FD {
                BITS[n / 64].fetch_and(!(1 << (n % 64)), Relaxed);
            }
        }
    }
}

/// The exclusive hold, released on drop (also when unwinding).
struct Exclusive;

impl Exclusive {
    fn take() -> Exclusive {
        while HOLD.fetch_or(EXCLUSIVE, Acquire) & EXCLUSIVE != 0 {
            pause();
        }
        // Shared holds of this very thread (a signal handler's call) would
        // never go: wait for the others only.
        let mine = HELD.get();
        while HOLD.load(Acquire) & !EXCLUSIVE > mine {
            pause();
        }
        Exclusive
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        HOLD.fetch_and(!EXCLUSIVE, Release);
    }
}

/// The lowest recorded number in `[from, to]`.
fn next_recorded(from: u32, to: u32) -> Option<u32> {
    let high = HIGH_WORD.load(Relaxed);
    let mut w = from as usize / 64;
    let mut mask = u64::MAX << (from % 64);
    while w < high {
        if SUMMARY[w / 64].load(Relaxed) & (1 << (w % 64)) == 0 {
            // Nothing in this word: on to the next one.
            w += 1;
            mask = u64::MAX;
            continue;
        }
        let bits = BITS[w].load(Relaxed) & mask;
        if bits != 0 {
            let fd = (w * 64) as u32 + bits.trailing_zeros();
            return (fd <= to).then_some(fd);
        }
        w += 1;
        mask = u64::MAX;
    }
    None
}

/// Close the application's descriptors in `[first, last]` and none of the
/// library's: `whole()` (the application's own call) when the range holds
/// none of the library's, otherwise `part(a, b)` for each stretch between
/// them, in order, stopping at the first that fails (returns non-zero).
/// Returns what the last call made returned.
pub fn close_around(
    first: u32,
    last: u32,
    whole: impl FnOnce() -> i32,
    mut part: impl FnMut(u32, u32) -> i32,
) -> i32 {
    let _exclusive = Exclusive::take();
    let Some(mut own) = next_recorded(first, last) else {
        return whole();
    };
    let mut from = first;
    loop {
        if own > from {
            let r = part(from, own - 1);
            if r != 0 {
                return r;
            }
        }
        if own == last {
            return 0;
        }
        from = own + 1;
        match next_recorded(from, last) {
            Some(next) => own = next,
            None => return part(from, last),
        }
    }
}

/// In the child of fork(): the parent's threads, and with them every user
/// of the library's descriptors, are gone (the descriptors themselves are
/// close-on-exec), so the child's application may close them all.
pub fn after_fork_child() {
    HOLD.store(0, Relaxed);
    HELD.set(0);
    let high = HIGH_WORD.swap(0, Relaxed);
    for word in BITS.iter().take(high) {
        word.store(0, Relaxed);
    }
    for word in SUMMARY.iter().take(high.div_ceil(64)) {
        word.store(0, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Numbers far above anything a test process opens, recorded and
    /// forgotten again, one test at a time (the table is global).
    #[test]
    fn closes_the_stretches_between_recorded_numbers() {
        let base = (MAX_FD - 10_000) as u32;
        let own = [base + 5, base + 6, base + 100, base + 64 * 70];
        let hold = changing();
        for fd in own {
            assert!(hold.record(fd as i32));
        }
        assert!(!hold.record(MAX_FD as i32), "beyond the table");
        drop(hold);

        let parts = |first, last| {
            let calls = std::cell::RefCell::new(Vec::new());
            let r = close_around(
                first,
                last,
                || {
                    calls.borrow_mut().push((0, 0));
                    7
                },
                |a, b| {
                    calls.borrow_mut().push((a, b));
                    0
                },
            );
            (r, calls.into_inner())
        };
        // Around them, up to the end.
        let (r, calls) = parts(base, u32::MAX);
        assert_eq!(r, 0);
        assert_eq!(
            calls,
            [
                (base, base + 4),
                (base + 7, base + 99),
                (base + 101, base + 64 * 70 - 1),
                (base + 64 * 70 + 1, u32::MAX)
            ]
        );
        // A range that ends on one of them, or holds only them.
        assert_eq!(parts(base + 1, base + 6).1, [(base + 1, base + 4)]);
        assert_eq!(parts(base + 5, base + 6).1, []);
        // None of them in range: the application's call, as it made it.
        assert_eq!(parts(base + 7, base + 99), (7, vec![(0, 0)]));
        assert_eq!(parts(base - 1000, base), (7, vec![(0, 0)]));
        // A failing part stops the rest.
        let mut n = 0;
        let r = close_around(
            base,
            u32::MAX,
            || 0,
            |_, _| {
                n += 1;
                -1
            },
        );
        assert_eq!((r, n), (-1, 1));

        let hold = changing();
        for fd in own {
            hold.forget(fd as i32);
        }
        drop(hold);
        assert_eq!(parts(base, u32::MAX), (7, vec![(0, 0)]));
    }
}
