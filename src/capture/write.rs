//! Bytes written through a descriptor: the real call under the range
//! lock of the bytes, and their mirror once the copier has passed them.

use super::{describe, At};
use super::{dest_name, guarded, lock_with_fds, real_call, target, Target};
use crate::copier;
use crate::error;
use crate::error::Error;
use crate::fd_cache::MirrorFds;
use crate::gate::Gate;
use crate::session::{self, Session};
use crate::source_file::{SourceFile, WHOLE};
use crate::staging::Bytes;
use crate::sys;
use rustix::fd::AsFd;
use rustix::fd::BorrowedFd;
use rustix::fs::{self, SeekFrom};
use rustix::io::Errno;

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
    let slot = gate.slot();
    let staged = match slot {
        // SAFETY: `slot` is the gate slot this thread holds until the hook
        // returns, so no other thread uses its staging area meanwhile; the
        // staged copy is used only below, before the hook returns.
        Some(slot) if direct && may_mirror => unsafe { s.staging.stage(slot, bytes) },
        _ => None,
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
            mirror_write(s, &file, &fds, slot, written, staged, bytes)
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
/// holds): the staged bytes if it was staged, else the bytes read back from
/// the source, else a copy from source to destination.
///
/// # Safety
/// `staged`, if any, must be the staged copy made for this write in the
/// staging area of `slot`, which the calling thread holds.
unsafe fn mirror_write(
    s: &Session,
    file: &SourceFile,
    fds: &MirrorFds,
    slot: Option<usize>,
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
    let n = w.n;
    let mirrored = match (staged, &fds.src, slot) {
        // SAFETY: per this function's contract, a staged copy the kernel
        // accepted n bytes of.
        (Some(b), _, _) => unsafe { mirror_bytes(fds.dest.as_fd(), b, first, n) },
        (None, Some(src), Some(slot)) if !matches!(bytes, Bytes::FromSource(_)) => {
            // SAFETY: the caller holds `slot`, so its area is this thread's.
            match unsafe { s.staging.read_back(slot, src.as_fd(), first, n) } {
                // SAFETY: read_back returned n bytes in that area, which
                // nothing reuses before this function returns.
                Ok(Some(b)) => unsafe { mirror_bytes(fds.dest.as_fd(), b, first, n) },
                Ok(None) => mirror_from_source(fds, first, n),
                Err(e) => Err(e),
            }
        }
        _ => mirror_from_source(fds, first, n),
    };
    if let Err(e) = mirrored {
        s.fail(Error::dest("write", dest_name(s, file), e));
    }
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

/// Mirror of copy_file_range/sendfile: copy the written bytes from the
/// source file itself, which the range lock keeps as they were written.
pub fn mirror_from_source(fds: &MirrorFds, off: u64, n: usize) -> Result<(), Errno> {
    let Some(src) = &fds.src else { return Ok(()) };
    let mut hint = copier::DataHint::default();
    copier::copy_range(src.as_fd(), fds.dest.as_fd(), off, n as u64, &mut hint).map_err(|(_, e)| e)
}
