//! Changes of names (unlink, mkdir, rename, link, symlink): the real call
//! and the mirror under the namespace lock.

use super::{guarded, real_call};
use crate::copier;
use crate::error;
use crate::error::Error;
use crate::gate::Gate;
use crate::namespace::{Names, Root};
use crate::rel_path::RelPath;
use crate::session::{self, Session};
use crate::source_file::WHOLE;
use crate::sys;
use rustix::fd::AsFd;
use rustix::fd::BorrowedFd;
use rustix::fs::{self, AtFlags, Mode};
use rustix::io::Errno;
use std::path::Path;
use std::sync::atomic::Ordering::*;

/// Changes of names: the real call and the mirror under the namespace lock.
pub enum NameOp<'a> {
    Unlink {
        dirfd: libc::c_int,
        path: &'a Path,
        dir: bool,
    },
    Mkdir {
        dirfd: libc::c_int,
        path: &'a Path,
    },
    Rename {
        olddir: libc::c_int,
        old: &'a Path,
        newdir: libc::c_int,
        new: &'a Path,
        flags: u32,
    },
    Link {
        olddir: libc::c_int,
        old: &'a Path,
        newdir: libc::c_int,
        new: &'a Path,
        flags: libc::c_int,
    },
    Symlink {
        target: &'a Path,
        dirfd: libc::c_int,
        path: &'a Path,
    },
}

impl NameOp<'_> {
    /// Where the change takes a name from and gives one to, in the trees.
    fn places(&self, s: &Session) -> (Option<RelPath>, Option<RelPath>) {
        match self {
            NameOp::Unlink { dirfd, path, .. } => (s.locate(*dirfd, path), None),
            NameOp::Mkdir { dirfd, path } => (None, s.locate(*dirfd, path)),
            NameOp::Symlink { dirfd, path, .. } => (None, s.locate(*dirfd, path)),
            NameOp::Rename {
                olddir,
                old,
                newdir,
                new,
                ..
            } => (s.locate(*olddir, old), s.locate(*newdir, new)),
            NameOp::Link {
                olddir,
                old,
                newdir,
                new,
                flags,
            } => {
                let from = if flags & libc::AT_EMPTY_PATH != 0 && old.as_os_str().is_empty() {
                    None
                } else {
                    s.locate(*olddir, old)
                };
                (from, s.locate(*newdir, new))
            }
        }
    }

    /// rename() between two names of one file does nothing at all.
    fn renames_to_itself(&self) -> bool {
        let NameOp::Rename {
            olddir,
            old,
            newdir,
            new,
            ..
        } = self
        else {
            return false;
        };
        let id = |d: libc::c_int, p: &Path| {
            fs::statat(sys::borrow(d), p, AtFlags::SYMLINK_NOFOLLOW)
                .ok()
                .map(|st| (st.st_dev, st.st_ino))
        };
        let old_id = id(*olddir, old);
        old_id.is_some() && old_id == id(*newdir, new)
    }
}

#[inline(never)]
pub fn names_op(gate: &Gate, op: NameOp<'_>, real: impl FnOnce() -> libc::c_int) -> libc::c_int {
    let Some((capture, s)) = session::enter(gate) else {
        return real();
    };
    if s.failed() {
        drop(capture);
        return real();
    }
    let mut names = s.names();
    if !s.walked() {
        // The walk has not run yet and will see the result, provided the
        // change is made before it starts: keep the lock across the call.
        let (r, errno) = real_call(real);
        drop(names);
        drop(capture);
        sys::set_errno(errno);
        return r;
    }
    let (from, to) = op.places(s);
    let same_file = op.renames_to_itself();
    // Even outside the trees the lock is held across the call: a directory
    // created meanwhile could bring the change into them.
    let (r, errno) = real_call(real);
    if r == 0 && !same_file && (from.is_some() || to.is_some()) {
        guarded(s, || {
            if let Err(e) = mirror_names(s, &mut names, &op, from, to) {
                s.fail(e);
            }
        });
    }
    drop(names);
    drop(capture);
    sys::set_errno(errno);
    r
}

type MirrorResult = error::Result<()>;

/// The destination directory and relative path of a name.
fn dest<'a>(s: &'a Session, n: &'a RelPath) -> (BorrowedFd<'a>, &'a Path) {
    (s.roots[n.root].dest_dir.as_fd(), Root::dest_rel(&n.rel))
}

fn err(s: &Session, what: &'static str, n: &RelPath, e: Errno) -> Error {
    Error::dest(what, s.dest_path(n), e)
}

/// Names are updated before the destination changes: a writer that opens a
/// destination by name without the namespace lock checks the name again
/// after opening (Session::dest_for), which is sound only in this order.
fn mirror_names(
    s: &Session,
    names: &mut Names,
    op: &NameOp<'_>,
    from: Option<RelPath>,
    to: Option<RelPath>,
) -> MirrorResult {
    match (op, from, to) {
        (NameOp::Unlink { dir, .. }, Some(at), _) => {
            names.remove_under(&at);
            let (d, rel) = dest(s, &at);
            let r = if *dir {
                sys::remove_tree(d, rel)
            } else {
                fs::unlinkat(d, rel, AtFlags::empty())
            };
            match r {
                Ok(()) | Err(Errno::NOENT) => Ok(()),
                Err(e) => Err(err(s, "remove", &at, e)),
            }
        }
        (NameOp::Mkdir { .. }, _, Some(at)) => {
            let mode = fs::statat(fs::CWD, s.src_path(&at), AtFlags::SYMLINK_NOFOLLOW)
                .map(|st| st.st_mode & 0o7777)
                .unwrap_or(0o700);
            let (d, rel) = dest(s, &at);
            match fs::mkdirat(d, rel, Mode::from_raw_mode(mode) | Mode::RWXU) {
                Ok(()) | Err(Errno::EXIST) => Ok(()),
                Err(e) => Err(err(s, "mkdir", &at, e)),
            }
        }
        (NameOp::Symlink { target, .. }, _, Some(at)) => {
            let (d, rel) = dest(s, &at);
            match fs::symlinkat(*target, d, rel) {
                Ok(()) | Err(Errno::EXIST) => Ok(()),
                Err(e) => Err(err(s, "symlink", &at, e)),
            }
        }
        (NameOp::Rename { .. }, Some(old), None) => {
            // Moved out of the trees: gone from the backup.
            names.remove_under(&old);
            let (d, rel) = dest(s, &old);
            sys::remove_tree(d, rel).map_err(|e| err(s, "remove", &old, e))
        }
        (NameOp::Rename { .. } | NameOp::Link { .. }, None, Some(new)) => {
            copier::import(s, names, &new)
        }
        (NameOp::Rename { flags, .. }, Some(old), Some(new))
            if flags & libc::RENAME_EXCHANGE != 0 =>
        {
            exchange(s, names, &old, &new)
        }
        (NameOp::Rename { .. }, Some(old), Some(new)) => rename(s, names, &old, &new),
        (NameOp::Link { .. }, Some(old), Some(new)) => link(s, names, &old, &new),
        _ => Ok(()),
    }
}

/// renameat2(RENAME_EXCHANGE) between two names of the trees.
fn exchange(s: &Session, names: &mut Names, old: &RelPath, new: &RelPath) -> MirrorResult {
    let tmp = RelPath::new(usize::MAX, "exchange");
    names.rename_under(old, &tmp);
    names.rename_under(new, old);
    names.rename_under(&tmp, new);
    let (od, orel) = dest(s, old);
    let (nd, nrel) = dest(s, new);
    if fs::renameat_with(od, orel, nd, nrel, fs::RenameFlags::EXCHANGE).is_err() {
        copier::import(s, names, old)?;
        return copier::import(s, names, new);
    }
    reconsider_exclusion(s, names, old)?;
    reconsider_exclusion(s, names, new)
}

/// A rename within the trees, replacing whatever `new` was.
fn rename(s: &Session, names: &mut Names, old: &RelPath, new: &RelPath) -> MirrorResult {
    names.remove_under(new);
    names.rename_under(old, new);
    let (od, orel) = dest(s, old);
    let (nd, nrel) = dest(s, new);
    match fs::renameat(od, orel, nd, nrel) {
        Ok(()) => {}
        // The old name was never in the destination (excluded, a
        // socket...): whatever the new name was is gone.
        Err(Errno::NOENT) => sys::remove_tree(nd, nrel).map_err(|e| err(s, "remove", new, e))?,
        // A directory replaced by a file or the other way round.
        Err(Errno::ISDIR) | Err(Errno::NOTDIR) | Err(Errno::NOTEMPTY) | Err(Errno::EXIST) => {
            sys::remove_tree(nd, nrel).map_err(|e| err(s, "remove", new, e))?;
            fs::renameat(od, orel, nd, nrel).map_err(|e| err(s, "rename", new, e))?;
        }
        Err(e) => return Err(err(s, "rename", new, e)),
    }
    reconsider_exclusion(s, names, new)
}

/// A hard link between two names of the trees: linked in the destination
/// too, or copied when the first name is not there.
fn link(s: &Session, names: &mut Names, old: &RelPath, new: &RelPath) -> MirrorResult {
    let linked = match names.get(old).cloned().filter(|f| f.in_backup()) {
        Some(file) => {
            names.insert(new.clone(), &file);
            let (od, orel) = dest(s, old);
            let (nd, nrel) = dest(s, new);
            fs::linkat(od, orel, nd, nrel, AtFlags::empty()).is_ok()
        }
        None => false,
    };
    if linked {
        return Ok(());
    }
    copier::import(s, names, new)
}

/// After a rename, a file's new name may be excluded (drop it from the
/// destination) or no longer excluded (copy it now).
fn reconsider_exclusion(s: &Session, names: &mut Names, at: &RelPath) -> MirrorResult {
    for name in names.under(at) {
        let Some(file) = names.get(&name).cloned() else {
            continue;
        };
        let now = s.is_excluded(&name);
        let was = file.excluded.load(Acquire);
        if now && !was {
            let _range = file.ranges.lock(WHOLE.0, WHOLE.1);
            file.excluded.store(true, Release);
            s.fd_cache.release(&file);
            let root = &s.roots[name.root];
            match fs::unlinkat(
                root.dest_dir.as_fd(),
                Root::dest_rel(&name.rel),
                AtFlags::empty(),
            ) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(Error::dest("remove", s.dest_path(&name), e)),
            }
        } else if !now && was {
            copier::import(s, names, &name)?;
        }
    }
    Ok(())
}
