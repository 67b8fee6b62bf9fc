//! The real libc functions behind every interposed name.
//!
//! Each one is looked up with `dlsym(RTLD_NEXT, name)` on first use, not in a
//! constructor: another library's constructor may call `write` before ours
//! runs. When a name cannot be found (a libc without it, or a lookup that
//! re-entered itself) the call falls back to the raw system call, so a hook
//! never fails for want of its real function.
//!
//! Only the application's own calls come through here; the library's own I/O
//! uses raw system calls (see `sys`), which never pass through the hooks.

#![allow(clippy::missing_safety_doc)]

use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use libc::{
    c_char, c_int, c_long, c_uint, c_void, iovec, loff_t, mode_t, off64_t, off_t, size_t, ssize_t,
};

/// Pointer cache states besides a real address.
const UNRESOLVED: usize = 0;
const MISSING: usize = 1;

fn resolve(cache: &AtomicUsize, name: &'static [u8]) -> usize {
    let cached = cache.load(Relaxed);
    if cached != UNRESOLVED {
        return cached;
    }
    // SAFETY: `name` is a NUL-terminated literal (checked by the macro below);
    // dlsym has no other preconditions and is safe to call from any thread.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr().cast()) } as usize;
    let value = if p == 0 { MISSING } else { p };
    cache.store(value, Relaxed);
    value
}

macro_rules! real {
    ($( fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty, fallback: $fallback:expr; )*) => {$(
        #[inline]
        pub unsafe fn $name($($arg: $ty),*) -> $ret {
            static CACHE: AtomicUsize = AtomicUsize::new(UNRESOLVED);
            let p = resolve(&CACHE, concat!(stringify!($name), "\0").as_bytes());
            if p == MISSING {
                #[allow(unused_unsafe)]
                // SAFETY: the fallback is the raw system call with the same
                // arguments the caller gave the libc function.
                return unsafe { $fallback };
            }
            // SAFETY: `p` is the address dlsym returned for this libc name,
            // whose C prototype is the one spelled in this entry.
            let f: unsafe extern "C" fn($($ty),*) -> $ret = unsafe { core::mem::transmute(p) };
            // SAFETY: the caller passes the arguments it received from the
            // application for the same function.
            unsafe { f($($arg),*) }
        }
    )*};
}

macro_rules! real_variadic {
    ($( fn $name:ident($($arg:ident: $ty:ty),*; $va:ident: $vty:ty) -> $ret:ty, fallback: $fallback:expr; )*) => {$(
        #[inline]
        pub unsafe fn $name($($arg: $ty),*, $va: $vty) -> $ret {
            static CACHE: AtomicUsize = AtomicUsize::new(UNRESOLVED);
            let p = resolve(&CACHE, concat!(stringify!($name), "\0").as_bytes());
            if p == MISSING {
                #[allow(unused_unsafe)]
                // SAFETY: raw system call with the caller's arguments.
                return unsafe { $fallback };
            }
            // SAFETY: `p` is the libc function of that name, a C variadic
            // function with these fixed parameters.
            let f: unsafe extern "C" fn($($ty),*, ...) -> $ret = unsafe { core::mem::transmute(p) };
            // SAFETY: forwards the application's arguments, the optional one as
            // the type libc reads it with va_arg.
            unsafe { f($($arg),*, $va) }
        }
    )*};
}

fn sc(r: c_long) -> c_int {
    r as c_int
}

real_variadic! {
    fn open(path: *const c_char, flags: c_int; mode: c_uint) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path, flags, mode));
    fn open64(path: *const c_char, flags: c_int; mode: c_uint) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path, flags, mode));
    fn openat(dirfd: c_int, path: *const c_char, flags: c_int; mode: c_uint) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_openat, dirfd, path, flags, mode));
    fn openat64(dirfd: c_int, path: *const c_char, flags: c_int; mode: c_uint) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_openat, dirfd, path, flags, mode));
    fn fcntl(fd: c_int, cmd: c_int; arg: c_long) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_fcntl, fd, cmd, arg));
    fn fcntl64(fd: c_int, cmd: c_int; arg: c_long) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_fcntl, fd, cmd, arg));
}

real! {
    fn __open_2(path: *const c_char, flags: c_int) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path, flags, 0));
    fn __open64_2(path: *const c_char, flags: c_int) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path, flags, 0));
    fn __openat_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_openat, dirfd, path, flags, 0));
    fn __openat64_2(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_openat, dirfd, path, flags, 0));
    fn creat(path: *const c_char, mode: mode_t) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path,
            libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC, mode));
    fn creat64(path: *const c_char, mode: mode_t) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path,
            libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC, mode));

    fn write(fd: c_int, buf: *const c_void, n: size_t) -> ssize_t,
        fallback: libc::syscall(libc::SYS_write, fd, buf, n) as ssize_t;
    fn pwrite(fd: c_int, buf: *const c_void, n: size_t, off: off_t) -> ssize_t,
        fallback: libc::syscall(libc::SYS_pwrite64, fd, buf, n, off) as ssize_t;
    fn pwrite64(fd: c_int, buf: *const c_void, n: size_t, off: off64_t) -> ssize_t,
        fallback: libc::syscall(libc::SYS_pwrite64, fd, buf, n, off) as ssize_t;
    fn writev(fd: c_int, iov: *const iovec, cnt: c_int) -> ssize_t,
        fallback: libc::syscall(libc::SYS_writev, fd, iov, cnt) as ssize_t;
    fn pwritev(fd: c_int, iov: *const iovec, cnt: c_int, off: off_t) -> ssize_t,
        fallback: libc::syscall(libc::SYS_pwritev, fd, iov, cnt, off, 0) as ssize_t;
    fn pwritev64(fd: c_int, iov: *const iovec, cnt: c_int, off: off64_t) -> ssize_t,
        fallback: libc::syscall(libc::SYS_pwritev, fd, iov, cnt, off, 0) as ssize_t;
    fn pwritev2(fd: c_int, iov: *const iovec, cnt: c_int, off: off_t, flags: c_int) -> ssize_t,
        fallback: libc::syscall(libc::SYS_pwritev2, fd, iov, cnt, off, 0, flags) as ssize_t;
    fn pwritev64v2(fd: c_int, iov: *const iovec, cnt: c_int, off: off64_t, flags: c_int) -> ssize_t,
        fallback: libc::syscall(libc::SYS_pwritev2, fd, iov, cnt, off, 0, flags) as ssize_t;

    fn ftruncate(fd: c_int, len: off_t) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_ftruncate, fd, len));
    fn ftruncate64(fd: c_int, len: off64_t) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_ftruncate, fd, len));
    fn truncate(path: *const c_char, len: off_t) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_truncate, path, len));
    fn truncate64(path: *const c_char, len: off64_t) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_truncate, path, len));
    fn fallocate(fd: c_int, mode: c_int, off: off_t, len: off_t) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_fallocate, fd, mode, off, len));
    fn fallocate64(fd: c_int, mode: c_int, off: off64_t, len: off64_t) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_fallocate, fd, mode, off, len));
    fn posix_fallocate(fd: c_int, off: off_t, len: off_t) -> c_int,
        fallback: posix_fallocate_fallback(fd, off, len);
    fn posix_fallocate64(fd: c_int, off: off64_t, len: off64_t) -> c_int,
        fallback: posix_fallocate_fallback(fd, off, len);

    fn rename(old: *const c_char, new: *const c_char) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_renameat2, libc::AT_FDCWD, old, libc::AT_FDCWD, new, 0));
    fn renameat(olddir: c_int, old: *const c_char, newdir: c_int, new: *const c_char) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_renameat2, olddir, old, newdir, new, 0));
    fn renameat2(olddir: c_int, old: *const c_char, newdir: c_int, new: *const c_char, flags: c_uint) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_renameat2, olddir, old, newdir, new, flags));
    fn unlink(path: *const c_char) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_unlinkat, libc::AT_FDCWD, path, 0));
    fn unlinkat(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_unlinkat, dirfd, path, flags));
    fn link(old: *const c_char, new: *const c_char) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_linkat, libc::AT_FDCWD, old, libc::AT_FDCWD, new, 0));
    fn linkat(olddir: c_int, old: *const c_char, newdir: c_int, new: *const c_char, flags: c_int) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_linkat, olddir, old, newdir, new, flags));
    fn symlink(target: *const c_char, path: *const c_char) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_symlinkat, target, libc::AT_FDCWD, path));
    fn symlinkat(target: *const c_char, dirfd: c_int, path: *const c_char) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_symlinkat, target, dirfd, path));
    fn mkdir(path: *const c_char, mode: mode_t) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_mkdirat, libc::AT_FDCWD, path, mode));
    fn mkdirat(dirfd: c_int, path: *const c_char, mode: mode_t) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_mkdirat, dirfd, path, mode));
    fn rmdir(path: *const c_char) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_unlinkat, libc::AT_FDCWD, path, libc::AT_REMOVEDIR));

    fn close(fd: c_int) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_close, fd));
    fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_close_range, first, last, flags));
    fn closefrom(lowfd: c_int) -> (),
        fallback: closefrom_fallback(lowfd);
    fn dup(fd: c_int) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_dup, fd));
    fn dup2(old: c_int, new: c_int) -> c_int,
        fallback: dup2_fallback(old, new);
    fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int,
        fallback: sc(libc::syscall(libc::SYS_dup3, old, new, flags));

    fn copy_file_range(fd_in: c_int, off_in: *mut loff_t, fd_out: c_int, off_out: *mut loff_t, len: size_t, flags: c_uint) -> ssize_t,
        fallback: libc::syscall(libc::SYS_copy_file_range, fd_in, off_in, fd_out, off_out, len, flags) as ssize_t;
    fn sendfile(out_fd: c_int, in_fd: c_int, offset: *mut off_t, count: size_t) -> ssize_t,
        fallback: libc::syscall(libc::SYS_sendfile, out_fd, in_fd, offset, count) as ssize_t;
    fn sendfile64(out_fd: c_int, in_fd: c_int, offset: *mut off64_t, count: size_t) -> ssize_t,
        fallback: libc::syscall(libc::SYS_sendfile, out_fd, in_fd, offset, count) as ssize_t;

    fn mmap(addr: *mut c_void, len: size_t, prot: c_int, flags: c_int, fd: c_int, off: off_t) -> *mut c_void,
        fallback: libc::syscall(libc::SYS_mmap, addr, len, prot, flags, fd, off) as *mut c_void;
    fn mmap64(addr: *mut c_void, len: size_t, prot: c_int, flags: c_int, fd: c_int, off: off64_t) -> *mut c_void,
        fallback: libc::syscall(libc::SYS_mmap, addr, len, prot, flags, fd, off) as *mut c_void;

    fn io_uring_queue_init(entries: c_uint, ring: *mut c_void, flags: c_uint) -> c_int,
        fallback: -libc::ENOSYS;
    fn io_uring_queue_init_params(entries: c_uint, ring: *mut c_void, params: *mut c_void) -> c_int,
        fallback: -libc::ENOSYS;
    fn io_uring_queue_exit(ring: *mut c_void) -> (),
        fallback: ();
    fn io_uring_submit(ring: *mut c_void) -> c_int,
        fallback: -libc::ENOSYS;
    fn io_uring_submit_and_get_events(ring: *mut c_void) -> c_int,
        fallback: -libc::ENOSYS;
    fn io_uring_submit_and_wait(ring: *mut c_void, wait_nr: c_uint) -> c_int,
        fallback: -libc::ENOSYS;
    fn io_uring_submit_and_wait_timeout(ring: *mut c_void, cqe: *mut *mut c_void, wait_nr: c_uint, ts: *mut c_void, sigmask: *mut c_void) -> c_int,
        fallback: -libc::ENOSYS;
    fn io_uring_wait_cqes(ring: *mut c_void, cqe: *mut *mut c_void, wait_nr: c_uint, ts: *mut c_void, sigmask: *mut c_void) -> c_int,
        fallback: -libc::ENOSYS;
    fn io_uring_wait_cqe_timeout(ring: *mut c_void, cqe: *mut *mut c_void, ts: *mut c_void) -> c_int,
        fallback: -libc::ENOSYS;
    fn io_setup(nr: c_int, ctx: *mut c_void) -> c_int,
        fallback: -libc::ENOSYS;
}

fn posix_fallocate_fallback(fd: c_int, off: i64, len: i64) -> c_int {
    // SAFETY: fallocate(2) with mode 0 on an application descriptor.
    let r = unsafe { libc::syscall(libc::SYS_fallocate, fd, 0, off, len) };
    if r == 0 {
        0
    } else {
        crate::sys::errno()
    }
}

/// closefrom where libc has none (glibc before 2.34): close_range(2), and on
/// kernels without it (before 5.9) every descriptor up to the open-files
/// limit, as glibc's own fallback does when /proc cannot be read.
/// errno is left as it was: closefrom reports nothing.
fn closefrom_fallback(lowfd: c_int) {
    let saved = crate::sys::errno();
    // SAFETY: closefrom is the application's call, made through this
    // fallback only when none of the library's descriptors is at `lowfd`
    // or above (hooks.rs, own_fds::close_around).
    unsafe { close_each(lowfd.max(0) as c_uint, c_uint::MAX) };
    crate::sys::set_errno(saved);
}

/// Close the descriptors in `[first, last]`: close_range(2), or one by one
/// below the open-files limit on a kernel without it (before 5.9). For
/// closefrom, which reports nothing: errno may change.
///
/// # Safety
/// The application asked to close `[first, last]`, and none of the
/// library's descriptors is in it.
pub unsafe fn close_each(first: c_uint, last: c_uint) {
    // SAFETY: integers only; [first, last] is the application's to close
    // (this function's contract).
    if unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) } == 0 {
        return;
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes only into `lim`.
    let r = unsafe { libc::syscall(libc::SYS_getrlimit, libc::RLIMIT_NOFILE, &mut lim) };
    let end = if r == 0 {
        lim.rlim_cur.min(c_int::MAX as u64) as c_uint
    } else {
        1024
    };
    for fd in first..end.min(last.saturating_add(1)) {
        // SAFETY: close(2) of a number in that range, as above.
        unsafe { libc::syscall(libc::SYS_close, fd) };
    }
}

fn dup2_fallback(old: c_int, new: c_int) -> c_int {
    if old == new {
        // dup3 refuses equal descriptors; dup2 checks validity instead.
        // SAFETY: fcntl(F_GETFD) only reads descriptor flags.
        let r = unsafe { libc::syscall(libc::SYS_fcntl, old, libc::F_GETFD) };
        return if r < 0 { -1 } else { new };
    }
    // SAFETY: raw dup3 with the application's descriptors.
    sc(unsafe { libc::syscall(libc::SYS_dup3, old, new, 0) })
}
