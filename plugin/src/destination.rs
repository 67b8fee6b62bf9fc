//! Checks on the backup destination, before anything is written.
//!
//! The destination must be absolute, short enough for the files below it,
//! absent or an empty directory, outside every source (and no source inside
//! it), and - when tokudb_backup_allowed_prefix is set - resolve under that
//! prefix with symbolic links and ".." followed.

use crate::error::Failure;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Room left below the destination for our subdirectory and the deepest
/// server file name (db/table.ext with 64-char identifiers, encoded).
const ROOM_BELOW: usize = 64 + 1 + 320 + 1 + 320;

/// The library's resolution of a destination, shared as source so that the
/// plugin and the library judge a path the same way.
#[path = "../../src/dest_path.rs"]
mod dest_path;

/// Resolves `p` like the kernel (and libHotBackup) will once it exists:
/// symlinks of the existing directories are followed, the rest is
/// normalised lexically.
pub fn resolve(p: &Path) -> Result<PathBuf, Failure> {
    let canonical_dir = |q: &Path| match std::fs::canonicalize(q) {
        Ok(c) if c.is_dir() => Ok(c),
        Ok(_) => Err(std::io::Error::from_raw_os_error(libc::ENOTDIR)),
        Err(e) => Err(e),
    };
    dest_path::resolve(
        p,
        || std::env::current_dir().and_then(std::fs::canonicalize),
        canonical_dir,
        |e| matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)),
    )
    .map_err(|e| Failure::io("cannot resolve destination", p, &e))
}

/// The first 64 characters, for messages about very long paths.
fn head(s: &str) -> String {
    s.chars().take(64).collect()
}

fn is_under(p: &Path, base: &Path) -> bool {
    p.starts_with(base)
}

/// Validates `dest` against the sources and the allowed prefix; returns the
/// resolved destination.
pub fn validate(
    dest: &str,
    sources: &[PathBuf],
    allowed_prefix: Option<&str>,
) -> Result<PathBuf, Failure> {
    if dest.is_empty() {
        return Err(Failure::new(libc::EINVAL, "backup destination is empty"));
    }
    let path = Path::new(dest);
    if !path.is_absolute() {
        return Err(Failure::new(
            libc::EINVAL,
            format!("backup destination '{dest}' is not an absolute path"),
        ));
    }
    if dest.len() + ROOM_BELOW >= libc::PATH_MAX as usize {
        return Err(Failure::new(
            libc::ENAMETOOLONG,
            format!(
                "backup destination '{}...' is too long ({} bytes): files below it would exceed PATH_MAX ({})",
                head(dest),
                dest.len(),
                libc::PATH_MAX
            ),
        ));
    }
    if let Some(c) = path.components().find(|c| c.as_os_str().len() > 255) {
        return Err(Failure::new(
            libc::ENAMETOOLONG,
            format!(
                "backup destination '{}...' has a component longer than NAME_MAX (255): '{}...'",
                head(dest),
                head(&c.as_os_str().to_string_lossy())
            ),
        ));
    }
    let resolved = resolve(path)?;
    if let Some(prefix) = allowed_prefix {
        let rp = resolve(Path::new(prefix))?;
        if !is_under(&resolved, &rp) {
            return Err(Failure::new(
                libc::EPERM,
                format!(
                    "backup destination '{dest}' resolves to '{}', which is not under tokudb_backup_allowed_prefix '{}'",
                    resolved.display(),
                    rp.display()
                ),
            ));
        }
    }
    for s in sources {
        let rs = resolve(s)?;
        if is_under(&resolved, &rs) || is_under(&rs, &resolved) {
            return Err(Failure::new(
                libc::EINVAL,
                format!(
                    "backup destination '{dest}' (resolved '{}') overlaps the source directory '{}'",
                    resolved.display(),
                    rs.display()
                ),
            ));
        }
    }
    match std::fs::symlink_metadata(&resolved) {
        Ok(m) if !m.is_dir() => Err(Failure::new(
            libc::ENOTDIR,
            format!("backup destination '{dest}' exists and is not a directory"),
        )),
        Ok(_) => {
            let mut it = std::fs::read_dir(&resolved)
                .map_err(|e| Failure::io("cannot read backup destination", &resolved, &e))?;
            if it.next().is_some() {
                Err(Failure::new(
                    libc::ENOTEMPTY,
                    format!("backup destination '{dest}' is not empty"),
                ))
            } else {
                Ok(resolved)
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(resolved),
        Err(e) => Err(Failure::io(
            "cannot examine backup destination",
            &resolved,
            &e,
        )),
    }
}

/// Creates the (validated) destination private to the server's user; its
/// parent must exist, like for mkdir.
pub fn create(resolved: &Path) -> Result<(), Failure> {
    if !resolved.exists() {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(resolved)
            .map_err(|e| Failure::io("cannot create backup destination", resolved, &e))?;
        // The umask may have removed bits only; make it exactly 0700.
        std::fs::set_permissions(resolved, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Failure::io("cannot set mode 0700 on", resolved, &e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("tokudb_backup_dest_{}_{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn relative_and_long_are_refused() {
        assert_eq!(
            validate("rel/dir", &[], None).unwrap_err().errno,
            libc::EINVAL
        );
        let long = format!("/tmp/{}", "a/".repeat(2100));
        assert_eq!(
            validate(&long, &[], None).unwrap_err().errno,
            libc::ENAMETOOLONG
        );
        let comp = format!("/tmp/{}", "b".repeat(300));
        assert_eq!(
            validate(&comp, &[], None).unwrap_err().errno,
            libc::ENAMETOOLONG
        );
    }

    #[test]
    fn overlap_either_way_is_refused() {
        let d = tmp("overlap");
        let src = d.join("data");
        std::fs::create_dir(&src).unwrap();
        let inside = src.join("bk");
        let e = validate(inside.to_str().unwrap(), std::slice::from_ref(&src), None).unwrap_err();
        assert_eq!(e.errno, libc::EINVAL);
        assert!(e.message.contains("overlaps"));
        let e = validate(d.to_str().unwrap(), std::slice::from_ref(&src), None).unwrap_err();
        assert_eq!(e.errno, libc::EINVAL);
        // Through "..": still inside.
        let sneaky = format!("{}/x/../data/bk", d.display());
        assert!(validate(&sneaky, std::slice::from_ref(&src), None).is_err());
        assert!(validate(d.join("other").to_str().unwrap(), &[src], None).is_ok());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn prefix_follows_symlinks() {
        let d = tmp("prefix");
        let allowed = d.join("allowed");
        let outside = d.join("outside");
        std::fs::create_dir(&allowed).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, allowed.join("link")).unwrap();
        let p = allowed.to_str().unwrap();
        assert!(validate(allowed.join("bk").to_str().unwrap(), &[], Some(p)).is_ok());
        let e = validate(allowed.join("link/bk").to_str().unwrap(), &[], Some(p)).unwrap_err();
        assert_eq!(e.errno, libc::EPERM);
        let dotdot = format!("{p}/../outside/bk");
        assert_eq!(
            validate(&dotdot, &[], Some(p)).unwrap_err().errno,
            libc::EPERM
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn non_empty_is_refused_and_created_is_private() {
        let d = tmp("empty");
        std::fs::write(d.join("f"), b"x").unwrap();
        assert_eq!(
            validate(d.to_str().unwrap(), &[], None).unwrap_err().errno,
            libc::ENOTEMPTY
        );
        let n = d.join("new");
        let r = validate(n.to_str().unwrap(), &[], None).unwrap();
        create(&r).unwrap();
        let mode = std::fs::metadata(&n).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
