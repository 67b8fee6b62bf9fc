//! Names: the source and destination roots of a backup, how an
//! application's path (relative, through a directory descriptor, through
//! symbolic links) maps to a place in a source tree, and the table of every
//! source file's current name that renames keep up to date.

use crate::rel_path::RelPath;
use crate::source_file::SourceFile;
use crate::sys;
use rustix::fd::AsFd;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct Root {
    /// Canonical absolute path of the source directory.
    pub src: PathBuf,
    /// Destination directory as given (after creation).
    pub dest: PathBuf,
    pub dest_dir: crate::sys::OwnFd,
}

impl Root {
    pub fn src_path(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.src.clone()
        } else {
            self.src.join(rel)
        }
    }

    pub fn dest_path(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            self.dest.clone()
        } else {
            self.dest.join(rel)
        }
    }

    /// A relative path usable with `dest_dir` in *at() calls.
    pub fn dest_rel(rel: &Path) -> &Path {
        if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        }
    }
}

/// Split a path into the directory part and the final name, as the kernel
/// resolves it: trailing slashes belong to the name.
pub fn split_last(path: &Path) -> Option<(&Path, &OsStr)> {
    let mut bytes = path.as_os_str().as_bytes();
    while bytes.len() > 1 && bytes.ends_with(b"/") {
        bytes = &bytes[..bytes.len() - 1];
    }
    let (parent, name) = match bytes.iter().rposition(|&b| b == b'/') {
        Some(0) => (&b"/"[..], &bytes[1..]),
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (&b""[..], bytes),
    };
    if name.is_empty() || name == b"." || name == b".." {
        return None;
    }
    Some((
        Path::new(OsStr::from_bytes(parent)),
        OsStr::from_bytes(name),
    ))
}

/// Where an application's `(dirfd, path)` names an entry inside a source
/// tree, if it does. The directory part is resolved by the kernel, so
/// relative paths, `..` and symbolic links in it all count; the final name
/// itself is not followed (it is what the call creates, removes or renames).
/// Resolving takes a descriptor: when the process has none left (or no
/// memory), the answer is unknown, an error.
pub fn locate(
    roots: &[Root],
    dirfd: libc::c_int,
    path: &Path,
) -> Result<Option<RelPath>, rustix::io::Errno> {
    use rustix::io::Errno;
    let Some((parent, name)) = split_last(path) else {
        return Ok(None);
    };
    let dir = match sys::canonical_dir(sys::borrow(dirfd), parent) {
        Ok(dir) => dir,
        Err(e @ (Errno::MFILE | Errno::NFILE | Errno::NOMEM)) => return Err(e),
        Err(_) => return Ok(None),
    };
    Ok(roots.iter().enumerate().find_map(|(i, root)| {
        let rel = dir.strip_prefix(&root.src).ok()?;
        Some(RelPath::new(i, rel.join(name)))
    }))
}

/// Every regular file of the source trees by its current name (hard links
/// give one file several names). Guarded by the session's namespace lock,
/// which every mirrored change of names holds.
#[derive(Default)]
pub struct Names {
    by_name: BTreeMap<RelPath, Arc<SourceFile>>,
}

impl Names {
    pub fn get(&self, name: &RelPath) -> Option<&Arc<SourceFile>> {
        self.by_name.get(name)
    }

    pub fn insert(&mut self, name: RelPath, file: &Arc<SourceFile>) {
        if file.current_name().is_none() {
            file.rename(Some(name.clone()));
        }
        if let Some(old) = self.by_name.insert(name.clone(), file.clone()) {
            if !Arc::ptr_eq(&old, file) {
                self.forget(&name, &old);
            }
        }
    }

    /// Drop one name; the file keeps another name if it has one.
    pub fn remove(&mut self, name: &RelPath) -> Option<Arc<SourceFile>> {
        let file = self.by_name.remove(name)?;
        self.forget(name, &file);
        Some(file)
    }

    fn forget(&self, name: &RelPath, file: &Arc<SourceFile>) {
        if file.current_name().as_ref() == Some(name) {
            file.rename(
                self.by_name
                    .iter()
                    .find(|(_, f)| Arc::ptr_eq(f, file))
                    .map(|(n, _)| n.clone()),
            );
        }
    }

    /// Names at or below `dir`.
    pub fn under(&self, dir: &RelPath) -> Vec<RelPath> {
        self.by_name
            .range(dir.clone()..)
            .take_while(|(n, _)| n.is_within(dir))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Remove every name at or below `dir` (it left the tree or was
    /// replaced).
    pub fn remove_under(&mut self, dir: &RelPath) {
        for name in self.under(dir) {
            self.remove(&name);
        }
    }

    /// Rename every name at or below `from` to the same place below `to`.
    /// Returns the files that moved, with their new names.
    pub fn rename_under(
        &mut self,
        from: &RelPath,
        to: &RelPath,
    ) -> Vec<(RelPath, Arc<SourceFile>)> {
        let moved: Vec<(RelPath, Arc<SourceFile>)> = self
            .under(from)
            .into_iter()
            .filter_map(|n| self.by_name.remove(&n).map(|f| (n, f)))
            .collect();
        let mut out = Vec::with_capacity(moved.len());
        for (old, file) in moved {
            let new = old.moved(from, to);
            if file.current_name().as_ref() == Some(&old) {
                file.rename(Some(new.clone()));
            }
            self.insert(new.clone(), &file);
            out.push((new, file));
        }
        out
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_name.len()
    }
}

/// Create (or empty) the destination of a file, for writing.
pub fn create_dest(
    roots: &[Root],
    name: &RelPath,
    st_mode: u32,
) -> Result<crate::sys::OwnFd, rustix::io::Errno> {
    use rustix::fs::{Mode, OFlags};
    let root = &roots[name.root];
    sys::openat(
        root.dest_dir.as_fd(),
        Root::dest_rel(&name.rel),
        OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(st_mode & 0o7777),
    )
}

/// Open the destination of a file by its current name, for writing.
pub fn open_dest(roots: &[Root], name: &RelPath) -> Result<crate::sys::OwnFd, rustix::io::Errno> {
    use rustix::fs::{Mode, OFlags};
    let root = &roots[name.root];
    sys::openat(
        root.dest_dir.as_fd(),
        Root::dest_rel(&name.rel),
        OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_last_handles_slashes_and_dots() {
        let s = |p: &str| {
            split_last(Path::new(p)).map(|(a, b)| {
                (
                    a.to_str().unwrap().to_owned(),
                    b.to_str().unwrap().to_owned(),
                )
            })
        };
        assert_eq!(s("a/b/c"), Some(("a/b".into(), "c".into())));
        assert_eq!(s("c"), Some(("".into(), "c".into())));
        assert_eq!(s("/c"), Some(("/".into(), "c".into())));
        assert_eq!(s("a/b/"), Some(("a".into(), "b".into())));
        assert_eq!(s("./t.ibd"), Some((".".into(), "t.ibd".into())));
        assert_eq!(s("a/.."), None);
        assert_eq!(s("."), None);
        assert_eq!(s(""), None);
        assert_eq!(s("/"), None);
    }

    #[test]
    fn names_follow_directory_renames_and_keep_siblings() {
        let mut names = Names::default();
        let f = |n: &str| Arc::new(SourceFile::new(1, n.len() as u64, None, 0));
        let (a, b, c) = (f("a"), f("bb"), f("ccc"));
        names.insert(RelPath::new(0, "d/a"), &a);
        names.insert(RelPath::new(0, "d/sub/b"), &b);
        names.insert(RelPath::new(0, "d.x/c"), &c);
        names.rename_under(&RelPath::new(0, "d"), &RelPath::new(0, "e"));
        assert_eq!(a.current_name(), Some(RelPath::new(0, "e/a")));
        assert_eq!(b.current_name(), Some(RelPath::new(0, "e/sub/b")));
        assert_eq!(c.current_name(), Some(RelPath::new(0, "d.x/c")));
        assert_eq!(names.len(), 3);
        names.remove_under(&RelPath::new(0, "e"));
        assert_eq!(a.current_name(), None);
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn hard_link_keeps_file_named_after_one_name_goes() {
        let mut names = Names::default();
        let a = Arc::new(SourceFile::new(1, 2, None, 0));
        names.insert(RelPath::new(0, "x"), &a);
        names.insert(RelPath::new(0, "y"), &a);
        names.remove(&RelPath::new(0, "x"));
        assert_eq!(a.current_name(), Some(RelPath::new(0, "y")));
        names.remove(&RelPath::new(0, "y"));
        assert_eq!(a.current_name(), None);
    }

    fn at(roots: &[Root], dirfd: libc::c_int, path: &Path) -> Option<RelPath> {
        super::locate(roots, dirfd, path).unwrap()
    }

    #[test]
    fn locate_resolves_relative_paths_and_symlinks() {
        let locate = at;
        let tmp = std::env::temp_dir().join(format!("hb-locate-{}", std::process::id()));
        let src = tmp.join("src");
        std::fs::create_dir_all(src.join("db")).unwrap();
        std::os::unix::fs::symlink(src.join("db"), tmp.join("link")).unwrap();
        let dest_dir = sys::open_dir(&tmp).unwrap();
        let roots = vec![Root {
            src: src.canonicalize().unwrap(),
            dest: tmp.join("dst"),
            dest_dir,
        }];
        let expect = Some(RelPath::new(0, "db/t.ibd"));
        assert_eq!(
            locate(&roots, libc::AT_FDCWD, &src.join("db/t.ibd")),
            expect
        );
        assert_eq!(
            locate(&roots, libc::AT_FDCWD, &tmp.join("link/t.ibd")),
            expect
        );
        assert_eq!(
            locate(&roots, libc::AT_FDCWD, &src.join("db/../db/t.ibd")),
            expect
        );
        let dirfd = std::fs::File::open(src.join("db")).unwrap();
        use std::os::fd::AsRawFd;
        assert_eq!(
            locate(&roots, dirfd.as_raw_fd(), Path::new("t.ibd")),
            expect
        );
        assert_eq!(locate(&roots, libc::AT_FDCWD, &tmp.join("elsewhere")), None);
        assert_eq!(
            locate(&roots, libc::AT_FDCWD, &src),
            None,
            "a root's own name is outside its tree"
        );
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
