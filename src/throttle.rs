//! How fast the copier may read the sources.
//!
//! The limit is global (Percona's API sets it for the running backup and
//! later ones) and may change at any moment. Accounting restarts whenever it
//! changes, so a new limit applies at once rather than averaging with the old
//! one. Sleeping happens outside every lock and in short steps, so a paused
//! backup still notices an abort within a fraction of a second.

use crate::source_file::lock;
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static RATE: AtomicU64 = AtomicU64::new(u64::MAX);

pub fn set_rate(bytes_per_second: u64) {
    RATE.store(bytes_per_second, SeqCst);
}

pub fn rate() -> u64 {
    RATE.load(SeqCst)
}

const STEP: Duration = Duration::from_millis(100);

pub struct Throttle {
    window: Mutex<Window>,
}

struct Window {
    rate: u64,
    start: Instant,
    bytes: u64,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            window: Mutex::new(Window {
                rate: rate(),
                start: Instant::now(),
                bytes: 0,
            }),
        }
    }
}

impl Throttle {
    /// A chunk size that keeps the limit smooth: about 1/20 s of transfer.
    pub fn chunk(max: u64) -> u64 {
        chunk_at(rate(), max)
    }

    /// Wait until `bytes` more may be read. Returns false if `stop()` became
    /// true while waiting.
    pub fn acquire(&self, bytes: u64, stop: impl Fn() -> bool) -> bool {
        self.acquire_at(bytes, rate, stop)
    }

    /// `acquire` with the limit read from `rate` (the global one, or a
    /// test's).
    fn acquire_at(&self, bytes: u64, rate: impl Fn() -> u64, stop: impl Fn() -> bool) -> bool {
        loop {
            if stop() {
                return false;
            }
            let wait = {
                let mut w = lock(&self.window);
                let r = rate();
                if r != w.rate {
                    *w = Window {
                        rate: r,
                        start: Instant::now(),
                        bytes: 0,
                    };
                }
                if r == u64::MAX {
                    return true;
                }
                if r == 0 {
                    Some(STEP)
                } else {
                    let due = Duration::from_secs_f64((w.bytes + bytes) as f64 / r as f64);
                    let elapsed = w.start.elapsed();
                    if due <= elapsed {
                        w.bytes += bytes;
                        // Forget idle time, so that a long pause does not
                        // allow a burst above the limit afterwards.
                        if elapsed > due + Duration::from_secs(1) {
                            w.start =
                                Instant::now() - Duration::from_secs_f64(w.bytes as f64 / r as f64);
                        }
                        None
                    } else {
                        Some((due - elapsed).min(STEP))
                    }
                }
            };
            match wait {
                None => return true,
                Some(d) => std::thread::sleep(d),
            }
        }
    }
}

fn chunk_at(rate: u64, max: u64) -> u64 {
    if rate == u64::MAX {
        return max;
    }
    (rate / 20).clamp(4096, max)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::cell::Cell;

    #[test]
    fn chunk_follows_rate() {
        assert_eq!(chunk_at(u64::MAX, 1 << 20), 1 << 20);
        assert_eq!(chunk_at(1_000_000, 1 << 20), 50_000);
        assert_eq!(chunk_at(10, 1 << 20), 4096);
        assert_eq!(chunk_at(1 << 40, 1 << 20), 1 << 20);
    }

    #[test]
    fn limit_spaces_reads_out() {
        // 4 x 50 KB at 1 MB/s: the last may start 0.2 s after the window
        // opened, never earlier.
        let t = Throttle::default();
        let began = Instant::now();
        for _ in 0..4 {
            assert!(t.acquire_at(50_000, || 1_000_000, || false));
        }
        assert!(
            began.elapsed() >= Duration::from_millis(199),
            "{:?}",
            began.elapsed()
        );
    }

    #[test]
    fn paused_throttle_waits_until_stopped() {
        // Rate 0 grants nothing: acquire keeps waiting, checking stop every
        // step, until stop turns true.
        let t = Throttle::default();
        let checks = Cell::new(0);
        let stop = || {
            checks.set(checks.get() + 1);
            checks.get() > 3
        };
        let began = Instant::now();
        assert!(!t.acquire_at(1, || 0, stop));
        assert_eq!(checks.get(), 4);
        assert!(began.elapsed() >= 3 * STEP - Duration::from_millis(1));
    }

    #[test]
    fn new_rate_applies_at_once() {
        // Paused, then unlimited: the next check grants the read.
        let t = Throttle::default();
        let calls = Cell::new(0);
        let rate = || {
            calls.set(calls.get() + 1);
            if calls.get() < 3 {
                0
            } else {
                u64::MAX
            }
        };
        let checks = Cell::new(0);
        let stop = || {
            checks.set(checks.get() + 1);
            checks.get() > 50
        };
        assert!(t.acquire_at(1 << 20, rate, stop));
        assert_eq!(calls.get(), 3);
    }
}
