//! Capture: what an interposed call does while a backup runs. The real call
//! and its mirror happen under one lock - the byte range of the file for
//! data, the namespace lock for names - so the destination sees changes in
//! the order the source did.
//!
//! Whatever happens to the mirror, the application gets the real call's
//! result and errno. A mirror that fails marks the backup failed; a panic in
//! here is caught and does the same.

use crate::copier;
use crate::error::{self, Error};
use crate::fd_cache::MirrorFds;
use crate::fd_table::FdState;
use crate::gate::Gate;
use crate::namespace::{self, Names, Root};
use crate::rel_path::RelPath;
use crate::session::{self, Session};
use crate::source_file::Side;
use crate::source_file::{SourceFile, WHOLE};
use crate::staging::Bytes;
use crate::sys;
use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::{self, AtFlags, FallocateFlags, Mode, SeekFrom};
use rustix::io::Errno;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::Ordering::*;
use std::sync::Arc;

/// Run mirror work; a panic fails the backup instead of unwinding into C.
fn guarded(s: &Session, f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        s.fail_raw(
            libc::EIO,
            "internal error in libHotBackup while mirroring a change".into(),
        );
    }
}

/// Run the real call, keeping its errno across our own work afterwards.
fn real_call<R>(real: impl FnOnce() -> R) -> (R, libc::c_int) {
    let r = real();
    (r, sys::errno())
}

/// Where a write lands.
#[derive(Clone, Copy)]
pub enum At {
    Offset(u64),
    /// At the descriptor's file offset (write, writev, sendfile).
    Current,
}

/// What a change through a descriptor needs during capture.
enum Target {
    /// A file of the backup: lock, change, mirror (O_APPEND, O_DIRECT).
    Mirror(Arc<SourceFile>, bool, bool),
    /// Nothing to do (a socket, a pipe, a file left out of the backup).
    Plain,
    /// A regular file not (yet) in the trees as of `generation`. If the
    /// generation moves while the call is in flight (the initial walk ends,
    /// or a file enters the trees), the file may have become part of the
    /// backup after we looked, and its changed bytes are copied again.
    Watch(u64),
}

fn target(s: &Session, fd: libc::c_int) -> Target {
    match s.tracked(fd) {
        FdState::Tracked {
            file,
            append,
            direct,
        } if file.in_backup() && !s.failed() => Target::Mirror(file, append, direct),
        FdState::Untracked {
            generation,
            id: Some(_),
        } if !s.failed() => Target::Watch(generation),
        _ => Target::Plain,
    }
}

/// Lock `range` of `file` with the descriptors a mirror needs in hand.
/// They are opened first (the namespace lock precedes range locks); if the
/// copier starts on the file meanwhile, try again.
fn lock_with_fds<'a>(
    s: &Session,
    file: &'a Arc<SourceFile>,
    range: (u64, u64),
    need_src: bool,
    names_held: bool,
) -> (crate::source_file::RangeGuard<'a>, Option<MirrorFds>) {
    loop {
        let fds = match s.mirror_fds(file, need_src, names_held) {
            Ok(fds) => fds,
            Err(e) => {
                s.fail(e);
                None
            }
        };
        let guard = file.ranges.lock(range.0, range.1);
        if fds.is_some() || !file.started() || s.failed() {
            return (guard, fds);
        }
    }
}

/// Any call that writes bytes to a descriptor: the real call under the
/// range lock, then the mirror of the written bytes when they are already
/// in the destination. `real` makes the call with the bytes it is given.
///
/// The mirror writes the bytes the kernel wrote, not the application's
/// buffer as it is afterwards: an application may change a buffer while a
/// write from it is in flight (InnoDB appends redo records to the log block
/// it is writing). Bytes written through the page cache are read back from
/// the source, which the range lock keeps as written. O_DIRECT bytes are
/// not in the page cache, so they are staged instead: copied first, and the
/// real call writes the copy (see `staging`). Only writes that will be
/// mirrored pay for either.
#[inline(never)]
pub fn write_to<R: Copy + Into<i64>>(
    gate: &Gate,
    fd: libc::c_int,
    at: At,
    bytes: Bytes,
    real: impl FnOnce(Bytes) -> R,
) -> R {
    // A negative offset: the kernel refuses the call (EINVAL) before it
    // writes anything.
    if matches!(at, At::Offset(off) if off > i64::MAX as u64) {
        return real(bytes);
    }
    let Some((capture, s)) = session::enter(gate) else {
        return real(bytes);
    };
    let (file, append, direct) = match target(s, fd) {
        Target::Mirror(file, append, direct) => (file, append, direct),
        Target::Plain => {
            drop(capture);
            return real(bytes);
        }
        Target::Watch(generation) => {
            let (r, errno) = real_call(|| real(bytes));
            let n: i64 = r.into();
            if n > 0 && s.generation() != generation {
                guarded(s, || late_write(s, fd, at, n as u64));
            }
            drop(capture);
            sys::set_errno(errno);
            return r;
        }
    };
    // Bytes of unknown count (an iovec array the kernel will refuse) lock
    // the whole file: whatever the call does is then still ordered.
    let range = match (at, bytes.len()) {
        (At::Offset(off), Some(len)) if !append => (off, off.saturating_add(len as u64)),
        _ => WHOLE,
    };
    let (range, fds) = lock_with_fds(s, &file, range, true, false);
    let may_mirror = fds.is_some()
        && match at {
            At::Offset(off) if !append => file.mirrored_at(off),
            _ => file.started(),
        };
    let staged = if direct && may_mirror {
        // SAFETY: the slot is this thread's, and the staged bytes are used
        // only until this hook returns.
        gate.slot()
            .and_then(|slot| unsafe { s.staging.stage(slot, bytes) })
    } else {
        None
    };
    let (r, errno) = real_call(|| real(staged.unwrap_or(bytes)));
    let n: i64 = r.into();
    if let Some(fds) = fds.filter(|_| n > 0 && may_mirror) {
        guarded(s, || {
            let first = match written_at(fd, at, append, n as u64) {
                Ok(o) => o,
                Err(e) => {
                    return s.fail(Error::text(
                        error::Side::Source,
                        e.raw_os_error(),
                        format!(
                            "locate a write to {}: {}",
                            describe(s, &file),
                            sys::strerror(e)
                        ),
                    ))
                }
            };
            if file.mirrored_at(first) {
                let n = n as usize;
                let mirrored = match (staged, &fds.src, gate.slot()) {
                    // SAFETY: staged bytes stay valid until this hook returns.
                    (Some(b), _, _) => unsafe { mirror_bytes(fds.dest.as_fd(), b, first, n) },
                    (None, Some(src), Some(slot)) if !matches!(bytes, Bytes::FromSource(_)) => {
                        // SAFETY: as for stage: this thread's slot, used
                        // only within this hook.
                        match unsafe { s.staging.read_back(slot, src.as_fd(), first, n) } {
                            Ok(Some(b)) => {
                                // SAFETY: read_back's bytes stay valid until this hook returns.
                                unsafe { mirror_bytes(fds.dest.as_fd(), b, first, n) }
                            }
                            Ok(None) => mirror_from_source(&fds, first, n),
                            Err(e) => Err(e),
                        }
                    }
                    _ => mirror_from_source(&fds, first, n),
                };
                if let Err(e) = mirrored {
                    s.fail(Error::dest("write", dest_name(s, &file), e));
                }
            }
        });
    }
    drop(range);
    drop(capture);
    sys::set_errno(errno);
    r
}

/// Write the first `n` of staged `bytes` to `dest` at `off`.
///
/// # Safety
/// `bytes` must describe readable memory (a staged copy).
unsafe fn mirror_bytes(
    dest: BorrowedFd<'_>,
    bytes: Bytes,
    off: u64,
    n: usize,
) -> Result<(), Errno> {
    match bytes {
        Bytes::Buf(p, len) => {
            // SAFETY: per the contract; the kernel accepted n <= len bytes.
            let b = unsafe { core::slice::from_raw_parts(p, n.min(len)) };
            sys::pwrite_all(dest, b, off)
        }
        Bytes::Iov(iov, cnt) => {
            // SAFETY: per the contract.
            let iov = unsafe { core::slice::from_raw_parts(iov, cnt.max(0) as usize) };
            let mut left = n;
            let mut at = off;
            for v in iov {
                if left == 0 {
                    break;
                }
                let k = v.iov_len.min(left);
                // SAFETY: per the contract; k <= iov_len.
                let b = unsafe { core::slice::from_raw_parts(v.iov_base as *const u8, k) };
                sys::pwrite_all(dest, b, at)?;
                at += k as u64;
                left -= k;
            }
            Ok(())
        }
        Bytes::FromSource(_) => Ok(()),
    }
}

/// Where `written` bytes just written through `fd` landed.
fn written_at(fd: libc::c_int, at: At, append: bool, written: u64) -> Result<u64, Errno> {
    match at {
        At::Offset(off) if !append => Ok(off),
        // pwrite on an O_APPEND descriptor appends (Linux ignores the offset).
        At::Offset(_) => {
            fs::fstat(sys::borrow(fd)).map(|st| (st.st_size as u64).saturating_sub(written))
        }
        At::Current => {
            fs::seek(sys::borrow(fd), SeekFrom::Current(0)).map(|end| end.saturating_sub(written))
        }
    }
}

/// A write that looked untracked but whose file joined the backup while it
/// was in flight: copy the written bytes from the source, under their range
/// lock, if the copier has already passed them.
fn late_write(s: &Session, fd: libc::c_int, at: At, written: u64) {
    let Target::Mirror(file, append, _) = target(s, fd) else {
        return;
    };
    let Ok(first) = written_at(fd, at, append, written) else {
        return;
    };
    let (_range, fds) = lock_with_fds(
        s,
        &file,
        (first, first.saturating_add(written)),
        true,
        false,
    );
    if let Some(fds) = fds.filter(|_| file.mirrored_at(first)) {
        if let Err(e) = mirror_from_source(&fds, first, written as usize) {
            s.fail(Error::dest("write", dest_name(s, &file), e));
        }
    }
}

/// A size change that looked untracked but whose file joined the backup
/// while it was in flight: copy the whole file again (rare).
fn late_resize(s: &Session, fd: libc::c_int) {
    if let Target::Mirror(file, ..) = target(s, fd) {
        late_resize_file(s, &file, false);
    }
}

fn late_resize_file(s: &Session, file: &Arc<SourceFile>, names_held: bool) {
    let (_range, fds) = lock_with_fds(s, file, WHOLE, true, names_held);
    if let Some(fds) = fds {
        if let Err(e) = copier::recopy_locked(&fds) {
            s.fail(Error::dest("copy to", dest_name(s, file), e));
        }
    }
}

/// Mirror of copy_file_range/sendfile: copy the written bytes from the
/// source file itself, which the range lock keeps as they were written.
pub fn mirror_from_source(fds: &MirrorFds, off: u64, n: usize) -> Result<(), Errno> {
    let Some(src) = &fds.src else { return Ok(()) };
    let mut hint = copier::DataHint::default();
    copier::copy_range(src.as_fd(), fds.dest.as_fd(), off, n as u64, &mut hint).map_err(|(_, e)| e)
}

fn describe(s: &Session, file: &SourceFile) -> String {
    file.current_name()
        .map(|n| s.src_path(&n).display().to_string())
        .unwrap_or_else(|| format!("inode {}", file.ino))
}

fn dest_name(s: &Session, file: &SourceFile) -> std::path::PathBuf {
    file.current_name()
        .map(|n| s.dest_path(&n))
        .unwrap_or_default()
}

/// A change of a file's size or allocation through a descriptor
/// (ftruncate, fallocate, posix_fallocate), with the whole file locked.
/// `ok(r)` tells whether the real call succeeded.
#[inline(never)]
pub fn resize_fd<R: Copy>(
    gate: &Gate,
    fd: libc::c_int,
    real: impl FnOnce() -> R,
    ok: impl Fn(R) -> bool,
    mirror: impl FnOnce(&MirrorFds) -> Result<(), Errno>,
) -> R {
    let Some((capture, s)) = session::enter(gate) else {
        return real();
    };
    let file = match target(s, fd) {
        Target::Mirror(file, ..) => file,
        Target::Plain => {
            drop(capture);
            return real();
        }
        Target::Watch(generation) => {
            let (r, errno) = real_call(real);
            if ok(r) && s.generation() != generation {
                guarded(s, || late_resize(s, fd));
            }
            drop(capture);
            sys::set_errno(errno);
            return r;
        }
    };
    let r = resize_locked(s, &file, false, real, ok, mirror);
    drop(capture);
    r
}

fn resize_locked<R: Copy>(
    s: &Session,
    file: &Arc<SourceFile>,
    names_held: bool,
    real: impl FnOnce() -> R,
    ok: impl Fn(R) -> bool,
    mirror: impl FnOnce(&MirrorFds) -> Result<(), Errno>,
) -> R {
    let (range, fds) = lock_with_fds(s, file, WHOLE, true, names_held);
    let (r, errno) = real_call(real);
    if let Some(fds) = fds.filter(|_| ok(r) && file.started()) {
        guarded(s, || {
            if let Err(e) = mirror(&fds) {
                s.fail(Error::dest("resize", dest_name(s, file), e));
            }
        });
    }
    drop(range);
    sys::set_errno(errno);
    r
}

/// truncate(path): the file is found by its identity, as for descriptors.
#[inline(never)]
pub fn truncate_path(
    gate: &Gate,
    path: *const libc::c_char,
    len: i64,
    real: impl FnOnce() -> libc::c_int,
) -> libc::c_int {
    let Some((capture, s)) = session::enter(gate) else {
        return real();
    };
    // The name must keep meaning the same file from the look-up to the call.
    let names = s.names();
    let generation = s.generation();
    let file_at = |p: &Path| {
        fs::statat(fs::CWD, p, AtFlags::empty())
            .ok()
            .filter(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG)
            .map(|st| s.file(st.st_dev, st.st_ino))
    };
    let path = crate::staging::read_app_path(path);
    let found = path.as_deref().and_then(file_at).filter(|_| !s.failed());
    let (r, errno) = match found {
        Some(Some(file)) if file.in_backup() => {
            let r = resize_locked(
                s,
                &file,
                true,
                real,
                |r| r == 0,
                |fds| fs::ftruncate(fds.dest.as_fd(), len.max(0) as u64),
            );
            (r, sys::errno())
        }
        // A regular file not in the trees yet: if one joins them meanwhile,
        // check it again afterwards.
        Some(None) => {
            let (r, errno) = real_call(real);
            if r == 0 && s.generation() != generation {
                if let Some(Some(file)) = path.as_deref().and_then(file_at) {
                    guarded(s, || late_resize_file(s, &file, true));
                }
            }
            (r, errno)
        }
        _ => real_call(real),
    };
    drop(names);
    drop(capture);
    sys::set_errno(errno);
    r
}

/// Mirror of fallocate(2) on the destination. Allocation itself is not
/// copied (unwritten space reads as zeros, like a hole); only its effect on
/// the size and on the bytes is.
pub fn mirror_fallocate(
    fds: &MirrorFds,
    src_fd: libc::c_int,
    mode: i32,
    off: u64,
    len: u64,
) -> Result<(), Errno> {
    let dest = fds.dest.as_fd();
    let flags = FallocateFlags::from_bits_retain(mode as u32);
    let sync_size = || -> Result<(), Errno> {
        let size = fs::fstat(sys::borrow(src_fd))?.st_size as u64;
        fs::ftruncate(dest, size)
    };
    if flags.intersects(FallocateFlags::PUNCH_HOLE | FallocateFlags::ZERO_RANGE) {
        match fs::fallocate(dest, flags, off, len) {
            Ok(()) => {}
            Err(Errno::OPNOTSUPP) | Err(Errno::NOSYS) | Err(Errno::INVAL) => {
                let size = fs::fstat(dest)?.st_size as u64;
                let end =
                    off.saturating_add(len)
                        .min(if flags.contains(FallocateFlags::KEEP_SIZE) {
                            size
                        } else {
                            u64::MAX
                        });
                if end > off {
                    copier::write_zeros(dest, off, end - off).map_err(|(_, e)| e)?;
                }
            }
            Err(e) => return Err(e),
        }
        return sync_size();
    }
    if flags.intersects(FallocateFlags::COLLAPSE_RANGE | FallocateFlags::INSERT_RANGE) {
        return match fs::fallocate(dest, flags, off, len) {
            Ok(()) => sync_size(),
            // This destination cannot shift bytes: copy the file again.
            Err(_) => copier::recopy_locked(fds),
        };
    }
    sync_size()
}

/// Opening a descriptor during capture. Creating a file, or truncating one
/// with O_TRUNC, is a change; any open forgets what the returned number used
/// to be.
#[inline(never)]
pub fn open(
    gate: &Gate,
    dirfd: libc::c_int,
    path: *const libc::c_char,
    flags: libc::c_int,
    real: impl Fn() -> libc::c_int,
) -> libc::c_int {
    let Some((capture, s)) = session::enter(gate) else {
        return real();
    };
    // The library's descriptors must never be why the application cannot
    // open a file: when the process is out of them, close every one the
    // backup can spare and open again. The kernel refuses before it
    // creates or truncates anything, so the retry changes nothing else.
    let real = || match real() {
        -1 if matches!(sys::errno(), libc::EMFILE | libc::ENFILE) && s.fd_cache.shed(true) => {
            real()
        }
        fd => fd,
    };
    let creates = flags & libc::O_CREAT != 0 && flags & libc::O_TMPFILE != libc::O_TMPFILE;
    let truncates = flags & libc::O_TRUNC != 0 && flags & libc::O_ACCMODE != libc::O_RDONLY;
    // The path is copied, not read: the real call has not validated it.
    let path = ((creates || truncates) && !s.failed())
        .then(|| crate::staging::read_app_path(path))
        .flatten();
    let Some(p) = path.as_deref() else {
        let (fd, errno) = real_call(real);
        forget_fd(s, fd);
        drop(capture);
        sys::set_errno(errno);
        return fd;
    };
    // The namespace lock is held across the real call, so that no other
    // name changes between looking and creating or truncating - even where
    // the path is outside the trees or its directory is missing (before the
    // walk, the walk then sees the result).
    let mut names = s.names();
    let mut creating = None;
    if s.walked() && creates {
        if let Some(name) = s.locate(dirfd, p) {
            if !sys::exists(
                sys::borrow(dirfd),
                p,
                flags & (libc::O_NOFOLLOW | libc::O_EXCL) == 0,
            ) {
                creating = Some(name);
            }
        }
    }
    let tracked = if truncates && creating.is_none() {
        fs::statat(sys::borrow(dirfd), p, AtFlags::empty())
            .ok()
            .filter(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG)
            .and_then(|st| s.file(st.st_dev, st.st_ino))
            .filter(|f| f.in_backup())
    } else {
        None
    };
    let generation = s.generation();
    let (fd, errno) = match &tracked {
        Some(file) => {
            let fd = resize_locked(
                s,
                file,
                true,
                real,
                |fd| fd >= 0,
                |fds| fs::ftruncate(fds.dest.as_fd(), 0),
            );
            (fd, sys::errno())
        }
        None => real_call(real),
    };
    // Truncated a file that joined the backup while the call was in flight.
    if truncates && tracked.is_none() && fd >= 0 && s.generation() != generation {
        forget_fd(s, fd);
        if let Target::Mirror(file, ..) = target(s, fd) {
            guarded(s, || late_resize_file(s, &file, true));
        }
    }
    forget_fd(s, fd);
    if let Some(name) = creating.filter(|_| fd >= 0) {
        guarded(s, || created(s, &mut names, &name, fd));
    }
    drop(names);
    drop(capture);
    sys::set_errno(errno);
    fd
}

fn forget_fd(s: &Session, fd: libc::c_int) {
    if fd >= 0 {
        s.fds.forget(fd);
    }
}

/// A new file at `name`, open as `fd`: it exists in the destination from
/// now on and every byte written to it is mirrored. It is empty unless
/// another thread reached it by name already (truncate, open and write);
/// the generation moves first so that such writes in flight check again.
fn created(s: &Session, names: &mut Names, name: &RelPath, fd: libc::c_int) {
    let Ok(st) = fs::fstat(sys::borrow(fd)) else {
        return;
    };
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return;
    }
    let (file, _) = s.file_or_insert(st.st_dev, st.st_ino, 0);
    // The inode number may be that of a file deleted earlier in the backup.
    s.fd_cache.release(&file);
    names.insert(name.clone(), &file);
    s.bump_generation();
    if s.is_excluded(name) {
        file.excluded.store(true, Release);
        return;
    }
    file.excluded.store(false, Release);
    let root = &s.roots[name.root];
    let create = || namespace::create_dest(&s.roots, name, st.st_mode);
    if let Err(e) = s.fd_cache.open(&file, Side::Dest, create) {
        return s.fail(Error::dest("create", root.dest_path(&name.rel), e));
    }
    let _range = file.ranges.lock(WHOLE.0, WHOLE.1);
    if fs::fstat(sys::borrow(fd))
        .map(|st| st.st_size > 0)
        .unwrap_or(true)
    {
        let copied = s.open_for_copy(&file, true).and_then(|fds| match fds {
            Some(fds) => copier::recopy_locked(&fds)
                .map_err(|e| Error::dest("copy to", root.dest_path(&name.rel), e)),
            None => Ok(()),
        });
        if let Err(e) = copied {
            return s.fail(e);
        }
    }
    file.set_copied_upto(u64::MAX);
}

/// Changes of names: the real call and the mirror under the namespace lock.
pub enum NameOp<'a> {
    Unlink {
        dirfd: libc::c_int,
        path: &'a Path,
        dir: bool,
    },
    Mkdir {
        dirfd: libc::c_int,
        path: &'a Path,
    },
    Rename {
        olddir: libc::c_int,
        old: &'a Path,
        newdir: libc::c_int,
        new: &'a Path,
        flags: u32,
    },
    Link {
        olddir: libc::c_int,
        old: &'a Path,
        newdir: libc::c_int,
        new: &'a Path,
        flags: libc::c_int,
    },
    Symlink {
        target: &'a Path,
        dirfd: libc::c_int,
        path: &'a Path,
    },
}

#[inline(never)]
pub fn names_op(gate: &Gate, op: NameOp<'_>, real: impl FnOnce() -> libc::c_int) -> libc::c_int {
    let Some((capture, s)) = session::enter(gate) else {
        return real();
    };
    if s.failed() {
        drop(capture);
        return real();
    }
    let mut names = s.names();
    if !s.walked() {
        // The walk has not run yet and will see the result, provided the
        // change is made before it starts: keep the lock across the call.
        let (r, errno) = real_call(real);
        drop(names);
        drop(capture);
        sys::set_errno(errno);
        return r;
    }
    let (from, to) = match &op {
        NameOp::Unlink { dirfd, path, .. } => (s.locate(*dirfd, path), None),
        NameOp::Mkdir { dirfd, path } => (None, s.locate(*dirfd, path)),
        NameOp::Symlink { dirfd, path, .. } => (None, s.locate(*dirfd, path)),
        NameOp::Rename {
            olddir,
            old,
            newdir,
            new,
            ..
        } => (s.locate(*olddir, old), s.locate(*newdir, new)),
        NameOp::Link {
            olddir,
            old,
            newdir,
            new,
            flags,
        } => {
            let from = if flags & libc::AT_EMPTY_PATH != 0 && old.as_os_str().is_empty() {
                None
            } else {
                s.locate(*olddir, old)
            };
            (from, s.locate(*newdir, new))
        }
    };
    // rename() between two names of one file does nothing at all.
    let same_file = match &op {
        NameOp::Rename {
            olddir,
            old,
            newdir,
            new,
            ..
        } => {
            let id = |d: libc::c_int, p: &Path| {
                fs::statat(sys::borrow(d), p, AtFlags::SYMLINK_NOFOLLOW)
                    .ok()
                    .map(|st| (st.st_dev, st.st_ino))
            };
            id(*olddir, old).is_some() && id(*olddir, old) == id(*newdir, new)
        }
        _ => false,
    };
    // Even outside the trees the lock is held across the call: a directory
    // created meanwhile could bring the change into them.
    let (r, errno) = real_call(real);
    if r == 0 && !same_file && (from.is_some() || to.is_some()) {
        guarded(s, || {
            if let Err(e) = mirror_names(s, &mut names, &op, from, to) {
                s.fail(e);
            }
        });
    }
    drop(names);
    drop(capture);
    sys::set_errno(errno);
    r
}

type MirrorResult = error::Result<()>;

fn mirror_names(
    s: &Session,
    names: &mut Names,
    op: &NameOp<'_>,
    from: Option<RelPath>,
    to: Option<RelPath>,
) -> MirrorResult {
    // Names are updated before the destination changes: a writer that
    // opens a destination by name without the namespace lock checks the
    // name again after opening (Session::dest_for), which is sound only in
    // this order.
    fn dest<'a>(s: &'a Session, n: &'a RelPath) -> (BorrowedFd<'a>, &'a Path) {
        (s.roots[n.root].dest_dir.as_fd(), Root::dest_rel(&n.rel))
    }
    let err = |what: &'static str, n: &RelPath, e: Errno| Error::dest(what, s.dest_path(n), e);
    match (op, from, to) {
        (NameOp::Unlink { dir, .. }, Some(at), _) => {
            names.remove_under(&at);
            let (d, rel) = dest(s, &at);
            let r = if *dir {
                sys::remove_tree(d, rel)
            } else {
                fs::unlinkat(d, rel, AtFlags::empty())
            };
            match r {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(err("remove", &at, e)),
            }
        }
        (NameOp::Mkdir { .. }, _, Some(at)) => {
            let mode = fs::statat(fs::CWD, s.src_path(&at), AtFlags::SYMLINK_NOFOLLOW)
                .map(|st| st.st_mode & 0o7777)
                .unwrap_or(0o700);
            let (d, rel) = dest(s, &at);
            match fs::mkdirat(d, rel, Mode::from_raw_mode(mode) | Mode::RWXU) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(err("mkdir", &at, e)),
            }
        }
        (NameOp::Symlink { target, .. }, _, Some(at)) => {
            let (d, rel) = dest(s, &at);
            match fs::symlinkat(*target, d, rel) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(err("symlink", &at, e)),
            }
        }
        (NameOp::Rename { .. }, Some(old), None) => {
            // Moved out of the trees: gone from the backup.
            names.remove_under(&old);
            let (d, rel) = dest(s, &old);
            sys::remove_tree(d, rel).map_err(|e| err("remove", &old, e))?;
        }
        (NameOp::Rename { .. } | NameOp::Link { .. }, None, Some(new)) => {
            copier::import(s, names, &new)?;
        }
        (NameOp::Rename { flags, .. }, Some(old), Some(new)) => {
            let (od, orel) = dest(s, &old);
            let (nd, nrel) = dest(s, &new);
            if flags & libc::RENAME_EXCHANGE != 0 {
                let tmp = RelPath::new(usize::MAX, "exchange");
                names.rename_under(&old, &tmp);
                names.rename_under(&new, &old);
                names.rename_under(&tmp, &new);
                if fs::renameat_with(od, orel, nd, nrel, fs::RenameFlags::EXCHANGE).is_err() {
                    copier::import(s, names, &old)?;
                    copier::import(s, names, &new)?;
                    return Ok(());
                }
                reconsider_exclusion(s, names, &old)?;
                return reconsider_exclusion(s, names, &new);
            }
            names.remove_under(&new);
            names.rename_under(&old, &new);
            match fs::renameat(od, orel, nd, nrel) {
                Ok(()) => {}
                // The old name was never in the destination (excluded, a
                // socket...): whatever the new name was is gone.
                Err(Errno::NOENT) => {
                    sys::remove_tree(nd, nrel).map_err(|e| err("remove", &new, e))?
                }
                // A directory replaced by a file or the other way round.
                Err(Errno::ISDIR) | Err(Errno::NOTDIR) | Err(Errno::NOTEMPTY)
                | Err(Errno::EXIST) => {
                    sys::remove_tree(nd, nrel).map_err(|e| err("remove", &new, e))?;
                    fs::renameat(od, orel, nd, nrel).map_err(|e| err("rename", &new, e))?;
                }
                Err(e) => return Err(err("rename", &new, e)),
            }
            reconsider_exclusion(s, names, &new)?;
        }
        (NameOp::Link { .. }, Some(old), Some(new)) => {
            let file = names.get(&old).cloned().filter(|f| f.in_backup());
            let (od, orel) = dest(s, &old);
            let (nd, nrel) = dest(s, &new);
            let linked = match &file {
                Some(file) => {
                    names.insert(new.clone(), file);
                    fs::linkat(od, orel, nd, nrel, AtFlags::empty()).is_ok()
                }
                None => false,
            };
            if !linked {
                copier::import(s, names, &new)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// After a rename, a file's new name may be excluded (drop it from the
/// destination) or no longer excluded (copy it now).
fn reconsider_exclusion(s: &Session, names: &mut Names, at: &RelPath) -> MirrorResult {
    for name in names.under(at) {
        let Some(file) = names.get(&name).cloned() else {
            continue;
        };
        let now = s.is_excluded(&name);
        let was = file.excluded.load(Acquire);
        if now && !was {
            let _range = file.ranges.lock(WHOLE.0, WHOLE.1);
            file.excluded.store(true, Release);
            s.fd_cache.release(&file);
            let root = &s.roots[name.root];
            match fs::unlinkat(
                root.dest_dir.as_fd(),
                Root::dest_rel(&name.rel),
                AtFlags::empty(),
            ) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(Error::dest("remove", s.dest_path(&name), e)),
            }
        } else if !now && was {
            copier::import(s, names, &name)?;
        }
    }
    Ok(())
}

/// A descriptor number changes meaning (close, dup2 onto it, fcntl F_SETFL).
#[inline(never)]
pub fn forget(gate: &Gate, fd: libc::c_int) {
    if let Some((_capture, s)) = session::enter(gate) {
        forget_fd(s, fd);
    }
}

#[inline(never)]
pub fn forget_range(gate: &Gate, first: u32, last: u32) {
    if let Some((_capture, s)) = session::enter(gate) {
        s.fds.forget_range(first, last);
    }
}

/// A shared writable mapping of a file being backed up: stores through it
/// bypass every hook, so the backup cannot be exact and is failed.
#[inline(never)]
pub fn mapped_shared(gate: &Gate, fd: libc::c_int) {
    if let Some((_capture, s)) = session::enter(gate) {
        if let Target::Mirror(file, ..) = target(s, fd) {
            s.fail_raw(
                libc::EOPNOTSUPP,
                format!("{} was mapped shared and writable during the backup; stores through a mapping cannot be captured", describe(s, &file)),
            );
        }
    }
}
