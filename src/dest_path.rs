//! Where a backup destination is, or will be once created, resolved the way
//! the kernel will resolve it: the existing directories of the path through
//! their symbolic links, `..` from there, the parts that do not exist yet
//! (or are not directories) as written.
//!
//! One function for the library (api.rs, with its own raw system calls) and
//! the plugin (plugin/src/destination.rs includes this file), so that both
//! judge a destination the same way. Pure: the caller passes the two look-ups.

use std::path::{Component, Path, PathBuf};

/// Resolve `dest`. `cwd` gives the canonical working directory (for a
/// relative `dest`); `canonical_dir` the canonical path of an existing
/// directory, or an error for which `absent` tells whether the path is
/// missing or not a directory (the rest is then taken as written) rather
/// than unreadable (the error is returned).
pub fn resolve<E>(
    dest: &Path,
    cwd: impl FnOnce() -> Result<PathBuf, E>,
    mut canonical_dir: impl FnMut(&Path) -> Result<PathBuf, E>,
    absent: impl Fn(&E) -> bool,
) -> Result<PathBuf, E> {
    let mut cur = if dest.is_absolute() {
        PathBuf::from("/")
    } else {
        cwd()?
    };
    let mut exists = true;
    for c in dest.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                cur.pop();
            }
            Component::Normal(name) => {
                let next = cur.join(name);
                if exists {
                    match canonical_dir(&next) {
                        Ok(c) => {
                            cur = c;
                            continue;
                        }
                        Err(e) if absent(&e) => exists = false,
                        Err(e) => return Err(e),
                    }
                }
                cur = next;
            }
        }
    }
    Ok(cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree where /d is a directory, /l a link to /d/e, /f a file.
    fn canonical(p: &Path) -> Result<PathBuf, i32> {
        match p.to_str().unwrap() {
            "/" => Ok("/".into()),
            "/d" => Ok("/d".into()),
            "/d/e" | "/l" => Ok("/d/e".into()),
            "/f" => Err(libc::ENOTDIR),
            "/secret" => Err(libc::EACCES),
            _ => Err(libc::ENOENT),
        }
    }

    fn resolved(p: &str) -> Result<PathBuf, i32> {
        resolve(
            Path::new(p),
            || Ok("/d".into()),
            canonical,
            |&e| e == libc::ENOENT || e == libc::ENOTDIR,
        )
    }

    #[test]
    fn existing_directories_through_links_the_rest_as_written() {
        assert_eq!(resolved("/l/new/../x"), Ok("/d/e/x".into()));
        // `..` after a link goes to the parent of its target.
        assert_eq!(resolved("/l/../y"), Ok("/d/y".into()));
        assert_eq!(resolved("rel/z"), Ok("/d/rel/z".into()));
        // Not a directory: taken as written, the caller says why it fails.
        assert_eq!(resolved("/f/g"), Ok("/f/g".into()));
        assert_eq!(resolved("/secret/b"), Err(libc::EACCES));
    }
}
