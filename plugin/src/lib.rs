//! tokudb_backup: the server plugin that drives libHotBackup from SQL.
//!
//! `INSTALL PLUGIN tokudb_backup SONAME 'tokudb_backup.so'`, then
//! `SET tokudb_backup_dir='/backups/today'` runs a hot backup. See README.md
//! ("Using the plugin") for the variables and the layout of a backup.
//!
//! The plugin runs inside the server: every function the server calls
//! catches panics, and nothing here links against the server or the library
//! (both are found at run time, see `server` and `library`).

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod abi;
mod backup;
mod binlog;
/// Compiles and runs C against the installed headers: the engine's
/// test support, shared as source, for abi's layout test.
#[cfg(all(test, feature = "mariadb"))]
#[path = "../../src/c_program.rs"]
mod c_program;
mod destination;
mod error;
mod exclude;
#[cfg(feature = "mysql80")]
mod grants;
mod layout;
mod library;
mod manifest;
mod pending;
mod server;
mod settings;
mod sql;
mod status;
mod symbols;
mod sysvars;

use abi::*;
use std::ffi::{c_int, c_void};

static DAEMON: ServerShared<MysqlDaemon> = ServerShared::new(MysqlDaemon {
    interface_version: DAEMON_INTERFACE_VERSION,
});

/// Runs when the server dlopen()s the plugin, before it reads the
/// declarations: declares the running server's release as the daemon
/// interface version, which the server requires to be its own, and numbers
/// the status variables as the running server does.
#[used]
#[link_section = ".init_array"]
static DECLARE_RUNNING_RELEASE: extern "C" fn() = declare_running_release;

extern "C" fn declare_running_release() {
    let _ = std::panic::catch_unwind(|| {
        let Some(text) = server::version() else {
            return; // not in a server: keep the built-for release
        };
        status::adapt_to_server(&text);
        let Some(v) = parse_version(text.as_bytes()) else {
            return;
        };
        // SAFETY: constructors run inside dlopen(), before the server can
        // read DAEMON through the declarations (nothing else touches it).
        unsafe { (*DAEMON.get()).interface_version = (version_id(v) << 8) as c_int };
    });
}

unsafe extern "C" fn plugin_init(_p: *mut c_void) -> c_int {
    let r = std::panic::catch_unwind(|| {
        // Without server_version the server accepted the built-for release.
        if let Some(Err(why)) = server::version().map(|v| check_series(&v)) {
            server::log_line("ERROR", &why);
            return 1;
        }
        let missing = server::missing();
        if !missing.is_empty() {
            server::log_line(
                "ERROR",
                &format!(
                    "this server does not export what the plugin needs: {}; \
                     this tokudb_backup.so is built for {}",
                    missing.join("; "),
                    SERVER_FAMILY
                ),
            );
            return 1;
        }
        sysvars::publish_versions();
        #[cfg(feature = "mariadb")]
        if let Err(why) = server::report_progress_for_set() {
            server::log_line(
                "Note",
                &format!("no progress line in the client for SET tokudb_backup_dir: {why}"),
            );
        }
        match library::load() {
            Ok(lib) => server::log_line(
                "Note",
                &format!("plugin loaded; libHotBackup {} found", lib.version),
            ),
            // Installing still works: SET tokudb_backup_dir explains what to do.
            Err(e) => server::log_line(
                "Warning",
                &format!("plugin loaded, but backups cannot run: {}", e.message),
            ),
        }
        0
    });
    r.unwrap_or(1)
}

unsafe extern "C" fn plugin_deinit(_p: *mut c_void) -> c_int {
    #[cfg(feature = "mariadb")]
    let _ = std::panic::catch_unwind(server::stop_reporting_progress_for_set);
    0
}

/// Plugin version for SHOW PLUGINS: major.minor as 0xMMmm.
const fn version_hex() -> u32 {
    let v = env!("CARGO_PKG_VERSION").as_bytes();
    let mut i = 0;
    let mut major = 0u32;
    while i < v.len() && v[i] != b'.' {
        major = major * 10 + (v[i] - b'0') as u32;
        i += 1;
    }
    i += 1;
    let mut minor = 0u32;
    while i < v.len() && v[i] != b'.' {
        minor = minor * 10 + (v[i] - b'0') as u32;
        i += 1;
    }
    (major << 8) | minor
}

#[cfg(feature = "mariadb")]
const fn declaration() -> PluginDecl {
    PluginDecl {
        type_: MYSQL_DAEMON_PLUGIN,
        info: DAEMON.get() as *const c_void,
        name: cstr!("tokudb_backup"),
        author: cstr!("TokuDB Backup developers"),
        descr: cstr!("Hot backup of a running server: SET tokudb_backup_dir='/path'"),
        license: PLUGIN_LICENSE_GPL,
        init: Some(plugin_init),
        deinit: Some(plugin_deinit),
        version: version_hex(),
        status_vars: status::STATUS_VARS.get() as *const ShowVar,
        system_vars: sysvars::SYSTEM_VARS.get() as *const *mut SysVar,
        version_info: cstr!(env!("CARGO_PKG_VERSION")),
        maturity: MATURITY_GAMMA,
    }
}

#[cfg(not(feature = "mariadb"))]
const fn declaration() -> PluginDecl {
    PluginDecl {
        type_: MYSQL_DAEMON_PLUGIN,
        info: DAEMON.get() as *const c_void,
        name: cstr!("tokudb_backup"),
        author: cstr!("TokuDB Backup developers"),
        descr: cstr!("Hot backup of a running server: SET tokudb_backup_dir='/path'"),
        license: PLUGIN_LICENSE_GPL,
        init: Some(plugin_init),
        #[cfg(feature = "mysql80")]
        check_uninstall: None,
        deinit: Some(plugin_deinit),
        version: version_hex(),
        status_vars: status::STATUS_VARS.get() as *const ShowVar,
        system_vars: sysvars::SYSTEM_VARS.get() as *const *mut SysVar,
        reserved1: std::ptr::null(),
        flags: 0,
    }
}

/// The terminating all-zero declaration.
const fn end_marker() -> PluginDecl {
    // SAFETY: PluginDecl is a C struct of integers, nullable pointers and
    // Option<fn>: all-zero is its valid "end of list" value.
    unsafe { std::mem::zeroed() }
}

#[cfg(feature = "mariadb")]
mod exports {
    use super::*;
    #[no_mangle]
    pub static _maria_plugin_interface_version_: c_int = PLUGIN_INTERFACE_VERSION;
    #[no_mangle]
    pub static _maria_sizeof_struct_st_plugin_: c_int = std::mem::size_of::<PluginDecl>() as c_int;
    #[no_mangle]
    pub static _maria_plugin_declarations_: ServerShared<[PluginDecl; 2]> =
        ServerShared::new([declaration(), end_marker()]);
}

#[cfg(not(feature = "mariadb"))]
mod exports {
    use super::*;
    #[no_mangle]
    pub static _mysql_plugin_interface_version_: c_int = PLUGIN_INTERFACE_VERSION;
    #[no_mangle]
    pub static _mysql_sizeof_struct_st_plugin_: c_int = std::mem::size_of::<PluginDecl>() as c_int;
    #[no_mangle]
    pub static _mysql_plugin_declarations_: ServerShared<[PluginDecl; 2]> =
        ServerShared::new([declaration(), end_marker()]);
}
