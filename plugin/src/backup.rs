//! One backup, run by `SET tokudb_backup_dir` on the session's own thread.

use crate::abi::Thd;
use crate::error::Failure;
use crate::exclude::Exclude;
use crate::layout::SourceDir;
use crate::library::{self, Library};
use crate::manifest::{self, Manifest};
use crate::{binlog, destination, layout, server, settings, status};
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime};

/// One backup at a time in the server (the library refuses a second one
/// too; checking here gives a clearer message before anything is touched).
static RUNNING: AtomicBool = AtomicBool::new(false);

struct RunningGuard;

impl RunningGuard {
    fn acquire() -> Option<RunningGuard> {
        RUNNING
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| RunningGuard)
    }
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        RUNNING.store(false, Ordering::Release);
    }
}

/// What the session asked for, from its variables (sysvars).
pub struct Options {
    pub exclude: Option<String>,
    pub throttle: u64,
    /// The global tokudb_backup_allowed_prefix, if set.
    pub allowed_prefix: Option<String>,
}

/// Runs the backup and records its outcome in the status variables and
/// (on failure) the error log and the statement's error. Err (the first
/// errno, every message joined) means the SET fails; the caller keeps it in
/// the session's variables.
pub fn run(thd: Thd, dest: Option<&str>, options: &Options) -> Result<(), Failure> {
    let srv = server::get();
    if let Err(denied) = srv.authorize(thd) {
        server::log_line("ERROR", denied.message);
        // One error for the client: MySQL's check raised its own.
        if !denied.raised {
            srv.raise_access_denied(thd);
        }
        return Err(Failure::new(libc::EACCES, denied.message));
    }
    // Before anything runs SQL through the server's sql service: that
    // resets the flag (set for SET by server::report_progress_for_set) that
    // lets thd_progress_init send the client progress packets.
    srv.progress_init(thd);
    let outcome = run_checked(thd, dest, options);
    srv.progress_end(thd);
    match outcome {
        Ok(summary) => {
            server::log_line("Note", &summary);
            Ok(())
        }
        Err(failures) => {
            let joined = failures
                .iter()
                .map(|f| f.message.as_str())
                .collect::<Vec<_>>()
                .join("; ");
            server::log_line("ERROR", &failure_line(&failures));
            srv.fail_statement(thd, &joined);
            let kind = if failures[0].errno == libc::EINTR {
                "killed"
            } else {
                "error"
            };
            status::with(|p| {
                p.last_result = format!("{kind} (errno {}): {joined}", failures[0].errno);
            });
            Err(Failure::new(failures[0].errno, joined))
        }
    }
}

/// The one error log line of a failed backup, however many errors the
/// library reported for it.
fn failure_line(failures: &[Failure]) -> String {
    let detail = failures
        .iter()
        .map(|f| format!("{} (errno {})", f.message, f.errno))
        .collect::<Vec<_>>()
        .join("; ");
    format!("backup failed: {detail}")
}

fn run_checked(thd: Thd, dest: Option<&str>, session: &Options) -> Result<String, Vec<Failure>> {
    let dest = dest.ok_or_else(|| {
        vec![Failure::new(
            libc::EINVAL,
            "tokudb_backup_dir cannot be NULL",
        )]
    })?;
    let lib = library::load().map_err(|e| vec![Failure::new(e.errno, e.message)])?;
    let _guard = RunningGuard::acquire().ok_or_else(|| {
        let other = status::with(|p| p.destination.clone());
        vec![Failure::new(
            libc::EBUSY,
            format!("another backup is already running (into '{other}'); wait for it to end or KILL QUERY it"),
        )]
    })?;
    let settings = settings::read(thd).map_err(|e| vec![e])?;
    let dirs = layout::plan(&settings).map_err(|e| vec![e])?;
    let sources: Vec<PathBuf> = dirs.iter().map(|d| d.path.clone()).collect();
    let resolved = destination::validate(dest, &sources, session.allowed_prefix.as_deref())
        .map_err(|e| vec![e])?;
    destination::create(&resolved).map_err(|e| vec![e])?;
    let started = SystemTime::now();
    manifest::write_file(
        &resolved,
        manifest::INCOMPLETE,
        format!(
            "backup started at {} and has not finished\n",
            manifest::rfc3339(started)
        )
        .as_bytes(),
    )
    .map_err(|e| vec![e])?;

    let outcome = copy(thd, &lib, &settings, &dirs, &resolved, session);
    let result = outcome.and_then(|snapshot| {
        finish(
            &lib, &settings, &dirs, &resolved, session, started, snapshot,
        )
        .map_err(|e| vec![e])
    });
    let elapsed = started.elapsed().unwrap_or_default().as_secs_f64();
    match result {
        Ok(bytes) => {
            let summary = format!(
                "backup into '{}' complete: {bytes} bytes in {elapsed:.1} s",
                resolved.display()
            );
            status::with(|p| {
                p.state = "idle";
                p.started = None;
                p.last_elapsed = elapsed;
                p.bytes_copied = bytes;
                p.last_result = format!(
                    "success: {bytes} bytes in {elapsed:.1} s, {} bytes/s on average",
                    p.average_rate()
                );
            });
            Ok(summary)
        }
        Err(failures) => {
            let why = failures
                .iter()
                .map(|f| f.message.as_str())
                .collect::<Vec<_>>()
                .join("\n");
            let _ = manifest::write_file(
                &resolved,
                manifest::INCOMPLETE,
                format!(
                    "backup started at {} FAILED at {}; this directory is not a usable backup:\n{why}\n",
                    manifest::rfc3339(started),
                    manifest::rfc3339(SystemTime::now())
                )
                .as_bytes(),
            );
            status::with(|p| {
                p.state = "idle";
                p.started = None;
                p.last_elapsed = elapsed;
            });
            Err(failures)
        }
    }
}

/// State shared with the library's callbacks on this thread.
struct PollCtx {
    thd: Thd,
    total: u64,
    killed: bool,
    errors: Vec<Failure>,
    snapshot: Option<SystemTime>,
    /// Two fixed buffers for the processlist State: the server may read the
    /// one shown while the next is written, and neither moves nor is freed
    /// before the State is reset.
    info: [[u8; 512]; 2],
    which: usize,
    last_report: Option<Instant>,
}

/// Shared with the library's exclude callback, which any thread may call.
struct ExcludeCtx {
    regex: Option<Exclude>,
    never: Vec<PathBuf>,
}

impl ExcludeCtx {
    fn excluded(&self, path: &Path) -> bool {
        if self.never.iter().any(|n| n == path) {
            return true;
        }
        match (&self.regex, path.to_str()) {
            (Some(re), Some(s)) => re.matches(s),
            _ => false,
        }
    }
}

unsafe extern "C" fn poll_cb(progress: f32, text: *const c_char, extra: *mut c_void) -> c_int {
    let r = std::panic::catch_unwind(|| {
        // SAFETY: extra is the &mut PollCtx passed to create_backup, used only
        // on this thread (the library calls poll on the caller's thread).
        let ctx = unsafe { &mut *(extra as *mut PollCtx) };
        let srv = server::get();
        if srv.killed(ctx.thd) {
            ctx.killed = true;
            return libc::EINTR;
        }
        let fraction = f64::from(progress.clamp(0.0, 1.0));
        // SAFETY: the library passes a NUL-terminated string valid during the call.
        let text = unsafe { server::c_to_string(text) }.unwrap_or_default();
        let copied = (fraction * ctx.total as f64) as u64;
        status::with(|p| {
            p.state = "copying";
            p.copied(copied);
        });
        let line = format!(
            "tokudb backup about {:.0}% done: {}",
            fraction * 100.0,
            files_first(&text)
        );
        let next = 1 - ctx.which;
        let buf = &mut ctx.info[next];
        let n = line.len().min(buf.len() - 1);
        buf[..n].copy_from_slice(&line.as_bytes()[..n]);
        buf[n] = 0;
        ctx.which = next;
        srv.set_proc_info(ctx.thd, ctx.info[next].as_ptr() as *const c_char);
        if ctx
            .last_report
            .is_none_or(|t| t.elapsed().as_millis() >= 200)
        {
            srv.progress_report(ctx.thd, (fraction * 1000.0) as u64, 1000);
            ctx.last_report = Some(Instant::now());
        }
        0
    });
    r.unwrap_or(libc::EINVAL)
}

/// The library's "X of Y bytes copied (P%), a of b files" with the files
/// first: information_schema.PROCESSLIST cuts State at 64 characters, and
/// tokubackup reads the file count from there.
fn files_first(text: &str) -> String {
    match text.rsplit_once(", ") {
        Some((bytes, files)) if files.ends_with(" files") => format!("{files}, {bytes}"),
        _ => text.to_string(),
    }
}

unsafe extern "C" fn error_cb(errno: c_int, text: *const c_char, extra: *mut c_void) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: as in poll_cb: error is called on the calling thread.
        let ctx = unsafe { &mut *(extra as *mut PollCtx) };
        // SAFETY: NUL-terminated message valid during the call.
        let text = unsafe { server::c_to_string(text) }.unwrap_or_default();
        ctx.errors.push(Failure::new(errno, text));
    });
}

unsafe extern "C" fn exclude_cb(path: *const c_char, extra: *mut c_void) -> c_int {
    let r = std::panic::catch_unwind(|| {
        if path.is_null() {
            return 0;
        }
        // SAFETY: extra is the ExcludeCtx, alive until create_backup returns
        // and only read (it is Sync); path is NUL-terminated during the call.
        let (ctx, p) = unsafe { (&*(extra as *const ExcludeCtx), CStr::from_ptr(path)) };
        let p = Path::new(std::ffi::OsStr::from_bytes(p.to_bytes()));
        c_int::from(ctx.excluded(p))
    });
    r.unwrap_or(0)
}

unsafe extern "C" fn before_stop_cb(extra: *mut c_void) {
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: as in poll_cb.
        let ctx = unsafe { &mut *(extra as *mut PollCtx) };
        ctx.snapshot = Some(SystemTime::now());
        status::with(|p| p.state = "stopping capture");
    });
}

/// The pid file and the socket are never copied; their path as the library
/// will name it (under the canonical source directory).
fn never_copied(s: &settings::Settings) -> Vec<PathBuf> {
    [&s.pid_file, &s.socket]
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let parent = std::fs::canonicalize(p.parent()?).ok()?;
            Some(parent.join(p.file_name()?))
        })
        .collect()
}

fn source_bytes(dirs: &[SourceDir], ex: &ExcludeCtx) -> u64 {
    let mut total = 0;
    let mut stack: Vec<PathBuf> = dirs.iter().map(|d| d.path.clone()).collect();
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() && !ex.excluded(&p) {
                total += e.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    total
}

fn cstring(p: &Path) -> Result<CString, Failure> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| {
        Failure::new(
            libc::EINVAL,
            format!("path '{}' contains a NUL byte", p.display()),
        )
    })
}

/// Copies every source directory; returns the snapshot instant.
fn copy(
    thd: Thd,
    lib: &Library,
    s: &settings::Settings,
    dirs: &[SourceDir],
    dest: &Path,
    session: &Options,
) -> Result<Option<SystemTime>, Vec<Failure>> {
    let regex = match &session.exclude {
        Some(p) => Some(Exclude::new(p).map_err(|e| {
            vec![Failure::new(
                libc::EINVAL,
                format!("invalid tokudb_backup_exclude '{p}': {e}"),
            )]
        })?),
        None => None,
    };
    let ex = ExcludeCtx {
        regex,
        never: never_copied(s),
    };
    let total = source_bytes(dirs, &ex);
    status::with(|p| {
        p.state = "copying";
        p.started = Some(Instant::now());
        p.bytes_total = total;
        p.bytes_copied = 0;
        p.destination = dest.display().to_string();
        p.last_result = String::from("running");
    });
    let srcs: Vec<CString> = dirs
        .iter()
        .map(|d| cstring(&d.path))
        .collect::<Result<_, _>>()
        .map_err(|e| vec![e])?;
    // The library, like Percona's, backs up into existing empty directories.
    let dsts: Vec<CString> = dirs
        .iter()
        .map(|d| {
            let sub = dest.join(&d.subdir);
            destination::create(&sub)?;
            cstring(&sub)
        })
        .collect::<Result<_, _>>()
        .map_err(|e| vec![e])?;
    let src_ptrs: Vec<*const c_char> = srcs.iter().map(|c| c.as_ptr()).collect();
    let dst_ptrs: Vec<*const c_char> = dsts.iter().map(|c| c.as_ptr()).collect();
    let mut ctx = PollCtx {
        thd,
        total,
        killed: false,
        errors: Vec::new(),
        snapshot: None,
        info: [[0; 512]; 2],
        which: 0,
        last_report: None,
    };
    let srv = server::get();
    // SAFETY: tokubackup_throttle_backup may be called at any time.
    unsafe { (lib.throttle)(session.throttle as libc::c_ulong) };
    let ctx_ptr = &mut ctx as *mut PollCtx as *mut c_void;
    // SAFETY: the arrays hold dirs.len() valid C strings that outlive the
    // call; ctx and ex outlive it too; the callbacks match backup.h and catch
    // every panic. poll/error/stop callbacks run on this thread only.
    let rc = unsafe {
        (lib.create_backup)(
            src_ptrs.as_ptr(),
            dst_ptrs.as_ptr(),
            dirs.len() as c_int,
            Some(poll_cb),
            ctx_ptr,
            Some(error_cb),
            ctx_ptr,
            Some(exclude_cb),
            &ex as *const ExcludeCtx as *mut c_void,
            Some(before_stop_cb),
            ctx_ptr,
            None,
            std::ptr::null_mut(),
        )
    };
    // The State must not point into ctx once it is gone.
    srv.set_proc_info(thd, std::ptr::null());
    if rc == 0 {
        return Ok(ctx.snapshot);
    }
    let mut failures = Vec::new();
    if ctx.killed {
        failures.push(Failure::new(
            libc::EINTR,
            format!(
                "backup into '{}' was interrupted by KILL; the destination is incomplete",
                dest.display()
            ),
        ));
    }
    failures.append(&mut ctx.errors);
    if failures.is_empty() {
        failures.push(Failure::new(
            rc,
            format!(
                "libHotBackup failed with error {rc} ({}) backing up into '{}'",
                std::io::Error::from_raw_os_error(rc),
                dest.display()
            ),
        ));
    }
    Err(failures)
}

/// Writes the binlog position, the manifest and, last, the complete marker.
fn finish(
    lib: &Library,
    s: &settings::Settings,
    dirs: &[SourceDir],
    dest: &Path,
    session: &Options,
    started: SystemTime,
    snapshot: Option<SystemTime>,
) -> Result<u64, Failure> {
    status::with(|p| p.state = "writing manifest");
    let position = if s.log_bin {
        let copied = |orig: &Path| -> Option<PathBuf> {
            let d = dirs.iter().find(|d| orig.starts_with(&d.path))?;
            Some(dest.join(&d.subdir).join(orig.strip_prefix(&d.path).ok()?))
        };
        let index = s
            .log_bin_index
            .as_ref()
            .and_then(|i| copied(&std::fs::canonicalize(i).ok()?))
            .ok_or_else(|| {
                Failure::new(
                    libc::ENOENT,
                    "binary log index is not in any backed-up directory",
                )
            })?;
        let bdir = s
            .log_bin_basename
            .as_ref()
            .and_then(|b| copied(&std::fs::canonicalize(b.parent()?).ok()?))
            .ok_or_else(|| Failure::new(libc::ENOENT, "binary log directory is not backed up"))?;
        let pos = binlog::position(&index, &bdir)?;
        manifest::write_file(
            dest,
            manifest::BINLOG_INFO,
            format!("{}\t{}\t{}\n", pos.file, pos.position, pos.gtid).as_bytes(),
        )?;
        Some(pos)
    } else {
        None
    };
    // After the binary log is cut at the snapshot position: the checksums
    // are of the files exactly as the backup leaves them.
    status::with(|p| p.state = "checksumming");
    let subdirs: Vec<&str> = dirs.iter().map(|d| d.subdir.as_str()).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let t0 = Instant::now();
    let files = manifest::checksum_files(dest, &subdirs, threads)?;
    let checksum_seconds = t0.elapsed().as_secs_f64();
    let bytes: u64 = files
        .iter()
        .map(|f| match f.kind {
            manifest::FileKind::Regular { size, .. } => size,
            manifest::FileKind::Symlink { .. } => 0,
        })
        .sum();
    let m = Manifest {
        dirs,
        server_version: &s.server_version,
        library_version: lib.version,
        started,
        snapshot,
        finished: SystemTime::now(),
        bytes,
        binlog: position.as_ref(),
        exclude: session.exclude.as_deref(),
        files: &files,
        checksum_seconds,
    };
    let text = serde_json::to_string_pretty(&m.to_json()).unwrap_or_default() + "\n";
    manifest::write_file(dest, manifest::MANIFEST, text.as_bytes())?;
    manifest::write_file(
        dest,
        manifest::COMPLETE,
        format!(
            "backup complete at {}\n",
            manifest::rfc3339(SystemTime::now())
        )
        .as_bytes(),
    )?;
    let inc = dest.join(manifest::INCOMPLETE);
    std::fs::remove_file(&inc).map_err(|e| Failure::io("cannot remove", &inc, &e))?;
    manifest::sync_dir(dest)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_errors_make_one_line() {
        let failures = [
            Failure::new(libc::ENOENT, "open '/b/x.ibd': No such file or directory"),
            Failure::new(libc::ENOSPC, "write '/b/y.MAD':\nNo space left on device"),
            Failure::new(libc::EIO, "sync destination /b"),
        ];
        let line = failure_line(&failures);
        assert_eq!(
            line,
            "backup failed: open '/b/x.ibd': No such file or directory (errno 2); \
             write '/b/y.MAD':\nNo space left on device (errno 28); sync destination /b (errno 5)"
        );
    }

    #[test]
    fn files_come_first_in_the_state() {
        assert_eq!(
            super::files_first("153525229 of 327925502 bytes copied (47%), 6 of 206 files"),
            "6 of 206 files, 153525229 of 327925502 bytes copied (47%)"
        );
        assert_eq!(super::files_first("starting"), "starting");
    }
}
