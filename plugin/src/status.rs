//! Status variables: how another session watches a running backup.
//!
//! `SHOW GLOBAL STATUS LIKE 'tokudb_backup%'` reads one shared record that the
//! backup thread updates at each poll.

use crate::abi::{
    ShowFunc, ShowVar, Thd, PERCONA57_EXTRA, SHOW_BUFF_SIZE, SHOW_CHAR, SHOW_FUNC, SHOW_UNDEF,
};
use crate::cstr;
use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicI32, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Tokudb_backup_rate is the rate over about this long: short enough to
/// follow a throttle change within seconds, long enough to smooth the
/// copy's bursts.
const RATE_WINDOW: Duration = Duration::from_secs(2);
/// One sample of bytes_copied at most this often...
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// ...kept in a ring that spans more than RATE_WINDOW.
const SAMPLES: usize = 32;

/// `SHOW_CHAR` of the running server, written by [`adapt_to_server`].
static SHOW_CHAR_NOW: AtomicI32 = AtomicI32::new(SHOW_CHAR);

/// Percona Server 5.7's `enum_mysql_show_type` has three entries of its own
/// before SHOW_FUNC (SHOW_CHAR = 8, SHOW_FUNC = 11 there), MySQL 5.7's has
/// not; the numbers are otherwise the same. Runs in the library constructor,
/// before the server reads the table.
pub fn adapt_to_server(version: &str) {
    if cfg!(feature = "mysql57") && crate::abi::is_percona(version) {
        SHOW_CHAR_NOW.store(SHOW_CHAR + PERCONA57_EXTRA, Relaxed);
        // SAFETY: runs inside dlopen(), before the server can read the
        // table (see lib.rs); nothing else touches it then.
        let vars = unsafe { &mut *STATUS_VARS.get() };
        for v in vars.iter_mut().filter(|v| v.type_ == SHOW_FUNC) {
            v.type_ = SHOW_FUNC + PERCONA57_EXTRA;
        }
    }
}

/// What the status variables show.
pub struct Progress {
    pub state: &'static str,
    pub started: Option<Instant>,
    /// Elapsed seconds of the last finished backup, shown while idle.
    pub last_elapsed: f64,
    pub bytes_total: u64,
    pub bytes_copied: u64,
    pub destination: String,
    pub last_result: String,
    /// (when, bytes_copied) at recent polls, a ring; older backups' samples
    /// are told apart by `started`.
    samples: [Option<(Instant, u64)>; SAMPLES],
    next_sample: usize,
}

const IDLE: Progress = Progress {
    state: "idle",
    started: None,
    last_elapsed: 0.0,
    bytes_total: 0,
    bytes_copied: 0,
    destination: String::new(),
    last_result: String::new(),
    samples: [None; SAMPLES],
    next_sample: 0,
};

pub static PROGRESS: Mutex<Progress> = Mutex::new(IDLE);

pub fn with<R>(f: impl FnOnce(&mut Progress) -> R) -> R {
    // A panic while holding the lock cannot leave the record inconsistent in a
    // harmful way: keep serving it.
    let mut g = PROGRESS.lock().unwrap_or_else(|p| p.into_inner());
    f(&mut g)
}

impl Progress {
    pub fn elapsed(&self) -> f64 {
        match self.started {
            Some(t) => t.elapsed().as_secs_f64(),
            None => self.last_elapsed,
        }
    }
    /// Records the bytes copied so far (at each poll of the library).
    pub fn copied(&mut self, bytes: u64) {
        self.bytes_copied = bytes;
        let now = Instant::now();
        let last = self.samples[(self.next_sample + SAMPLES - 1) % SAMPLES];
        if last.is_none_or(|(t, _)| now.duration_since(t) >= SAMPLE_EVERY) {
            self.samples[self.next_sample] = Some((now, bytes));
            self.next_sample = (self.next_sample + 1) % SAMPLES;
        }
    }

    /// Bytes per second over about the last RATE_WINDOW of the running
    /// backup (since its start during the first one); 0 while idle.
    pub fn rate(&self) -> u64 {
        self.rate_at(Instant::now())
    }

    fn rate_at(&self, now: Instant) -> u64 {
        let Some(started) = self.started else {
            return 0;
        };
        let window_start = now.checked_sub(RATE_WINDOW).unwrap_or(started);
        // The newest sample at least a window old; the start if none is.
        let (t0, b0) = self
            .samples
            .iter()
            .flatten()
            .filter(|(t, _)| *t >= started && *t <= window_start)
            .max_by_key(|(t, _)| *t)
            .copied()
            .unwrap_or((started, 0));
        let secs = now.duration_since(t0).as_secs_f64();
        if secs > 0.0 {
            (self.bytes_copied.saturating_sub(b0) as f64 / secs) as u64
        } else {
            0
        }
    }

    /// Bytes per second over the whole last (or running) backup.
    pub fn average_rate(&self) -> u64 {
        let e = self.elapsed();
        if e > 0.0 {
            (self.bytes_copied as f64 / e) as u64
        } else {
            0
        }
    }
}

fn value_of(name: &str) -> String {
    with(|p| match name {
        "state" => p.state.to_string(),
        "bytes_copied" => p.bytes_copied.to_string(),
        "bytes_total" => p.bytes_total.to_string(),
        "rate" => p.rate().to_string(),
        "elapsed_seconds" => format!("{:.1}", p.elapsed()),
        "destination" => p.destination.clone(),
        "last_result" => p.last_result.clone(),
        _ => String::new(),
    })
}

/// Writes `name`'s value as a SHOW_CHAR into the server's buffer.
///
/// # Safety
/// `var` points at the server's show var and `buff` at SHOW_BUFF_SIZE bytes.
unsafe fn show(name: &str, var: *mut ShowVar, buff: *mut c_char) -> c_int {
    let r = std::panic::catch_unwind(|| value_of(name));
    let text = r.unwrap_or_default();
    let bytes = text.as_bytes();
    let n = bytes.len().min(SHOW_BUFF_SIZE - 1);
    // SAFETY: buff holds SHOW_BUFF_SIZE bytes (server contract); n + 1 fits.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), buff as *mut u8, n);
        *buff.add(n) = 0;
        (*var).type_ = SHOW_CHAR_NOW.load(Relaxed);
        (*var).value = buff as *mut c_void;
    }
    0
}

macro_rules! show_fn {
    ($fname:ident, $key:expr) => {
        #[cfg(feature = "mariadb")]
        unsafe extern "C" fn $fname(
            _thd: Thd,
            var: *mut ShowVar,
            buff: *mut c_void,
            _status: *mut c_void,
            _scope: c_int,
        ) -> c_int {
            // SAFETY: called by the server with its show var and buffer.
            unsafe { show($key, var, buff as *mut c_char) }
        }
        #[cfg(not(feature = "mariadb"))]
        unsafe extern "C" fn $fname(_thd: Thd, var: *mut ShowVar, buff: *mut c_char) -> c_int {
            // SAFETY: called by the server with its show var and buffer.
            unsafe { show($key, var, buff) }
        }
    };
}

show_fn!(show_state, "state");
show_fn!(show_bytes_copied, "bytes_copied");
show_fn!(show_bytes_total, "bytes_total");
show_fn!(show_rate, "rate");
show_fn!(show_elapsed, "elapsed_seconds");
show_fn!(show_destination, "destination");
show_fn!(show_last_result, "last_result");

const fn entry(name: *const c_char, f: ShowFunc) -> ShowVar {
    ShowVar {
        name,
        value: f as *mut c_void,
        type_: SHOW_FUNC,
        #[cfg(not(feature = "mariadb"))]
        scope: 1, // SHOW_SCOPE_GLOBAL
    }
}

/// The status variable table the plugin declaration points at.
pub static STATUS_VARS: crate::abi::ServerShared<[ShowVar; 8]> = crate::abi::ServerShared::new([
    entry(cstr!("Tokudb_backup_state"), show_state),
    entry(cstr!("Tokudb_backup_bytes_copied"), show_bytes_copied),
    entry(cstr!("Tokudb_backup_bytes_total"), show_bytes_total),
    entry(cstr!("Tokudb_backup_rate"), show_rate),
    entry(cstr!("Tokudb_backup_elapsed_seconds"), show_elapsed),
    entry(cstr!("Tokudb_backup_destination"), show_destination),
    entry(cstr!("Tokudb_backup_last_result"), show_last_result),
    ShowVar {
        name: std::ptr::null(),
        value: std::ptr::null_mut(),
        type_: SHOW_UNDEF,
        #[cfg(not(feature = "mariadb"))]
        scope: 0,
    },
]);

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples at chosen instants: 10 MB/s for 5 s, then 1 MB/s.
    #[test]
    fn rate_follows_the_last_seconds_not_the_average() {
        let t0 = Instant::now();
        let mut p = IDLE;
        p.started = Some(t0);
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut bytes = 0;
        for i in 1..=100u64 {
            let (ms, per_tick) = if i <= 50 {
                (i * 100, 1_000_000)
            } else {
                (i * 100, 100_000)
            };
            bytes += per_tick;
            p.bytes_copied = bytes;
            p.samples[p.next_sample] = Some((at(ms), bytes));
            p.next_sample = (p.next_sample + 1) % SAMPLES;
        }
        let rate = p.rate_at(at(10_000));
        assert!((900_000..=1_100_000).contains(&rate), "rate {rate}");
        // In the first window: the average since the start.
        let mut q = IDLE;
        q.started = Some(t0);
        q.bytes_copied = 3_000_000;
        assert_eq!(q.rate_at(at(1_000)), 3_000_000);
        // A stalled copy's rate falls; an idle plugin shows none.
        assert!(p.rate_at(at(20_000)) < 200_000);
        p.started = None;
        assert_eq!(p.rate_at(at(10_000)), 0);
    }
}
