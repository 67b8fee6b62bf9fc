//! The server session of `mysql` runs as the user who ran the SET: a new
//! session has the server's default security context, with no privileges
//! (INFORMATION_SCHEMA.FILES may need PROCESS). The security context
//! service (service_security_context.h) reads the invoking account
//! (`priv_user`@`priv_host`) and makes the session's context that account's
//! (`security_context_lookup`, what the X plugin and Group Replication do
//! for their sessions); the srv_session_info service gives the session's
//! THD. Both are bound by the server like the other services.

use super::service::bound;
use crate::abi::{ServerShared, Thd};
use std::ffi::{c_char, c_void, CString};

/// `VERSION_security_context_service`, `VERSION_srv_session_info_service`.
pub const VERSION_SECURITY_CONTEXT: usize = 0x0101;
pub const VERSION_SRV_SESSION_INFO: usize = 0x0100;

type Ctx = *mut c_void;

/// `struct security_context_service_st` (5.7 and 8.0); `my_svc_bool`
/// results: nonzero is failure.
#[repr(C)]
pub struct SecurityContextService {
    pub thd_get_security_context: Option<unsafe extern "C" fn(Thd, *mut Ctx) -> c_char>,
    pub thd_set_security_context: *const c_void,
    pub security_context_create: *const c_void,
    pub security_context_destroy: *const c_void,
    pub security_context_copy: *const c_void,
    pub security_context_lookup: Option<
        unsafe extern "C" fn(
            Ctx,
            *const c_char,
            *const c_char,
            *const c_char,
            *const c_char,
        ) -> c_char,
    >,
    pub security_context_get_option:
        Option<unsafe extern "C" fn(Ctx, *const c_char, *mut c_void) -> c_char>,
    pub security_context_set_option: *const c_void,
}

/// `struct srv_session_info_service_st`: only its first member is used.
#[repr(C)]
pub struct SrvSessionInfoService {
    pub get_thd: Option<unsafe extern "C" fn(*mut c_void) -> Thd>,
}

/// `MYSQL_LEX_CSTRING`, what `priv_user` and `priv_host` are read as.
#[repr(C)]
struct LexCString {
    str: *const c_char,
    length: usize,
}

#[allow(non_upper_case_globals)]
#[no_mangle]
pub static security_context_service: ServerShared<*const SecurityContextService> =
    ServerShared::new(VERSION_SECURITY_CONTEXT as *const SecurityContextService);
#[allow(non_upper_case_globals)]
#[no_mangle]
pub static srv_session_info_service: ServerShared<*const SrvSessionInfoService> =
    ServerShared::new(VERSION_SRV_SESSION_INFO as *const SrvSessionInfoService);

/// One string option of a security context.
///
/// # Safety
/// `ctx` is a live security context.
unsafe fn option(get: GetOption, ctx: Ctx, name: &std::ffi::CStr) -> Result<CString, String> {
    let mut v = LexCString {
        str: std::ptr::null(),
        length: 0,
    };
    // SAFETY: the option names a string option, which the server stores as
    // a LEX_CSTRING into v; ctx is live per the caller.
    let failed = unsafe { get(ctx, name.as_ptr(), &mut v as *mut LexCString as *mut c_void) } != 0;
    if failed || v.str.is_null() {
        return Err(format!("cannot read {name:?} of the session"));
    }
    // SAFETY: the server's string of v.length bytes, valid while ctx is.
    let bytes = unsafe { std::slice::from_raw_parts(v.str as *const u8, v.length) };
    CString::new(bytes).map_err(|_| format!("{name:?} holds a NUL byte"))
}

type GetOption = unsafe extern "C" fn(Ctx, *const c_char, *mut c_void) -> c_char;

/// Gives `session` the account of the user running `thd`'s statement.
pub fn run_as_invoker(thd: Thd, session: *mut c_void) -> Result<(), String> {
    let sc = bound(&security_context_service)
        .ok_or("the security_context service is not bound to the plugin")?;
    let info = bound(&srv_session_info_service)
        .ok_or("the srv_session_info service is not bound to the plugin")?;
    let (Some(get_ctx), Some(lookup), Some(get), Some(get_thd)) = (
        sc.thd_get_security_context,
        sc.security_context_lookup,
        sc.security_context_get_option,
        info.get_thd,
    ) else {
        return Err("the server's security_context service lacks a function".into());
    };
    let mut invoker: Ctx = std::ptr::null_mut();
    let mut own: Ctx = std::ptr::null_mut();
    // SAFETY: thd is the live THD of the SET; session is open, get_thd
    // returns its THD; the contexts stay valid while both sessions live.
    unsafe {
        if get_ctx(thd, &mut invoker) != 0 || invoker.is_null() {
            return Err("cannot read the security context of the SET".into());
        }
        let user = option(get, invoker, c"priv_user")?;
        let host = option(get, invoker, c"priv_host")?;
        let st = get_thd(session);
        if st.is_null() || get_ctx(st, &mut own) != 0 || own.is_null() {
            return Err("cannot read the security context of the server session".into());
        }
        if lookup(
            own,
            user.as_ptr(),
            host.as_ptr(),
            std::ptr::null(),
            std::ptr::null(),
        ) != 0
        {
            return Err(format!("cannot run as {user:?}@{host:?}: no such account"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::mysql_layout_tests::{numbers, RELEASES};
    use std::mem::{offset_of, size_of};

    #[test]
    fn security_context_layouts_match_every_measured_release_of_the_series() {
        for release in RELEASES {
            let n = numbers(release);
            let ours = [
                ("VERSION_security_context_service", VERSION_SECURITY_CONTEXT),
                ("VERSION_srv_session_info_service", VERSION_SRV_SESSION_INFO),
                (
                    "sizeof.security_context_service_st",
                    size_of::<SecurityContextService>(),
                ),
                (
                    "security_context_service_st.thd_get_security_context",
                    offset_of!(SecurityContextService, thd_get_security_context),
                ),
                (
                    "security_context_service_st.security_context_lookup",
                    offset_of!(SecurityContextService, security_context_lookup),
                ),
                (
                    "security_context_service_st.security_context_get_option",
                    offset_of!(SecurityContextService, security_context_get_option),
                ),
                (
                    "srv_session_info_service_st.get_thd",
                    offset_of!(SrvSessionInfoService, get_thd),
                ),
            ];
            for (key, value) in ours {
                assert_eq!(Some(&(value as i64)), n.get(key), "{release}: {key}");
            }
            assert!(
                size_of::<SrvSessionInfoService>() as i64
                    <= n["sizeof.srv_session_info_service_st"]
            );
        }
    }
}
