//! SQL in MySQL and Percona Server 5.7 / 8.0: a server session of the
//! srv_session service (include/mysql/service_srv_session.h) runs COM_QUERY
//! through the command service (service_command.h), which hands the result
//! to callbacks (`st_command_service_cbs`).
//!
//! The server binds both services to the plugin when it loads it
//! (`service`).

use super::service::bound;
use super::Rows;
use crate::abi::{ServerShared, Thd};
use crate::error::Failure;
use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void};

/// `VERSION_srv_session_service` and `VERSION_command` (service_versions.h,
/// 5.7 and 8.0).
pub const VERSION_SRV_SESSION: usize = 0x0100;
pub const VERSION_COMMAND: usize = 0x0100;
/// `COM_QUERY` of `enum enum_server_command`.
pub const COM_QUERY: c_int = 3;
/// `CS_TEXT_REPRESENTATION` of `enum cs_text_or_binary`.
pub const CS_TEXT_REPRESENTATION: c_int = 1;

type ErrorCb = unsafe extern "C" fn(*mut c_void, c_uint, *const c_char);

/// `struct srv_session_service_st`: 5.7 has these six members, 8.0 adds
/// `attach_session` after them.
#[repr(C)]
pub struct SrvSessionService {
    pub init_session_thread: *const c_void,
    pub deinit_session_thread: *const c_void,
    pub open_session: Option<unsafe extern "C" fn(Option<ErrorCb>, *mut c_void) -> *mut c_void>,
    pub detach_session: *const c_void,
    pub close_session: Option<unsafe extern "C" fn(*mut c_void) -> c_int>,
    pub server_is_available: Option<unsafe extern "C" fn() -> c_int>,
}

type RunCommand = unsafe extern "C" fn(
    *mut c_void,
    c_int,
    *const ComData,
    *const c_void,
    *const Callbacks,
    c_int,
    *mut c_void,
) -> c_int;

/// `struct command_service_st`.
#[repr(C)]
pub struct CommandService {
    pub run_command: Option<RunCommand>,
}

/// `union COM_DATA` as COM_QUERY reads it: `COM_QUERY_DATA` is
/// { query, length } in 5.7; 8.0 appends query attributes (a pointer and a
/// count, zero here: none). The union is larger; the server reads only the
/// member of the command.
#[repr(C)]
pub struct ComData {
    pub query: *const c_char,
    pub length: c_uint,
    pub rest: [u64; 6],
}

/// `struct st_send_field` (service_command.h): a column's metadata.
#[repr(C)]
pub struct SendField {
    pub db_name: *const c_char,
    pub table_name: *const c_char,
    pub org_table_name: *const c_char,
    pub col_name: *const c_char,
    pub org_col_name: *const c_char,
    pub length: c_ulong,
    pub charsetnr: c_uint,
    pub flags: c_uint,
    pub decimals: c_uint,
    pub type_: c_int,
}

type Ctx = *mut c_void;

/// `struct st_command_service_cbs` (the same 19 members in 5.7 and 8.0),
/// followed by null pointers: a server whose structure had grown would
/// copy them as absent callbacks, not read past the plugin's data.
#[repr(C)]
pub struct Callbacks {
    pub start_result_metadata: unsafe extern "C" fn(Ctx, c_uint, c_uint, *const c_void) -> c_int,
    pub field_metadata: unsafe extern "C" fn(Ctx, *const SendField, *const c_void) -> c_int,
    pub end_result_metadata: unsafe extern "C" fn(Ctx, c_uint, c_uint) -> c_int,
    pub start_row: unsafe extern "C" fn(Ctx) -> c_int,
    pub end_row: unsafe extern "C" fn(Ctx) -> c_int,
    pub abort_row: unsafe extern "C" fn(Ctx),
    pub get_client_capabilities: unsafe extern "C" fn(Ctx) -> c_ulong,
    pub get_null: unsafe extern "C" fn(Ctx) -> c_int,
    pub get_integer: unsafe extern "C" fn(Ctx, i64) -> c_int,
    pub get_longlong: unsafe extern "C" fn(Ctx, i64, c_uint) -> c_int,
    pub get_decimal: unsafe extern "C" fn(Ctx, *const c_void) -> c_int,
    pub get_double: unsafe extern "C" fn(Ctx, f64, u32) -> c_int,
    pub get_date: unsafe extern "C" fn(Ctx, *const c_void) -> c_int,
    pub get_time: unsafe extern "C" fn(Ctx, *const c_void, c_uint) -> c_int,
    pub get_datetime: unsafe extern "C" fn(Ctx, *const c_void, c_uint) -> c_int,
    pub get_string: unsafe extern "C" fn(Ctx, *const c_char, usize, *const c_void) -> c_int,
    pub handle_ok: unsafe extern "C" fn(Ctx, c_uint, c_uint, u64, u64, *const c_char),
    pub handle_error: unsafe extern "C" fn(Ctx, c_uint, *const c_char, *const c_char),
    pub shutdown: unsafe extern "C" fn(Ctx, c_int),
    pub absent: [*const c_void; 4],
}

/// The service pointers the server binds (see the module comment).
#[allow(non_upper_case_globals)]
#[no_mangle]
pub static srv_session_service: ServerShared<*const SrvSessionService> =
    ServerShared::new(VERSION_SRV_SESSION as *const SrvSessionService);
#[allow(non_upper_case_globals)]
#[no_mangle]
pub static command_service: ServerShared<*const CommandService> =
    ServerShared::new(VERSION_COMMAND as *const CommandService);

/// What the callbacks collected from one command.
#[derive(Default)]
struct Collector {
    columns: Vec<String>,
    rows: Rows,
    row: Option<Vec<Option<String>>>,
    error: Option<String>,
    ok: bool,
}

/// The collector behind a callback's context, inside the panic boundary;
/// `fail` is what the callback returns when it panics.
fn with<R>(ctx: Ctx, fail: R, f: impl FnOnce(&mut Collector) -> R) -> R {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // SAFETY: ctx is the &mut Collector passed to run_command, which
        // calls the callbacks on this thread before it returns.
        f(unsafe { &mut *(ctx as *mut Collector) })
    }))
    .unwrap_or(fail)
}

fn push(ctx: Ctx, v: Option<String>) -> c_int {
    with(ctx, 1, |c| match c.row.as_mut() {
        Some(r) => {
            r.push(v);
            0
        }
        None => {
            c.error = Some("a value outside a row".into());
            1
        }
    })
}

/// Copies a C string of the server.
///
/// # Safety
/// `p` is null or NUL-terminated and valid during the call.
unsafe fn text(p: *const c_char) -> String {
    // SAFETY: guaranteed by the caller.
    unsafe { crate::server::c_to_string(p) }.unwrap_or_default()
}

unsafe extern "C" fn start_result_metadata(
    ctx: Ctx,
    n: c_uint,
    _: c_uint,
    _: *const c_void,
) -> c_int {
    with(ctx, 1, |c| {
        c.columns = Vec::with_capacity(n as usize);
        0
    })
}
unsafe extern "C" fn field_metadata(ctx: Ctx, f: *const SendField, _: *const c_void) -> c_int {
    // SAFETY: the server passes a valid st_send_field during the call.
    let name = unsafe { f.as_ref().map(|f| text(f.col_name)) }.unwrap_or_default();
    with(ctx, 1, |c| {
        c.columns.push(name);
        0
    })
}
unsafe extern "C" fn end_result_metadata(_: Ctx, _: c_uint, _: c_uint) -> c_int {
    0
}
unsafe extern "C" fn start_row(ctx: Ctx) -> c_int {
    with(ctx, 1, |c| {
        c.row = Some(Vec::with_capacity(c.columns.len()));
        0
    })
}
unsafe extern "C" fn end_row(ctx: Ctx) -> c_int {
    with(ctx, 1, |c| match c.row.take() {
        Some(r) if r.len() == c.columns.len() => {
            c.rows.push(r);
            0
        }
        r => {
            let n = r.map_or(0, |r| r.len());
            c.error = Some(format!(
                "a row of {n} values for {} columns",
                c.columns.len()
            ));
            1
        }
    })
}
unsafe extern "C" fn abort_row(ctx: Ctx) {
    with(ctx, (), |c| c.row = None)
}
unsafe extern "C" fn get_client_capabilities(_: Ctx) -> c_ulong {
    0
}
unsafe extern "C" fn get_null(ctx: Ctx) -> c_int {
    push(ctx, None)
}
unsafe extern "C" fn get_integer(ctx: Ctx, v: i64) -> c_int {
    push(ctx, Some(v.to_string()))
}
unsafe extern "C" fn get_longlong(ctx: Ctx, v: i64, unsigned: c_uint) -> c_int {
    let s = if unsigned != 0 {
        (v as u64).to_string()
    } else {
        v.to_string()
    };
    push(ctx, Some(s))
}
unsafe extern "C" fn get_double(ctx: Ctx, v: f64, _: u32) -> c_int {
    push(ctx, Some(v.to_string()))
}
/// DECIMAL and temporal values: no statement here selects one.
unsafe extern "C" fn unsupported(ctx: Ctx, _: *const c_void) -> c_int {
    with(ctx, 1, |c| {
        c.error = Some("a DECIMAL or temporal value, which the plugin does not read".into());
        1
    })
}
unsafe extern "C" fn unsupported_with_decimals(ctx: Ctx, v: *const c_void, _: c_uint) -> c_int {
    // SAFETY: same contract as unsupported.
    unsafe { unsupported(ctx, v) }
}
unsafe extern "C" fn get_string(ctx: Ctx, p: *const c_char, len: usize, _: *const c_void) -> c_int {
    let v = if p.is_null() {
        String::new()
    } else {
        // SAFETY: the server passes `len` readable bytes at p.
        String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(p as *const u8, len) })
            .into_owned()
    };
    push(ctx, Some(v))
}
unsafe extern "C" fn handle_ok(ctx: Ctx, _: c_uint, _: c_uint, _: u64, _: u64, _: *const c_char) {
    with(ctx, (), |c| c.ok = true)
}
unsafe extern "C" fn handle_error(ctx: Ctx, no: c_uint, msg: *const c_char, state: *const c_char) {
    // SAFETY: NUL-terminated strings valid during the call.
    let (msg, state) = unsafe { (text(msg), text(state)) };
    with(ctx, (), |c| {
        c.error = Some(format!("error {no} ({state}): {msg}"))
    })
}
unsafe extern "C" fn shutdown(ctx: Ctx, server: c_int) {
    let why = if server != 0 {
        "server shutdown"
    } else {
        "session shut down"
    };
    with(ctx, (), |c| c.error = Some(why.into()))
}

static CALLBACKS: Callbacks = Callbacks {
    start_result_metadata,
    field_metadata,
    end_result_metadata,
    start_row,
    end_row,
    abort_row,
    get_client_capabilities,
    get_null,
    get_integer,
    get_longlong,
    get_decimal: unsupported,
    get_double,
    get_date: unsupported,
    get_time: unsupported_with_decimals,
    get_datetime: unsupported_with_decimals,
    get_string,
    handle_ok,
    handle_error,
    shutdown,
    absent: [std::ptr::null(); 4],
};

// SAFETY: CALLBACKS holds function pointers and null pointers only, never
// written after compilation.
unsafe impl Sync for Callbacks {}

/// Records the server's message when it cannot open the session.
unsafe extern "C" fn open_error(ctx: *mut c_void, no: c_uint, msg: *const c_char) {
    // SAFETY: NUL-terminated message valid during the call.
    let msg = unsafe { text(msg) };
    with(ctx, (), |c| c.error = Some(format!("error {no}: {msg}")))
}

/// An open server session; closed on drop.
pub struct Local {
    session: *mut c_void,
    close: unsafe extern "C" fn(*mut c_void) -> c_int,
    run: RunCommand,
}

impl Local {
    /// Opens a session of its own (the SET's session is busy running the
    /// statement; the command service restores it as current afterwards),
    /// running as the user who runs `thd`'s statement.
    pub fn open(thd: Thd) -> Result<Local, Failure> {
        let unavailable = |what: &str| {
            Failure::new(
                libc::ENOSYS,
                format!("no SQL in this server: the {what} service is not bound to the plugin"),
            )
        };
        let svc = bound(&srv_session_service).ok_or_else(|| unavailable("srv_session"))?;
        let cmd = bound(&command_service).ok_or_else(|| unavailable("command"))?;
        let (Some(open), Some(close), Some(run)) =
            (svc.open_session, svc.close_session, cmd.run_command)
        else {
            return Err(unavailable("srv_session or command"));
        };
        let mut c = Collector::default();
        // SAFETY: open_session takes an error callback and its context,
        // used only during the call (c outlives it).
        let session = unsafe { open(Some(open_error), &mut c as *mut Collector as *mut c_void) };
        if session.is_null() {
            let why = c.error.unwrap_or_else(|| "no reason given".into());
            return Err(Failure::new(
                libc::EIO,
                format!("cannot open a server session: {why}"),
            ));
        }
        let local = Local {
            session,
            close,
            run,
        };
        super::invoker::run_as_invoker(thd, session)
            .map_err(|why| Failure::new(libc::EACCES, format!("server session: {why}")))?;
        Ok(local)
    }

    /// All rows of `sql`.
    pub fn query(&self, sql: &str) -> Result<Rows, Failure> {
        let failed = |why: String| Failure::new(libc::EIO, format!("query '{sql}' failed: {why}"));
        let data = ComData {
            query: sql.as_ptr() as *const c_char,
            length: c_uint::try_from(sql.len()).map_err(|_| failed("too long".into()))?,
            rest: [0; 6],
        };
        let mut c = Collector::default();
        // SAFETY: the session is open; data, CALLBACKS and c outlive the
        // call, which invokes the callbacks on this thread before returning.
        let rc = unsafe {
            (self.run)(
                self.session,
                COM_QUERY,
                &data,
                // No client charset: the session keeps the utf8 it was
                // opened with (Srv_session::execute_command, 5.7 and 8.0).
                std::ptr::null(),
                &CALLBACKS,
                CS_TEXT_REPRESENTATION,
                &mut c as *mut Collector as *mut c_void,
            )
        };
        match (rc, c.error, c.ok) {
            (_, Some(why), _) => Err(failed(why)),
            (0, None, true) => Ok(c.rows),
            (0, None, false) => Err(failed("the server ended it without a result".into())),
            (rc, None, _) => Err(failed(format!("run_command returned {rc}"))),
        }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        // SAFETY: closes the session opened in open(), once.
        unsafe { (self.close)(self.session) };
    }
}

/// The service structures against each release's numbers
/// (plugin/tests/abi/, read from service_srv_session.h, service_command.h,
/// com_data.h and service_versions.h of the series).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::mysql_layout_tests::{numbers, RELEASES};
    use std::mem::{offset_of, size_of};

    #[test]
    fn service_layouts_match_every_measured_release_of_the_series() {
        let cbs = [
            "start_result_metadata",
            "field_metadata",
            "end_result_metadata",
            "start_row",
            "end_row",
            "abort_row",
            "get_client_capabilities",
            "get_null",
            "get_integer",
            "get_longlong",
            "get_decimal",
            "get_double",
            "get_date",
            "get_time",
            "get_datetime",
            "get_string",
            "handle_ok",
            "handle_error",
            "shutdown",
        ];
        for release in RELEASES {
            let n = numbers(release);
            let ours = [
                ("VERSION_srv_session_service", VERSION_SRV_SESSION),
                ("VERSION_command", VERSION_COMMAND),
                ("COM_QUERY", COM_QUERY as usize),
                ("CS_TEXT_REPRESENTATION", CS_TEXT_REPRESENTATION as usize),
                (
                    "srv_session_service_st.open_session",
                    offset_of!(SrvSessionService, open_session),
                ),
                (
                    "srv_session_service_st.close_session",
                    offset_of!(SrvSessionService, close_session),
                ),
                (
                    "srv_session_service_st.server_is_available",
                    offset_of!(SrvSessionService, server_is_available),
                ),
                (
                    "command_service_st.run_command",
                    offset_of!(CommandService, run_command),
                ),
                ("COM_QUERY_DATA.query", offset_of!(ComData, query)),
                ("COM_QUERY_DATA.length", offset_of!(ComData, length)),
                ("sizeof.st_send_field", size_of::<SendField>()),
                ("st_send_field.col_name", offset_of!(SendField, col_name)),
                (
                    "st_command_service_cbs.shutdown",
                    offset_of!(Callbacks, shutdown),
                ),
            ];
            for (key, value) in ours {
                assert_eq!(Some(&(value as i64)), n.get(key), "{release}: {key}");
            }
            // The server reads no further than its own structures.
            assert!(size_of::<SrvSessionService>() as i64 <= n["sizeof.srv_session_service_st"]);
            assert!(size_of::<CommandService>() as i64 <= n["sizeof.command_service_st"]);
            assert!(size_of::<Callbacks>() as i64 >= n["sizeof.st_command_service_cbs"]);
            // 8.0's query attributes, zero: none.
            if let Some(&p) = n.get("COM_QUERY_DATA.parameter_count") {
                assert!(p as usize + 8 <= size_of::<ComData>(), "{release}");
            }
            for (i, name) in cbs.iter().enumerate() {
                let key = format!("st_command_service_cbs.{name}");
                assert_eq!(Some(&(i as i64 * 8)), n.get(&key), "{release}: {key}");
            }
            assert_eq!(
                offset_of!(Callbacks, absent) as i64,
                n["sizeof.st_command_service_cbs"],
                "{release}: the callbacks end where the server's structure does"
            );
        }
    }
}
