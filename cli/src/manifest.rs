//! A backup directory as the plugin leaves it: `backup-manifest.json`
//! (written by plugin/src/manifest.rs), the markers, the subdirectories.

use crate::error::{Error, Exit, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

pub const MANIFEST: &str = "backup-manifest.json";
pub const BINLOG_INFO: &str = "tokubackup_binlog_info";
pub const COMPLETE: &str = "BACKUP-COMPLETE";
pub const INCOMPLETE: &str = "BACKUP-INCOMPLETE";
/// Files at the top of a backup that are not part of the server's data.
pub const METADATA: [&str; 4] = [MANIFEST, BINLOG_INFO, COMPLETE, INCOMPLETE];

/// One backed-up directory.
#[derive(Debug, Clone)]
pub struct Dir {
    pub subdir: String,
    pub original: PathBuf,
    /// The server setting it came from (datadir, innodb_undo_directory, ...).
    pub setting: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Regular { size: u64, xxh3: u128 },
    Symlink { target: String },
}

#[derive(Debug, Clone)]
pub struct FileEntry {
    pub path: String,
    pub kind: Kind,
}

#[derive(Debug, Clone)]
pub struct Binlog {
    pub file: String,
    pub position: u64,
    pub gtid: String,
}

#[derive(Debug)]
pub struct Backup {
    pub dir: PathBuf,
    pub json: Value,
    pub dirs: Vec<Dir>,
    /// None: written by a plugin that did not list files.
    pub files: Option<Vec<FileEntry>>,
    pub server_version: String,
    pub binlog: Option<Binlog>,
}

fn garbled(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::new(
        Exit::NotABackup,
        format!("garbled manifest '{}': {why}", path.display()),
    )
}

fn text<'a>(v: &'a Value, key: &str, path: &Path) -> Result<&'a str> {
    v[key]
        .as_str()
        .ok_or_else(|| garbled(path, format!("'{key}' is missing or not a string")))
}

impl Backup {
    /// Reads the manifest of the backup in `dir`.
    pub fn open(dir: &Path) -> Result<Backup> {
        let path = dir.join(MANIFEST);
        let raw = std::fs::read(&path).map_err(|e| {
            Error::io(
                Exit::NotABackup,
                "not a tokudb_backup backup: cannot read",
                &path,
                &e,
            )
        })?;
        let json: Value = serde_json::from_slice(&raw).map_err(|e| garbled(&path, e))?;
        if !json.is_object() {
            return Err(garbled(&path, "not a JSON object"));
        }
        let dirs = json["directories"]
            .as_array()
            .ok_or_else(|| garbled(&path, "'directories' is missing"))?
            .iter()
            .map(|d| {
                let subdir = text(d, "subdirectory", &path)?;
                if subdir.is_empty() || subdir.contains('/') || subdir.starts_with('.') {
                    return Err(garbled(&path, format!("bad subdirectory '{subdir}'")));
                }
                Ok(Dir {
                    subdir: subdir.to_string(),
                    original: PathBuf::from(text(d, "original_path", &path)?),
                    setting: text(d, "setting", &path)?.to_string(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        if !dirs.iter().any(|d| d.setting == "datadir") {
            return Err(garbled(&path, "no directory is the datadir"));
        }
        let files = match json.get("files") {
            None => None,
            Some(_) if json["checksum_algorithm"] != file_checksum::ALGORITHM => {
                return Err(garbled(
                    &path,
                    format!(
                        "checksum_algorithm is {}; this tokubackup knows {}",
                        json["checksum_algorithm"],
                        file_checksum::ALGORITHM
                    ),
                ))
            }
            Some(f) => Some(
                f.as_array()
                    .ok_or_else(|| garbled(&path, "'files' is not a list"))?
                    .iter()
                    .map(|e| file_entry(e, &path))
                    .collect::<Result<Vec<_>>>()?,
            ),
        };
        let binlog = match &json["binlog"] {
            Value::Null => None,
            b => Some(Binlog {
                file: text(b, "file", &path)?.to_string(),
                position: b["position"]
                    .as_u64()
                    .ok_or_else(|| garbled(&path, "binlog position is not a number"))?,
                gtid: text(b, "gtid_position", &path)?.to_string(),
            }),
        };
        Ok(Backup {
            dir: dir.to_path_buf(),
            server_version: text(&json, "server_version", &path)?.to_string(),
            json,
            dirs,
            files,
            binlog,
        })
    }

    /// The listed files, or an error for a manifest without a list.
    pub fn file_list(&self) -> Result<&[FileEntry]> {
        self.files.as_deref().ok_or_else(|| {
            Error::new(
                Exit::NotABackup,
                format!(
                    "manifest '{}' lists no files (made by a plugin before 1.0): it cannot be verified",
                    self.dir.join(MANIFEST).display()
                ),
            )
        })
    }

    pub fn check_marker(&self) -> Result<()> {
        check_marker(&self.dir)
    }
}

/// Ok when BACKUP-COMPLETE is there and BACKUP-INCOMPLETE is not (checked
/// before the manifest is read: a failed backup has none).
pub fn check_marker(dir: &Path) -> Result<()> {
    let inc = dir.join(INCOMPLETE);
    if let Ok(why) = std::fs::read_to_string(&inc) {
        return Err(Error::new(
            Exit::NotABackup,
            format!("'{}' is there: {}", inc.display(), why.trim_end()),
        ));
    }
    let done = dir.join(COMPLETE);
    if !done.is_file() {
        return Err(Error::new(
            Exit::NotABackup,
            format!(
                "completion marker '{}' is missing: the backup did not finish",
                done.display()
            ),
        ));
    }
    Ok(())
}

fn file_entry(e: &Value, path: &Path) -> Result<FileEntry> {
    let p = text(e, "path", path)?;
    if p.starts_with('/') || p.split('/').any(|c| c == ".." || c.is_empty()) {
        return Err(garbled(path, format!("bad file path '{p}'")));
    }
    let kind = if let Some(t) = e["symlink"].as_str() {
        Kind::Symlink {
            target: t.to_string(),
        }
    } else {
        let size = e["size"]
            .as_u64()
            .ok_or_else(|| garbled(path, format!("no size for '{p}'")))?;
        let h = text(e, "xxh3_128", path)?;
        let xxh3 = u128::from_str_radix(h, 16)
            .map_err(|_| garbled(path, format!("bad checksum '{h}' for '{p}'")))?;
        Kind::Regular { size, xxh3 }
    };
    Ok(FileEntry {
        path: p.to_string(),
        kind,
    })
}

// The plugin's own code, so that verify hashes exactly as the backup did.
#[path = "../../plugin/src/file_checksum.rs"]
mod file_checksum;
pub use file_checksum::hash_file;

/// Runs `work` on each item by `threads` threads, the items in the given
/// order (largest first keeps one big file from ending the run alone).
pub fn parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    work: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut out: Vec<(usize, R)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads.max(1))
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(t) = items.get(i) else { return mine };
                        mine.push((i, work(t)));
                    }
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}
