//! The library's own file I/O: raw system calls through rustix's linux_raw
//! backend, which never pass through libc and so can never re-enter the
//! interposed functions. Nothing in here touches `errno`.

use crate::own_fds;
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, RawFd};
use rustix::fs::{self, AtFlags, Mode, OFlags};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering::Relaxed};

pub fn errno() -> libc::c_int {
    // SAFETY: __errno_location returns this thread's errno slot.
    unsafe { *libc::__errno_location() }
}

pub fn set_errno(e: libc::c_int) {
    // SAFETY: as above; writing the caller's own thread's errno.
    unsafe { *libc::__errno_location() = e }
}

/// The regular file a descriptor refers to, as (device, inode); None for
/// anything else (a socket, a pipe, a directory).
///
/// Asked with `statx` for the type and inode only, not with `fstat`: since
/// Linux 6.13, reading a file's timestamps makes its next write take a
/// fine-grained time and journal the inode (multigrain timestamps), so an
/// `fstat` before each captured write made every one of the application's
/// writes update the inode.
pub fn file_id(fd: BorrowedFd<'_>) -> Result<Option<(u64, u64)>, Errno> {
    let st = stat_without_times(fd, fs::StatxFlags::TYPE | fs::StatxFlags::INO)?;
    Ok((st.mode & libc::S_IFMT == libc::S_IFREG).then_some((st.dev, st.ino)))
}

/// The size of the file `fd` refers to, without reading its timestamps
/// (see `file_id`).
pub fn file_size(fd: BorrowedFd<'_>) -> Result<u64, Errno> {
    stat_without_times(fd, fs::StatxFlags::SIZE).map(|st| st.size)
}

/// What `statx` tells of `fd` for `mask` (other fields are 0); kernels
/// without `statx` (before 4.11) get `fstat`, which has them all.
struct Stat {
    mode: u32,
    dev: u64,
    ino: u64,
    size: u64,
}

fn stat_without_times(fd: BorrowedFd<'_>, mask: fs::StatxFlags) -> Result<Stat, Errno> {
    match fs::statx(fd, c"", AtFlags::EMPTY_PATH, mask) {
        Ok(st) => Ok(Stat {
            mode: u32::from(st.stx_mode),
            dev: fs::makedev(st.stx_dev_major, st.stx_dev_minor),
            ino: st.stx_ino,
            size: st.stx_size,
        }),
        Err(Errno::NOSYS) => fs::fstat(fd).map(|st| Stat {
            mode: st.st_mode,
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
        }),
        Err(e) => Err(e),
    }
}

/// Lowest descriptor number the library uses for its own files, if any.
/// The application's numbers are allocated from the bottom; keeping ours far
/// above them means an application that closes a number twice (a bug, but
/// it happens) cannot close ours, nor can a number of ours be reused under
/// the application and mirrored into. 0 until first needed; -1 when the
/// limit is too small to split (below 128: ours are allocated like any).
static OWN_FD_BASE: AtomicI32 = AtomicI32::new(0);

fn own_fd_base() -> Option<i32> {
    let b = OWN_FD_BASE.load(Relaxed);
    let b = if b == 0 { place_own_fds() } else { b };
    (b > 0).then_some(b)
}

/// Half the current soft limit, where the library's descriptors start;
/// called again when a backup starts, as the process may have changed its
/// limit since (servers raise it at startup).
pub fn place_own_fds() -> i32 {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(1 << 20);
    let b = if soft < 128 {
        -1
    } else {
        (soft / 2).min(1 << 20) as i32
    };
    OWN_FD_BASE.store(b, Relaxed);
    b
}

/// How many descriptors the process has open (entries of /proc/self/fd,
/// less the one that lists them).
pub fn open_descriptors() -> Result<usize, Errno> {
    let dir = open_dir(Path::new("/proc/self/fd"))?;
    Ok(list_dir(dir.as_fd())?.len().saturating_sub(1))
}

/// A descriptor of the library's own, recorded in `own_fds` for as long as
/// it is open. Unlike std's OwnedFd, dropping it closes with the raw system
/// call, not through libc's `close` - which is one of the interposed
/// functions.
pub struct OwnFd(RawFd);

impl AsFd for OwnFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: `self.0` stays open while `self` exists: only Drop closes
        // it, and the application's closefrom/close_range spare it (it is
        // recorded in own_fds); the borrow cannot outlive `self`.
        unsafe { BorrowedFd::borrow_raw(self.0) }
    }
}

impl Drop for OwnFd {
    fn drop(&mut self) {
        let changing = own_fds::changing();
        changing.forget(self.0);
        // SAFETY: `self.0` was opened by `openat` below and recorded as the
        // library's, so no application call closed it (closefrom and
        // close_range close around recorded numbers; the library numbers
        // its own far above the application's); this is its only close,
        // and the OwnFd is gone after it.
        unsafe { rustix::io::close(self.0) }
    }
}

/// openat(2) for the library's own use: close-on-exec, numbered from
/// `own_fd_base` up when the limit allows.
pub fn openat(
    dirfd: BorrowedFd<'_>,
    path: &Path,
    flags: OFlags,
    mode: Mode,
) -> Result<OwnFd, Errno> {
    // From the kernel's answer until the number is recorded, an
    // application's closefrom waits.
    let changing = own_fds::changing();
    let fd = fs::openat(dirfd, path, flags | OFlags::CLOEXEC, mode)?;
    // Above the base while there is room there; where there is none (the
    // application uses those numbers, or the process is at its limit: the
    // duplicate needs a second descriptor), the number the kernel gave.
    let fd = dup_high(fd.as_fd()).unwrap_or(fd);
    if !changing.record(fd.as_raw_fd()) {
        return Err(Errno::MFILE);
    }
    Ok(OwnFd(fd.into_raw_fd()))
}

/// A close-on-exec duplicate of `fd` numbered from `own_fd_base` up; None
/// when the limit is too small to split, or there is no room there.
pub fn dup_high(fd: BorrowedFd<'_>) -> Option<rustix::fd::OwnedFd> {
    own_fd_base().and_then(|base| rustix::io::fcntl_dupfd_cloexec(fd, base).ok())
}

/// One line from the library on the process's stderr (a server's error
/// log), for events no backup's caller hears of.
pub fn say(msg: &str) {
    let _ = rustix::io::write(borrow(2), format!("libHotBackup: {msg}\n").as_bytes());
}

/// Borrow a descriptor number the application gave us, for the duration of
/// one call in which the application keeps it open.
pub fn borrow(fd: libc::c_int) -> BorrowedFd<'static> {
    if fd == libc::AT_FDCWD {
        return fs::CWD;
    }
    // SAFETY: the descriptor belongs to the application call in progress; the
    // borrow does not outlive that call (callers never store it).
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// The kernel's name for an open descriptor (`/proc/self/fd/N`): absolute,
/// with symbolic links resolved.
pub fn fd_path(fd: BorrowedFd<'_>) -> Result<PathBuf, Errno> {
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let target = fs::readlinkat(fs::CWD, link.as_str(), Vec::new())?;
    Ok(PathBuf::from(OsStr::from_bytes(target.as_bytes())))
}

/// Canonical absolute path of a directory named relative to `dirfd`.
pub fn canonical_dir(dirfd: BorrowedFd<'_>, path: &Path) -> Result<PathBuf, Errno> {
    let path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    let fd = openat(
        dirfd,
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    fd_path(fd.as_fd())
}

pub fn open_dir(path: &Path) -> Result<OwnFd, Errno> {
    openat(
        fs::CWD,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

pub fn exists(dirfd: BorrowedFd<'_>, path: &Path, follow: bool) -> bool {
    let flags = if follow {
        AtFlags::empty()
    } else {
        AtFlags::SYMLINK_NOFOLLOW
    };
    fs::statat(dirfd, path, flags).is_ok()
}

/// Write all of `buf` at `off`, retrying short writes.
pub fn pwrite_all(fd: BorrowedFd<'_>, mut buf: &[u8], mut off: u64) -> Result<(), Errno> {
    while !buf.is_empty() {
        match rustix::io::pwrite(fd, buf, off) {
            Ok(0) => return Err(Errno::NOSPC),
            Ok(n) => {
                buf = &buf[n..];
                off += n as u64;
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Read into all of `buf` from `off`, retrying short reads; returns how
/// many bytes were read (fewer only at the end of the file).
pub fn pread_full(fd: BorrowedFd<'_>, buf: &mut [u8], off: u64) -> Result<usize, Errno> {
    let mut done = 0;
    while done < buf.len() {
        match rustix::io::pread(fd, &mut buf[done..], off + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Remove `path` below `dirfd` whatever it is; a directory goes with its
/// contents. A missing entry is not an error.
pub fn remove_tree(dirfd: BorrowedFd<'_>, path: &Path) -> Result<(), Errno> {
    match fs::unlinkat(dirfd, path, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(e),
    }
    let dir = match openat(
        dirfd,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(d) => d,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    let names = list_dir(dir.as_fd())?;
    for name in names {
        remove_tree(dir.as_fd(), Path::new(&name))?;
    }
    match fs::unlinkat(dirfd, path, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Names in a directory, without `.` and `..` (getdents64 on the
/// descriptor itself, which is neither duplicated nor closed).
pub fn list_dir(dir: BorrowedFd<'_>) -> Result<Vec<std::ffi::OsString>, Errno> {
    let mut out = Vec::new();
    let mut buf = vec![core::mem::MaybeUninit::<u8>::uninit(); 32 * 1024];
    rustix::fs::seek(dir, rustix::fs::SeekFrom::Start(0))?;
    let mut entries = rustix::fs::RawDir::new(dir, &mut buf);
    while let Some(entry) = entries.next() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        out.push(OsStr::from_bytes(name).to_os_string());
    }
    Ok(out)
}

/// Start writing `[off, off + len)` of a destination file back to disk
/// without waiting for it, so that the sync at the end of a backup finds
/// little left to write. Only for the library's own threads: it may set
/// errno.
pub fn start_writeback(fd: BorrowedFd<'_>, off: u64, len: u64) {
    // SAFETY: sync_file_range reads only its integer arguments; a failure
    // (e.g. a file system without it) costs nothing but the early start.
    unsafe {
        libc::sync_file_range(
            fd.as_raw_fd(),
            off as i64,
            len as i64,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
}

/// Text of an errno value, for messages.
pub fn strerror(e: Errno) -> String {
    std::io::Error::from_raw_os_error(e.raw_os_error()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// `file_id` names a file as `fstat` and the tree walk do (the fd
    /// table compares them), and nothing else as a file.
    #[test]
    fn file_id_matches_fstat() {
        let p = std::env::temp_dir().join(format!("hb-file-id-{}", std::process::id()));
        std::fs::write(&p, b"0123456789").unwrap();
        let f = std::fs::File::open(&p).unwrap();
        let md = std::fs::metadata(&p).unwrap();
        assert_eq!(file_id(f.as_fd()), Ok(Some((md.dev(), md.ino()))));
        assert_eq!(file_size(f.as_fd()), Ok(10));
        let dir = std::fs::File::open(std::env::temp_dir()).unwrap();
        assert_eq!(file_id(dir.as_fd()), Ok(None));
        let (r, _w) = std::io::pipe().unwrap();
        assert_eq!(file_id(r.as_fd()), Ok(None));
        std::fs::remove_file(&p).unwrap();
    }
}
