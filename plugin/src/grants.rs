//! MySQL 8.0's dynamic privileges (BACKUP_ADMIN), asked through the
//! component service `global_grants_check` the way a plugin reaches it: the
//! plugin registry gives the registry service, the registry the grant check,
//! and the security context service the session's context.

use crate::abi::Thd;
use crate::cstr;
use crate::symbols::lookup_any;
use std::ffi::{c_char, c_int, c_void};

/// `s_mysql_registry` (components/services/registry.h): every member
/// returns 0 on success.
#[repr(C)]
struct Registry {
    acquire: unsafe extern "C" fn(*const c_char, *mut *mut c_void) -> c_int,
    _acquire_related: *const c_void,
    release: unsafe extern "C" fn(*mut c_void) -> c_int,
}

/// `s_mysql_global_grants_check` (components/services/dynamic_privilege.h):
/// nonzero when the context holds the privilege.
#[repr(C)]
struct GlobalGrantsCheck {
    has_global_grant: unsafe extern "C" fn(*mut c_void, *const c_char, usize) -> c_int,
}

type GetContext = unsafe extern "C" fn(Thd, *mut *mut c_void) -> c_char;
type RegistryAcquire = unsafe extern "C" fn() -> *mut Registry;
type RegistryRelease = unsafe extern "C" fn(*mut Registry) -> c_int;

/// Names of the functions used, in every 8.0 release (security context
/// service: C linkage; plugin registry: C++).
pub const GET_CONTEXT: &[&str] = &["thd_get_security_context"];
pub const REGISTRY_ACQUIRE: &[&str] = &[
    "_Z29mysql_plugin_registry_acquirev",
    "mysql_plugin_registry_acquire",
];
pub const REGISTRY_RELEASE: &[&str] = &[
    "_Z29mysql_plugin_registry_releasePK16s_mysql_registry",
    "mysql_plugin_registry_release",
];

/// True when `thd`'s user holds the global dynamic privilege `name`; false
/// when not, or when the server offers no way to ask.
pub fn has_global_grant(thd: Thd, name: &str) -> bool {
    let (ctx_fn, acq, rel) = (
        lookup_any(GET_CONTEXT),
        lookup_any(REGISTRY_ACQUIRE),
        lookup_any(REGISTRY_RELEASE),
    );
    if ctx_fn.is_null() || acq.is_null() || rel.is_null() {
        return false;
    }
    // SAFETY: the symbols are the server's functions of these names, with
    // the signatures of service_security_context.h and
    // service_plugin_registry.h; thd is the live THD of the statement. The
    // registry and the grant service are released before returning, and
    // the context belongs to thd, which outlives the call.
    unsafe {
        let get_ctx: GetContext = std::mem::transmute::<*mut c_void, GetContext>(ctx_fn);
        let acquire: RegistryAcquire = std::mem::transmute::<*mut c_void, RegistryAcquire>(acq);
        let release: RegistryRelease = std::mem::transmute::<*mut c_void, RegistryRelease>(rel);
        let mut ctx: *mut c_void = std::ptr::null_mut();
        if get_ctx(thd, &mut ctx) != 0 || ctx.is_null() {
            return false;
        }
        let reg = acquire();
        if reg.is_null() {
            return false;
        }
        let mut h: *mut c_void = std::ptr::null_mut();
        let mut granted = false;
        if ((*reg).acquire)(cstr!("global_grants_check"), &mut h) == 0 && !h.is_null() {
            let svc = h as *const GlobalGrantsCheck;
            granted =
                ((*svc).has_global_grant)(ctx, name.as_ptr() as *const c_char, name.len()) != 0;
            ((*reg).release)(h);
        }
        release(reg);
        granted
    }
}
