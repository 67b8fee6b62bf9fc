//! Opens that create or truncate a file, and the files they create.

use super::forget_fd;
use super::resize::{late_resize_file, resize_locked};
use super::{guarded, real_call, target, Target};
use crate::copier;
use crate::error::Error;
use crate::gate::Gate;
use crate::namespace::{self, Names};
use crate::rel_path::RelPath;
use crate::session::{self, Session};
use crate::source_file::Side;
use crate::source_file::SourceFile;
use crate::source_file::WHOLE;
use crate::sys;
use rustix::fd::AsFd;
use rustix::fs::{self, AtFlags};
use std::path::Path;
use std::sync::atomic::Ordering::*;
use std::sync::Arc;

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
    let creating = (s.walked() && creates)
        .then(|| creates_in_tree(s, dirfd, p, flags))
        .flatten();
    let tracked = (truncates && creating.is_none())
        .then(|| truncates_in_backup(s, dirfd, p))
        .flatten();
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

/// The place in a source tree where `open` is about to create a file
/// (`p` does not exist yet), if it is in one. Caller holds the namespace lock.
fn creates_in_tree(
    s: &Session,
    dirfd: libc::c_int,
    p: &Path,
    flags: libc::c_int,
) -> Option<RelPath> {
    let name = s.locate(dirfd, p)?;
    let follow = flags & (libc::O_NOFOLLOW | libc::O_EXCL) == 0;
    (!sys::exists(sys::borrow(dirfd), p, follow)).then_some(name)
}

/// The file of the backup that an O_TRUNC open of `p` is about to empty.
fn truncates_in_backup(s: &Session, dirfd: libc::c_int, p: &Path) -> Option<Arc<SourceFile>> {
    fs::statat(sys::borrow(dirfd), p, AtFlags::empty())
        .ok()
        .filter(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG)
        .and_then(|st| s.file(st.st_dev, st.st_ino))
        .filter(|f| f.in_backup())
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
    s.write_behind.settle(&file);
    if sys::file_size(sys::borrow(fd))
        .map(|size| size > 0)
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
