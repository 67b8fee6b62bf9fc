//! A running backup: its roots, files, names, descriptor table, progress
//! and errors; how hooks reach it, and when it may be freed.

use crate::error::{self, Error};
use crate::fd_cache::{FdCache, MirrorFds};
use crate::fd_table::{FdState, FdTable};
use crate::gate::{CaptureGuard, Gate};
use crate::namespace::{self, Names, Root};
use crate::progress::Progress;
use crate::rel_path::RelPath;
use crate::source_file::{lock, Side, SourceFile};
use crate::staging::Staging;
use crate::sys;
use crate::throttle::Throttle;
use crate::write_behind::WriteBehind;
use rustix::fd::AsFd;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex, MutexGuard};

pub type ExcludeFn = unsafe extern "C" fn(*const libc::c_char, *mut libc::c_void) -> libc::c_int;

/// The caller's exclude callback and its argument.
pub struct Exclude {
    pub fun: ExcludeFn,
    pub extra: *mut libc::c_void,
}

// SAFETY: the API contract makes the exclude callback callable from any
// thread with its extra pointer (documented in include/backup.h).
unsafe impl Send for Exclude {}
// SAFETY: shared, the pair is only read (never written once the session
// is built), and calls from several threads at once are what the API
// contract allows.
unsafe impl Sync for Exclude {}

pub struct Session {
    pub roots: Vec<Root>,
    /// The namespace lock: every mirrored change of names holds it, and
    /// the initial walk holds it throughout, so the destination's names
    /// always equal the sources'. Taken before any range lock.
    names: Mutex<Names>,
    files: Mutex<HashMap<(u64, u64), Arc<SourceFile>>>,
    pub fds: FdTable,
    /// The library's own descriptors on files of the backup, bounded.
    pub fd_cache: FdCache,
    /// Bumped whenever a file enters the trees from outside, so that
    /// descriptors found untracked before are looked at again.
    generation: AtomicU64,
    /// Set (under the namespace lock) once the initial walk has made the
    /// destinations' names; changes of names before that are seen by the
    /// walk itself and must not be mirrored.
    walked: AtomicBool,
    exclude: Option<Exclude>,
    errors: Mutex<Vec<Error>>,
    failed: AtomicBool,
    abort: AtomicBool,
    pub throttle: Throttle,
    /// Files the walk found, for the copier threads.
    queue: Mutex<VecDeque<Arc<SourceFile>>>,
    pub progress: Progress,
    /// Per-thread copies of bytes being written (see `staging`).
    pub staging: Staging,
    /// Mirrored bytes on their way to the destinations.
    pub write_behind: Arc<WriteBehind>,
}

static SESSION: AtomicPtr<Session> = AtomicPtr::new(core::ptr::null_mut());

/// The running session, for a hook that saw capture on. The guard keeps it
/// alive: stopping capture waits for every such guard before freeing it.
pub fn enter(gate: &Gate) -> Option<(Capture, &'static Session)> {
    let guard = gate.begin_capture()?;
    let p = SESSION.load(Acquire);
    if p.is_null() {
        return None;
    }
    // SAFETY: SESSION is set before capture starts and cleared only after
    // `gate::stop_capture` has waited for every CaptureGuard, like ours.
    let s = unsafe { &*p };
    Some((Capture { s, _guard: guard }, s))
}

/// A hook's hold on the session (see `enter`). A panic that unwinds
/// through it fails the backup before the guard lets capture stop, so that
/// a change cut short is never in a backup reported complete.
pub struct Capture {
    s: &'static Session,
    _guard: CaptureGuard,
}

impl Drop for Capture {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.s.fail_raw(
                libc::EIO,
                "internal error in libHotBackup: a panic while capturing a change (its message is on the process's stderr)".into(),
            );
        }
    }
}

/// Publish the session for hooks (before capture starts).
pub fn install(s: Box<Session>) -> *mut Session {
    let p = Box::into_raw(s);
    SESSION.store(p, Release);
    p
}

/// Take the session back after capture has stopped.
///
/// # Safety
/// `p` must come from `install`, and `gate::stop_capture` must have returned
/// since, so that no hook holds a reference.
pub unsafe fn uninstall(p: *mut Session) -> Box<Session> {
    SESSION.store(core::ptr::null_mut(), Release);
    // SAFETY: `p` came from Box::into_raw in `install`; SESSION no longer
    // points to it and stop_capture has waited for every hook that loaded
    // it (this function's contract), so this is the only reference.
    unsafe { Box::from_raw(p) }
}

pub fn forget_after_fork() {
    SESSION.store(core::ptr::null_mut(), Relaxed);
}

impl Session {
    pub fn new(roots: Vec<Root>, exclude: Option<Exclude>) -> Session {
        let write_behind = Arc::new(WriteBehind::default());
        Session {
            roots,
            names: Mutex::new(Names::default()),
            files: Mutex::new(HashMap::new()),
            fds: FdTable::default(),
            fd_cache: FdCache::new(FdCache::budget_for_process(), write_behind.clone()),
            generation: AtomicU64::new(0),
            walked: AtomicBool::new(false),
            exclude,
            errors: Mutex::new(Vec::new()),
            failed: AtomicBool::new(false),
            abort: AtomicBool::new(false),
            throttle: Throttle::default(),
            queue: Mutex::new(VecDeque::new()),
            progress: Progress::default(),
            staging: Staging::default(),
            write_behind,
        }
    }

    pub fn names(&self) -> MutexGuard<'_, Names> {
        lock(&self.names)
    }

    /// Record an error; the backup has failed, mirroring stops.
    pub fn fail(&self, e: Error) {
        let mut errors = lock(&self.errors);
        if errors.len() < 16 {
            errors.push(e);
        }
        self.failed.store(true, Release);
    }

    /// An error of the library itself (a panic, a refused operation),
    /// described by `what`.
    pub fn fail_raw(&self, errno: i32, what: String) {
        self.fail(Error::text(error::Side::Engine, errno, what));
    }

    pub fn failed(&self) -> bool {
        self.failed.load(Acquire)
    }

    /// The caller asked to stop (its poll callback returned non-zero).
    pub fn abort(&self) {
        self.abort.store(true, Release);
    }

    /// Queue a file for the copier threads.
    pub fn queue_copy(&self, file: Arc<SourceFile>) {
        lock(&self.queue).push_back(file);
    }

    /// The next file to copy, if any is left.
    pub fn next_to_copy(&self) -> Option<Arc<SourceFile>> {
        lock(&self.queue).pop_front()
    }

    /// Whether the copier should stop: aborted or failed.
    pub fn stopping(&self) -> bool {
        self.failed() || self.abort.load(Acquire)
    }

    pub fn take_errors(&self) -> Vec<Error> {
        std::mem::take(&mut *lock(&self.errors))
    }

    /// Whether changes of names are mirrored yet (caller holds the
    /// namespace lock).
    pub fn walked(&self) -> bool {
        self.walked.load(Acquire)
    }

    /// The initial walk is over: from now on names are mirrored, and
    /// descriptors found untracked during the walk are looked at again.
    pub fn set_walked(&self) {
        self.walked.store(true, Release);
        self.bump_generation();
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Acquire)
    }

    pub fn bump_generation(&self) {
        self.generation.fetch_add(1, AcqRel);
    }

    pub fn src_path(&self, name: &RelPath) -> std::path::PathBuf {
        self.roots[name.root].src_path(&name.rel)
    }

    pub fn dest_path(&self, name: &RelPath) -> std::path::PathBuf {
        self.roots[name.root].dest_path(&name.rel)
    }

    /// The destination path of a file of the backup (empty if it has no
    /// name any more), for messages.
    pub fn dest_of(&self, file: &SourceFile) -> std::path::PathBuf {
        file.current_name()
            .map(|n| self.dest_path(&n))
            .unwrap_or_default()
    }

    /// Where an application's `(dirfd, path)` is in the source trees (see
    /// `namespace::locate`). When that cannot be told for want of
    /// descriptors, even after closing the library's own, the backup fails:
    /// a change it cannot place cannot be mirrored.
    pub fn locate(&self, dirfd: libc::c_int, path: &Path) -> Option<RelPath> {
        self.fd_cache
            .retrying(|| namespace::locate(&self.roots, dirfd, path))
            .unwrap_or_else(|e| {
                self.fail(Error::text(
                    error::Side::Source,
                    e.raw_os_error(),
                    format!(
                        "cannot tell whether {} is in a source tree: {}",
                        path.display(),
                        sys::strerror(e)
                    ),
                ));
                None
            })
    }

    /// Ask the caller's exclude callback about a source path.
    pub fn is_excluded(&self, name: &RelPath) -> bool {
        let Some(ex) = &self.exclude else {
            return false;
        };
        let Ok(c) = CString::new(self.src_path(name).as_os_str().as_bytes()) else {
            return false;
        };
        // SAFETY: the callback was supplied by the caller for exactly this
        // use; the string lives across the call.
        unsafe { (ex.fun)(c.as_ptr(), ex.extra) != 0 }
    }

    pub fn file(&self, dev: u64, ino: u64) -> Option<Arc<SourceFile>> {
        lock(&self.files).get(&(dev, ino)).cloned()
    }

    /// The file with this identity, created if new.
    pub fn file_or_insert(&self, dev: u64, ino: u64, copied_upto: u64) -> (Arc<SourceFile>, bool) {
        let mut files = lock(&self.files);
        if let Some(f) = files.get(&(dev, ino)) {
            return (f.clone(), false);
        }
        let f = Arc::new(SourceFile::new(dev, ino, None, copied_upto));
        files.insert((dev, ino), f.clone());
        (f, true)
    }

    /// What a descriptor writes to, learned from the kernel on first use.
    /// The entry is checked against the kernel's answer every time: a
    /// number closed where no hook sees it (fclose, closedir, a raw
    /// syscall) and reused for another file or a socket must not send
    /// writes to the wrong destination.
    pub fn tracked(&self, fd: libc::c_int) -> FdState {
        let none = FdState::Untracked {
            generation: u64::MAX,
            id: None,
        };
        if fd < 0 {
            return none;
        }
        let Ok(id) = sys::file_id(sys::borrow(fd)) else {
            return none;
        };
        let generation = self.generation();
        let state = self
            .fds
            .get_or_resolve(fd, generation, || self.resolve_fd(fd, id, generation));
        if FdTable::still(&state, id) {
            return state;
        }
        self.fds.forget(fd);
        self.fds
            .get_or_resolve(fd, generation, || self.resolve_fd(fd, id, generation))
    }

    fn resolve_fd(&self, fd: libc::c_int, id: Option<(u64, u64)>, generation: u64) -> FdState {
        let Some((dev, ino)) = id else {
            return FdState::Untracked { generation, id };
        };
        match self.file(dev, ino) {
            Some(file) => {
                // F_SETFL forgets the entry, so these stay right.
                let flags = rustix::fs::fcntl_getfl(sys::borrow(fd));
                FdState::Tracked {
                    file,
                    append: flags.map(|f| f.contains(OFlags::APPEND)).unwrap_or(true),
                    direct: flags.map(|f| f.contains(OFlags::DIRECT)).unwrap_or(false),
                }
            }
            None => FdState::Untracked { generation, id },
        }
    }

    /// A write descriptor for the file's destination, kept in the
    /// descriptor cache. Opening by name is only right under the namespace
    /// lock, where the names agree with the trees: callers hold it (see
    /// `mirror_fds`).
    fn dest_for(&self, file: &Arc<SourceFile>) -> Result<Option<Arc<sys::OwnFd>>, Errno> {
        if let Some(fd) = self.fd_cache.get(file, Side::Dest) {
            return Ok(Some(fd));
        }
        let Some(name) = file.current_name() else {
            return Ok(None);
        };
        self.fd_cache
            .open(file, Side::Dest, || {
                namespace::open_dest(&self.roots, &name)
            })
            .map(Some)
    }

    /// A read descriptor for the source file itself, kept in the
    /// descriptor cache; same rule as `dest_for`.
    fn src_for(&self, file: &Arc<SourceFile>) -> Result<Option<Arc<sys::OwnFd>>, Errno> {
        if let Some(fd) = self.fd_cache.get(file, Side::Src) {
            return Ok(Some(fd));
        }
        let Some(name) = file.current_name() else {
            return Ok(None);
        };
        let path = self.src_path(&name);
        self.fd_cache
            .open(file, Side::Src, || open_src(file, &path))
            .map(Some)
    }

    /// The descriptors needed to mirror a change to `file`: its
    /// destination, and its source to read written bytes from. Taken
    /// before the file's range lock: the namespace lock, needed to open by
    /// name, comes first in lock order. None while nothing of the file is
    /// in the destination yet.
    pub fn mirror_fds(
        &self,
        file: &Arc<SourceFile>,
        names_held: bool,
    ) -> error::Result<Option<MirrorFds>> {
        if !file.started() {
            return Ok(None);
        }
        if let Some(dest) = self.fd_cache.get(file, Side::Dest) {
            if let Some(src) = self.fd_cache.get(file, Side::Src) {
                return Ok(Some(MirrorFds { dest, src }));
            }
        }
        let _names = (!names_held).then(|| self.names());
        let name = file.current_name().unwrap_or_else(|| RelPath::new(0, ""));
        let Some(dest) = self
            .dest_for(file)
            .map_err(|e| Error::dest("open", self.dest_path(&name), e))?
        else {
            return Ok(None);
        };
        let Some(src) = self
            .src_for(file)
            .map_err(|e| Error::source("open", self.src_path(&name), e))?
        else {
            return Ok(None);
        };
        Ok(Some(MirrorFds { dest, src }))
    }

    /// Source and destination descriptors for the copier, opened under the
    /// namespace lock (taken here unless the caller holds it). None if the
    /// file left the backup.
    pub fn open_for_copy(
        &self,
        file: &Arc<SourceFile>,
        names_held: bool,
    ) -> error::Result<Option<MirrorFds>> {
        let _names = (!names_held).then(|| self.names());
        let name = || file.current_name().unwrap_or_else(|| RelPath::new(0, ""));
        let Some(src) = self
            .src_for(file)
            .map_err(|e| Error::source("open", self.src_path(&name()), e))?
        else {
            return Ok(None);
        };
        let Some(dest) = self
            .dest_for(file)
            .map_err(|e| Error::dest("open", self.dest_path(&name()), e))?
        else {
            return Ok(None);
        };
        Ok(Some(MirrorFds { dest, src }))
    }
}

/// Open a source file by name for reading, checking that the name still
/// leads to it.
fn open_src(file: &SourceFile, path: &Path) -> Result<sys::OwnFd, Errno> {
    let open = |flags| sys::openat(rustix::fs::CWD, path, flags, Mode::empty());
    let fd = match open(OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOATIME) {
        // O_NOATIME is refused for files we do not own.
        Err(Errno::PERM) => open(OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC)?,
        r => r?,
    };
    if sys::file_id(fd.as_fd())? != Some((file.dev, file.ino)) {
        // The names disagree with the tree: a change this process did
        // not make (another process), which no hook can mirror.
        return Err(Errno::STALE);
    }
    // No readahead: the copier must read only the bytes it holds the
    // range lock of. Pages read ahead beyond it could be filled from
    // disk just before an O_DIRECT write lands there and survive that
    // write's page cache invalidation, and a later chunk would copy
    // them: bytes from before the write, which was not mirrored.
    let _ = rustix::fs::fadvise(&fd, 0, None, rustix::fs::Advice::Random);
    Ok(fd)
}
