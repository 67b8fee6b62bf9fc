//! Bytes written through a descriptor: the real call under the range
//! lock of the bytes, and their mirror once the copier has passed them.

use super::{describe, At};
use super::{guarded, lock_settled, lock_with_fds, real_call, target, Target};
use crate::copier;
use crate::error;
use crate::error::Error;
use crate::fd_cache::MirrorFds;
use crate::gate::Gate;
use crate::session::{self, Session};
use crate::source_file::{SourceFile, WHOLE};
use crate::staging::Bytes;
use crate::sys;
use crate::write_behind::WriteBehind;
use rustix::fd::AsFd;
use rustix::fd::BorrowedFd;
use rustix::fs::{self, SeekFrom};
use rustix::io::Errno;
use std::sync::Arc;

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
/// mirrored pay for either. A backup thread writes those bytes to the
/// destination (see `write_behind`).
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
    let (range, fds) = lock_with_fds(s, &file, range, false);
    let may_mirror = fds.is_some()
        && match at {
            At::Offset(off) if !append => file.mirrored_at(off),
            _ => file.started(),
        };
    let staged = if direct && may_mirror {
        // SAFETY: `slot` is the gate slot this thread holds until the hook
        // returns, so no other thread uses its staging area meanwhile; the
        // staged copy is used only below, before the hook returns.
        gate.slot()
            .and_then(|slot| unsafe { s.staging.stage(slot, bytes) })
    } else {
        None
    };
    let (r, errno) = real_call(|| real(staged.unwrap_or(bytes)));
    let n: i64 = r.into();
    if let Some(fds) = fds.filter(|_| n > 0 && may_mirror) {
        let written = Written {
            fd,
            at,
            append,
            n: n as usize,
        };
        // SAFETY: `staged` came from this thread's staging area (slot) in
        // this hook and is not reused before it returns.
        guarded(s, || unsafe {
            mirror_write(s, &file, &fds, written, staged, bytes)
        });
    }
    drop(range);
    drop(capture);
    sys::set_errno(errno);
    r
}

/// A write the kernel made: through which descriptor, where, how many bytes.
#[derive(Clone, Copy)]
struct Written {
    fd: libc::c_int,
    at: At,
    append: bool,
    n: usize,
}

/// Mirror a write the kernel made to `file` (whose range lock the caller
/// holds): queue its bytes for the destination (see `write_behind`), the
/// staged ones if it was staged, else the ones read back from the source;
/// when they cannot be queued, write them, or copy them from the source,
/// after the file's queued writes.
///
/// # Safety
/// `staged`, if any, must be the staged copy made for this write in the
/// calling thread's staging area.
#[inline(always)]
unsafe fn mirror_write(
    s: &Session,
    file: &Arc<SourceFile>,
    fds: &MirrorFds,
    w: Written,
    staged: Option<Bytes>,
    bytes: Bytes,
) {
    let first = match written_at(w.fd, w.at, w.append, w.n as u64) {
        Ok(o) => o,
        Err(e) => {
            return s.fail(Error::text(
                error::Side::Source,
                e.raw_os_error(),
                format!(
                    "locate a write to {}: {}",
                    describe(s, file),
                    sys::strerror(e)
                ),
            ))
        }
    };
    if !file.mirrored_at(first) {
        return;
    }
    let (n, queue) = (w.n, &s.write_behind);
    let queued = if staged.is_some() || !matches!(bytes, Bytes::FromSource(_)) {
        queue.reserve(n)
    } else {
        None
    };
    let mirrored = match queued {
        // SAFETY: per this function's contract, `staged` is a staged copy
        // the kernel accepted n bytes of.
        Some(buf) => unsafe { queue_write(queue, file, fds, first, staged, buf, n) },
        None => {
            queue.settle(file);
            match staged {
                // SAFETY: as above.
                Some(b) => unsafe { mirror_bytes(fds.dest.as_fd(), b, first, n) },
                None => mirror_from_source(fds, first, n),
            }
        }
    };
    if let Err(e) = mirrored {
        s.fail(Error::dest("write", s.dest_of(file), e));
    }
}

/// Fill `buf` (reserved in the queue) with the `n` bytes just written at
/// `off`, the staged ones or else the ones read back from the source, and
/// queue them for the destination.
///
/// # Safety
/// `staged`, if any, must describe readable memory (a staged copy) of at
/// least `n` bytes.
unsafe fn queue_write(
    queue: &WriteBehind,
    file: &Arc<SourceFile>,
    fds: &MirrorFds,
    off: u64,
    staged: Option<Bytes>,
    mut buf: Vec<u8>,
    n: usize,
) -> Result<(), Errno> {
    match staged {
        // SAFETY: this function's contract.
        Some(b) => unsafe { gather(b, &mut buf[..n]) },
        None => {
            if let Err(e) = read_back(fds, off, &mut buf[..n]) {
                queue.give_back(buf);
                return Err(e);
            }
        }
    }
    queue.push(file, fds.dest.clone(), off, buf, n);
    Ok(())
}

/// Read the bytes just written at `off` back from the source into `buf`.
/// A short read (the source truncated since) leaves the rest zero, as the
/// source reads now.
fn read_back(fds: &MirrorFds, off: u64, buf: &mut [u8]) -> Result<(), Errno> {
    let done = sys::pread_full(fds.src.as_fd(), buf, off)?;
    buf[done..].fill(0);
    Ok(())
}

/// Copy the first `out.len()` bytes of staged `bytes` to `out`.
///
/// # Safety
/// `bytes` must describe readable memory (a staged copy).
unsafe fn gather(bytes: Bytes, out: &mut [u8]) {
    let mut at = 0;
    // SAFETY: this function's contract.
    let _ = unsafe {
        each_segment(bytes, out.len(), |seg, _| {
            out[at..at + seg.len()].copy_from_slice(seg);
            at += seg.len();
            Ok(())
        })
    };
    out[at..].fill(0);
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
    // SAFETY: this function's contract.
    unsafe { each_segment(bytes, n, |seg, at| sys::pwrite_all(dest, seg, off + at)) }
}

/// Call `f` with each piece of the first `n` bytes of staged `bytes`, and
/// its position among them, in order, until it fails.
///
/// # Safety
/// `bytes` must describe readable memory (a staged copy).
unsafe fn each_segment(
    bytes: Bytes,
    n: usize,
    mut f: impl FnMut(&[u8], u64) -> Result<(), Errno>,
) -> Result<(), Errno> {
    match bytes {
        Bytes::Buf(p, len) => {
            // SAFETY: `p` is readable for `len` bytes (a staged copy, this
            // function's contract), and n.min(len) does not exceed len.
            f(unsafe { core::slice::from_raw_parts(p, n.min(len)) }, 0)
        }
        Bytes::Iov(iov, cnt) => {
            // SAFETY: `iov` points to `cnt` iovecs of a staged copy (this
            // function's contract); a staged count is never negative.
            let iov = unsafe { core::slice::from_raw_parts(iov, cnt.max(0) as usize) };
            let mut at = 0;
            for v in iov {
                let k = v.iov_len.min(n - at);
                if k == 0 {
                    break;
                }
                // SAFETY: a staged iovec describes iov_len readable bytes
                // (this function's contract), and k <= iov_len.
                let seg = unsafe { core::slice::from_raw_parts(v.iov_base as *const u8, k) };
                f(seg, at as u64)?;
                at += k;
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
        At::Offset(_) => sys::file_size(sys::borrow(fd)).map(|size| size.saturating_sub(written)),
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
    let (_range, fds) = lock_settled(s, &file, (first, first.saturating_add(written)), false);
    if let Some(fds) = fds.filter(|_| file.mirrored_at(first)) {
        if let Err(e) = mirror_from_source(&fds, first, written as usize) {
            s.fail(Error::dest("write", s.dest_of(&file), e));
        }
    }
}

/// Mirror of copy_file_range/sendfile: copy the written bytes from the
/// source file itself, which the range lock keeps as they were written.
pub fn mirror_from_source(fds: &MirrorFds, off: u64, n: usize) -> Result<(), Errno> {
    let mut hint = copier::DataHint::default();
    copier::copy_range(fds.src.as_fd(), fds.dest.as_fd(), off, n as u64, &mut hint)
        .map_err(|(_, e)| e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch;
    use rustix::fs::{Mode, OFlags};
    use std::os::unix::fs::FileExt;
    use std::os::unix::io::AsRawFd;
    use std::path::Path;
    use std::sync::Arc;

    fn fds(src: &Path, dest: &Path) -> MirrorFds {
        let open = |p: &Path, f| {
            sys::openat(fs::CWD, p, f | OFlags::CREATE, Mode::from_raw_mode(0o600)).unwrap()
        };
        MirrorFds {
            dest: Arc::new(open(dest, OFlags::WRONLY)),
            src: Arc::new(open(src, OFlags::RDONLY)),
        }
    }

    /// A write the copier has passed is mirrored from the source: the copy
    /// gets the bytes the kernel wrote, whatever the buffer holds after.
    #[test]
    fn mirror_from_source_copies_the_written_range() {
        let d = scratch::dir("capture-from-source");
        let (sp, dp) = (d.join("src"), d.join("dest"));
        let app = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&sp)
            .unwrap();
        app.write_all_at(&[1u8; 8192], 0).unwrap();
        let m = fds(&sp, &dp);
        mirror_from_source(&m, 0, 8192).unwrap();
        let mut buf = vec![2u8; 1000];
        app.write_all_at(&buf, 3000).unwrap();
        buf.fill(3); // the application reuses its buffer
        mirror_from_source(&m, 3000, 1000).unwrap();
        assert_eq!(std::fs::read(&sp).unwrap(), std::fs::read(&dp).unwrap());
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// Staged bytes (O_DIRECT writes, and what read_back returns) are
    /// written where the kernel put them, a buffer or each iovec in turn,
    /// only as many bytes as it wrote.
    #[test]
    fn staged_bytes_land_where_the_write_did() {
        let d = scratch::dir("capture-staged");
        let dp = d.join("dest");
        let m = fds(&d.join("src"), &dp);
        let a = [b'a'; 10];
        // SAFETY: `a` is readable for its 10 bytes.
        unsafe { mirror_bytes(m.dest.as_fd(), Bytes::Buf(a.as_ptr(), 10), 5, 7) }.unwrap();
        let (x, y) = ([b'x'; 4], [b'y'; 6]);
        let iov = [
            libc::iovec {
                iov_base: x.as_ptr() as *mut _,
                iov_len: 4,
            },
            libc::iovec {
                iov_base: y.as_ptr() as *mut _,
                iov_len: 6,
            },
        ];
        // SAFETY: both iovecs describe readable arrays of their length.
        unsafe { mirror_bytes(m.dest.as_fd(), Bytes::Iov(iov.as_ptr(), 2), 20, 8) }.unwrap();
        let mut want = vec![0u8; 28];
        want[5..12].fill(b'a');
        want[20..24].fill(b'x');
        want[24..28].fill(b'y');
        assert_eq!(std::fs::read(&dp).unwrap(), want);
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// Where a write landed: at its offset, or at the end for O_APPEND and
    /// for writes at the file offset.
    #[test]
    fn written_at_finds_appended_bytes() {
        let d = scratch::dir("capture-written-at");
        let p = d.join("f");
        std::fs::write(&p, [0u8; 100]).unwrap();
        let f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        let fd = f.as_raw_fd();
        std::io::Write::write_all(&mut &f, &[1u8; 10]).unwrap();
        assert_eq!(written_at(fd, At::Current, true, 10), Ok(100));
        assert_eq!(written_at(fd, At::Offset(0), true, 10), Ok(100));
        assert_eq!(written_at(fd, At::Offset(7), false, 10), Ok(7));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
