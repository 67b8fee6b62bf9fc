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
    // SAFETY: the application's call, with its buffer or a staged copy.
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
            // SAFETY: the application's call, with its buffer or a staged copy.
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
    // SAFETY: the application's call, with its iovecs or staged ones.
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
            // SAFETY: the application's call, with its iovecs or staged ones.
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
            // SAFETY: the application's call, with its iovecs or staged ones.
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
    // SAFETY: forwarding the application's call with its own arguments.
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
            // SAFETY: forwarding the application's call with its own arguments.
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
            // SAFETY: forwarding the application's call with its own arguments.
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
            // SAFETY: forwarding the application's call with its own arguments.
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
            // SAFETY: forwarding the application's call with its own arguments.
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
            // SAFETY: forwarding the application's call with its own arguments.
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
            // SAFETY: forwarding the application's call with its own arguments.
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
            // SAFETY: forwarding the application's call with its own arguments.
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
            // SAFETY: forwarding the application's call with its own arguments.
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
            // SAFETY: forwarding the application's call with its own arguments.
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
            // SAFETY: forwarding the application's call.
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
fd_hook!(fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int, gate: KIND_NO_CHANGE,
|g: &Gate, m: &Made<c_int>, r| {
    if r == 0 && g.capturing() && flags & libc::CLOSE_RANGE_CLOEXEC as c_int == 0 {
        m.note(r);
        capture::forget_range(g, first, last);
    }
    r
});

#[no_mangle]
pub unsafe extern "C" fn closefrom(lowfd: c_int) {
    // SAFETY: forwarding the application's call.
    let real = move || unsafe { real::closefrom(lowfd) };
    boundary!(
        "closefrom",
        |made| {
            let gate = Gate::enter(KIND_NO_CHANGE);
            real();
            if gate.capturing() {
                made.note(());
                capture::forget_range(&gate, lowfd.max(0) as u32, u32::MAX);
            }
        },
        real()
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
            // SAFETY: forwarding the application's call.
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

// ---- asynchronous I/O ----
// Rings set up through liburing are followed (see `uring`); Linux native AIO
// (libaio) is turned off, so that its writes go through pwrite.

/// Whether the process asked to keep io_uring/libaio unfollowed (backups are
/// then refused while a ring or context exists).
fn native_aio_allowed() -> bool {
    env_flag(c"HOTBACKUP_NATIVE_AIO", b"1")
}

/// Whether io_uring is to be turned off (the process then falls back to
/// its synchronous writes), as before rings could be followed.
fn io_uring_off() -> bool {
    env_flag(c"HOTBACKUP_IO_URING", b"off")
}

fn env_flag(name: &'static core::ffi::CStr, value: &[u8]) -> bool {
    // SAFETY: getenv with a NUL-terminated name; it returns NULL or a
    // NUL-terminated string that lives as long as the environment is not
    // changed, which processes do not do while setting up I/O.
    let v = unsafe { libc::getenv(name.as_ptr()) };
    // SAFETY: as above.
    !v.is_null() && unsafe { std::ffi::CStr::from_ptr(v) }.to_bytes() == value
}

fn refuse_native_aio(what: &str, why: &str) {
    sys::say(&format!("{what} refused so that every write can be captured for hot backups: {why} (set HOTBACKUP_NATIVE_AIO=1 to keep it and disable backups)"));
}

/// Set a ring up and follow it, or refuse it (liburing's callers then fall
/// back to synchronous I/O) when it could not be captured.
unsafe fn init_ring(ring: *mut c_void, setup_flags: c_uint, init: impl FnOnce() -> c_int) -> c_int {
    if native_aio_allowed() {
        return init();
    }
    if io_uring_off() {
        refuse_native_aio("io_uring", "HOTBACKUP_IO_URING=off");
        return -libc::ENOSYS;
    }
    if let Err(why) = crate::uring::capturable(setup_flags) {
        refuse_native_aio("io_uring", &why);
        return -libc::ENOSYS;
    }
    let r = init();
    // SAFETY: liburing set the ring up (r == 0).
    if r == 0 && !unsafe { crate::uring::register(ring) } {
        // SAFETY: the ring liburing just set up, not yet used.
        unsafe { real::io_uring_queue_exit(ring) };
        refuse_native_aio(
            "io_uring",
            &format!("more than {} rings", crate::uring::MAX_RINGS),
        );
        return -libc::ENOSYS;
    }
    r
}

#[no_mangle]
pub unsafe extern "C" fn io_uring_queue_init(
    entries: c_uint,
    ring: *mut c_void,
    flags: c_uint,
) -> c_int {
    // SAFETY: forwarding the application's call.
    let real = move || unsafe { real::io_uring_queue_init(entries, ring, flags) };
    boundary!(
        "io_uring_queue_init",
        // SAFETY: the application's ring, set up by its own call.
        |made| unsafe { init_ring(ring, flags, || made.call(real)) },
        real()
    )
}

#[no_mangle]
pub unsafe extern "C" fn io_uring_queue_init_params(
    entries: c_uint,
    ring: *mut c_void,
    params: *mut c_void,
) -> c_int {
    // SAFETY: forwarding the application's call.
    let real = move || unsafe { real::io_uring_queue_init_params(entries, ring, params) };
    boundary!(
        "io_uring_queue_init_params",
        |made| {
            // struct io_uring_params starts with sq_entries, cq_entries, flags.
            let flags = if params.is_null() {
                0
            } else {
                // SAFETY: liburing requires a valid io_uring_params (and
                // reads it itself before any system call).
                unsafe { *params.cast::<c_uint>().add(2) }
            };
            // SAFETY: the application's ring, set up by its own call.
            unsafe { init_ring(ring, flags, || made.call(real)) }
        },
        real()
    )
}

#[no_mangle]
pub unsafe extern "C" fn io_uring_queue_exit(ring: *mut c_void) {
    // SAFETY: forwarding the application's call.
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
            // SAFETY: forwarding the application's call.
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

/// Submit what a followed ring has queued through `io_uring_submit` (inside
/// the gate), then make the application's waiting call outside it, which
/// finds nothing more to submit. `counts`: the call returns how many
/// entries it submitted, to which ours are added.
unsafe fn submit_then_wait(ring: *mut c_void, counts: bool, wait: impl FnOnce() -> c_int) -> c_int {
    let first = if crate::uring::queued(ring) == 0 {
        0
    } else {
        // SAFETY: the application's ring, from its submitting thread.
        unsafe { io_uring_submit(ring) }
    };
    if first < 0 {
        return first;
    }
    let r = wait();
    if counts && r >= 0 {
        first + r
    } else {
        r
    }
}

#[no_mangle]
pub unsafe extern "C" fn io_uring_submit_and_wait(ring: *mut c_void, wait_nr: c_uint) -> c_int {
    // SAFETY: the application's ring and call, forwarded.
    let real = move || unsafe { real::io_uring_submit_and_wait(ring, wait_nr) };
    boundary!(
        "io_uring_submit_and_wait",
        // SAFETY: the application's ring, from its submitting thread.
        |made| unsafe { submit_then_wait(ring, true, || made.call(real)) },
        real()
    )
}

#[no_mangle]
pub unsafe extern "C" fn io_uring_submit_and_wait_timeout(
    ring: *mut c_void,
    cqe: *mut *mut c_void,
    wait_nr: c_uint,
    ts: *mut c_void,
    sigmask: *mut c_void,
) -> c_int {
    // SAFETY: the application's ring and call, forwarded.
    let real =
        || unsafe { real::io_uring_submit_and_wait_timeout(ring, cqe, wait_nr, ts, sigmask) };
    boundary!(
        "io_uring_submit_and_wait_timeout",
        // SAFETY: the application's ring, from its submitting thread.
        |made| unsafe { submit_then_wait(ring, true, || made.call(real)) },
        real()
    )
}

#[no_mangle]
pub unsafe extern "C" fn io_uring_wait_cqes(
    ring: *mut c_void,
    cqe: *mut *mut c_void,
    wait_nr: c_uint,
    ts: *mut c_void,
    sigmask: *mut c_void,
) -> c_int {
    // SAFETY: the application's ring and call, forwarded.
    let real = move || unsafe { real::io_uring_wait_cqes(ring, cqe, wait_nr, ts, sigmask) };
    boundary!(
        "io_uring_wait_cqes",
        // SAFETY: the application's ring, from its submitting thread.
        |made| unsafe { submit_then_wait(ring, false, || made.call(real)) },
        real()
    )
}

#[no_mangle]
pub unsafe extern "C" fn io_uring_wait_cqe_timeout(
    ring: *mut c_void,
    cqe: *mut *mut c_void,
    ts: *mut c_void,
) -> c_int {
    // SAFETY: the application's ring and call, forwarded.
    let real = move || unsafe { real::io_uring_wait_cqe_timeout(ring, cqe, ts) };
    boundary!(
        "io_uring_wait_cqe_timeout",
        // SAFETY: the application's ring, from its submitting thread.
        |made| unsafe { submit_then_wait(ring, false, || made.call(real)) },
        real()
    )
}

#[no_mangle]
pub unsafe extern "C" fn io_setup(nr: c_int, ctx: *mut c_void) -> c_int {
    // A panic before the call falls back to refusing it, as it is refused
    // unless HOTBACKUP_NATIVE_AIO=1.
    boundary!(
        "io_setup",
        |made| {
            if native_aio_allowed() {
                // SAFETY: forwarding the application's call.
                return made.call(|| unsafe { real::io_setup(nr, ctx) });
            }
            refuse_native_aio(
                "Linux native AIO (io_setup)",
                "its writes are invisible to the library",
            );
            -libc::ENOSYS
        },
        -libc::ENOSYS
    )
}
