//! What the backup holds, for the person (or script) restoring it.
//!
//! `backup-manifest.json` names each subdirectory's original path, the
//! versions, times, size and the binary log position; `tokubackup_binlog_info`
//! repeats the position in Percona's format. The marker `BACKUP-COMPLETE` is
//! written last; `BACKUP-INCOMPLETE` is there from the start until then, and
//! says why when a backup failed.
//!
//! The manifest lists every file of the backup with its size and the xxh3-128
//! of its bytes, computed after capture stopped (the copy then equals the
//! snapshot) and before the marker, so `tokubackup verify` can prove later
//! that nothing changed, went missing or was added.

use crate::binlog::Position;
use crate::error::Failure;
use crate::layout::SourceDir;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub const MANIFEST: &str = "backup-manifest.json";
pub const BINLOG_INFO: &str = "tokubackup_binlog_info";
pub const COMPLETE: &str = "BACKUP-COMPLETE";
pub const INCOMPLETE: &str = "BACKUP-INCOMPLETE";

pub struct Manifest<'a> {
    pub dirs: &'a [SourceDir],
    pub server_version: &'a str,
    pub library_version: &'a str,
    pub started: SystemTime,
    pub snapshot: Option<SystemTime>,
    pub finished: SystemTime,
    pub bytes: u64,
    pub binlog: Option<&'a Position>,
    pub exclude: Option<&'a str>,
    pub files: &'a [FileEntry],
    /// How long the checksums took (their cost, in BENCHMARKS.md).
    pub checksum_seconds: f64,
}

#[path = "file_checksum.rs"]
mod file_checksum;
use file_checksum::hash_file;
/// The checksum named in the manifest (`checksum_algorithm`).
pub const CHECKSUM_ALGORITHM: &str = file_checksum::ALGORITHM;

/// One file of the backup, by its path relative to the backup directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    pub path: String,
    pub kind: FileKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    Regular {
        size: u64,
        xxh3: u128,
    },
    /// MyISAM/Aria DATA DIRECTORY tables are symbolic links in the datadir.
    Symlink {
        target: String,
    },
}

impl FileEntry {
    fn to_json(&self) -> serde_json::Value {
        match &self.kind {
            FileKind::Regular { size, xxh3 } => serde_json::json!({
                "path": self.path,
                "size": size,
                "xxh3_128": format!("{xxh3:032x}"),
            }),
            FileKind::Symlink { target } => serde_json::json!({
                "path": self.path,
                "symlink": target,
            }),
        }
    }
}

/// RFC 3339 UTC, e.g. 2024-05-01T12:00:00.123Z.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

impl Manifest<'_> {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "format": "tokudb_backup-manifest-1",
            "plugin_version": env!("CARGO_PKG_VERSION"),
            "library_version": self.library_version,
            "server_version": self.server_version,
            "started_at": rfc3339(self.started),
            "snapshot_at": self.snapshot.map(rfc3339),
            "finished_at": rfc3339(self.finished),
            "bytes": self.bytes,
            "checksum_algorithm": CHECKSUM_ALGORITHM,
            "checksum_seconds": (self.checksum_seconds * 1000.0).round() / 1000.0,
            "exclude": self.exclude,
            "directories": self.dirs.iter().map(|d| serde_json::json!({
                "subdirectory": d.subdir,
                "original_path": d.path,
                "setting": d.role,
            })).collect::<Vec<_>>(),
            "binlog": self.binlog.map(|b| serde_json::json!({
                "file": b.file,
                "position": b.position,
                "gtid_position": b.gtid,
            })),
            "files": self.files.iter().map(FileEntry::to_json).collect::<Vec<_>>(),
        })
    }
}

/// Writes `name` in `dir` durably (write, fsync file, fsync directory).
pub fn write_file(dir: &Path, name: &str, contents: &[u8]) -> Result<(), Failure> {
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).map_err(|e| Failure::io("cannot create", &p, &e))?;
    f.write_all(contents)
        .map_err(|e| Failure::io("cannot write", &p, &e))?;
    f.sync_all()
        .map_err(|e| Failure::io("cannot fsync", &p, &e))?;
    sync_dir(dir)
}

pub fn sync_dir(dir: &Path) -> Result<(), Failure> {
    let d = std::fs::File::open(dir).map_err(|e| Failure::io("cannot open", dir, &e))?;
    d.sync_all()
        .map_err(|e| Failure::io("cannot fsync", dir, &e))
}

/// Every file and symbolic link under `subdirs` of `dest` (relative paths,
/// sorted), with the xxh3-128 of each regular file. Files are read by
/// `threads` threads, largest first, so one big tablespace does not end
/// the run alone.
pub fn checksum_files(
    dest: &Path,
    subdirs: &[&str],
    threads: usize,
) -> Result<Vec<FileEntry>, Failure> {
    let mut found = Vec::new();
    for sub in subdirs {
        walk(dest, Path::new(sub), &mut found)?;
    }
    found.sort_by_key(|(_, size, _)| std::cmp::Reverse(*size));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Result<Vec<FileEntry>, Failure>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| scope.spawn(|| hash_some(dest, &found, &next)))
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(Failure::new(libc::EIO, "checksum thread panicked")))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(found.len());
    for r in results {
        out.extend(r?);
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// (relative path, size, symlink target) of every file under `rel`.
type Found = (PathBuf, u64, Option<String>);

fn walk(root: &Path, rel: &Path, out: &mut Vec<Found>) -> Result<(), Failure> {
    let dir = root.join(rel);
    let rd = std::fs::read_dir(&dir).map_err(|e| Failure::io("cannot list", &dir, &e))?;
    for e in rd {
        let e = e.map_err(|e| Failure::io("cannot list", &dir, &e))?;
        let r = rel.join(e.file_name());
        let p = root.join(&r);
        let md = std::fs::symlink_metadata(&p).map_err(|e| Failure::io("cannot stat", &p, &e))?;
        if md.is_dir() {
            walk(root, &r, out)?;
        } else if md.file_type().is_symlink() {
            let t = std::fs::read_link(&p).map_err(|e| Failure::io("cannot read link", &p, &e))?;
            out.push((r, 0, Some(t.to_string_lossy().into_owned())));
        } else {
            out.push((r, md.len(), None));
        }
    }
    Ok(())
}

fn hash_some(
    root: &Path,
    found: &[Found],
    next: &std::sync::atomic::AtomicUsize,
) -> Result<Vec<FileEntry>, Failure> {
    let mut buf = vec![0u8; 1 << 20];
    let mut out = Vec::new();
    loop {
        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let Some((rel, _, link)) = found.get(i) else {
            return Ok(out);
        };
        let path = rel.to_string_lossy().into_owned();
        let kind = match link {
            Some(target) => FileKind::Symlink {
                target: target.clone(),
            },
            None => {
                let p = root.join(rel);
                let (size, xxh3) =
                    hash_file(&p, &mut buf).map_err(|e| Failure::io("cannot read", &p, &e))?;
                FileKind::Regular { size, xxh3 }
            }
        };
        out.push(FileEntry { path, kind });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(951_827_696_789); // leap day 2000
        assert_eq!(rfc3339(t), "2000-02-29T12:34:56.789Z");
    }

    #[test]
    fn checksum_files_lists_every_file_with_its_hash() {
        let root = std::env::temp_dir().join(format!("manifest-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("a/db")).unwrap();
        std::fs::create_dir_all(root.join("b")).unwrap();
        std::fs::write(root.join("a/db/t.ibd"), vec![7u8; 3 << 20]).unwrap();
        std::fs::write(root.join("a/x"), b"hello").unwrap();
        std::fs::write(root.join("b/empty"), b"").unwrap();
        std::os::unix::fs::symlink("/elsewhere/t.MAD", root.join("a/db/t.MAD")).unwrap();
        std::fs::write(root.join("not-listed"), b"outside the subdirectories").unwrap();
        let files = checksum_files(&root, &["a", "b"], 3).unwrap();
        let _ = std::fs::remove_dir_all(&root);
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a/db/t.MAD", "a/db/t.ibd", "a/x", "b/empty"]);
        let big = xxhash_rust::xxh3::xxh3_128(&vec![7u8; 3 << 20]);
        assert_eq!(
            files[1].kind,
            FileKind::Regular {
                size: 3 << 20,
                xxh3: big
            }
        );
        let hello = xxhash_rust::xxh3::xxh3_128(b"hello");
        assert_eq!(
            files[2].kind,
            FileKind::Regular {
                size: 5,
                xxh3: hello
            }
        );
        assert_eq!(
            files[0].kind,
            FileKind::Symlink {
                target: "/elsewhere/t.MAD".into()
            }
        );
        assert_eq!(
            files[3].to_json()["xxh3_128"],
            format!("{:032x}", xxhash_rust::xxh3::xxh3_128(b""))
        );
    }
}
