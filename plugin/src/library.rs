//! libHotBackup's C API (include/backup.h), found at run time.
//!
//! The library must be preloaded into the server (LD_PRELOAD) so that it sees
//! every file operation from the first one on; loading it from the plugin
//! would be too late. So the plugin never links it: it looks the API up with
//! dlsym(RTLD_DEFAULT) when a backup starts and checks the major version.

use crate::server::lookup;
use std::ffi::{c_char, c_int, c_ulong, c_void, CStr};

pub type PollFn = unsafe extern "C" fn(f32, *const c_char, *mut c_void) -> c_int;
pub type ErrorFn = unsafe extern "C" fn(c_int, *const c_char, *mut c_void);
pub type ExcludeFn = unsafe extern "C" fn(*const c_char, *mut c_void) -> c_int;
pub type StopCaptureFn = unsafe extern "C" fn(*mut c_void);

pub type CreateBackup = unsafe extern "C" fn(
    *const *const c_char,
    *const *const c_char,
    c_int,
    Option<PollFn>,
    *mut c_void,
    Option<ErrorFn>,
    *mut c_void,
    Option<ExcludeFn>,
    *mut c_void,
    Option<StopCaptureFn>,
    *mut c_void,
    Option<StopCaptureFn>,
    *mut c_void,
) -> c_int;
pub type ThrottleBackup = unsafe extern "C" fn(c_ulong);

/// The library's entry points, checked to be of a compatible version.
#[derive(Clone, Copy)]
pub struct Library {
    pub create_backup: CreateBackup,
    pub throttle: ThrottleBackup,
    pub version: &'static str,
}

/// Major version of the API this plugin was written for: the plugin and the
/// library share the workspace version.
pub fn expected_version() -> semver::Version {
    semver::Version::parse(env!("CARGO_PKG_VERSION")).expect("CARGO_PKG_VERSION is semver")
}

/// Why the API cannot be used; the text goes to the user and the error log.
#[derive(Debug)]
pub struct LoadError {
    pub errno: i32,
    pub message: String,
}

#[cfg(feature = "mariadb")]
const PRELOAD_HINT: &str = "libHotBackup is not loaded in the server: start mariadbd with the \
library preloaded, e.g. LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libHotBackup.so.1 in the \
environment of the server (systemd: `Environment=LD_PRELOAD=...` in a drop-in for \
mariadb.service; mysqld_safe: `malloc-lib=` or LD_PRELOAD), then restart it";
#[cfg(not(feature = "mariadb"))]
const PRELOAD_HINT: &str = "libHotBackup is not loaded in the server: start mysqld with the \
library preloaded, e.g. LD_PRELOAD=/usr/lib64/libHotBackup.so.1 (Debian/Ubuntu: \
/usr/lib/x86_64-linux-gnu/libHotBackup.so.1) in the environment of the server (systemd: \
`Environment=LD_PRELOAD=...` in a drop-in for mysqld.service on EL, mysql.service on \
Debian/Ubuntu; mysqld_safe: `malloc-lib=` or LD_PRELOAD), then restart it";

/// Finds the API in the process and checks its version.
pub fn load() -> Result<Library, LoadError> {
    let create = lookup("tokubackup_create_backup");
    let throttle = lookup("tokubackup_throttle_backup");
    let version_ptr = lookup("tokubackup_version_string") as *const *const c_char;
    if create.is_null() || throttle.is_null() || version_ptr.is_null() {
        return Err(LoadError {
            errno: libc::ENOSYS,
            message: PRELOAD_HINT.to_string(),
        });
    }
    // SAFETY: tokubackup_version_string is `const char *` (backup.h): the
    // symbol's address points at a pointer to a static NUL-terminated string.
    let version_c = unsafe { *version_ptr };
    if version_c.is_null() {
        return Err(LoadError {
            errno: libc::EINVAL,
            message: "libHotBackup's tokubackup_version_string is NULL".into(),
        });
    }
    // SAFETY: checked non-null above; the library keeps it for its lifetime,
    // which is the process's (it is preloaded, never unloaded).
    let version: &'static str = match unsafe { CStr::from_ptr(version_c) }.to_str() {
        Ok(v) => v,
        Err(_) => {
            return Err(LoadError {
                errno: libc::EINVAL,
                message: "libHotBackup's version string is not UTF-8".into(),
            })
        }
    };
    check_version(version)?;
    Ok(Library {
        // SAFETY: the symbols are the C API of backup.h with these exact
        // signatures, as the version check just confirmed.
        create_backup: unsafe { std::mem::transmute::<*mut c_void, CreateBackup>(create) },
        // SAFETY: as above.
        throttle: unsafe { std::mem::transmute::<*mut c_void, ThrottleBackup>(throttle) },
        version,
    })
}

/// Semver compatibility: same major (for 0.x, same minor too).
pub fn check_version(found: &str) -> Result<(), LoadError> {
    let expected = expected_version();
    let parsed = semver::Version::parse(found).map_err(|e| LoadError {
        errno: libc::EINVAL,
        message: format!(
            "libHotBackup reports version '{found}', which is not a semantic version: {e}"
        ),
    })?;
    // Semver: a new major (or, before 1.0, a new minor) may change the C API.
    let compatible =
        parsed.major == expected.major && (expected.major != 0 || parsed.minor == expected.minor);
    if compatible {
        Ok(())
    } else {
        Err(LoadError {
            errno: libc::EPROTO,
            message: format!(
                "libHotBackup {found} is not compatible with this plugin (built for {expected}): \
                 the major version differs; install the libHotBackup that matches tokudb_backup.so"
            ),
        })
    }
}

/// Throttles the running and later backups, when the library is there.
pub fn throttle(bytes_per_second: u64) {
    if let Ok(lib) = load() {
        // SAFETY: tokubackup_throttle_backup may be called from any thread at
        // any time (backup.h).
        unsafe { (lib.throttle)(bytes_per_second as c_ulong) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_major_is_accepted() {
        let e = expected_version();
        assert!(check_version(&format!("{}.99.3", e.major)).is_ok());
        assert!(check_version(&e.to_string()).is_ok());
    }

    #[test]
    fn other_major_is_refused_with_both_versions_named() {
        let e = expected_version();
        let err = check_version(&format!("{}.0.0", e.major + 1)).unwrap_err();
        assert_eq!(err.errno, libc::EPROTO);
        assert!(
            err.message.contains("major version differs"),
            "{}",
            err.message
        );
        assert!(err.message.contains(&e.to_string()));
        assert!(check_version("garbage").is_err());
    }
}
