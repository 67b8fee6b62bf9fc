//! The snapshot check (HOTBACKUP_VERIFY_SNAPSHOT=1): at the snapshot
//! instant, with every change to the trees held still (`gate::freeze`),
//! compare each source tree with its copy - names, kinds, sizes, bytes - and
//! fail the backup on any difference. It proves the engine's promise on a
//! live application at the price of stalling that application's file
//! changes for as long as the comparison reads both trees; a diagnostic,
//! not something to run in production.

use crate::namespace::Root;
use crate::rel_path::RelPath;
use crate::session::Session;
use crate::sys;
use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::{self, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::Path;

/// Differences reported at most (the first ones tell the story).
const MAX_REPORTED: usize = 20;
const BUF: usize = 1 << 20;

pub fn enabled() -> bool {
    std::env::var_os("HOTBACKUP_VERIFY_SNAPSHOT").is_some_and(|v| v != "0" && !v.is_empty())
}

struct Check<'a> {
    s: &'a Session,
    differences: Vec<String>,
    bufs: (Vec<u8>, Vec<u8>),
}

/// Compare every root with its copy; returns the differences found.
pub fn compare(s: &Session) -> Vec<String> {
    let mut c = Check {
        s,
        differences: Vec::new(),
        bufs: (vec![0; BUF], vec![0; BUF]),
    };
    for i in 0..s.roots.len() {
        c.entry(&RelPath::new(i, ""));
    }
    c.differences
}

impl Check<'_> {
    fn differ(&mut self, name: &RelPath, what: String) {
        if self.differences.len() < MAX_REPORTED {
            let src = self.s.src_path(name);
            let dest = self.s.dest_path(name);
            self.differences.push(format!(
                "snapshot check: {} and its copy {}: {what}",
                src.display(),
                dest.display()
            ));
        }
    }

    fn entry(&mut self, name: &RelPath) {
        let root = &self.s.roots[name.root];
        let src = root.src_path(&name.rel);
        let dest_dir = root.dest_dir.as_fd();
        let dest_rel = Root::dest_rel(&name.rel);
        let st = match fs::statat(fs::CWD, &src, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(e) => return self.differ(name, format!("stat source: {}", sys::strerror(e))),
        };
        let kind = FileType::from_raw_mode(st.st_mode);
        let copied = fs::statat(dest_dir, dest_rel, AtFlags::SYMLINK_NOFOLLOW);
        let dest_kind = copied.as_ref().map(|d| FileType::from_raw_mode(d.st_mode));
        match kind {
            FileType::Directory => {
                if dest_kind != Ok(FileType::Directory) {
                    return self.differ(name, format!("a directory copied as {dest_kind:?}"));
                }
                let kept = self.children(name);
                let present = sys::openat(
                    dest_dir,
                    dest_rel,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW,
                    Mode::empty(),
                )
                .and_then(|d| sys::list_dir(d.as_fd()));
                match present {
                    Ok(present) => {
                        for extra in present.iter().filter(|n| !kept.contains(*n)) {
                            self.differ(&name.join(extra), "only in the copy".into());
                        }
                    }
                    Err(e) => self.differ(name, format!("list copy: {}", sys::strerror(e))),
                }
                for child in kept {
                    self.entry(&name.join(child));
                }
            }
            FileType::RegularFile => {
                if dest_kind != Ok(FileType::RegularFile) {
                    return self.differ(name, format!("a file copied as {dest_kind:?}"));
                }
                self.file(name, st.st_size as u64);
            }
            FileType::Symlink => {
                let a = fs::readlinkat(fs::CWD, &src, Vec::new());
                let b = fs::readlinkat(dest_dir, dest_rel, Vec::new());
                if a.is_err() || a != b {
                    self.differ(name, format!("symbolic link {a:?} copied as {b:?}"));
                }
            }
            _ => {}
        }
    }

    /// A directory's entries that belong in the copy: not sockets, FIFOs or
    /// devices, not excluded files.
    fn children(&mut self, dir: &RelPath) -> BTreeSet<OsString> {
        let src = self.s.src_path(dir);
        let names = match sys::open_dir(&src).and_then(|d| sys::list_dir(d.as_fd())) {
            Ok(n) => n,
            Err(e) => {
                self.differ(dir, format!("list source: {}", sys::strerror(e)));
                return BTreeSet::new();
            }
        };
        names
            .into_iter()
            .filter(|n| {
                let child = dir.join(n);
                match fs::statat(fs::CWD, self.s.src_path(&child), AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => match FileType::from_raw_mode(st.st_mode) {
                        FileType::Directory | FileType::Symlink => true,
                        FileType::RegularFile => !self.s.is_excluded(&child),
                        _ => false,
                    },
                    Err(_) => true,
                }
            })
            .collect()
    }

    fn file(&mut self, name: &RelPath, size: u64) {
        let root = &self.s.roots[name.root];
        let open = |dir: BorrowedFd<'_>, p: &Path| {
            sys::openat(dir, p, OFlags::RDONLY | OFlags::NOFOLLOW, Mode::empty())
        };
        let (src, dest) = match (
            open(fs::CWD, &root.src_path(&name.rel)),
            open(root.dest_dir.as_fd(), Root::dest_rel(&name.rel)),
        ) {
            (Ok(a), Ok(b)) => (a, b),
            (a, b) => {
                let e = a.err().or(b.err()).unwrap_or(Errno::IO);
                return self.differ(name, format!("open: {}", sys::strerror(e)));
            }
        };
        let copied_size = fs::fstat(&dest).map(|st| st.st_size as u64).unwrap_or(0);
        if copied_size != size {
            self.differ(name, format!("{size} bytes copied as {copied_size}"));
        }
        let mut off = 0u64;
        while off < size.min(copied_size) {
            let want = (size.min(copied_size) - off).min(BUF as u64) as usize;
            let (a, b) = (&mut self.bufs.0[..want], &mut self.bufs.1[..want]);
            let read = sys::pread_full(src.as_fd(), a, off).and_then(|n| {
                let m = sys::pread_full(dest.as_fd(), b, off)?;
                Ok(n.min(m))
            });
            let n = match read {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) => return self.differ(name, format!("read: {}", sys::strerror(e))),
            };
            if let Some(i) = (0..n).find(|&i| a[i] != b[i]) {
                let first = off + i as u64;
                let last = off + (0..n).rev().find(|&j| a[j] != b[j]).unwrap_or(i) as u64;
                return self.differ(
                    name,
                    format!(
                        "bytes differ from offset {first} (16 KiB page {}) to at least {last}",
                        first / 16384
                    ),
                );
            }
            off += n as u64;
        }
    }
}
