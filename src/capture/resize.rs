//! Changes of a file's size or allocation (ftruncate, truncate,
//! fallocate), with the whole file locked.

use super::{guarded, lock_settled, real_call, target, Target};
use crate::copier;
use crate::error::Error;
use crate::fd_cache::MirrorFds;
use crate::gate::Gate;
use crate::session::{self, Session};
use crate::source_file::{SourceFile, WHOLE};
use crate::sys;
use rustix::fd::AsFd;
use rustix::fs::{self, AtFlags, FallocateFlags};
use rustix::io::Errno;
use std::path::Path;
use std::sync::Arc;

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

pub(super) fn resize_locked<R: Copy>(
    s: &Session,
    file: &Arc<SourceFile>,
    names_held: bool,
    real: impl FnOnce() -> R,
    ok: impl Fn(R) -> bool,
    mirror: impl FnOnce(&MirrorFds) -> Result<(), Errno>,
) -> R {
    let (range, fds) = lock_settled(s, file, WHOLE, names_held);
    let (r, errno) = real_call(real);
    if let Some(fds) = fds.filter(|_| ok(r) && file.started()) {
        guarded(s, || {
            if let Err(e) = mirror(&fds) {
                s.fail(Error::dest("resize", s.dest_of(file), e));
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
        let size = sys::file_size(sys::borrow(src_fd))?;
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

/// A size change that looked untracked but whose file joined the backup
/// while it was in flight: copy the whole file again (rare).
fn late_resize(s: &Session, fd: libc::c_int) {
    if let Target::Mirror(file, ..) = target(s, fd) {
        late_resize_file(s, &file, false);
    }
}

pub(super) fn late_resize_file(s: &Session, file: &Arc<SourceFile>, names_held: bool) {
    let (_range, fds) = lock_settled(s, file, WHOLE, names_held);
    if let Some(fds) = fds {
        if let Err(e) = copier::recopy_locked(&fds) {
            s.fail(Error::dest("copy to", s.dest_of(file), e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::{Mode, OFlags};
    use std::os::unix::io::AsRawFd;
    use std::path::Path;

    /// fallocate's effects on the copy: a punched hole reads as zeros, a
    /// size grown by allocation grows the copy.
    #[test]
    fn fallocate_mirror_matches_the_source() {
        let d = crate::scratch::dir("capture-falloc");
        let (sp, dp) = (d.join("src"), d.join("dest"));
        std::fs::write(&sp, vec![5u8; 64 << 10]).unwrap();
        std::fs::copy(&sp, &dp).unwrap();
        let app = std::fs::OpenOptions::new().write(true).open(&sp).unwrap();
        let open = |p: &Path, f| sys::openat(fs::CWD, p, f, Mode::empty()).unwrap();
        let m = MirrorFds {
            dest: Arc::new(open(&dp, OFlags::WRONLY)),
            src: Arc::new(open(&sp, OFlags::RDONLY)),
        };
        let punch = (FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE).bits() as i32;
        fs::fallocate(
            &app,
            FallocateFlags::from_bits_retain(punch as u32),
            8192,
            16384,
        )
        .unwrap();
        mirror_fallocate(&m, app.as_raw_fd(), punch, 8192, 16384).unwrap();
        assert_eq!(std::fs::read(&sp).unwrap(), std::fs::read(&dp).unwrap());
        fs::fallocate(&app, FallocateFlags::empty(), 60 << 10, 40 << 10).unwrap();
        mirror_fallocate(&m, app.as_raw_fd(), 0, 60 << 10, 40 << 10).unwrap();
        assert_eq!(std::fs::metadata(&dp).unwrap().len(), 100 << 10);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
