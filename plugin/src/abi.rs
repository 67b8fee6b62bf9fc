//! C layouts of the server's plugin interface (include/mysql/plugin.h).
//!
//! Only what a daemon plugin with system and status variables needs. The
//! server reads these structures and writes into some of them (the `offset`
//! and `resolve` fields of session variables), so they live in statics with
//! interior mutability and are only touched by the server after load.

use std::cell::UnsafeCell;
use std::ffi::{c_char, c_int, c_longlong, c_uint, c_ulong, c_void};

/// Opaque `MYSQL_THD`.
pub type Thd = *mut c_void;

pub const PLUGIN_LICENSE_GPL: c_int = 1;
pub const MYSQL_DAEMON_PLUGIN: c_int = 3;

pub const PLUGIN_VAR_LONG: c_int = 0x0003;
pub const PLUGIN_VAR_LONGLONG: c_int = 0x0004;
pub const PLUGIN_VAR_STR: c_int = 0x0005;
pub const PLUGIN_VAR_UNSIGNED: c_int = 0x0080;
pub const PLUGIN_VAR_THDLOCAL: c_int = 0x0100;
pub const PLUGIN_VAR_READONLY: c_int = 0x0200;
pub const PLUGIN_VAR_NOCMDOPT: c_int = 0x0800;
pub const PLUGIN_VAR_NOCMDARG: c_int = 0x1000;
pub const PLUGIN_VAR_MEMALLOC: c_int = 0x8000;

/// `enum enum_mysql_show_type`: the first values are the same in MariaDB and
/// MySQL 5.7/8.0.
pub const SHOW_CHAR: c_int = 5;
pub const SHOW_FUNC: c_int = 8;
pub const SHOW_UNDEF: c_int = 0;
/// The entries Percona Server 5.7's `enum_mysql_show_type` adds before
/// SHOW_CHAR and SHOW_FUNC (see status::adapt_to_server).
pub const PERCONA57_EXTRA: c_int = 3;

/// A `static` the server may write to; Rust only hands out its address.
#[repr(transparent)]
pub struct ServerShared<T>(UnsafeCell<T>);

// SAFETY: the server (and the plugin's constructor, see lib.rs) mutates
// these only while loading the plugin (single threaded, before any of our
// code reads them); afterwards they are read-only for both sides.
unsafe impl<T> Sync for ServerShared<T> {}

impl<T> ServerShared<T> {
    pub const fn new(v: T) -> Self {
        ServerShared(UnsafeCell::new(v))
    }
    pub const fn get(&self) -> *mut T {
        self.0.get()
    }
}

/// `struct st_mysql_value`: how a check function reads the SET value.
#[repr(C)]
pub struct MysqlValue {
    pub value_type: Option<unsafe extern "C" fn(*mut MysqlValue) -> c_int>,
    pub val_str:
        Option<unsafe extern "C" fn(*mut MysqlValue, *mut c_char, *mut c_int) -> *const c_char>,
    pub val_real: Option<unsafe extern "C" fn(*mut MysqlValue, *mut f64) -> c_int>,
    pub val_int: Option<unsafe extern "C" fn(*mut MysqlValue, *mut c_longlong) -> c_int>,
    pub is_unsigned: Option<unsafe extern "C" fn(*mut MysqlValue) -> c_int>,
}

/// Opaque `struct st_mysql_sys_var`; every concrete variable starts with [`SysVarHeader`].
pub enum SysVar {}

pub type CheckFn = unsafe extern "C" fn(Thd, *mut SysVar, *mut c_void, *mut MysqlValue) -> c_int;
pub type UpdateFn = unsafe extern "C" fn(Thd, *mut SysVar, *mut c_void, *const c_void);

/// `MYSQL_PLUGIN_VAR_HEADER`.
#[repr(C)]
pub struct SysVarHeader {
    pub flags: c_int,
    pub name: *const c_char,
    pub comment: *const c_char,
    pub check: Option<CheckFn>,
    pub update: Option<UpdateFn>,
}

/// `DECLARE_MYSQL_THDVAR_BASIC(name, char *)`: a session string.
#[repr(C)]
pub struct ThdVarStr {
    pub header: SysVarHeader,
    pub offset: c_int,
    pub def_val: *const c_char,
    pub resolve: Option<unsafe extern "C" fn(Thd, c_int) -> *mut *mut c_char>,
}

/// `DECLARE_MYSQL_THDVAR_SIMPLE(name, T)`: a session number.
#[repr(C)]
pub struct ThdVarNum<T> {
    pub header: SysVarHeader,
    pub offset: c_int,
    pub def_val: T,
    pub min_val: T,
    pub max_val: T,
    pub blk_sz: T,
    pub resolve: Option<unsafe extern "C" fn(Thd, c_int) -> *mut T>,
}

/// `DECLARE_MYSQL_SYSVAR_BASIC(name, char *)`: a global string.
#[repr(C)]
pub struct SysVarStr {
    pub header: SysVarHeader,
    pub value: *mut *mut c_char,
    pub def_val: *const c_char,
}

pub type ULongLong = u64;
pub type ULong = c_ulong;

/// `struct st_mysql_daemon`.
#[repr(C)]
pub struct MysqlDaemon {
    pub interface_version: c_int,
}

/// `struct st_mysql_show_var`.
#[cfg(feature = "mariadb")]
#[repr(C)]
pub struct ShowVar {
    pub name: *const c_char,
    pub value: *mut c_void,
    pub type_: c_int,
}

/// `struct st_mysql_show_var` of MySQL 5.7/8.0 has a scope member.
#[cfg(not(feature = "mariadb"))]
#[repr(C)]
pub struct ShowVar {
    pub name: *const c_char,
    pub value: *mut c_void,
    pub type_: c_int,
    pub scope: c_int,
}

/// `mysql_show_var_func` of MariaDB (extra status_var and scope arguments).
#[cfg(feature = "mariadb")]
pub type ShowFunc =
    unsafe extern "C" fn(Thd, *mut ShowVar, *mut c_void, *mut c_void, c_int) -> c_int;
/// `mysql_show_var_func` of MySQL.
#[cfg(not(feature = "mariadb"))]
pub type ShowFunc = unsafe extern "C" fn(Thd, *mut ShowVar, *mut c_char) -> c_int;

/// Size of the buffer the server passes to a SHOW_FUNC (`SHOW_VAR_FUNC_BUFF_SIZE`
/// is 256 pointers in MariaDB; MySQL's is 1024 bytes).
#[cfg(feature = "mariadb")]
pub const SHOW_BUFF_SIZE: usize = 256 * std::mem::size_of::<*const c_void>();
#[cfg(not(feature = "mariadb"))]
pub const SHOW_BUFF_SIZE: usize = 1024;

pub type InitFn = unsafe extern "C" fn(*mut c_void) -> c_int;

/// `struct st_maria_plugin`.
#[cfg(feature = "mariadb")]
#[repr(C)]
pub struct PluginDecl {
    pub type_: c_int,
    pub info: *const c_void,
    pub name: *const c_char,
    pub author: *const c_char,
    pub descr: *const c_char,
    pub license: c_int,
    pub init: Option<InitFn>,
    pub deinit: Option<InitFn>,
    pub version: c_uint,
    pub status_vars: *const ShowVar,
    pub system_vars: *const *mut SysVar,
    pub version_info: *const c_char,
    pub maturity: c_uint,
}

/// `struct st_mysql_plugin` of MySQL 5.7.
#[cfg(feature = "mysql57")]
#[repr(C)]
pub struct PluginDecl {
    pub type_: c_int,
    pub info: *const c_void,
    pub name: *const c_char,
    pub author: *const c_char,
    pub descr: *const c_char,
    pub license: c_int,
    pub init: Option<InitFn>,
    pub deinit: Option<InitFn>,
    pub version: c_uint,
    pub status_vars: *const ShowVar,
    pub system_vars: *const *mut SysVar,
    pub reserved1: *const c_void,
    pub flags: c_ulong,
}

/// `struct st_mysql_plugin` of MySQL 8.0 (adds check_uninstall).
#[cfg(feature = "mysql80")]
#[repr(C)]
pub struct PluginDecl {
    pub type_: c_int,
    pub info: *const c_void,
    pub name: *const c_char,
    pub author: *const c_char,
    pub descr: *const c_char,
    pub license: c_int,
    pub init: Option<InitFn>,
    pub check_uninstall: Option<InitFn>,
    pub deinit: Option<InitFn>,
    pub version: c_uint,
    pub status_vars: *const ShowVar,
    pub system_vars: *const *mut SysVar,
    pub reserved1: *const c_void,
    pub flags: c_ulong,
}

#[cfg(any(
    all(feature = "mariadb", feature = "mysql57"),
    all(feature = "mariadb", feature = "mysql80"),
    all(feature = "mysql57", feature = "mysql80"),
    not(any(feature = "mariadb", feature = "mysql57", feature = "mysql80"))
))]
compile_error!(
    "select exactly one server ABI: default features (mariadb), or --no-default-features --features mysql57|mysql80"
);

/// Interface version the server checks before reading the declarations.
#[cfg(feature = "mariadb")]
pub const PLUGIN_INTERFACE_VERSION: c_int = 0x010f; // MARIA_PLUGIN_INTERFACE_VERSION of 10.11
#[cfg(feature = "mysql57")]
pub const PLUGIN_INTERFACE_VERSION: c_int = 0x0104;
#[cfg(feature = "mysql80")]
pub const PLUGIN_INTERFACE_VERSION: c_int = 0x010b;

/// The server release the plugin is built for: `TOKUDB_BACKUP_SERVER_VERSION`
/// at build time, else the release the layouts here were checked against.
/// Only its series (major.minor) binds: see [`check_series`].
#[cfg(feature = "mariadb")]
pub const BUILT_FOR: &str = match option_env!("TOKUDB_BACKUP_SERVER_VERSION") {
    Some(v) => v,
    None => "10.11.19",
};
#[cfg(feature = "mysql57")]
pub const BUILT_FOR: &str = match option_env!("TOKUDB_BACKUP_SERVER_VERSION") {
    Some(v) => v,
    None => "5.7.44",
};
#[cfg(feature = "mysql80")]
pub const BUILT_FOR: &str = match option_env!("TOKUDB_BACKUP_SERVER_VERSION") {
    Some(v) => v,
    None => "8.0.36",
};

/// The servers a build is for, in messages.
#[cfg(feature = "mariadb")]
pub const SERVER_FAMILY: &str = "MariaDB 10.11";
#[cfg(feature = "mysql57")]
pub const SERVER_FAMILY: &str = "MySQL and Percona Server 5.7";
#[cfg(feature = "mysql80")]
pub const SERVER_FAMILY: &str = "MySQL and Percona Server 8.0";

/// Major, minor and patch of a server version string ("10.11.19-MariaDB-0+deb12u1").
pub const fn parse_version(v: &[u8]) -> Option<[u32; 3]> {
    let mut parts = [0u32; 3];
    let (mut i, mut part, mut digits) = (0, 0, 0);
    while i < v.len() && part < 3 {
        let c = v[i];
        if c.is_ascii_digit() && digits < 4 {
            parts[part] = parts[part] * 10 + (c - b'0') as u32;
            digits += 1;
        } else if c == b'.' && digits > 0 && part < 2 {
            part += 1;
            digits = 0;
        } else {
            break;
        }
        i += 1;
    }
    if part == 2 && digits > 0 && parts[1] < 100 && parts[2] < 100 {
        Some(parts)
    } else {
        None
    }
}

/// True for Percona Server's version strings: its release number follows
/// the version ("5.7.22-22", "5.7.22-22-log", PXC "5.7.22-22-57"); MySQL's
/// suffixes are words ("-log", "-debug") or, in distribution builds, start
/// with a number followed by letters ("5.7.42-0ubuntu0.18.04.1").
pub fn is_percona(v: &str) -> bool {
    let mut dots = 0;
    let rest = v.trim_start_matches(|c: char| {
        dots += usize::from(c == '.');
        c.is_ascii_digit() || c == '.'
    });
    let Some(suffix) = rest.strip_prefix('-') else {
        return false;
    };
    let release = suffix.split('-').next().unwrap_or_default();
    dots == 2 && !release.is_empty() && release.bytes().all(|b| b.is_ascii_digit())
}

/// `MYSQL_VERSION_ID` of a version: 10.11.19 is 101119.
pub const fn version_id(v: [u32; 3]) -> u32 {
    v[0] * 10000 + v[1] * 100 + v[2]
}

/// `MYSQL_DAEMON_INTERFACE_VERSION` is `MYSQL_VERSION_ID << 8`, and the
/// server refuses a daemon plugin that declares another release's. This is
/// the built-for release's; when the server loads the plugin, a library
/// constructor replaces it with the running server's (lib.rs), so that one
/// build loads into every release of its series.
pub const DAEMON_INTERFACE_VERSION: c_int = match parse_version(BUILT_FOR.as_bytes()) {
    Some(v) => (version_id(v) << 8) as c_int,
    None => panic!("TOKUDB_BACKUP_SERVER_VERSION must be a version such as 10.11.19"),
};

/// What differs between servers that the plugin relies on, checked when
/// it starts: the structures of plugin.h, the exported functions' C++
/// signatures and the enums it indexes (sql_command_flags) are those of its
/// series, and may change from one series to the next, not within one. A
/// version string that does not parse (a custom `version`) passes: the
/// constructor then left the built-for release declared, and the server
/// accepted it as its own.
pub fn check_series(running: &str) -> Result<(), String> {
    let (Some(r), Some(b)) = (
        parse_version(running.as_bytes()),
        parse_version(BUILT_FOR.as_bytes()),
    ) else {
        return Ok(());
    };
    if r[..2] == b[..2] {
        return Ok(());
    }
    Err(format!(
        "this tokudb_backup.so is built for the {}.{} series (release {BUILT_FOR}) and cannot run \
         in server {running}: install the plugin built for this server's series",
        b[0], b[1]
    ))
}

/// MariaDB_PLUGIN_MATURITY_GAMMA: accepted by Debian's default plugin_maturity.
#[cfg(feature = "mariadb")]
pub const MATURITY_GAMMA: c_uint = 4;

/// NUL-terminated string literal as a C pointer.
#[macro_export]
macro_rules! cstr {
    ($s:expr) => {
        concat!($s, "\0").as_ptr() as *const std::ffi::c_char
    };
}

pub const fn header(
    flags: c_int,
    name: *const c_char,
    comment: *const c_char,
    check: Option<CheckFn>,
    update: Option<UpdateFn>,
) -> SysVarHeader {
    SysVarHeader {
        flags,
        name,
        comment,
        check,
        update,
    }
}

#[cfg(test)]
mod version_tests {
    use super::*;

    #[test]
    fn versions_parse_into_mysql_version_id() {
        let id = |v: &str| parse_version(v.as_bytes()).map(version_id);
        assert_eq!(id("10.11.19-MariaDB-0+deb12u1-log"), Some(101119));
        assert_eq!(id("10.11.5"), Some(101105));
        assert_eq!(id("8.0.36-28"), Some(80036));
        assert_eq!(id("5.7.44-log"), Some(50744));
        for bad in [
            "",
            "10",
            "10.11",
            "10.11.",
            "x10.11.1",
            "10..1",
            "10.100.1",
            "99999.1.1",
        ] {
            assert_eq!(id(bad), None, "{bad}");
        }
    }

    #[test]
    fn percona_is_told_from_its_release_number() {
        for p in ["5.7.22-22", "5.7.22-22-log", "5.7.44-48-57", "8.0.27-18"] {
            assert!(is_percona(p), "{p}");
        }
        for m in [
            "5.7.41",
            "5.7.41-log",
            "5.7.41-debug-log",
            "8.0.40",
            "10.11.19-MariaDB",
            "",
        ] {
            assert!(!is_percona(m), "{m}");
        }
    }

    #[test]
    fn only_the_built_for_series_is_accepted() {
        let b = parse_version(BUILT_FOR.as_bytes()).unwrap();
        let v = |m: u32, n: u32, p: u32| format!("{m}.{n}.{p}-MariaDB-log");
        assert!(check_series(&v(b[0], b[1], 0)).is_ok());
        assert!(check_series(&v(b[0], b[1], b[2] + 7)).is_ok());
        let e = check_series(&v(b[0], b[1] + 1, b[2])).unwrap_err();
        assert!(e.contains(BUILT_FOR) && e.contains("series"), "{e}");
        assert!(check_series(&v(b[0] + 1, b[1], b[2])).is_err());
        assert!(check_series("custom-version").is_ok());
    }
}

/// The layouts above against the server's own header (libmariadbd-dev):
/// a C program prints sizeof/offsetof of the structures the server reads.
#[cfg(all(test, feature = "mariadb"))]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};
    use std::process::Command;

    const HEADER_DIR: &str = "/usr/include/mariadb/server";

    fn c_layout() -> Vec<usize> {
        if !std::path::Path::new(HEADER_DIR)
            .join("mysql/plugin.h")
            .exists()
        {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../ci/install-deps.sh");
            let st = Command::new("bash")
                .arg(script)
                .status()
                .expect("run ci/install-deps.sh");
            assert!(st.success(), "ci/install-deps.sh failed");
        }
        let src = r#"
#include <stdio.h>
#include <stddef.h>
#include <mysql/plugin.h>
static MYSQL_THDVAR_STR(s, PLUGIN_VAR_MEMALLOC, "", NULL, NULL, NULL);
static MYSQL_THDVAR_ULONGLONG(n, 0, "", NULL, NULL, 0, 0, 1, 1);
static char *g;
static MYSQL_SYSVAR_STR(g, g, PLUGIN_VAR_READONLY, "", NULL, NULL, NULL);
int main(void) {
  printf("%zu %zu %zu %zu %zu\n", sizeof(struct st_maria_plugin),
         offsetof(struct st_maria_plugin, status_vars), offsetof(struct st_maria_plugin, maturity),
         sizeof(struct st_mysql_show_var), sizeof(struct st_mysql_value));
  printf("%zu %zu %zu\n", sizeof(mysql_sysvar_s), offsetof(__typeof__(mysql_sysvar_s), resolve),
         offsetof(__typeof__(mysql_sysvar_s), def_val));
  printf("%zu %zu %zu\n", sizeof(mysql_sysvar_n), offsetof(__typeof__(mysql_sysvar_n), resolve),
         offsetof(__typeof__(mysql_sysvar_n), max_val));
  printf("%zu %zu\n", sizeof(mysql_sysvar_g), offsetof(__typeof__(mysql_sysvar_g), def_val));
  printf("%d %d %d\n", SHOW_CHAR, SHOW_FUNC, SHOW_UNDEF);
  printf("%d %d\n", MARIA_PLUGIN_INTERFACE_VERSION, MariaDB_PLUGIN_MATURITY_GAMMA);
  return 0;
}
"#;
        let include = format!("-I{HEADER_DIR}");
        let cflags = [include.as_str(), "-DMYSQL_DYNAMIC_PLUGIN"];
        crate::c_program::output_of("tokudb_backup_abi", src, &cflags)
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect()
    }

    #[test]
    fn layouts_match_the_mariadb_header() {
        let rust = vec![
            size_of::<PluginDecl>(),
            offset_of!(PluginDecl, status_vars),
            offset_of!(PluginDecl, maturity),
            size_of::<ShowVar>(),
            size_of::<MysqlValue>(),
            size_of::<ThdVarStr>(),
            offset_of!(ThdVarStr, resolve),
            offset_of!(ThdVarStr, def_val),
            size_of::<ThdVarNum<ULongLong>>(),
            offset_of!(ThdVarNum<ULongLong>, resolve),
            offset_of!(ThdVarNum<ULongLong>, max_val),
            size_of::<SysVarStr>(),
            offset_of!(SysVarStr, def_val),
            SHOW_CHAR as usize,
            SHOW_FUNC as usize,
            SHOW_UNDEF as usize,
            PLUGIN_INTERFACE_VERSION as usize,
            MATURITY_GAMMA as usize,
        ];
        assert_eq!(rust, c_layout());
    }
}

/// The layouts above against the numbers measured from the headers of
/// MySQL and Percona Server releases of this build's series
/// (plugin/tests/abi/, see its README): the MySQL counterpart of the
/// MariaDB test, which compiles against the installed header.
#[cfg(all(test, not(feature = "mariadb")))]
pub mod mysql_layout_tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::mem::{offset_of, size_of};

    #[cfg(feature = "mysql57")]
    pub const RELEASES: [&str; 2] = ["my5741", "ps5722"];
    #[cfg(feature = "mysql80")]
    pub const RELEASES: [&str; 2] = ["my8040", "ps8027"];

    pub fn numbers(release: &str) -> BTreeMap<String, i64> {
        let path = format!("{}/tests/abi/{release}.txt", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        text.lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, v)| (k.to_string(), v.trim().parse().unwrap()))
            .collect()
    }

    /// (key of the ABI file, the plugin's value).
    fn ours() -> Vec<(&'static str, i64)> {
        macro_rules! at {
            ($t:ty, $f:ident) => {
                offset_of!($t, $f) as i64
            };
        }
        #[allow(unused_mut)] // pushed to for 8.0
        let mut v = vec![
            ("sizeof.st_mysql_plugin", size_of::<PluginDecl>() as i64),
            ("st_mysql_plugin.type", at!(PluginDecl, type_)),
            ("st_mysql_plugin.info", at!(PluginDecl, info)),
            ("st_mysql_plugin.name", at!(PluginDecl, name)),
            ("st_mysql_plugin.author", at!(PluginDecl, author)),
            ("st_mysql_plugin.descr", at!(PluginDecl, descr)),
            ("st_mysql_plugin.license", at!(PluginDecl, license)),
            ("st_mysql_plugin.init", at!(PluginDecl, init)),
            ("st_mysql_plugin.deinit", at!(PluginDecl, deinit)),
            ("st_mysql_plugin.version", at!(PluginDecl, version)),
            ("st_mysql_plugin.status_vars", at!(PluginDecl, status_vars)),
            ("st_mysql_plugin.system_vars", at!(PluginDecl, system_vars)),
            ("st_mysql_plugin.__reserved1", at!(PluginDecl, reserved1)),
            ("st_mysql_plugin.flags", at!(PluginDecl, flags)),
            ("sizeof.st_mysql_daemon", size_of::<MysqlDaemon>() as i64),
            ("sizeof.show_var", size_of::<ShowVar>() as i64),
            ("show_var.name", at!(ShowVar, name)),
            ("show_var.value", at!(ShowVar, value)),
            ("show_var.type", at!(ShowVar, type_)),
            ("show_var.scope", at!(ShowVar, scope)),
            ("SHOW_UNDEF", SHOW_UNDEF as i64),
            ("SHOW_VAR_FUNC_BUFF_SIZE", SHOW_BUFF_SIZE as i64),
            ("MYSQL_DAEMON_PLUGIN", MYSQL_DAEMON_PLUGIN as i64),
            ("PLUGIN_LICENSE_GPL", PLUGIN_LICENSE_GPL as i64),
            ("sizeof.st_mysql_value", size_of::<MysqlValue>() as i64),
            ("st_mysql_value.val_str", at!(MysqlValue, val_str)),
            ("st_mysql_value.val_int", at!(MysqlValue, val_int)),
            ("st_mysql_value.is_unsigned", at!(MysqlValue, is_unsigned)),
            ("PLUGIN_VAR_LONG", PLUGIN_VAR_LONG as i64),
            ("PLUGIN_VAR_LONGLONG", PLUGIN_VAR_LONGLONG as i64),
            ("PLUGIN_VAR_STR", PLUGIN_VAR_STR as i64),
            ("PLUGIN_VAR_UNSIGNED", PLUGIN_VAR_UNSIGNED as i64),
            ("PLUGIN_VAR_THDLOCAL", PLUGIN_VAR_THDLOCAL as i64),
            ("PLUGIN_VAR_READONLY", PLUGIN_VAR_READONLY as i64),
            ("PLUGIN_VAR_NOCMDOPT", PLUGIN_VAR_NOCMDOPT as i64),
            ("PLUGIN_VAR_NOCMDARG", PLUGIN_VAR_NOCMDARG as i64),
            ("PLUGIN_VAR_MEMALLOC", PLUGIN_VAR_MEMALLOC as i64),
            ("sizeof.thdvar_str", size_of::<ThdVarStr>() as i64),
            ("thdvar_str.check", at!(SysVarHeader, check)),
            ("thdvar_str.update", at!(SysVarHeader, update)),
            ("thdvar_str.offset", at!(ThdVarStr, offset)),
            ("thdvar_str.def_val", at!(ThdVarStr, def_val)),
            ("thdvar_str.resolve", at!(ThdVarStr, resolve)),
            ("sizeof.thdvar_ulong", size_of::<ThdVarNum<ULong>>() as i64),
            ("thdvar_ulong.offset", at!(ThdVarNum<ULong>, offset)),
            ("thdvar_ulong.def_val", at!(ThdVarNum<ULong>, def_val)),
            ("thdvar_ulong.min_val", at!(ThdVarNum<ULong>, min_val)),
            ("thdvar_ulong.max_val", at!(ThdVarNum<ULong>, max_val)),
            ("thdvar_ulong.blk_sz", at!(ThdVarNum<ULong>, blk_sz)),
            ("thdvar_ulong.resolve", at!(ThdVarNum<ULong>, resolve)),
            (
                "sizeof.thdvar_ulonglong",
                size_of::<ThdVarNum<ULongLong>>() as i64,
            ),
            (
                "thdvar_ulonglong.max_val",
                at!(ThdVarNum<ULongLong>, max_val),
            ),
            (
                "thdvar_ulonglong.resolve",
                at!(ThdVarNum<ULongLong>, resolve),
            ),
            ("sizeof.sysvar_str", size_of::<SysVarStr>() as i64),
            ("sysvar_str.value", at!(SysVarStr, value)),
            ("sysvar_str.def_val", at!(SysVarStr, def_val)),
            ("sizeof.long", size_of::<ULong>() as i64),
        ];
        #[cfg(feature = "mysql80")]
        v.push((
            "st_mysql_plugin.check_uninstall",
            at!(PluginDecl, check_uninstall),
        ));
        v
    }

    #[test]
    fn layouts_match_every_measured_release_of_the_series() {
        for release in RELEASES {
            let n = numbers(release);
            for (key, value) in ours() {
                assert_eq!(Some(&value), n.get(key), "{release}: {key}");
            }
            // SHOW_CHAR / SHOW_FUNC as the running server numbers them.
            let version = if release.starts_with("ps") {
                "5.7.22-22"
            } else {
                "5.7.41"
            };
            let extra = if cfg!(feature = "mysql57") && is_percona(version) {
                PERCONA57_EXTRA
            } else {
                0
            };
            assert_eq!(i64::from(SHOW_CHAR + extra), n["SHOW_CHAR"], "{release}");
            assert_eq!(i64::from(SHOW_FUNC + extra), n["SHOW_FUNC"], "{release}");
            // The server accepts the plugin's interface version.
            let piv = n["MYSQL_PLUGIN_INTERFACE_VERSION"];
            let ours = i64::from(PLUGIN_INTERFACE_VERSION);
            assert!(
                ours >= piv & !0xff && ours >> 8 <= piv >> 8,
                "{release}: 0x{ours:x}"
            );
        }
    }
}
