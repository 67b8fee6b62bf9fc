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
        let r = rate();
        if r == u64::MAX {
            return max;
        }
        (r / 20).clamp(4096, max)
    }

    /// Wait until `bytes` more may be read. Returns false if `stop()` became
    /// true while waiting.
    pub fn acquire(&self, bytes: u64, stop: impl Fn() -> bool) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_follows_rate() {
        // RATE is global; this test only reads the pure helper's clamping.
        assert_eq!((1_000_000u64 / 20).clamp(4096, 1 << 20), 50_000);
        assert_eq!((10u64 / 20).clamp(4096, 1 << 20), 4096);
    }

    #[test]
    fn stop_interrupts_a_paused_throttle() {
        let t = Throttle::default();
        {
            let mut w = lock(&t.window);
            w.rate = 0;
        }
        // With the global rate untouched (unlimited) acquire returns at once;
        // with a stop condition already true it returns false first.
        assert!(!t.acquire(1, || true));
    }
}
