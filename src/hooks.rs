//! The interposed libc symbols. Each is a few lines: pass the gate; if no
//! backup captures, call the real function and return; otherwise hand the
//! call to `capture`. The variadic ones (open, openat, fcntl and their 64
//! forms) are defined in C (src/c/shim.c), which forwards here.
//!
//! Every exported function here runs behind the panic boundary
//! (`boundary!`): the real call goes through `made.call` (or `made.note`
//! once made), so that after a panic the application still gets exactly the
//! real call's result and errno.

#![allow(clippy::missing_safety_doc)]

use crate::aio;
use crate::boundary::{boundary, Made};
use crate::capture::{self, At, NameOp};
use crate::gate::{Gate, KIND_NO_CHANGE, KIND_PATH};
use crate::real;
use crate::staging::Bytes;
use crate::sys;
use libc::{
    c_char, c_int, c_long, c_uint, c_void, iovec, loff_t, mode_t, off64_t, off_t, size_t, ssize_t,
};
use rustix::fd::AsFd;

// ---- writes ----

#[no_mangle]
pub unsafe extern "C" fn write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t {
    // SAFETY: `b` is the application's `buf` or the library's staged copy
    // of its `n` bytes, alive until the call returns (see `capture`); the
    // kernel validates the rest as for the application's own call.
    let real = move |b: *const c_void| unsafe { real::write(fd, b, n) };
    boundary!(
        "write",
        gate: fd,
        idle: real(buf),
        |made, gate| {
            capture::write_to(gate, fd, At::Current, Bytes::Buf(buf.cast(), n), |b| {
                made.call(|| real(b.buf_or(buf))) as i64
            }) as ssize_t
        },
        real(buf)
    )
}

macro_rules! pwrite_hook {
    ($name:ident, $off:ty) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            fd: c_int,
            buf: *const c_void,
            n: size_t,
            off: $off,
        ) -> ssize_t {
            // SAFETY: `b` is the application's `buf` or the library's
            // staged copy of its `n` bytes, alive until the call returns;
            // the kernel validates the rest (a negative offset: EINVAL).
            let real = move |b: *const c_void| unsafe { real::$name(fd, b, n, off) };
            boundary!(
                stringify!($name),
                gate: fd,
                idle: real(buf),
                |made, gate| {
                    let at = At::Offset(off as u64);
                    capture::write_to(gate, fd, at, Bytes::Buf(buf.cast(), n), |b| {
                        made.call(|| real(b.buf_or(buf))) as i64
                    }) as ssize_t
                },
                real(buf)
            )
        }
    };
}
pwrite_hook!(pwrite, off_t);
pwrite_hook!(pwrite64, off64_t);

#[no_mangle]
pub unsafe extern "C" fn writev(fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t {
    // SAFETY: `v` is the application's iovec array or a staged array of
    // `cnt` entries into the library's own buffers, alive until the call
    // returns; an invalid application array is the kernel's EFAULT.
    let real = move |v: *const iovec| unsafe { real::writev(fd, v, cnt) };
    boundary!(
        "writev",
        gate: fd,
        idle: real(iov),
        |made, gate| {
            capture::write_to(gate, fd, At::Current, Bytes::Iov(iov, cnt), |b| {
                made.call(|| real(b.iov_or(iov))) as i64
            }) as ssize_t
        },
        real(iov)
    )
}

macro_rules! pwritev_hook {
    ($name:ident, $off:ty) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            fd: c_int,
            iov: *const iovec,
            cnt: c_int,
            off: $off,
        ) -> ssize_t {
            // SAFETY: `v` is the application's iovec array or a staged
            // array of `cnt` entries into the library's own buffers, alive
            // until the call returns; the kernel validates the rest.
            let real = move |v: *const iovec| unsafe { real::$name(fd, v, cnt, off) };
            boundary!(
                stringify!($name),
                gate: fd,
                idle: real(iov),
                |made, gate| {
                    let at = At::Offset(off as u64);
                    capture::write_to(gate, fd, at, Bytes::Iov(iov, cnt), |b| {
                        made.call(|| real(b.iov_or(iov))) as i64
                    }) as ssize_t
                },
                real(iov)
            )
        }
    };
}
pwritev_hook!(pwritev, off_t);
pwritev_hook!(pwritev64, off64_t);

macro_rules! pwritev2_hook {
    ($name:ident, $off:ty) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            fd: c_int,
            iov: *const iovec,
            cnt: c_int,
            off: $off,
            flags: c_int,
        ) -> ssize_t {
            // SAFETY: as for pwritev: `v` is the application's array or a
            // staged one alive until the call returns; `flags` go to the
            // kernel, which refuses unknown ones.
            let real = move |v: *const iovec| unsafe { real::$name(fd, v, cnt, off, flags) };
            boundary!(
                stringify!($name),
                gate: fd,
                idle: real(iov),
                |made, gate| {
                    // Offset -1 means the file offset; RWF_APPEND appends.
                    let at = if off == -1 || flags & libc::RWF_APPEND != 0 {
                        At::Current
                    } else {
                        At::Offset(off as u64)
                    };
                    capture::write_to(gate, fd, at, Bytes::Iov(iov, cnt), |b| {
                        made.call(|| real(b.iov_or(iov))) as i64
                    }) as ssize_t
                },
                real(iov)
            )
        }
    };
}
pwritev2_hook!(pwritev2, off_t);
pwritev2_hook!(pwritev64v2, off64_t);

#[no_mangle]
pub unsafe extern "C" fn copy_file_range(
    fd_in: c_int,
    off_in: *mut loff_t,
    fd_out: c_int,
    off_out: *mut loff_t,
    len: size_t,
    flags: c_uint,
) -> ssize_t {
    // SAFETY: the application's six arguments, unchanged: the offset
    // pointers are dereferenced by the kernel only, which validates them.
    let real = move || unsafe { real::copy_file_range(fd_in, off_in, fd_out, off_out, len, flags) };
    boundary!(
        "copy_file_range",
        gate: fd_out,
        idle: real(),
        |made, gate| {
            let at = if off_out.is_null() {
                At::Current
            } else {
                // The offset is copied, not read: the real call has not
                // validated the pointer yet.
                match crate::staging::read_app_value(off_out) {
                    Some(off) => At::Offset(off as u64),
                    // The kernel fails the call (EFAULT) before copying.
                    None => return made.call(real),
                }
            };
            capture::write_to(gate, fd_out, at, Bytes::FromSource(len), |_| {
                made.call(real) as i64
            }) as ssize_t
        },
        real()
    )
}

macro_rules! sendfile_hook {
    ($name:ident, $off:ty) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            out_fd: c_int,
            in_fd: c_int,
            offset: *mut $off,
            count: size_t,
        ) -> ssize_t {
            // SAFETY: the application's arguments, unchanged: `offset` is
            // dereferenced by the kernel only, which validates it.
            let real = move || unsafe { real::$name(out_fd, in_fd, offset, count) };
            boundary!(
                stringify!($name),
                gate: out_fd,
                idle: real(),
                |made, gate| {
                    let bytes = Bytes::FromSource(count);
                    capture::write_to(gate, out_fd, At::Current, bytes, |_| {
                        made.call(real) as i64
                    }) as ssize_t
                },
                real()
            )
        }
    };
}
sendfile_hook!(sendfile, off_t);
sendfile_hook!(sendfile64, off64_t);

// ---- sizes ----

/// A change of size or allocation through descriptor `fd`, mirrored by
/// `mirror(fds)` once the real call returned 0 (posix_fallocate returns the
/// error number instead of -1/errno, which 0 also tells apart).
macro_rules! resize_hook {
    (fn $name:ident($fd:ident: c_int $(, $arg:ident: $ty:ty)*) => |$fds:ident| $mirror:expr) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name($fd: c_int $(, $arg: $ty)*) -> c_int {
            // SAFETY: a descriptor and integers (lengths, offsets, mode):
            // no memory is passed, so no pointer can be invalid.
            let real = move || unsafe { real::$name($fd $(, $arg)*) };
            boundary!(
                stringify!($name),
                gate: $fd,
                idle: real(),
                |made, gate| {
                    let mirror = |$fds: &crate::fd_cache::MirrorFds| $mirror;
                    capture::resize_fd(gate, $fd, || made.call(real), |r| r == 0, mirror)
                },
                real()
            )
        }
    };
}
resize_hook!(fn ftruncate(fd: c_int, len: off_t) =>
    |fds| rustix::fs::ftruncate(fds.dest.as_fd(), len.max(0) as u64));
resize_hook!(fn ftruncate64(fd: c_int, len: off64_t) =>
    |fds| rustix::fs::ftruncate(fds.dest.as_fd(), len.max(0) as u64));
resize_hook!(fn fallocate(fd: c_int, mode: c_int, off: off_t, len: off_t) =>
    |fds| capture::mirror_fallocate(fds, fd, mode, off as u64, len as u64));
resize_hook!(fn fallocate64(fd: c_int, mode: c_int, off: off64_t, len: off64_t) =>
    |fds| capture::mirror_fallocate(fds, fd, mode, off as u64, len as u64));
resize_hook!(fn posix_fallocate(fd: c_int, off: off_t, len: off_t) =>
    |fds| capture::mirror_fallocate(fds, fd, 0, off as u64, len as u64));
resize_hook!(fn posix_fallocate64(fd: c_int, off: off64_t, len: off64_t) =>
    |fds| capture::mirror_fallocate(fds, fd, 0, off as u64, len as u64));

macro_rules! truncate_hook {
    ($name:ident, $off:ty) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(path: *const c_char, len: $off) -> c_int {
            // SAFETY: `path` is the application's pointer, passed unread:
            // only the kernel reads it (EFAULT if invalid).
            let real = move || unsafe { real::$name(path, len) };
            boundary!(
                stringify!($name),
                gate: KIND_PATH,
                idle: real(),
                |made, gate| {
                    capture::truncate_path(gate, path, len as i64, || made.call(real))
                },
                real()
            )
        }
    };
}
truncate_hook!(truncate, off_t);
truncate_hook!(truncate64, off64_t);

// ---- opening (the variadic entry points are in shim.c) ----

fn open_kind(flags: c_int) -> i32 {
    if flags & (libc::O_CREAT | libc::O_TRUNC) != 0 {
        KIND_PATH
    } else {
        KIND_NO_CHANGE
    }
}

macro_rules! open_impl {
    ($impl_name:ident, $alias:literal, $real:ident) => {
        extern "C" fn $impl_name(path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
            // SAFETY: `path` passed unread (the kernel validates it); `mode`
            // as shim.c read it, the int that libc's va_arg reads again.
            let real = move || unsafe { real::$real(path, flags, mode) };
            boundary!(
                stringify!($real),
                gate: open_kind(flags),
                idle: real(),
                |made, gate| {
                    capture::open(gate, libc::AT_FDCWD, path, flags, || made.call(real))
                },
                real()
            )
        }
        core::arch::global_asm!(concat!(".globl ", $alias), concat!(".hidden ", $alias), concat!(".set ", $alias, ", {}"), sym $impl_name);
    };
}
open_impl!(open_hook, "hb_open", open);
open_impl!(open64_hook, "hb_open64", open64);

macro_rules! openat_impl {
    ($impl_name:ident, $alias:literal, $real:ident) => {
        extern "C" fn $impl_name(dirfd: c_int, path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
            // SAFETY: `path` passed unread (the kernel validates it); `mode`
            // as shim.c read it, the int that libc's va_arg reads again.
            let real = move || unsafe { real::$real(dirfd, path, flags, mode) };
            boundary!(
                stringify!($real),
                gate: open_kind(flags),
                idle: real(),
                |made, gate| {
                    capture::open(gate, dirfd, path, flags, || made.call(real))
                },
                real()
            )
        }
        core::arch::global_asm!(concat!(".globl ", $alias), concat!(".hidden ", $alias), concat!(".set ", $alias, ", {}"), sym $impl_name);
    };
}
openat_impl!(openat_hook, "hb_openat", openat);
openat_impl!(openat64_hook, "hb_openat64", openat64);

macro_rules! open2_hook {
    ($name:ident) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(path: *const c_char, flags: c_int) -> c_int {
            // SAFETY: `path` passed unread (the kernel validates it); the
            // fortified function checks `flags` itself.
            let real = move || unsafe { real::$name(path, flags) };
            boundary!(
                stringify!($name),
                gate: open_kind(flags),
                idle: real(),
                |made, gate| {
                    capture::open(gate, libc::AT_FDCWD, path, flags, || made.call(real))
                },
                real()
            )
        }
    };
}
open2_hook!(__open_2);
open2_hook!(__open64_2);

macro_rules! openat2_hook {
    ($name:ident) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
            // SAFETY: `path` passed unread (the kernel validates it); the
            // fortified function checks `flags` itself.
            let real = move || unsafe { real::$name(dirfd, path, flags) };
            boundary!(
                stringify!($name),
                gate: open_kind(flags),
                idle: real(),
                |made, gate| {
                    capture::open(gate, dirfd, path, flags, || made.call(real))
                },
                real()
            )
        }
    };
}
openat2_hook!(__openat_2);
openat2_hook!(__openat64_2);

macro_rules! creat_hook {
    ($name:ident) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(path: *const c_char, mode: mode_t) -> c_int {
            // SAFETY: `path` passed unread (the kernel validates it), with
            // an integer mode.
            let real = move || unsafe { real::$name(path, mode) };
            boundary!(
                stringify!($name),
                gate: KIND_PATH,
                idle: real(),
                |made, gate| {
                    let flags = libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC;
                    capture::open(gate, libc::AT_FDCWD, path, flags, || made.call(real))
                },
                real()
            )
        }
    };
}
creat_hook!(creat);
creat_hook!(creat64);

// ---- names ----

/// The application's path, copied (the real call has not validated the
/// pointer); empty if it cannot be read, and the real call then fails.
fn path_or_empty(p: *const c_char) -> std::path::PathBuf {
    crate::staging::read_app_path(p).unwrap_or_default()
}

macro_rules! name_hook {
    (fn $name:ident($($arg:ident: $ty:ty),*) => $op:expr) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> c_int {
            // SAFETY: the application's path pointers, passed to libc
            // unread (the library reads its copies, made with
            // process_vm_readv): the kernel validates them.
            let real = move || unsafe { real::$name($($arg),*) };
            boundary!(
                stringify!($name),
                gate: KIND_PATH,
                idle: real(),
                |made, gate| {
                    capture::names_op(gate, $op, || made.call(real))
                },
                real()
            )
        }
    };
}

const CWD: c_int = libc::AT_FDCWD;

name_hook!(fn rename(old: *const c_char, new: *const c_char) =>
    NameOp::Rename { olddir: CWD, old: &path_or_empty(old), newdir: CWD, new: &path_or_empty(new), flags: 0 });
name_hook!(fn renameat(olddir: c_int, old: *const c_char, newdir: c_int, new: *const c_char) =>
    NameOp::Rename { olddir, old: &path_or_empty(old), newdir, new: &path_or_empty(new), flags: 0 });
name_hook!(fn renameat2(olddir: c_int, old: *const c_char, newdir: c_int, new: *const c_char, flags: c_uint) =>
    NameOp::Rename { olddir, old: &path_or_empty(old), newdir, new: &path_or_empty(new), flags });
name_hook!(fn unlink(path: *const c_char) =>
    NameOp::Unlink { dirfd: CWD, path: &path_or_empty(path), dir: false });
name_hook!(fn unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) =>
    NameOp::Unlink { dirfd, path: &path_or_empty(path), dir: flags & libc::AT_REMOVEDIR != 0 });
name_hook!(fn rmdir(path: *const c_char) =>
    NameOp::Unlink { dirfd: CWD, path: &path_or_empty(path), dir: true });
name_hook!(fn mkdir(path: *const c_char, mode: mode_t) =>
    { let _ = mode; NameOp::Mkdir { dirfd: CWD, path: &path_or_empty(path) } });
name_hook!(fn mkdirat(dirfd: c_int, path: *const c_char, mode: mode_t) =>
    { let _ = mode; NameOp::Mkdir { dirfd, path: &path_or_empty(path) } });
name_hook!(fn link(old: *const c_char, new: *const c_char) =>
    NameOp::Link { olddir: CWD, old: &path_or_empty(old), newdir: CWD, new: &path_or_empty(new), flags: 0 });
name_hook!(fn linkat(olddir: c_int, old: *const c_char, newdir: c_int, new: *const c_char, flags: c_int) =>
    NameOp::Link { olddir, old: &path_or_empty(old), newdir, new: &path_or_empty(new), flags });
name_hook!(fn symlink(target: *const c_char, path: *const c_char) =>
    NameOp::Symlink { target: &path_or_empty(target), dirfd: CWD, path: &path_or_empty(path) });
name_hook!(fn symlinkat(target: *const c_char, dirfd: c_int, path: *const c_char) =>
    NameOp::Symlink { target: &path_or_empty(target), dirfd, path: &path_or_empty(path) });

// ---- descriptors ----

/// After a call that changed what descriptor `fd` means (its result `r`
/// kept in `made`), forget it, keeping the call's errno.
fn forget_after(gate: &Gate, made: &Made<c_int>, r: c_int, fd: c_int) -> c_int {
    if fd >= 0 && gate.capturing() {
        made.note(r);
        let e = sys::errno();
        capture::forget(gate, fd);
        sys::set_errno(e);
    }
    r
}

/// A descriptor call: the real call first, whatever happens; then
/// `after(gate, made, r)`, which notes `r` in `made` before any work. Only
/// that work can panic, so the fallback never makes the call twice.
macro_rules! fd_hook {
    (fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty, gate: $what:expr, $after:expr) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name($($arg: $ty),*) -> $ret {
            // SAFETY: descriptor numbers and flags only, no memory.
            let real = move || unsafe { real::$name($($arg),*) };
            boundary!(
                stringify!($name),
                |made| {
                    let gate = Gate::enter($what);
                    let r = real();
                    $after(&gate, &made, r)
                },
                real()
            )
        }
    };
}

fd_hook!(fn close(fd: c_int) -> c_int, gate: fd, |g, m, r| forget_after(g, m, r, fd));
fd_hook!(fn dup(fd: c_int) -> c_int, gate: KIND_NO_CHANGE, |g, m, r| forget_after(g, m, r, r));
fd_hook!(fn dup2(old: c_int, new: c_int) -> c_int, gate: new,
    |g, m, r| { let _ = old; forget_after(g, m, r, r) });
fd_hook!(fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int, gate: new,
    |g, m, r| { let _ = (old, flags); forget_after(g, m, r, r) });
// An application that closes its descriptors wholesale closes around the
// library's own (see `own_fds`): its mirror, copy and io_uring descriptors
// outlive the call.

/// close_range flags this hook closes around the library's descriptors
/// with: none, or CLOSE_RANGE_UNSHARE (the calling thread's new table keeps
/// them, close-on-exec). CLOSE_RANGE_CLOEXEC closes nothing and marks ours
/// as they are already; unknown flags are the kernel's to refuse.
const CLOSE_RANGE_AROUND: c_uint = libc::CLOSE_RANGE_UNSHARE;

/// The application's close_range, around the library's descriptors when
/// it closes some.
fn close_range_around(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    // SAFETY: integers only, no memory. It closes none of the library's
    // descriptors: it closes nothing (CLOEXEC, or flags or a range the
    // kernel refuses), or close_around found none of them in range.
    let real = || unsafe { real::close_range(first, last, flags) };
    if flags as c_uint & !CLOSE_RANGE_AROUND != 0 || first > last {
        return real();
    }
    crate::own_fds::close_around(first, last, real, |a, b| {
        // SAFETY: the application's flags on [a, b], a part of the range it
        // asked to close that holds none of the library's descriptors.
        unsafe { real::close_range(a, b, flags) }
    })
}

#[no_mangle]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    boundary!(
        "close_range",
        |made| {
            let gate = Gate::enter(KIND_NO_CHANGE);
            let r = made.call(|| close_range_around(first, last, flags));
            let closed = flags as c_uint & libc::CLOSE_RANGE_CLOEXEC == 0;
            if r == 0 && closed && gate.capturing() {
                capture::forget_range(&gate, first, last);
            }
            r
        },
        close_range_around(first, last, flags)
    )
}

/// The application's closefrom, around the library's descriptors; errno
/// is left as it was (closefrom reports nothing).
fn closefrom_around(first: c_uint) {
    let saved = sys::errno();
    // SAFETY: an integer, no memory; called by close_around only when no
    // descriptor of the library's is at `first` or above.
    let whole = || unsafe { real::closefrom(first as c_int) };
    crate::own_fds::close_around(
        first,
        c_uint::MAX,
        || {
            whole();
            0
        },
        |a, b| {
            // SAFETY: [a, b] is part of the application's range, holding
            // none of the library's descriptors (close_around's promise).
            unsafe { real::close_each(a, b) };
            0
        },
    );
    sys::set_errno(saved);
}

#[no_mangle]
pub unsafe extern "C" fn closefrom(lowfd: c_int) {
    let first = lowfd.max(0) as c_uint;
    boundary!(
        "closefrom",
        |made| {
            let gate = Gate::enter(KIND_NO_CHANGE);
            made.call(|| closefrom_around(first));
            if gate.capturing() {
                capture::forget_range(&gate, first, c_uint::MAX);
            }
        },
        closefrom_around(first)
    )
}

macro_rules! fcntl_impl {
    ($impl_name:ident, $alias:literal, $real:ident) => {
        extern "C" fn $impl_name(fd: c_int, cmd: c_int, arg: c_long) -> c_int {
            // SAFETY: forwarding the application's call; `arg` is passed as
            // libc reads it (an int, or a pointer, in the same register).
            let real = move || unsafe { real::$real(fd, cmd, arg) };
            boundary!(
                stringify!($real),
                |made| {
                    let gate = Gate::enter(KIND_NO_CHANGE);
                    let r = real();
                    match cmd {
                        libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => forget_after(&gate, &made, r, r),
                        libc::F_SETFL if r >= 0 => forget_after(&gate, &made, r, fd),
                        _ => r,
                    }
                },
                real()
            )
        }
        core::arch::global_asm!(concat!(".globl ", $alias), concat!(".hidden ", $alias), concat!(".set ", $alias, ", {}"), sym $impl_name);
    };
}
fcntl_impl!(fcntl_hook, "hb_fcntl", fcntl);
fcntl_impl!(fcntl64_hook, "hb_fcntl64", fcntl64);

// ---- mappings ----

macro_rules! mmap_hook {
    ($name:ident, $off:ty) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            addr: *mut c_void,
            len: size_t,
            prot: c_int,
            flags: c_int,
            fd: c_int,
            off: $off,
        ) -> *mut c_void {
            // SAFETY: the application's mapping request, unchanged; the
            // library reads and writes nothing through `addr`.
            let real = move || unsafe { real::$name(addr, len, prot, flags, fd, off) };
            boundary!(
                stringify!($name),
                |made| {
                    if fd < 0 || flags & libc::MAP_SHARED == 0 || prot & libc::PROT_WRITE == 0 {
                        return real();
                    }
                    let gate = Gate::enter(KIND_NO_CHANGE);
                    let r = real();
                    if r != libc::MAP_FAILED && gate.capturing() {
                        made.note(r);
                        let e = sys::errno();
                        capture::mapped_shared(&gate, fd);
                        sys::set_errno(e);
                    }
                    r
                },
                real()
            )
        }
    };
}
mmap_hook!(mmap, off_t);
mmap_hook!(mmap64, off64_t);

// ---- asynchronous I/O (the policy is in aio.rs) ----

#[no_mangle]
pub unsafe extern "C" fn io_uring_queue_init(
    entries: c_uint,
    ring: *mut c_void,
    flags: c_uint,
) -> c_int {
    // SAFETY: liburing's function with the application's arguments: `ring`
    // is its struct io_uring, which liburing initialises.
    let real = move || unsafe { real::io_uring_queue_init(entries, ring, flags) };
    boundary!(
        "io_uring_queue_init",
        // SAFETY: init_ring's contract: `ring` is what `real` sets up, and
        // is read only once that returned 0.
        |made| unsafe { aio::init_ring(ring, flags, || made.call(real)) },
        real()
    )
}

#[no_mangle]
pub unsafe extern "C" fn io_uring_queue_init_params(
    entries: c_uint,
    ring: *mut c_void,
    params: *mut c_void,
) -> c_int {
    // SAFETY: liburing's function with the application's arguments: `ring`
    // is its struct io_uring, `params` its io_uring_params.
    let real = move || unsafe { real::io_uring_queue_init_params(entries, ring, params) };
    boundary!(
        "io_uring_queue_init_params",
        |made| {
            // SAFETY: liburing's contract: `params` is a valid
            // io_uring_params, and `ring` the application's ring, which its
            // own call sets up.
            unsafe { aio::init_ring(ring, aio::setup_flags(params), || made.call(real)) }
        },
        real()
    )
}

#[no_mangle]
pub unsafe extern "C" fn io_uring_queue_exit(ring: *mut c_void) {
    // SAFETY: the application tears its own ring down; `unregister` has
    // stopped following it, so the library reads it no more.
    let real = move || unsafe { real::io_uring_queue_exit(ring) };
    boundary!(
        "io_uring_queue_exit",
        |made| {
            crate::uring::unregister(ring);
            made.call(real)
        },
        real()
    )
}

macro_rules! uring_submit_hook {
    ($name:ident) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(ring: *mut c_void) -> c_int {
            // SAFETY: liburing's function on the application's ring, from
            // the thread submitting it (liburing's one-submitter rule).
            let real = move || unsafe { real::$name(ring) };
            boundary!(
                stringify!($name),
                |made| {
                    let gate = Gate::enter(KIND_PATH);
                    // SAFETY: the application's ring, submitted from this
                    // thread (liburing's rule).
                    unsafe { crate::uring::submit(&gate, ring, || made.call(real)) }
                },
                real()
            )
        }
    };
}
uring_submit_hook!(io_uring_submit);
uring_submit_hook!(io_uring_submit_and_get_events);

/// A liburing call that submits what the ring has queued and then waits:
/// the entries go through the io_uring_submit hook first (see
/// `aio::submit_then_wait`); `counts` if the call returns how many entries
/// it submitted.
macro_rules! uring_wait_hook {
    ($name:ident, counts: $counts:expr, ($($arg:ident: $ty:ty),*)) => {
        #[no_mangle]
        pub unsafe extern "C" fn $name(ring: *mut c_void, $($arg: $ty),*) -> c_int {
            // SAFETY: liburing's function on the application's ring, with its
            // own wait arguments, which only liburing and the kernel read or
            // write.
            let real = move || unsafe { real::$name(ring, $($arg),*) };
            boundary!(
                stringify!($name),
                |made| {
                    // SAFETY: the io_uring_submit hook on the application's
                    // ring, from this call's thread, which is submitting it.
                    let submit = || unsafe { io_uring_submit(ring) };
                    aio::submit_then_wait(ring, $counts, submit, || made.call(real))
                },
                real()
            )
        }
    };
}
uring_wait_hook!(io_uring_submit_and_wait, counts: true, (wait_nr: c_uint));
uring_wait_hook!(
    io_uring_submit_and_wait_timeout,
    counts: true,
    (cqe: *mut *mut c_void, wait_nr: c_uint, ts: *mut c_void, sigmask: *mut c_void)
);
uring_wait_hook!(
    io_uring_wait_cqes,
    counts: false,
    (cqe: *mut *mut c_void, wait_nr: c_uint, ts: *mut c_void, sigmask: *mut c_void)
);

#[no_mangle]
pub unsafe extern "C" fn io_uring_wait_cqe_timeout(
    ring: *mut c_void,
    cqe: *mut *mut c_void,
    ts: *mut c_void,
) -> c_int {
    // SAFETY: liburing's function on the application's ring, with its own
    // wait arguments, which only liburing and the kernel read or write.
    let real = move || unsafe { real::io_uring_wait_cqe_timeout(ring, cqe, ts) };
    boundary!(
        "io_uring_wait_cqe_timeout",
        |made| {
            // SAFETY: the io_uring_submit hook on the application's ring,
            // from this call's thread, which is submitting it.
            let submit = || unsafe { io_uring_submit(ring) };
            aio::submit_then_wait(ring, false, submit, || made.call(real))
        },
        real()
    )
}

#[no_mangle]
pub unsafe extern "C" fn io_setup(nr: c_int, ctx: *mut c_void) -> c_int {
    // A panic before the call falls back to refusing it, as it is refused
    // unless HOTBACKUP_NATIVE_AIO=1.
    boundary!(
        "io_setup",
        // SAFETY: libaio's io_setup with the application's `ctx`, which
        // only the kernel writes (EFAULT if invalid).
        |made| aio::io_setup(|| made.call(|| unsafe { real::io_setup(nr, ctx) })),
        -libc::ENOSYS
    )
}
