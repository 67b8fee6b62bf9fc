//! System variables: the SQL interface users know from Percona's plugin.
//!
//! `SET tokudb_backup_dir='/path'` runs the whole backup inside the variable's
//! check function, like the original: a failed backup fails the statement
//! with ER_WRONG_VALUE_FOR_VAR, and the session keeps the details in
//! tokudb_backup_last_error / tokudb_backup_last_error_string.

use crate::abi::*;
use crate::cstr;
use crate::pending;
use crate::{backup, exclude, library, server};
use std::ffi::{c_char, c_int, c_longlong, c_void, CString};

const SESSION_STR: c_int = PLUGIN_VAR_STR
    | PLUGIN_VAR_THDLOCAL
    | PLUGIN_VAR_MEMALLOC
    | PLUGIN_VAR_NOCMDOPT
    | PLUGIN_VAR_NOCMDARG;

/// A session string variable (the server keeps its value per session).
const fn session_str_var(
    name: *const c_char,
    comment: *const c_char,
    check: Option<CheckFn>,
) -> ThdVarStr {
    ThdVarStr {
        header: header(SESSION_STR, name, comment, check, None),
        offset: 0,
        def_val: std::ptr::null(),
        resolve: None,
    }
}

pub static BACKUP_DIR: ServerShared<ThdVarStr> = ServerShared::new(session_str_var(
    cstr!("dir"),
    cstr!("Setting it runs a hot backup into this directory (absent or empty) and returns when the backup ends"),
    Some(check_backup_dir),
));

pub static LAST_ERROR: ServerShared<ThdVarNum<ULong>> = ServerShared::new(ThdVarNum {
    header: header(
        PLUGIN_VAR_LONG | PLUGIN_VAR_UNSIGNED | PLUGIN_VAR_THDLOCAL | PLUGIN_VAR_NOCMDOPT,
        cstr!("last_error"),
        cstr!("errno of the last backup of this session; 0 is success"),
        None,
        None,
    ),
    offset: 0,
    def_val: 0,
    min_val: 0,
    max_val: ULong::MAX,
    blk_sz: 1,
    resolve: None,
});

/// MariaDB: MEMALLOC, the server frees the value with my_free, so the plugin
/// stores my_strdup copies. MySQL 5.7 and 8.0 keep MEMALLOC values behind a
/// hidden header that only their own update code may write (and 5.7 exports
/// none for plugins), so there the variable is read-only without MEMALLOC
/// and the plugin owns its value (see `owned`).
pub static LAST_ERROR_STRING: ServerShared<ThdVarStr> = ServerShared::new(ThdVarStr {
    header: header(
        LAST_ERROR_STRING_FLAGS,
        cstr!("last_error_string"),
        cstr!("Message of the last backup error of this session (several are joined with '; ')"),
        None,
        None,
    ),
    offset: 0,
    def_val: std::ptr::null(),
    resolve: None,
});

#[cfg(feature = "mariadb")]
const LAST_ERROR_STRING_FLAGS: c_int = SESSION_STR;
#[cfg(not(feature = "mariadb"))]
pub const LAST_ERROR_STRING_FLAGS: c_int = PLUGIN_VAR_STR
    | PLUGIN_VAR_THDLOCAL
    | PLUGIN_VAR_READONLY
    | PLUGIN_VAR_NOCMDOPT
    | PLUGIN_VAR_NOCMDARG;

pub static EXCLUDE: ServerShared<ThdVarStr> = ServerShared::new(session_str_var(
    cstr!("exclude"),
    cstr!("POSIX extended regular expression: source files whose path matches are not copied"),
    Some(check_exclude),
));

pub static THROTTLE: ServerShared<ThdVarNum<ULongLong>> = ServerShared::new(ThdVarNum {
    header: header(
        PLUGIN_VAR_LONGLONG | PLUGIN_VAR_UNSIGNED | PLUGIN_VAR_THDLOCAL | PLUGIN_VAR_NOCMDOPT,
        cstr!("throttle"),
        cstr!("Bytes per second the backup may read; changing it affects a running backup at once"),
        Some(check_throttle),
        Some(update_throttle),
    ),
    offset: 0,
    def_val: u64::MAX,
    min_val: 0,
    max_val: u64::MAX,
    blk_sz: 1,
    resolve: None,
});

/// Storage of the global string variables: the server reads `*value`.
pub static ALLOWED_PREFIX_VALUE: ServerShared<*mut c_char> =
    ServerShared::new(std::ptr::null_mut());
pub static VERSION_VALUE: ServerShared<*mut c_char> = ServerShared::new(std::ptr::null_mut());
pub static PLUGIN_VERSION_VALUE: ServerShared<*mut c_char> =
    ServerShared::new(cstr!(env!("CARGO_PKG_VERSION")) as *mut c_char);

pub static ALLOWED_PREFIX: ServerShared<SysVarStr> = ServerShared::new(SysVarStr {
    header: header(
        PLUGIN_VAR_STR | PLUGIN_VAR_READONLY,
        cstr!("allowed_prefix"),
        cstr!("When set (my.cnf), backup destinations must resolve to a path under this prefix"),
        None,
        None,
    ),
    value: ALLOWED_PREFIX_VALUE.get(),
    def_val: std::ptr::null(),
});

pub static VERSION: ServerShared<SysVarStr> = ServerShared::new(SysVarStr {
    header: header(
        PLUGIN_VAR_STR | PLUGIN_VAR_READONLY | PLUGIN_VAR_NOCMDOPT | PLUGIN_VAR_NOCMDARG,
        cstr!("version"),
        cstr!("Version of the libHotBackup library in use (empty when it is not preloaded)"),
        None,
        None,
    ),
    value: VERSION_VALUE.get(),
    def_val: cstr!(""),
});

pub static PLUGIN_VERSION: ServerShared<SysVarStr> = ServerShared::new(SysVarStr {
    header: header(
        PLUGIN_VAR_STR | PLUGIN_VAR_READONLY | PLUGIN_VAR_NOCMDOPT | PLUGIN_VAR_NOCMDARG,
        cstr!("plugin_version"),
        cstr!("Version of the tokudb_backup plugin"),
        None,
        None,
    ),
    value: PLUGIN_VERSION_VALUE.get(),
    def_val: cstr!(env!("CARGO_PKG_VERSION")),
});

pub static SYSTEM_VARS: ServerShared<[*mut SysVar; 9]> = ServerShared::new([
    BACKUP_DIR.get() as *mut SysVar,
    LAST_ERROR.get() as *mut SysVar,
    LAST_ERROR_STRING.get() as *mut SysVar,
    EXCLUDE.get() as *mut SysVar,
    THROTTLE.get() as *mut SysVar,
    ALLOWED_PREFIX.get() as *mut SysVar,
    VERSION.get() as *mut SysVar,
    PLUGIN_VERSION.get() as *mut SysVar,
    std::ptr::null_mut(),
]);

/// Called from the plugin's init: publishes the library version.
pub fn publish_versions() {
    let v = match library::load() {
        Ok(lib) => lib.version.to_string(),
        Err(_) => String::new(),
    };
    // Leaked once per plugin load: the server reads it until uninstall.
    let p = CString::new(v).unwrap_or_default().into_raw();
    // SAFETY: init runs before any session can read the variable; the
    // pointer stays valid (leaked) for as long as the server may read it.
    unsafe { *VERSION_VALUE.get() = p };
}

/// The global allowed_prefix, if set.
fn allowed_prefix() -> Option<String> {
    // SAFETY: read-only after startup; the server owns the string it stored.
    let p = unsafe { *ALLOWED_PREFIX_VALUE.get() };
    // SAFETY: null or the server's NUL-terminated option value.
    unsafe { server::c_to_string(p) }.filter(|s| !s.is_empty())
}

/// Reads this session's value of a string variable.
fn session_str(thd: Thd, var: &ServerShared<ThdVarStr>) -> Option<String> {
    // SAFETY: the server filled offset/resolve at load; resolve returns the
    // address of this session's `char *`, valid during the statement.
    unsafe {
        let v = &*var.get();
        let resolve = v.resolve?;
        server::c_to_string(*resolve(thd, v.offset))
    }
}

/// The backup's options: this session's values, or the ones checked
/// earlier in the statement that runs it (see `pending`).
fn backup_options(thd: Thd) -> backup::Options {
    let pending = pending::get(thd);
    // SAFETY: as in session_str, for a u64 session variable.
    let throttle = pending.throttle.unwrap_or_else(|| unsafe {
        let v = &*THROTTLE.get();
        match v.resolve {
            Some(r) => *r(thd, v.offset),
            None => u64::MAX,
        }
    });
    let exclude = pending
        .exclude
        .unwrap_or_else(|| session_str(thd, &EXCLUDE));
    backup::Options {
        exclude: exclude.filter(|s| !s.is_empty()),
        throttle,
        allowed_prefix: allowed_prefix(),
    }
}

/// Records the outcome of a backup in the session's error variables.
fn set_last_error(thd: Thd, errno: i32, message: &str) {
    // SAFETY: resolve gives this session's storage (see session_str).
    unsafe {
        let le = &*LAST_ERROR.get();
        if let Some(r) = le.resolve {
            *r(thd, le.offset) = errno.max(0) as ULong;
        }
        let ls = &*LAST_ERROR_STRING.get();
        if let Some(r) = ls.resolve {
            store_message(thd, r(thd, ls.offset), message);
        }
    }
}

/// Replaces the session's last_error_string with `message`.
///
/// # Safety
/// `slot` is `thd`'s storage of the variable, from its resolve function.
#[cfg(feature = "mariadb")]
unsafe fn store_message(_thd: Thd, slot: *mut *mut c_char, message: &str) {
    let srv = server::get();
    let (Some(strdup), Some(free)) = (srv.my_strdup, srv.my_free) else {
        return;
    };
    // SAFETY: MEMALLOC on MariaDB: the server frees the value with my_free,
    // so it is allocated with the server's my_strdup (plugin_init checked
    // both exist); slot is valid per the caller.
    unsafe {
        let old = *slot;
        *slot = if message.is_empty() {
            std::ptr::null_mut()
        } else {
            let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
            strdup(0, c.as_ptr(), 0)
        };
        if !old.is_null() {
            free(old as *mut c_void);
        }
    }
}

/// Replaces the session's last_error_string with `message`.
///
/// # Safety
/// `slot` is `thd`'s storage of the variable, from its resolve function.
#[cfg(not(feature = "mariadb"))]
unsafe fn store_message(thd: Thd, slot: *mut *mut c_char, message: &str) {
    let c =
        (!message.is_empty()).then(|| CString::new(message.replace('\0', " ")).unwrap_or_default());
    let p = c
        .as_ref()
        .map_or(std::ptr::null_mut(), |c| c.as_ptr() as *mut c_char);
    // SAFETY: slot is valid per the caller; the variable is not MEMALLOC,
    // so the server never frees nor copies what it points to, and `owned`
    // keeps the string alive after the slot stops naming it.
    unsafe { *slot = p };
    owned::keep(thd, c);
}

/// The strings the plugin stored in MySQL sessions' last_error_string,
/// by session. The previous value is kept too, so that a reader of another
/// session's variables (performance_schema.variables_by_thread) that took
/// the old pointer just before the swap still reads a live string; one
/// entry stays per THD address that ever ran a backup (a new session at the
/// same address replaces it).
#[cfg(not(feature = "mariadb"))]
mod owned {
    use super::Thd;
    use std::collections::HashMap;
    use std::ffi::CString;
    use std::sync::Mutex;

    type Kept = [Option<CString>; 2];
    static KEPT: Mutex<Option<HashMap<usize, Kept>>> = Mutex::new(None);

    pub fn keep(thd: Thd, current: Option<CString>) {
        let mut g = KEPT.lock().unwrap_or_else(|p| p.into_inner());
        let slot = g
            .get_or_insert_with(HashMap::new)
            .entry(thd as usize)
            .or_default();
        slot[1] = slot[0].take();
        slot[0] = current;
    }
}

/// Reads a SET value as a string.
///
/// # Safety
/// `value` is the server's st_mysql_value for the running statement.
unsafe fn value_string(value: *mut MysqlValue) -> Option<String> {
    let mut buf = [0 as c_char; 1024];
    let mut len = buf.len() as c_int;
    // SAFETY: val_str fills buf or returns its own string of `len` bytes.
    unsafe {
        let f = (*value).val_str?;
        let p = f(value, buf.as_mut_ptr(), &mut len);
        if p.is_null() {
            return None;
        }
        let bytes = std::slice::from_raw_parts(p as *const u8, len.max(0) as usize);
        Some(String::from_utf8_lossy(bytes).into_owned())
    }
}

/// Stores `s` where the server's update reads the checked value: a copy in
/// the statement's memory, which lives until the statement ends, whatever
/// else it sets (every check runs before any update). Err when the server
/// cannot allocate it.
///
/// # Safety
/// `save` is the check function's save area (room for a pointer).
unsafe fn save_string(thd: Thd, save: *mut c_void, s: Option<&str>) -> Result<(), &'static str> {
    let ptr = match s {
        Some(s) => {
            let c = CString::new(s.replace('\0', " ")).unwrap_or_default();
            server::get()
                .statement_copy(thd, &c)
                .ok_or("the server cannot allocate the new value (thd_strmake)")?
        }
        None => std::ptr::null(),
    };
    // SAFETY: guaranteed by the caller.
    unsafe { *(save as *mut *const c_char) = ptr };
    Ok(())
}

unsafe extern "C" fn check_backup_dir(
    thd: Thd,
    _var: *mut SysVar,
    save: *mut c_void,
    value: *mut MysqlValue,
) -> c_int {
    let r = std::panic::catch_unwind(|| {
        // SAFETY: value comes from the server for this statement.
        let dest = unsafe { value_string(value) };
        // SAFETY: save is this check's save area.
        if let Err(why) = unsafe { save_string(thd, save, dest.as_deref()) } {
            server::log_line("ERROR", why);
            set_last_error(thd, libc::ENOMEM, why);
            server::get().fail_statement(thd, why);
            return 1;
        }
        let options = backup_options(thd);
        pending::used(thd);
        let outcome = backup::run(thd, dest.as_deref(), &options);
        match outcome {
            Ok(()) => {
                set_last_error(thd, 0, "");
                0
            }
            Err(f) => {
                set_last_error(thd, f.errno, &f.message);
                1
            }
        }
    });
    r.unwrap_or_else(|_| {
        server::log_line("ERROR", "internal error (panic) while running a backup");
        set_last_error(
            thd,
            libc::EINVAL,
            "internal error in tokudb_backup; see the error log",
        );
        1
    })
}

unsafe extern "C" fn check_exclude(
    thd: Thd,
    _var: *mut SysVar,
    save: *mut c_void,
    value: *mut MysqlValue,
) -> c_int {
    let r = std::panic::catch_unwind(|| {
        // SAFETY: value comes from the server for this statement.
        let pattern = unsafe { value_string(value) };
        if let Some(p) = pattern.as_deref().filter(|p| !p.is_empty()) {
            if let Err(e) = exclude::Exclude::new(p) {
                let msg = format!("tokudb_backup_exclude: invalid regular expression '{p}': {e}");
                server::get().fail_statement(thd, &msg);
                return 1;
            }
        }
        // SAFETY: save is this check's save area.
        if let Err(why) = unsafe { save_string(thd, save, pattern.as_deref()) } {
            server::get().fail_statement(thd, &format!("tokudb_backup_exclude: {why}"));
            return 1;
        }
        pending::set(thd, |p| p.exclude = Some(pattern));
        0
    });
    r.unwrap_or(1)
}

/// The server's own check of an unsigned number (negative values become 0,
/// with a warning), remembering the value for a backup later in the SET.
unsafe extern "C" fn check_throttle(
    thd: Thd,
    _var: *mut SysVar,
    save: *mut c_void,
    value: *mut MysqlValue,
) -> c_int {
    let r = std::panic::catch_unwind(|| {
        let mut v: c_longlong = 0;
        // SAFETY: value is the server's st_mysql_value for this statement;
        // val_int writes the number (0 = not NULL), is_unsigned only reads.
        let (ok, unsigned) = unsafe {
            match ((*value).val_int, (*value).is_unsigned) {
                (Some(val_int), Some(is_unsigned)) => {
                    (val_int(value, &mut v) == 0, is_unsigned(value) != 0)
                }
                _ => (false, false),
            }
        };
        if !ok {
            return 1;
        }
        let n = if !unsigned && v < 0 {
            server::get().warn(
                thd,
                &format!("Truncated incorrect tokudb_backup_throttle value: '{v}'"),
            );
            0
        } else {
            v as u64
        };
        // SAFETY: for an unsigned long long variable the save area holds a
        // u64 (plugin.h contract).
        unsafe { *(save as *mut u64) = n };
        pending::set(thd, |p| p.throttle = Some(n));
        0
    });
    r.unwrap_or(1)
}

unsafe extern "C" fn update_throttle(
    _thd: Thd,
    _var: *mut SysVar,
    var_ptr: *mut c_void,
    save: *const c_void,
) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: for an unsigned long long variable the save area and the
        // variable both hold a u64 (plugin.h contract).
        let v = unsafe {
            let v = *(save as *const u64);
            *(var_ptr as *mut u64) = v;
            v
        };
        // Any session may retune the running backup, as with Percona's plugin.
        library::throttle(v);
    });
}

#[cfg(all(test, not(feature = "mariadb")))]
mod mysql_tests {
    use super::*;
    use crate::abi::mysql_layout_tests::{numbers, RELEASES};

    /// Every variable's flags are ones the server knows (PLUGIN_VAR_MASK
    /// differs between Oracle and Percona).
    #[test]
    fn variable_flags_are_inside_every_release_mask() {
        let vars = SYSTEM_VARS.get();
        for release in RELEASES {
            let n = numbers(release);
            let known =
                n["PLUGIN_VAR_MASK"] | 0x7f | n["PLUGIN_VAR_UNSIGNED"] | n["PLUGIN_VAR_THDLOCAL"];
            // SAFETY: the table is a static of null-terminated pointers to
            // variables that start with a SysVarHeader.
            for v in unsafe { &*vars }.iter().take_while(|v| !v.is_null()) {
                // SAFETY: as above: every entry starts with a SysVarHeader.
                let flags = unsafe { (*(*v as *const SysVarHeader)).flags };
                assert_eq!(i64::from(flags) & !known, 0, "{release}: flags 0x{flags:x}");
            }
        }
    }
}
