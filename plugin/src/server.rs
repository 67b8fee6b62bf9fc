//! Functions of the running server, found by name at run time.
//!
//! The plugin links against nothing of the server: every function is looked up
//! with `dlsym(RTLD_DEFAULT)` in the process (mariadbd and mysqld export them),
//! under each name it has in the releases this build supports ([`names`]:
//! MySQL 8.0's mysys and some of its sql layer are C++, so their names are
//! mangled, and a signature change renames a function). The functions a
//! backup cannot do without are checked when the plugin is installed
//! ([`missing`]); the others degrade one feature when absent.

use crate::abi::Thd;
use crate::cstr;
use std::ffi::{c_char, c_int, c_uint, c_ulong, c_ulonglong, c_void, CStr, CString};
use std::io::Write;
use std::sync::OnceLock;

type SetProcInfo =
    unsafe extern "C" fn(Thd, *const c_char, *const c_char, *const c_char, c_uint) -> *const c_char;
type ProgressInit = unsafe extern "C" fn(Thd, c_uint);
type ProgressReport = unsafe extern "C" fn(Thd, c_ulonglong, c_ulonglong);
type ProgressEnd = unsafe extern "C" fn(Thd);
type ThdKilled = unsafe extern "C" fn(Thd) -> c_int;
/// `myf`: ulong in MariaDB, int in MySQL 5.7 and 8.0.
#[cfg(feature = "mariadb")]
type Myf = c_ulong;
#[cfg(not(feature = "mariadb"))]
type Myf = c_int;
type MyError = unsafe extern "C" fn(c_int, Myf, ...);
type MyPrintfError = unsafe extern "C" fn(c_uint, *const c_char, Myf, ...);
#[cfg(feature = "mariadb")]
type MyStrdup = unsafe extern "C" fn(c_uint, *const c_char, Myf) -> *mut c_char;
#[cfg(feature = "mariadb")]
type MyFree = unsafe extern "C" fn(*mut c_void);
type ThdStrmake = unsafe extern "C" fn(Thd, *const c_char, usize) -> *mut c_char;
type ThdQueryId = unsafe extern "C" fn(Thd) -> c_ulonglong;
type ThdQuerySafe = unsafe extern "C" fn(Thd, *mut c_char, usize) -> usize;

/// `check_global_access` under each of its signatures; true = denied.
#[derive(Clone, Copy)]
enum GlobalAccess {
    /// MariaDB: `(THD*, privilege_t, bool no_errors)`.
    #[cfg(feature = "mariadb")]
    NoErrors(unsafe extern "C" fn(Thd, u64, bool) -> bool),
    /// MySQL 5.7, 8.0 up to 8.0.3x: `(THD*, ulong)`; raises the error itself.
    #[cfg(not(feature = "mariadb"))]
    Ulong(unsafe extern "C" fn(Thd, c_ulong) -> bool),
    /// MySQL 8.0 with `Access_bitmask` (uint32_t): `(THD*, unsigned)`.
    #[cfg(not(feature = "mariadb"))]
    Bitmask(unsafe extern "C" fn(Thd, u32) -> bool),
}

/// The names a server function has, in every release the build supports.
pub mod names {
    pub const KILLED: &[&str] = &["thd_killed"];
    pub const SET_PROC_INFO: &[&str] = &["set_thd_proc_info"];
    #[cfg(feature = "mariadb")]
    pub const CHECK_GLOBAL_ACCESS: &[&str] = &["_Z19check_global_accessP3THD11privilege_tb"];
    #[cfg(not(feature = "mariadb"))]
    pub const CHECK_GLOBAL_ACCESS: &[&str] = &["_Z19check_global_accessP3THDm"];
    /// 8.0.39 and later (Access_bitmask).
    #[cfg(not(feature = "mariadb"))]
    pub const CHECK_GLOBAL_ACCESS_BITMASK: &[&str] = &["_Z19check_global_accessP3THDj"];
    #[cfg(not(feature = "mysql80"))]
    pub const MY_ERROR: &[&str] = &["my_error"];
    #[cfg(feature = "mysql80")]
    pub const MY_ERROR: &[&str] = &["_Z8my_erroriiz", "my_error"];
    #[cfg(not(feature = "mysql80"))]
    pub const MY_PRINTF_ERROR: &[&str] = &["my_printf_error"];
    #[cfg(feature = "mysql80")]
    pub const MY_PRINTF_ERROR: &[&str] = &["_Z15my_printf_errorjPKciz", "my_printf_error"];
    /// Only MariaDB's build allocates server memory (sysvars::store_message).
    #[cfg(feature = "mariadb")]
    pub const MY_STRDUP: &[&str] = &["my_strdup"];
    #[cfg(feature = "mariadb")]
    pub const MY_FREE: &[&str] = &["my_free"];
    /// C in service_thd_alloc.h of 5.7 and MariaDB; 8.0's header may leave
    /// it C++.
    pub const THD_STRMAKE: &[&str] = &["thd_strmake", "_Z11thd_strmakeP3THDPKcm"];
    pub const THD_QUERY_ID: &[&str] = &["thd_query_id"];
    /// C in 5.7 (sql_class.h); 8.0 declares it outside `extern "C"`
    /// (ha_innodb.h), so both names are tried.
    pub const THD_QUERY_SAFE: &[&str] = &["thd_query_safe", "_Z14thd_query_safeP3THDPcm"];
}

/// Server functions; each is None when this server does not export it.
pub struct Server {
    set_proc_info: Option<SetProcInfo>,
    progress_init: Option<ProgressInit>,
    progress_report: Option<ProgressReport>,
    progress_end: Option<ProgressEnd>,
    killed: Option<ThdKilled>,
    check_global_access: Option<GlobalAccess>,
    my_error: Option<MyError>,
    my_printf_error: Option<MyPrintfError>,
    #[cfg(feature = "mariadb")]
    pub my_strdup: Option<MyStrdup>,
    #[cfg(feature = "mariadb")]
    pub my_free: Option<MyFree>,
    thd_strmake: Option<ThdStrmake>,
    thd_query_id: Option<ThdQueryId>,
    thd_query_safe: Option<ThdQuerySafe>,
    /// `sql_service_handler` (struct sql_service_st) of MariaDB >= 10.7.
    #[cfg(feature = "mariadb")]
    pub sql_service: *const c_void,
}

// SAFETY: the struct holds only function pointers and the address of a static
// table of the server; both are valid for the life of the process and calling
// them from any thread is what the server API allows.
unsafe impl Send for Server {}
// SAFETY: see Send; nothing in it is mutated after construction.
unsafe impl Sync for Server {}

/// `SUPER_ACL` (bit 15) in MariaDB's privilege_t and MySQL's masks.
const SUPER_ACL: u64 = 1 << 15;
/// `ER_SPECIFIC_ACCESS_DENIED_ERROR`.
const ER_SPECIFIC_ACCESS_DENIED_ERROR: c_int = 1227;

pub use crate::symbols::{lookup, lookup_any};

macro_rules! func {
    ($names:expr, $ty:ty) => {{
        let p = lookup_any($names);
        if p.is_null() {
            None
        } else {
            // SAFETY: the symbol is the server's exported function of that
            // name, whose signature (as the name says, for a mangled one) is
            // $ty (see include/mysql/*.h of the server).
            Some(unsafe { std::mem::transmute::<*mut c_void, $ty>(p) })
        }
    }};
}

#[cfg(feature = "mariadb")]
fn global_access() -> Option<GlobalAccess> {
    func!(
        names::CHECK_GLOBAL_ACCESS,
        unsafe extern "C" fn(Thd, u64, bool) -> bool
    )
    .map(GlobalAccess::NoErrors)
}

#[cfg(not(feature = "mariadb"))]
fn global_access() -> Option<GlobalAccess> {
    func!(
        names::CHECK_GLOBAL_ACCESS,
        unsafe extern "C" fn(Thd, c_ulong) -> bool
    )
    .map(GlobalAccess::Ulong)
    .or_else(|| {
        func!(
            names::CHECK_GLOBAL_ACCESS_BITMASK,
            unsafe extern "C" fn(Thd, u32) -> bool
        )
        .map(GlobalAccess::Bitmask)
    })
}

pub fn get() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| Server {
        set_proc_info: func!(names::SET_PROC_INFO, SetProcInfo),
        progress_init: func!(&["thd_progress_init"], ProgressInit),
        progress_report: func!(&["thd_progress_report"], ProgressReport),
        progress_end: func!(&["thd_progress_end"], ProgressEnd),
        killed: func!(names::KILLED, ThdKilled),
        check_global_access: global_access(),
        my_error: func!(names::MY_ERROR, MyError),
        my_printf_error: func!(names::MY_PRINTF_ERROR, MyPrintfError),
        #[cfg(feature = "mariadb")]
        my_strdup: func!(names::MY_STRDUP, MyStrdup),
        #[cfg(feature = "mariadb")]
        my_free: func!(names::MY_FREE, MyFree),
        thd_strmake: func!(names::THD_STRMAKE, ThdStrmake),
        thd_query_id: func!(names::THD_QUERY_ID, ThdQueryId),
        thd_query_safe: func!(names::THD_QUERY_SAFE, ThdQuerySafe),
        #[cfg(feature = "mariadb")]
        sql_service: lookup("sql_service_handler"),
    })
}

/// The functions a backup needs that this server does not export, each
/// with the names tried: the plugin refuses to install without them.
pub fn missing() -> Vec<String> {
    let s = get();
    let mut need: Vec<(bool, &str, Vec<&str>)> = vec![
        (s.killed.is_some(), "thd_killed", names::KILLED.to_vec()),
        (s.my_error.is_some(), "my_error", names::MY_ERROR.to_vec()),
        (
            s.my_printf_error.is_some(),
            "my_printf_error",
            names::MY_PRINTF_ERROR.to_vec(),
        ),
        (
            s.thd_strmake.is_some(),
            "thd_strmake",
            names::THD_STRMAKE.to_vec(),
        ),
    ];
    #[cfg(feature = "mariadb")]
    let cga = names::CHECK_GLOBAL_ACCESS.to_vec();
    #[cfg(not(feature = "mariadb"))]
    let cga = [
        names::CHECK_GLOBAL_ACCESS,
        names::CHECK_GLOBAL_ACCESS_BITMASK,
    ]
    .concat();
    need.push((s.check_global_access.is_some(), "check_global_access", cga));
    #[cfg(feature = "mariadb")]
    need.extend([
        (
            s.my_strdup.is_some(),
            "my_strdup",
            names::MY_STRDUP.to_vec(),
        ),
        (s.my_free.is_some(), "my_free", names::MY_FREE.to_vec()),
    ]);
    need.into_iter()
        .filter(|(found, ..)| !found)
        .map(|(_, what, tried)| format!("{what} (tried {})", tried.join(", ")))
        .collect()
}

/// Identity of a statement (see [`Server::statement`]).
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Statement {
    QueryId(u64),
    Text(Vec<u8>),
}

/// Why a session may not run a backup.
pub struct Denied {
    pub message: &'static str,
    /// The server already raised its access-denied error for the statement.
    pub raised: bool,
}

impl Server {
    /// Sets the processlist State of `thd`; `info` must stay valid until replaced.
    pub fn set_proc_info(&self, thd: Thd, info: *const c_char) {
        if let Some(f) = self.set_proc_info {
            // SAFETY: thd is the caller's live THD; info is NUL-terminated and
            // outlives its use as State (the caller keeps it until it is reset).
            unsafe { f(thd, info, cstr!("tokudb_backup"), cstr!("backup.rs"), 0) };
        }
    }

    pub fn progress_init(&self, thd: Thd) {
        if let Some(f) = self.progress_init {
            // SAFETY: thd is the live THD running the statement.
            unsafe { f(thd, 1) };
        }
    }

    pub fn progress_report(&self, thd: Thd, done: u64, total: u64) {
        if let Some(f) = self.progress_report {
            // SAFETY: thd is the live THD running the statement.
            unsafe { f(thd, done, total) };
        }
    }

    pub fn progress_end(&self, thd: Thd) {
        if let Some(f) = self.progress_end {
            // SAFETY: thd is the live THD running the statement.
            unsafe { f(thd) };
        }
    }

    /// True when the statement was killed (KILL QUERY / KILL / shutdown).
    pub fn killed(&self, thd: Thd) -> bool {
        match self.killed {
            // SAFETY: thd is the live THD running the statement.
            Some(f) => unsafe { f(thd) != 0 },
            None => false,
        }
    }

    /// Ok when the session's user may run a backup: SUPER, or on MySQL 8.0
    /// the dynamic privilege BACKUP_ADMIN. Fails closed when the server
    /// offers no way to ask.
    pub fn authorize(&self, thd: Thd) -> Result<(), Denied> {
        #[cfg(feature = "mysql80")]
        if crate::grants::has_global_grant(thd, "BACKUP_ADMIN") {
            return Ok(());
        }
        #[cfg(not(feature = "mysql80"))]
        const DENIED: &str =
            "access denied: setting tokudb_backup_dir requires the SUPER privilege";
        #[cfg(feature = "mysql80")]
        const DENIED: &str =
            "access denied: setting tokudb_backup_dir requires the BACKUP_ADMIN or SUPER privilege";
        // SAFETY: thd is the live THD of the statement; the signature is the
        // one the symbol's (mangled) name states.
        let denied = unsafe {
            match self.check_global_access {
                #[cfg(feature = "mariadb")]
                // no_errors=true: the server only answers.
                Some(GlobalAccess::NoErrors(f)) => f(thd, SUPER_ACL, true).then_some(false),
                // MySQL raises ER_SPECIFIC_ACCESS_DENIED_ERROR itself.
                #[cfg(not(feature = "mariadb"))]
                Some(GlobalAccess::Ulong(f)) => f(thd, SUPER_ACL as c_ulong).then_some(true),
                #[cfg(not(feature = "mariadb"))]
                Some(GlobalAccess::Bitmask(f)) => f(thd, SUPER_ACL as u32).then_some(true),
                None => return Err(Denied {
                    message:
                        "cannot check privileges: this server does not export check_global_access",
                    raised: false,
                }),
            }
        };
        match denied {
            None => Ok(()),
            Some(raised) => Err(Denied {
                message: DENIED,
                raised,
            }),
        }
    }

    /// A copy of `s` that the server frees when `thd`'s statement ends
    /// (service_thd_alloc.h); None when the server cannot make one.
    pub fn statement_copy(&self, thd: Thd, s: &CStr) -> Option<*const c_char> {
        let f = self.thd_strmake?;
        let len = s.to_bytes().len();
        // SAFETY: thd is the live THD of the running statement; thd_strmake
        // copies `len` bytes of `s` into the statement's memory and adds a NUL.
        let p = unsafe { f(thd, s.as_ptr(), len) };
        (!p.is_null()).then_some(p as *const c_char)
    }

    /// What tells the statement `thd` runs from the ones before it:
    /// MariaDB's query id (a new one for every statement), else (MySQL,
    /// which exports none) its text, the same for a statement repeated
    /// word for word.
    pub fn statement(&self, thd: Thd) -> Option<Statement> {
        if let Some(f) = self.thd_query_id {
            // SAFETY: thd is the live THD of the running statement.
            return Some(Statement::QueryId(unsafe { f(thd) }));
        }
        let f = self.thd_query_safe?;
        let mut buf = vec![0u8; 4096];
        // SAFETY: thd_query_safe copies at most len - 1 bytes of the
        // statement's text into buf (under the THD's query lock), adds a
        // NUL and returns the number copied.
        let n = unsafe { f(thd, buf.as_mut_ptr() as *mut c_char, buf.len()) };
        buf.truncate(n.min(buf.len()));
        Some(Statement::Text(buf))
    }

    /// Raises "Access denied; you need the SUPER privilege" on the statement.
    pub fn raise_access_denied(&self, _thd: Thd) {
        if let Some(f) = self.my_error {
            // SAFETY: my_error(ER_SPECIFIC_ACCESS_DENIED_ERROR, MYF(0), "SUPER")
            // matches that message's single %s argument.
            unsafe { f(ER_SPECIFIC_ACCESS_DENIED_ERROR, 0, cstr!("SUPER")) };
        }
    }
}

/// `ER_UNKNOWN_ERROR`: the generic code for a message of our own.
const ER_UNKNOWN_ERROR: c_uint = 1105;
/// MariaDB's ME_WARNING flag: push a warning instead of raising an error.
#[cfg(feature = "mariadb")]
const ME_WARNING: Myf = 2048;

impl Server {
    fn printf_error(&self, msg: &str, flags: Myf) {
        if let Some(f) = self.my_printf_error {
            let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
            // SAFETY: the format "%s" takes exactly the one string passed.
            unsafe { f(ER_UNKNOWN_ERROR, cstr!("%s"), flags, c.as_ptr()) };
        }
    }

    /// Adds `msg` to the statement's warnings (SHOW WARNINGS) where the
    /// server has a flag for that (MariaDB); MySQL has none that all its
    /// releases share, so there it is only in the error log.
    pub fn warn(&self, _thd: Thd, msg: &str) {
        #[cfg(feature = "mariadb")]
        self.printf_error(msg, ME_WARNING);
        #[cfg(not(feature = "mariadb"))]
        let _ = msg;
    }

    /// Gives the client the cause of a failed SET: MariaDB adds it as a
    /// warning next to its generic "can't be set" error; MySQL raises no
    /// error of its own when the check already raised one, so `msg` is the
    /// statement's error there.
    pub fn fail_statement(&self, thd: Thd, msg: &str) {
        #[cfg(feature = "mariadb")]
        self.warn(thd, msg);
        #[cfg(not(feature = "mariadb"))]
        {
            let _ = thd;
            self.printf_error(&format!("tokudb_backup: {msg}"), 0);
        }
    }
}

/// Reads a `char name[]` data symbol of the server.
pub fn char_array(name: &str) -> Option<String> {
    let p = lookup(name) as *const c_char;
    // SAFETY: the symbol is a NUL-terminated char array of the server.
    unsafe { c_to_string(p) }.filter(|s| !s.is_empty())
}

/// The running server's version string (`server_version`, e.g.
/// "10.11.19-MariaDB-0+deb12u1-log"); set before any plugin loads.
pub fn version() -> Option<String> {
    char_array("server_version")
}

/// Writes one line to the server's error log (the server's stderr is the log).
pub fn log_line(level: &str, msg: &str) {
    let mut line = format!("{} 0 [{level}] tokudb_backup: ", local_timestamp());
    // One line per event: newlines in paths or messages would split it.
    line.extend(msg.chars().map(|c| if c == '\n' { ' ' } else { c }));
    line.push('\n');
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// "YYYY-MM-DD HH:MM:SS" in local time, like the server's own log lines.
fn local_timestamp() -> String {
    // SAFETY: time(NULL) has no preconditions.
    let now = unsafe { libc::time(std::ptr::null_mut()) };
    // SAFETY: tm is plain data; all-zero is a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: localtime_r writes only into tm, which outlives the call.
    if unsafe { libc::localtime_r(&now, &mut tm) }.is_null() {
        return String::from("0000-00-00 00:00:00");
    }
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// Copies a C string the server owns.
///
/// # Safety
/// `p` is null or a valid NUL-terminated string for the duration of the call.
pub unsafe fn c_to_string(p: *const c_char) -> Option<String> {
    if p.is_null() {
        None
    } else {
        // SAFETY: guaranteed by the caller.
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }
}

/// `CF_REPORT_PROGRESS` in MariaDB's `sql_command_flags`, and the indexes of
/// commands in `enum_sql_command` (sql_cmd.h, MariaDB 10.x).
#[cfg(feature = "mariadb")]
mod command_flags {
    pub const REPORT_PROGRESS: u32 = 1 << 1;
    pub const SELECT: usize = 0;
    pub const CREATE_INDEX: usize = 2;
    pub const ALTER_TABLE: usize = 3;
    pub const TRUNCATE: usize = 8;
    pub const DROP_INDEX: usize = 10;
    pub const LOAD: usize = 30;
    pub const SET_OPTION: usize = 31;
}

/// SET's entry of `sql_command_flags`, while the plugin has added the flag.
#[cfg(feature = "mariadb")]
static SET_FLAGS_CHANGED: std::sync::atomic::AtomicPtr<std::sync::atomic::AtomicU32> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

/// MariaDB sends progress packets (the client's progress line) only for
/// commands whose `sql_command_flags` entry has CF_REPORT_PROGRESS, read
/// before the statement runs: ALTER TABLE, LOAD DATA, ... but not SET. Add
/// the flag to SET, so that `SET tokudb_backup_dir` shows the line as ALTER
/// TABLE does, once the array is seen to have MariaDB 10.x's layout (the
/// flag on exactly the commands that have it there). Harmless to other SET
/// statements: only a statement that calls `thd_progress_init` reports.
#[cfg(feature = "mariadb")]
pub fn report_progress_for_set() -> Result<(), String> {
    use command_flags::*;
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
    let flags = lookup("sql_command_flags").cast::<AtomicU32>();
    if flags.is_null() {
        return Err("the server does not export sql_command_flags".into());
    }
    // SAFETY: sql_command_flags is the server's `uint[SQLCOM_END + 1]`,
    // far longer than SET_OPTION + 1 entries; a u32 store is atomic on every
    // platform the server runs on, and the server only reads entries.
    let at = |i: usize| unsafe { &*flags.add(i) };
    let has = |i: usize| at(i).load(Relaxed) & REPORT_PROGRESS != 0;
    let layout_known = has(CREATE_INDEX)
        && has(ALTER_TABLE)
        && has(DROP_INDEX)
        && has(LOAD)
        && !has(SELECT)
        && !has(TRUNCATE);
    if !layout_known {
        return Err("sql_command_flags does not have the layout of MariaDB 10.x".into());
    }
    if !has(SET_OPTION) {
        at(SET_OPTION).fetch_or(REPORT_PROGRESS, Relaxed);
        SET_FLAGS_CHANGED.store(flags.wrapping_add(SET_OPTION), Relaxed);
    }
    Ok(())
}

/// Undo `report_progress_for_set` when the plugin is uninstalled.
#[cfg(feature = "mariadb")]
pub fn stop_reporting_progress_for_set() {
    let entry = SET_FLAGS_CHANGED.swap(std::ptr::null_mut(), std::sync::atomic::Ordering::Relaxed);
    if !entry.is_null() {
        // SAFETY: the entry report_progress_for_set changed, in the
        // server's static array.
        unsafe { &*entry }.fetch_and(
            !command_flags::REPORT_PROGRESS,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}
