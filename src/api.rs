//! The C API (Percona TokuBackup's): tokubackup_create_backup,
//! tokubackup_throttle_backup, tokubackup_version_string.

use crate::boundary::boundary;
use crate::error::{Error, Side};
use crate::gate::{self, as_application};
use crate::namespace::Root;
use crate::session::{self, Exclude, ExcludeFn, Session};
use crate::sys;
use rustix::fd::AsFd;
use rustix::fs::{self, AtFlags};
use rustix::io::Errno;
use std::ffi::{CStr, CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::time::{Duration, Instant};

pub type PollFn = unsafe extern "C" fn(f32, *const libc::c_char, *mut libc::c_void) -> libc::c_int;
pub type ErrorFn = unsafe extern "C" fn(libc::c_int, *const libc::c_char, *mut libc::c_void);
pub type StopFn = unsafe extern "C" fn(*mut libc::c_void);

static RUNNING: AtomicBool = AtomicBool::new(false);

/// How often the poll callback is called (the contract says at least once a
/// second).
const POLL_EVERY: Duration = Duration::from_millis(250);
/// How long capture may wait, when starting, for a file operation that
/// began before it.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The most progress the poll callback is shown: Percona's callers test
/// that it stays below 1.0, which its library never reached (the largest
/// f32 below 1.0).
const MOST_PROGRESS: f32 = 1.0 - f32::EPSILON / 2.0;

pub struct Callbacks {
    pub poll: Option<(PollFn, *mut libc::c_void)>,
    pub error: Option<(ErrorFn, *mut libc::c_void)>,
    pub before_stop: Option<(StopFn, *mut libc::c_void)>,
    pub after_stop: Option<(StopFn, *mut libc::c_void)>,
}

impl Callbacks {
    fn poll(&self, progress: f32, text: &str) -> libc::c_int {
        let Some((f, extra)) = self.poll else {
            return 0;
        };
        let c = CString::new(text.replace('\0', " ")).unwrap_or_default();
        // SAFETY: the caller's callback, with its own extra pointer and a
        // string valid during the call, on the caller's thread.
        as_application(|| unsafe { f(progress.min(MOST_PROGRESS), c.as_ptr(), extra) })
    }

    fn error(&self, errno: i32, text: &str) {
        let Some((f, extra)) = self.error else { return };
        let c = CString::new(text.replace('\0', " ")).unwrap_or_default();
        // SAFETY: the caller's error callback (Percona's signature), with
        // the extra pointer it gave for it and a NUL-terminated string that
        // lives across the call, on the thread that called create_backup.
        as_application(|| unsafe { f(errno, c.as_ptr(), extra) })
    }

    fn stop(which: &Option<(StopFn, *mut libc::c_void)>) {
        if let Some((f, extra)) = *which {
            // SAFETY: the caller's stop-capture callback, with the extra
            // pointer it gave for it, on the thread that called create_backup.
            as_application(|| unsafe { f(extra) })
        }
    }
}

/// An error before any copying starts, about `side`.
fn refuse(side: Side, e: Errno, msg: String) -> Error {
    Error::text(side, e.raw_os_error(), msg)
}

fn dir_arg(p: *const libc::c_char, what: &str, i: usize) -> Result<PathBuf, Error> {
    if p.is_null() {
        return Err(Error::text(
            Side::Engine,
            libc::EINVAL,
            format!("{what} directory #{i} is NULL"),
        ));
    }
    // SAFETY: the caller passes NUL-terminated strings (API contract).
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    if bytes.is_empty() {
        return Err(Error::text(
            Side::Engine,
            libc::EINVAL,
            format!("{what} directory #{i} is an empty string"),
        ));
    }
    Ok(PathBuf::from(OsStr::from_bytes(bytes)))
}

/// Where a destination will be once created, resolved the way the kernel
/// will resolve it: existing parts through their symbolic links, `..` from
/// there, missing parts as written.
fn resolve_dest(dest: &Path) -> Result<PathBuf, Error> {
    crate::dest_path::resolve(
        dest,
        || sys::canonical_dir(fs::CWD, Path::new(".")),
        |p| sys::canonical_dir(fs::CWD, p),
        // A missing part, or one that is not a directory (open_dest says
        // which).
        |e| matches!(*e, Errno::NOENT | Errno::NOTDIR),
    )
    .map_err(|e| {
        refuse(
            Side::Destination,
            e,
            format!("destination {}: {}", dest.display(), sys::strerror(e)),
        )
    })
}

fn overlaps(a: &Path, b: &Path) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Open a destination, which must be an existing empty directory. The
/// numbers are Percona TokuBackup's, which its callers test: the stat error
/// (ENOENT when absent), EINVAL when it is not a directory or not empty.
fn open_dest(dest: &Path, shown: &Path) -> Result<sys::OwnFd, Error> {
    let fail = |e: Errno| {
        refuse(
            Side::Destination,
            e,
            format!("destination {}: {}", shown.display(), sys::strerror(e)),
        )
    };
    let st = fs::statat(fs::CWD, dest, AtFlags::empty()).map_err(|e| match e {
        Errno::NOENT => refuse(
            Side::Destination,
            e,
            format!(
                "destination {} does not exist; create it (an empty directory) first",
                shown.display()
            ),
        ),
        e => fail(e),
    })?;
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Err(Error::text(
            Side::Destination,
            libc::EINVAL,
            format!(
                "destination {} exists and is not a directory",
                shown.display()
            ),
        ));
    }
    let dir = sys::open_dir(dest).map_err(fail)?;
    if !sys::list_dir(dir.as_fd()).map_err(fail)?.is_empty() {
        return Err(Error::text(
            Side::Destination,
            libc::EINVAL,
            format!("destination {} is not empty", shown.display()),
        ));
    }
    Ok(dir)
}

/// What this process does that no hook can see, which would make a backup
/// silently wrong: io_uring or libaio contexts, shared writable mappings of
/// files in the sources.
fn check_invisible_io(sources: &[PathBuf]) -> Result<(), Error> {
    if let Ok(dir) = sys::open_dir(Path::new("/proc/self/fd")) {
        for name in sys::list_dir(dir.as_fd()).unwrap_or_default() {
            let link = Path::new("/proc/self/fd").join(&name);
            if let Ok(target) = fs::readlinkat(fs::CWD, &link, Vec::new()) {
                let followed = || {
                    name.to_str()
                        .and_then(|n| n.parse().ok())
                        .is_some_and(crate::uring::is_followed)
                };
                if target.as_bytes() == b"anon_inode:[io_uring]" && !followed() {
                    return Err(Error::text(
            Side::Engine,
            libc::EOPNOTSUPP,
                        "this process uses an io_uring ring the library does not follow, whose writes cannot be captured; start it with libHotBackup.so.1 preloaded from the start, or switch io_uring off (for MariaDB: innodb_use_native_aio=0)",
                    ));
                }
            }
        }
    }
    let maps = std::fs::read("/proc/self/maps").unwrap_or_default();
    for line in maps.split(|&b| b == b'\n') {
        let fields: Vec<&[u8]> = line
            .split(|&b| b == b' ')
            .filter(|f| !f.is_empty())
            .collect();
        if fields.len() < 6 {
            continue;
        }
        let path = Path::new(OsStr::from_bytes(fields[5]));
        if fields[5].starts_with(b"/[aio]") {
            return Err(Error::text(
            Side::Engine,
            libc::EOPNOTSUPP,
                "this process uses Linux native AIO (libaio), whose writes cannot be captured; start it with libHotBackup.so.1 preloaded from the start (which turns it off), or switch it off (for MariaDB: innodb_use_native_aio=0)",
            ));
        }
        if fields[1].len() >= 4
            && fields[1][1] == b'w'
            && fields[1][3] == b's'
            && sources.iter().any(|s| path.starts_with(s))
        {
            return Err(Error::text(
            Side::Engine,
            libc::EOPNOTSUPP,
                format!("{} is mapped shared and writable by this process; stores through a mapping cannot be captured", path.display()),
            ));
        }
    }
    Ok(())
}

/// Validate the arguments and the destinations, build the session.
fn prepare(
    sources: &[PathBuf],
    dests: &[PathBuf],
    exclude: Option<Exclude>,
) -> Result<Session, Error> {
    let mut canon_src = Vec::new();
    for s in sources {
        let c = sys::canonical_dir(fs::CWD, s).map_err(|e| {
            refuse(
                Side::Source,
                e,
                format!("source directory {}: {}", s.display(), sys::strerror(e)),
            )
        })?;
        canon_src.push(c);
    }
    let mut canon_dest = Vec::new();
    for d in dests {
        canon_dest.push(resolve_dest(d)?);
    }
    for (i, a) in canon_src.iter().enumerate() {
        for (j, b) in canon_src.iter().enumerate().skip(i + 1) {
            if overlaps(a, b) {
                return Err(Error::text(
                    Side::Engine,
                    libc::EINVAL,
                    format!(
                        "source directories {} and {} overlap",
                        sources[i].display(),
                        sources[j].display()
                    ),
                ));
            }
        }
        for (j, d) in canon_dest.iter().enumerate() {
            if overlaps(a, d) {
                return Err(Error::text(
                    Side::Engine,
                    libc::EINVAL,
                    format!(
                        "destination {} overlaps source {} (resolved: {} and {})",
                        dests[j].display(),
                        sources[i].display(),
                        d.display(),
                        a.display()
                    ),
                ));
            }
        }
    }
    for (i, a) in canon_dest.iter().enumerate() {
        for (j, b) in canon_dest.iter().enumerate().skip(i + 1) {
            if overlaps(a, b) {
                return Err(Error::text(
                    Side::Engine,
                    libc::EINVAL,
                    format!(
                        "destinations {} and {} overlap",
                        dests[i].display(),
                        dests[j].display()
                    ),
                ));
            }
        }
    }
    check_invisible_io(&canon_src)?;
    let mut roots = Vec::new();
    for (i, d) in canon_dest.iter().enumerate() {
        roots.push(Root {
            src: canon_src[i].clone(),
            dest: d.clone(),
            dest_dir: open_dest(d, &dests[i])?,
        });
    }
    Ok(Session::new(roots, exclude))
}

/// The copy: the walk, then `threads` threads taking queued files.
fn copy(s: &Session, threads: usize) {
    let _lib = gate::LibraryScope::enter();
    if let Err(e) = crate::copier::walk(s) {
        s.fail(e);
        return;
    }
    std::thread::scope(|inner| {
        for _ in 1..threads {
            let _ = std::thread::Builder::new()
                .name("hotbackup-copy".into())
                .spawn_scoped(inner, || {
                    let _lib = gate::LibraryScope::enter();
                    crate::copier::run_queue(s);
                });
        }
        crate::copier::run_queue(s);
    });
}

/// Copies, then stops capture. Returns 0 or the first error number.
fn run(s: &Session, cb: &Callbacks, threads: usize) -> libc::c_int {
    let mut abort_code = 0;
    let mut copy_done = false;
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("hotbackup-copy".into())
            .spawn_scoped(scope, || copy(s, threads));
        let worker = match worker {
            Ok(w) => w,
            Err(e) => {
                s.fail_raw(
                    e.raw_os_error().unwrap_or(libc::EAGAIN),
                    format!("cannot start the copy thread: {e}"),
                );
                return;
            }
        };
        let mut last_poll = Instant::now() - POLL_EVERY;
        while !worker.is_finished() {
            if last_poll.elapsed() >= POLL_EVERY {
                let (frac, text) = s.progress.report();
                let r = cb.poll(frac, &text);
                last_poll = Instant::now();
                if r != 0 && abort_code == 0 {
                    abort_code = r;
                    s.abort();
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if worker.join().is_err() {
            s.fail_raw(
                libc::EIO,
                "internal error in libHotBackup's copy thread".into(),
            );
        }
        copy_done = !s.stopping();
    });
    if copy_done {
        let (frac, text) = s.progress.report();
        let r = cb.poll(frac, &format!("copy complete, stopping capture: {text}"));
        if r != 0 {
            abort_code = r;
            copy_done = false;
        }
    }
    if copy_done {
        Callbacks::stop(&cb.before_stop);
        if crate::verify::enabled() {
            check_snapshot(s);
        } else {
            gate::stop_capture();
            s.write_behind.drain();
        }
        Callbacks::stop(&cb.after_stop);
    } else {
        gate::stop_capture();
    }
    if abort_code != 0 {
        return abort_code;
    }
    0
}

/// The snapshot check: hold every change still, compare the trees with
/// their copies, stop capture, let changes go on. Differences fail the
/// backup.
fn check_snapshot(s: &Session) {
    let _lib = gate::LibraryScope::enter();
    gate::freeze();
    s.write_behind.drain();
    let began = Instant::now();
    let differences = catch_unwind(AssertUnwindSafe(|| crate::verify::compare(s)))
        .unwrap_or_else(|_| vec!["snapshot check: internal error".into()]);
    gate::stop_capture();
    gate::thaw();
    crate::logging::info(&format!(
        "snapshot check: {} difference(s), changes held for {:.2} s",
        differences.len(),
        began.elapsed().as_secs_f64()
    ));
    for d in differences {
        s.fail_raw(libc::EIO, d);
    }
}

fn env_threads() -> usize {
    std::env::var("HOTBACKUP_COPY_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| (1..=64).contains(&n))
        .unwrap_or(2)
}

/// Tell the caller (and the log) about an error; its errno.
fn report(cb: &Callbacks, e: &Error) -> libc::c_int {
    let msg = e.to_string();
    crate::logging::error(&match e.side() {
        Side::Source => format!("source: {msg}"),
        Side::Destination => format!("destination: {msg}"),
        Side::Engine => msg.clone(),
    });
    cb.error(e.errno(), &msg);
    e.errno()
}

fn create_backup(
    sources: &[PathBuf],
    dests: &[PathBuf],
    cb: &Callbacks,
    exclude: Option<Exclude>,
) -> libc::c_int {
    if RUNNING
        .compare_exchange(false, true, SeqCst, SeqCst)
        .is_err()
    {
        return report(
            cb,
            &Error::text(
                Side::Engine,
                libc::EBUSY,
                "a backup is already running in this process",
            ),
        );
    }
    let result = match prepare(sources, dests, exclude) {
        Ok(session) => backup(session, cb),
        Err(e) => report(cb, &e),
    };
    RUNNING.store(false, SeqCst);
    result
}

/// Run a prepared backup: capture on, copy, capture off, report.
fn backup(session: Session, cb: &Callbacks) -> libc::c_int {
    crate::logging::info(&format!(
        "backup started: {}",
        session
            .roots
            .iter()
            .map(|r| format!("{} -> {}", r.src.display(), r.dest.display()))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let began = Instant::now();
    crate::boundary::arm_test_panic();
    let ptr = session::install(Box::new(session));
    if let Err(e) = start_capture() {
        // SAFETY: start_capture leaves capture off when it fails, so no hook
        // holds the session.
        drop(unsafe { session::uninstall(ptr) });
        return report(cb, &e);
    }
    // SAFETY: the session stays installed (and so alive) until `uninstall`
    // below, after this scope has joined the write-behind thread and `run`
    // its copy threads.
    let s: &Session = unsafe { &*ptr };
    let code = std::thread::scope(|scope| {
        // Without the thread, mirrors write the destinations themselves.
        if std::env::var_os("HOTBACKUP_WRITE_BEHIND").is_none_or(|v| v != "off") {
            let _ = std::thread::Builder::new()
                .name("hotbackup-write".into())
                .spawn_scoped(scope, || write_behind(s));
        }
        let code = run(s, cb, env_threads());
        s.write_behind.close();
        code
    });
    // SAFETY: `run` stopped capture (gate::stop_capture) on every path,
    // and joined every copy thread; the scope joined the write-behind one.
    let s = unsafe { session::uninstall(ptr) };
    finish(s, code, began, cb)
}

/// The backup thread that writes mirrored bytes to the destinations.
fn write_behind(s: &Session) {
    let _lib = gate::LibraryScope::enter();
    let fail =
        |file: &crate::source_file::SourceFile, e| s.fail(Error::dest("write", s.dest_of(file), e));
    if catch_unwind(AssertUnwindSafe(|| s.write_behind.run(fail, || s.failed()))).is_err() {
        s.fail_raw(
            libc::EIO,
            "internal error in libHotBackup's write-behind thread".into(),
        );
    }
}

/// Capture on, then no call or io_uring write from before it still in
/// flight: either failing leaves capture off.
fn start_capture() -> Result<(), Error> {
    gate::start_capture(START_TIMEOUT)
        .map_err(|stuck| {
            (
                libc::ETIMEDOUT,
                format!(
                    "a thread stayed inside a file operation (descriptor {}) for {:?}",
                    stuck.what, stuck.waited
                ),
            )
        })
        .and_then(|()| {
            crate::uring::wait_native(START_TIMEOUT).inspect_err(|_| gate::stop_capture())
        })
        .map_err(|(code, msg)| {
            Error::text(
                Side::Engine,
                code,
                format!("capture could not start: {msg}"),
            )
        })
}

/// After capture stopped: sync the destinations of a backup that
/// succeeded, report every error; the result for the caller.
fn finish(s: Box<Session>, code: libc::c_int, began: Instant, cb: &Callbacks) -> libc::c_int {
    let mut errors = s.take_errors();
    if errors.is_empty() && code == 0 {
        for root in &s.roots {
            if let Err(e) = fs::syncfs(root.dest_dir.as_fd()) {
                errors.push(Error::dest("sync destination", &root.dest, e));
            }
        }
    }
    let (done, total) = s.progress.bytes();
    drop(s);
    for e in &errors {
        report(cb, e);
    }
    if let Some(e) = errors.first() {
        return e.errno();
    }
    if code != 0 {
        crate::logging::info(&format!("backup aborted by its caller (code {code})"));
        return code;
    }
    crate::logging::info(&format!(
        "backup complete: {done} of {total} bytes copied in {:.1} s",
        began.elapsed().as_secs_f64()
    ));
    0
}

pub fn after_fork_child() {
    RUNNING.store(false, SeqCst);
}

/// # Safety
/// Percona TokuBackup's contract: arrays of `dir_count` NUL-terminated
/// strings; callbacks valid for the duration of the call.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn tokubackup_create_backup(
    source_dirs: *const *const libc::c_char,
    dest_dirs: *const *const libc::c_char,
    dir_count: libc::c_int,
    poll_fun: Option<PollFn>,
    poll_extra: *mut libc::c_void,
    error_fun: Option<ErrorFn>,
    error_extra: *mut libc::c_void,
    exclude_fun: Option<ExcludeFn>,
    exclude_extra: *mut libc::c_void,
    before_stop_capture: Option<StopFn>,
    bsc_extra: *mut libc::c_void,
    after_stop_capture: Option<StopFn>,
    asc_extra: *mut libc::c_void,
) -> libc::c_int {
    let cb = Callbacks {
        poll: poll_fun.map(|f| (f, poll_extra)),
        error: error_fun.map(|f| (f, error_extra)),
        before_stop: before_stop_capture.map(|f| (f, bsc_extra)),
        after_stop: after_stop_capture.map(|f| (f, asc_extra)),
    };
    let body = || {
        if source_dirs.is_null() || dest_dirs.is_null() || dir_count <= 0 {
            let msg = format!(
                "invalid arguments: {} directories, source list {:?}, destination list {:?}",
                dir_count, source_dirs, dest_dirs
            );
            cb.error(libc::EINVAL, &msg);
            return libc::EINVAL;
        }
        let mut sources = Vec::new();
        let mut dests = Vec::new();
        for i in 0..dir_count as usize {
            // SAFETY: the caller's arrays hold `dir_count` entries.
            let (s, d) = unsafe { (*source_dirs.add(i), *dest_dirs.add(i)) };
            match dir_arg(s, "source", i).and_then(|s| Ok((s, dir_arg(d, "destination", i)?))) {
                Ok((s, d)) => {
                    sources.push(s);
                    dests.push(d);
                }
                Err(e) => {
                    cb.error(e.errno(), &e.to_string());
                    return e.errno();
                }
            }
        }
        let exclude = exclude_fun.map(|fun| Exclude {
            fun,
            extra: exclude_extra,
        });
        create_backup(&sources, &dests, &cb, exclude)
    };
    boundary!("tokubackup_create_backup", |_made| body(), after_panic(&cb))
}

/// A panic in the backup: capture off, the process free to run another.
fn after_panic(cb: &Callbacks) -> libc::c_int {
    gate::stop_capture();
    RUNNING.store(false, SeqCst);
    let msg = "internal error in libHotBackup: the backup panicked (see the process's stderr)";
    crate::logging::error(msg);
    cb.error(libc::EIO, msg);
    libc::EIO
}

#[no_mangle]
pub extern "C" fn tokubackup_throttle_backup(bytes_per_second: libc::c_ulong) {
    boundary!(
        "tokubackup_throttle_backup",
        |_made| crate::throttle::set_rate(bytes_per_second),
        ()
    )
}

#[repr(transparent)]
pub struct VersionPtr(*const libc::c_char);
// SAFETY: points to an immutable static string.
unsafe impl Sync for VersionPtr {}

static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

#[no_mangle]
#[allow(non_upper_case_globals)]
pub static tokubackup_version_string: VersionPtr = VersionPtr(VERSION.as_ptr().cast());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_is_component_wise() {
        assert!(overlaps(
            Path::new("/data/mysql"),
            Path::new("/data/mysql/backup")
        ));
        assert!(overlaps(Path::new("/data/mysql"), Path::new("/data/mysql")));
        assert!(!overlaps(
            Path::new("/data/mysql"),
            Path::new("/data/mysql-backup")
        ));
    }

    #[test]
    fn resolve_dest_follows_existing_symlinks() {
        let tmp = std::env::temp_dir().join(format!("hb-resolve-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("real")).unwrap();
        std::os::unix::fs::symlink(tmp.join("real"), tmp.join("link")).unwrap();
        let canon = tmp.canonicalize().unwrap();
        assert_eq!(
            resolve_dest(&tmp.join("link/new/../b")).ok().unwrap(),
            canon.join("real/b")
        );
        // `..` after a symbolic link goes to the link target's parent.
        assert_eq!(
            resolve_dest(&tmp.join("link/../x")).ok().unwrap(),
            canon.join("x")
        );
        std::fs::create_dir_all(tmp.join("real/sub")).unwrap();
        std::os::unix::fs::symlink(tmp.join("real/sub"), tmp.join("deep")).unwrap();
        assert_eq!(
            resolve_dest(&tmp.join("deep/../y")).ok().unwrap(),
            canon.join("real/y")
        );
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn most_progress_is_the_float_just_below_one() {
        assert_eq!(MOST_PROGRESS.to_bits(), 1.0f32.to_bits() - 1);
    }

    #[test]
    fn version_string_is_cargo_version() {
        // SAFETY: VERSION is NUL-terminated.
        let v = unsafe { CStr::from_ptr(tokubackup_version_string.0) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
    }
}
