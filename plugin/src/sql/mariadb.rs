//! MariaDB's SQL service (include/mysql/service_sql.h, MariaDB >= 10.7):
//! queries on a local, internal connection of the server.

use crate::error::Failure;
use crate::server;
use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void, CStr};

/// Prefix of `struct sql_service_st` (service_sql.h, MariaDB 10.11); only the
/// members used are named, the order is the header's.
#[repr(C)]
struct SqlService {
    init: unsafe extern "C" fn(*mut c_void) -> *mut c_void,
    connect_local: unsafe extern "C" fn(*mut c_void) -> *mut c_void,
    _real_connect: *const c_void,
    errno: unsafe extern "C" fn(*mut c_void) -> c_uint,
    error: unsafe extern "C" fn(*mut c_void) -> *const c_char,
    real_query: unsafe extern "C" fn(*mut c_void, *const c_char, c_ulong) -> c_int,
    _affected_rows: *const c_void,
    _num_rows: *const c_void,
    store_result: unsafe extern "C" fn(*mut c_void) -> *mut c_void,
    free_result: unsafe extern "C" fn(*mut c_void),
    fetch_row: unsafe extern "C" fn(*mut c_void) -> *mut *mut c_char,
    close: unsafe extern "C" fn(*mut c_void),
}

/// An open internal connection; closed on drop.
pub struct Local {
    svc: &'static SqlService,
    mysql: *mut c_void,
}

impl Local {
    pub fn open() -> Result<Local, Failure> {
        let p = server::get().sql_service as *const SqlService;
        if p.is_null() {
            return Err(Failure::new(libc::ENOSYS, "server has no SQL service"));
        }
        // SAFETY: sql_service_handler is the server's static sql_service_st,
        // alive for the process; its layout starts as declared above.
        let svc: &'static SqlService = unsafe { &*p };
        // SAFETY: mysql_init(NULL) allocates a handle; connect_local attaches
        // it to a new internal session of this server.
        unsafe {
            let m = (svc.init)(std::ptr::null_mut());
            if m.is_null() {
                return Err(Failure::new(libc::ENOMEM, "SQL service: mysql_init failed"));
            }
            if (svc.connect_local)(m).is_null() {
                let msg = server::c_to_string((svc.error)(m)).unwrap_or_default();
                (svc.close)(m);
                return Err(Failure::new(
                    libc::EIO,
                    format!("SQL service: cannot connect: {msg}"),
                ));
            }
            Ok(Local { svc, mysql: m })
        }
    }

    /// All rows of `sql`, NULL columns as None.
    pub fn query(&self, sql: &str) -> Result<super::Rows, Failure> {
        // SAFETY: self.mysql is a connected handle; the result set is freed
        // before returning; row pointers are only read before the next fetch.
        unsafe {
            if (self.svc.real_query)(
                self.mysql,
                sql.as_ptr() as *const c_char,
                sql.len() as c_ulong,
            ) != 0
            {
                let msg = server::c_to_string((self.svc.error)(self.mysql)).unwrap_or_default();
                let no = (self.svc.errno)(self.mysql);
                return Err(Failure::new(
                    libc::EIO,
                    format!("query '{sql}' failed: {no} {msg}"),
                ));
            }
            let res = (self.svc.store_result)(self.mysql);
            if res.is_null() {
                return Ok(Vec::new());
            }
            // Every query here selects one column.
            let ncols = 1;
            let mut rows = Vec::new();
            loop {
                let row = (self.svc.fetch_row)(res);
                if row.is_null() {
                    break;
                }
                let mut cols = Vec::with_capacity(ncols);
                for i in 0..ncols {
                    let c = *row.add(i);
                    cols.push(if c.is_null() {
                        None
                    } else {
                        Some(CStr::from_ptr(c).to_string_lossy().into_owned())
                    });
                }
                rows.push(cols);
            }
            (self.svc.free_result)(res);
            Ok(rows)
        }
    }

    pub fn var(&self, name: &str) -> Option<String> {
        self.query(&format!("SELECT @@{name}"))
            .ok()?
            .into_iter()
            .next()?
            .into_iter()
            .next()?
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        // SAFETY: closes the handle opened in open(), once.
        unsafe { (self.svc.close)(self.mysql) };
    }
}
