//! Status variables: how another session watches a running backup.
//!
//! `SHOW GLOBAL STATUS LIKE 'tokudb_backup%'` reads one shared record that the
//! backup thread updates at each poll.

use crate::abi::{ShowFunc, ShowVar, Thd, SHOW_BUFF_SIZE, SHOW_CHAR, SHOW_FUNC, SHOW_UNDEF};
use crate::cstr;
use std::ffi::{c_char, c_int, c_void};
use std::sync::Mutex;
use std::time::Instant;

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
}

pub static PROGRESS: Mutex<Progress> = Mutex::new(Progress {
    state: "idle",
    started: None,
    last_elapsed: 0.0,
    bytes_total: 0,
    bytes_copied: 0,
    destination: String::new(),
    last_result: String::new(),
});

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
    pub fn rate(&self) -> u64 {
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
        (*var).type_ = SHOW_CHAR;
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
