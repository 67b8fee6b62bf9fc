//! The copier: the walk that reproduces the source trees' names in the
//! destinations, and the copy of each file's bytes in chunks, each under the
//! range lock of the bytes it copies, so that a concurrent write lands either
//! before the chunk is read (and is copied) or after it is written (and is
//! mirrored) - the copy never goes back in time. Holes stay holes.

use crate::error::{self, Error, Side};
use crate::fd_cache::MirrorFds;
use crate::namespace::{self, Names, Root};
use crate::rel_path::RelPath;
use crate::session::Session;
use crate::source_file::{SourceFile, WHOLE};
use crate::sys;
use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::{self, AtFlags, FallocateFlags, FileType, Mode, SeekFrom};
use rustix::io::Errno;
use std::cell::RefCell;
use std::sync::atomic::Ordering::*;
use std::sync::Arc;

/// Largest chunk copied under one range lock: a writer to those bytes waits
/// at most for one chunk (about a millisecond from the page cache).
pub const CHUNK: u64 = 1 << 20;

/// What the walk does with the regular files it meets.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum WalkMode {
    /// Initial walk: queue them for the copier threads.
    Queue,
    /// A tree that entered the sources during capture: copy now.
    CopyNow,
}

/// A data extent of the source known from SEEK_DATA/SEEK_HOLE. Copying a
/// stale data extent is always right (a hole punched since reads as zeros);
/// a hole is never trusted without asking again.
#[derive(Default, Clone, Copy)]
pub struct DataHint {
    start: u64,
    end: u64,
}

/// Reproduce the entry `name` (at `src_dir`/`file_name`) in the destination.
fn walk_entry(s: &Session, names: &mut Names, name: &RelPath, mode: WalkMode) -> error::Result<()> {
    let root = &s.roots[name.root];
    let src = root.src_path(&name.rel);
    let st = match fs::statat(fs::CWD, &src, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(Error::source("stat", src, e)),
    };
    let dest_rel = Root::dest_rel(&name.rel);
    let dest_dir = root.dest_dir.as_fd();
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => {
            if !name.rel.as_os_str().is_empty() {
                match fs::mkdirat(
                    dest_dir,
                    dest_rel,
                    Mode::from_raw_mode(st.st_mode & 0o7777) | Mode::RWXU,
                ) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(Error::dest("mkdir", root.dest_path(&name.rel), e)),
                }
            }
            let dir = match sys::open_dir(&src) {
                Ok(d) => d,
                Err(Errno::NOENT) => return Ok(()),
                Err(e) => return Err(Error::source("open directory", src, e)),
            };
            let mut entries =
                sys::list_dir(dir.as_fd()).map_err(|e| Error::source("read directory", &src, e))?;
            entries.sort();
            for entry in entries {
                if s.stopping() {
                    return Ok(());
                }
                walk_entry(s, names, &name.join(entry), mode)?;
            }
        }
        FileType::RegularFile => add_file(s, names, name, &st, mode)?,
        FileType::Symlink => {
            let target = fs::readlinkat(fs::CWD, &src, Vec::new())
                .map_err(|e| Error::source("readlink", &src, e))?;
            match fs::symlinkat(target.as_c_str(), dest_dir, dest_rel) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(Error::dest("symlink", root.dest_path(&name.rel), e)),
            }
        }
        // Sockets, FIFOs and devices are not data; a restore recreates them.
        _ => {}
    }
    Ok(())
}

fn add_file(
    s: &Session,
    names: &mut Names,
    name: &RelPath,
    st: &fs::Stat,
    mode: WalkMode,
) -> error::Result<()> {
    let (file, new) = s.file_or_insert(st.st_dev, st.st_ino, 0);
    let root = &s.roots[name.root];
    if !new {
        if let Some(first) = file.current_name().filter(|_| file.in_backup()) {
            // Another name of a file already in the backup: a hard link.
            names.insert(name.clone(), &file);
            let from = &s.roots[first.root];
            if fs::linkat(
                from.dest_dir.as_fd(),
                Root::dest_rel(&first.rel),
                root.dest_dir.as_fd(),
                Root::dest_rel(&name.rel),
                AtFlags::empty(),
            )
            .is_ok()
            {
                return Ok(());
            }
            // Links across destinations cannot be made: the second name
            // gets a copy (mirrored writes follow the first name only).
        } else {
            // A file that left the trees and came back: start it afresh.
            s.fd_cache.release(&file);
            file.set_copied_upto(0);
        }
        file.excluded.store(false, Release);
    }
    names.insert(name.clone(), &file);
    if s.is_excluded(name) {
        file.excluded.store(true, Release);
        return Ok(());
    }
    let create = || namespace::create_dest(&s.roots, name, st.st_mode);
    match mode {
        // The copier opens it again when it gets there.
        WalkMode::Queue => s.fd_cache.retrying(create).map(drop),
        WalkMode::CopyNow => s
            .fd_cache
            .open(&file, crate::source_file::Side::Dest, create)
            .map(drop),
    }
    .map_err(|e| Error::dest("create", root.dest_path(&name.rel), e))?;
    s.progress.found(st.st_size as u64);
    match mode {
        WalkMode::Queue => s.queue_copy(file),
        WalkMode::CopyNow => copy_file(s, &file, false)?,
    }
    Ok(())
}

/// The initial walk of every root, under the namespace lock.
pub fn walk(s: &Session) -> error::Result<()> {
    let mut names = s.names();
    for i in 0..s.roots.len() {
        walk_entry(s, &mut names, &RelPath::new(i, ""), WalkMode::Queue)?;
    }
    s.set_walked();
    Ok(())
}

/// Bring an entry that appeared in a tree during capture (renamed or linked
/// in from outside) into the destination, copying it now. The caller holds
/// the namespace lock.
pub fn import(s: &Session, names: &mut Names, name: &RelPath) -> error::Result<()> {
    let root = &s.roots[name.root];
    names.remove_under(name);
    s.bump_generation();
    sys::remove_tree(root.dest_dir.as_fd(), Root::dest_rel(&name.rel))
        .map_err(|e| Error::dest("remove", root.dest_path(&name.rel), e))?;
    walk_entry(s, names, name, WalkMode::CopyNow)
}

/// Copy one file's bytes, chunk by chunk, then set the destination's size.
/// `throttled` is false for copies made inside an application's call, which
/// must not wait for the throttle and hold the namespace lock already.
pub fn copy_file(s: &Session, file: &Arc<SourceFile>, throttled: bool) -> error::Result<()> {
    let name = file.current_name();
    let fail = |side: Side, op: &'static str, e: Errno| {
        let path = match (&name, side) {
            (Some(n), Side::Source) => s.src_path(n),
            (Some(n), _) => s.dest_path(n),
            (None, _) => Default::default(),
        };
        Error::op(side, op, path, e)
    };
    let Some(MirrorFds { dest, src }) = s.open_for_copy(file, !throttled)? else {
        return Ok(());
    };
    let copy = |from: u64, len: u64, hint: &mut DataHint| {
        copy_range(src.as_fd(), dest.as_fd(), from, len, hint).map_err(|(side, e)| {
            fail(
                side,
                if side == Side::Source {
                    "read"
                } else {
                    "write"
                },
                e,
            )
        })
    };
    let mut hint = DataHint::default();
    let mut off = file.copied_upto();
    while off != u64::MAX {
        let chunk = if throttled {
            crate::throttle::Throttle::chunk(CHUNK)
        } else {
            CHUNK
        };
        let guard = file.ranges.lock(off, off + chunk);
        if !file.in_backup() || s.stopping() {
            return Ok(());
        }
        // A queued mirror of a write that began below `off` may reach into
        // the chunk: it goes first.
        s.write_behind.settle(file);
        // The size is read under the lock: bytes written past an older
        // size before the lock was taken were not mirrored and must be read.
        let size = sys::file_size(src.as_fd()).map_err(|e| fail(Side::Source, "stat", e))?;
        if off >= size {
            break;
        }
        let len = chunk.min(size - off);
        copy(off, len, &mut hint)?;
        file.raise_copied_upto(off + chunk);
        drop(guard);
        if throttled {
            sys::start_writeback(dest.as_fd(), off, len);
        }
        s.progress.copied(len);
        // Pay for what was read, outside every lock: small files cost what
        // they hold, not a whole chunk.
        if throttled && !s.throttle.acquire(len, || s.stopping()) {
            return Ok(());
        }
        off = file.copied_upto();
    }
    // The last bytes and the size are settled with the whole file locked, so
    // that a write past the end cannot slip between the last chunk and the
    // size being set.
    let _guard = file.ranges.lock(WHOLE.0, WHOLE.1);
    if !file.in_backup() || file.copied_upto() == u64::MAX {
        return Ok(());
    }
    s.write_behind.settle(file);
    let size = sys::file_size(src.as_fd()).map_err(|e| fail(Side::Source, "stat", e))?;
    let from = file.copied_upto().min(size);
    if size > from {
        copy(from, size - from, &mut hint)?;
    }
    fs::ftruncate(dest.as_fd(), size).map_err(|e| fail(Side::Destination, "truncate", e))?;
    file.set_copied_upto(u64::MAX);
    s.progress.file_done();
    Ok(())
}

/// Copy `[off, off+len)` of `src` to the same place in `dest`, keeping
/// holes. Errors say which side failed: reading the source or writing the
/// destination.
pub fn copy_range(
    src: BorrowedFd<'_>,
    dest: BorrowedFd<'_>,
    off: u64,
    len: u64,
    hint: &mut DataHint,
) -> Result<(), (Side, Errno)> {
    let end = off.saturating_add(len);
    let mut pos = off;
    while pos < end {
        if pos >= hint.start && pos < hint.end {
            let seg_end = end.min(hint.end);
            let copied = copy_data(src, dest, pos, seg_end - pos)?;
            if copied < seg_end - pos {
                // The source ends early (truncated meanwhile).
                return Ok(());
            }
            pos = seg_end;
            continue;
        }
        match fs::seek(src, SeekFrom::Data(pos)) {
            Err(Errno::NXIO) => {
                punch(dest, pos, end - pos)?;
                return Ok(());
            }
            Err(Errno::INVAL) | Err(Errno::OPNOTSUPP) => {
                // No hole support on this filesystem: everything is data.
                *hint = DataHint {
                    start: pos,
                    end: u64::MAX,
                };
            }
            Err(e) => return Err((Side::Source, e)),
            Ok(data) => {
                if data > pos {
                    punch(dest, pos, data.min(end) - pos)?;
                }
                if data >= end {
                    return Ok(());
                }
                let hole = fs::seek(src, SeekFrom::Hole(data)).map_err(|e| (Side::Source, e))?;
                *hint = DataHint {
                    start: data,
                    end: hole,
                };
                pos = data;
            }
        }
    }
    Ok(())
}

thread_local! {
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Copy data bytes: in the kernel when it can, else through a buffer.
/// Returns how many bytes were copied (fewer at the source's end).
fn copy_data(
    src: BorrowedFd<'_>,
    dest: BorrowedFd<'_>,
    off: u64,
    len: u64,
) -> Result<u64, (Side, Errno)> {
    let mut done = 0u64;
    while done < len {
        let mut off_in = off + done;
        let mut off_out = off + done;
        match fs::copy_file_range(
            src,
            Some(&mut off_in),
            dest,
            Some(&mut off_out),
            (len - done) as usize,
        ) {
            Ok(0) => return Ok(done),
            Ok(n) => done += n as u64,
            Err(Errno::INTR) => {}
            Err(Errno::XDEV) | Err(Errno::INVAL) | Err(Errno::NOSYS) | Err(Errno::OPNOTSUPP) => {
                return copy_buffered(src, dest, off + done, len - done).map(|n| done + n);
            }
            Err(e @ (Errno::NOSPC | Errno::DQUOT | Errno::FBIG | Errno::ROFS)) => {
                return Err((Side::Destination, e))
            }
            Err(e) => {
                // Tell which side failed by retrying through a buffer.
                return copy_buffered(src, dest, off + done, len - done)
                    .map(|n| done + n)
                    .map_err(|(side, e2)| (side, if e2 == Errno::INTR { e } else { e2 }));
            }
        }
    }
    Ok(done)
}

fn copy_buffered(
    src: BorrowedFd<'_>,
    dest: BorrowedFd<'_>,
    off: u64,
    len: u64,
) -> Result<u64, (Side, Errno)> {
    BUF.with(|buf| {
        let mut buf = buf.borrow_mut();
        if buf.len() < CHUNK as usize {
            buf.resize(CHUNK as usize, 0);
        }
        let mut done = 0u64;
        while done < len {
            let want = (len - done).min(buf.len() as u64) as usize;
            let n = match rustix::io::pread(src, &mut buf[..want], off + done) {
                Ok(0) => return Ok(done),
                Ok(n) => n,
                Err(Errno::INTR) => continue,
                Err(e) => return Err((Side::Source, e)),
            };
            sys::pwrite_all(dest, &buf[..n], off + done).map_err(|e| (Side::Destination, e))?;
            done += n as u64;
        }
        Ok(done)
    })
}

/// Make `[off, off+len)` of the destination a hole, if it holds data there.
fn punch(dest: BorrowedFd<'_>, off: u64, len: u64) -> Result<(), (Side, Errno)> {
    let end = off.saturating_add(len);
    match fs::seek(dest, SeekFrom::Data(off)) {
        Ok(d) if d < end => {}
        Ok(_) | Err(Errno::NXIO) => return Ok(()),
        Err(_) => {}
    }
    let size = fs::fstat(dest).map_err(|e| (Side::Destination, e))?.st_size as u64;
    let end = end.min(size);
    if end <= off {
        return Ok(());
    }
    match fs::fallocate(
        dest,
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        off,
        end - off,
    ) {
        Ok(()) => Ok(()),
        Err(Errno::OPNOTSUPP) | Err(Errno::NOSYS) => write_zeros(dest, off, end - off),
        Err(e) => Err((Side::Destination, e)),
    }
}

pub fn write_zeros(dest: BorrowedFd<'_>, off: u64, len: u64) -> Result<(), (Side, Errno)> {
    let zeros = [0u8; 65536];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(zeros.len() as u64) as usize;
        sys::pwrite_all(dest, &zeros[..n], off + done).map_err(|e| (Side::Destination, e))?;
        done += n as u64;
    }
    Ok(())
}

/// Copy threads: take queued files until none are left.
pub fn run_queue(s: &Session) {
    loop {
        if s.stopping() {
            return;
        }
        let next = s.next_to_copy();
        let Some(file) = next else { return };
        if let Err(e) = copy_file(s, &file, true) {
            s.fail(e);
            return;
        }
        // Nothing writes through these any more unless an application
        // descriptor needs them; they are reopened on demand.
        s.fd_cache.release(&file);
    }
}

/// Copy a source file completely again, and its size (a change a mirror
/// cannot follow on this destination, or one that raced with the file
/// joining the backup). Caller holds the file's whole range.
pub fn recopy_locked(fds: &MirrorFds) -> Result<(), Errno> {
    let src = &fds.src;
    let size = sys::file_size(src.as_fd())?;
    let mut hint = DataHint::default();
    copy_range(src.as_fd(), fds.dest.as_fd(), 0, size, &mut hint).map_err(|(_, e)| e)?;
    fs::ftruncate(fds.dest.as_fd(), size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespace::Root;
    use crate::scratch;
    use rustix::fs::OFlags;
    use std::os::unix::fs::FileExt;
    use std::path::{Path, PathBuf};

    fn open(p: &Path, flags: OFlags) -> sys::OwnFd {
        sys::openat(
            fs::CWD,
            p,
            flags | OFlags::CREATE,
            Mode::from_raw_mode(0o600),
        )
        .unwrap()
    }

    /// Bytes of the file that are allocated (not holes), in 4 KiB blocks.
    fn blocks(p: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).unwrap().blocks() / 8
    }

    #[test]
    fn copy_range_copies_bytes_and_keeps_holes() {
        let d = scratch::dir("copier-range");
        let (src_path, dest_path) = (d.join("src"), d.join("dest"));
        let f = std::fs::File::create(&src_path).unwrap();
        f.write_all_at(&[7u8; 5000], 0).unwrap();
        // 8 MiB of hole, then data.
        f.write_all_at(b"tail", 8 << 20).unwrap();
        let src = open(&src_path, OFlags::RDONLY);
        let dest = open(&dest_path, OFlags::WRONLY);
        let len = (8 << 20) + 4;
        copy_range(src.as_fd(), dest.as_fd(), 0, len, &mut DataHint::default()).unwrap();
        fs::ftruncate(dest.as_fd(), len).unwrap();
        assert_eq!(
            std::fs::read(&src_path).unwrap(),
            std::fs::read(&dest_path).unwrap()
        );
        assert!(
            blocks(&dest_path) < 64,
            "the hole was filled: {} blocks",
            blocks(&dest_path)
        );
        // A stale hint of data where there is a hole now copies zeros: still right.
        let mut hint = DataHint {
            start: 0,
            end: u64::MAX,
        };
        f.write_all_at(&[9u8; 100], 4096 * 3).unwrap();
        copy_range(src.as_fd(), dest.as_fd(), 4096 * 3, 100, &mut hint).unwrap();
        assert_eq!(
            std::fs::read(&src_path).unwrap(),
            std::fs::read(&dest_path).unwrap()
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// The walk and the copier threads' loop on a real tree, without the
    /// library preloaded: names, bytes, links and holes arrive.
    #[test]
    fn walk_and_copy_reproduce_a_tree() {
        let d = scratch::dir("copier-tree");
        let (src, dest) = (d.join("src"), d.join("dest"));
        std::fs::create_dir_all(src.join("db/sub")).unwrap();
        std::fs::create_dir_all(&dest).unwrap();
        let big: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i % 251) as u8).collect();
        std::fs::write(src.join("db/t.ibd"), &big).unwrap();
        std::fs::write(src.join("db/sub/small"), b"x").unwrap();
        std::fs::hard_link(src.join("db/sub/small"), src.join("db/hard")).unwrap();
        std::os::unix::fs::symlink("t.ibd", src.join("db/link")).unwrap();
        let root = Root {
            src: src.canonicalize().unwrap(),
            dest: dest.clone(),
            dest_dir: sys::open_dir(&dest).unwrap(),
        };
        let s = Session::new(vec![root], None);
        walk(&s).unwrap();
        run_queue(&s);
        assert!(s.take_errors().is_empty());
        assert_eq!(std::fs::read(dest.join("db/t.ibd")).unwrap(), big);
        assert_eq!(std::fs::read(dest.join("db/sub/small")).unwrap(), b"x");
        assert_eq!(
            std::fs::read_link(dest.join("db/link")).unwrap(),
            Path::new("t.ibd")
        );
        use std::os::unix::fs::MetadataExt;
        let ino = |p: PathBuf| std::fs::metadata(p).unwrap().ino();
        assert_eq!(ino(dest.join("db/hard")), ino(dest.join("db/sub/small")));
        assert_eq!(
            s.progress.bytes(),
            (big.len() as u64 + 1, big.len() as u64 + 1)
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
