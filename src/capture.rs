//! Capture: what an interposed call does while a backup runs. The real call
//! and its mirror happen under one lock - the byte range of the file for
//! data, the namespace lock for names - so the destination sees changes in
//! the order the source did.
//!
//! Whatever happens to the mirror, the application gets the real call's
//! result and errno. A mirror that fails marks the backup failed; a panic in
//! here is caught and does the same.

use crate::copier;
use crate::gate::Gate;
use crate::namespace::{self, Names, RelPath, Root};
use crate::session::{self, dest_error, Session};
use crate::source_file::{SourceFile, WHOLE};
use crate::sys;
use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::{self, AtFlags, FallocateFlags, Mode, OFlags, SeekFrom};
use rustix::io::Errno;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::Ordering::*;
use std::sync::Arc;

/// Run mirror work; a panic fails the backup instead of unwinding into C.
fn guarded(s: &Session, f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        s.fail_raw(libc::EIO, "internal error in libHotBackup while mirroring a change".into());
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

/// Any call that writes bytes to a descriptor: the real call under the
/// range lock, then `mirror(dest, offset, count)` when those bytes are
/// already in the destination.
pub fn write_to<R: Copy + Into<i64>>(
    gate: &Gate,
    fd: libc::c_int,
    at: At,
    len: usize,
    real: impl FnOnce() -> R,
    mirror: impl FnOnce(&Session, &SourceFile, BorrowedFd<'_>, u64, usize) -> Result<(), Errno>,
) -> R {
    let Some((capture, s)) = session::enter(gate) else {
        return real();
    };
    let Some((file, append)) = s.tracked(fd).filter(|(f, _)| f.in_backup() && !s.failed()) else {
        drop(capture);
        return real();
    };
    let (start, end) = match at {
        At::Offset(off) if !append => (off, off.saturating_add(len as u64)),
        _ => WHOLE,
    };
    let range = file.ranges.lock(start, end);
    let (r, errno) = real_call(real);
    let n: i64 = r.into();
    if n > 0 {
        guarded(s, || {
            let written = n as u64;
            let first = match at {
                At::Offset(off) if !append => Ok(off),
                // pwrite on an O_APPEND descriptor appends (Linux ignores the offset).
                At::Offset(_) => fs::fstat(sys::borrow(fd)).map(|st| (st.st_size as u64).saturating_sub(written)),
                At::Current => fs::seek(sys::borrow(fd), SeekFrom::Current(0)).map(|end| end.saturating_sub(written)),
            };
            let first = match first {
                Ok(o) => o,
                Err(e) => return s.fail(e, format!("locate a write to {}: {}", describe(s, &file), sys::strerror(e))),
            };
            if !file.mirrored_at(first) {
                return;
            }
            match s.dest_for(&file) {
                Ok(Some(dest)) => {
                    if let Err(e) = mirror(s, &file, dest.as_fd(), first, n as usize) {
                        s.fail(e, dest_error("write", &dest_name(s, &file), e));
                    }
                }
                Ok(None) => {}
                Err(e) => s.fail(e, dest_error("open", &dest_name(s, &file), e)),
            }
        });
    }
    drop(range);
    drop(capture);
    sys::set_errno(errno);
    r
}

/// Mirror of copy_file_range/sendfile: copy the written bytes from the
/// source file itself, which the range lock keeps as they were written.
pub fn mirror_from_source(s: &Session, file: &SourceFile, dest: BorrowedFd<'_>, off: u64, n: usize) -> Result<(), Errno> {
    let Some(src) = s.src_for(file)? else { return Ok(()) };
    let mut hint = copier::DataHint::default();
    copier::copy_range(src.as_fd(), dest, off, n as u64, &mut hint).map_err(|(_, e)| e)
}

fn describe(s: &Session, file: &SourceFile) -> String {
    file.current_name().map(|n| s.src_path(&n).display().to_string()).unwrap_or_else(|| format!("inode {}", file.ino))
}

fn dest_name(s: &Session, file: &SourceFile) -> std::path::PathBuf {
    file.current_name().map(|n| s.dest_path(&n)).unwrap_or_default()
}

/// A change of a file's size or allocation through a descriptor
/// (ftruncate, fallocate, posix_fallocate), with the whole file locked.
/// `ok(r)` tells whether the real call succeeded.
pub fn resize_fd<R: Copy>(
    gate: &Gate,
    fd: libc::c_int,
    real: impl FnOnce() -> R,
    ok: impl Fn(R) -> bool,
    mirror: impl FnOnce(&Session, &SourceFile, BorrowedFd<'_>) -> Result<(), Errno>,
) -> R {
    let Some((capture, s)) = session::enter(gate) else { return real() };
    let Some((file, _)) = s.tracked(fd).filter(|(f, _)| f.in_backup() && !s.failed()) else {
        drop(capture);
        return real();
    };
    let r = resize_locked(s, &file, real, ok, mirror);
    drop(capture);
    r
}

fn resize_locked<R: Copy>(
    s: &Session,
    file: &SourceFile,
    real: impl FnOnce() -> R,
    ok: impl Fn(R) -> bool,
    mirror: impl FnOnce(&Session, &SourceFile, BorrowedFd<'_>) -> Result<(), Errno>,
) -> R {
    let range = file.ranges.lock(WHOLE.0, WHOLE.1);
    let (r, errno) = real_call(real);
    if ok(r) && file.started() {
        guarded(s, || match s.dest_for(file) {
            Ok(Some(dest)) => {
                if let Err(e) = mirror(s, file, dest.as_fd()) {
                    s.fail(e, dest_error("resize", &dest_name(s, file), e));
                }
            }
            Ok(None) => {}
            Err(e) => s.fail(e, dest_error("open", &dest_name(s, file), e)),
        });
    }
    drop(range);
    sys::set_errno(errno);
    r
}

/// truncate(path): the file is found by its identity, as for descriptors.
pub fn truncate_path(gate: &Gate, path: *const libc::c_char, len: i64, real: impl FnOnce() -> libc::c_int) -> libc::c_int {
    let Some((capture, s)) = session::enter(gate) else { return real() };
    let file = sys::c_path(path)
        .and_then(|p| fs::statat(fs::CWD, p, AtFlags::empty()).ok())
        .and_then(|st| s.file(st.st_dev, st.st_ino))
        .filter(|f| f.in_backup() && !s.failed());
    let Some(file) = file else {
        drop(capture);
        return real();
    };
    let r = resize_locked(s, &file, real, |r| r == 0, |_, _, dest| fs::ftruncate(dest, len.max(0) as u64));
    drop(capture);
    r
}

/// Mirror of fallocate(2) on the destination. Allocation itself is not
/// copied (unwritten space reads as zeros, like a hole); only its effect on
/// the size and on the bytes is.
pub fn mirror_fallocate(s: &Session, file: &SourceFile, src_fd: libc::c_int, dest: BorrowedFd<'_>, mode: i32, off: u64, len: u64) -> Result<(), Errno> {
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
                let end = off.saturating_add(len).min(if flags.contains(FallocateFlags::KEEP_SIZE) { size } else { u64::MAX });
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
            Err(_) => match s.dest_for(file)? {
                Some(d) => copier::recopy_locked(s, file, &d).map_err(|(e, _)| e),
                None => Ok(()),
            },
        };
    }
    sync_size()
}

/// Opening a descriptor during capture. Creating a file, or truncating one
/// with O_TRUNC, is a change; any open forgets what the returned number used
/// to be.
pub fn open(gate: &Gate, dirfd: libc::c_int, path: *const libc::c_char, flags: libc::c_int, real: impl FnOnce() -> libc::c_int) -> libc::c_int {
    let Some((capture, s)) = session::enter(gate) else { return real() };
    let creates = flags & libc::O_CREAT != 0 && flags & libc::O_TMPFILE != libc::O_TMPFILE;
    let truncates = flags & libc::O_TRUNC != 0 && flags & libc::O_ACCMODE != libc::O_RDONLY;
    let Some(p) = sys::c_path(path).filter(|_| (creates || truncates) && !s.failed()) else {
        let (fd, errno) = real_call(real);
        forget_fd(s, fd);
        drop(capture);
        sys::set_errno(errno);
        return fd;
    };
    // A file may be created in a tree: hold the namespace lock across the
    // real call, so that no rename or unlink of that name interleaves
    // between looking and creating.
    let mut names = None;
    let mut creating = None;
    if creates {
        let guard = s.names();
        if s.walked() {
            if let Some(name) = namespace::locate(&s.roots, dirfd, p) {
                if !sys::exists(sys::borrow(dirfd), p, flags & (libc::O_NOFOLLOW | libc::O_EXCL) == 0) {
                    creating = Some(name);
                }
                names = Some(guard);
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
    let (fd, errno) = match &tracked {
        Some(file) => {
            let fd = resize_locked(s, file, real, |fd| fd >= 0, |_, _, dest| fs::ftruncate(dest, 0));
            (fd, sys::errno())
        }
        None => real_call(real),
    };
    forget_fd(s, fd);
    if let (Some(mut names), Some(name)) = (names, creating.filter(|_| fd >= 0)) {
        guarded(s, || created(s, &mut names, &name, fd));
    }
    drop(capture);
    sys::set_errno(errno);
    fd
}

fn forget_fd(s: &Session, fd: libc::c_int) {
    if fd >= 0 {
        s.fds.forget(fd);
    }
}

/// A new empty file at `name`, open as `fd`: it exists in the destination
/// from now on and every byte written to it is mirrored.
fn created(s: &Session, names: &mut Names, name: &RelPath, fd: libc::c_int) {
    let Ok(st) = fs::fstat(sys::borrow(fd)) else { return };
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return;
    }
    let (file, _) = s.file_or_insert(st.st_dev, st.st_ino, u64::MAX);
    // The inode number may be that of a file deleted earlier in the backup.
    file.set_copied_upto(u64::MAX);
    file.set_src(None);
    names.insert(name.clone(), &file);
    if s.is_excluded(name) {
        file.excluded.store(true, Release);
        return;
    }
    file.excluded.store(false, Release);
    let root = &s.roots[name.root];
    match fs::openat(
        root.dest_dir.as_fd(),
        Root::dest_rel(&name.rel),
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(st.st_mode & 0o7777),
    ) {
        Ok(dest) => {
            // The new file may already have bytes (O_CREAT racing another
            // writer); it is small, copy what is there.
            if st.st_size > 0 {
                let mut hint = copier::DataHint::default();
                if let Err((_, e)) = copier::copy_range(sys::borrow(fd), dest.as_fd(), 0, st.st_size as u64, &mut hint) {
                    return s.fail(e, dest_error("write", &root.dest_path(&name.rel), e));
                }
            }
            file.set_dest(Some(Arc::new(dest)));
        }
        Err(e) => s.fail(e, dest_error("create", &root.dest_path(&name.rel), e)),
    }
}

/// Changes of names: the real call and the mirror under the namespace lock.
pub enum NameOp<'a> {
    Unlink { dirfd: libc::c_int, path: &'a Path, dir: bool },
    Mkdir { dirfd: libc::c_int, path: &'a Path },
    Rename { olddir: libc::c_int, old: &'a Path, newdir: libc::c_int, new: &'a Path, flags: u32 },
    Link { olddir: libc::c_int, old: &'a Path, newdir: libc::c_int, new: &'a Path, flags: libc::c_int },
    Symlink { target: &'a Path, dirfd: libc::c_int, path: &'a Path },
}

pub fn names_op(gate: &Gate, op: NameOp<'_>, real: impl FnOnce() -> libc::c_int) -> libc::c_int {
    let Some((capture, s)) = session::enter(gate) else { return real() };
    if s.failed() {
        drop(capture);
        return real();
    }
    let mut names = s.names();
    if !s.walked() {
        // The walk has not run yet and will see the result.
        drop(names);
        drop(capture);
        return real();
    }
    let roots = &s.roots;
    let (from, to) = match &op {
        NameOp::Unlink { dirfd, path, .. } => (namespace::locate(roots, *dirfd, path), None),
        NameOp::Mkdir { dirfd, path } => (None, namespace::locate(roots, *dirfd, path)),
        NameOp::Symlink { dirfd, path, .. } => (None, namespace::locate(roots, *dirfd, path)),
        NameOp::Rename { olddir, old, newdir, new, .. } => (namespace::locate(roots, *olddir, old), namespace::locate(roots, *newdir, new)),
        NameOp::Link { olddir, old, newdir, new, flags } => {
            let from = if flags & libc::AT_EMPTY_PATH != 0 && old.as_os_str().is_empty() { None } else { namespace::locate(roots, *olddir, old) };
            (from, namespace::locate(roots, *newdir, new))
        }
    };
    // rename() between two names of one file does nothing at all.
    let same_file = match &op {
        NameOp::Rename { olddir, old, newdir, new, .. } => {
            let id = |d: libc::c_int, p: &Path| fs::statat(sys::borrow(d), p, AtFlags::SYMLINK_NOFOLLOW).ok().map(|st| (st.st_dev, st.st_ino));
            id(*olddir, old).is_some() && id(*olddir, old) == id(*newdir, new)
        }
        _ => false,
    };
    if (from.is_none() && to.is_none()) || same_file {
        drop(names);
        drop(capture);
        return real();
    }
    let (r, errno) = real_call(real);
    if r == 0 {
        guarded(s, || {
            if let Err((e, msg)) = mirror_names(s, &mut names, &op, from, to) {
                s.fail(e, msg);
            }
        });
    }
    drop(names);
    drop(capture);
    sys::set_errno(errno);
    r
}

type MirrorResult = Result<(), (Errno, String)>;

fn mirror_names(s: &Session, names: &mut Names, op: &NameOp<'_>, from: Option<RelPath>, to: Option<RelPath>) -> MirrorResult {
    fn dest<'a>(s: &'a Session, n: &'a RelPath) -> (BorrowedFd<'a>, &'a Path) {
        (s.roots[n.root].dest_dir.as_fd(), Root::dest_rel(&n.rel))
    }
    let err = |what: &str, n: &RelPath, e: Errno| (e, dest_error(what, &s.dest_path(n), e));
    match (op, from, to) {
        (NameOp::Unlink { dir, .. }, Some(at), _) => {
            let (d, rel) = dest(s, &at);
            let r = if *dir { sys::remove_tree(d, rel) } else { fs::unlinkat(d, rel, AtFlags::empty()) };
            match r {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(err("remove", &at, e)),
            }
            names.remove_under(&at);
        }
        (NameOp::Mkdir { .. }, _, Some(at)) => {
            let mode = fs::statat(fs::CWD, s.src_path(&at), AtFlags::SYMLINK_NOFOLLOW).map(|st| st.st_mode & 0o7777).unwrap_or(0o700);
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
            let (d, rel) = dest(s, &old);
            sys::remove_tree(d, rel).map_err(|e| err("remove", &old, e))?;
            names.remove_under(&old);
        }
        (NameOp::Rename { .. } | NameOp::Link { .. }, None, Some(new)) => {
            copier::import(s, names, &new)?;
        }
        (NameOp::Rename { flags, .. }, Some(old), Some(new)) => {
            if flags & libc::RENAME_EXCHANGE != 0 {
                let (od, orel) = dest(s, &old);
                let (nd, nrel) = dest(s, &new);
                if fs::renameat_with(od, orel, nd, nrel, fs::RenameFlags::EXCHANGE).is_ok() {
                    let tmp = RelPath::new(usize::MAX, "exchange");
                    names.rename_under(&old, &tmp);
                    names.rename_under(&new, &old);
                    names.rename_under(&tmp, &new);
                    reconsider_exclusion(s, names, &old)?;
                    reconsider_exclusion(s, names, &new)?;
                } else {
                    copier::import(s, names, &old)?;
                    copier::import(s, names, &new)?;
                }
                return Ok(());
            }
            let (od, orel) = dest(s, &old);
            let (nd, nrel) = dest(s, &new);
            match fs::renameat(od, orel, nd, nrel) {
                Ok(()) => {}
                // The old name was never in the destination (excluded, a
                // socket...): whatever the new name was is gone.
                Err(Errno::NOENT) => sys::remove_tree(nd, nrel).map_err(|e| err("remove", &new, e))?,
                // A directory replaced by a file or the other way round.
                Err(Errno::ISDIR) | Err(Errno::NOTDIR) | Err(Errno::NOTEMPTY) | Err(Errno::EXIST) => {
                    sys::remove_tree(nd, nrel).map_err(|e| err("remove", &new, e))?;
                    fs::renameat(od, orel, nd, nrel).map_err(|e| err("rename", &new, e))?;
                }
                Err(e) => return Err(err("rename", &new, e)),
            }
            names.remove_under(&new);
            names.rename_under(&old, &new);
            reconsider_exclusion(s, names, &new)?;
        }
        (NameOp::Link { .. }, Some(old), Some(new)) => {
            let file = names.get(&old).cloned();
            let (od, orel) = dest(s, &old);
            let (nd, nrel) = dest(s, &new);
            match (&file, fs::linkat(od, orel, nd, nrel, AtFlags::empty())) {
                (Some(file), Ok(())) => names.insert(new.clone(), file),
                _ => copier::import(s, names, &new)?,
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
        let Some(file) = names.get(&name).cloned() else { continue };
        let now = s.is_excluded(&name);
        let was = file.excluded.load(Acquire);
        if now && !was {
            let _range = file.ranges.lock(WHOLE.0, WHOLE.1);
            file.excluded.store(true, Release);
            file.set_dest(None);
            let root = &s.roots[name.root];
            match fs::unlinkat(root.dest_dir.as_fd(), Root::dest_rel(&name.rel), AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err((e, dest_error("remove", &s.dest_path(&name), e))),
            }
        } else if !now && was {
            copier::import(s, names, &name)?;
        }
    }
    Ok(())
}

/// A descriptor number changes meaning (close, dup2 onto it, fcntl F_SETFL).
pub fn forget(gate: &Gate, fd: libc::c_int) {
    if let Some((_capture, s)) = session::enter(gate) {
        forget_fd(s, fd);
    }
}

pub fn forget_range(gate: &Gate, first: u32, last: u32) {
    if let Some((_capture, s)) = session::enter(gate) {
        s.fds.forget_range(first, last);
    }
}

/// A shared writable mapping of a file being backed up: stores through it
/// bypass every hook, so the backup cannot be exact and is failed.
pub fn mapped_shared(gate: &Gate, fd: libc::c_int) {
    if let Some((_capture, s)) = session::enter(gate) {
        if let Some((file, _)) = s.tracked(fd).filter(|(f, _)| f.in_backup()) {
            s.fail_raw(
                libc::EOPNOTSUPP,
                format!("{} was mapped shared and writable during the backup; stores through a mapping cannot be captured", describe(s, &file)),
            );
        }
    }
}
