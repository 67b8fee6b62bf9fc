//! Copies a directory tree fast: a reflink (FICLONE) where the filesystem
//! shares extents, else copy_file_range over the data segments only (holes
//! stay holes, bytes stay in the kernel), else read/write; files in
//! parallel, largest first.

use crate::error::{Error, Exit, Result};
use crate::manifest::parallel;
use crate::signals;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// Owner to give every copied file.
#[derive(Debug, Clone, Copy)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// uid and gid of a user name.
pub fn lookup_user(name: &str) -> Result<Owner> {
    let c = CString::new(name).map_err(|_| Error::new(Exit::Usage, "user name has a NUL byte"))?;
    // SAFETY: getpwnam returns NULL or a pointer to static storage, read at
    // once (no other thread calls getpwnam meanwhile).
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    if pw.is_null() {
        return Err(Error::new(
            Exit::Usage,
            format!("no such user '{name}' (--user: the server's user, which will own the files)"),
        ));
    }
    // SAFETY: pw is non-NULL and points to a valid passwd entry.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Owner { uid, gid })
}

fn fail(what: &str, p: &Path, e: &std::io::Error) -> Error {
    Error::io(Exit::RestoreFailed, what, p, e)
}

/// Copies the tree `src` to `dst` (which must not exist). Symbolic links
/// get their target through `relink`. Returns the bytes copied.
pub fn copy_tree(
    src: &Path,
    dst: &Path,
    owner: Option<Owner>,
    threads: usize,
    relink: &(dyn Fn(&Path) -> PathBuf + Sync),
) -> Result<u64> {
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    mirror_dirs(src, dst, &mut dirs, &mut files, relink, owner)?;
    files.sort_by_key(|(_, _, n)| std::cmp::Reverse(*n));
    let delay = test_delay();
    let results = parallel(&files, threads, |(s, d, _)| {
        if let Some(t) = delay {
            std::thread::sleep(t);
        }
        if signals::interrupted() {
            return Err(interrupted());
        }
        copy_file(s, d, owner)
    });
    let mut total = 0;
    for r in results {
        total += r?;
    }
    // Directory modes last: a read-only directory would refuse its files.
    for (d, mode) in dirs.iter().rev() {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(*mode))
            .map_err(|e| fail("cannot set the mode of", d, &e))?;
    }
    Ok(total)
}

type FileJob = (PathBuf, PathBuf, u64);

fn interrupted() -> Error {
    Error::new(Exit::Interrupted, "interrupted")
}

/// For tests only: `TOKUBACKUP_TEST_COPY_DELAY_MS` makes every file copy
/// wait that long first, so that a test can interrupt a copy surely
/// mid-way (README "The tokubackup command").
fn test_delay() -> Option<std::time::Duration> {
    std::env::var("TOKUBACKUP_TEST_COPY_DELAY_MS")
        .ok()?
        .parse()
        .ok()
        .map(std::time::Duration::from_millis)
}

fn mirror_dirs(
    src: &Path,
    dst: &Path,
    dirs: &mut Vec<(PathBuf, u32)>,
    files: &mut Vec<FileJob>,
    relink: &(dyn Fn(&Path) -> PathBuf + Sync),
    owner: Option<Owner>,
) -> Result<()> {
    let md = std::fs::metadata(src).map_err(|e| fail("cannot stat", src, &e))?;
    std::fs::create_dir(dst).map_err(|e| fail("cannot create", dst, &e))?;
    chown(dst, owner)?;
    dirs.push((dst.to_path_buf(), md.mode() & 0o7777));
    for e in std::fs::read_dir(src).map_err(|e| fail("cannot list", src, &e))? {
        let e = e.map_err(|e| fail("cannot list", src, &e))?;
        let (s, d) = (e.path(), dst.join(e.file_name()));
        let md = std::fs::symlink_metadata(&s).map_err(|e| fail("cannot stat", &s, &e))?;
        if md.is_dir() {
            mirror_dirs(&s, &d, dirs, files, relink, owner)?;
        } else if md.file_type().is_symlink() {
            let t = std::fs::read_link(&s).map_err(|e| fail("cannot read link", &s, &e))?;
            std::os::unix::fs::symlink(relink(&t), &d)
                .map_err(|e| fail("cannot create link", &d, &e))?;
            chown(&d, owner)?;
        } else if md.is_file() {
            files.push((s, d, md.len()));
        }
    }
    Ok(())
}

fn chown(p: &Path, owner: Option<Owner>) -> Result<()> {
    if let Some(o) = owner {
        std::os::unix::fs::lchown(p, Some(o.uid), Some(o.gid))
            .map_err(|e| fail("cannot chown", p, &e))?;
    }
    Ok(())
}

/// Copies one file's bytes, holes and mode; returns its size.
pub fn copy_file(src: &Path, dst: &Path, owner: Option<Owner>) -> Result<u64> {
    let from = std::fs::File::open(src).map_err(|e| fail("cannot open", src, &e))?;
    let md = from.metadata().map_err(|e| fail("cannot stat", src, &e))?;
    let to = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dst)
        .map_err(|e| fail("cannot create", dst, &e))?;
    const FICLONE: libc::c_ulong = 0x4004_9409;
    // SAFETY: both descriptors are open; FICLONE takes the source fd.
    let cloned = unsafe { libc::ioctl(to.as_raw_fd(), FICLONE, from.as_raw_fd()) } == 0;
    if !cloned {
        copy_data(&from, &to, md.len()).map_err(|e| match e.kind() {
            std::io::ErrorKind::Interrupted if signals::interrupted() => interrupted(),
            _ => fail("cannot copy to", dst, &e),
        })?;
    }
    to.set_permissions(std::fs::Permissions::from_mode(md.mode() & 0o7777))
        .map_err(|e| fail("cannot set the mode of", dst, &e))?;
    chown(dst, owner)?;
    Ok(md.len())
}

/// The data segments (SEEK_DATA/SEEK_HOLE) with copy_file_range, then the
/// length (a hole at the end).
fn copy_data(from: &std::fs::File, to: &std::fs::File, len: u64) -> std::io::Result<()> {
    let (fi, fo) = (from.as_raw_fd(), to.as_raw_fd());
    let mut pos: i64 = 0;
    let end = len as i64;
    while pos < end {
        // SAFETY: lseek on an open descriptor.
        let data = unsafe { libc::lseek(fi, pos, libc::SEEK_DATA) };
        if data < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole is left
            }
            return Err(e);
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fi, data, libc::SEEK_HOLE) }.min(end);
        copy_range(fi, fo, data, hole - data)?;
        pos = hole;
    }
    to.set_len(len)
}

fn copy_range(fi: i32, fo: i32, start: i64, len: i64) -> std::io::Result<()> {
    let (mut off_in, mut off_out, mut left) = (start, start, len);
    while left > 0 {
        // Chunks of 64 MiB: a signal stops a large file's copy within one.
        if signals::interrupted() {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        let chunk = left.min(1 << 26) as usize;
        // The system call, not libc's wrapper: glibc has that only since 2.27
        // and the RPM/tarball build links against 2.17 (README "Which
        // systems"); a kernel without it says ENOSYS, handled below.
        // SAFETY: open descriptors; the offsets are ours and updated by the call.
        let n = unsafe {
            libc::syscall(
                libc::SYS_copy_file_range,
                fi,
                &mut off_in as *mut libc::loff_t,
                fo,
                &mut off_out as *mut libc::loff_t,
                chunk,
                0u32,
            )
        } as isize;
        if n < 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EXDEV | libc::ENOSYS | libc::EOPNOTSUPP | libc::EINVAL) => {
                    return rw_range(fi, fo, off_in, left)
                }
                _ => return Err(e),
            }
        }
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "source shrank while being copied",
            ));
        }
        left -= n as i64;
    }
    Ok(())
}

fn rw_range(fi: i32, fo: i32, start: i64, len: i64) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    let (mut off, end) = (start, start + len);
    while off < end {
        let want = ((end - off) as usize).min(buf.len());
        // SAFETY: buf has want bytes of room.
        let n = unsafe { libc::pread(fi, buf.as_mut_ptr().cast(), want, off) };
        if n <= 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut done = 0;
        while done < n as usize {
            // SAFETY: the first n bytes of buf were just read.
            let w = unsafe {
                libc::pwrite(
                    fo,
                    buf[done..].as_ptr().cast(),
                    n as usize - done,
                    off + done as i64,
                )
            };
            if w < 0 {
                return Err(std::io::Error::last_os_error());
            }
            done += w as usize;
        }
        off += n as i64;
    }
    Ok(())
}

/// syncfs on the filesystem holding `p`: one call makes every copied file durable.
pub fn sync_fs(p: &Path) -> Result<()> {
    let f = std::fs::File::open(p).map_err(|e| fail("cannot open", p, &e))?;
    // SAFETY: syncfs on an open descriptor.
    if unsafe { libc::syncfs(f.as_raw_fd()) } != 0 {
        return Err(fail("cannot sync", p, &std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Is `p` absent or an empty directory?
pub fn absent_or_empty(p: &Path) -> std::io::Result<bool> {
    match std::fs::read_dir(p) {
        Ok(mut rd) => Ok(rd.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(e),
    }
}

/// A hidden sibling of `target` that names itself as unfinished.
pub fn partial_name(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_default();
    let mut s = b".".to_vec();
    s.extend_from_slice(&name);
    s.extend_from_slice(format!(".tokubackup-partial-{}", std::process::id()).as_bytes());
    target.with_file_name(std::ffi::OsStr::from_bytes(&s))
}
