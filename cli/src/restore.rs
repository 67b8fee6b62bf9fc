//! `tokubackup restore`: every backed-up directory back at its original
//! path or a mapped one, owned by the server's user.
//!
//! Nothing is written at a target until all of them are complete: each
//! directory is copied into a hidden sibling `.NAME.tokubackup-partial-PID`,
//! all are synced (syncfs), then each is renamed onto its target, the
//! datadir last. A failed or interrupted restore removes its partial
//! copies; one killed outright leaves them under that name, which no server
//! setting names, and the next restore to that target removes them.

use crate::args::RestoreArgs;
use crate::copy::{self, Owner};
use crate::error::{Error, Exit, Result};
use crate::manifest::{self, Backup, Dir};
use crate::{signals, verify};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone)]
pub struct Target {
    pub dir: Dir,
    pub path: PathBuf,
}

/// Where each directory goes: the datadir to `datadir`, the others to their
/// --map entry or their original path.
pub fn targets(b: &Backup, datadir: &Path, maps: &[String]) -> Result<Vec<Target>> {
    let mut mapped: Vec<(PathBuf, PathBuf)> = Vec::new();
    for m in maps {
        let (o, n) = m.split_once('=').ok_or_else(|| {
            Error::new(Exit::Usage, format!("--map '{m}': expected ORIGINAL=NEW"))
        })?;
        let (o, n) = (Path::new(o.trim_end_matches('/')), PathBuf::from(n));
        if !n.is_absolute() {
            return Err(Error::new(
                Exit::Usage,
                format!("--map '{m}': NEW must be an absolute path"),
            ));
        }
        if !b.dirs.iter().any(|d| d.original == o) {
            let known: Vec<String> = b
                .dirs
                .iter()
                .map(|d| d.original.display().to_string())
                .collect();
            return Err(Error::new(
                Exit::Usage,
                format!(
                    "--map '{m}': '{}' is not a directory of this backup (it has: {})",
                    o.display(),
                    known.join(", ")
                ),
            ));
        }
        mapped.push((o.to_path_buf(), n));
    }
    if !datadir.is_absolute() {
        return Err(Error::new(
            Exit::Usage,
            "--datadir must be an absolute path",
        ));
    }
    Ok(b.dirs
        .iter()
        .map(|d| {
            let path = if d.setting == "datadir" {
                datadir.to_path_buf()
            } else {
                mapped
                    .iter()
                    .find(|(o, _)| *o == d.original)
                    .map_or_else(|| d.original.clone(), |(_, n)| n.clone())
            };
            Target {
                dir: d.clone(),
                path,
            }
        })
        .collect())
}

/// InnoDB's redo log names DATA DIRECTORY tablespaces by their absolute
/// path: crash recovery fails on them anywhere else.
fn check_innodb_kept(b: &Backup, targets: &[Target]) -> Result<()> {
    for t in targets {
        let d = &t.dir;
        if d.setting == "data_directory"
            && t.path != d.original
            && holds_ibd(&b.dir.join(&d.subdir))
        {
            return Err(Error::new(
                Exit::Usage,
                format!(
                    "--map: '{}' holds InnoDB DATA DIRECTORY tablespaces, which InnoDB's redo log names by their absolute path: they must be restored at '{}'",
                    d.original.display(),
                    d.original.display()
                ),
            ));
        }
    }
    Ok(())
}

fn holds_ibd(d: &Path) -> bool {
    std::fs::read_dir(d).is_ok_and(|rd| {
        rd.flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "ibd"))
    })
}

/// A path under an original directory, moved to that directory's target.
pub fn remap(targets: &[Target], p: &Path) -> PathBuf {
    for t in targets {
        if let Ok(rest) = p.strip_prefix(&t.dir.original) {
            return t.path.join(rest);
        }
    }
    p.to_path_buf()
}

/// Partial copies `.NAME.tokubackup-partial-PID` of `target` left by
/// restores that were killed (SIGKILL, power loss) are removed; one whose
/// process still runs is a restore in progress: refused.
fn clear_leftovers(target: &Path) -> Result<()> {
    let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
        return Ok(());
    };
    let prefix = format!(".{}.tokubackup-partial-", name.to_string_lossy());
    let Ok(rd) = std::fs::read_dir(parent) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = n.strip_prefix(&prefix).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let p = e.path();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim_end() == "tokubackup" {
            return Err(Error::new(
                Exit::RestoreRefused,
                format!(
                    "another restore (pid {pid}) is writing '{}' into '{}'",
                    target.display(),
                    p.display()
                ),
            ));
        }
        std::fs::remove_dir_all(&p).map_err(|e| {
            Error::io(
                Exit::RestoreRefused,
                "cannot remove the partial copy",
                &p,
                &e,
            )
        })?;
        eprintln!(
            "restore: removed '{}', the partial copy of a restore (pid {pid}) that did not finish",
            p.display()
        );
    }
    Ok(())
}

/// Refuses a target that is not empty or that a running server uses.
fn check_target(t: &Path) -> Result<()> {
    if let Some(pid) = server_using(t) {
        return Err(Error::new(
            Exit::RestoreRefused,
            format!(
                "a server (pid {pid}) is running on '{}': stop it first",
                t.display()
            ),
        ));
    }
    match copy::absent_or_empty(t) {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::new(
            Exit::RestoreRefused,
            format!("target directory '{}' is not empty", t.display()),
        )),
        Err(e) => Err(Error::io(Exit::RestoreRefused, "cannot read target", t, &e)),
    }
}

/// A process whose working directory is `dir` or below it (mariadbd works
/// in its datadir).
pub fn server_using(dir: &Path) -> Option<u32> {
    let dir = std::fs::canonicalize(dir).ok()?;
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cwd = std::fs::read_link(e.path().join("cwd")).ok()?;
        cwd.starts_with(&dir).then_some(pid)
    })
}

/// major.minor of a version string like 10.11.6-MariaDB-log.
fn major_minor(v: &str) -> Option<(u32, u32)> {
    let mut it = v.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn check_version(b: &Backup, mariadbd: &str) -> Result<()> {
    let out = std::process::Command::new(mariadbd)
        .arg("--version")
        .output();
    let text = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => {
            return Err(Error::new(
                Exit::RestoreRefused,
                format!("cannot run '{mariadbd} --version' to check the server version (--mariadbd PATH, or --ignore-version)"),
            ))
        }
    };
    let here = text.split("Ver ").nth(1).and_then(major_minor);
    let backup = major_minor(&b.server_version);
    if here.is_none() || here != backup {
        return Err(Error::new(
            Exit::RestoreRefused,
            format!(
                "the backup is of server {} but '{mariadbd}' is {}: restore with the same major.minor version (or --ignore-version)",
                b.server_version,
                text.trim()
            ),
        ));
    }
    Ok(())
}

/// Files that name other files by absolute path: InnoDB's `.isl` (a DATA
/// DIRECTORY tablespace) and the binary and relay log `.index` files. Each
/// such line is pointed at its directory's new place.
fn rewrite_paths(dir: &Path, targets: &[Target]) -> Result<()> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| Error::io(Exit::RestoreFailed, "cannot list", dir, &e))?;
    for e in rd.flatten() {
        let p = e.path();
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            rewrite_paths(&p, targets)?;
            continue;
        }
        if !p.extension().is_some_and(|x| x == "isl" || x == "index") {
            continue;
        }
        let old = std::fs::read_to_string(&p)
            .map_err(|e| Error::io(Exit::RestoreFailed, "cannot read", &p, &e))?;
        let new: String = old
            .lines()
            .map(|l| match l.starts_with('/') {
                true => format!("{}\n", remap(targets, Path::new(l)).display()),
                false => format!("{l}\n"),
            })
            .collect();
        if new != old {
            std::fs::write(&p, new)
                .map_err(|e| Error::io(Exit::RestoreFailed, "cannot write", &p, &e))?;
        }
    }
    Ok(())
}

/// How `place` writes.
#[derive(Debug, Clone, Copy)]
pub struct Placing {
    pub owner: Option<Owner>,
    pub threads: usize,
    /// Rename the backup's directories instead of copying them.
    pub move_files: bool,
    /// syncfs before and after the renames (not for a throwaway copy).
    pub durable: bool,
}

/// Copies (or moves) every directory into place; see the module comment.
pub fn place(b: &Backup, targets: &[Target], how: Placing) -> Result<u64> {
    let staged: Vec<(PathBuf, &Target)> = targets
        .iter()
        .map(|t| (copy::partial_name(&t.path), t))
        .collect();
    let e = match stage(b, &staged, targets, how) {
        Ok(bytes) => return rename_into_place(b, &staged, targets, how, bytes),
        Err(e) => e,
    };
    for (s, t) in &staged {
        // A directory --move renamed out of the backup goes back there.
        let src = b.dir.join(&t.dir.subdir);
        if !(how.move_files && !src.exists() && std::fs::rename(s, &src).is_ok()) {
            let _ = std::fs::remove_dir_all(s);
        }
    }
    Err(match e.exit {
        Exit::Interrupted => Error::new(
            Exit::Interrupted,
            "restore interrupted: no target was written, the partial copies were removed",
        ),
        _ => e,
    })
}

/// The staged copies onto their targets, then synced.
fn rename_into_place(
    b: &Backup,
    staged: &[(PathBuf, &Target)],
    targets: &[Target],
    how: Placing,
    bytes: u64,
) -> Result<u64> {
    // The datadir last: until it is in place nothing looks like a server's
    // data, even if the renames are cut short.
    let mut order: Vec<&(PathBuf, &Target)> = staged.iter().collect();
    order.sort_by_key(|(_, t)| t.dir.setting == "datadir");
    for (s, t) in order {
        if t.path.exists() {
            std::fs::remove_dir(&t.path)
                .map_err(|e| Error::io(Exit::RestoreFailed, "cannot replace", &t.path, &e))?;
        }
        std::fs::rename(s, &t.path)
            .map_err(|e| Error::io(Exit::RestoreFailed, "cannot rename into place", &t.path, &e))?;
        if how.move_files {
            let _ = std::fs::remove_dir_all(b.dir.join(&t.dir.subdir));
        }
    }
    if how.durable {
        for t in targets {
            copy::sync_fs(&t.path)?;
        }
    }
    Ok(bytes)
}

fn stage(
    b: &Backup,
    staged: &[(PathBuf, &Target)],
    targets: &[Target],
    how: Placing,
) -> Result<u64> {
    let relink = |p: &Path| remap(targets, p);
    let mut bytes = 0;
    for (s, t) in staged {
        if signals::interrupted() {
            return Err(Error::new(
                Exit::Interrupted,
                "restore interrupted; the partial copy was removed",
            ));
        }
        let parent = s.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(Exit::RestoreFailed, "cannot create", parent, &e))?;
        let src = b.dir.join(&t.dir.subdir);
        // --move on one filesystem is a rename; across filesystems a copy
        // (the backup's copy is removed once the target is in place).
        let moved = how.move_files && std::fs::rename(&src, s).is_ok();
        if moved {
            bytes += chown_tree(s, how.owner)?;
        } else {
            bytes += copy::copy_tree(&src, s, how.owner, how.threads, &relink)?;
        }
        rewrite_paths(s, targets)?;
    }
    if how.durable {
        for (s, _) in staged {
            copy::sync_fs(s)?;
        }
    }
    Ok(bytes)
}

fn chown_tree(p: &Path, owner: Option<Owner>) -> Result<u64> {
    let md = std::fs::symlink_metadata(p)
        .map_err(|e| Error::io(Exit::RestoreFailed, "cannot stat", p, &e))?;
    if let Some(o) = owner {
        std::os::unix::fs::lchown(p, Some(o.uid), Some(o.gid))
            .map_err(|e| Error::io(Exit::RestoreFailed, "cannot chown", p, &e))?;
    }
    let mut n = if md.is_file() { md.len() } else { 0 };
    if md.is_dir() {
        for e in std::fs::read_dir(p)
            .map_err(|e| Error::io(Exit::RestoreFailed, "cannot list", p, &e))?
            .flatten()
        {
            n += chown_tree(&e.path(), owner)?;
        }
    }
    Ok(n)
}

pub fn run(a: &RestoreArgs) -> Result<()> {
    manifest::check_marker(&a.backup)?;
    let b = Backup::open(&a.backup)?;
    b.check_marker()?;
    let targets = targets(&b, &a.datadir, &a.maps)?;
    check_innodb_kept(&b, &targets)?;
    let owner = copy::lookup_user(&a.user)?;
    for t in &targets {
        check_target(&t.path)?;
        clear_leftovers(&t.path)?;
    }
    if !a.ignore_version {
        check_version(&b, &a.mariadbd)?;
    }
    if !a.no_verify {
        let n = verify::check(&b, a.threads)?;
        eprintln!("restore: backup verified ({n} files)");
    }
    let t0 = Instant::now();
    let how = Placing {
        owner: Some(owner),
        threads: a.threads,
        move_files: a.move_files,
        durable: true,
    };
    let bytes = place(&b, &targets, how)?;
    let secs = t0.elapsed().as_secs_f64();
    for t in &targets {
        println!("restored {} -> {}", t.dir.subdir, t.path.display());
    }
    println!(
        "restore: {} in {secs:.1} s ({}), owned by {}",
        crate::info::human_bytes(bytes),
        if a.move_files { "moved" } else { "copied" },
        a.user
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn major_minor_of_versions() {
        assert_eq!(
            super::major_minor("10.11.6-MariaDB-0+deb12u1-log"),
            Some((10, 11))
        );
        assert_eq!(super::major_minor("11.4.2-MariaDB"), Some((11, 4)));
        assert_eq!(super::major_minor("garbage"), None);
    }
}
