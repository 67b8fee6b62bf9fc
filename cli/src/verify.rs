//! `tokubackup verify`: the completion marker, every listed file present
//! with its size and checksum, nothing unlisted; `--recover` then proves the
//! backup restores (see `recover`).

use crate::args::VerifyArgs;
use crate::error::{Error, Exit, Result};
use crate::manifest::{self, Backup, Kind};
use std::collections::BTreeMap;
use std::path::Path;

/// One way the backup differs from its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    Missing(String),
    Unlisted(String),
    Size {
        path: String,
        listed: u64,
        found: u64,
    },
    Checksum(String),
    Link {
        path: String,
        listed: String,
        found: String,
    },
    Unreadable {
        path: String,
        why: String,
    },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Missing(p) => write!(f, "missing: {p}"),
            Difference::Unlisted(p) => write!(f, "not in the manifest: {p}"),
            Difference::Size {
                path,
                listed,
                found,
            } => write!(
                f,
                "size differs: {path} is {found} bytes, the manifest says {listed}"
            ),
            Difference::Checksum(p) => write!(f, "checksum differs: {p} (same size, other bytes)"),
            Difference::Link {
                path,
                listed,
                found,
            } => write!(
                f,
                "link differs: {path} -> {found}, the manifest says -> {listed}"
            ),
            Difference::Unreadable { path, why } => write!(f, "cannot read {path}: {why}"),
        }
    }
}

/// What is on disk under the backup's subdirectories, by relative path.
#[derive(Debug)]
enum Found {
    Regular(u64),
    Symlink(String),
    Other,
}

fn walk(root: &Path, rel: &str, out: &mut BTreeMap<String, Found>) -> std::io::Result<()> {
    for e in std::fs::read_dir(root.join(rel))? {
        let e = e?;
        let r = format!("{rel}/{}", e.file_name().to_string_lossy());
        let md = std::fs::symlink_metadata(root.join(&r))?;
        if md.is_dir() {
            walk(root, &r, out)?;
        } else if md.file_type().is_symlink() {
            let t = std::fs::read_link(root.join(&r))?;
            out.insert(r, Found::Symlink(t.to_string_lossy().into_owned()));
        } else if md.is_file() {
            out.insert(r, Found::Regular(md.len()));
        } else {
            out.insert(r, Found::Other);
        }
    }
    Ok(())
}

/// Every difference between the backup's files and its manifest, by path.
pub fn differences(b: &Backup, threads: usize) -> Result<Vec<Difference>> {
    let listed = b.file_list()?;
    let mut found = BTreeMap::new();
    let mut diffs = Vec::new();
    for d in &b.dirs {
        if let Err(e) = walk(&b.dir, &d.subdir, &mut found) {
            diffs.push(Difference::Unreadable {
                path: d.subdir.clone(),
                why: e.to_string(),
            });
        }
    }
    let top = std::fs::read_dir(&b.dir)
        .map_err(|e| Error::io(Exit::NotABackup, "cannot list", &b.dir, &e))?;
    for e in top.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let known =
            manifest::METADATA.contains(&name.as_str()) || b.dirs.iter().any(|d| d.subdir == name);
        if !known {
            diffs.push(Difference::Unlisted(name));
        }
    }
    let mut to_hash = Vec::new();
    for f in listed {
        match (found.remove(&f.path), &f.kind) {
            (None, _) => diffs.push(Difference::Missing(f.path.clone())),
            (Some(Found::Regular(n)), Kind::Regular { size, .. }) if n != *size => {
                diffs.push(Difference::Size {
                    path: f.path.clone(),
                    listed: *size,
                    found: n,
                })
            }
            (Some(Found::Regular(n)), Kind::Regular { xxh3, .. }) => {
                to_hash.push((f.path.clone(), n, *xxh3))
            }
            (Some(Found::Symlink(t)), Kind::Symlink { target }) => {
                if t != *target {
                    diffs.push(Difference::Link {
                        path: f.path.clone(),
                        listed: target.clone(),
                        found: t,
                    })
                }
            }
            (Some(_), _) => diffs.push(Difference::Unreadable {
                path: f.path.clone(),
                why: "not the kind of file the manifest lists".into(),
            }),
        }
    }
    diffs.extend(found.into_keys().map(Difference::Unlisted));
    to_hash.sort_by_key(|(_, n, _)| std::cmp::Reverse(*n));
    let hashed = manifest::parallel(&to_hash, threads, |(p, _, want)| {
        let mut buf = vec![0u8; 1 << 20];
        match manifest::hash_file(&b.dir.join(p), &mut buf) {
            Ok((_, got)) if got == *want => None,
            Ok(_) => Some(Difference::Checksum(p.clone())),
            Err(e) => Some(Difference::Unreadable {
                path: p.clone(),
                why: e.to_string(),
            }),
        }
    });
    diffs.extend(hashed.into_iter().flatten());
    diffs.sort_by_key(|d| d.to_string());
    Ok(diffs)
}

/// Marker and files; Err names what failed (exit 6 or 7).
pub fn check(b: &Backup, threads: usize) -> Result<usize> {
    b.check_marker()?;
    let diffs = differences(b, threads)?;
    if diffs.is_empty() {
        return Ok(b.file_list()?.len());
    }
    let lines: Vec<String> = diffs.iter().map(|d| format!("  {d}")).collect();
    Err(Error::new(
        Exit::Differs,
        format!(
            "backup '{}' differs from its manifest ({} difference(s)):\n{}",
            b.dir.display(),
            diffs.len(),
            lines.join("\n")
        ),
    ))
}

pub fn run(a: &VerifyArgs) -> Result<()> {
    manifest::check_marker(&a.backup)?;
    let b = Backup::open(&a.backup)?;
    let t = std::time::Instant::now();
    let n = check(&b, a.threads)?;
    println!(
        "verify: {}: complete, {n} files match the manifest ({:.1} s)",
        a.backup.display(),
        t.elapsed().as_secs_f64()
    );
    if a.recover {
        crate::recover::run(&b, a)?;
    }
    Ok(())
}
