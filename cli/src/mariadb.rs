//! A connection to the server through libmariadb, the library of the
//! `mariadb` client: it takes the option-file lines `options` collected
//! (as libmariadb options), speaks the same protocols and authentication
//! plugins.

use crate::error::{Error, Exit, Result};
use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void, CStr, CString};

#[repr(C)]
struct Mysql {
    _private: [u8; 0],
}
#[repr(C)]
struct MysqlRes {
    _private: [u8; 0],
}

const OPT_CONNECT_TIMEOUT: c_int = 0;
const READ_DEFAULT_FILE: c_int = 4;
const OPT_PROTOCOL: c_int = 9;
const PROTOCOL_TCP: c_uint = 1;

extern "C" {
    fn mysql_server_init(argc: c_int, argv: *mut *mut c_char, groups: *mut *mut c_char) -> c_int;
    fn mysql_init(m: *mut Mysql) -> *mut Mysql;
    fn mysql_options(m: *mut Mysql, opt: c_int, arg: *const c_void) -> c_int;
    #[allow(clippy::too_many_arguments)]
    fn mysql_real_connect(
        m: *mut Mysql,
        host: *const c_char,
        user: *const c_char,
        passwd: *const c_char,
        db: *const c_char,
        port: c_uint,
        socket: *const c_char,
        flags: c_ulong,
    ) -> *mut Mysql;
    fn mysql_real_query(m: *mut Mysql, q: *const c_char, len: c_ulong) -> c_int;
    fn mysql_store_result(m: *mut Mysql) -> *mut MysqlRes;
    fn mysql_num_fields(r: *mut MysqlRes) -> c_uint;
    fn mysql_fetch_row(r: *mut MysqlRes) -> *mut *mut c_char;
    fn mysql_fetch_lengths(r: *mut MysqlRes) -> *mut c_ulong;
    fn mysql_free_result(r: *mut MysqlRes);
    fn mysql_errno(m: *mut Mysql) -> c_uint;
    fn mysql_error(m: *mut Mysql) -> *const c_char;
    fn mysql_thread_id(m: *mut Mysql) -> c_ulong;
    fn mysql_close(m: *mut Mysql);
}

/// Where and how to connect (None: from the option files, then libmariadb's
/// defaults).
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    pub socket: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Lines of the option files' client groups (`options::collect`).
    pub option_lines: Vec<String>,
}

/// libmariadb must be initialised once before threads use it.
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: called once, before any other libmariadb function.
    ONCE.call_once(|| unsafe {
        mysql_server_init(0, std::ptr::null_mut(), std::ptr::null_mut());
    });
}

/// One server error: its number and text.
#[derive(Debug, Clone)]
pub struct SqlError {
    pub code: u32,
    pub text: String,
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ERROR {}: {}", self.code, self.text)
    }
}

pub struct Conn {
    m: *mut Mysql,
}

// SAFETY: a MYSQL handle may move between threads as long as one thread uses
// it at a time, which &mut self on every call guarantees.
unsafe impl Send for Conn {}

fn cstr(what: &str, s: &Option<String>) -> Result<Option<CString>> {
    s.as_ref()
        .map(|v| {
            CString::new(v.as_str())
                .map_err(|_| Error::new(Exit::Usage, format!("{what} contains a NUL byte")))
        })
        .transpose()
}

fn ptr(c: &Option<CString>) -> *const c_char {
    c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())
}

impl Conn {
    pub fn connect(o: &ConnectOptions) -> Result<Conn> {
        init();
        // SAFETY: mysql_init(NULL) allocates a handle or returns NULL.
        let m = unsafe { mysql_init(std::ptr::null_mut()) };
        if m.is_null() {
            return Err(Error::new(Exit::Connect, "mysql_init: out of memory"));
        }
        let conn = Conn { m };
        // Kept open until the connect has read it.
        let (_memfd, file) = match o.option_lines.is_empty() {
            true => (None, None),
            false => {
                let (f, path) = option_file(&o.option_lines)?;
                (Some(f), Some(path))
            }
        };
        let timeout: c_uint = 10;
        // SAFETY: m is a valid handle; each argument points to a value of the
        // type the option takes, alive during the call (libmariadb copies it).
        unsafe {
            mysql_options(
                m,
                OPT_CONNECT_TIMEOUT,
                &timeout as *const c_uint as *const c_void,
            );
            if let Some(f) = &file {
                mysql_options(m, READ_DEFAULT_FILE, f.as_ptr() as *const c_void);
            }
            if o.host.is_some() && o.socket.is_none() {
                let tcp = PROTOCOL_TCP;
                mysql_options(m, OPT_PROTOCOL, &tcp as *const c_uint as *const c_void);
            }
        }
        let host = cstr("--host", &o.host)?;
        let user = cstr("--user", &o.user)?;
        let pass = cstr("--password", &o.password)?;
        let sock = cstr("--socket", &o.socket)?;
        // SAFETY: valid handle; NULL arguments mean "from the options".
        let r = unsafe {
            mysql_real_connect(
                m,
                ptr(&host),
                ptr(&user),
                ptr(&pass),
                std::ptr::null(),
                c_uint::from(o.port.unwrap_or(0)),
                ptr(&sock),
                0,
            )
        };
        if r.is_null() {
            let e = conn.last_error();
            return Err(Error::new(
                Exit::Connect,
                format!("cannot connect to the server: {e}"),
            ));
        }
        Ok(conn)
    }

    fn last_error(&self) -> SqlError {
        // SAFETY: valid handle; mysql_error returns a NUL-terminated string
        // owned by the handle.
        unsafe {
            SqlError {
                code: mysql_errno(self.m),
                text: CStr::from_ptr(mysql_error(self.m))
                    .to_string_lossy()
                    .into_owned(),
            }
        }
    }

    pub fn thread_id(&self) -> u64 {
        // SAFETY: valid handle.
        (unsafe { mysql_thread_id(self.m) }) as u64
    }

    /// Runs one statement; returns its rows (NULL as None).
    pub fn query(&mut self, sql: &str) -> std::result::Result<Vec<Vec<Option<String>>>, SqlError> {
        // SAFETY: valid handle; sql is valid for len bytes.
        let rc = unsafe {
            mysql_real_query(self.m, sql.as_ptr() as *const c_char, sql.len() as c_ulong)
        };
        if rc != 0 {
            return Err(self.last_error());
        }
        // SAFETY: valid handle after a successful query.
        let res = unsafe { mysql_store_result(self.m) };
        if res.is_null() {
            // SAFETY: valid handle.
            if unsafe { mysql_errno(self.m) } != 0 {
                return Err(self.last_error());
            }
            return Ok(Vec::new());
        }
        let mut rows = Vec::new();
        // SAFETY: res is a stored result; each row has num_fields values
        // with the lengths mysql_fetch_lengths gives; freed once at the end.
        unsafe {
            let n = mysql_num_fields(res) as usize;
            loop {
                let row = mysql_fetch_row(res);
                if row.is_null() {
                    break;
                }
                let lens = std::slice::from_raw_parts(mysql_fetch_lengths(res), n);
                let vals = std::slice::from_raw_parts(row, n);
                rows.push(
                    vals.iter()
                        .zip(lens)
                        .map(|(&v, &l)| {
                            (!v.is_null()).then(|| {
                                let b = std::slice::from_raw_parts(v as *const u8, l as usize);
                                String::from_utf8_lossy(b).into_owned()
                            })
                        })
                        .collect(),
                );
            }
            mysql_free_result(res);
        }
        Ok(rows)
    }

    /// The first column of the first row, if any.
    pub fn value(&mut self, sql: &str) -> std::result::Result<Option<String>, SqlError> {
        Ok(self
            .query(sql)?
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten()))
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // SAFETY: the handle came from mysql_init and is closed once.
        unsafe { mysql_close(self.m) };
    }
}

/// An anonymous file (memfd) holding `lines` under [client], and its
/// /proc/self/fd path for MYSQL_READ_DEFAULT_FILE: nothing on disk holds the
/// password it may contain.
fn option_file(lines: &[String]) -> Result<(std::fs::File, CString)> {
    use std::io::Write;
    use std::os::unix::io::{AsRawFd, FromRawFd};
    let fail = |e: std::io::Error| {
        Error::new(
            Exit::Usage,
            format!("cannot pass the option files' settings to libmariadb: {e}"),
        )
    };
    let name = c"tokubackup-options";
    // The system call: glibc has memfd_create only since 2.27 (the
    // tarball's build links against 2.17).
    // SAFETY: name is NUL-terminated; the returned descriptor is ours.
    let fd = unsafe { libc::syscall(libc::SYS_memfd_create, name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(fail(std::io::Error::last_os_error()));
    }
    // SAFETY: fd was just created and is owned by nothing else.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd as i32) };
    let mut text = String::from("[client]\n");
    for l in lines {
        text.push_str(l);
        text.push('\n');
    }
    f.write_all(text.as_bytes()).map_err(fail)?;
    let path = CString::new(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap_or_default();
    Ok((f, path))
}

/// A string literal for SQL ('...' with quotes and backslashes escaped).
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn quote_escapes() {
        assert_eq!(super::quote(r"a'b\c"), r"'a''b\\c'");
    }
}
